//! The guard: a small process of its own on each host (`serverware-agent guard`, started by the
//! agent, left running when the agent dies) that stops the host's HA VPSes once netMON's lease
//! (`lease.rs`) has run out, unless the controller itself is down.
//!
//! Cut off, or the controller down? A run-out lease alone cannot tell. The guard asks the other
//! hosts' guards (UDP, [`GUARD_PORT`]) whether their leases still hold; their answers are signed
//! with the key the controller hands out with every lease, and carry the asker's nonce:
//! - some other host's lease holds: the controller is up and renews others, so this host is the
//!   one cut off. It fences.
//! - a majority of all hosts (this one included) answers, and every lease has run out: the
//!   controller is down or restarting. Nobody can start a copy elsewhere then (the controller
//!   moves VPSes only while it holds the leases of a majority), so the guard holds on, and asks
//!   again every [`RECHECK_MS`].
//! - otherwise (alone, or with a minority): it fences. A host cut off from everything stops its
//!   HA VPSes even if the controller happens to be down too; two failures at once cost downtime,
//!   never a VPS running twice.

use crate::lease::{self, Lease};
use serverware_shared::agent::{
    guard_verdict, renewed_slack_ms, GuardVerdict, GUARD_PORT, RECONNECT_GRACE_MS,
};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// How often a guard that holds on asks its peers again.
pub const RECHECK_MS: u64 = 1000;
/// How long it waits for its peers' answers.
pub const ASK_MS: u64 = 300;

const QUERY: &[u8; 4] = b"SWQ1";
const ANSWER: &[u8; 4] = b"SWA1";

/// HMAC-SHA256 (RFC 2104) with a key of at most 64 bytes.
pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    k[..key.len().min(64)].copy_from_slice(&key[..key.len().min(64)]);
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// An answer: the asker's nonce, the epoch, whether the lease holds and how long ago its last
/// renewal counts from, signed.
fn answer(key: &[u8], nonce: &[u8], epoch: u64, valid: bool, ago_ms: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(69);
    m.extend_from_slice(ANSWER);
    m.extend_from_slice(nonce);
    m.extend_from_slice(&epoch.to_be_bytes());
    m.push(valid as u8);
    m.extend_from_slice(&ago_ms.to_be_bytes());
    let mac = hmac(key, &m);
    m.extend_from_slice(&mac);
    m
}

/// Reads an answer to `nonce` signed with `key`: whether that peer's lease holds.
/// What a peer's guard said: whether its lease holds, and of which epoch (controller start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerLease {
    valid: bool,
    epoch: u64,
    /// How long ago its last renewal counts from.
    ago_ms: u64,
}

impl PeerLease {
    /// Renewed since this host's own lease stopped being (see `renewed_slack_ms`): the
    /// controller still renews it.
    fn renewed_since(&self, own_ago_ms: u64, ttl_ms: u64) -> bool {
        self.valid && self.ago_ms + renewed_slack_ms(ttl_ms) < own_ago_ms
    }
}

/// Reads an answer to `nonce` signed with `key`.
fn read_answer(key: &[u8], nonce: &[u8; 16], m: &[u8]) -> Option<PeerLease> {
    if m.len() != 4 + 16 + 8 + 1 + 8 + 32 || &m[..4] != ANSWER || m[4..20] != nonce[..] {
        return None;
    }
    let (body, mac) = m.split_at(37);
    // Constant time is not needed: the nonce is fresh and the answer single-use.
    (hmac(key, body)[..] == mac[..]).then(|| PeerLease {
        valid: body[28] == 1,
        epoch: u64::from_be_bytes(body[20..28].try_into().unwrap_or_default()),
        ago_ms: u64::from_be_bytes(body[29..37].try_into().unwrap_or_default()),
    })
}

