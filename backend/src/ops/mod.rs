//! The durable-operation engine. A multi-step operation (create, copy, move, delete) is a row in
//! `operations` holding what it was asked and the last step it completed; each step is written
//! as it completes. A controller that dies mid-way finds the row at its next start, and the
//! operation's own recovery finishes it or unwinds it (the saga model: each step an action with
//! its undo, a persisted log, recovery that replays it). Claims (one operation per VPS) and
//! capacity reservations are rows too, taken in the same transaction as the task, released in
//! one transaction when the operation ends.

pub use crate::repo::claims;
pub mod recovery;
pub mod saga;

use crate::db::{Db, DbConn};
use crate::error::{Error, Result};
use crate::models::now;
use crate::repo::operations as repo;
use serde::{de::DeserializeOwned, Serialize};
use serverware_shared::VpsId;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set once when the controller begins to stop: from then on no new operation is accepted,
/// and the engine takes nothing over. Every service that starts operations holds a clone.
#[derive(Clone, Default)]
pub struct Stopping(Arc<AtomicBool>);

impl Stopping {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// New operations are refused once the controller is stopping.
    pub fn accepting(&self) -> Result<()> {
        if self.is_stopping() {
            Err(Error::Stopping(
                "the controller is stopping; try again once it is back".into(),
            ))
        } else {
            Ok(())
        }
    }
}

/// The steps of one kind of operation, in the order they are done: each is written to the
/// operation's record as it completes, and the kind's recovery reads back the last one. Declared
/// with [`steps!`]; the crash test kills the controller after each of [`Steps::STEPS`].
pub trait Steps: Copy + Eq + std::fmt::Debug + Send + Sync + 'static {
    /// The operation's kind, as recorded (`vps.move`).
    const KIND: &'static str;
    /// Every step, in order.
    const STEPS: &'static [Self];
    /// The step as recorded.
    fn name(self) -> &'static str;

    fn parse(s: &str) -> Option<Self> {
        Self::STEPS.iter().copied().find(|x| x.name() == s)
    }
}

/// Declares an operation kind's steps: an enum, its kind and each step's recorded name.
macro_rules! steps {
    ($(#[$m:meta])* $vis:vis enum $name:ident for $kind:literal {
        $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name { $($(#[$vm])* $var),+ }
        impl $crate::ops::Steps for $name {
            const KIND: &'static str = $kind;
            const STEPS: &'static [Self] = &[$($name::$var),+];
            fn name(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
        }
    };
}
pub(crate) use steps;

/// The step an operation is recorded at before its first step completes.
const RECORDED: &str = "recorded";

/// Where an operation's work left it.
pub enum Finish {
    /// It ended (succeeded, failed, or was rolled back): claims, reservations and its record
    /// are released and the task gets this outcome.
    Done(Result<String>),
    /// It cannot end yet (a host it must reach is offline). The record stays and the recovery
    /// loop tries again; `release_claims` frees the VPS for other operations meanwhile (when
    /// what is left touches nothing the VPS needs, such as removing a stale copy).
    Later { release_claims: bool },
}

impl From<Result<String>> for Finish {
    fn from(r: Result<String>) -> Self {
        Finish::Done(r)
    }
}

/// Which way a recorded operation is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Forward,
    Undo,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::Undo => "undo",
        }
    }
}

pub use crate::repo::operations::OpRow;

impl OpRow {
    pub fn params<P: DeserializeOwned>(&self) -> Result<P> {
        serde_json::from_str(&self.params).map_err(|e| {
            Error::Internal(anyhow::anyhow!(
                "operation of task {} has unreadable parameters: {e}",
                self.task_id
            ))
        })
    }

    pub fn undoing(&self) -> bool {
        self.phase == Phase::Undo.as_str()
    }

    /// The last step it completed (None: none yet), as the kind's steps `S`.
    pub fn reached<S: Steps>(&self) -> Result<Option<S>> {
        if self.step == RECORDED {
            return Ok(None);
        }
        S::parse(&self.step).map(Some).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "operation {} of task {} is at step '{}', which {} does not have",
                self.kind,
                self.task_id,
                self.step,
                S::KIND
            ))
        })
    }
}

/// This controller run, as the owner of the operations it starts. Recovery takes over the
/// operations of other runs (left by a controller that stopped) and this run's parked ones, never
/// one this run is starting: its record commits before its work is spawned.
pub fn instance() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        use rand::Rng;
        let n: u64 = rand::rng().random();
        format!("{}-{n:016x}", std::process::id())
    })
}

/// Records a new operation at its first step, inside the caller's transaction.
pub fn record(
    c: &mut DbConn,
    task_id: i64,
    kind: &str,
    vps_id: VpsId,
    params: &impl Serialize,
) -> Result<()> {
    let params = serde_json::to_string(params).map_err(|e| Error::Internal(e.into()))?;
    repo::insert(
        c,
        &OpRow {
            task_id,
            kind: kind.to_string(),
            vps_id,
            params,
            step: RECORDED.to_string(),
            phase: Phase::Forward.as_str().to_string(),
            owner: instance().to_string(),
            updated_at: now(),
        },
    )
}

/// Makes this run the owner of an operation it recovers.
pub async fn adopt(db: &Db, task_id: i64) -> Result<()> {
    db.run(move |c| repo::set_owner(c, task_id, instance()))
        .await
}

/// Writes that an operation completed `step` (durably, before the next begins). Test builds may
/// kill the controller right after it (see [`crate::fault`]).
pub async fn step<S: Steps>(db: &Db, task_id: i64, step: S) -> Result<()> {
    db.run(move |c| step_in(c, task_id, step)).await?;
    stepped(step);
    Ok(())
}

/// Writes `step` inside the caller's transaction (with what the step itself changed); call
/// [`stepped`] once it committed.
pub fn step_in<S: Steps>(c: &mut DbConn, task_id: i64, step: S) -> Result<()> {
    repo::set_step(c, task_id, step.name(), now())
}

/// A step's write committed: test builds may kill the controller here.
pub fn stepped<S: Steps>(step: S) {
    crate::fault::point(S::KIND, step.name());
}

/// Writes that an operation now unwinds.
pub async fn set_phase(db: &Db, task_id: i64, phase: Phase) -> Result<()> {
    db.run(move |c| repo::set_phase(c, task_id, phase.as_str(), now()))
        .await
}

/// Ends an operation: its claims, reservations and record go in one transaction.
pub async fn release(db: &Db, task_id: i64) -> Result<()> {
    db.transaction(move |c| {
        claims::release(c, task_id)?;
        repo::delete(c, task_id)
    })
    .await
}

/// Frees the VPSes an operation holds while its record stays (see [`Finish::Later`]).
pub async fn release_claims(db: &Db, task_id: i64) -> Result<()> {
    db.transaction(move |c| claims::release(c, task_id)).await
}

/// The recorded operations, oldest first.
pub async fn unfinished(db: &Db) -> Result<Vec<OpRow>> {
    db.run(repo::all).await
}
