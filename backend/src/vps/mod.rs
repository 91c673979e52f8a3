//! VPSes: their records and the operations on them (create, start, stop, restart, edit, delete,
//! copy, move), one file per operation. Each operation is a Task; the API, the dashboard and the
//! schedulers all come through here. The database is the source of truth; the work on hosts goes
//! through their agents.

mod bring_up;
mod copy;
mod create;
mod delete;
mod edit;
mod move_to;
pub mod placement;
mod power;
mod reconcile;
mod restore;
mod transfer;

pub use copy::copy;
pub use create::{create, CreateVps};
pub use delete::delete;
pub use edit::{edit, EditVps};
pub use move_to::move_to;
use placement::fits;
use placement::mib;
pub use placement::{candidates, capacity, free, need, place, Candidate};
pub use power::{start, stop};
pub use reconcile::{reconcile, RECONCILE_EVERY};
pub use restore::{fail_over, restore, RestoreVps};
use transfer::{live_disk, push_template, slots, transfer};

mod agent;
mod view;
use crate::repo::vpses::{insert_creating, unique, NewVps};
pub use crate::repo::vpses::{load, load_host, ports_text, VpsRow};
pub use agent::spec;
use agent::{agent_err, call, conn, QUICK};
pub use view::{get, list, observed, response};

use crate::audit::{self, Actor, Change};
use crate::error::{Error, Result};
use crate::hosts::{Conn, HostRow};
use crate::ops::{self, saga, Finish, OpRow, Steps};
use crate::tasks::Task;
use serde::{Deserialize, Serialize};
use serverware_shared::agent::{AgentRequest, AgentResponse, HostSample};
use serverware_shared::api::{HostCapacity, TaskResponse};
use serverware_shared::state::{DesiredState, HostStatus, ObservedState, VpsOperation};
use serverware_shared::ws::{ChangeKind, InventoryChange, ServerMessage};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const DEFAULT_STOP_TIMEOUT: u32 = 30;

/// The VPS service: what its operations need, handed over when the controller is wired
/// (`server.rs`), and nothing more.
pub struct Vpses {
    pub db: crate::db::Db,
    /// Where inventory changes are told to the dashboards.
    pub hub: Arc<crate::hub::Hub>,
    /// The connections to hosts (their agents) and their newest samples.
    pub hosts: Arc<crate::hosts::HostManager>,
    /// The durable-operation engine: operations in progress and their recovery.
    pub ops: Arc<crate::ops::recovery::Engine>,
    /// netDUPLO's state: restore points, terms, pins.
    pub duplo: Arc<crate::duplo::Duplo>,
    /// netMON's state, read for what a VPS's view shows (failing over, its services).
    pub netmon: Arc<crate::netmon::Netmon>,
    /// Templates live under it.
    pub data_dir: std::path::PathBuf,
    /// Set when the controller is stopping: no new operation is accepted.
    pub stopping: crate::ops::Stopping,
    /// Held from a placement decision until its VPS is recorded, so two creates cannot both
    /// take the same free capacity.
    pub placement: tokio::sync::Mutex<()>,
}

impl Vpses {
    /// New operations are refused once the controller is stopping.
    pub fn accepting(&self) -> Result<()> {
        self.stopping.accepting()
    }
}

pub(crate) fn changed(hub: &crate::hub::Hub, id: i64, change: ChangeKind) {
    hub.publish(&ServerMessage::Inventory {
        change: InventoryChange {
            kind: "vps".into(),
            id: id.to_string(),
            change,
        },
    });
}