/// Whether a guard about to fence should wait for its own renewal: the peers still renewed all
/// hold leases of a newer controller than its own (it restarted and renews hosts one by one).
fn restarted_controller(own_epoch: u64, renewed: &[&PeerLease]) -> bool {
    !renewed.is_empty() && renewed.iter().all(|a| a.epoch > own_epoch)
}

fn log(line: &str) {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::path::Path::new(lease::DIR).join("guard.log"))
    {
        let _ = writeln!(f, "{ms} {line}");
    }
    eprintln!("serverware-agent guard: {line}");
}

struct Guard {
    sock: UdpSocket,
    boot: String,
}

impl Guard {
    fn current(&self) -> Option<Lease> {
        lease::read(&lease::path())
    }

    /// Answers one query, if one came within `wait`.
    fn serve(&self, wait: Duration) {
        let mut buf = [0u8; 64];
        let _ = self
            .sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
            return;
        };
        if n != 20 || &buf[..4] != QUERY {
            return;
        }
        if let Some(l) = self.current() {
            let now = lease::boot_ms();
            let valid = l.valid(&self.boot, now);
            let _ = self.sock.send_to(
                &answer(&l.key, &buf[4..20], l.epoch, valid, l.renewed_ago(now)),
                from,
            );
        }
    }

    /// Asks every peer; the answers that came in time, signed with the lease's key.
    fn ask(&self, l: &Lease) -> Vec<PeerLease> {
        let mut nonce = [0u8; 16];
        if std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut nonce))
            .is_err()
        {
            return Vec::new();
        }
        let mut q = QUERY.to_vec();
        q.extend_from_slice(&nonce);
        let peers: Vec<SocketAddr> = l
            .peers
            .iter()
            .filter_map(|p| p.parse().ok())
            .map(|ip| SocketAddr::new(ip, GUARD_PORT))
            .collect();
        for p in &peers {
            let _ = self.sock.send_to(&q, p);
        }
        let mut got: std::collections::HashMap<SocketAddr, PeerLease> = Default::default();
        let end = Instant::now() + Duration::from_millis(ASK_MS);
        let mut buf = [0u8; 128];
        while got.len() < peers.len() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = self.sock.set_read_timeout(Some(left));
            let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
                break;
            };
            if n == 20 && &buf[..4] == QUERY {
                // A peer asking at the same time: answered too.
                let now = lease::boot_ms();
                let valid = l.valid(&self.boot, now);
                let _ = self.sock.send_to(
                    &answer(&l.key, &buf[4..20], l.epoch, valid, l.renewed_ago(now)),
                    from,
                );
                continue;
            }
            if !peers.contains(&from) {
                continue;
            }
            if let Some(v) = read_answer(&l.key, &nonce, &buf[..n]) {
                got.insert(from, v);
            }
        }
        got.into_values().collect()
    }
}

/// The init of each running HA VPS, held open (a pidfd) while the lease holds, so that a fence
/// is one signal per VPS sent at once: no program to run, no lookup, however many there are.
/// Killing a PID namespace's init kills every process in it, and its pidfd becomes readable
/// only once they are all gone.
#[derive(Default)]
struct Inits {
    held: std::collections::HashMap<String, (u32, std::os::fd::OwnedFd)>,
    at: Option<Instant>,
}

/// How often the inits are looked up again while the lease holds.
const INITS_EVERY: Duration = Duration::from_millis(2000);

fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: a plain syscall; a descriptor on success.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: fresh, owned by nobody else.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether `pid` is the init of container `name`: pid 1 of a namespace of its own, in that
/// container's cgroup. Read after its pidfd was opened: had the pid been reused since, the
/// pidfd names the old process, and a signal through it reaches nobody.
fn is_init_of(pid: u32, name: &str) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let ns_init = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .is_some_and(|ids| {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            ids.len() > 1 && ids.last() == Some(&"1")
        });
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    ns_init
        && cgroup
            .lines()
            .any(|l| l.split(['/', ':']).any(|part| payload_of(part, name)))
}

