//! Durable operations as sagas: a kind declares its steps in order (`Steps`), the work of each
//! step and how to undo what was done; one driver runs, resumes and rolls back every kind alike.
//!
//! The driver records each step once its work returned (`ops::step`, after which test builds
//! may kill the controller: the crash test walks every kind's `STEPS`). A failed step turns the
//! operation around: its phase becomes `undo` and the kind undoes everything up to the last
//! step recorded. After a restart, [`resume`] reads the last step back: an operation with no
//! step left is finished, one the kind says may go on goes on, any other is rolled back.

use super::{set_phase, step, Finish, OpRow, Phase, Steps};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::tasks::Task;
use std::future::Future;

/// One durable operation, with what its steps need.
pub trait Saga: Send + Sync {
    type Step: Steps;

    /// Whether `step` is part of this run (a create that does not start skips `started`).
    fn applies(&self, _step: Self::Step) -> bool {
        true
    }

    /// Does `step`'s work; the driver records the step once it returned Ok.
    fn run(&self, step: Self::Step) -> impl Future<Output = Result<()>> + Send;

    /// Every step done: records the outcome (the VPS's state) and says what was done.
    fn done(&self) -> impl Future<Output = Result<String>> + Send;

    /// What follows once the outcome is fixed and cannot change it (removing a leftover that
    /// is parked harmlessly); `Finish::Later` when it must be tried again.
    fn after(&self, outcome: String) -> impl Future<Output = Finish> + Send {
        async move { Finish::Done(Ok(outcome)) }
    }

    /// Undoes everything done up to `reached` (None: nothing yet), then ends with `why`; or
    /// `Finish::Later` when it cannot yet (a host it must reach is offline).
    fn undo(&self, reached: Option<Self::Step>, why: Error) -> impl Future<Output = Finish> + Send;

    /// Interrupted after `reached` (the controller stopped): whether it goes on from there
    /// rather than being rolled back.
    fn goes_on(&self, _reached: Option<Self::Step>) -> bool {
        false
    }

    /// A step that failed is tried again later (the operation is parked and the recovery loop
    /// takes it up), rather than the operation being rolled back: for what cannot be undone
    /// once asked, such as a delete.
    fn retries(&self) -> bool {
        false
    }

    /// Why an interrupted operation that is rolled back failed, as its task says.
    fn interrupted(&self) -> Error;
}

/// The steps of `S` after `reached` (all when None) that apply to this run.
fn left<S: Saga>(saga: &S, reached: Option<S::Step>) -> Vec<S::Step> {
    let all = S::Step::STEPS;
    let from = reached
        .and_then(|r| all.iter().position(|s| *s == r))
        .map_or(0, |i| i + 1);
    all[from..]
        .iter()
        .copied()
        .filter(|s| saga.applies(*s))
        .collect()
}

/// A controller that no longer leads its pair does nothing more to an operation, not even
/// undo what it did: the record stays as it is, and the partner that leads now takes it up
/// from there (fencing by lease, checked before every step).
fn fenced(db: &Db) -> Option<Finish> {
    (!db.leads()).then_some(Finish::Later {
        release_claims: false,
    })
}

/// Runs the steps after `reached` (from the first when None), recording each; then `done`.
pub async fn forward<S: Saga>(
    db: &Db,
    task: &Task,
    saga: &S,
    mut reached: Option<S::Step>,
) -> Finish {
    for s in left(saga, reached) {
        if let Some(f) = fenced(db) {
            return f;
        }
        if let Err(e) = saga.run(s).await {
            if saga.retries() {
                task.log(format!(
                    "{}; step '{}' is tried again later",
                    e.message(),
                    s.name()
                ))
                .await;
                return Finish::Later {
                    release_claims: false,
                };
            }
            return back(db, task, saga, reached, e).await;
        }
        // Its work is done whether or not the record lands: undo covers it either way.
        reached = Some(s);
        if let Err(e) = step(db, task.id(), s).await {
            return back(db, task, saga, reached, e).await;
        }
    }
    if let Some(f) = fenced(db) {
        return f;
    }
    match saga.done().await {
        Ok(m) => saga.after(m).await,
        Err(e) => back(db, task, saga, reached, e).await,
    }
}

/// Turns the operation around: its phase is `undo` from now on (a restart goes on undoing), and
/// what was done up to `reached` is undone.
async fn back<S: Saga>(
    db: &Db,
    task: &Task,
    saga: &S,
    reached: Option<S::Step>,
    why: Error,
) -> Finish {
    if let Some(f) = fenced(db) {
        return f;
    }
    let _ = set_phase(db, task.id(), Phase::Undo).await;
    saga.undo(reached, why).await
}

/// Takes up a recorded operation after a restart (or a parked one): finished if no step is
/// left, on from where it stopped if the kind says so, else (and when it was already being
/// undone) rolled back. `announce`: say so in its log (not again for one this run parked).
pub async fn resume<S: Saga>(db: &Db, task: &Task, saga: &S, op: &OpRow, announce: bool) -> Finish {
    if let Some(f) = fenced(db) {
        return f;
    }
    let reached = match op.reached::<S::Step>() {
        Ok(r) => r,
        Err(e) => return Finish::Done(Err(e)),
    };
    if op.undoing() {
        return saga.undo(reached, saga.interrupted()).await;
    }
    if left(saga, reached).is_empty() {
        if announce {
            task.log("resumed: every step was done").await;
        }
        return match saga.done().await {
            Ok(m) => saga.after(m).await,
            Err(e) => back(db, task, saga, reached, e).await,
        };
    }
    if saga.goes_on(reached) {
        if announce {
            task.log(format!("resumed: it goes on after step '{}'", op.step))
                .await;
        }
        return forward(db, task, saga, reached).await;
    }
    task.log(format!("rolling back: it stopped after step '{}'", op.step))
        .await;
    back(db, task, saga, reached, saga.interrupted()).await
}
