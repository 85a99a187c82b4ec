//! argon2id password hashing (OWASP: m=19456 KiB, t=2, p=1) on a bounded
//! pool (G10). `workers` threads of our own each own one preallocated
//! argon2 memory block, so memory is `workers` x 19 MiB whatever clients do,
//! and at most `workers` hashes ever run. A job holds its admission until
//! its hash finishes: a client that resets its connection frees nothing
//! early, and a job whose client is already gone is skipped, not hashed.
//! Beyond `queue` waiting jobs, callers are told to come back (503).
//!
//! May import: random. The layers: docs/DESIGN.md, "Parts".

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use argon2::{PasswordHash, PasswordHasher, PasswordVerifier};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

/// The pool is saturated; answer 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is saturated")]
pub struct Saturated;

/// OWASP's argon2id memory cost, KiB (one block is 1 KiB).
const M_COST: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

/// argon2id with the production parameters.
pub fn argon2() -> Argon2<'static> {
    let params = Params::new(M_COST, T_COST, P_COST, Some(OUTPUT_LEN)).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password to a PHC string, allocating its own memory (setup
/// and tools; requests go through `Hasher`).
pub fn hash_blocking(password: &[u8]) -> String {
    argon2()
        .hash_password(password)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

/// Checks a password against a PHC string, allocating its own memory.
pub fn verify_blocking(password: &[u8], phc: &str) -> bool {
    argon2().verify_password(password, phc).is_ok()
}

/// One worker's argon2 memory, allocated once and reused for every hash.
pub struct Memory(Vec<Block>);

impl Default for Memory {
    fn default() -> Self {
        Memory(vec![Block::default(); M_COST as usize])
    }
}

impl Memory {
    /// At least `blocks` blocks: a stored hash with a higher cost than
    /// today's grows this worker's memory once (stored hashes are ours).
    fn blocks(&mut self, blocks: usize) -> &mut [Block] {
        if self.0.len() < blocks {
            self.0.resize(blocks, Block::default());
        }
        &mut self.0[..blocks]
    }

    /// Hashes `password` with the production parameters into a PHC string.
    pub fn hash(&mut self, password: &[u8]) -> String {
        let salt: [u8; SALT_LEN] = crate::random::bytes();
        let argon = argon2();
        let mut out = [0u8; OUTPUT_LEN];
        let blocks = argon.params().block_count();
        if argon
            .hash_password_into_with_memory(password, &salt, &mut out, self.blocks(blocks))
            .is_err()
        {
            return String::new();
        }
        format!(
            "$argon2id$v=19$m={M_COST},t={T_COST},p={P_COST}${}${}",
            STANDARD_NO_PAD.encode(salt),
            STANDARD_NO_PAD.encode(out)
        )
    }

    /// Checks `password` against a PHC string with the parameters it names.
    pub fn verify(&mut self, password: &[u8], phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let (Ok(algorithm), Ok(params)) = (
            Algorithm::try_from(parsed.algorithm.as_str()),
            Params::try_from(&parsed),
        ) else {
            return false;
        };
        let version = match parsed.version.map(Version::try_from) {
            None => Version::V0x13,
            Some(Ok(v)) => v,
            Some(Err(_)) => return false,
        };
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let argon = Argon2::new(algorithm, version, params);
        let mut out = vec![0u8; expected.len()];
        let blocks = argon.params().block_count();
        if argon
            .hash_password_into_with_memory(password, &salt, &mut out, self.blocks(blocks))
            .is_err()
        {
            return false;
        }
        bool::from(out.as_slice().ct_eq(expected.as_bytes()))
    }
}

enum Work {
    Hash(String),
    Verify { password: String, phc: String },
}

enum Done {
    Hashed(String),
    Verified(bool),
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Done>,
}

/// Counters the pool keeps (exported on `/metrics`).
#[derive(Default)]
pub struct PoolStats {
    /// Jobs admitted and not yet finished (running or waiting).
    pub admitted: AtomicUsize,
    /// Hashes running right now.
    pub running: AtomicUsize,
    /// The most hashes ever seen running at once.
    pub running_max: AtomicUsize,
    /// Admissions refused because the queue was full.
    pub rejected: AtomicU64,
    /// Jobs skipped because their caller had gone (reset connections).
    pub abandoned: AtomicU64,
}

/// The bounded hashing pool.
#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::Sender<Job>,
    stats: Arc<PoolStats>,
    capacity: usize,
    workers: usize,
    /// A real hash of a random password: unknown users cost one verify too.
    dummy: Arc<String>,
}

impl Hasher {
    /// `workers` hash threads (one per core), `queue` more jobs may wait.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        let (jobs, inbox) = mpsc::channel::<Job>();
        let inbox = Arc::new(Mutex::new(inbox));
        let stats = Arc::new(PoolStats::default());
        let mut memory = Memory::default();
        let random: [u8; 16] = crate::random::bytes();
        let dummy = Arc::new(memory.hash(&random));
        drop(memory);
        for n in 0..workers {
            let (inbox, stats) = (inbox.clone(), stats.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("recall-argon2-{n}"))
                .spawn(move || work(&inbox, &stats));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password-hashing thread");
            }
        }
        Hasher {
            jobs,
            stats,
            capacity: workers + queue,
            workers,
            dummy,
        }
    }

    /// How many hash jobs are running or waiting.
    pub fn in_flight(&self) -> usize {
        self.stats.admitted.load(Ordering::Acquire)
    }

    /// The pool's counters.
    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// How many hashes may run at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    async fn run(&self, work: Work) -> Result<Done, Saturated> {
        if self.stats.admitted.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.stats.admitted.fetch_sub(1, Ordering::AcqRel);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Saturated);
        }
        // From here the admission belongs to the job: the worker releases it
        // when the hash is done, whatever happens to this future.
        let (reply, answer) = oneshot::channel();
        if self.jobs.send(Job { work, reply }).is_err() {
            self.stats.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(Saturated);
        }
        answer.await.map_err(|_| Saturated)
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, Saturated> {
        match self.run(Work::Hash(password)).await? {
            Done::Hashed(phc) => Ok(phc),
            Done::Verified(_) => Err(Saturated),
        }
    }

    /// Verifies `password` against `phc`, or against the dummy hash when
    /// the user is unknown (same cost, same answer: false).
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, Saturated> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| (*self.dummy).clone());
        match self.run(Work::Verify { password, phc }).await? {
            Done::Verified(ok) => Ok(ok && known),
            Done::Hashed(_) => Err(Saturated),
        }
    }
}