/// Whether a cgroup path component is container `name`'s: LXC's `lxc.payload.NAME`, with a
/// `-N` LXC adds when that name was taken (a cgroup left behind), or the bare name of older
/// versions.
fn payload_of(part: &str, name: &str) -> bool {
    if part == name {
        return true;
    }
    let Some(rest) = part
        .strip_prefix("lxc.payload.")
        .and_then(|r| r.strip_prefix(name))
    else {
        return false;
    };
    rest.is_empty()
        || rest
            .strip_prefix('-')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl Inits {
    /// Looks the inits up again (one `lxc-ls`), keeping what is still the same process.
    fn refresh(&mut self, ha: &[String]) {
        self.at = Some(Instant::now());
        let before: std::collections::BTreeSet<String> = self.held.keys().cloned().collect();
        let states = crate::lxc::states();
        let mut next = std::collections::HashMap::new();
        for name in ha {
            let Some(pid) = states
                .get(name)
                .filter(|s| s.state == "running")
                .and_then(|s| s.init_pid)
            else {
                continue;
            };
            if let Some((p, fd)) = self.held.remove(name) {
                if p == pid {
                    next.insert(name.clone(), (p, fd));
                    continue;
                }
            }
            if let Some(fd) = pidfd_open(pid) {
                if is_init_of(pid, name) {
                    next.insert(name.clone(), (pid, fd));
                }
            }
        }
        let now: std::collections::BTreeSet<String> = next.keys().cloned().collect();
        if now != before {
            let running = ha
                .iter()
                .filter(|n| states.get(*n).is_some_and(|s| s.state == "running"))
                .count();
            log(&format!(
                "holding the init of {} of {} running HA VPSes",
                next.len(),
                running
            ));
        }
        self.held = next;
    }

    fn due(&self) -> bool {
        self.at.is_none_or(|t| t.elapsed() >= INITS_EVERY)
    }
}

/// Stops every HA VPS of the lease that runs, all at once; what it stopped and how long it took
/// until their last process was gone.
fn fence(l: &Lease, inits: &mut Inits) -> (Vec<String>, Duration) {
    use std::os::fd::AsRawFd;
    let t0 = Instant::now();
    let mut stopped = Vec::new();
    let mut waiting: Vec<(&String, &std::os::fd::OwnedFd)> = Vec::new();
    for name in &l.ha {
        if let Some((_, fd)) = inits.held.get(name) {
            // SAFETY: a pidfd of ours; no memory is passed.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            if r == 0 {
                waiting.push((name, fd));
            }
        }
    }
    // Until every killed init (and so every process of its VPS) is gone.
    let deadline = t0 + Duration::from_secs(10);
    let mut fds: Vec<libc::pollfd> = waiting
        .iter()
        .map(|(_, fd)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !fds.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log(&format!(
                "{} VPSes were killed but not gone after 10 s",
                fds.len()
            ));
            break;
        }
        // SAFETY: valid pollfds.
        unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                left.as_millis() as i32,
            )
        };
        fds.retain(|p| p.revents == 0);
        for p in &mut fds {
            p.revents = 0;
        }
    }
    // Gone for sure: those whose pidfd said so (any still waiting is LXC's to stop below).
    for (name, fd) in &waiting {
        if !fds.iter().any(|p| p.fd == fd.as_raw_fd()) {
            stopped.push((*name).clone());
        }
    }
    inits.held.clear();
    inits.at = None;
    // Whatever else still runs (started since the last look-up): LXC stops it, all in
    // parallel. Those whose init is gone are stopped, whatever LXC's monitor says yet.
    let states = if stopped.len() == l.ha.len() {
        Default::default()
    } else {
        crate::lxc::states()
    };
    let left: Vec<&String> =
        l.ha.iter()
            .filter(|n| !stopped.contains(n))
            .filter(|n| states.get(*n).is_some_and(|s| s.state != "stopped"))
            .collect();
    let killed: Vec<(String, Result<(), String>)> = std::thread::scope(|s| {
        let hs: Vec<_> = left
            .iter()
            .map(|n| s.spawn(move || ((*n).clone(), crate::lxc::kill(n))))
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for (name, r) in killed {
        match r {
            Ok(()) => {
                if !stopped.contains(&name) {
                    stopped.push(name)
                }
            }
            Err(e) => log(&format!("cannot stop {name}: {e}")),
        }
    }
    (stopped, t0.elapsed())
}

/// Runs the guard until the host goes down. Returns at once when another guard runs.
pub fn run() -> Result<(), String> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(lease::DIR).map_err(|e| e.to_string())?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::path::Path::new(lease::DIR).join("guard.lock"))
        .map_err(|e| format!("cannot open the guard's lock: {e}"))?;
    // SAFETY: an open descriptor; flock has no memory effects.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(());
    }
    let sock = UdpSocket::bind(("0.0.0.0", GUARD_PORT))
        .map_err(|e| format!("cannot listen on UDP port {GUARD_PORT}: {e}"))?;
    let g = Guard {
        sock,
        boot: lease::boot_id(),
    };
    log("started");
    let mut held_epoch = None;
    // When peers renewed by a newer controller were first seen (see RECONNECT_GRACE_MS).
    let mut newer_seen: Option<Instant> = None;
    let mut grace_logged = false;
    let mut inits = Inits::default();
    let mut next = Instant::now();
    loop {
        g.serve(next.saturating_duration_since(Instant::now()));
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + Duration::from_millis(100);
        let Some(l) = g.current() else { continue };
        if l.valid(&g.boot, lease::boot_ms()) || l.ha.is_empty() {
            if !l.ha.is_empty() && inits.due() {
                inits.refresh(&l.ha);
            }
            held_epoch = None;
            newer_seen = None;
            grace_logged = false;
            continue;
        }
        let answers = g.ask(&l);
        let own_ago = l.renewed_ago(lease::boot_ms());
        let renewed: Vec<&PeerLease> = answers
            .iter()
            .filter(|a| a.renewed_since(own_ago, l.ttl_ms))
            .collect();
        let mut valid = vec![false; answers.len()];
        valid[..renewed.len()].fill(true);
        let verdict = guard_verdict(l.peers.len() + 1, &valid);
        if verdict == GuardVerdict::Fence && restarted_controller(l.epoch, &renewed) {
            let since = *newer_seen.get_or_insert_with(Instant::now);
            if since.elapsed() < Duration::from_millis(RECONNECT_GRACE_MS) {
                if !grace_logged {
                    grace_logged = true;
                    log(&format!(
                        "lease {} ran out while a restarted controller renews the other hosts: waiting up to {} s for mine",
                        l.epoch,
                        RECONNECT_GRACE_MS / 1000
                    ));
                }
                next = Instant::now() + Duration::from_millis(RECHECK_MS);
                continue;
            }
        }
        match verdict {
            GuardVerdict::Fence => {
                let (stopped, took) = fence(&l, &mut inits);
                if !stopped.is_empty() {
                    log(&format!(
                        "lease {} ran out ({} of {} peers answered, {} still renewed): stopped {} in {} ms",
                        l.epoch,
                        answers.len(),
                        l.peers.len(),
                        valid.iter().filter(|v| **v).count(),
                        stopped.join(" "),
                        took.as_millis()
                    ));
                }
                held_epoch = None;
            }
            GuardVerdict::Hold => {
                if held_epoch != Some(l.epoch) {
                    held_epoch = Some(l.epoch);
                    log(&format!(
                        "lease {} ran out, and every host that answered ({} of {}) lost the controller too: holding on",
                        l.epoch,
                        answers.len(),
                        l.peers.len()
                    ));
                }
                next = Instant::now() + Duration::from_millis(RECHECK_MS);
            }
        }
    }
}

