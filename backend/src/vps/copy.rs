//! Copy a VPS (a running source is paused while its files are copied). Durable: a copy the
//! controller did not see to its end is finished if the copy was complete, else unwound; the
//! source is never left paused.

use super::agent::{call, conn, QUICK};
use super::on_host::{name_free_on, remove_unfinished};
use super::operation::{check, spawn};
use super::placement::{candidates, fits, need};
use super::record::{host_of, set_state};
use super::transfer::{live_disk, slots, transfer};
use super::{bring_up, Vpses};
use crate::audit::{self, Actor, Change};
use crate::error::{Error, Result};
use crate::ops::{self, saga, Finish, OpRow};
use crate::repo::vpses::{insert_creating, load, load_host, unique, NewVps, VpsRow};
use crate::tasks::Task;
use serde::{Deserialize, Serialize};
use serverware_shared::agent::AgentRequest;
use serverware_shared::api::TaskResponse;
use serverware_shared::state::{ObservedState, VpsOperation};
use serverware_shared::{HostId, VpsId};
use std::sync::Arc;
use std::time::Instant;

crate::ops::steps! {
    /// The steps of a copy, in order (`frozen` only for a running source, `started` only when the copy starts).
    pub enum Step for "vps.copy" {
        Defined = "defined",
        Frozen = "frozen",
        Transferred = "transferred",
        Configured = "configured",
        Started = "started",
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct Params {
    src_id: VpsId,
    from_host: HostId,
    to_host: HostId,
    src_running: bool,
    start: bool,
}

pub async fn copy(
    state: Arc<Vpses>,
    actor: Actor,
    id: VpsId,
    name: String,
    ipv4: String,
    target: Option<HostId>,
    start_copy: bool,
) -> Result<TaskResponse> {
    let src = state.db.run(move |c| load(c, id)).await?;
    state.accepting()?;
    check(&state, &src, VpsOperation::Copy).await?;
    let from = host_of(&state, &src).await?;
    conn(&state, from.id, &from.name)?;
    let to_id = target.unwrap_or(from.id);
    let (n, ip) = (name.clone(), ipv4.clone());
    state.db.run(move |c| unique(c, &n, &ip, None)).await?;
    let placing = state.placement.lock().await;
    let cands = candidates(&state, None).await?;
    let c = cands
        .iter()
        .find(|c| c.id == to_id)
        .ok_or_else(|| Error::invalid("host_id", format!("no host with id {to_id}")))?;
    fits(c, &need(&src)).map_err(|m| Error::conflict(Some("host_id"), m))?;
    let to_name = c.name.clone();
    name_free_on(&state, to_id, &to_name, &name).await?;
    let a = actor.clone();
    let s2 = src.clone();
    let from_id = from.id;
    let (copy, row) = state
        .db
        .run(move |c| {
            crate::db::atomic(c, |c| {
                unique(c, &name, &ipv4, None)?;
                let copy = insert_creating(c, NewVps::like(&s2, &name, &ipv4, to_id, start_copy))?;
                let row = crate::tasks::insert(c, "vps.copy", "vps", &copy.id.to_string(), &a)?;
                ops::claims::take(c, &[(s2.id, &s2.name)], row.id, VpsOperation::Copy)?;
                ops::claims::take(c, &[(copy.id, &copy.name)], row.id, VpsOperation::Create)?;
                ops::record(
                    c,
                    row.id,
                    "vps.copy",
                    copy.id,
                    &Params {
                        src_id: s2.id,
                        from_host: from_id,
                        to_host: to_id,
                        src_running: s2.status == serverware_shared::state::ObservedState::Running,
                        start: start_copy,
                    },
                )?;
                audit::record(
                    c,
                    &a,
                    Change::new(
                        "vps.create",
                        "vps",
                        copy.id,
                        format!(
                            "copied VPS {} to {} ({}) on host {to_name}",
                            s2.name, copy.name, copy.ipv4
                        ),
                    )
                    .details(serde_json::json!({ "copy_of": s2.id, "host_id": to_id })),
                )?;
                Ok((copy, row))
            })
        })
        .await?;
    drop(placing);
    let task = Task::new(state.db.clone(), state.hub.clone(), actor, &row);
    let out = task.response();
    spawn(
        state,
        task,
        vec![id, copy.id],
        move |state, task| async move {
            let saga = Copy {
                state: &state,
                task: &task,
                src_running: src.status == serverware_shared::state::ObservedState::Running,
                src: Some(src),
                from_host: from.id,
                copy,
                to_host: to_id,
                start: start_copy,
                slots: Default::default(),
                began: Default::default(),
            };
            saga::forward(&state.db, &task, &saga, None).await
        },
    );
    Ok(out)
}

/// Resumes a paused source (harmless when it is not paused). False when its host cannot do it.
async fn thaw(state: &Vpses, task: &Task, src: &VpsRow, host: HostId) -> bool {
    let Some(c) = state.hosts.conn(host) else {
        task.log(format!(
            "the host of {} cannot be reached now: it is resumed once it can",
            src.name
        ))
        .await;
        return false;
    };
    match call(
        &c,
        AgentRequest::VpsFreeze {
            name: src.name.clone(),
            frozen: false,
        },
        QUICK,
    )
    .await
    {
        Ok(_) => {
            task.log(format!("{} runs on (not paused)", src.name)).await;
            true
        }
        Err(e) => {
            task.log(format!(
                "resuming {} failed ({}); trying again later",
                src.name,
                e.message()
            ))
            .await;
            false
        }
    }
}

/// A copy as a saga: the source (None once it is gone), the copy as recorded (status
/// `creating`), their hosts, and whether the copy starts. The source is paused while its files
/// are read when it runs (`frozen`), and runs on whatever happens.
struct Copy<'a> {
    state: &'a Arc<Vpses>,
    task: &'a Task,
    src: Option<VpsRow>,
    src_running: bool,
    from_host: HostId,
    copy: VpsRow,
    to_host: HostId,
    start: bool,
    /// Transfer slots on both hosts, taken before the source is paused and held until its
    /// files are copied.
    slots: std::sync::Mutex<Option<Vec<tokio::sync::OwnedSemaphorePermit>>>,
    /// When the source was paused (or the transfer began).
    began: std::sync::Mutex<Option<Instant>>,
}

impl Copy<'_> {
    fn source(&self) -> Result<&VpsRow> {
        self.src
            .as_ref()
            .ok_or_else(|| Error::conflict(None, "the source VPS is gone"))
    }

    async fn take_slots(&self) -> Result<()> {
        let held = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if !held {
            let s = slots(self.state, self.task, &[self.from_host, self.to_host]).await?;
            *self.slots.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
        }
        Ok(())
    }

    async fn freeze(&self, frozen: bool) -> Result<()> {
        let src = self.source()?;
        let from = self.state.db.run({
            let h = self.from_host;
            move |c| load_host(c, h)
        });
        let from = from.await?;
        let cf = conn(self.state, from.id, &from.name)?;
        call(
            &cf,
            AgentRequest::VpsFreeze {
                name: src.name.clone(),
                frozen,
            },
            QUICK,
        )
        .await?;
        Ok(())
    }

    /// The source's files into the copy's tree, from the source's id range into the copy's.
    async fn transfer(&self) -> Result<()> {
        let (state, task, src, copy) = (self.state, self.task, self.source()?, &self.copy);
        let (fh, th) = (self.from_host, self.to_host);
        let (from, to) = state
            .db
            .run(move |c| Ok((load_host(c, fh)?, load_host(c, th)?)))
            .await?;
        let (cf, ct) = (
            conn(state, from.id, &from.name)?,
            conn(state, to.id, &to.name)?,
        );
        self.take_slots().await?;
        let t0 = *self
            .began
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(Instant::now);
        let estimate = live_disk(state, from.id, &src.name);
        let r = transfer(
            state,
            task,
            (&cf, from.id),
            &src.name,
            (&ct, to.id),
            &copy.name,
            (src.ids_on_disk(), copy.ids_on_disk()),
            estimate,
            (5, 90),
        )
        .await;
        if self.src_running {
            let thaw = self.freeze(false).await;
            task.log(format!(
                "{} resumed after {:.1} s",
                src.name,
                t0.elapsed().as_secs_f64()
            ))
            .await;
            thaw?;
        }
        *self.slots.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let (bytes, note) = r?;
        task.log(format!(
            "{bytes} bytes copied in {:.1} s; {note}",
            t0.elapsed().as_secs_f64()
        ))
        .await;
        Ok(())
    }
}

