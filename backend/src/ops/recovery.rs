//! Drives the operations nobody is driving: at start every recorded operation (the controller
//! died while it ran), later those parked until a host came back. Each is run by its kind's
//! own recovery, which finishes it or unwinds it and says which in the task log. The kinds
//! register their recovery with the [`Engine`] when the controller is wired together
//! (`server.rs`); the engine knows none of them.

use super::{unfinished, OpRow};
use crate::audit::Actor;
use crate::db::Db;
use crate::error::Result;
use crate::hub::Hub;
use crate::models::now;
use crate::tasks::Task;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A kind's recovery: takes over a recorded operation of that kind and sees it to its end (or
/// parks it again).
pub type RecoverFn =
    Arc<dyn Fn(Arc<Task>, OpRow) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Whether the operations of a previous run may be taken up now (see [`Engine::wait_for`]).
pub type Ready = Arc<dyn Fn() -> bool + Send + Sync>;

/// The durable-operation engine's running part: what is driven now, and each kind's recovery.
pub struct Engine {
    db: Db,
    hub: Arc<Hub>,
    /// Set when the controller is stopping: nothing is taken over any more.
    stopping: super::Stopping,
    /// Until it says yes, nothing recorded by an earlier run is taken up.
    ready: RwLock<Option<Ready>>,
    /// The operations this controller is driving now.
    pub live: Live,
    kinds: RwLock<HashMap<String, RecoverFn>>,
}

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

impl Engine {
    pub fn new(db: Db, hub: Arc<Hub>, stopping: super::Stopping) -> Self {
        Engine {
            db,
            hub,
            stopping,
            ready: RwLock::new(None),
            live: Live::default(),
            kinds: Default::default(),
        }
    }

    /// Takes up nothing an earlier run (or the partner of a pair) left until `ready` says so:
    /// an operation resumed before its hosts are connected again would fail for no reason.
    pub fn wait_for(&self, ready: Ready) {
        *self.ready.write().unwrap_or_else(|p| p.into_inner()) = Some(ready);
    }

    /// Makes `recover` the recovery of the operations of `kind`.
    pub fn register(&self, kind: &str, recover: RecoverFn) {
        self.kinds
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kind.to_string(), recover);
    }

    /// At start, before anything else runs: tasks left running without a recorded operation
    /// (start, stop, restart, edit, template builds) cannot be resumed step by step. They are
    /// failed and their claims released; the reconciler moves their VPSes to the desired state.
    pub async fn settle_interrupted(&self) -> Result<usize> {
        self.db
            .transaction(|c| {
                crate::repo::operations::fail_unrecorded_running(
                    c,
                    "the controller stopped while the task ran; the VPS is brought to its desired state by the reconciler",
                    now(),
                )
            })
            .await
    }

    /// Starts the recovery of every recorded operation that nobody drives and that is due.
    pub async fn drive(self: &Arc<Self>) -> Result<()> {
        if self.stopping.is_stopping() {
            return Ok(());
        }
        let ready = self
            .ready
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(|r| r());
        if !ready {
            return Ok(());
        }
        for op in unfinished(&self.db).await? {
            let ours = op.owner == super::instance();
            // An operation this run starts is driven by its own work, never here.
            if ours && !self.live.is_parked(op.task_id) {
                continue;
            }
            if self.live.is_running(op.task_id) || !self.live.due(op.task_id) {
                continue;
            }
            if !self.live.enter(op.task_id) {
                continue;
            }
            let engine = self.clone();
            tokio::spawn(async move { engine.recover_one(op).await });
        }
        Ok(())
    }

    async fn recover_one(&self, op: OpRow) {
        let tid = op.task_id;
        if op.owner != super::instance() {
            if let Err(e) = super::adopt(&self.db, tid).await {
                tracing::error!(task = tid, "cannot take over an unfinished operation: {e}");
                self.live.leave(tid);
                return;
            }
        }
        let row = self.db.run(move |c| crate::tasks::load(c, tid)).await;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(
                    task = tid,
                    "cannot load the task of an unfinished operation: {e}"
                );
                self.live.leave(tid);
                return;
            }
        };
        let task = Task::new(
            self.db.clone(),
            self.hub.clone(),
            Actor::system("recovery"),
            &row,
        );
        let recover = self
            .kinds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&op.kind)
            .cloned();
        match recover {
            Some(recover) => recover(task, op).await,
            None => {
                // A kind this controller does not know (a newer one's, after a downgrade) is left
                // for a controller that does, and said so.
                if !self.live.announced(tid) {
                    task.log(format!(
                        "this controller cannot resume an operation of kind '{}'; it is left as it is",
                        op.kind
                    ))
                    .await;
                }
                self.live.park(tid, true);
                self.live.leave(tid);
            }
        }
    }
}
