//! argon2id password hashing (OWASP: m=19456 KiB, t=2, p=1) on a bounded
//! pool: at most one hash per core runs, a bounded queue waits, and beyond
//! that callers are told to come back later (503) instead of waiting forever.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// The pool is saturated; answer 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is saturated")]
pub struct Saturated;

/// argon2id with the production parameters.
pub fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password to a PHC string (blocking; call through `Hasher`).
pub fn hash_blocking(password: &[u8]) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

/// Checks a password against a PHC string (blocking).
pub fn verify_blocking(password: &[u8], phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// The bounded hashing pool.
#[derive(Clone)]
pub struct Hasher {
    running: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    capacity: usize,
    /// A real hash of a random password: unknown users cost one verify too.
    dummy: Arc<String>,
}

impl Hasher {
    /// `workers` hashes at once (one per core), `queue` more may wait.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        let random: [u8; 16] = rand::random();
        Hasher {
            running: Arc::new(Semaphore::new(workers)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: workers + queue,
            dummy: Arc::new(hash_blocking(&random)),
        }
    }

    /// How many hash jobs are running or waiting.
    pub fn in_flight(&self) -> usize {
        self.admitted.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Saturated> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(Saturated);
        }
        let _admission = Admission(self.admitted.clone());
        let _permit = self.running.acquire().await.map_err(|_| Saturated)?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|_| Saturated)
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, Saturated> {
        self.run(move || hash_blocking(password.as_bytes())).await
    }

    /// Verifies `password` against `phc`, or against the dummy hash when
    /// the user is unknown (same cost, same answer: false).
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, Saturated> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| (*self.dummy).clone());
        let ok = self
            .run(move || verify_blocking(password.as_bytes(), &phc))
            .await?;
        Ok(ok && known)
    }
}

struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
    }
}
