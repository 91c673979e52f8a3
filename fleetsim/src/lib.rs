//! A fleet of simulated hosts, for finding what breaks at scale (`sw-fleetsim`, the fleet bench
//! and the 200-host test). Each simulated host is an SSH server of its own (its own address on
//! loopback, its own host key, russh), which the controller reaches exactly as it reaches a real
//! host: it logs in, installs its key, checks the agent's checksum and starts the agent, which
//! speaks the real agent protocol (`shared::agent`): hello, samples at the interval asked,
//! leases, VPS definitions, starts and stops, netDUPLO's cuts and scans of a small tree per VPS.
//! Everything above the agent protocol is the real controller.
//!
//! What it does not simulate (see the README's fleet section): no containers run (a VPS is a
//! record with a state and plausible figures), a VPS's network is its address answering pings
//! while it runs (no TCP service answers), a VPS's tree is five entries (its log file changes at
//! every sixth cut unless told otherwise, and a change journal like the agent's says so),
//! templates are read and
//! dropped (and restores and standby copies write nothing), moves between hosts and drills and
//! consoles are refused, and a host powered off refuses connections (a real one lets them time out).

mod agent;
pub mod net;
mod restore;
mod scan;
mod server;

pub use server::HostKeyLine;

use serverware_shared::agent::VpsSpec;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where the controller keeps its agent on a host (as `hosts::AGENT_PATH`).
pub const AGENT_PATH: &str = "/var/lib/serverware/bin/serverware-agent";

/// How a fleet is made.
#[derive(Debug, Clone)]
pub struct Options {
    pub hosts: usize,
    /// The first host's address; the rest follow it (127.77.0.1, 127.77.0.2, …; each /24 holds
    /// 200 hosts).
    pub first: Ipv4Addr,
    pub port: u16,
    /// The root password each host accepts until the controller's key is installed (and after).
    pub password: String,
    /// The checksum of an agent the hosts already hold at [`AGENT_PATH`] (a fleet whose agent
    /// was installed before): the controller does not send it again.
    pub agent_sha256: Option<String>,
    /// Seeds the figures, so two runs see the same load.
    pub seed: u64,
    /// Where running VPSes' addresses answer pings (see [`net`]); None: they do not.
    pub net: Option<Arc<net::Net>>,
    /// Each VPS's log file changes at every this many netDUPLO cuts (1: at every cut; see
    /// [`DEFAULT_CHANGE_EVERY`]).
    pub change_every: u64,
}

/// A VPS's log file changes at every sixth cut: about once a minute at the product's 10 s
/// duplication interval.
pub const DEFAULT_CHANGE_EVERY: u64 = 6;

/// One simulated VPS container.
#[derive(Debug, Clone)]
pub(crate) struct Container {
    pub spec: Option<VpsSpec>,
    pub running: bool,
    pub since: Instant,
    pub pid: u32,
    /// Its files' inode numbers come from this (its first pid: a restart changes no inode).
    pub ino_seed: u32,
    /// netDUPLO's cuts of its tree so far: its log file changes every few
    /// (`scan::CHANGE_EVERY`), just before a cut.
    pub cuts: u64,
    /// Its change journal, from the first cut (as the agent's: what changed is handed out by
    /// cuts until the cycle that carried it is acknowledged).
    pub journal: Option<SimJournal>,
    pub rx_total: u64,
    pub tx_total: u64,
}

/// A simulated VPS's change journal.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SimJournal {
    /// The last cut handed out.
    pub cut: u64,
    /// The log version it last saw.
    pub version: u64,
    /// The log file changed, handed out and not acknowledged yet.
    pub pending: bool,
    /// A full compare was handed out and not acknowledged yet: cuts stay full until it is.
    pub pending_full: bool,
}

impl Container {
    /// A container just made: no configuration yet, stopped.
    pub(crate) fn new(pid: u32) -> Container {
        Container {
            spec: None,
            running: false,
            since: Instant::now(),
            pid,
            ino_seed: pid,
            cuts: 0,
            journal: None,
            rx_total: 0,
            tx_total: 0,
        }
    }
}

/// What a simulated host holds.
#[derive(Default)]
pub(crate) struct HostState {
    /// Files written by the controller (uploads): path → SHA-256.
    pub files: HashMap<String, String>,
    /// Keys in root's authorized_keys (their base64 part).
    pub authorized: HashSet<String>,
    pub containers: BTreeMap<String, Container>,
    /// netMON's lease: the HA VPSes and until when (boot clock, ms) they may run.
    pub lease: Option<(u64, Vec<String>)>,
    pub cut: u64,
    pub next_pid: u32,
    /// Standby copies of other hosts' HA VPSes: VPS id → the cycle held.
    pub standbys: BTreeMap<i64, u64>,
}

/// One simulated host.
pub struct SimHost {
    pub index: usize,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub(crate) key: russh::keys::PrivateKey,
    pub(crate) state: Mutex<HostState>,
    /// When it last booted: its boot clock, which leases count on.
    pub(crate) boot: Mutex<Instant>,
    /// Bumped at every power-off and power-on: connections of an older power are dead.
    pub(crate) power: tokio::sync::watch::Sender<u64>,
    pub(crate) listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    pub(crate) password: String,
    pub(crate) seed: u64,
    pub(crate) net: Option<Arc<net::Net>>,
    pub(crate) change_every: u64,
}