/// One hash thread: takes jobs until every `Hasher` is dropped.
fn work(inbox: &Mutex<mpsc::Receiver<Job>>, stats: &PoolStats) {
    let mut memory = Memory::default();
    loop {
        let job = match inbox.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        if job.reply.is_closed() {
            // The caller is gone (connection reset): nobody waits for this.
            stats.abandoned.fetch_add(1, Ordering::Relaxed);
            stats.admitted.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let now_running = stats.running.fetch_add(1, Ordering::AcqRel) + 1;
        stats.running_max.fetch_max(now_running, Ordering::AcqRel);
        let done = match job.work {
            Work::Hash(password) => Done::Hashed(memory.hash(password.as_bytes())),
            Work::Verify { password, phc } => {
                Done::Verified(memory.verify(password.as_bytes(), &phc))
            }
        };
        stats.running.fetch_sub(1, Ordering::AcqRel);
        stats.admitted.fetch_sub(1, Ordering::AcqRel);
        let _ = job.reply.send(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_do() {
        let hasher = Hasher::new(1, 1);
        let phc = hasher.hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher
            .verify("correct horse".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!hasher.verify("wrong".into(), Some(phc)).await.unwrap());
        assert!(!hasher.verify("anything".into(), None).await.unwrap());
    }

    #[test]
    fn reused_memory_agrees_with_the_argon2_crate_both_ways() {
        let mut memory = Memory::default();
        let ours = memory.hash(b"pass word 1");
        assert!(verify_blocking(b"pass word 1", &ours), "{ours}");
        assert!(!verify_blocking(b"pass word 2", &ours));
        let theirs = hash_blocking(b"pass word 1");
        assert!(memory.verify(b"pass word 1", &theirs));
        assert!(!memory.verify(b"pass word 2", &theirs));
        // Other parameters stored earlier still verify (memory grows once).
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        );
        let phc = cheap.hash_password(b"x1234567").unwrap().to_string();
        assert!(memory.verify(b"x1234567", &phc));
        for garbage in [
            "",
            "$argon2id$",
            "$argon2id$v=19$m=8,t=1,p=1$@@@$@@@",
            "plain",
        ] {
            assert!(!memory.verify(b"x", garbage), "{garbage}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_answers_saturated_instead_of_waiting() {
        let hasher = Hasher::new(1, 2);
        let mut jobs = Vec::new();
        for _ in 0..12 {
            let h = hasher.clone();
            jobs.push(tokio::spawn(
                async move { h.hash("password1".into()).await },
            ));
        }
        let mut ok = 0;
        let mut saturated = 0;
        for j in jobs {
            match j.await.unwrap() {
                Ok(_) => ok += 1,
                Err(Saturated) => saturated += 1,
            }
        }
        assert!(ok >= 3, "the worker and the queue were served: {ok}");
        assert!(saturated >= 1, "excess work was refused: {saturated}");
        assert_eq!(hasher.in_flight(), 0);
        assert_eq!(hasher.stats().running_max.load(Ordering::Acquire), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_callers_keep_their_admission_until_the_hash_ends() {
        let hasher = Hasher::new(2, 6);
        // Eight callers that give up at once, as reset connections do.
        for _ in 0..8 {
            let h = hasher.clone();
            let job = tokio::spawn(async move { h.hash("password1".into()).await });
            tokio::task::yield_now().await;
            job.abort();
        }
        // Slots come back only as jobs finish or are skipped, never early.
        for _ in 0..200 {
            if hasher.in_flight() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(hasher.in_flight(), 0);
        assert!(hasher.stats().running_max.load(Ordering::Acquire) <= 2);
    }
}
