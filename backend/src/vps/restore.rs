//! Restore a VPS from one of its restore points (netDUPLO): in place (its files are replaced;
//! onto its host or another), or as a new VPS (a clone). Durable: an in-place restore the
//! controller did not see to its end is carried forward (sending a point again is harmless: what
//! the host holds already does not travel); a clone is finished if complete, else unwound.

use super::agent::{call, conn, QUICK};
use super::on_host::{name_free_on, remove_unfinished};
use super::operation::{begin, check, spawn, Begin};
use super::placement::{candidates, fits, need};
use super::record::{set_state, HostRows};
use super::transfer::slots;
use super::{bring_up, Vpses, DEFAULT_STOP_TIMEOUT};
use crate::audit::{self, Actor, Change};
use crate::error::{Error, Result};
use crate::hosts::{Conn, HostRow};
use crate::ops::{self, saga, Finish, OpRow, Steps};
use crate::repo::vpses::{insert_creating, load, load_host, unique, NewVps, VpsRow};
use crate::tasks::Task;
use serde::{Deserialize, Serialize};
use serverware_shared::agent::AgentRequest;
use serverware_shared::api::TaskResponse;
use serverware_shared::duplo::Manifest;
use serverware_shared::state::{DesiredState, ObservedState, VpsOperation};
use serverware_shared::{HostId, VpsId};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The steps of an in-place restore, in order.
pub const IN_PLACE: &[Step] = &[Step::Stopped, Step::Restored, Step::Switched, Step::Started];
/// The steps of a restore as a new VPS, in order.
pub const AS_NEW: &[Step] = &[Step::Defined, Step::Configured, Step::Started];

