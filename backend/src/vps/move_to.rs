//! Move a VPS to another host: stop, transfer, start there, remove the old copy. Durable: the
//! target's room is reserved from the start; until the database names the new host, a move
//! that fails or is interrupted is unwound (the partial copy goes, the VPS runs again where it
//! was); after that it is carried forward. The old copy is parked (stopped, autostart off)
//! before anything is sent, so a leftover can never start by itself, and it is removed,
//! retried until done.

use super::agent::{call, conn, spec, QUICK};
use super::on_host::name_free_on;
use super::operation::{begin, check, spawn, Begin};
use super::placement::{candidates, fits, need};
use super::record::{changed, host_of, set_state, HostRows};
use super::transfer::{live_disk, slots, transfer};
use super::{bring_up, Vpses, DEFAULT_STOP_TIMEOUT};
use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::hosts::{Conn, HostRow};
use crate::ops::{self, saga, Finish, OpRow};
use crate::repo::vpses::{load, load_host, VpsRow};
use crate::tasks::Task;
use serde::{Deserialize, Serialize};
use serverware_shared::agent::{AgentRequest, AgentResponse};
use serverware_shared::api::TaskResponse;
use serverware_shared::state::{ObservedState, VpsOperation};
use serverware_shared::ws::ChangeKind;
use serverware_shared::{HostId, VpsId};
use std::sync::Arc;
use std::time::{Duration, Instant};

