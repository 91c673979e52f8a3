//! One SSH connection per host: the right agent installed and started, its samples read until
//! they stop, reconnected with backoff. A host whose key changed is flagged and never trusted
//! silently. Its status (and the events of a host lost or back) follows the connection.

use super::upgrade::{self, Plan, DRAIN_WITHIN, NEW_AGENT_PATH, PROVE_WITHIN};
use super::{lock, status_entry, HostManager, HostRow, Runtime};
use crate::db::Db;
use crate::ssh::{AgentLink, Credentials, Session, SshError};
use chrono::Utc;
use serverware_shared::agent::{
    AgentFrame, AgentRequest, AgentResponse, HostSample, PROTOCOL_VERSION,
};
use serverware_shared::state::HostStatus;
use serverware_shared::ws::ServerMessage;
use serverware_shared::HostId;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the agent lives on a host.
pub const AGENT_PATH: &str = "/var/lib/serverware/bin/serverware-agent";

/// Shortest time without a sample before a host counts as offline.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(2500);

/// A live connection to a host's agent, for operations.
#[derive(Clone)]
pub struct Conn {
    pub session: Arc<Session>,
    pub agent: crate::ssh::AgentCaller,
}

impl HostManager {
    fn set_status(&self, id: HostId, rt: &Runtime, status: HostStatus) {
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
            tracing::info!(host = %id, status = status.as_str(), "host status");
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

    fn publish(&self, id: HostId, rt: &Runtime) {
        let e = status_entry(id, &lock(&rt.view));
        let msg = ServerMessage::HostStatus {
            host_id: e.host_id,
            status: e.status,
            last_seen_at: e.last_seen_at,
            summary: e.summary,
        };
        self.hub.publish(&msg);
        self.hub
            .publish_with(serverware_shared::ws::Topic::HostStates, || msg);
    }

    pub(super) async fn run_host(
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
            // One of a bounded number of handshakes at once (a reconnect storm waits its
            // turn); netMON counts the host's grace to connect from that turn.
            let first_try = rt.clone();
            let gate = crate::ssh::Gate {
                places: self.handshakes.clone(),
                on_turn: Box::new(move || {
                    lock(&first_try.first_try).get_or_insert_with(Instant::now);
                }),
            };
            let connected = tokio::select! {
                r = Session::connect_gated(
                    &row.address,
                    row.ssh_port as u16,
                    &row.ssh_user,
                    &pinned,
                    &creds,
                    Some(gate),
                ) => r,
                _ = stop.changed() => return,
            };
            let wait = match connected {
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
                        tracing::warn!(host = %row.id, "host connection ended: {e}");
                    }
                    if stopping || *stop.borrow() {
                        return;
                    }
                    Duration::from_millis(500)
                }
                Err(SshError::HostKeyMismatch { presented }) => {
                    tracing::error!(
                        host = %row.id,
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
            // Up to a quarter more, at random: hosts lost together do not come back in step.
            let wait = wait + wait.mul_f64(rand::random::<f64>() / 4.0);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Makes sure the right agent runs (installed at once when there is none; else rolled out
    /// on the host's turn, see `upgrade.rs`), then reads its samples until they stop.
    async fn serve(
        &self,
        row: &HostRow,
        rt: &Runtime,
        session: &Arc<Session>,
        stop: &mut tokio::sync::watch::Receiver<bool>,
        interval: &mut tokio::sync::watch::Receiver<u32>,
    ) -> Result<(), SshError> {
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
            .filter(|h| code == 0 && h.len() == 64)
            .map(str::to_string);
        let plan = self.rollout.plan(row.id, have.as_deref(), &want);
        if plan == Plan::Install {
            tracing::info!(host = %row.id, "installing the agent");
            session.upload(AGENT_PATH, &bin).await?;
        }
        let mut millis = *interval.borrow_and_update();
        let mut link = start(session, AGENT_PATH, millis).await?;
        *lock(&rt.conn) = Some(Conn {
            session: session.clone(),
            agent: link.caller.clone(),
        });
        // The rollout: the host's turn (the new agent uploaded and checked), then the new agent
        // running beside the old until its first sample.
        let (turn_tx, mut turn_rx) = tokio::sync::mpsc::channel(1);
        if plan == Plan::Roll {
            let (rollout, session, bin) = (self.rollout.clone(), session.clone(), bin.clone());
            tokio::spawn(async move {
                let _ = turn_tx.send(rollout.take_turn(session, bin).await).await;
            });
        }
        let (cand_tx, mut cand_rx) = tokio::sync::mpsc::channel::<Option<AgentFrame>>(64);
        let mut candidate: Option<Candidate> = None;
        let mut sampled = false;
        let mut guard = SampleGuard::default();
        // The first sample may take longer: the agent has just started.
        let mut first = true;
        let result = loop {
            let mut heartbeat = heartbeat(row.heartbeat_timeout_ms, millis);
            if first {
                heartbeat = heartbeat.max(FIRST_SAMPLE_WITHIN);
            }
            let proving = candidate.as_ref().map(|c| c.deadline);
            tokio::select! {
                _ = stop.changed() => break Ok(()),
                changed = interval.changed() => {
                    if changed.is_ok() {
                        millis = *interval.borrow_and_update();
                        link.send(AgentRequest::SetInterval { millis: u64::from(millis) }).await?;
                    }
                }
                Some(turn) = turn_rx.recv() => match turn {
                    Ok(permit) => match start(session, NEW_AGENT_PATH, millis).await {
                        Ok(new) => candidate = Some(Candidate::watch(new, permit, cand_tx.clone())),
                        Err(e) => self.refuse(row, rt, session, &want, e.to_string()).await,
                    },
                    Err(why) => self.refuse(row, rt, session, &want, why).await,
                },
                _ = sleep_until(proving), if proving.is_some() => {
                    candidate = None;
                    self.refuse(row, rt, session, &want, format!("no sample within {PROVE_WITHIN:?}")).await;
                }
                Some(frame) = cand_rx.recv() => {
                    let Some(c) = candidate.as_mut() else { continue };
                    match frame {
                        Some(AgentFrame::Sample { .. }) => c.sampled = true,
                        Some(AgentFrame::Response { id, response }) => {
                            if !c.link.caller.deliver(id, response.clone())
                                && matches!(response, AgentResponse::Hello { .. })
                            {
                                c.hello = Some(response);
                            }
                        }
                        None => {
                            candidate = None;
                            self.refuse(row, rt, session, &want, "it stopped".into()).await;
                        }
                    }
                }
                frame = tokio::time::timeout(heartbeat, link.frames.recv()) => match frame {
                    Ok(Some(AgentFrame::Sample { mut sample })) => {
                        first = false;
                        sampled = true;
                        match guard.check(&mut sample, millis, Instant::now(), Utc::now().timestamp_millis()) {
                            Verdict::Take => {}
                            Verdict::TakeRestamped { skew_ms } => clock_skew(self.db.clone(), row.id, skew_ms),
                            Verdict::Drop { first_of_flood } => {
                                if first_of_flood {
                                    tracing::warn!(host = %row.id, "the host sends samples faster than every {millis} ms: the extra ones are dropped");
                                }
                                continue;
                            }
                        }
                        // Between two samples: the proved new agent takes over once the old one
                        // answers nothing (or has had its time to), and renews from this one.
                        if candidate.as_ref().is_some_and(|c| c.sampled && (!link.caller.busy() || c.since.elapsed() > DRAIN_WITHIN)) {
                            if let Some(c) = candidate.take() {
                                link = self.take_over(row, rt, session, link, c).await?;
                            }
                        }
                        self.on_sample(row, rt, &link.caller, sample, millis);
                    }
                    Ok(Some(AgentFrame::Response { id, response })) => {
                        if !link.caller.deliver(id, response.clone()) {
                            self.hello(row, rt, response);
                        }
                    }
                    Ok(None) => break Err(SshError::Protocol("the agent stopped".into())),
                    // A silence the controller may have caused itself (it could not run) is
                    // waited out, not held against the host.
                    Err(_) if crate::stall::stalled_within(heartbeat) => {}
                    Err(_) => break Err(SshError::Protocol(format!("no sample for {heartbeat:?}"))),
                }
            }
        };
        if result.is_err() && !sampled && plan == Plan::Roll {
            // The old agent cannot serve this controller: the next connection installs the new.
            self.rollout.old_cannot_serve(row.id);
        }
        if candidate.is_some() {
            // The connection may be what ended: a dead one is not waited on.
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                session.run("rm", &["-f", NEW_AGENT_PATH]),
            )
            .await;
        }
        result
    }

    /// What a sample changes: the lease, the ring, the live figures, the host's status.
    fn on_sample(
        &self,
        row: &HostRow,
        rt: &Runtime,
        caller: &crate::ssh::AgentCaller,
        sample: HostSample,
        millis: u32,
    ) {
        let arrived = Instant::now();
        *lock(&rt.heard) = Some(arrived);
        self.renew(rt, caller, sample.boot_ms, arrived, millis);
        self.record_sample(row.id, rt, &sample);
        for topic in [
            serverware_shared::ws::Topic::Vpses,
            serverware_shared::ws::Topic::VpsesOf(row.id.get()),
        ] {
            self.hub.publish_with(topic, || ServerMessage::VpsStats {
                host_id: row.id.get(),
                vpses: sample.vpses.clone(),
            });
        }
        self.hub
            .publish_with(serverware_shared::ws::Topic::Host(row.id.get()), || {
                ServerMessage::HostSample {
                    host_id: row.id.get(),
                    sample: sample.clone(),
                }
            });
        {
            let mut v = lock(&rt.view);
            v.latest = Some(sample);
            v.last_seen = Some(Utc::now());
        }
        if lock(&rt.view).status == Some(HostStatus::Online) {
            // Told with the other hosts sampled this second.
            lock(&self.sampled).insert(row.id);
        } else {
            self.set_status(row.id, rt, HostStatus::Online);
        }
    }

    /// An agent's answer to `Hello`: its version and what it says of its machine.
    fn hello(&self, row: &HostRow, rt: &Runtime, response: AgentResponse) {
        let AgentResponse::Hello {
            agent_version,
            hostname,
            kernel,
            cpu_model,
            ..
        } = response
        else {
            return;
        };
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

    /// The proved new agent becomes the host's agent; the old one's link ends (it exits).
    async fn take_over(
        &self,
        row: &HostRow,
        rt: &Runtime,
        session: &Arc<Session>,
        old: AgentLink,
        c: Candidate,
    ) -> Result<AgentLink, SshError> {
        let from = lock(&rt.view).agent_version.clone();
        *lock(&rt.conn) = Some(Conn {
            session: session.clone(),
            agent: c.link.caller.clone(),
        });
        old.caller.fail_all();
        drop(old);
        let Candidate {
            link,
            permit,
            hello,
            ..
        } = c;
        if let Some(h) = hello {
            self.hello(row, rt, h);
        }
        let link = link.resume().await?;
        // Its file takes the old one's place beside the serving loop (which must not wait on
        // the host); the next host's turn comes once it has. Should that fail, the new agent
        // still serves, and the next connection rolls it out again.
        let (rollout, session, id) = (self.rollout.clone(), session.clone(), row.id);
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(30), rollout.finish(&session)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(host = %id, "the new agent runs, but {e}"),
                Err(_) => {
                    tracing::warn!(host = %id, "the new agent runs, but its file was not put in place within 30 s")
                }
            }
            drop(permit);
        });
        tracing::info!(host = %row.id, "the new agent took over");
        upgrade::record(self.db.clone(), row.id, from, None);
        Ok(link)
    }

    async fn refuse(
        &self,
        row: &HostRow,
        rt: &Runtime,
        session: &Session,
        want: &str,
        why: String,
    ) {
        tracing::warn!(host = %row.id, "the new agent did not come up; the old one serves on: {why}");
        self.rollout.refuse(row.id, session, want).await;
        let from = lock(&rt.view).agent_version.clone();
        upgrade::record(self.db.clone(), row.id, from, Some(why));
    }
}

/// Starts the agent at `path` and asks for its hello and samples.
async fn start(session: &Session, path: &str, millis: u32) -> Result<AgentLink, SshError> {
    let mut link = session.start_agent(path).await?;
    link.send(AgentRequest::Hello {
        protocol: PROTOCOL_VERSION,
    })
    .await?;
    link.send(AgentRequest::SetInterval {
        millis: u64::from(millis),
    })
    .await?;
    Ok(link)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A new agent running beside the old one until it has sent a sample. Its frames are forwarded
/// (so the serving loop owns no borrow of it); `None` when it ended.
struct Candidate {
    link: Forwarded,
    permit: tokio::sync::OwnedSemaphorePermit,
    deadline: tokio::time::Instant,
    since: Instant,
    sampled: bool,
    /// Its answer to `Hello`, taken in when it takes over.
    hello: Option<AgentResponse>,
}

struct Forwarded {
    caller: crate::ssh::AgentCaller,
    frames: tokio::sync::oneshot::Receiver<tokio::sync::mpsc::Receiver<AgentFrame>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Forwarded {
    /// The link back, its frames read by the serving loop from here on.
    async fn resume(self) -> Result<AgentLink, SshError> {
        let _ = self.stop.send(true);
        let frames = self
            .frames
            .await
            .map_err(|_| SshError::Protocol("the new agent's link was lost".into()))?;
        Ok(AgentLink {
            caller: self.caller,
            frames,
        })
    }
}

impl Candidate {
    fn watch(
        link: AgentLink,
        permit: tokio::sync::OwnedSemaphorePermit,
        to: tokio::sync::mpsc::Sender<Option<AgentFrame>>,
    ) -> Candidate {
        let AgentLink { caller, mut frames } = link;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (back, frames_back) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    f = frames.recv() => {
                        let ended = f.is_none();
                        if to.send(f).await.is_err() || ended {
                            break;
                        }
                    }
                }
            }
            let _ = back.send(frames);
        });
        Candidate {
            link: Forwarded {
                caller,
                frames: frames_back,
                stop,
            },
            permit,
            deadline: tokio::time::Instant::now() + PROVE_WITHIN,
            since: Instant::now(),
            sampled: false,
            hello: None,
        }
    }
}

