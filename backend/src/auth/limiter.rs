//! The back-off on failed logins: an account, and a client address, that fail too often are
//! locked for a while, doubling with each further lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::config::LoginLimits;

#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

/// Slows down password guessing per account and per client address: after a number of failures
/// in a row the key is locked, for a time that doubles with each further failure.
#[derive(Debug)]
pub struct LoginLimiter {
    limits: LoginLimits,
    accounts: Mutex<HashMap<String, Strikes>>,
    addresses: Mutex<HashMap<IpAddr, Strikes>>,
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            accounts: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while the account or the address is locked.
    pub fn check(&self, account: &str, addr: Option<IpAddr>, at: Instant) -> Result<(), Duration> {
        let mut wait = Duration::ZERO;
        if let Some(s) = lock(&self.accounts).get(account) {
            wait = wait.max(remaining(s, at));
        }
        if let Some(a) = addr {
            if let Some(s) = lock(&self.addresses).get(&a) {
                wait = wait.max(remaining(s, at));
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    pub fn failure(&self, account: &str, addr: Option<IpAddr>, at: Instant) {
        let forget = Duration::from_secs(self.limits.max_lock_secs.max(60) * 2);
        {
            let mut map = lock(&self.accounts);
            prune(&mut map, at, forget);
            strike(
                map.entry(account.to_string()),
                &self.limits,
                self.limits.account_failures,
                at,
                forget,
            );
        }
        if let Some(a) = addr {
            let mut map = lock(&self.addresses);
            prune(&mut map, at, forget);
            strike(
                map.entry(a),
                &self.limits,
                self.limits.address_failures,
                at,
                forget,
            );
        }
    }

    pub fn success(&self, account: &str, addr: Option<IpAddr>) {
        lock(&self.accounts).remove(account);
        if let Some(a) = addr {
            lock(&self.addresses).remove(&a);
        }
    }
}

fn lock<K, V>(m: &Mutex<HashMap<K, V>>) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
    // A panic while holding the lock leaves plain counters behind: still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn remaining(s: &Strikes, at: Instant) -> Duration {
    s.locked_until
        .map(|u| u.saturating_duration_since(at))
        .unwrap_or_default()
}

fn prune<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Strikes>, at: Instant, forget: Duration) {
    if map.len() > 10_000 {
        map.retain(|_, s| at.saturating_duration_since(s.last_failure) < forget);
    }
}

fn strike<K>(
    entry: std::collections::hash_map::Entry<'_, K, Strikes>,
    limits: &LoginLimits,
    threshold: u32,
    at: Instant,
    forget: Duration,
) {
    let s = entry.or_insert(Strikes {
        failures: 0,
        locked_until: None,
        last_failure: at,
    });
    if at.saturating_duration_since(s.last_failure) >= forget {
        s.failures = 0;
    }
    s.failures += 1;
    s.last_failure = at;
    if s.failures >= threshold {
        let doublings = (s.failures - threshold).min(20);
        let secs = limits
            .base_lock_secs
            .saturating_mul(1u64 << doublings)
            .min(limits.max_lock_secs);
        s.locked_until = Some(at + Duration::from_secs(secs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_locks_after_threshold_and_doubles() {
        let limits = LoginLimits {
            account_failures: 3,
            address_failures: 100,
            base_lock_secs: 10,
            max_lock_secs: 25,
        };
        let l = LoginLimiter::new(limits);
        let t0 = Instant::now();
        let ip: IpAddr = "10.77.0.9".parse().unwrap();
        l.failure("alice", Some(ip), t0);
        l.failure("alice", Some(ip), t0);
        assert!(l.check("alice", Some(ip), t0).is_ok());
        l.failure("alice", Some(ip), t0);
        assert_eq!(l.check("alice", Some(ip), t0), Err(Duration::from_secs(10)));
        // Another account from another address is not affected.
        assert!(l.check("bob", None, t0).is_ok());
        // The lock runs out by itself.
        assert!(l.check("alice", None, t0 + Duration::from_secs(10)).is_ok());
        let t1 = t0 + Duration::from_secs(11);
        l.failure("alice", None, t1);
        assert_eq!(l.check("alice", None, t1), Err(Duration::from_secs(20)));
        l.failure("alice", None, t1);
        assert_eq!(
            l.check("alice", None, t1),
            Err(Duration::from_secs(25)),
            "capped"
        );
        l.success("alice", None);
        assert!(l.check("alice", None, t1).is_ok());
    }

    #[test]
    fn limiter_locks_an_address_across_accounts() {
        let limits = LoginLimits {
            account_failures: 100,
            address_failures: 2,
            base_lock_secs: 5,
            max_lock_secs: 60,
        };
        let l = LoginLimiter::new(limits);
        let t = Instant::now();
        let ip: IpAddr = "10.77.0.10".parse().unwrap();
        l.failure("a", Some(ip), t);
        l.failure("b", Some(ip), t);
        assert!(l.check("c", Some(ip), t).is_err());
        assert!(l.check("c", Some("10.77.0.11".parse().unwrap()), t).is_ok());
    }
}