crate::ops::steps! {
    /// The steps of a restore: in place ([`IN_PLACE`]; a failover is one, onto another host) or as a new VPS ([`AS_NEW`]).
    pub enum Step for "vps.restore" {
        Stopped = "stopped",
        Restored = "restored",
        Switched = "switched",
        Defined = "defined",
        Configured = "configured",
        Started = "started",
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct Params {
    /// The VPS whose point it is.
    src_id: VpsId,
    cycle: u64,
    /// Where the restored VPS runs.
    to_host: HostId,
    /// In place: the host it was on (the old copy goes from there once restored).
    from_host: Option<HostId>,
    start: bool,
    clone: bool,
}

/// What the operator asked for.
pub struct RestoreVps {
    pub cycle: u64,
    /// A clone: its name and address.
    pub clone: Option<(String, String)>,
    pub host_id: Option<HostId>,
    pub start: Option<bool>,
}

/// The point, pinned against pruning while it is used.
pub(super) async fn point(
    state: &Vpses,
    vps_id: VpsId,
    cycle: u64,
) -> Result<(Arc<Manifest>, crate::duplo::Pin)> {
    let pin = state.duplo.pin(vps_id, cycle);
    let duplo = state.duplo.clone();
    let m = tokio::task::spawn_blocking(move || {
        crate::storage::points::load(&*duplo.store, vps_id, cycle)
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::invalid(
            "cycle",
            format!("VPS {vps_id} has no restore point {cycle} (see its points)"),
        ),
        _ => Error::Internal(anyhow::anyhow!("restore point {cycle}: {e}")),
    })?;
    Ok((Arc::new(m), pin))
}

pub async fn restore(
    state: Arc<Vpses>,
    actor: Actor,
    id: VpsId,
    req: RestoreVps,
) -> Result<TaskResponse> {
    state.accepting()?;
    let src = state.db.run(move |c| load(c, id)).await?;
    let (manifest, pin) = point(&state, id, req.cycle).await?;
    let from = src.host_id;
    let to_id = match (req.host_id, from) {
        (Some(h), _) => h,
        (None, Some(h)) => h,
        (None, None) => {
            return Err(Error::invalid(
                "host_id",
                format!(
                    "VPS {} is on no host: name one to restore it onto",
                    src.name
                ),
            ))
        }
    };
    let placing = state.placement.lock().await;
    let cands = candidates(&state, if req.clone.is_none() { Some(id) } else { None }).await?;
    let c = cands
        .iter()
        .find(|c| c.id == to_id)
        .ok_or_else(|| Error::invalid("host_id", format!("no host with id {to_id}")))?;
    fits(c, &need(&src)).map_err(|m| Error::conflict(Some("host_id"), m))?;
    let to_name = c.name.clone();
    conn(&state, to_id, &to_name)?;
    let taken = format!("restore point {} of {}", req.cycle, src.name);
    let point = Chosen {
        cycle: req.cycle,
        manifest,
        pin,
        to_id,
        to_name,
        taken,
    };
    match req.clone {
        None => in_place_request(&state, placing, actor, &src, req.start, point).await,
        Some((name, ipv4)) => {
            as_new_request(&state, placing, actor, &src, name, ipv4, req.start, point).await
        }
    }
}

/// The point a restore brings up, and where.
struct Chosen {
    cycle: u64,
    manifest: Arc<Manifest>,
    pin: crate::duplo::Pin,
    to_id: HostId,
    to_name: String,
    /// "restore point N of NAME", for messages.
    taken: String,
}

/// An in-place restore asked for: checked, recorded, begun.
async fn in_place_request(
    state: &Arc<Vpses>,
    placing: tokio::sync::MutexGuard<'_, ()>,
    actor: Actor,
    src: &VpsRow,
    start: Option<bool>,
    point: Chosen,
) -> Result<TaskResponse> {
    let Chosen {
        cycle,
        manifest,
        pin,
        to_id,
        to_name,
        taken,
    } = point;
    let (id, from) = (src.id, src.host_id);
    check(state, src, VpsOperation::Restore).await?;
    if let Some(f) = from.filter(|f| *f != to_id) {
        // The old copy must be stopped for good before the VPS runs elsewhere.
        let fh = state.db.run(move |c| load_host(c, f)).await?;
        conn(state, f, &fh.name).map_err(|_| {
                Error::conflict(
                    Some("host_id"),
                    format!(
                        "host {} of {} cannot be reached: its copy there could still run, so it is not restored elsewhere",
                        fh.name, src.name
                    ),
                )
            })?;
        name_free_on(state, to_id, &to_name, &src.name).await?;
    }
    let start = start.unwrap_or(src.desired() == DesiredState::Running);
    let params = Params {
        src_id: id,
        cycle,
        to_host: to_id,
        from_host: from,
        start,
        clone: false,
    };
    let task = begin(
        state,
        &actor,
        VpsOperation::Restore,
        src,
        &[(id, src.name.clone())],
        format!("restoring VPS {} from {taken} on host {to_name}", src.name),
        serde_json::json!({ "cycle": cycle, "host_id": to_id }),
        Begin {
            durable: Some(serde_json::to_value(&params).map_err(|e| Error::Internal(e.into()))?),
            reserve: from.filter(|f| *f != to_id).map(|_| to_id),
            desired: Some(if start {
                DesiredState::Running
            } else {
                DesiredState::Stopped
            }),
        },
    )
    .await?;
    drop(placing);
    let out = task.response();
    let vps = src.clone();
    spawn(
        state.clone(),
        task,
        vec![id],
        move |state, task| async move {
            let _pin = pin;
            in_place(&state, &task, vps, params, manifest).await
        },
    );
    Ok(out)
}

/// A restore as a new VPS asked for: checked, recorded, begun.
#[allow(clippy::too_many_arguments)]
async fn as_new_request(
    state: &Arc<Vpses>,
    placing: tokio::sync::MutexGuard<'_, ()>,
    actor: Actor,
    src: &VpsRow,
    name: String,
    ipv4: String,
    start: Option<bool>,
    point: Chosen,
) -> Result<TaskResponse> {
    let Chosen {
        cycle,
        manifest,
        pin,
        to_id,
        to_name,
        ..
    } = point;
    let (n, ip) = (name.clone(), ipv4.clone());
    state.db.run(move |c| unique(c, &n, &ip, None)).await?;
    name_free_on(state, to_id, &to_name, &name).await?;
    let start = start.unwrap_or(true);
    let a = actor.clone();
    let s2 = src.clone();

    let (copy, row) = state
            .db
            .run(move |c| {
                crate::db::atomic(c, |c| {
                    unique(c, &name, &ipv4, None)?;
                    let copy = insert_creating(c, NewVps::like(&s2, &name, &ipv4, to_id, start))?;
                    let row = crate::tasks::insert(c, Step::KIND, "vps", &copy.id.to_string(), &a)?;
                    ops::claims::take(c, &[(copy.id, &copy.name)], row.id, VpsOperation::Create)?;
                    ops::record(
                        c,
                        row.id,
                        Step::KIND,
                        copy.id,
                        &Params {
                            src_id: s2.id,
                            cycle,
                            to_host: to_id,
                            from_host: None,
                            start,
                            clone: true,
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
                                "made VPS {} ({}) on host {to_name} from restore point {cycle} of {}",
                                copy.name, copy.ipv4, s2.name
                            ),
                        )
                        .details(serde_json::json!({ "restore_of": s2.id, "cycle": cycle, "host_id": to_id })),
                    )?;
                    Ok((copy, row))
                })
            })
            .await?;
    drop(placing);
    let task = Task::new(state.db.clone(), state.hub.clone(), actor, &row);
    let out = task.response();
    spawn(
        state.clone(),
        task,
        vec![copy.id],
        move |state, task| async move {
            let _pin = pin;
            let saga = AsNew {
                state: &state,
                task: &task,
                copy,
                to_host: to_id,
                start,
                manifest: Some(manifest),
            };
            saga::forward(&state.db, &task, &saga, None).await
        },
    );
    Ok(out)
}

/// The VPS's newest restore point (its cycle); a conflict saying it has none to `for_what`.
pub(super) async fn newest_point(state: &Vpses, v: &VpsRow, for_what: &str) -> Result<u64> {
    let (duplo, id) = (state.duplo.clone(), v.id);
    let cycles =
        tokio::task::spawn_blocking(move || crate::storage::points::cycles(&*duplo.store, id))
            .await
            .map_err(|e| Error::Internal(e.into()))?
            .map_err(|e| Error::Internal(anyhow::anyhow!("the restore points of VPS {id}: {e}")))?;
    cycles.last().copied().ok_or_else(|| {
        Error::conflict(
            None,
            format!("VPS {} has no restore point to {for_what}", v.name),
        )
    })
}

/// netMON: brings a VPS whose host was lost up on `to_id` from its newest restore point, at its
/// address. Its old host is not asked (it cannot be reached): netMON vouches that its lease ran
/// out and its guard stopped the VPS there. Its stopped copy there is removed when the host is
/// back.
pub async fn fail_over(state: Arc<Vpses>, id: VpsId, to_id: HostId) -> Result<TaskResponse> {
    state.accepting()?;
    let src = state.db.run(move |c| load(c, id)).await?;
    let cycle = newest_point(&state, &src, "come back from").await?;
    let (manifest, pin) = point(&state, id, cycle).await?;
    let to = state.db.run(move |c| load_host(c, to_id)).await?;
    conn(&state, to_id, &to.name)?;
    name_free_on(&state, to_id, &to.name, &src.name).await?;
    let params = Params {
        src_id: id,
        cycle,
        to_host: to_id,
        from_host: src.host_id,
        start: true,
        clone: false,
    };
    let task = begin(
        &state,
        &Actor::system("netmon"),
        VpsOperation::Restore,
        &src,
        &[(id, src.name.clone())],
        format!(
            "failing VPS {} over to host {} from restore point {cycle}",
            src.name, to.name
        ),
        serde_json::json!({ "cycle": cycle, "host_id": to_id, "failover": true }),
        Begin {
            durable: Some(serde_json::to_value(&params).map_err(|e| Error::Internal(e.into()))?),
            reserve: Some(to_id),
            desired: Some(DesiredState::Running),
        },
    )
    .await?;
    let out = task.response();
    spawn(state, task, vec![id], move |state, task| async move {
        let _pin = pin;
        in_place(&state, &task, src, params, manifest).await
    });
    Ok(out)
}

/// The restore point onto `name` on `host`, then the host's journal of it starts again.
async fn send_point(
    state: &Vpses,
    task: &Task,
    host: &HostRow,
    v: &VpsRow,
    manifest: Arc<Manifest>,
) -> Result<()> {
    let c = conn(state, host.id, &host.name)?;
    let _slots = slots(state, task, &[host.id]).await?;
    let t0 = Instant::now();
    let s = crate::duplo::restore::send(
        state.duplo.store.clone(),
        task,
        &c,
        &v.name,
        v.ids_on_disk(),
        // A standby copy netMON keeps there, if any, supplies what it holds.
        Some(v.id),
        manifest,
        (20, 85),
    )
    .await?;
    // The tree was replaced under the journal's watches: it must start again (in full).
    let _ = call(
        &c,
        AgentRequest::DuploForget {
            name: v.name.clone(),
        },
        QUICK,
    )
    .await;
    state.duplo.update(v.id, |s| s.done_at = None);
    task.log(format!(
        "restored {} entries in {:.1} s{}: {} files kept as they were ({} bytes), {} written ({} bytes, {} received), {} links{}",
        s.entries,
        t0.elapsed().as_secs_f64(),
        if s.seeded {
            " from its standby copy on this host"
        } else {
            ""
        },
        s.files_kept,
        s.bytes_kept,
        s.files_written,
        s.bytes_written,
        s.bytes_received,
        s.links,
        if s.skipped > 0 {
            format!(", {} devices or sockets left out", s.skipped)
        } else {
            String::new()
        }
    ))
    .await;
    Ok(())
}

/// Runs an in-place restore from its first step.
async fn in_place(
    state: &Arc<Vpses>,
    task: &Task,
    vps: VpsRow,
    p: Params,
    manifest: Arc<Manifest>,
) -> Finish {
    let saga = InPlace {
        state,
        task,
        vps,
        p,
        manifest,
        rows: HostRows::default(),
    };
    saga::forward(&state.db, task, &saga, None).await
}

/// An in-place restore (a failover is one, onto another host) as a saga: carried forward,
/// never undone (sending a point again is harmless: what the host holds already does not
/// travel). The VPS as it was recorded when the saga was built.
struct InPlace<'a> {
    state: &'a Arc<Vpses>,
    task: &'a Task,
    vps: VpsRow,
    p: Params,
    manifest: Arc<Manifest>,
    /// The target's row, read once (see [`HostRows`]).
    rows: HostRows,
}

