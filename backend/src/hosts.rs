//! Hosts at run time: one SSH connection per host with its agent streaming netRES samples,
//! reconnected with backoff. A host whose key changed is flagged and never trusted silently.

use crate::db::Db;
use crate::schema::hosts;
use crate::ssh::{Credentials, Session, SshError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use russh::keys::PrivateKey;
use serverware_shared::agent::{
    AgentFrame, AgentRequest, AgentResponse, HostSample, PROTOCOL_VERSION,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the agent lives on a host.
pub const AGENT_PATH: &str = "/var/lib/serverware/bin/serverware-agent";

/// What the controller knows of a host right now.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    pub status: String,
    pub latest: Option<HostSample>,
    pub last_seen: Option<DateTime<Utc>>,
    pub agent_version: Option<String>,
}

struct Runtime {
    view: Mutex<HostView>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// The connection details of a host, as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = hosts)]
pub struct HostRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub ssh_user: String,
    pub address: String,
    pub ssh_port: i32,
    pub host_key_fingerprint: Option<String>,
    pub host_key: Option<String>,
    pub status: String,
    pub sample_interval_ms: i32,
    pub heartbeat_timeout_ms: i32,
    pub agent_version: Option<String>,
    pub last_seen_at: Option<chrono::NaiveDateTime>,
}

pub struct HostManager {
    db: Db,
    hub: Arc<crate::hub::Hub>,
    key: Arc<PrivateKey>,
    agent: Option<Arc<Vec<u8>>>,
    runtimes: Mutex<HashMap<i64, Arc<Runtime>>>,
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
            key: Arc::new(key),
            agent: agent.map(Arc::new),
            runtimes: Mutex::new(HashMap::new()),
        })
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
            .run(|c| Ok(hosts::table.select(HostRow::as_select()).load(c)?))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for r in rows {
            self.spawn(r);
        }
        Ok(())
    }

    pub fn spawn(self: &Arc<Self>, row: HostRow) {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let rt = Arc::new(Runtime {
            view: Mutex::new(HostView {
                status: "connecting".into(),
                ..Default::default()
            }),
            stop,
        });
        if let Some(old) = lock(&self.runtimes).insert(row.id, rt.clone()) {
            let _ = old.stop.send(true);
        }
        let mgr = self.clone();
        tokio::spawn(async move { mgr.run_host(row, rt, stop_rx).await });
    }

    /// Disconnects a host (when it is deleted).
    pub fn stop(&self, id: i64) {
        if let Some(rt) = lock(&self.runtimes).remove(&id) {
            let _ = rt.stop.send(true);
        }
    }

    pub fn view(&self, id: i64) -> Option<HostView> {
        lock(&self.runtimes)
            .get(&id)
            .map(|rt| lock(&rt.view).clone())
    }

    fn set_status(&self, id: i64, rt: &Runtime, status: &str) {
        let changed = {
            let mut v = lock(&rt.view);
            let changed = v.status != status;
            v.status = status.to_string();
            changed
        };
        if changed {
            self.publish(id, rt);
            tracing::info!(host = id, status, "host status");
            let (db, status, seen) = (
                self.db.clone(),
                status.to_string(),
                lock(&rt.view).last_seen,
            );
            tokio::spawn(async move {
                let _ = db
                    .run(move |c| {
                        diesel::update(hosts::table.find(id))
                            .set((
                                hosts::status.eq(status),
                                hosts::last_seen_at.eq(seen.map(|t| t.naive_utc())),
                            ))
                            .execute(c)?;
                        Ok(())
                    })
                    .await;
            });
        }
    }

    fn publish(&self, id: i64, rt: &Runtime) {
        let v = lock(&rt.view).clone();
        self.hub
            .publish(&serverware_shared::ws::ServerMessage::HostStatus {
                host_id: id,
                status: v.status,
                last_seen_at: v.last_seen,
                sample: v.latest,
            });
    }

    async fn run_host(
        self: Arc<Self>,
        row: HostRow,
        rt: Arc<Runtime>,
        mut stop: tokio::sync::watch::Receiver<bool>,
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
                    let r = self.serve(&row, &rt, &session, &mut stop).await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), session.close()).await;
                    if let Err(e) = r {
                        tracing::warn!(host = row.id, "host connection ended: {e}");
                    }
                    if *stop.borrow() {
                        return;
                    }
                    self.set_status(row.id, &rt, "offline");
                    Duration::from_millis(500)
                }
                Err(SshError::HostKeyMismatch { presented }) => {
                    tracing::error!(
                        host = row.id,
                        presented,
                        "host key changed; refusing to connect"
                    );
                    self.set_status(row.id, &rt, "key_mismatch");
                    Duration::from_secs(30)
                }
                Err(SshError::AuthRejected) => {
                    self.set_status(row.id, &rt, "auth_failed");
                    Duration::from_secs(30)
                }
                Err(_) => {
                    self.set_status(row.id, &rt, "offline");
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
        session: &Session,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), SshError> {
        let want = format!(
            "serverware-agent {} protocol {PROTOCOL_VERSION}",
            env!("CARGO_PKG_VERSION")
        );
        let (code, out, _) = session.run(AGENT_PATH, &["--version"]).await?;
        if code != 0 || String::from_utf8_lossy(&out).trim() != want {
            let bin = self
                .agent
                .clone()
                .ok_or_else(|| SshError::Protocol("no agent binary to install".into()))?;
            session.upload(AGENT_PATH, &bin).await?;
        }
        let mut link = session.start_agent(AGENT_PATH).await?;
        link.send(AgentRequest::Hello {
            protocol: PROTOCOL_VERSION,
        })
        .await?;
        let interval = (row.sample_interval_ms.max(100)) as u64;
        link.send(AgentRequest::SetInterval { millis: interval })
            .await?;
        let heartbeat = Duration::from_millis(row.heartbeat_timeout_ms.max(1000) as u64);
        loop {
            tokio::select! {
                _ = stop.changed() => return Ok(()),
                frame = tokio::time::timeout(heartbeat, link.frames.recv()) => match frame {
                    Ok(Some(AgentFrame::Sample { sample })) => {
                        {
                            let mut v = lock(&rt.view);
                            v.latest = Some(sample);
                            v.last_seen = Some(Utc::now());
                        }
                        if lock(&rt.view).status == "online" {
                            self.publish(row.id, rt);
                        } else {
                            self.set_status(row.id, rt, "online");
                        }
                    }
                    Ok(Some(AgentFrame::Response { response: AgentResponse::Hello { agent_version, .. }, .. })) => {
                        lock(&rt.view).agent_version = Some(agent_version);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(SshError::Protocol("the agent stopped".into())),
                    Err(_) => return Err(SshError::Protocol(format!("no sample for {heartbeat:?}"))),
                }
            }
        }
    }
}
