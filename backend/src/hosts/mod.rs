//! Hosts at run time: one SSH connection per host with its agent streaming netRES samples,
//! reconnected with backoff. A host whose key changed is flagged and never trusted silently.

use crate::db::Db;
use crate::ssh::{Credentials, Session, SshError};
use chrono::{DateTime, Utc};
use russh::keys::PrivateKey;
use serverware_shared::agent::{
    AgentFrame, AgentRequest, AgentResponse, HostSample, PROTOCOL_VERSION,
};
use serverware_shared::api::HostRollup;
use serverware_shared::state::HostStatus;
use serverware_shared::ws::ServerMessage;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod admin;
mod rollups;
mod view;
pub use admin::{add, edit, fail_over, probe, remove, ssh_error, HostAdmin};
use rollups::{figures, minute_of, store_bucket};
pub use rollups::{prune_rollups, Bucket, RollupRow};
pub use view::{get, history, list, load_with_vpses, response, samples};

/// The key that signs what hosts' guards tell each other (hex): derived from the controller's
/// own key, so that it stays the same across restarts and never leaves the controller's hosts.
fn lease_key(key: &PrivateKey) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"serverware netMON lease key\0");
    if let Some(k) = key.key_data().ed25519() {
        h.update(k.private.to_bytes());
    }
    hex::encode(h.finalize())
}

/// Where the agent lives on a host.
pub const AGENT_PATH: &str = "/var/lib/serverware/bin/serverware-agent";

/// Samples kept in memory per host for live charts (10 minutes at the default 1 s).
pub const RING: usize = 600;
/// Root-filesystem streams at once per host. Each is an SSH channel beside the agent's own, and
/// OpenSSH's default `MaxSessions` is 10 per connection: four leave room for the agent,
/// a transfer in each direction and commands.
pub const TRANSFERS_PER_HOST: usize = 4;

/// Shortest time without a sample before a host counts as offline.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(2500);

/// How often old rollups are deleted.
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

/// What a host's netMON lease carries, as netMON wants it now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeasePlan {
    /// Its HA VPSes, which its guard stops when the lease runs out.
    pub ha: Vec<String>,
    /// The other hosts' addresses (their guards are asked whether the controller is down).
    pub peers: Vec<String>,
}

/// A host's lease, on the controller's side.
#[derive(Debug, Default)]
struct LeaseState {
    plan: Option<LeasePlan>,
    /// netMON suspects the host: no more renewals until it says so.
    revoked: bool,
    /// The arrival of the sample the last renewal sent counts from, and of the last one the
    /// host acknowledged.
    renewed: Option<Instant>,
    acked: Option<Instant>,
}

/// When a host's lease counts from, on the controller's clock (see [`LeaseState`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseTimes {
    pub renewed: Option<Instant>,
    pub acked: Option<Instant>,
    /// The arrival of its newest sample.
    pub heard: Option<Instant>,
}

struct Runtime {
    view: Mutex<HostView>,
    lease: Arc<Mutex<LeaseState>>,
    heard: Mutex<Option<Instant>>,
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

/// A live connection to a host's agent, for operations.
#[derive(Clone)]
pub struct Conn {
    pub session: Arc<Session>,
    pub agent: crate::ssh::AgentCaller,
}

pub struct HostManager {
    db: Db,
    hub: Arc<crate::hub::Hub>,
    key: Arc<PrivateKey>,
    agent: Option<Arc<Vec<u8>>>,
    runtimes: Mutex<HashMap<i64, Arc<Runtime>>>,
    /// Transfer slots per host (its `max_transfers`, and the semaphore); they outlive
    /// reconnections. A changed limit applies to the transfers that start after it.
    transfers: Mutex<HashMap<i64, (usize, Arc<tokio::sync::Semaphore>)>>,
    /// Containers found on hosts that no VPS record names, already reported.
    reported_unknown: Arc<Mutex<std::collections::HashSet<(i64, String)>>>,
    /// This controller's lease epoch (its start, in ms since the epoch: a later start gives
    /// later leases) and the key that signs what guards tell each other (hex).
    lease_epoch: u64,
    lease_key: String,
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
    ) -> Arc<Self> {
        Arc::new(HostManager {
            db,
            hub,
            agent: agent.map(Arc::new),
            runtimes: Mutex::new(HashMap::new()),
            transfers: Mutex::new(HashMap::new()),
            reported_unknown: Default::default(),
            lease_epoch: Utc::now().timestamp_millis().max(1) as u64,
            lease_key: lease_key(&key),
            key: Arc::new(key),
        })
    }