/// How long the first sample of a newly started agent may take.
const FIRST_SAMPLE_WITHIN: Duration = Duration::from_secs(120);

/// Says in an event that a host went offline after being online (`host.offline`, an error:
/// what becomes of each VPS that should run on it) or is back (`host.online`).
/// How far a sample's clock may be from the controller's before its time is replaced.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// What becomes of a sample as it arrives.
#[derive(Debug, PartialEq)]
enum Verdict {
    Take,
    /// Taken, stamped with the controller's time: the host's clock is `skew_ms` off (said once
    /// per connection).
    TakeRestamped {
        skew_ms: i64,
    },
    /// More than one per half interval: a flood, dropped (its first said).
    Drop {
        first_of_flood: bool,
    },
}

/// A connection's samples as they arrive: a host that sends them faster than it was asked (a
/// broken or hostile agent) has the extra ones dropped, so it costs the controller little more
/// than any other host; one whose clock is far off has them stamped with the controller's time,
/// so charts and history stay in order. The rate is a token bucket: samples held up by a busy
/// network or controller and arriving together are all taken (the newest renews the lease), a
/// steady flood gets through at twice the interval's rate.
#[derive(Default)]
struct SampleGuard {
    /// Samples that may arrive now (up to [`SAMPLE_BURST`]), as of `at`.
    tokens: f64,
    at: Option<Instant>,
    flooding: bool,
    skew_said: bool,
}

