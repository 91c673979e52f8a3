//! Password hashes (argon2, on threads of their own) and the random secrets of sessions, API
//! tokens and first passwords, stored only as hashes.

use crate::error::{Error, Result};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use rand::RngCore;
use serverware_shared::TOKEN_PREFIX;
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use std::time::Duration;

pub fn hash_password(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(anyhow::anyhow!("password hashing failed: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Password hashing is slow on purpose. It runs on threads of its own, as many as half the CPUs,
/// at a lower scheduling priority (nice 10), never holding a database connection: a flood of
/// logins takes at most those CPUs, and even there yields to the threads answering everyone
/// else. At most [`HASH_QUEUE`] checks wait for a thread; past that a login is refused (429)
/// after [`REFUSAL_DELAY`] instead of queueing without end.
struct Hashing {
    jobs: std::sync::mpsc::SyncSender<HashJob>,
}

type HashJob = Box<dyn FnOnce() + Send>;

/// How long a login refused without a password check (a locked client, a full queue) waits
/// for its answer, so that refusals cannot be asked for as fast as a client can send.
pub const REFUSAL_DELAY: Duration = Duration::from_secs(1);

/// How many password checks may wait for their turn.
pub const HASH_QUEUE: usize = 64;

fn hashing() -> &'static Hashing {
    static H: std::sync::OnceLock<Hashing> = std::sync::OnceLock::new();
    H.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (jobs, queue) = std::sync::mpsc::sync_channel::<HashJob>(HASH_QUEUE);
        let queue = std::sync::Arc::new(Mutex::new(queue));
        for i in 0..(cpus / 2).max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    // SAFETY: setpriority has no memory effects; on Linux, `who` 0 with
                    // PRIO_PROCESS is this thread alone. A failure leaves the priority as is.
                    unsafe {
                        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
                    }
                    loop {
                        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a password hashing thread: {e}");
            }
        }
        Hashing { jobs }
    })
}

/// Runs `work` on a hashing thread, when one is free.
async fn hash_turn<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: HashJob = Box::new(move || {
        // A client that went away while waiting costs no hash.
        if tx.is_closed() {
            return;
        }
        if let Ok(v) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            let _ = tx.send(v);
        }
    });
    match hashing().jobs.try_send(job) {
        Ok(()) => {}
        Err(std::sync::mpsc::TrySendError::Full(_)) => {
            tokio::time::sleep(REFUSAL_DELAY).await;
            return Err(Error::Busy(
                "too many password checks are waiting; try again in a moment".into(),
            ));
        }
        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
            return Err(Error::Internal(anyhow::anyhow!(
                "no password hashing thread is running"
            )))
        }
    }
    rx.await
        .map_err(|_| Error::Internal(anyhow::anyhow!("password hashing failed")))
}

/// [`hash_password`] in its turn, holding no database connection.
pub async fn hash_password_off(password: String) -> Result<String, Error> {
    hash_turn(move || hash_password(&password)).await?
}

/// [`verify_password`] in its turn, holding no database connection.
pub async fn verify_password_off(password: String, hash: String) -> Result<bool> {
    hash_turn(move || verify_password(&password, &hash)).await
}

/// A hash to verify against when the user does not exist, so the answer takes as long.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no such user, no such password").unwrap_or_default())
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A random password that is easy to copy: 20 characters from an unambiguous alphabet.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char)
        .collect()
}

/// Sessions and tokens are long random strings, so a fast hash is enough to store them.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn new_session_secret() -> String {
    random_b64(32)
}

/// The user agent recorded for sessions of the controller's SSH command line (a browser's
/// agent that says the same is recorded with a prefix: see the login).
pub const SSH_SESSION_AGENT: &str = "serverware-ssh";

/// A new API token: `swt_` and 40 random characters.
pub fn new_token_secret() -> String {
    format!("{TOKEN_PREFIX}{}", random_b64(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = new_token_secret();
        let b = new_token_secret();
        assert!(a.starts_with("swt_") && a.len() == 44);
        assert_ne!(a, b);
        assert_eq!(secret_hash(&a).len(), 64);
        assert_ne!(secret_hash(&a), secret_hash(&b));
        let p = random_password();
        assert_eq!(p.len(), 20);
        assert!(serverware_shared::validate::new_password("p", &p).is_ok());
    }
}
