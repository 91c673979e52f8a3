//! One SSH connection per host: the right agent installed and started, its samples read until
//! they stop, reconnected with backoff. A host whose key changed is flagged and never trusted
//! silently. Its status (and the events of a host lost or back) follows the connection.

use super::{lock, HostManager, HostRow, Runtime};
use crate::db::Db;
use crate::ssh::{Credentials, Session, SshError};
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
        let v = lock(&rt.view).clone();
        self.hub.publish(&ServerMessage::HostStatus {
            host_id: id.get(),
            status: v
                .status
                .unwrap_or(HostStatus::Connecting)
                .as_str()
                .to_string(),
            last_seen_at: v.last_seen,
            summary: v.latest.as_ref().map(HostSample::summary),
        });
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
            tracing::info!(host = %row.id, "installing the agent");
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
                            ServerMessage::VpsStats { host_id: row.id.get(), vpses: sample.vpses.clone() }
                        });
                        self.hub.publish_with(
                            serverware_shared::ws::Topic::Host(row.id.get()),
                            || ServerMessage::HostSample { host_id: row.id.get(), sample: sample.clone() },
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
