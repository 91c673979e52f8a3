//! Hosts at run time. `HostManager` holds each host's runtime (its view, connection, sample
//! ring, rollup minute and lease) and hands out connections for operations:
//! - `conn.rs`: the SSH connection per host, the agent, samples read, status and its events;
//! - `samples.rs`: the ring for live charts, the minute's rollup, unknown containers;
//! - `lease.rs`: netMON's leases (what they carry, renewal from samples);
//! - `admin.rs`: adding, editing and removing hosts; `view.rs`: what the API shows;
//!   `rollups.rs`: minutes and their retention; `upgrade.rs`: the agent rolled out one host at a time.

use crate::db::Db;
use chrono::{DateTime, Utc};
use russh::keys::PrivateKey;
use serverware_shared::agent::HostSample;
use serverware_shared::state::HostStatus;
use serverware_shared::ws::ServerMessage;
use serverware_shared::HostId;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod admin;
mod conn;
mod lease;
mod rollups;
mod samples;
mod upgrade;
mod view;
pub use admin::{
    add, add_provisioned, edit, fail_over, probe, reboot, remove, ssh_error, HostAdmin,
};
pub use conn::{heartbeat, Conn, AGENT_PATH, MIN_HEARTBEAT};
use lease::{lease_key, LeaseState};
pub use lease::{next_lease_epoch, LeasePlan, LeaseTimes};
pub use rollups::{prune_rollups, Bucket, RollupRow};
pub use samples::RING;
pub use view::{get, history, list, load_with_vpses, page, response, samples};

/// Root-filesystem streams at once per host. Each is an SSH channel beside the agent's own, and
/// OpenSSH's default `MaxSessions` is 10 per connection: four leave room for the agent,
/// a transfer in each direction and commands.
pub const TRANSFERS_PER_HOST: usize = 4;

/// How often data past its retention is deleted.
pub const RETENTION_EVERY: Duration = Duration::from_secs(600);

/// What the controller knows of a host right now.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    /// `None` until the host's connection has started.
    pub status: Option<HostStatus>,
    pub latest: Option<HostSample>,
    pub last_seen: Option<DateTime<Utc>>,
    pub agent_version: Option<String>,
    pub hostname: Option<String>,
    pub kernel: Option<String>,
    pub cpu_model: Option<String>,
}

struct Runtime {
    view: Mutex<HostView>,
    lease: Arc<Mutex<LeaseState>>,
    heard: Mutex<Option<Instant>>,
    /// When this controller first began a handshake with it (its turn among the hosts
    /// connecting at start: see [`MAX_HANDSHAKES`]).
    first_try: Mutex<Option<Instant>>,
    conn: Mutex<Option<Conn>>,
    ring: Mutex<VecDeque<HostSample>>,
    /// The containers of the newest sample, to notice new ones.
    containers: Mutex<Vec<String>>,
    bucket: Mutex<Option<Bucket>>,
    /// It went offline after being online, and that was said in an event (`host.offline`):
    /// its return is said too.
    lost: std::sync::atomic::AtomicBool,
    stop: tokio::sync::watch::Sender<bool>,
    interval: tokio::sync::watch::Sender<u32>,
}

pub use crate::repo::hosts::HostRow;

