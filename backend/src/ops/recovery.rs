//! Drives the operations nobody is driving: at start every recorded operation (the controller
//! died while it ran), later those parked until a host came back. Each is run by its kind's
//! own recovery, which finishes it or unwinds it and says which in the task log.

use super::{unfinished, OpRow};
use crate::audit::Actor;
use crate::core::Core;
use crate::error::Result;
use crate::models::now;
use crate::schema::{tasks, vps_claims};
use diesel::prelude::*;
use serverware_shared::state::TaskStatus;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Operations being driven now by this controller, and when a parked one may be tried again.
#[derive(Default)]
pub struct Live {
    running: Mutex<HashSet<i64>>,
    /// This run's operations that wait to be tried again (a host was unreachable).
    parked: Mutex<HashSet<i64>>,
    announced: Mutex<HashSet<i64>>,
    retry: Mutex<HashMap<i64, (Instant, Duration)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The first retry of a parked operation, doubled each time up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

impl Live {
    /// Marks an operation as driven; false if it already is.
    pub fn enter(&self, task: i64) -> bool {
        lock(&self.running).insert(task)
    }

    pub fn leave(&self, task: i64) {
        lock(&self.running).remove(&task);
    }

    /// Marks an operation of this run as waiting for the recovery loop (or not any more).
    pub fn park(&self, task: i64, parked: bool) {
        if parked {
            lock(&self.parked).insert(task);
        } else {
            lock(&self.parked).remove(&task);
        }
    }

    fn is_parked(&self, task: i64) -> bool {
        lock(&self.parked).contains(&task)
    }

    /// Whether a parked operation is due for another try (and books the one after it).
    fn due(&self, task: i64) -> bool {
        let mut r = lock(&self.retry);
        let now = Instant::now();
        match r.get(&task).copied() {
            Some((at, _)) if at > now => false,
            Some((_, wait)) => {
                let next = (wait * 2).min(MAX_RETRY);
                r.insert(task, (now + next, next));
                true
            }
            None => {
                r.insert(task, (now + FIRST_RETRY, FIRST_RETRY));
                true
            }
        }
    }

    /// Whether this controller already said in the task's log that it took the operation
    /// over (and marks it said).
    pub fn announced(&self, task: i64) -> bool {
        !lock(&self.announced).insert(task)
    }

    /// How many operations are being driven now.
    pub fn count(&self) -> usize {
        lock(&self.running).len()
    }

    pub fn is_running(&self, task: i64) -> bool {
        lock(&self.running).contains(&task)
    }
}

/// At start, before anything else runs: tasks left running without a recorded operation
/// (start, stop, restart, edit, template builds) cannot be resumed step by step. They are
/// failed and their claims released; the reconciler moves their VPSes to the desired state.
pub async fn settle_interrupted(state: &Core) -> Result<usize> {
    state
        .db
        .run(|c| {
            c.transaction(|c| {
                let durable: Vec<i64> = crate::schema::operations::table
                    .select(crate::schema::operations::task_id)
                    .load(c)?;
                let stale: Vec<i64> = tasks::table
                    .filter(tasks::status.eq(TaskStatus::Running.as_str()))
                    .filter(tasks::id.ne_all(&durable))
                    .select(tasks::id)
                    .load(c)?;
                diesel::delete(vps_claims::table.filter(vps_claims::task_id.eq_any(&stale)))
                    .execute(c)?;
                diesel::update(tasks::table.filter(tasks::id.eq_any(&stale)))
                    .set((
                        tasks::status.eq(TaskStatus::Failed.as_str()),
                        tasks::error.eq(
                            "the controller stopped while the task ran; the VPS is brought to its desired state by the reconciler",
                        ),
                        tasks::finished_at.eq(now()),
                    ))
                    .execute(c)?;
                Ok(stale.len())
            })
        })
        .await
}

/// Starts the recovery of every recorded operation that nobody drives and that is due.
pub async fn drive(state: &Arc<Core>) -> Result<()> {
    if state.accepting().is_err() {
        return Ok(());
    }
    for op in unfinished(&state.db).await? {
        let ours = op.owner == super::instance();
        // An operation this run starts is driven by its own work, never here.
        if ours && !state.ops_live.is_parked(op.task_id) {
            continue;
        }
        if state.ops_live.is_running(op.task_id) || !state.ops_live.due(op.task_id) {
            continue;
        }
        if !state.ops_live.enter(op.task_id) {
            continue;
        }
        let state = state.clone();
        tokio::spawn(async move { recover_one(&state, op).await });
    }
    Ok(())
}

async fn recover_one(state: &Arc<Core>, op: OpRow) {
    let tid = op.task_id;
    if op.owner != super::instance() {
        if let Err(e) = super::adopt(&state.db, tid).await {
            tracing::error!(task = tid, "cannot take over an unfinished operation: {e}");
            state.ops_live.leave(tid);
            return;
        }
    }
    let row = state.db.run(move |c| crate::tasks::load(c, tid)).await;
    let row = match row {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(
                task = tid,
                "cannot load the task of an unfinished operation: {e}"
            );
            state.ops_live.leave(tid);
            return;
        }
    };
    let task = crate::tasks::Task::new(
        state.db.clone(),
        state.hub.clone(),
        Actor::system("recovery"),
        &row,
    );
    crate::vps::recover(state, task, op).await;
}
