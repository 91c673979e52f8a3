//! Carrying out netMON's decisions, one function per [`Action`]: each through the same
//! operations an operator uses, its outcome reported back to the decisions.

use super::decide::{Action, Cause, Ms, Outcome, Timeline};
use super::Monitor;
use super::{ended, event, event_by, lock, outcome, HaVps, HostInfo};
use crate::audit::Actor;
use chrono::Utc;
use serverware_shared::api::Severity;
use serverware_shared::{HostId, VpsId};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Names of hosts and VPSes for messages, from what the round read.
struct Names<'a> {
    hosts: &'a [HostInfo],
    vpses: &'a [HaVps],
}

impl Names<'_> {
    fn host(&self, id: HostId) -> String {
        self.hosts
            .iter()
            .find(|h| h.id == id)
            .map(|h| h.name.clone())
            .unwrap_or_else(|| format!("#{id}"))
    }

    fn vps(&self, id: VpsId) -> String {
        self.vpses
            .iter()
            .find(|v| v.id == id)
            .map(|v| v.name.clone())
            .unwrap_or_else(|| format!("#{id}"))
    }
}

/// Carries out one decision.
pub(super) async fn act(mon: &Arc<Monitor>, hosts: &[HostInfo], vpses: &[HaVps], a: Action) {
    let n = Names { hosts, vpses };
    match a {
        Action::Revoke { host } => revoke(mon, &n, host).await,
        Action::Renew { host } => renew(mon, &n, host).await,
        Action::Restart { vps, host } => restart(mon, &n, vps, host).await,
        Action::Stop { vps, host } => stop(mon, vps, host).await,
        Action::Recover { vps, from, to } => recover(mon, &n, vps, from, to).await,
        Action::Clean { host, vpses: stale } => clean(mon, &n, host, stale).await,
        Action::Timeline(t) => timeline(mon, &n, t).await,
        Action::Warn { vps, host, message } => warn(mon, &n, vps, host, message).await,
    }
}

async fn revoke(mon: &Arc<Monitor>, n: &Names<'_>, host: HostId) {
    mon.hosts.revoke(host, true);
    if !n
        .vpses
        .iter()
        .any(|v| v.host_id == Some(host) && v.running_wanted)
    {
        // Nothing of netMON's there: the host's own status says it all.
        return;
    }
    let m = format!(
            "host {} stopped answering: its lease is no longer renewed, and its HA VPSes go elsewhere once it has run out",
            n.host(host)
        );
    tracing::warn!("{m}");
    event(
        mon,
        "netmon.host_suspected",
        ("host", host.get()),
        Severity::Warning,
        m,
        serde_json::json!({}),
    )
    .await;
}

async fn renew(mon: &Arc<Monitor>, n: &Names<'_>, host: HostId) {
    mon.hosts.revoke(host, false);
    if !n
        .vpses
        .iter()
        .any(|v| v.host_id == Some(host) && v.running_wanted)
    {
        return;
    }
    let m = format!("host {} answers again", n.host(host));
    event(
        mon,
        "netmon.host_back",
        ("host", host.get()),
        Severity::Info,
        m,
        serde_json::json!({}),
    )
    .await;
}

async fn restart(mon: &Arc<Monitor>, n: &Names<'_>, vps: VpsId, host: HostId) {
    let m = format!(
        "the services of VPS {} stopped answering: restarting it on {}",
        n.vps(vps),
        n.host(host)
    );
    event(
        mon,
        "netmon.restart",
        ("vps", vps.get()),
        Severity::Warning,
        m,
        serde_json::json!({}),
    )
    .await;
    let mon = mon.clone();
    tokio::spawn(async move {
        let actor = Actor::system("netmon");
        let r = match crate::vps::stop(mon.vpses.clone(), actor.clone(), vps, 5, true).await {
            Ok(t) => ended(&mon, t.id).await,
            // Stopped already (killed): started instead.
            Err(_) => match crate::vps::start(mon.vpses.clone(), actor, vps).await {
                Ok(t) => ended(&mon, t.id).await,
                Err(e) => Err(e.message()),
            },
        };
        outcome(
            &mon,
            match r {
                Ok(()) => Outcome::Restarted { vps },
                Err(why) => Outcome::Failed { vps, host, why },
            },
        );
    });
}

async fn stop(mon: &Arc<Monitor>, vps: VpsId, host: HostId) {
    let mon = mon.clone();
    tokio::spawn(async move {
        let r = match crate::vps::stop(mon.vpses.clone(), Actor::system("netmon"), vps, 5, false)
            .await
        {
            Ok(t) => ended(&mon, t.id).await,
            Err(e) => Err(e.message()),
        };
        // Stopped: one more cycle, so that it comes up elsewhere as it was.
        if r.is_ok() {
            if let Err(e) = crate::duplo::cycle_now(&mon.duplication, vps).await {
                tracing::warn!(
                    vps = %vps,
                    "no last cycle before the failover ({e}): the newest point serves"
                );
            }
        }
        outcome(
            &mon,
            match r {
                Ok(()) => Outcome::Stopped { vps },
                Err(why) => Outcome::Failed { vps, host, why },
            },
        );
    });
}

