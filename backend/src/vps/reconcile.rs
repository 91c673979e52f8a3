//! The reconciler: records what hosts report as each VPS's observed state, and moves it toward
//! the desired state. A VPS that should run and is stopped (its host rebooted, or it crashed) is
//! started again if it has autostart, else its desired state becomes stopped (and an event says
//! so); one that should be stopped and runs is stopped; one left paused by nobody is resumed.
//! VPSes with an operation in progress are left to it. A failed start is tried again with
//! back-off, never forgotten.

use super::agent::{call, QUICK};
use super::on_host::remove_stale_copy;
use super::power::{start, stop};
use super::record::changed;
use super::{Vpses, DEFAULT_STOP_TIMEOUT};
use crate::audit::{self, Actor, Change};
use crate::error::Result;
use crate::ops;
use crate::repo::vpses::VpsRow;
use serverware_shared::agent::AgentRequest;
use serverware_shared::state::{DesiredState, HostStatus, ObservedState, VpsOperation};
use serverware_shared::ws::ChangeKind;
use serverware_shared::{HostId, VpsId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Each claimed VPS: the operation and the task holding it.
type Claims = std::collections::HashMap<VpsId, (VpsOperation, i64)>;

/// How often the database is compared with what hosts report.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// A sample from less than this after a VPS's last change may predate it.
const SETTLE: chrono::TimeDelta = chrono::TimeDelta::seconds(15);

/// Per VPS, when the reconciler may act on it again after acting (doubling up to 5 minutes).
static BACKOFF: Mutex<Option<HashMap<VpsId, (std::time::Instant, Duration)>>> = Mutex::new(None);

fn may_act(id: VpsId) -> bool {
    let mut g = BACKOFF.lock().unwrap_or_else(|p| p.into_inner());
    let m = g.get_or_insert_with(HashMap::new);
    let now = std::time::Instant::now();
    match m.get(&id).copied() {
        Some((at, _)) if at > now => false,
        Some((_, wait)) => {
            let next = (wait * 2).min(Duration::from_secs(300));
            m.insert(id, (now + next, next));
            true
        }
        None => {
            m.insert(id, (now + RECONCILE_EVERY * 2, RECONCILE_EVERY * 2));
            true
        }
    }
}

fn settled_down(id: VpsId) {
    let mut g = BACKOFF.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = g.as_mut() {
        m.remove(&id);
    }
}

pub async fn reconcile(state: &Arc<Vpses>) -> Result<()> {
    let (rows, claims, hosts) = state
        .db
        .run(|c| {
            let rows = crate::repo::vpses::all(c)?;
            let hosts = crate::repo::hosts::names(c)?;
            Ok((rows, ops::claims::all(c)?, hosts))
        })
        .await?;
    remove_stale_copies(state, &rows, &claims, &hosts).await;
    for v in rows {
        let Some((h, observed)) = observe(state, &claims, &v).await? else {
            continue;
        };
        bring_to_desired(state, &v, h, observed).await?;
    }
    Ok(())
}

/// Copies of VPSes that the records place on another host (a host that was away while its
/// VPS failed over or moved): removed, so that nothing runs twice and the host can take the
/// VPS again.
async fn remove_stale_copies(
    state: &Arc<Vpses>,
    rows: &[VpsRow],
    claims: &Claims,
    hosts: &[(HostId, String)],
) {
    // By name (a thousand hosts' samples against ten thousand rows: no search of every row).
    let by_name: HashMap<&str, &VpsRow> = rows.iter().map(|v| (v.name.as_str(), v)).collect();
    for (host_id, host_name) in hosts {
        let Some(names) = state
            .hosts
            .with_view(*host_id, |view| {
                let sample = view.latest.as_ref()?;
                (view.status == Some(HostStatus::Online)).then(|| {
                    sample
                        .vpses
                        .iter()
                        .map(|x| x.name.clone())
                        .collect::<Vec<_>>()
                })
            })
            .flatten()
        else {
            continue;
        };
        for name in &names {
            let stale = by_name.get(name.as_str()).is_some_and(|v| {
                v.host_id.is_some()
                    && v.host_id != Some(*host_id)
                    && !claims.contains_key(&v.id)
                    && !state.netmon.failing_over(v.id)
            });
            if stale {
                if let Err(e) = remove_stale_copy(state, *host_id, host_name, name).await {
                    tracing::warn!(
                        vps = %name,
                        "a stale copy could not be removed: {}",
                        e.message()
                    );
                }
            }
        }
    }
}

/// What the VPS's host reports of it now, recorded if it changed; None when the VPS is
/// another operation's, just changed, or its host cannot say.
async fn observe(
    state: &Arc<Vpses>,
    claims: &Claims,
    v: &VpsRow,
) -> Result<Option<(HostId, ObservedState)>> {
    let Some(h) = v.host_id else {
        return Ok(None);
    };
    if claims.contains_key(&v.id) || v.recorded() == ObservedState::Creating {
        return Ok(None);
    }
    if chrono::Utc::now()
        .naive_utc()
        .signed_duration_since(v.updated_at)
        <= SETTLE
    {
        return Ok(None);
    }
    // What the host's newest sample says of it (read in place: this runs for every VPS).
    let Some(reported) = state
        .hosts
        .with_view(h, |view| {
            let sample = view.latest.as_ref()?;
            (view.status == Some(HostStatus::Online)).then(|| {
                sample
                    .vpses
                    .iter()
                    .find(|x| x.name == v.name)
                    .map(|x| x.state.clone())
            })
        })
        .flatten()
    else {
        return Ok(None);
    };
    let observed = match reported.as_deref() {
        Some("running") => ObservedState::Running,
        Some("stopped") => ObservedState::Stopped,
        Some("frozen") => ObservedState::Frozen,
        None => ObservedState::Missing,
        // Starting, stopping …: look again next round.
        Some(_) => return Ok(None),
    };
    if observed != v.recorded() {
        let id = v.id;
        state
            .db
            .run(move |c| crate::repo::vpses::set_observed(c, id, observed))
            .await?;
        changed(&state.hub, v.id, ChangeKind::Updated);
    }
    Ok(Some((h, observed)))
}

/// Brings the VPS to what the operator asked for (or records that it stopped on its own).
async fn bring_to_desired(
    state: &Arc<Vpses>,
    v: &VpsRow,
    h: HostId,
    observed: ObservedState,
) -> Result<()> {
    let system = Actor::system("reconcile");
    match (v.desired(), observed) {
        (_, ObservedState::Frozen) => {
            if !may_act(v.id) {
                return Ok(());
            }
            tracing::warn!(
                vps = %v.name,
                "VPS is paused with no operation on it; resuming it"
            );
            if let Some(c) = state.hosts.conn(h) {
                let _ = call(
                    &c,
                    AgentRequest::VpsFreeze {
                        name: v.name.clone(),
                        frozen: false,
                    },
                    QUICK,
                )
                .await;
            }
        }
        (DesiredState::Running, ObservedState::Stopped) if v.autostart => {
            if !may_act(v.id) {
                return Ok(());
            }
            tracing::warn!(
                vps = %v.name,
                "VPS should run but is stopped; starting it (autostart)"
            );
            if let Err(e) = start(state.clone(), system, v.id).await {
                tracing::warn!(vps = %v.name, "starting it failed: {}", e.message());
            }
        }
        (DesiredState::Running, ObservedState::Stopped) => {
            let (id, name) = (v.id, v.name.clone());
            state
                .db
                .run(move |c| {
                    crate::repo::vpses::set_desired(c, id, DesiredState::Stopped)?;
                    audit::record_system(
                        c,
                        &system,
                        Change::new(
                            "vps.stopped_unexpectedly",
                            "vps",
                            id,
                            format!("VPS {name} stopped on its own (autostart is off)"),
                        )
                        .severity(serverware_shared::api::Severity::Warning),
                    )?;
                    Ok(())
                })
                .await?;
            changed(&state.hub, v.id, ChangeKind::Updated);
        }
        (DesiredState::Stopped, ObservedState::Running) => {
            if !may_act(v.id) {
                return Ok(());
            }
            tracing::warn!(vps = %v.name, "VPS should be stopped but runs; stopping it");
            if let Err(e) = stop(state.clone(), system, v.id, DEFAULT_STOP_TIMEOUT, false).await {
                tracing::warn!(vps = %v.name, "stopping it failed: {}", e.message());
            }
        }
        _ => settled_down(v.id),
    }
    Ok(())
}
