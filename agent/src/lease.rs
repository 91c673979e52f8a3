//! netMON's lease, as this host holds it: the agent writes each renewal to a file; the guard
//! (`guard.rs`, its own process) reads it and stops the HA VPSes when it runs out. Times are on
//! the host's boot clock (`CLOCK_BOOTTIME`: it keeps counting through a suspend, and a lease
//! from before a reboot names another boot and counts as run out).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the lease is kept (the agent's own directory, out of every VPS's reach).
pub const DIR: &str = "/var/lib/serverware";

pub fn path() -> PathBuf {
    Path::new(DIR).join("lease.json")
}

/// Milliseconds since this host booted.
pub fn boot_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// This boot's id (a new one at every boot).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub boot_id: String,
    pub epoch: u64,
    /// Until when (boot clock, ms) the HA VPSes may run.
    pub until_ms: u64,
    /// How long the lease lasts past the sample it counts from.
    #[serde(default = "default_ttl")]
    pub ttl_ms: u64,
    pub ha: Vec<String>,
    pub peers: Vec<String>,
    /// Signs what guards tell each other (32 bytes).
    pub key: Vec<u8>,
}

fn default_ttl() -> u64 {
    3000
}

impl Lease {
    /// How long ago (ms) the sample its last renewal counts from was taken.
    pub fn renewed_ago(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.until_ms.saturating_sub(self.ttl_ms))
    }

    /// Whether it holds now (this boot, not run out).
    pub fn valid(&self, boot_id: &str, now_ms: u64) -> bool {
        self.boot_id == boot_id && now_ms < self.until_ms
    }
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the lease key must be 64 hex digits".into());
    }
    (0..32)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

/// A renewal: valid until `base_ms + ttl_ms`, never earlier than what the file holds for the
/// same epoch (renewals can arrive out of order), never for an earlier epoch. Without `peers`
/// the lease keeps those it holds (the controller sends them when they change), which only a
/// lease of this boot and this epoch can: otherwise the renewal is refused and the controller
/// sends them again.
pub fn renew(r: Renewal) -> Result<u64, String> {
    let until = renew_in(&path(), &boot_id(), r)?;
    Ok(until.saturating_sub(boot_ms()))
}

/// What a renewal asks (`AgentRequest::Lease`).
pub struct Renewal<'a> {
    pub epoch: u64,
    pub base_ms: u64,
    pub ttl_ms: u64,
    pub ha: Vec<String>,
    pub peers: Option<Vec<String>>,
    pub key: &'a str,
}

/// [`renew`] of the lease file `file` on boot `boot`: until when (boot clock) it holds now.
fn renew_in(file: &Path, boot: &str, r: Renewal) -> Result<u64, String> {
    let Renewal {
        epoch,
        base_ms,
        ttl_ms,
        ha,
        peers,
        key,
    } = r;
    if ttl_ms == 0 || ttl_ms > 60_000 {
        return Err("a lease lasts 1 ms to 60 s".into());
    }
    for n in &ha {
        serverware_shared::validate::resource_name("ha", n).map_err(|e| e.to_string())?;
    }
    for p in peers.iter().flatten() {
        p.parse::<std::net::Ipv4Addr>()
            .map_err(|_| format!("peer {p:?} is not an IPv4 address"))?;
    }
    let key = hex(key)?;
    // One renewal at a time: each reads what the last one wrote.
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let mut until = base_ms.saturating_add(ttl_ms);
    let old = read(file);
    if let Some(old) = &old {
        if old.boot_id == boot && old.epoch > epoch {
            return Err(format!(
                "a lease of epoch {} is held; {epoch} is older",
                old.epoch
            ));
        }
        if old.boot_id == boot && old.epoch == epoch {
            until = until.max(old.until_ms);
        }
    }
    let peers = match (peers, old) {
        (Some(p), _) => p,
        (None, Some(old)) if old.boot_id == boot && old.epoch == epoch => old.peers,
        (None, _) => return Err(NO_PEERS.into()),
    };
    write(
        file,
        &Lease {
            boot_id: boot.to_string(),
            epoch,
            until_ms: until,
            ttl_ms,
            ha,
            peers,
            key,
        },
    )?;
    Ok(until)
}

/// The refusal of a renewal without peers by a host that holds none of that lease; the
/// controller recognises it and sends them.
pub const NO_PEERS: &str = serverware_shared::agent::LEASE_PEERS_UNKNOWN;

pub fn read(path: &Path) -> Option<Lease> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Written whole (a new file renamed over the old), readable by root only.
pub fn write(path: &Path, lease: &Lease) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".lease.{}.tmp", std::process::id()));
    let body = serde_json::to_vec(lease).map_err(|e| e.to_string())?;
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&body)?;
        std::fs::rename(&tmp, path)
    })();
    r.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write the lease: {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_on_this_boot_until_it_runs_out() {
        let l = Lease {
            boot_id: "b1".into(),
            epoch: 3,
            until_ms: 1000,
            ttl_ms: 3000,
            ha: vec![],
            peers: vec![],
            key: vec![0; 32],
        };
        assert!(l.valid("b1", 999));
        assert!(!l.valid("b1", 1000));
        assert!(!l.valid("b2", 10), "another boot");
    }

    #[test]
    fn peers_are_kept_until_they_change_and_asked_for_when_unknown() {
        let dir = std::env::temp_dir().join(format!("sw-lease-test-{}", std::process::id()));
        let file = dir.join("lease.json");
        let key = "ab".repeat(32);
        let ask = |epoch, base_ms, peers: Option<&[&str]>| Renewal {
            epoch,
            base_ms,
            ttl_ms: 3000,
            ha: vec!["web1".into()],
            peers: peers.map(|p| p.iter().map(|s| s.to_string()).collect()),
            key: &key,
        };
        // Nothing held: a renewal without peers is refused with the words the controller knows.
        assert_eq!(
            renew_in(&file, "b1", ask(5, 100, None)),
            Err(NO_PEERS.into())
        );
        assert_eq!(
            renew_in(&file, "b1", ask(5, 100, Some(&["10.0.0.2"]))),
            Ok(3100)
        );
        // Kept while they do not change; a renewal never shortens the lease.
        assert_eq!(renew_in(&file, "b1", ask(5, 1100, None)), Ok(4100));
        assert_eq!(renew_in(&file, "b1", ask(5, 50, None)), Ok(4100));
        assert_eq!(read(&file).unwrap().peers, vec!["10.0.0.2".to_string()]);
        // New ones replace them.
        renew_in(&file, "b1", ask(5, 2100, Some(&["10.0.0.2", "10.0.0.3"]))).unwrap();
        assert_eq!(read(&file).unwrap().peers.len(), 2);
        // Another boot, or another controller's epoch, holds none of them.
        assert_eq!(
            renew_in(&file, "b2", ask(5, 100, None)),
            Err(NO_PEERS.into())
        );
        assert_eq!(
            renew_in(&file, "b1", ask(6, 2200, None)),
            Err(NO_PEERS.into())
        );
        assert!(renew_in(&file, "b1", ask(4, 2200, Some(&["10.0.0.2"]))).is_err());
        assert!(renew_in(&file, "b1", ask(5, 2200, Some(&["not-an-address"]))).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn keys_are_64_hex_digits() {
        assert_eq!(hex(&"ab".repeat(32)).unwrap(), vec![0xab; 32]);
        assert!(hex("ab").is_err());
        assert!(hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn the_boot_clock_moves_forward() {
        let a = boot_ms();
        let b = boot_ms();
        assert!(a > 0 && b >= a);
        assert_eq!(boot_id().len(), 36);
    }
}
