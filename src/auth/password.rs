//! argon2id password hashing on a dedicated, bounded pool of threads ([`CpuPool`]), through
//! the argon2 crate's own `PasswordHasher` and `PasswordVerifier`.
//!
//! Passwords are hashed and checked in Unicode NFKC form ([`normalize_password`]). A hash
//! stored before that rule, of a password typed in another form, still verifies: the raw
//! form is tried once after the normalized one, and a match asks for a rehash.

use std::sync::Arc;

use argon2::{
    password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString},
    Algorithm, Argon2, Params, Version,
};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};

use super::workers::{CpuPool, PoolError};
use crate::domain::normalize_password;

/// OWASP's argon2id recommendation: 19 MiB of memory, 2 passes, 1 lane.
pub const M_COST_KIB: u32 = 19_456;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;
/// Jobs allowed to wait per hashing thread: a queued login waits for at most this many hashes
/// before its own starts; a busier server answers `503` at once. Deep enough for ordinary
/// bursts and for clients that do not back off, which otherwise turn every refused
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

    /// Hashes a password, in NFKC form, into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
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

    /// Hashing jobs running or waiting now.
    pub fn jobs_pending(&self) -> usize {
        self.pool.pending()
    }

    /// Hashes on the calling thread. Only for jobs already on the hashing threads.
    pub fn hash_now(&self, password: &str) -> String {
        hash_with(&self.argon2, normalize_password(password).expose_secret())
    }

    /// Checks `password` against `stored` (a PHC string), or against the dummy hash when
    /// there is no such user, which always gives [`Verdict::Mismatch`]. Either way it costs
    /// the same: one verification, or two for a password whose NFKC form differs.
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

/// Checks `password` against a PHC string, in NFKC form and then, if that differs, as typed;
/// says whether the hash should be made again (see [`weaker_than_current`]).
fn verify(password: &str, phc: &str) -> Verdict {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Verdict::Mismatch;
    };
    let normalized = normalize_password(password);
    if matches(normalized.expose_secret(), &parsed) {
        return Verdict::Match {
            needs_rehash: weaker_than_current(&parsed),
        };
    }
    if normalized.expose_secret() != password && matches(password, &parsed) {
        // Hashed as typed, before passwords were normalized: hash the normalized form now.
        return Verdict::Match { needs_rehash: true };
    }
    Verdict::Mismatch
}

/// `Argon2`'s verifier takes the algorithm, version and parameters from the hash.
fn matches(password: &str, parsed: &PasswordHash<'_>) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), parsed)
        .is_ok()
}

/// Whether hashing again with the current parameters would strengthen `parsed`: it is not
/// argon2id of the current version, or none of its costs is above the current one and at
/// least one is below. A hash with any cost above the current one is kept as it is, so that
/// lowering the parameters never weakens stored hashes.
fn weaker_than_current(parsed: &PasswordHash<'_>) -> bool {
    if parsed.algorithm != argon2::ARGON2ID_IDENT || parsed.version != Some(Version::V0x13.into()) {
        return true;
    }
    let Ok(stored) = Params::try_from(parsed) else {
        return true;
    };
    let stored = [stored.m_cost(), stored.t_cost(), stored.p_cost()];
    let current = [M_COST_KIB, T_COST, P_COST];
    stored.iter().zip(&current).all(|(s, c)| s <= c) && stored != current
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

    #[test]
    fn stronger_or_mixed_parameters_are_never_rehashed() {
        let with = |m: u32, t: u32, p: u32| {
            let argon2 = Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(m, t, p, None).unwrap(),
            );
            argon2
                .hash_password(b"pw-123456", &SaltString::generate(&mut OsRng))
                .unwrap()
                .to_string()
        };
        let rehash = |phc: String| match verify("pw-123456", &phc) {
            Verdict::Match { needs_rehash } => needs_rehash,
            Verdict::Mismatch => panic!("{phc} did not verify"),
        };
        assert!(!rehash(with(M_COST_KIB, T_COST, P_COST)), "current");
        assert!(rehash(with(M_COST_KIB / 2, T_COST, P_COST)), "less memory");
        assert!(rehash(with(M_COST_KIB, 1, P_COST)), "fewer passes");
        assert!(!rehash(with(M_COST_KIB * 2, T_COST, P_COST)), "more memory");
        assert!(!rehash(with(M_COST_KIB, T_COST + 1, P_COST)), "more passes");
        assert!(
            !rehash(with(M_COST_KIB * 2, 1, P_COST)),
            "more memory, fewer passes: not clearly weaker"
        );
        let argon2i = reference_hash(Algorithm::Argon2i, M_COST_KIB * 2, "pw-123456");
        assert!(rehash(argon2i), "argon2i becomes argon2id");
    }

    #[test]
    fn passwords_match_in_any_unicode_form_and_old_raw_hashes_still_verify() {
        // "é" composed (U+00E9) and decomposed (e + U+0301); full-width "Ａ" (NFKC: "A").
        let (composed, decomposed) = ("caf\u{e9}-latte-42", "cafe\u{301}-latte-42");
        let hasher = PasswordHasher::new(1).unwrap();
        let phc = hasher.hash_now(decomposed);
        for typed in [composed, decomposed] {
            assert_eq!(
                verify(typed, &phc),
                Verdict::Match {
                    needs_rehash: false
                },
                "{typed:?}"
            );
        }
        assert_eq!(verify("cafe-latte-42", &phc), Verdict::Mismatch);
        let full_width = hasher.hash_now("\u{ff21}bc-secret-9");
        assert!(matches!(
            verify("Abc-secret-9", &full_width),
            Verdict::Match { .. }
        ));

        // A hash of the raw decomposed form, as stored before normalization: it still
        // verifies when typed the same way, and asks to be made again.
        let raw = hash_with(&hasher.argon2, decomposed);
        assert_eq!(
            verify(decomposed, &raw),
            Verdict::Match { needs_rehash: true }
        );
        assert_eq!(verify(composed, &raw), Verdict::Mismatch);
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