pub struct HostManager {
    db: Db,
    hub: Arc<crate::hub::Hub>,
    key: Arc<PrivateKey>,
    agent: Option<Arc<Vec<u8>>>,
    runtimes: Mutex<HashMap<HostId, Arc<Runtime>>>,
    /// Transfer slots per host (its `max_transfers`, and the semaphore); they outlive
    /// reconnections. A changed limit applies to the transfers that start after it.
    transfers: Mutex<HashMap<HostId, (usize, Arc<tokio::sync::Semaphore>)>>,
    /// Containers found on hosts that no VPS record names, already reported.
    reported_unknown: Arc<Mutex<std::collections::HashSet<(HostId, String)>>>,
    /// This controller's lease epoch (its start, in ms since the epoch: a later start gives
    /// later leases) and the key that signs what guards tell each other (hex).
    lease_epoch: u64,
    lease_key: String,
    /// The agent's rollout to hosts, one at a time.
    rollout: Arc<upgrade::Rollout>,
    /// Places for SSH handshakes in progress ([`MAX_HANDSHAKES`]).
    handshakes: Arc<tokio::sync::Semaphore>,
    /// Hosts that sent a sample since the `hosts` topic was last told ([`HostManager::tell`]).
    sampled: Mutex<std::collections::BTreeSet<HostId>>,
    /// Minutes of rollups ended and not yet written.
    rollups_due: Mutex<Vec<(HostId, rollups::Bucket)>>,
}

/// At most this many SSH handshakes at once: after a controller restart every host reconnects,
/// and a thousand key exchanges at once would starve the samples of the hosts already back.
/// The rest wait their turn (netMON counts a host's grace to connect from its turn).
pub const MAX_HANDSHAKES: usize = 16;