    /// What the host's lease carries from now on (None: it gets none).
    pub fn set_lease_plan(&self, id: i64, plan: Option<LeasePlan>) {
        if let Some(rt) = lock(&self.runtimes).get(&id) {
            lock(&rt.lease).plan = plan;
        }
    }

    /// Stops (or resumes) renewing the host's lease.
    pub fn revoke(&self, id: i64, revoked: bool) {
        if let Some(rt) = lock(&self.runtimes).get(&id) {
            lock(&rt.lease).revoked = revoked;
        }
    }

    /// When the host's lease counts from, and when it was last heard.
    pub fn lease_times(&self, id: i64) -> LeaseTimes {
        match lock(&self.runtimes).get(&id) {
            Some(rt) => {
                let l = lock(&rt.lease);
                LeaseTimes {
                    renewed: l.renewed,
                    acked: l.acked,
                    heard: *lock(&rt.heard),
                }
            }
            None => LeaseTimes::default(),
        }
    }

    /// Renews the host's lease from the sample that just arrived (its boot time `boot_ms`, at
    /// `arrived`), unless netMON revoked it or has no plan for it. The lease counts from the
    /// sample, not from now: it runs out on the host by `arrived + LEASE_TTL_MS` at the latest.
    fn renew(
        &self,
        rt: &Runtime,
        caller: &crate::ssh::AgentCaller,
        boot_ms: u64,
        arrived: Instant,
        interval_ms: u32,
    ) {
        let plan = {
            let mut l = lock(&rt.lease);
            match (&l.plan, l.revoked || boot_ms == 0) {
                (Some(p), false) => {
                    let p = p.clone();
                    l.renewed = Some(arrived);
                    p
                }
                _ => return,
            }
        };
        let request = AgentRequest::Lease {
            epoch: self.lease_epoch,
            base_ms: boot_ms,
            ttl_ms: serverware_shared::agent::lease_ttl_ms(u64::from(interval_ms)),
            ha: plan.ha,
            peers: plan.peers,
            key: self.lease_key.clone(),
        };
        let (caller, lease) = (caller.clone(), rt.lease.clone());
        tokio::spawn(async move {
            let timeout = Duration::from_millis(3000);
            if let Ok(AgentResponse::Ok) = caller.call(request, timeout).await {
                let mut l = lock(&lease);
                if l.acked.is_none_or(|t| t < arrived) {
                    l.acked = Some(arrived);
                }
            }
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
    pub fn stop(&self, id: i64) {
        if let Some(rt) = lock(&self.runtimes).remove(&id) {
            let _ = rt.stop.send(true);
        }
    }

    /// The connection to a host's agent, if it is online.
    pub fn conn(&self, id: i64) -> Option<Conn> {
        lock(&self.runtimes)
            .get(&id)
            .and_then(|rt| lock(&rt.conn).clone())
    }

    /// The transfer slots of a host that allows `max` transfers at once.
    pub fn transfer_slots(&self, id: i64, max: usize) -> Arc<tokio::sync::Semaphore> {
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
    pub fn set_interval(&self, id: i64, millis: u32) {
        if let Some(rt) = lock(&self.runtimes).get(&id) {
            let _ = rt.interval.send(millis);
        }
    }

    pub fn view(&self, id: i64) -> Option<HostView> {
        lock(&self.runtimes)
            .get(&id)
            .map(|rt| lock(&rt.view).clone())
    }

    /// Every host's view, by id.
    pub fn views(&self) -> HashMap<i64, HostView> {
        lock(&self.runtimes)
            .iter()
            .map(|(id, rt)| (*id, lock(&rt.view).clone()))
            .collect()
    }

    /// The samples kept in memory for a host, oldest first.
    pub fn recent(&self, id: i64) -> Vec<HostSample> {
        lock(&self.runtimes)
            .get(&id)
            .map(|rt| lock(&rt.ring).iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The minute being summed up for a host, as a rollup so far.
    pub fn current_rollup(&self, id: i64) -> Option<HostRollup> {
        lock(&self.runtimes)
            .get(&id)
            .and_then(|rt| lock(&rt.bucket).as_ref().map(Bucket::to_rollup))
    }

    fn record_sample(&self, id: i64, rt: &Runtime, sample: &HostSample) {
        {
            let mut ring = lock(&rt.ring);
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(sample.clone());
        }
        let names: Vec<String> = sample.vpses.iter().map(|v| v.name.clone()).collect();
        let new_container = {
            let mut c = lock(&rt.containers);
            let new = names.iter().any(|n| !c.contains(n));
            *c = names;
            new
        };
        if new_container {
            self.check_unknown(id, sample);
        }
        let minute = minute_of(Utc::now());
        let done = {
            let mut b = lock(&rt.bucket);
            let done = match b.as_ref() {
                Some(cur) if cur.minute != minute => b.take(),
                _ => None,
            };
            b.get_or_insert_with(|| Bucket::new(minute))
                .add(figures(sample));
            done
        };
        if let Some(done) = done {
            self.flush(id, done);
        }
    }

    /// Reports containers on a host that no VPS record names (once each); they are never touched.
    fn check_unknown(&self, id: i64, sample: &HostSample) {
        let found: Vec<String> = sample.vpses.iter().map(|v| v.name.clone()).collect();
        if found.is_empty() {
            return;
        }
        let (db, reported) = (self.db.clone(), self.reported_unknown.clone());
        tokio::spawn(async move {
            let _ = db
                .run(move |c| {
                    let known = crate::repo::vpses::names(c)?;
                    for name in found.into_iter().filter(|n| !known.contains(n)) {
                        if !lock(&reported).insert((id, name.clone())) {
                            continue;
                        }
                        crate::audit::record_system(
                            c,
                            &crate::audit::Actor::system("netres"),
                            crate::audit::Change::new(
                                "host.unknown_vps",
                                "host",
                                id,
                                format!("host {id} runs a container '{name}' that is not a known VPS; it is left alone"),
                            )
                            .severity(serverware_shared::api::Severity::Warning)
                            .details(serde_json::json!({ "container": name })),
                        )?;
                    }
                    Ok(())
                })
                .await;
        });
    }

    /// Writes a minute to the database in the background.
    fn flush(&self, id: i64, bucket: Bucket) {
        let db = self.db.clone();
        tokio::spawn(async move {
            if let Err(e) = db.run(move |c| store_bucket(c, id, &bucket)).await {
                tracing::warn!(host = id, "storing a rollup failed: {e}");
            }
        });
    }

    /// Stores the minute in progress now (the host went offline or is being disconnected).
    fn flush_partial(&self, id: i64, rt: &Runtime) {
        if let Some(b) = lock(&rt.bucket).take() {
            self.flush(id, b);
        }
    }

    fn set_status(&self, id: i64, rt: &Runtime, status: HostStatus) {
        let (changed, was) = {
            let mut v = lock(&rt.view);
            let was = v.status;
            v.status = Some(status);
            (was != Some(status), was)
        };
        if changed {
            use std::sync::atomic::Ordering;
            if was == Some(HostStatus::Online) && status == HostStatus::Offline {
                rt.lost.store(true, Ordering::SeqCst);
                lost_or_back(self.db.clone(), id, true);
            } else if status == HostStatus::Online && rt.lost.swap(false, Ordering::SeqCst) {
                lost_or_back(self.db.clone(), id, false);
            }
            self.publish(id, rt);
            tracing::info!(host = id, status = status.as_str(), "host status");
            let (db, seen) = (self.db.clone(), lock(&rt.view).last_seen);
            tokio::spawn(async move {
                let _ = db
                    .run(move |c| {
                        crate::repo::hosts::set_status(c, id, status, seen.map(|t| t.naive_utc()))
                    })
                    .await;
            });
        }
    }

    fn publish(&self, id: i64, rt: &Runtime) {
        let v = lock(&rt.view).clone();
        self.hub.publish(&ServerMessage::HostStatus {
            host_id: id,
            status: v
                .status
                .unwrap_or(HostStatus::Connecting)
                .as_str()
                .to_string(),
            last_seen_at: v.last_seen,
            summary: v.latest.as_ref().map(HostSample::summary),
        });
    }

    async fn run_host(
        self: Arc<Self>,
        row: HostRow,
        rt: Arc<Runtime>,
        mut stop: tokio::sync::watch::Receiver<bool>,
        mut interval: tokio::sync::watch::Receiver<u32>,
    ) {
        let pinned = row.host_key.clone().unwrap_or_default();
        let mut backoff = Duration::from_millis(500);
        loop {
            if *stop.borrow() {
                return;
            }
            let creds = Credentials::Key(self.key.clone());
            let wait = match Session::connect(
                &row.address,
                row.ssh_port as u16,
                &row.ssh_user,
                &pinned,
                &creds,
            )
            .await
            {
                Ok(session) => {
                    backoff = Duration::from_millis(500);
                    let session = Arc::new(session);
                    let r = self
                        .serve(&row, &rt, &session, &mut stop, &mut interval)
                        .await;
                    if let Some(c) = lock(&rt.conn).take() {
                        c.agent.fail_all();
                    }
                    // Said at once: nothing may read it as online without a connection.
                    let stopping = *stop.borrow();
                    if !stopping {
                        self.set_status(row.id, &rt, HostStatus::Offline);
                    }
                    self.flush_partial(row.id, &rt);
                    let _ = tokio::time::timeout(Duration::from_secs(2), session.close()).await;
                    if let Err(e) = r {
                        tracing::warn!(host = row.id, "host connection ended: {e}");
                    }
                    if stopping || *stop.borrow() {
                        return;
                    }
                    Duration::from_millis(500)
                }
                Err(SshError::HostKeyMismatch { presented }) => {
                    tracing::error!(
                        host = row.id,
                        presented,
                        "host key changed; refusing to connect"
                    );
                    self.set_status(row.id, &rt, HostStatus::KeyMismatch);
                    Duration::from_secs(30)
                }
                Err(SshError::AuthRejected) => {
                    self.set_status(row.id, &rt, HostStatus::AuthFailed);
                    Duration::from_secs(30)
                }
                Err(_) => {
                    self.set_status(row.id, &rt, HostStatus::Offline);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Makes sure the right agent runs, then reads its samples until they stop.
    async fn serve(
        &self,
        row: &HostRow,
        rt: &Runtime,
        session: &Arc<Session>,
        stop: &mut tokio::sync::watch::Receiver<bool>,
        interval: &mut tokio::sync::watch::Receiver<u32>,
    ) -> Result<(), SshError> {
        // The agent is replaced when it is not byte for byte the one this controller ships
        // (a new version, or a damaged file).
        let bin = self
            .agent
            .clone()
            .ok_or_else(|| SshError::Protocol("no agent binary to install".into()))?;
        let want = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(bin.as_slice()))
        };
        let (code, out, _) = session.run("sha256sum", &[AGENT_PATH]).await?;
        let have = String::from_utf8_lossy(&out)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        if code != 0 || have != want {
            tracing::info!(host = row.id, "installing the agent");
            session.upload(AGENT_PATH, &bin).await?;
        }
        let mut link = session.start_agent(AGENT_PATH).await?;
        link.send(AgentRequest::Hello {
            protocol: PROTOCOL_VERSION,
        })
        .await?;
        *lock(&rt.conn) = Some(Conn {
            session: session.clone(),
            agent: link.caller.clone(),
        });
        let mut millis = *interval.borrow_and_update();
        link.send(AgentRequest::SetInterval {
            millis: u64::from(millis),
        })
        .await?;
        // The first sample may take longer: the agent has just started.
        let mut first = true;
        loop {
            let mut heartbeat = heartbeat(row.heartbeat_timeout_ms, millis);
            if first {
                heartbeat = heartbeat.max(FIRST_SAMPLE_WITHIN);
            }
            tokio::select! {
                _ = stop.changed() => return Ok(()),
                changed = interval.changed() => {
                    if changed.is_ok() {
                        millis = *interval.borrow_and_update();
                        link.send(AgentRequest::SetInterval { millis: u64::from(millis) }).await?;
                    }
                }
                frame = tokio::time::timeout(heartbeat, link.frames.recv()) => match frame {
                    Ok(Some(AgentFrame::Sample { sample })) => {
                        first = false;
                        let arrived = Instant::now();
                        *lock(&rt.heard) = Some(arrived);
                        self.renew(rt, &link.caller, sample.boot_ms, arrived, millis);
                        self.record_sample(row.id, rt, &sample);
                        self.hub.publish_with(serverware_shared::ws::Topic::Vpses, || {
                            ServerMessage::VpsStats { host_id: row.id, vpses: sample.vpses.clone() }
                        });
                        self.hub.publish_with(
                            serverware_shared::ws::Topic::Host(row.id),
                            || ServerMessage::HostSample { host_id: row.id, sample: sample.clone() },
                        );
                        {
                            let mut v = lock(&rt.view);
                            v.latest = Some(sample);
                            v.last_seen = Some(Utc::now());
                        }
                        if lock(&rt.view).status == Some(HostStatus::Online) {
                            self.publish(row.id, rt);
                        } else {
                            self.set_status(row.id, rt, HostStatus::Online);
                        }
                    }
                    Ok(Some(AgentFrame::Response { id, response })) if link.caller.deliver(id, response.clone()) => {}
                    Ok(Some(AgentFrame::Response { response: AgentResponse::Hello { agent_version, hostname, kernel, cpu_model, .. }, .. })) => {
                        let mut v = lock(&rt.view);
                        v.agent_version = Some(agent_version.clone());
                        v.hostname = Some(hostname);
                        v.kernel = Some(kernel);
                        v.cpu_model = Some(cpu_model);
                        drop(v);
                        let db = self.db.clone();
                        let id = row.id;
                        tokio::spawn(async move {
                            let _ = db
                                .run(move |c| crate::repo::hosts::set_agent_version(c, id, &agent_version))
                                .await;
                        });
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(SshError::Protocol("the agent stopped".into())),
                    // A silence the controller may have caused itself (it could not run) is
                    // waited out, not held against the host.
                    Err(_) if crate::stall::stalled_within(heartbeat) => {}
                    Err(_) => return Err(SshError::Protocol(format!("no sample for {heartbeat:?}"))),
                }
            }
        }
    }
}

/// How long the first sample of a newly started agent may take.
const FIRST_SAMPLE_WITHIN: Duration = Duration::from_secs(120);

/// Says in an event that a host went offline after being online (`host.offline`, an error:
/// what becomes of each VPS that should run on it) or is back (`host.online`).
fn lost_or_back(db: Db, id: i64, lost: bool) {
    use crate::audit::{Actor, Change};
    use serverware_shared::api::Severity;
    tokio::spawn(async move {
        let r = db
            .run(move |c| {
                let Some(name) = crate::repo::hosts::name(c, id)? else {
                    return Ok(());
                };
                let on = crate::repo::vpses::should_run_on(c, id)?;
                let names = |ha: bool| {
                    on.iter()
                        .filter(|v| v.2 == ha)
                        .map(|v| v.1.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let (ha, plain) = (names(true), names(false));
                let (action, severity, message) = if lost {
                    let mut m = format!("host {name} stopped answering");
                    if !ha.is_empty() {
                        m += &format!("; HA, brought up elsewhere by netMON: {ha}");
                    }
                    if !plain.is_empty() {
                        m += &format!("; not HA, down until it is back: {plain}");
                    }
                    if on.is_empty() {
                        m += "; no VPS should run on it";
                    }
                    ("host.offline", Severity::Error, m)
                } else {
                    (
                        "host.online",
                        Severity::Info,
                        format!("host {name} answers again"),
                    )
                };
                let details = serde_json::json!({
                    "vpses": on.iter().map(|(id, name, ha)| serde_json::json!({"id": id, "name": name, "ha": ha})).collect::<Vec<_>>(),
                });
                crate::audit::record_system(
                    c,
                    &Actor::system("netres"),
                    Change::new(action, "host", id, message)
                        .severity(severity)
                        .details(details),
                )?;
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(
                host = id,
                "cannot record the host's status event: {}",
                e.message()
            );
        }
    });
}

/// How long without a sample before a host counts as offline: the stored timeout, but at least
/// three sampling intervals and never under `MIN_HEARTBEAT`.
pub fn heartbeat(stored_ms: i32, interval_ms: u32) -> Duration {
    let stored = Duration::from_millis(stored_ms.max(0) as u64);
    stored
        .max(Duration::from_millis(u64::from(interval_ms) * 3))
        .max(MIN_HEARTBEAT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_covers_three_intervals() {
        assert_eq!(heartbeat(3000, 1000), Duration::from_secs(3));
        assert_eq!(heartbeat(3000, 5000), Duration::from_secs(15));
        assert_eq!(heartbeat(0, 250), MIN_HEARTBEAT);
    }
}