/// How many samples may arrive at once before the rest count as a flood.
const SAMPLE_BURST: f64 = 10.0;

impl SampleGuard {
    fn check(
        &mut self,
        sample: &mut HostSample,
        millis: u32,
        now: Instant,
        now_ms: i64,
    ) -> Verdict {
        let per_sample = Duration::from_millis(u64::from(millis.max(1)));
        self.tokens = match self.at {
            None => SAMPLE_BURST,
            Some(at) => (self.tokens
                + 2.0 * now.duration_since(at).as_secs_f64() / per_sample.as_secs_f64())
            .min(SAMPLE_BURST),
        };
        self.at = Some(now);
        if self.tokens < 1.0 {
            let first = !self.flooding;
            self.flooding = true;
            return Verdict::Drop {
                first_of_flood: first,
            };
        }
        self.tokens -= 1.0;
        self.flooding = false;
        let skew = sample.taken_at_ms.saturating_sub(now_ms);
        if skew.abs() > MAX_CLOCK_SKEW_MS {
            sample.taken_at_ms = now_ms;
            if !self.skew_said {
                self.skew_said = true;
                return Verdict::TakeRestamped { skew_ms: skew };
            }
        }
        Verdict::Take
    }
}

/// An event: the host's clock is far from the controller's.
fn clock_skew(db: Db, id: HostId, skew_ms: i64) {
    use crate::audit::{Actor, Change};
    tokio::spawn(async move {
        let _ = db
            .run(move |c| {
                let name = crate::repo::hosts::name(c, id)?.unwrap_or_else(|| id.to_string());
                let (secs, way) = (skew_ms.abs() / 1000, if skew_ms > 0 { "ahead of" } else { "behind" });
                crate::audit::record_system(
                    c,
                    &Actor::system("netres"),
                    Change::new(
                        "host.clock_skew",
                        "host",
                        id,
                        format!("host {name}'s clock is {secs} s {way} the controller's: its samples are stamped with the controller's time (set up NTP on it)"),
                    )
                    .severity(serverware_shared::api::Severity::Warning)
                    .details(serde_json::json!({ "skew_ms": skew_ms })),
                )
            })
            .await;
    });
}