impl InPlace<'_> {
    async fn target(&self) -> Result<(HostRow, Conn)> {
        let to = self.rows.get(self.state, self.p.to_host).await?;
        let c = conn(self.state, to.id, &to.name)?;
        Ok((to, c))
    }

    /// Stopped wherever it is now, for good if it leaves that host. A host that cannot be
    /// reached is not asked when the VPS leaves it: netMON vouches that its lease ran out and
    /// its guard stopped the VPS there.
    async fn stop(&self) -> Result<()> {
        let (state, v) = (self.state, &self.vps);
        // Cycles under way of the copy being replaced (perhaps on a fenced host) land no more.
        state.duplo.terms.next(v.id);
        let Some(f) = v.host_id else {
            return Ok(());
        };
        let fh = state.db.run(move |c| load_host(c, f)).await?;
        match state.hosts.conn(f) {
            Some(c) => {
                self.task
                    .log(format!("stopping {} on {}", v.name, fh.name))
                    .await;
                call(
                    &c,
                    AgentRequest::VpsStop {
                        name: v.name.clone(),
                        timeout_secs: DEFAULT_STOP_TIMEOUT,
                    },
                    Duration::from_secs(u64::from(DEFAULT_STOP_TIMEOUT) + 30),
                )
                .await?;
            }
            None if f == self.p.to_host => {
                return Err(Error::HostUnavailable(format!(
                    "host {} is offline",
                    fh.name
                )))
            }
            None => {}
        }
        self.task.progress(15, 0, None).await;
        Ok(())
    }

    /// The database names the new host; the old copy goes from the old one if it answers.
    async fn switch(&self) -> Result<()> {
        let (state, v) = (self.state, &self.vps);
        let (vid, tid) = (v.id, self.p.to_host);
        state
            .db
            .run(move |c| crate::repo::vpses::set_host(c, vid, tid))
            .await?;
        // Nor one that read the old host's record before the switch.
        state.duplo.terms.next(vid);
        let Some(c) = self.p.from_host.and_then(|f| state.hosts.conn(f)) else {
            return Ok(());
        };
        let removed = call(
            &c,
            AgentRequest::VpsDestroy {
                name: v.name.clone(),
            },
            QUICK,
        )
        .await;
        self.task
            .log(match removed {
                Ok(_) => "the old copy was removed from its host".to_string(),
                Err(e) => format!(
                    "the old copy stays, stopped, on its old host: {}",
                    e.message()
                ),
            })
            .await;
        Ok(())
    }
}

