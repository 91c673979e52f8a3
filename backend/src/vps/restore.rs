//! Restore a VPS from one of its restore points (netDUPLO): in place (its files are replaced;
//! onto its host or another), or as a new VPS (a clone). Durable: an in-place restore the
//! controller did not see to its end is carried forward (sending a point again is harmless: what
//! the host holds already does not travel); a clone is finished if complete, else unwound.

use super::*;
use serverware_shared::duplo::Manifest;

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
    src_id: i64,
    cycle: u64,
    /// Where the restored VPS runs.
    to_host: i64,
    /// In place: the host it was on (the old copy goes from there once restored).
    from_host: Option<i64>,
    start: bool,
    clone: bool,
}

/// What the operator asked for.
pub struct RestoreVps {
    pub cycle: u64,
    /// A clone: its name and address.
    pub clone: Option<(String, String)>,
    pub host_id: Option<i64>,
    pub start: Option<bool>,
}

/// The point, pinned against pruning while it is used.
async fn point(
    state: &Vpses,
    vps_id: i64,
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
    id: i64,
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
    to_id: i64,
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
    spawn(
        state.clone(),
        task,
        vec![id],
        move |state, task| async move {
            let _pin = pin;
            Finish::Done(in_place(&state, &task, id, &params, manifest).await)
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
            match clone_work(&state, &task, &copy, to_id, manifest, start).await {
                Ok(m) => Finish::Done(Ok(m)),
                Err(e) => {
                    let _ = ops::set_phase(&state.db, task.id(), ops::Phase::Undo).await;
                    if remove_unfinished(&state, &task, to_id, &copy).await {
                        task.log("rolled back").await;
                        Finish::Done(Err(e))
                    } else {
                        Finish::Later {
                            release_claims: false,
                        }
                    }
                }
            }
        },
    );
    Ok(out)
}

