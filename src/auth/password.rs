//! argon2id password hashing on a dedicated, bounded pool of threads ([`CpuPool`]), through
//! the argon2 crate's own `PasswordHasher` and `PasswordVerifier`.

use std::sync::Arc;

use argon2::{
    password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString},
    Algorithm, Argon2, Params, Version,
};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};

use super::workers::{CpuPool, PoolError};

/// OWASP's argon2id recommendation: 19 MiB of memory, 2 passes, 1 lane.
pub const M_COST_KIB: u32 = 19_456;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;
/// Jobs allowed to wait per hashing thread: a queued login waits for at most this many hashes
/// before its own starts (about half a second at the cost in BENCHMARKS.md); a busier server
/// answers `503` at once. Deep enough for
/// ordinary bursts and for clients that do not back off, which otherwise turn every refused
/// slot into an immediate retry.
pub const QUEUE_PER_WORKER: usize = 32;

/// Hashes and verifies passwords without blocking the async workers.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    pool: CpuPool,
    /// A real hash of a random password: verified against when the user does not exist, so
    /// an unknown username costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

/// The result of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match { needs_rehash: bool },
    Mismatch,
}

impl PasswordHasher {
    /// `workers` hashing threads with [`QUEUE_PER_WORKER`] waiting slots each. Computes the
    /// dummy hash, a full hash's worth of CPU: call it off the async workers.
    pub fn new(workers: usize) -> std::io::Result<Self> {
        let params =
            Params::new(M_COST_KIB, T_COST, P_COST, None).expect("argon2 parameters are valid");
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = hash_with(&argon2, &uuid::Uuid::new_v4().to_string()).into();
        let pool = CpuPool::new(workers, workers * QUEUE_PER_WORKER)?;
        Ok(Self {
            argon2,
            pool,
            dummy_hash,
        })
    }

    /// One hashing thread per available core.
    pub fn per_core() -> std::io::Result<Self> {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
    pub async fn hash(&self, password: SecretString) -> Result<String, PoolError> {
        let hasher = self.clone();
        self.pool
            .run(move || hasher.hash_now(password.expose_secret()))
            .await
    }

    /// Runs `job` on the hashing threads; for work that must hash as one of its steps.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&PasswordHasher) -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let hasher = self.clone();
        self.pool.run(move || job(&hasher)).await
    }

    /// Hashes on the calling thread. Only for jobs already on the hashing threads.
    pub fn hash_now(&self, password: &str) -> String {
        hash_with(&self.argon2, password)
    }

    /// Checks `password` against `stored` (a PHC string), or against the dummy hash when
    /// there is no such user, which always gives [`Verdict::Mismatch`].
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<Verdict, PoolError> {
        let dummy = self.dummy_hash.clone();
        self.pool
            .run(move || match &stored {
                Some(phc) => verify(password.expose_secret(), phc),
                None => {
                    let _ = verify(password.expose_secret(), &dummy);
                    Verdict::Mismatch
                }
            })
            .await
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &str) -> String {
    argon2
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .expect("argon2 hashing cannot fail for in-range parameters")
        .to_string()
}

/// Checks `password` against a PHC string with the algorithm, version and parameters it
/// names, and says whether it should be hashed again with the current ones.
fn verify(password: &str, phc: &str) -> Verdict {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Verdict::Mismatch;
    };
    // `Argon2`'s verifier takes the algorithm, version and parameters from the hash.
    if Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Verdict::Mismatch;
    }
    let current = Params::try_from(&parsed).ok();
    let needs_rehash = parsed.algorithm != argon2::ARGON2ID_IDENT
        || current
            .is_none_or(|p| (p.m_cost(), p.t_cost(), p.p_cost()) != (M_COST_KIB, T_COST, P_COST));
    Verdict::Match { needs_rehash }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    #[tokio::test]
    async fn hashes_verify_and_use_owasp_parameters() {
        let hasher = PasswordHasher::new(2).unwrap();
        let phc = hasher.hash(secret("correct horse")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(
            hasher
                .verify(secret("correct horse"), Some(phc.clone()))
                .await
                .unwrap(),
            Verdict::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            hasher
                .verify(secret("wrong horse"), Some(phc))
                .await
                .unwrap(),
            Verdict::Mismatch
        );
    }

    #[tokio::test]
    async fn same_password_gets_different_salts() {
        let hasher = PasswordHasher::new(1).unwrap();
        let a = hasher.hash(secret("same-password")).await.unwrap();
        let b = hasher.hash(secret("same-password")).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn unknown_user_never_matches() {
        let hasher = PasswordHasher::new(1).unwrap();
        assert_eq!(
            hasher.verify(secret("anything"), None).await.unwrap(),
            Verdict::Mismatch
        );
    }

    /// A PHC string made by the argon2 crate's own hasher, as another program would store it.
    fn reference_hash(algorithm: Algorithm, m_cost: u32, password: &str) -> String {
        use argon2::password_hash::PasswordHasher as _;
        let argon2 = Argon2::new(
            algorithm,
            Version::V0x13,
            Params::new(m_cost, 1, 1, None).unwrap(),
        );
        argon2
            .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string()
    }

    #[test]
    fn reference_hashes_of_any_memory_size_verify() {
        // Less memory than the current parameters, more, and argon2i.
        for (algorithm, m_cost) in [
            (Algorithm::Argon2id, 64),
            (Algorithm::Argon2id, M_COST_KIB * 2),
            (Algorithm::Argon2i, 64),
        ] {
            let phc = reference_hash(algorithm, m_cost, "pw-123456");
            assert!(
                matches!(verify("pw-123456", &phc), Verdict::Match { .. }),
                "{phc}"
            );
            assert_eq!(verify("pw-1234567", &phc), Verdict::Mismatch, "{phc}");
        }
    }

    #[tokio::test]
    async fn weaker_parameters_ask_for_a_rehash() {
        let phc = reference_hash(Algorithm::Argon2id, 8, "pw-123456");
        let hasher = PasswordHasher::new(1).unwrap();
        assert_eq!(
            hasher.verify(secret("pw-123456"), Some(phc)).await.unwrap(),
            Verdict::Match { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn garbage_hash_is_a_mismatch_not_a_panic() {
        let hasher = PasswordHasher::new(1).unwrap();
        assert_eq!(
            hasher
                .verify(secret("x"), Some("not-a-phc".into()))
                .await
                .unwrap(),
            Verdict::Mismatch
        );
    }
}
