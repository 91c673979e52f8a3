//! The plumbing every VPS operation shares: a request recorded in one transaction (task, claims,
//! audit event, durable record, reservation), its work spawned so that it always ends properly,
//! and the recovery of each durable kind after a restart.

use super::record::changed;
use super::view::observed;
use super::{copy, create, delete, move_to, restore, Vpses};
use crate::audit::{self, Actor, Change};
use crate::error::{Error, Result};
use crate::ops::{self, Finish, OpRow, Steps};
use crate::repo::vpses::VpsRow;
use crate::tasks::Task;
use serverware_shared::state::{DesiredState, VpsOperation};
use serverware_shared::ws::ChangeKind;
use serverware_shared::{HostId, VpsId};
use std::sync::Arc;

/// What a request asks for beyond the task itself, written in the same transaction.
#[derive(Default)]
pub(super) struct Begin {
    /// The operation's parameters, when it is durable (its steps are recorded).
    pub(super) durable: Option<serde_json::Value>,
    /// A host to hold room on for the VPS (a move's target).
    pub(super) reserve: Option<HostId>,
    /// The desired state the request sets.
    pub(super) desired: Option<DesiredState>,
}

/// Records the request in one transaction: the task, the claims on `claim` (409 if another
/// operation holds one, before anything is written), the audit event, and what `extra` asks.
#[allow(clippy::too_many_arguments)]
pub(super) async fn begin(
    state: &Arc<Vpses>,
    actor: &Actor,
    op: VpsOperation,
    vps: &VpsRow,
    claim: &[(VpsId, String)],
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
                let names: Vec<(VpsId, &str)> =
                    claim.iter().map(|(i, n)| (*i, n.as_str())).collect();
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
pub(super) async fn check(state: &Vpses, v: &VpsRow, op: VpsOperation) -> Result<()> {
    let id = v.id;
    let holder = state.db.run(move |c| ops::claims::holder(c, id)).await?;
    serverware_shared::state::check(op, observed(state, v), holder)
        .map_err(|r| Error::conflict(None, r.message(&v.name, op)))
}

/// Starts the work of a task in the background. Whatever the work does (panics included), the
/// operation ends properly: its claims and reservations are released and the task gets its
/// outcome, unless the work says it must be finished later (then the recovery loop owns it).
pub(super) fn spawn<F, Fut>(state: Arc<Vpses>, task: Arc<Task>, vps_ids: Vec<VpsId>, work: F)
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
pub(super) async fn conclude(state: &Arc<Vpses>, task: &Task, vps_ids: &[VpsId], finish: Finish) {
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