/// Starts the work of a task in the background. Whatever the work does (panics included), the
/// operation ends properly: its claims and reservations are released and the task gets its
/// outcome, unless the work says it must be finished later (then the recovery loop owns it).
fn spawn<F, Fut>(state: Arc<Vpses>, task: Arc<Task>, vps_ids: Vec<i64>, work: F)
where
    F: FnOnce(Arc<Vpses>, Arc<Task>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Finish> + Send + 'static,
{
    let id = task.id();
    state.ops.live.enter(id);
    tokio::spawn(async move {
        let inner = tokio::spawn(work(state.clone(), task.clone()));
        let finish = match inner.await {
            Ok(f) => f,
            Err(e) => Finish::Done(Err(Error::Internal(anyhow::anyhow!(
                "the operation stopped unexpectedly: {e}"
            )))),
        };
        conclude(&state, &task, &vps_ids, finish).await;
    });
}

/// Ends (or parks) an operation after its work returned.
async fn conclude(state: &Arc<Vpses>, task: &Task, vps_ids: &[i64], finish: Finish) {
    let id = task.id();
    match finish {
        Finish::Done(r) => {
            state.ops.live.park(id, false);
            let ended = chrono::Utc::now();
            if let Err(e) = ops::release(&state.db, id).await {
                tracing::error!(task = id, "cannot release the operation's claims: {e}");
            }
            task.finish_ended(&r, ended).await;
        }
        Finish::Later { release_claims } => {
            state.ops.live.park(id, true);
            if release_claims {
                if let Err(e) = ops::release_claims(&state.db, id).await {
                    tracing::error!(task = id, "cannot release the operation's claims: {e}");
                }
            }
        }
    }
    state.ops.live.leave(id);
    for v in vps_ids {
        changed(&state.hub, *v, ChangeKind::Updated);
    }
}

/// Recovers a recorded operation this controller is not driving (see [`ops::recovery`]).
/// The kinds of durable VPS operations, each resumed by [`recover`].
pub const DURABLE_KINDS: [&str; 5] = [
    create::Step::KIND,
    copy::Step::KIND,
    move_to::Step::KIND,
    delete::Step::KIND,
    restore::Step::KIND,
];

fn names<S: Steps>(steps: &[S]) -> Vec<&'static str> {
    steps.iter().map(|s| s.name()).collect()
}

/// Each durable kind with its steps, in order, as recorded: what the crash test walks, so that
/// a new step is killed and resumed without a new test. A restore's steps are those of its two
/// ways (in place, as a new VPS), walked one way each.
pub fn durable_steps() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (create::Step::KIND, names(create::Step::STEPS)),
        (copy::Step::KIND, names(copy::Step::STEPS)),
        (move_to::Step::KIND, names(move_to::Step::STEPS)),
        (delete::Step::KIND, names(delete::Step::STEPS)),
        ("vps.restore in place", names(restore::IN_PLACE)),
        ("vps.restore as new", names(restore::AS_NEW)),
    ]
}

pub async fn recover(state: &Arc<Vpses>, task: Arc<Task>, op: OpRow) {
    let finish = match op.kind.as_str() {
        create::Step::KIND => create::recover(state, &task, &op).await,
        copy::Step::KIND => copy::recover(state, &task, &op).await,
        move_to::Step::KIND => move_to::recover(state, &task, &op).await,
        delete::Step::KIND => delete::recover(state, &task, &op).await,
        restore::Step::KIND => restore::recover(state, &task, &op).await,
        other => Finish::Done(Err(Error::Internal(anyhow::anyhow!(
            "an operation of unknown kind '{other}' cannot be recovered"
        )))),
    };
    conclude(state, &task, &[op.vps_id], finish).await;
}

/// What a request asks for beyond the task itself, written in the same transaction.
#[derive(Default)]
struct Begin {
    /// The operation's parameters, when it is durable (its steps are recorded).
    durable: Option<serde_json::Value>,
    /// A host to hold room on for the VPS (a move's target).
    reserve: Option<i64>,
    /// The desired state the request sets.
    desired: Option<DesiredState>,
}