fn lost_or_back(db: Db, id: HostId, lost: bool) {
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
                host = %id,
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

#[cfg(test)]
mod sample_tests {
    use super::*;

    #[test]
    fn floods_are_dropped_and_far_clocks_restamped() {
        let mut g = SampleGuard::default();
        let t0 = Instant::now();
        let now_ms = 1_800_000_000_000;
        let mut s = HostSample {
            taken_at_ms: now_ms,
            ..Default::default()
        };
        let ms = Duration::from_millis;
        // Three held up and arriving together: all taken.
        for i in 0..3 {
            assert_eq!(g.check(&mut s, 1000, t0 + ms(i), now_ms), Verdict::Take);
        }
        // A flood of a hundred within 400 ms: a burst gets through, the rest is dropped, the
        // first drop said once.
        let verdicts: Vec<Verdict> = (0..100)
            .map(|i| g.check(&mut s, 1000, t0 + ms(10 + i * 4), now_ms))
            .collect();
        let taken = verdicts.iter().filter(|v| **v == Verdict::Take).count();
        assert!(taken <= SAMPLE_BURST as usize, "{taken} of a flood taken");
        assert_eq!(
            verdicts
                .iter()
                .filter(|v| **v
                    == Verdict::Drop {
                        first_of_flood: true
                    })
                .count(),
            1
        );
        // A steady flood at 100 a second for 10 s: at most twice the interval's rate gets in.
        let mut steady = 0;
        for i in 0..1000 {
            if g.check(&mut s, 1000, t0 + ms(1000 + i * 10), now_ms) == Verdict::Take {
                steady += 1;
            }
        }
        assert!((18..=22).contains(&steady), "{steady} taken in 10 s");
        // Quiet again: the next one is taken.
        assert_eq!(
            g.check(&mut s, 1000, t0 + ms(13_000), now_ms),
            Verdict::Take
        );
        // From an hour in the future: stamped with the controller's time, said once.
        let mut future = HostSample {
            taken_at_ms: now_ms + 3_600_000,
            ..Default::default()
        };
        assert_eq!(
            g.check(&mut future, 1000, t0 + ms(15_000), now_ms),
            Verdict::TakeRestamped { skew_ms: 3_600_000 }
        );
        assert_eq!(future.taken_at_ms, now_ms);
        future.taken_at_ms = now_ms + 3_600_000;
        assert_eq!(
            g.check(&mut future, 1000, t0 + ms(16_000), now_ms),
            Verdict::Take
        );
        assert_eq!(future.taken_at_ms, now_ms);
        // A clock a little off is the host's own business.
        let mut near = HostSample {
            taken_at_ms: now_ms + 2000,
            ..Default::default()
        };
        assert_eq!(
            g.check(&mut near, 1000, t0 + ms(17_000), now_ms),
            Verdict::Take
        );
        assert_eq!(near.taken_at_ms, now_ms + 2000);
    }
}