impl saga::Saga for Copy<'_> {
    type Step = Step;

    fn applies(&self, step: Step) -> bool {
        match step {
            Step::Frozen => self.src_running,
            Step::Started => self.start,
            _ => true,
        }
    }

    async fn run(&self, step: Step) -> Result<()> {
        let (state, task, copy) = (self.state, self.task, &self.copy);
        match step {
            Step::Defined => {
                let to = host_of(state, copy).await?;
                let ct = conn(state, to.id, &to.name)?;
                task.log(format!(
                    "copying VPS {} to {} on {}",
                    self.source()?.name,
                    copy.name,
                    to.name
                ))
                .await;
                bring_up::define(&ct, copy, &to).await
            }
            Step::Frozen => {
                self.take_slots().await?;
                self.freeze(true).await?;
                *self.began.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                task.log(format!(
                    "{} is paused while its files are copied",
                    self.source()?.name
                ))
                .await;
                Ok(())
            }
            Step::Transferred => self.transfer().await,
            Step::Configured | Step::Started => {
                let to = host_of(state, copy).await?;
                let ct = conn(state, to.id, &to.name)?;
                if step == Step::Configured {
                    bring_up::define(&ct, copy, &to).await
                } else {
                    bring_up::start(&ct, copy).await
                }
            }
        }
    }

    async fn done(&self) -> Result<String> {
        let observed = if self.start {
            ObservedState::Running
        } else {
            ObservedState::Stopped
        };
        set_state(self.state, self.copy.id, observed, None).await?;
        Ok(if self.start {
            format!("copy {} is running", self.copy.name)
        } else {
            format!("copy {} created", self.copy.name)
        })
    }

    /// The source runs on (thawed), the unfinished copy goes. Until both hosts answer, the
    /// record stays and the recovery loop tries again.
    async fn undo(&self, _reached: Option<Step>, why: Error) -> Finish {
        *self.slots.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let (true, Some(src)) = (self.src_running, &self.src) {
            if !thaw(self.state, self.task, src, self.from_host).await {
                return Finish::Later {
                    release_claims: false,
                };
            }
        }
        if !remove_unfinished(self.state, self.task, self.to_host, &self.copy).await {
            return Finish::Later {
                release_claims: false,
            };
        }
        self.task.log("rolled back").await;
        Finish::Done(Err(why))
    }

    fn interrupted(&self) -> Error {
        Error::conflict(None, "rolled back: the controller stopped during the copy")
    }
}