impl SimHost {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Container `c` runs or stops: its address answers or no longer does.
    pub(crate) fn set_running(&self, c: &mut Container, running: bool) {
        if c.running != running {
            if let (Some(net), Some(spec)) = (&self.net, &c.spec) {
                net.set(&spec.ipv4, running);
            }
        }
        c.running = running;
    }

    pub(crate) fn boot_ms(&self) -> u64 {
        self.boot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            .as_millis() as u64
    }

    pub fn name(&self) -> String {
        format!("sim-{:04}", self.index + 1)
    }

    /// The host's public key, as an OpenSSH line (what the controller pins).
    pub fn host_key(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    pub fn is_on(&self) -> bool {
        self.listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The containers it holds and whether each runs.
    pub fn containers(&self) -> Vec<(String, bool)> {
        self.lock()
            .containers
            .iter()
            .map(|(n, c)| (n.clone(), c.running))
            .collect()
    }
}

/// What the controller needs to add a simulated host.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HostInfo {
    pub name: String,
    /// `ssh://root@ADDRESS:PORT`
    pub address: String,
    pub host_key: String,
}

/// The fleet: every simulated host, listening.
pub struct Fleet {
    pub hosts: Vec<Arc<SimHost>>,
}

/// The address of host `i` after `first`: 200 hosts per /24, never .0 or .255.
pub fn address(first: Ipv4Addr, i: usize) -> Ipv4Addr {
    let [a, b, c, d] = first.octets();
    let start = (u32::from(c) * 200 + u32::from(d).saturating_sub(1)) as usize + i;
    Ipv4Addr::new(a, b, (start / 200) as u8, (start % 200) as u8 + 1)
}

impl Fleet {
    /// Makes the hosts (each with a new key) and powers them all on.
    pub async fn start(opts: Options) -> anyhow::Result<Fleet> {
        if opts.hosts == 0 || opts.hosts > 200 * 250 {
            anyhow::bail!("a fleet has 1–50000 hosts");
        }
        let mut hosts = Vec::with_capacity(opts.hosts);
        for i in 0..opts.hosts {
            let mut state = HostState {
                next_pid: 1000,
                ..Default::default()
            };
            if let Some(sum) = &opts.agent_sha256 {
                state.files.insert(AGENT_PATH.to_string(), sum.clone());
            }
            let host = Arc::new(SimHost {
                index: i,
                ip: address(opts.first, i),
                port: opts.port,
                key: server::new_key(),
                state: Mutex::new(state),
                boot: Mutex::new(Instant::now()),
                power: tokio::sync::watch::channel(0).0,
                listener: Mutex::new(None),
                password: opts.password.clone(),
                seed: opts.seed.wrapping_add(i as u64 * 7919),
                net: opts.net.clone(),
                change_every: opts.change_every.max(1),
            });
            hosts.push(host);
        }
        let fleet = Fleet { hosts };
        for i in 0..fleet.hosts.len() {
            fleet.power_on(i).await?;
        }
        Ok(fleet)
    }

    pub fn describe(&self) -> Vec<HostInfo> {
        self.hosts
            .iter()
            .map(|h| HostInfo {
                name: h.name(),
                address: format!("ssh://root@{}:{}", h.ip, h.port),
                host_key: h.host_key(),
            })
            .collect()
    }

    /// Host `i` loses power: its connections go silent (nothing read, nothing sent, as with a
    /// machine that is off) and new ones are refused. Its containers stop with it.
    pub fn power_off(&self, i: usize) -> bool {
        let Some(h) = self.hosts.get(i) else {
            return false;
        };
        let Some(l) = h.listener.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return false;
        };
        l.abort();
        h.power.send_modify(|g| *g += 1);
        let mut s = h.lock();
        for c in s.containers.values_mut() {
            h.set_running(c, false);
        }
        s.lease = None;
        true
    }

    /// Host `i` boots: a new boot clock, its containers stopped (the controller starts what
    /// should run), the connections from before its power-off gone.
    pub async fn power_on(&self, i: usize) -> anyhow::Result<bool> {
        let Some(h) = self.hosts.get(i) else {
            return Ok(false);
        };
        if h.is_on() {
            return Ok(false);
        }
        *h.boot.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        h.power.send_modify(|g| *g += 1);
        let listener = tokio::net::TcpListener::bind((h.ip, h.port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}", h.ip, h.port))?;
        let task = tokio::spawn(server::accept(h.clone(), listener));
        *h.listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_zero_and_broadcast() {
        let first = Ipv4Addr::new(127, 77, 0, 1);
        assert_eq!(address(first, 0), Ipv4Addr::new(127, 77, 0, 1));
        assert_eq!(address(first, 199), Ipv4Addr::new(127, 77, 0, 200));
        assert_eq!(address(first, 200), Ipv4Addr::new(127, 77, 1, 1));
        assert_eq!(address(first, 999), Ipv4Addr::new(127, 77, 4, 200));
        let all: HashSet<Ipv4Addr> = (0..5000).map(|i| address(first, i)).collect();
        assert_eq!(all.len(), 5000);
    }
}
