//! Containers on hosts that are not (or no longer) what the records say: a name already taken,
//! a stale copy left by a failover or a move, an unfinished VPS to remove.

use super::agent::{call, QUICK};
use super::record::changed;
use super::Vpses;
use crate::audit::{self, Actor, Change};
use crate::error::{Error, Result};
use crate::ops;
use crate::repo::vpses::{load_host, VpsRow};
use crate::tasks::Task;
use serverware_shared::agent::{AgentRequest, AgentResponse};
use serverware_shared::ws::ChangeKind;
use serverware_shared::HostId;
use std::time::Duration;

/// A host may already have a container of that name that SERVERware does not manage (it is
/// reported, never touched): refuse before anything is made.
pub(super) async fn name_free_on(
    state: &Vpses,
    host_id: HostId,
    host_name: &str,
    name: &str,
) -> Result<()> {
    // Asked of the host now: a sample can be a second old and still show a container that was
    // just removed.
    let taken = match state.hosts.conn(host_id) {
        Some(c) => match call(&c, AgentRequest::VpsList, QUICK).await? {
            AgentResponse::VpsList { vpses } => vpses.iter().any(|x| x.name == name),
            _ => false,
        },
        None => state
            .hosts
            .view(host_id)
            .and_then(|v| v.latest)
            .is_some_and(|s| s.vpses.iter().any(|x| x.name == name)),
    };
    if taken {
        if remove_stale_copy(state, host_id, host_name, name).await? {
            return Ok(());
        }
        return Err(Error::conflict(
            Some("name"),
            format!("host {host_name} already has a container named '{name}' that SERVERware does not manage"),
        ));
    }
    Ok(())
}

/// A container on `host_id` named as a VPS that the records place on another host, with no
/// operation on it, is a stale copy of that VPS (left by a failover or a move while the host was
/// away): it is removed. The records are the truth and they survive a restart of the controller,
/// whatever it had in memory. Whether one was removed.
pub(crate) async fn remove_stale_copy(
    state: &Vpses,
    host_id: HostId,
    host_name: &str,
    name: &str,
) -> Result<bool> {
    let n = name.to_string();
    let stale = state
        .db
        .run(move |c| {
            let row = crate::repo::vpses::by_name(c, &n)?;
            Ok(match row {
                Some(v) if v.host_id.is_some() && v.host_id != Some(host_id) => {
                    ops::claims::holder(c, v.id)?.is_none().then_some(v)
                }
                _ => None,
            })
        })
        .await?;
    let Some(v) = stale else { return Ok(false) };
    let Some(c) = state.hosts.conn(host_id) else {
        return Ok(false);
    };
    // The agent removes only a container SERVERware made.
    match call(
        &c,
        AgentRequest::VpsDestroy {
            name: v.name.clone(),
        },
        Duration::from_secs(120),
    )
    .await
    {
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(
                vps = %v.name,
                host = %host_name,
                "a stale copy could not be removed: {}",
                e.message()
            );
            return Ok(false);
        }
    }
    let (id, vname, hname) = (v.id, v.name.clone(), host_name.to_string());
    state
        .db
        .run(move |c| {
            audit::record_system(
                c,
                &Actor::system("reconcile"),
                Change::new(
                    "vps.stale_copy_removed",
                    "vps",
                    id,
                    format!("the stale copy of VPS {vname} on host {hname} was removed (the VPS is recorded on another host)"),
                )
                .details(serde_json::json!({ "host_id": host_id }))
                .severity(serverware_shared::api::Severity::Warning),
            )?;
            Ok(())
        })
        .await?;
    tracing::warn!(vps = %v.name, host = %host_name, "removed a stale copy");
    Ok(true)
}

/// Undoes a create or copy: the container goes from its host, then the record. False when the
/// host cannot be reached or refuses: nothing is forgotten then, and it is tried again later.
pub(super) async fn remove_unfinished(
    state: &Vpses,
    task: &Task,
    host_id: HostId,
    vps: &VpsRow,
) -> bool {
    let host = state
        .db
        .run(move |c| load_host(c, host_id))
        .await
        .map(|h| h.name)
        .unwrap_or_else(|_| format!("#{host_id}"));
    let Some(c) = state.hosts.conn(host_id) else {
        task.log(format!(
            "host {host} cannot be reached now: the unfinished VPS {} is removed once it can",
            vps.name
        ))
        .await;
        return false;
    };
    if let Err(e) = call(
        &c,
        AgentRequest::VpsDestroy {
            name: vps.name.clone(),
        },
        QUICK,
    )
    .await
    {
        task.log(format!(
            "removing the unfinished VPS {} from {host} failed ({}); trying again later",
            vps.name,
            e.message()
        ))
        .await;
        return false;
    }
    let id = vps.id;
    let gone = state
        .db
        .run(move |c| crate::repo::vpses::delete(c, id))
        .await;
    if gone.is_err() {
        return false;
    }
    task.log(format!(
        "removed the unfinished VPS {} from {host}",
        vps.name
    ))
    .await;
    changed(&state.hub, id, ChangeKind::Deleted);
    true
}