/// After a restart: a copy that was complete is finished, any other is rolled back.
pub(super) async fn recover(state: &Arc<Vpses>, task: &Task, op: &OpRow) -> Finish {
    let p: Params = match op.params() {
        Ok(p) => p,
        Err(e) => return Finish::Done(Err(e)),
    };
    let (cid, sid) = (op.vps_id, p.src_id);
    let loaded = state
        .db
        .run(move |c| Ok((load(c, cid).ok(), load(c, sid).ok())))
        .await;
    let (copy, src) = match loaded {
        Ok(x) => x,
        Err(e) => return Finish::Done(Err(e)),
    };
    let Some(copy) = copy else {
        // Nothing of the copy is left to undo; the source runs on.
        if let (true, Some(src)) = (p.src_running, &src) {
            if !thaw(state, task, src, p.from_host).await {
                return Finish::Later {
                    release_claims: false,
                };
            }
        }
        task.log("rolled back").await;
        return Finish::Done(Err(Error::conflict(
            None,
            "rolled back: the controller stopped during the copy",
        )));
    };
    let saga = Copy {
        state,
        task,
        src,
        src_running: p.src_running,
        from_host: p.from_host,
        copy,
        to_host: p.to_host,
        start: p.start,
        slots: Default::default(),
        began: Default::default(),
    };
    saga::resume(&state.db, task, &saga, op, true).await
}