impl saga::Saga for InPlace<'_> {
    type Step = Step;

    fn applies(&self, step: Step) -> bool {
        IN_PLACE.contains(&step)
            && match step {
                Step::Switched => self.p.from_host != Some(self.p.to_host),
                Step::Started => self.p.start,
                _ => true,
            }
    }

    async fn run(&self, step: Step) -> Result<()> {
        match step {
            Step::Stopped => self.stop().await,
            Step::Restored => {
                self.state.duplo.terms.next(self.vps.id);
                let (to, c) = self.target().await?;
                bring_up::define(&c, &self.vps, &to).await?;
                send_point(self.state, self.task, &to, &self.vps, self.manifest.clone()).await?;
                // Its configuration again, with the host's network.
                bring_up::define(&c, &self.vps, &to).await
            }
            Step::Switched => self.switch().await,
            Step::Started => {
                let (_, c) = self.target().await?;
                bring_up::start(&c, &self.vps).await
            }
            Step::Defined | Step::Configured => Err(Error::Internal(anyhow::anyhow!(
                "step '{}' is not one of an in-place restore",
                step.name()
            ))),
        }
    }

    async fn done(&self) -> Result<String> {
        let h = self.p.to_host;
        let to = self
            .rows
            .get(self.state, h)
            .await
            .map_or_else(|_| format!("#{h}"), |h| h.name);
        let observed = if self.p.start {
            ObservedState::Running
        } else {
            ObservedState::Stopped
        };
        set_state(self.state, self.vps.id, observed, None).await?;
        Ok(if self.p.start {
            format!(
                "VPS {} restored from point {} and running on {to}",
                self.vps.name, self.p.cycle
            )
        } else {
            format!(
                "VPS {} restored from point {} on {to}",
                self.vps.name, self.p.cycle
            )
        })
    }

    /// Nothing to take back: the VPS stays stopped where the database names it, and the
    /// operator (or netMON) asks again.
    async fn undo(&self, reached: Option<Step>, why: Error) -> Finish {
        self.task
            .log(format!(
                "the restore ended after step '{}': {}",
                reached.map_or("recorded", |s| s.name()),
                why.message()
            ))
            .await;
        Finish::Done(Err(why))
    }

    fn goes_on(&self, _reached: Option<Step>) -> bool {
        true
    }

    fn interrupted(&self) -> Error {
        Error::conflict(None, "the controller stopped during the restore")
    }
}