crate::ops::steps! {
    /// The steps of a move, in order (`target_started` only for a VPS that ran).
    pub enum Step for "vps.move" {
        TargetDefined = "target_defined",
        SourceParked = "source_parked",
        Transferred = "transferred",
        TargetConfigured = "target_configured",
        TargetStarted = "target_started",
        Switched = "switched",
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct Params {
    from_host: HostId,
    to_host: HostId,
    was_running: bool,
}

pub async fn move_to(
    state: Arc<Vpses>,
    actor: Actor,
    id: VpsId,
    target: HostId,
) -> Result<TaskResponse> {
    let v = state.db.run(move |c| load(c, id)).await?;
    check(&state, &v, VpsOperation::Move).await?;
    let from = host_of(&state, &v).await?;
    if from.id == target {
        return Err(Error::conflict(
            Some("host_id"),
            format!("VPS {} is already on {}", v.name, from.name),
        ));
    }
    conn(&state, from.id, &from.name)?;
    // Placement and the reservation it leads to are one step for this controller.
    let placing = state.placement.lock().await;
    let cands = candidates(&state, Some(id)).await?;
    let c = cands
        .iter()
        .find(|c| c.id == target)
        .ok_or_else(|| Error::invalid("host_id", format!("no host with id {target}")))?;
    if !c.online {
        return Err(Error::conflict(
            Some("host_id"),
            format!("host {} is offline", c.name),
        ));
    }
    fits(c, &need(&v)).map_err(|m| Error::conflict(Some("host_id"), m))?;
    let to_name = c.name.clone();
    if let Err(e) = name_free_on(&state, target, &to_name, &v.name).await {
        // A move that began since the check above is copying this VPS there: say so, rather
        // than call its copy a stranger's container.
        check(&state, &v, VpsOperation::Move).await?;
        return Err(e);
    }
    let params = Params {
        from_host: from.id,
        to_host: target,
        was_running: v.status == serverware_shared::state::ObservedState::Running,
    };
    let task = begin(
        &state,
        &actor,
        VpsOperation::Move,
        &v,
        &[(id, v.name.clone())],
        format!("move VPS {} from {} to {to_name}", v.name, from.name),
        serde_json::json!({ "from": from.id, "to": target }),
        Begin {
            durable: Some(serde_json::json!(params)),
            reserve: Some(target),
            ..Default::default()
        },
    )
    .await?;
    drop(placing);
    let out = task.response();
    spawn(state, task, vec![id], move |state, task| async move {
        let saga = Move::new(&state, &task, v, params);
        saga::forward(&state.db, &task, &saga, None).await
    });
    Ok(out)
}

/// A move as a saga. Until the database names the new host it is undone (the partial copy
/// goes, the VPS runs again where it was); from a copy complete on the target on, carried
/// forward; after the switch, the parked old copy is removed, retried until done.
struct Move<'a> {
    state: &'a Vpses,
    task: &'a Task,
    vps: VpsRow,
    p: Params,
    /// Transfer slots on both hosts, taken before the VPS stops and held until its files are
    /// sent.
    slots: std::sync::Mutex<Option<Vec<tokio::sync::OwnedSemaphorePermit>>>,
    /// When it stopped on its old host (the downtime runs from there to the switch).
    down: std::sync::Mutex<Option<Instant>>,
    downtime: std::sync::Mutex<Option<Duration>>,
    /// The bytes of root filesystem sent (the task shows them when done).
    sent: std::sync::Mutex<Option<u64>>,
    rows: HostRows,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<'a> Move<'a> {
    fn new(state: &'a Vpses, task: &'a Task, vps: VpsRow, p: Params) -> Self {
        Move {
            state,
            task,
            vps,
            p,
            slots: Default::default(),
            down: Default::default(),
            downtime: Default::default(),
            sent: Default::default(),
            rows: Default::default(),
        }
    }

    async fn host(&self, id: HostId) -> Result<(HostRow, Conn)> {
        let h = self.rows.get(self.state, id).await?;
        let c = conn(self.state, h.id, &h.name)?;
        Ok((h, c))
    }

    async fn take_slots(&self) -> Result<()> {
        if lock(&self.slots).is_none() {
            let s = slots(self.state, self.task, &[self.p.from_host, self.p.to_host]).await?;
            *lock(&self.slots) = Some(s);
        }
        Ok(())
    }

    /// Stopped on its old host (if it ran), and parked there: it must never start by itself
    /// again (its host rebooting, say).
    async fn park(&self) -> Result<()> {
        let (from, cf) = self.host(self.p.from_host).await?;
        let v = &self.vps;
        self.take_slots().await?;
        *lock(&self.down) = Some(Instant::now());
        if self.p.was_running {
            let r = call(
                &cf,
                AgentRequest::VpsStop {
                    name: v.name.clone(),
                    timeout_secs: DEFAULT_STOP_TIMEOUT,
                },
                Duration::from_secs(u64::from(DEFAULT_STOP_TIMEOUT) + 60),
            )
            .await?;
            let forced = matches!(r, AgentResponse::Stopped { forced: true });
            self.task
                .log(format!(
                    "stopped on {}{}",
                    from.name,
                    if forced { " (by force)" } else { "" }
                ))
                .await;
        }
        let mut parked = spec(v, &from);
        parked.autostart = false;
        call(&cf, AgentRequest::VpsDefine { spec: parked }, QUICK).await?;
        let estimate = live_disk(self.state, from.id, &v.name);
        self.task.progress(10, 0, estimate.map(|e| e as i64)).await;
        Ok(())
    }

    /// Its files to the target. The VPS keeps its id range: its files keep their owners.
    async fn transfer(&self) -> Result<()> {
        let ((from, cf), (to, ct)) = (
            self.host(self.p.from_host).await?,
            self.host(self.p.to_host).await?,
        );
        let v = &self.vps;
        self.take_slots().await?;
        let estimate = live_disk(self.state, from.id, &v.name);
        let ids = (v.ids_on_disk(), v.ids_on_disk());
        let r = transfer(
            self.state,
            self.task,
            (&cf, from.id),
            &v.name,
            (&ct, to.id),
            &v.name,
            ids,
            estimate,
            (10, 85),
        )
        .await;
        *lock(&self.slots) = None;
        let (bytes, _) = r?;
        *lock(&self.sent) = Some(bytes);
        self.task
            .log(format!("{bytes} bytes of root filesystem transferred"))
            .await;
        Ok(())
    }

    /// The database names the new host: from here on the move is carried forward.
    async fn switch(&self) -> Result<()> {
        let (id, to) = (self.vps.id, self.p.to_host);
        let observed = if self.p.was_running {
            ObservedState::Running
        } else {
            ObservedState::Stopped
        };
        self.state
            .db
            .run(move |c| crate::repo::vpses::moved(c, id, to, observed.as_str()))
            .await?;
        changed(&self.state.hub, id, ChangeKind::Updated);
        let down = *lock(&self.down);
        if let (true, Some(down)) = (self.p.was_running, down) {
            let d = down.elapsed();
            *lock(&self.downtime) = Some(d);
            let to = self.host(to).await.map(|(h, _)| h.name).unwrap_or_default();
            self.task
                .log(format!("running on {to}; downtime {} ms", d.as_millis()))
                .await;
        }
        Ok(())
    }
}

impl saga::Saga for Move<'_> {
    type Step = Step;

    fn applies(&self, step: Step) -> bool {
        step != Step::TargetStarted || self.p.was_running
    }

    async fn run(&self, step: Step) -> Result<()> {
        let v = &self.vps;
        match step {
            Step::TargetDefined => {
                let (from, to) = (
                    self.host(self.p.from_host).await?.0,
                    self.host(self.p.to_host).await?,
                );
                self.task
                    .log(format!(
                        "moving VPS {} from {} to {}",
                        v.name, from.name, to.0.name
                    ))
                    .await;
                bring_up::define(&to.1, v, &to.0).await
            }
            Step::SourceParked => self.park().await,
            Step::Transferred => self.transfer().await,
            Step::TargetConfigured => {
                let (to, ct) = self.host(self.p.to_host).await?;
                bring_up::define(&ct, v, &to).await
            }
            Step::TargetStarted => {
                let (_, ct) = self.host(self.p.to_host).await?;
                bring_up::start(&ct, v).await
            }
            Step::Switched => self.switch().await,
        }
    }

    async fn done(&self) -> Result<String> {
        let sent = lock(&self.sent).map_or(0, |b| b as i64);
        self.task.progress(90, sent, Some(sent)).await;
        Ok(match *lock(&self.downtime) {
            Some(d) => format!(
                "VPS {} moved (downtime {} ms)",
                self.vps.name,
                d.as_millis()
            ),
            None => format!("VPS {} moved", self.vps.name),
        })
    }

    async fn after(&self, outcome: String) -> Finish {
        cleanup(self.state, self.task, &self.vps, self.p.from_host, outcome).await
    }

    async fn undo(&self, reached: Option<Step>, why: Error) -> Finish {
        *lock(&self.slots) = None;
        if reached == Some(Step::Switched) {
            // The VPS runs on its new host: nothing to take back, the old copy still goes.
            self.task
                .log(format!(
                    "VPS {} is on its new host ({}); the old copy is removed",
                    self.vps.name,
                    why.message()
                ))
                .await;
            let outcome = format!("VPS {} moved", self.vps.name);
            return cleanup(self.state, self.task, &self.vps, self.p.from_host, outcome).await;
        }
        undo(self.state, self.task, &self.vps, &self.p, why).await
    }

    fn goes_on(&self, reached: Option<Step>) -> bool {
        match reached {
            Some(Step::TargetStarted | Step::Switched) => true,
            Some(Step::TargetConfigured) => !self.p.was_running,
            _ => false,
        }
    }

    fn interrupted(&self) -> Error {
        Error::conflict(
            None,
            format!(
                "rolled back: the controller stopped while VPS {} was being moved",
                self.vps.name
            ),
        )
    }
}

/// Removes the parked old copy; retried until done (the VPS itself is free meanwhile).
async fn cleanup(
    state: &Vpses,
    task: &Task,
    v: &VpsRow,
    from_host: HostId,
    outcome: String,
) -> Finish {
    let from = match state.db.run(move |c| load_host(c, from_host)).await {
        Ok(h) => h,
        // The old host was removed from the site: nothing is left to clean.
        Err(_) => return Finish::Done(Ok(outcome)),
    };
    let removed = match state.hosts.conn(from.id) {
        Some(c) => call(
            &c,
            AgentRequest::VpsDestroy {
                name: v.name.clone(),
            },
            QUICK,
        )
        .await
        .map_err(|e| e.message()),
        None => Err(format!("host {} cannot be reached now", from.name)),
    };
    if let Err(why) = removed {
        task.log(format!(
            "the old copy on {} is parked (stopped, autostart off) and is removed once possible: {why}",
            from.name
        ))
        .await;
        return Finish::Later {
            release_claims: true,
        };
    }
    task.log(format!("removed from {}", from.name)).await;
    Finish::Done(Ok(outcome))
}

/// Back to where it was: the partial copy goes, the original runs again if it ran.
async fn undo(state: &Vpses, task: &Task, v: &VpsRow, p: &Params, why: Error) -> Finish {
    let _ = ops::set_phase(&state.db, task.id(), ops::Phase::Undo).await;
    let later = Finish::Later {
        release_claims: false,
    };
    let Some(ct) = state.hosts.conn(p.to_host) else {
        task.log(
            "the target host cannot be reached now: the partial copy there is removed once it can",
        )
        .await;
        return later;
    };
    if let Err(e) = call(
        &ct,
        AgentRequest::VpsDestroy {
            name: v.name.clone(),
        },
        QUICK,
    )
    .await
    {
        task.log(format!(
            "removing the partial copy failed ({}); trying again later",
            e.message()
        ))
        .await;
        return later;
    }
    let from = match state
        .db
        .run({
            let h = p.from_host;
            move |c| load_host(c, h)
        })
        .await
    {
        Ok(h) => h,
        Err(e) => return Finish::Done(Err(e)),
    };
    let Some(cf) = state.hosts.conn(from.id) else {
        task.log(format!(
            "host {} cannot be reached now: VPS {} is restored there once it can",
            from.name, v.name
        ))
        .await;
        return later;
    };
    // Its own configuration again (autostart as set), then running if it ran.
    let restored = async {
        call(
            &cf,
            AgentRequest::VpsDefine {
                spec: spec(v, &from),
            },
            QUICK,
        )
        .await?;
        if p.was_running {
            call(
                &cf,
                AgentRequest::VpsStart {
                    name: v.name.clone(),
                },
                QUICK,
            )
            .await?;
        }
        Ok::<(), Error>(())
    }
    .await;
    if let Err(e) = restored {
        task.log(format!(
            "restoring VPS {} on {} failed ({}); trying again later",
            v.name,
            from.name,
            e.message()
        ))
        .await;
        return later;
    }
    let observed = if p.was_running {
        ObservedState::Running
    } else {
        ObservedState::Stopped
    };
    if let Err(e) = set_state(state, v.id, observed, None).await {
        return Finish::Done(Err(e));
    }
    task.log(format!(
        "rolled back: VPS {} is {} on {}",
        v.name,
        observed.as_str(),
        from.name
    ))
    .await;
    Finish::Done(Err(why))
}

/// After a restart: carried forward once the copy on the target is complete (and running, if
/// it ran), else rolled back.
pub(super) async fn recover(state: &Vpses, task: &Task, op: &OpRow) -> Finish {
    let p: Params = match op.params() {
        Ok(p) => p,
        Err(e) => return Finish::Done(Err(e)),
    };
    let id = op.vps_id;
    let v = match state.db.run(move |c| load(c, id)).await {
        Ok(v) => v,
        Err(e) => return Finish::Done(Err(e)),
    };
    let announce = !state.ops.live.announced(op.task_id);
    let saga = Move::new(state, task, v, p);
    saga::resume(&state.db, task, &saga, op, announce).await
}