async fn recover(mon: &Arc<Monitor>, n: &Names<'_>, vps: VpsId, from: HostId, to: HostId) {
    tracing::warn!(
        "failing VPS {} over from {} to {}",
        n.vps(vps),
        n.host(from),
        n.host(to)
    );
    let mon = mon.clone();
    tokio::spawn(async move {
        // Test builds: killed between the decision (written) and the restore.
        crate::fault::point("netmon", "placed");
        let r = match crate::vps::fail_over(mon.vpses.clone(), vps, to).await {
            Ok(t) => ended(&mon, t.id).await,
            Err(e) => Err(e.message()),
        };
        // Its checks start over where it runs now.
        lock(&mon.netmon.health).remove(&vps);
        *lock(&mon.netmon.next_check) = Instant::now();
        outcome(
            &mon,
            match r {
                Ok(()) => Outcome::Started { vps, host: to },
                Err(why) => Outcome::Failed { vps, host: to, why },
            },
        );
    });
}

async fn clean(mon: &Arc<Monitor>, n: &Names<'_>, host: HostId, stale: Vec<VpsId>) {
    let mon = mon.clone();
    let names: Vec<(VpsId, String)> = stale.iter().map(|v| (*v, n.vps(*v))).collect();
    tokio::spawn(async move {
        // Always answered: a host whose clean-up is never reported would stay untrusted.
        let Some(c) = mon.hosts.conn(host) else {
            outcome(&mon, Outcome::NotCleaned { host });
            return;
        };
        let mut all = true;
        for (id, name) in names {
            // Only a copy the records place elsewhere.
            let elsewhere = mon
                .db
                .run(move |c| crate::vps::load(c, id))
                .await
                .is_ok_and(|v| v.host_id != Some(host));
            if elsewhere {
                let r = c
                    .agent
                    .call(
                        serverware_shared::agent::AgentRequest::VpsDestroy { name: name.clone() },
                        Duration::from_secs(120),
                    )
                    .await;
                let refused = match r {
                    Ok(serverware_shared::agent::AgentResponse::Error { message }) => Some(message),
                    Ok(_) => None,
                    Err(e) => Some(e.to_string()),
                };
                if let Some(why) = refused {
                    tracing::warn!(
                        vps = %name, host = %host,
                        "its stale copy could not be removed yet: {why}"
                    );
                    all = false;
                } else {
                    let hname = mon
                        .db
                        .run(move |c| crate::vps::load_host(c, host))
                        .await
                        .map(|h| h.name)
                        .unwrap_or_else(|_| format!("#{host}"));
                    event(
                            &mon,
                            "vps.stale_copy_removed",
                            ("vps", id.get()),
                            Severity::Warning,
                            format!("the stale copy of VPS {name} on host {hname} was removed (the VPS was failed over to another host)"),
                            serde_json::json!({ "host_id": host }),
                        )
                        .await;
                }
            }
        }
        if !all {
            // Asked again after a pause, not at every tick.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        outcome(
            &mon,
            if all {
                Outcome::Cleaned { host }
            } else {
                Outcome::NotCleaned { host }
            },
        );
    });
}

async fn timeline(mon: &Arc<Monitor>, n: &Names<'_>, t: Timeline) {
    let at = |ms: Ms| {
        let ago = Duration::from_millis(mon.netmon.ms(Instant::now()).saturating_sub(ms));
        (Utc::now() - chrono::TimeDelta::from_std(ago).unwrap_or_default()).to_rfc3339()
    };
    let took = t.healthy.saturating_sub(t.detected) as f64 / 1000.0;
    let m = match (&t.cause, &t.by) {
            (Cause::Requested, by) => format!(
                "VPS {} failed over from {} to {} as {} asked: answering {took:.1} s after it was stopped",
                n.vps(t.vps),
                n.host(t.from),
                n.host(t.to),
                by.as_deref().unwrap_or("an operator"),
            ),
            (Cause::VpsFailed, _) => format!(
                "VPS {} failed over from {} to {}: its services stopped answering; answering again {took:.1} s after that was found",
                n.vps(t.vps),
                n.host(t.from),
                n.host(t.to),
            ),
            (Cause::HostLost, _) => format!(
                "VPS {} failed over from {} to {}: answering {took:.1} s after its host was found lost",
                n.vps(t.vps),
                n.host(t.from),
                n.host(t.to),
            ),
        };
    tracing::warn!("{m}");
    let details = serde_json::json!({
        "from": t.from, "to": t.to, "cause": format!("{:?}", t.cause),
        "detected": at(t.detected), "fenced": at(t.fenced), "placed": at(t.placed),
        "started": at(t.started), "healthy": at(t.healthy),
        "ms": {
            "fenced": t.fenced.saturating_sub(t.detected),
            "placed": t.placed.saturating_sub(t.detected),
            "started": t.started.saturating_sub(t.detected),
            "healthy": t.healthy.saturating_sub(t.detected),
        }
    });
    let by = t.by.as_deref().map(|name| Actor {
        name: name.to_string(),
        via_token: None,
        via: None,
    });
    event_by(
        mon,
        by.as_ref().unwrap_or(&Actor::system("netmon")),
        "netmon.failover",
        ("vps", t.vps.get()),
        Severity::Info,
        m,
        details,
    )
    .await;
}

async fn warn(
    mon: &Arc<Monitor>,
    n: &Names<'_>,
    vps: Option<VpsId>,
    host: Option<HostId>,
    message: String,
) {
    let (kind, id, who) = match (vps, host) {
        (Some(v), _) => ("vps", v.get(), format!("VPS {}", n.vps(v))),
        (None, Some(h)) => ("host", h.get(), format!("host {}", n.host(h))),
        _ => ("system", 0, "netMON".to_string()),
    };
    tracing::warn!("{who}: {message}");
    event(
        mon,
        "netmon.warning",
        (kind, id),
        Severity::Warning,
        format!("{who}: {message}"),
        serde_json::json!({}),
    )
    .await;
}