/// A restore as a new VPS as a saga: finished if complete, else unwound (the unfinished VPS
/// goes from its host, then its record).
struct AsNew<'a> {
    state: &'a Arc<Vpses>,
    task: &'a Task,
    copy: VpsRow,
    to_host: HostId,
    start: bool,
    /// The point's files (None after a restart: a clone is then finished or unwound, never
    /// carried forward).
    manifest: Option<Arc<Manifest>>,
}

impl saga::Saga for AsNew<'_> {
    type Step = Step;

    fn applies(&self, step: Step) -> bool {
        AS_NEW.contains(&step) && (step != Step::Started || self.start)
    }

    async fn run(&self, step: Step) -> Result<()> {
        let (state, copy) = (self.state, &self.copy);
        let h = self.to_host;
        let to = state.db.run(move |c| load_host(c, h)).await?;
        let c = conn(state, to.id, &to.name)?;
        match step {
            Step::Defined => bring_up::define(&c, copy, &to).await,
            // The point's files, then its own host name into the restored tree.
            Step::Configured => {
                let m = self.manifest.clone().ok_or_else(|| {
                    Error::Internal(anyhow::anyhow!("the restore point was not loaded"))
                })?;
                send_point(state, self.task, &to, copy, m).await?;
                bring_up::define(&c, copy, &to).await
            }
            Step::Started => bring_up::start(&c, copy).await,
            _ => Err(Error::Internal(anyhow::anyhow!(
                "step '{}' is not one of a restore as a new VPS",
                step.name()
            ))),
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
            format!(
                "VPS {} made from a restore point and running",
                self.copy.name
            )
        } else {
            format!("VPS {} made from a restore point", self.copy.name)
        })
    }

    async fn undo(&self, _reached: Option<Step>, why: Error) -> Finish {
        if remove_unfinished(self.state, self.task, self.to_host, &self.copy).await {
            self.task.log("rolled back").await;
            Finish::Done(Err(why))
        } else {
            Finish::Later {
                release_claims: false,
            }
        }
    }

    fn interrupted(&self) -> Error {
        Error::conflict(
            None,
            "rolled back: the controller stopped during the restore",
        )
    }
}

