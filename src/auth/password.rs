//! argon2id password hashing on a dedicated, bounded pool of threads ([`CpuPool`]).

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use argon2::{
    password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString},
    Algorithm, Argon2, Block, Params, Version,
};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};

use super::workers::{CpuPool, Idle, PoolError};

/// OWASP's argon2id recommendation: 19 MiB of memory, 2 passes, 1 lane.
pub const M_COST_KIB: u32 = 19_456;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;
/// Jobs allowed to wait per hashing thread: at ~16 ms a hash, a queued login waits at most
/// ~0.5 s before its own hash starts; a busier server answers `503` at once. Deep enough for
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
    memory: Memory,
}

/// The result of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match { needs_rehash: bool },
    Mismatch,
}

impl PasswordHasher {
    /// `workers` hashing threads with [`QUEUE_PER_WORKER`] waiting slots each. Computes the
    /// dummy hash, ~20 ms of CPU: call it off the async workers.
    pub fn new(workers: usize) -> std::io::Result<Self> {
        let params =
            Params::new(M_COST_KIB, T_COST, P_COST, None).expect("argon2 parameters are valid");
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        map_large_buffers();
        let memory = Memory::default();
        let dummy_hash = hash_with(&argon2, &memory, &uuid::Uuid::new_v4().to_string()).into();
        // Until the first login, an idle server holds no argon2 memory.
        memory.release();
        let idle = Idle {
            after: KEEP_MEMORY_FOR,
            hook: {
                let memory = memory.clone();
                Arc::new(move || memory.release())
            },
        };
        let pool = CpuPool::new(workers, workers * QUEUE_PER_WORKER, Some(idle))?;
        Ok(Self {
            argon2,
            pool,
            dummy_hash,
            memory,
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
        hash_with(&self.argon2, &self.memory, password)
    }

    /// Checks `password` against `stored` (a PHC string), or against the dummy hash when
    /// there is no such user, which always gives [`Verdict::Mismatch`].
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<Verdict, PoolError> {
        let dummy = self.dummy_hash.clone();
        let memory = self.memory.clone();
        self.pool
            .run(move || match &stored {
                Some(phc) => verify_with(&memory, password.expose_secret(), phc),
                None => {
                    let _ = verify_with(&memory, password.expose_secret(), &dummy);
                    Verdict::Mismatch
                }
            })
            .await
    }
}

/// argon2 memory kept between hashes: a fresh 19 MiB buffer per hash costs ~1 ms to zero
/// (and page faults on first touch); argon2 overwrites every block it uses, so reusing a
/// buffer changes no result. A hash takes a buffer and puts it back, so there are at most as
/// many as hashes run at once (one per hashing thread). Cloning shares the buffers.
#[derive(Clone, Default)]
struct Memory(Arc<Mutex<Vec<Vec<Block>>>>);

/// Blocks per kept buffer: what the current parameters use. A stored hash made with more
/// memory gets a buffer of its own, freed after use.
const KEPT_BLOCKS: usize = M_COST_KIB as usize;

/// After this long without a password to hash, the kept argon2 memory is freed, so that an
/// idle server goes back to its small footprint.
const KEEP_MEMORY_FOR: Duration = Duration::from_secs(2);

impl Memory {
    fn buffers(&self) -> MutexGuard<'_, Vec<Vec<Block>>> {
        // The buffers hold no invariant that a panicking hash could break.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Vec<Block> {
        let mut buffer = self.buffers().pop().unwrap_or_default();
        buffer.resize(KEPT_BLOCKS, Block::default());
        buffer
    }

    fn put_back(&self, buffer: Vec<Block>) {
        self.buffers().push(buffer);
    }

    /// Frees every kept buffer and returns the memory to the OS.
    fn release(&self) {
        let buffers = std::mem::take(&mut *self.buffers());
        if buffers.is_empty() {
            return;
        }
        // Each buffer is a mapping of its own (see `map_large_buffers`): dropping it unmaps it.
        drop(buffers);
        // A quiet moment: the smaller memory freed since the last one goes back too.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only walks the allocator's own free lists.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Makes the allocator give every buffer of 1 MiB or more a mapping of its own, unmapped when
/// freed. By default glibc raises this threshold to the size of the largest buffer freed, so
/// from the second argon2 buffer on it carves them from a thread's arena, and there a freed
/// buffer at the arena's top stays resident (`malloc_trim` trims only the main arena's top):
/// an idle server kept 19 MiB after a login burst, some of the time.
fn map_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an integer parameter of the allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Computes the raw argon2 output for `password` and `salt` into `out`.
fn compute(
    argon2: &Argon2<'_>,
    memory: &Memory,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> argon2::Result<()> {
    let blocks = argon2.params().block_count();
    if blocks > KEPT_BLOCKS {
        return argon2.hash_password_into(password, salt, out);
    }
    let mut buffer = memory.take();
    let result = argon2.hash_password_into_with_memory(password, salt, out, &mut buffer[..blocks]);
    memory.put_back(buffer);
    result
}

fn hash_with(argon2: &Argon2<'_>, memory: &Memory, password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .expect("a generated salt decodes");
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(argon2, memory, password.as_bytes(), salt_bytes, &mut out)
        .expect("argon2 hashing cannot fail for in-range parameters");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params()).expect("parameters encode"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).expect("a 32-byte output is valid")),
    }
    .to_string()
}

/// Checks `password` against a PHC string with the parameters, algorithm and version it
/// names (as `PasswordVerifier` does, on the kept memory).
fn matches(memory: &Memory, password: &str, parsed: &PasswordHash<'_>) -> Option<bool> {
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(parsed).ok()?;
    let expected = parsed.hash?;
    let mut salt = [0u8; Salt::MAX_LENGTH];
    let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    compute(
        &Argon2::new(algorithm, version, params),
        memory,
        password.as_bytes(),
        salt,
        out,
    )
    .ok()?;
    // `Output`'s equality is constant-time.
    Some(Output::new(out).ok()? == expected)
}

fn verify_with(memory: &Memory, password: &str, phc: &str) -> Verdict {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Verdict::Mismatch;
    };
    if matches(memory, password, &parsed) != Some(true) {
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

    impl Memory {
        fn kept(&self) -> usize {
            self.buffers().len()
        }
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    #[tokio::test]
    async fn kept_argon2_memory_is_freed_once_hashing_goes_idle() {
        let hasher = PasswordHasher::new(1).unwrap();
        assert_eq!(hasher.memory.kept(), 0, "the dummy hash keeps nothing");
        hasher.hash(secret("correct horse battery")).await.unwrap();
        assert_eq!(
            hasher.memory.kept(),
            1,
            "a hash keeps its memory for the next one"
        );
        tokio::time::sleep(KEEP_MEMORY_FOR * 2 + Duration::from_millis(500)).await;
        assert_eq!(hasher.memory.kept(), 0, "an idle pool frees it");
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
    fn own_hashes_verify_with_the_reference_verifier() {
        use argon2::password_hash::PasswordVerifier as _;
        let argon2 = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(M_COST_KIB, T_COST, P_COST, None).unwrap(),
        );
        // Twice: the second hash runs on the kept memory of the first.
        let memory = Memory::default();
        for password in ["first-password", "second-password"] {
            let phc = hash_with(&argon2, &memory, password);
            let parsed = PasswordHash::new(&phc).unwrap();
            assert!(argon2.verify_password(password.as_bytes(), &parsed).is_ok());
            assert!(argon2.verify_password(b"other", &parsed).is_err());
        }
    }

    #[test]
    fn reference_hashes_of_any_memory_size_verify() {
        // Less memory than kept, then more (a buffer of its own), then argon2i.
        let memory = Memory::default();
        for (algorithm, m_cost) in [
            (Algorithm::Argon2id, 64),
            (Algorithm::Argon2id, M_COST_KIB * 2),
            (Algorithm::Argon2i, 64),
        ] {
            let phc = reference_hash(algorithm, m_cost, "pw-123456");
            assert!(
                matches!(
                    verify_with(&memory, "pw-123456", &phc),
                    Verdict::Match { .. }
                ),
                "{phc}"
            );
            assert_eq!(
                verify_with(&memory, "pw-1234567", &phc),
                Verdict::Mismatch,
                "{phc}"
            );
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