/// Records the request in one transaction: the task, the claims on `claim` (409 if another
/// operation holds one, before anything is written), the audit event, and what `extra` asks.
#[allow(clippy::too_many_arguments)]
async fn begin(
    state: &Arc<Vpses>,
    actor: &Actor,
    op: VpsOperation,
    vps: &VpsRow,
    claim: &[(i64, String)],
    message: String,
    details: serde_json::Value,
    extra: Begin,
) -> Result<Arc<Task>> {
    state.accepting()?;
    let kind = format!("vps.{}", op.as_str());
    let (a, id) = (actor.clone(), vps.id);
    let claim = claim.to_vec();
    let row = state
        .db
        .run(move |c| {
            crate::db::atomic(c, |c| {
                let mut row = crate::tasks::insert(c, &kind, "vps", &id.to_string(), &a)?;
                let names: Vec<(i64, &str)> = claim.iter().map(|(i, n)| (*i, n.as_str())).collect();
                ops::claims::take(c, &names, row.id, op)?;
                crate::tasks::started_now(c, &mut row)?;
                if let Some(p) = &extra.durable {
                    ops::record(c, row.id, &kind, id, p)?;
                }
                if let Some(h) = extra.reserve {
                    ops::claims::reserve(c, row.id, h, id)?;
                }
                if let Some(d) = extra.desired {
                    crate::repo::vpses::set_desired(c, id, d)?;
                }
                audit::record(
                    c,
                    &a,
                    Change::new(&kind, "vps", id, message).details(details),
                )?;
                Ok(row)
            })
        })
        .await?;
    Ok(Task::new(
        state.db.clone(),
        state.hub.clone(),
        actor.clone(),
        &row,
    ))
}

/// Whether `op` may begin on `v` now: not while another operation holds it, and only from the
/// states the transition table allows. The refusal names the state.
async fn check(state: &Vpses, v: &VpsRow, op: VpsOperation) -> Result<()> {
    let id = v.id;
    let holder = state.db.run(move |c| ops::claims::holder(c, id)).await?;
    serverware_shared::state::check(op, observed(state, v), holder)
        .map_err(|r| Error::conflict(None, r.message(&v.name, op)))
}

/// Host row and name of a placed VPS.
async fn host_of(state: &Vpses, v: &VpsRow) -> Result<HostRow> {
    let Some(h) = v.host_id else {
        return Err(Error::conflict(
            None,
            format!("VPS {} is on no host", v.name),
        ));
    };
    state.db.run(move |c| load_host(c, h)).await
}

/// A host may already have a container of that name that SERVERware does not manage (it is
/// reported, never touched): refuse before anything is made.
async fn name_free_on(state: &Vpses, host_id: i64, host_name: &str, name: &str) -> Result<()> {
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
    host_id: i64,
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
                vps = v.name,
                host = host_name,
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
    tracing::warn!(vps = v.name, host = host_name, "removed a stale copy");
    Ok(true)
}

/// Undoes a create or copy: the container goes from its host, then the record. False when the
/// host cannot be reached or refuses: nothing is forgotten then, and it is tried again later.
async fn remove_unfinished(state: &Vpses, task: &Task, host_id: i64, vps: &VpsRow) -> bool {
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

/// Records what a VPS is now, and optionally what it should be.
async fn set_state(
    state: &Vpses,
    id: i64,
    observed: ObservedState,
    desired: Option<DesiredState>,
) -> Result<()> {
    state
        .db
        .run(move |c| {
            crate::repo::vpses::set_observed(c, id, observed)?;
            if let Some(d) = desired {
                crate::repo::vpses::set_desired(c, id, d)?;
            }
            Ok(())
        })
        .await?;
    changed(&state.hub, id, ChangeKind::Updated);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_s_two_ways_cover_its_steps() {
        let mut walked: Vec<restore::Step> = restore::IN_PLACE
            .iter()
            .chain(restore::AS_NEW)
            .copied()
            .collect();
        walked.dedup();
        for s in restore::Step::STEPS {
            assert!(walked.contains(s), "{s:?} is walked by no way of restoring");
        }
        let kinds: Vec<&str> = durable_steps().iter().map(|(k, _)| *k).collect();
        for k in DURABLE_KINDS {
            assert!(kinds.iter().any(|x| x.starts_with(k)), "{k} is not walked");
        }
    }
}