/// Starts the guard in a session of its own, unless one runs (it exits at once then).
pub fn spawn() {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("guard")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid and setpriority are async-signal-safe; the guard outlives the agent and
    // its SSH session, and runs ahead of a busy host's VPSes (a late guard fences late).
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::setpriority(libc::PRIO_PROCESS, 0, -10);
            Ok(())
        });
    }
    if let Ok(mut child) = cmd.spawn() {
        std::thread::spawn(move || {
            let _ = child.wait();
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_containers_cgroup_is_known_with_or_without_lxcs_suffix() {
        use super::payload_of;
        assert!(payload_of("lxc.payload.ha-3", "ha-3"));
        assert!(payload_of("lxc.payload.ha-3-5", "ha-3"));
        assert!(payload_of("ha-3", "ha-3"));
        assert!(!payload_of("lxc.payload.ha-3-x", "ha-3"));
        assert!(!payload_of("lxc.payload.ha-31", "ha-3"));
        assert!(!payload_of("lxc.payload.ha-3-", "ha-3"));
        assert!(!payload_of("lxc.monitor.ha-3", "ha-3"));
    }

    use super::*;

    /// RFC 4231, test case 2.
    #[test]
    fn hmac_matches_the_rfc() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// Peers renewed only by a newer controller: it restarted, this host may be next.
    #[test]
    fn a_restarted_controller_is_given_time_to_renew_this_host() {
        let p = |epoch| PeerLease {
            valid: true,
            epoch,
            ago_ms: 0,
        };
        assert!(restarted_controller(5, &[&p(9)]));
        assert!(restarted_controller(5, &[&p(9), &p(9)]));
        // A peer renewed in this host's own epoch: the controller runs and skips this host.
        assert!(!restarted_controller(5, &[&p(9), &p(5)]));
        assert!(!restarted_controller(5, &[&p(5)]));
        // Nobody renewed: not this rule's case.
        assert!(!restarted_controller(5, &[]));
    }

    /// Leases that stopped being renewed when the controller died (a sampling interval apart
    /// at most) never count as renewed; a running controller's always do.
    #[test]
    fn a_peer_counts_as_renewed_only_if_renewed_after_this_host() {
        let p = |ago_ms| PeerLease {
            valid: true,
            epoch: 1,
            ago_ms,
        };
        let ttl = 3000;
        // This host's lease just ran out (3 s since its last renewal).
        for own in [3000, 3100, 4000] {
            // The controller died: the peer's last renewal is at most one interval later.
            assert!(!p(own - 1000).renewed_since(own, ttl), "{own}");
            assert!(!p(own).renewed_since(own, ttl), "{own}");
            // The controller runs: renewed within the last interval (and a bit of transit).
            assert!(p(1000).renewed_since(own, ttl), "{own}");
            assert!(p(1500).renewed_since(own, ttl), "{own}");
        }
        let gone = PeerLease {
            valid: false,
            epoch: 1,
            ago_ms: 0,
        };
        assert!(!gone.renewed_since(3000, ttl));
    }

    #[test]
    fn answers_are_signed_and_bound_to_the_question() {
        let key = [7u8; 32];
        let nonce = [1u8; 16];
        let a = answer(&key, &nonce, 4, true, 700);
        assert_eq!(
            read_answer(&key, &nonce, &a),
            Some(PeerLease {
                valid: true,
                epoch: 4,
                ago_ms: 700
            })
        );
        let a = answer(&key, &nonce, 4, false, 0);
        assert_eq!(read_answer(&key, &nonce, &a).map(|p| p.valid), Some(false));
        // Another key (a VPS forging one), another question (a replay), a flipped bit.
        assert_eq!(read_answer(&[8u8; 32], &nonce, &a), None);
        assert_eq!(read_answer(&key, &[2u8; 16], &a), None);
        let mut bad = a.clone();
        bad[28] ^= 1;
        assert_eq!(read_answer(&key, &nonce, &bad), None);
    }
}