/// A host's status and newest figures as the live socket tells them.
fn status_entry(id: HostId, v: &HostView) -> serverware_shared::ws::HostStatusEntry {
    serverware_shared::ws::HostStatusEntry {
        host_id: id.get(),
        status: v
            .status
            .unwrap_or(HostStatus::Connecting)
            .as_str()
            .to_string(),
        last_seen_at: v.last_seen,
        summary: v.latest.as_ref().map(HostSample::summary),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HostManager {
    pub fn new(
        db: Db,
        hub: Arc<crate::hub::Hub>,
        key: PrivateKey,
        agent: Option<Vec<u8>>,
        lease_epoch: u64,
    ) -> Arc<Self> {
        Arc::new(HostManager {
            db,
            hub,
            agent: agent.map(Arc::new),
            runtimes: Mutex::new(HashMap::new()),
            transfers: Mutex::new(HashMap::new()),
            reported_unknown: Default::default(),
            lease_epoch,
            lease_key: lease_key(&key),
            key: Arc::new(key),
            rollout: Arc::new(upgrade::Rollout::new()),
            handshakes: Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES)),
            sampled: Default::default(),
            rollups_due: Default::default(),
        })
    }

    /// Once a second, for as long as the manager lives: tells the `hosts` topic the newest
    /// figures of the hosts sampled since, in one message (a large site's lists get one message
    /// a second, not one per sample per host; a change of status is told at once), and writes
    /// the minutes of rollups that ended, in one transaction.
    pub fn every_second(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(m) = me.upgrade() else { return };
                m.tell();
                m.write_rollups();
            }
        });
    }

    fn tell(&self) {
        let due = std::mem::take(&mut *lock(&self.sampled));
        if due.is_empty() {
            return;
        }
        self.hub
            .publish_with(serverware_shared::ws::Topic::Hosts, || {
                let runtimes = lock(&self.runtimes);
                let hosts = due
                    .iter()
                    .filter_map(|id| Some(status_entry(*id, &lock(&runtimes.get(id)?.view))))
                    .collect();
                ServerMessage::HostStatuses { hosts }
            });
    }

    pub fn controller_key(&self) -> Arc<PrivateKey> {
        self.key.clone()
    }

    pub fn agent_binary(&self) -> Option<Arc<Vec<u8>>> {
        self.agent.clone()
    }

    /// Starts the connection of every stored host.
    pub async fn start_all(self: &Arc<Self>) -> anyhow::Result<()> {
        let rows: Vec<HostRow> = self
            .db
            .run(crate::repo::hosts::all)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for r in rows {
            self.spawn(r);
        }
        Ok(())
    }

    pub fn spawn(self: &Arc<Self>, row: HostRow) {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (interval, interval_rx) = tokio::sync::watch::channel(row.sample_interval_ms as u32);
        let old = lock(&self.runtimes).get(&row.id).cloned();
        let rt = Arc::new(Runtime {
            view: Mutex::new(HostView {
                status: Some(HostStatus::Connecting),
                ..Default::default()
            }),
            conn: Mutex::new(None),
            containers: Mutex::new(Vec::new()),
            // A reconnect (after an edit) keeps the live history.
            ring: Mutex::new(
                old.as_ref()
                    .map(|o| lock(&o.ring).clone())
                    .unwrap_or_default(),
            ),
            bucket: Mutex::new(old.as_ref().and_then(|o| lock(&o.bucket).take())),
            lost: std::sync::atomic::AtomicBool::new(
                old.as_ref()
                    .is_some_and(|o| o.lost.load(std::sync::atomic::Ordering::SeqCst)),
            ),
            // The lease, too: the host may hold one from before the reconnect.
            lease: old.as_ref().map(|o| o.lease.clone()).unwrap_or_default(),
            heard: Mutex::new(old.as_ref().and_then(|o| *lock(&o.heard))),
            first_try: Mutex::new(old.as_ref().and_then(|o| *lock(&o.first_try))),
            stop,
            interval,
        });
        if let Some(old) = lock(&self.runtimes).insert(row.id, rt.clone()) {
            let _ = old.stop.send(true);
        }
        let mgr = self.clone();
        tokio::spawn(async move { mgr.run_host(row, rt, stop_rx, interval_rx).await });
    }

    /// Disconnects a host (when it is deleted).
    pub fn stop(&self, id: HostId) {
        if let Some(rt) = lock(&self.runtimes).remove(&id) {
            let _ = rt.stop.send(true);
        }
    }

    /// The connection to a host's agent, if it is online.
    pub fn conn(&self, id: HostId) -> Option<Conn> {
        lock(&self.runtimes)
            .get(&id)
            .and_then(|rt| lock(&rt.conn).clone())
    }

    /// Whether the host has a live connection now (without taking a handle to it: asked for
    /// every host and VPS several times a second).
    pub fn connected(&self, id: HostId) -> bool {
        lock(&self.runtimes)
            .get(&id)
            .is_some_and(|rt| lock(&rt.conn).is_some())
    }

    /// The transfer slots of a host that allows `max` transfers at once.
    pub fn transfer_slots(&self, id: HostId, max: usize) -> Arc<tokio::sync::Semaphore> {
        let max = max.max(1);
        let mut m = lock(&self.transfers);
        match m.get(&id) {
            Some((n, sem)) if *n == max => sem.clone(),
            _ => {
                let sem = Arc::new(tokio::sync::Semaphore::new(max));
                m.insert(id, (max, sem.clone()));
                sem
            }
        }
    }

    /// Changes how often a connected host samples, without reconnecting.
    pub fn set_interval(&self, id: HostId, millis: u32) {
        if let Some(rt) = lock(&self.runtimes).get(&id) {
            let _ = rt.interval.send(millis);
        }
    }

    pub fn view(&self, id: HostId) -> Option<HostView> {
        self.with_view(id, HostView::clone)
    }

    /// Reads the host's view in place (a view holds the newest sample: copying it to read a
    /// figure or two costs more than the reading).
    pub fn with_view<R>(&self, id: HostId, read: impl FnOnce(&HostView) -> R) -> Option<R> {
        lock(&self.runtimes)
            .get(&id)
            .map(|rt| read(&lock(&rt.view)))
    }

    /// Whether every host's connection has come to a first verdict (online, offline, or its
    /// key refused), rather than still connecting.
    pub fn all_settled(&self) -> bool {
        lock(&self.runtimes)
            .values()
            .all(|rt| !matches!(lock(&rt.view).status, None | Some(HostStatus::Connecting)))
    }

    /// Every host's view, by id.
    pub fn views(&self) -> HashMap<HostId, HostView> {
        lock(&self.runtimes)
            .iter()
            .map(|(id, rt)| (*id, lock(&rt.view).clone()))
            .collect()
    }
}
