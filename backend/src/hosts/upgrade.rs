//! The agent rolled out to hosts one at a time. A host whose agent is not the one this controller
//! ships keeps running its old agent (samples and leases go on) while it waits for its turn; on
//! its turn the new agent is uploaded beside the old one and started next to it, and only once
//! it has sent a sample does it take over, between two samples. A new agent that does not come
//! up is ended, the old one serves on, and an event names the host.

use super::HostId;
use crate::audit::{Actor, Change};
use crate::db::Db;
use crate::ssh::{Session, SshError};
use serverware_shared::api::Severity;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a new agent waits, beside the running one, until it has proved itself.
pub const NEW_AGENT_PATH: &str = "/var/lib/serverware/bin/serverware-agent.new";

/// How long a new agent has to send its first sample.
pub const PROVE_WITHIN: Duration = Duration::from_secs(45);

/// How long a host's turn waits for its old agent to finish the requests it is answering
/// before the new agent takes over anyway.
pub const DRAIN_WITHIN: Duration = Duration::from_secs(60);

/// The rollout's state, kept across reconnections for the life of this controller.
pub struct Rollout {
    /// One host at a time.
    turn: Arc<tokio::sync::Semaphore>,
    /// Hosts where this build's agent did not come up (with the agent's digest): they keep their
    /// old agent until the controller starts again.
    refused: Mutex<HashMap<HostId, String>>,
    /// Hosts whose old agent could not serve: they get the new one at once.
    old_broken: Mutex<HashSet<HostId>>,
}

/// What to do with a host's agent on connecting.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// It is the right one.
    Run,
    /// None is there (or it cannot serve): install this build's before starting.
    Install,
    /// Run the old one and replace it on the host's turn.
    Roll,
    /// This build's did not come up here: stay on the old one.
    Keep,
}

impl Rollout {
    pub fn new() -> Rollout {
        Rollout {
            turn: Arc::new(tokio::sync::Semaphore::new(1)),
            refused: Mutex::default(),
            old_broken: Mutex::default(),
        }
    }

    pub fn plan(&self, host: HostId, have: Option<&str>, want: &str) -> Plan {
        match have {
            Some(h) if h == want => Plan::Run,
            None => Plan::Install,
            Some(_) if super::lock(&self.old_broken).contains(&host) => Plan::Install,
            Some(_) if super::lock(&self.refused).get(&host).map(String::as_str) == Some(want) => {
                Plan::Keep
            }
            Some(_) => Plan::Roll,
        }
    }

    /// The old agent ended before it ever sent a sample: the next connection installs the new.
    pub fn old_cannot_serve(&self, host: HostId) {
        super::lock(&self.old_broken).insert(host);
    }

    /// Waits for the host's turn, then puts the new agent beside the old one and checks that it
    /// runs (`--version` names this build). Holds the turn until the returned permit drops.
    pub async fn take_turn(
        &self,
        session: Arc<Session>,
        bin: Arc<Vec<u8>>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, String> {
        let permit = self
            .turn
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        session
            .upload(NEW_AGENT_PATH, &bin)
            .await
            .map_err(|e| format!("cannot upload it: {e}"))?;
        let (code, out, err) = session
            .run(NEW_AGENT_PATH, &["--version"])
            .await
            .map_err(|e| format!("cannot run it: {e}"))?;
        let said = String::from_utf8_lossy(&out);
        if code != 0 || !said.contains(serverware_shared::BUILD) {
            return Err(format!(
                "it does not run: exit {code}: {}{}",
                said.trim(),
                String::from_utf8_lossy(&err).trim()
            ));
        }
        Ok(permit)
    }

    /// The new agent took over: it replaces the old one's file.
    pub async fn finish(&self, session: &Session) -> Result<(), SshError> {
        let (code, _, err) = session
            .run("mv", &["-f", NEW_AGENT_PATH, super::AGENT_PATH])
            .await?;
        if code != 0 {
            return Err(SshError::Protocol(format!(
                "cannot put the new agent in place: {}",
                String::from_utf8_lossy(&err).trim()
            )));
        }
        Ok(())
    }

    /// The new agent did not come up: it is removed, and this host stays on the old one.
    pub async fn refuse(&self, host: HostId, session: &Session, want: &str) {
        super::lock(&self.refused).insert(host, want.to_string());
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            session.run("rm", &["-f", NEW_AGENT_PATH]),
        )
        .await;
    }
}

/// `agent.upgraded` (info) or `agent.upgrade_failed` (an error naming the host and why).
pub fn record(db: Db, host: HostId, from: Option<String>, failure: Option<String>) {
    tokio::spawn(async move {
        let r = db
            .run(move |c| {
                let name = crate::repo::hosts::name(c, host)?.unwrap_or_else(|| host.to_string());
                let from = from.unwrap_or_else(|| "an unknown version".into());
                let to = serverware_shared::BUILD;
                let change = match &failure {
                    None => Change::new(
                        "agent.upgraded",
                        "host",
                        host,
                        format!("host {name}: agent {from} replaced by {to}, between two samples"),
                    ),
                    Some(why) => Change::new(
                        "agent.upgrade_failed",
                        "host",
                        host,
                        format!("host {name} keeps agent {from}: the new agent {to} did not come up: {why}"),
                    )
                    .severity(Severity::Error),
                };
                crate::audit::record_system(
                    c,
                    &Actor::system("upgrade"),
                    change.details(serde_json::json!({ "from": from, "to": to })),
                )
                .map(|_| ())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(host = %host, "cannot record the agent upgrade's event: {}", e.message());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_planned_by_its_agent_and_its_history() {
        let r = Rollout::new();
        let h = HostId(1);
        assert_eq!(r.plan(h, Some("a"), "a"), Plan::Run);
        assert_eq!(r.plan(h, None, "a"), Plan::Install);
        assert_eq!(r.plan(h, Some("old"), "a"), Plan::Roll);
        super::super::lock(&r.refused).insert(h, "a".into());
        assert_eq!(r.plan(h, Some("old"), "a"), Plan::Keep);
        // A later build is tried again.
        assert_eq!(r.plan(h, Some("old"), "b"), Plan::Roll);
        r.old_cannot_serve(h);
        assert_eq!(r.plan(h, Some("old"), "a"), Plan::Install);
        assert_eq!(r.plan(HostId(2), Some("old"), "a"), Plan::Roll);
    }
}