/// netMON: brings a VPS whose host was lost up on `to_id` from its newest restore point, at its
/// address. Its old host is not asked (it cannot be reached): netMON vouches that its lease ran
/// out and its guard stopped the VPS there. Its stopped copy there is removed when the host is
/// back.
pub async fn fail_over(state: Arc<Vpses>, id: i64, to_id: i64) -> Result<TaskResponse> {
    state.accepting()?;
    let src = state.db.run(move |c| load(c, id)).await?;
    let duplo = state.duplo.clone();
    let cycles =
        tokio::task::spawn_blocking(move || crate::storage::points::cycles(&*duplo.store, id))
            .await
            .map_err(|e| Error::Internal(e.into()))?
            .map_err(|e| Error::Internal(anyhow::anyhow!("the restore points of VPS {id}: {e}")))?;
    let Some(cycle) = cycles.last().copied() else {
        return Err(Error::conflict(
            None,
            format!("VPS {} has no restore point to come back from", src.name),
        ));
    };
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
        Finish::Done(in_place(&state, &task, id, &params, manifest).await)
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

async fn in_place(
    state: &Arc<Vpses>,
    task: &Task,
    id: i64,
    p: &Params,
    manifest: Arc<Manifest>,
) -> Result<String> {
    // Cycles under way of the copy being replaced (perhaps on a fenced host) land no more.
    state.duplo.terms.next(id);
    let v = state.db.run(move |c| load(c, id)).await?;
    let to_host = p.to_host;
    let to = state.db.run(move |c| load_host(c, to_host)).await?;
    // Stopped wherever it is now, for good if it leaves that host.
    if let Some(f) = v.host_id {
        let fh = state.db.run(move |c| load_host(c, f)).await?;
        if let Some(c) = state.hosts.conn(f) {
            task.log(format!("stopping {} on {}", v.name, fh.name))
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
        } else if f == to.id {
            return Err(Error::HostUnavailable(format!(
                "host {} is offline",
                fh.name
            )));
        }
    }
    ops::step(&state.db, task.id(), Step::Stopped).await?;
    task.progress(15, 0, None).await;
    let ct = conn(state, to.id, &to.name)?;
    call(
        &ct,
        AgentRequest::VpsDefine {
            spec: spec(&v, &to),
        },
        QUICK,
    )
    .await?;
    send_point(state, task, &to, &v, manifest).await?;
    ops::step(&state.db, task.id(), Step::Restored).await?;
    if v.host_id != Some(to.id) {
        let vid = v.id;
        let tid = to.id;
        state
            .db
            .run(move |c| crate::repo::vpses::set_host(c, vid, tid))
            .await?;
        // Nor one that read the old host's record before the switch.
        state.duplo.terms.next(id);
        ops::step(&state.db, task.id(), Step::Switched).await?;
        if let Some(f) = v.host_id {
            if let Some(c) = state.hosts.conn(f) {
                match call(
                    &c,
                    AgentRequest::VpsDestroy {
                        name: v.name.clone(),
                    },
                    QUICK,
                )
                .await
                {
                    Ok(_) => task.log("the old copy was removed from its host").await,
                    Err(e) => {
                        task.log(format!(
                            "the old copy stays, stopped, on its old host: {}",
                            e.message()
                        ))
                        .await
                    }
                }
            }
        }
    }
    // Its configuration again, with the host's network.
    call(
        &ct,
        AgentRequest::VpsDefine {
            spec: spec(&v, &to),
        },
        QUICK,
    )
    .await?;
    if p.start {
        call(
            &ct,
            AgentRequest::VpsStart {
                name: v.name.clone(),
            },
            QUICK,
        )
        .await?;
        ops::step(&state.db, task.id(), Step::Started).await?;
        set_state(state, v.id, ObservedState::Running, None).await?;
        Ok(format!(
            "VPS {} restored from point {} and running on {}",
            v.name, p.cycle, to.name
        ))
    } else {
        set_state(state, v.id, ObservedState::Stopped, None).await?;
        Ok(format!(
            "VPS {} restored from point {} on {}",
            v.name, p.cycle, to.name
        ))
    }
}

async fn clone_work(
    state: &Arc<Vpses>,
    task: &Task,
    copy: &VpsRow,
    to_id: i64,
    manifest: Arc<Manifest>,
    start: bool,
) -> Result<String> {
    let to = state.db.run(move |c| load_host(c, to_id)).await?;
    let c = conn(state, to.id, &to.name)?;
    bring_up::define_step(state, task, &c, copy, &to, Step::Defined).await?;
    send_point(state, task, &to, copy, manifest).await?;
    // Its own host name into the restored tree, then started if asked.
    let steps = (Step::Configured, Step::Started);
    if bring_up::finish_on(state, task, &c, copy, &to, start, steps).await? {
        Ok(format!(
            "VPS {} made from a restore point, running on {}",
            copy.name, to.name
        ))
    } else {
        Ok(format!(
            "VPS {} made from a restore point on {}",
            copy.name, to.name
        ))
    }
}

/// After a restart: an in-place restore is carried forward from the start (what the host holds
/// already does not travel again); a clone is finished if complete, else unwound.
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
    if p.clone {
        let at = match op.reached::<Step>() {
            Ok(at) => at,
            Err(e) => return Finish::Done(Err(e)),
        };
        let complete = !op.undoing()
            && (at == Some(Step::Started) || (at == Some(Step::Configured) && !p.start));
        if complete {
            let observed = if p.start {
                ObservedState::Running
            } else {
                ObservedState::Stopped
            };
            if let Err(e) = set_state(state, id, observed, None).await {
                return Finish::Done(Err(e));
            }
            task.log(format!("resumed: VPS {} was complete", vps.name))
                .await;
            return Finish::Done(Ok(format!("VPS {} made from a restore point", vps.name)));
        }
        task.log(format!(
            "rolling back: the restore stopped after step '{}'",
            op.step
        ))
        .await;
        let _ = ops::set_phase(&state.db, task.id(), ops::Phase::Undo).await;
        return if remove_unfinished(state, task, p.to_host, &vps).await {
            task.log("rolled back").await;
            Finish::Done(Err(Error::conflict(
                None,
                "rolled back: the controller stopped during the restore",
            )))
        } else {
            Finish::Later {
                release_claims: false,
            }
        };
    }
    if state.hosts.conn(p.to_host).is_none() {
        task.log("the target host cannot be reached now: the restore goes on once it can")
            .await;
        return Finish::Later {
            release_claims: false,
        };
    }
    task.log(format!(
        "resumed: the restore stopped after step '{}'; carrying it forward",
        op.step
    ))
    .await;
    let (manifest, _pin) = match point(state, p.src_id, p.cycle).await {
        Ok(m) => m,
        Err(e) => return Finish::Done(Err(e)),
    };
    Finish::Done(in_place(state, task, id, &p, manifest).await)
}