/// After a restart: an in-place restore is carried forward from where it stopped (once its
/// target answers); a clone is finished if complete, else unwound.
pub(super) async fn recover(state: &Arc<Vpses>, task: &Task, op: &OpRow) -> Finish {
    let p: Params = match op.params() {
        Ok(p) => p,
        Err(e) => return Finish::Done(Err(e)),
    };
    let id = op.vps_id;
    let vps = match state.db.run(move |c| load(c, id)).await {
        Ok(v) => v,
        Err(Error::NotFound(_)) => {
            return Finish::Done(Err(Error::conflict(None, "the VPS is gone")))
        }
        Err(e) => return Finish::Done(Err(e)),
    };
    if !p.clone && !op.undoing() && !state.hosts.connected(p.to_host) {
        task.log("the target host cannot be reached now: the restore goes on once it can")
            .await;
        return Finish::Later {
            release_claims: false,
        };
    }
    let announce = !state.ops.live.announced(op.task_id);
    if p.clone {
        // A clone is never carried forward after a restart: its point is not needed.
        let saga = AsNew {
            state,
            task,
            copy: vps,
            to_host: p.to_host,
            start: p.start,
            manifest: None,
        };
        return saga::resume(&state.db, task, &saga, op, announce).await;
    }
    let (manifest, _pin) = match point(state, p.src_id, p.cycle).await {
        Ok(m) => m,
        Err(e) => return Finish::Done(Err(e)),
    };
    let saga = InPlace {
        state,
        task,
        vps,
        p,
        manifest,
        rows: HostRows::default(),
    };
    saga::resume(&state.db, task, &saga, op, announce).await
}
