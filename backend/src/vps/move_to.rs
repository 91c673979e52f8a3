//! Move a VPS to another host: stop, transfer, start there, remove the old copy. Durable: the
//! target's room is reserved from the start; until the database names the new host, a move
//! that fails or is interrupted is unwound (the partial copy goes, the VPS runs again where it
//! was); after that it is carried forward. The old copy is parked (stopped, autostart off)
//! before anything is sent, so a leftover can never start by itself, and it is removed,
//! retried until done.

use super::*;

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
    from_host: i64,
    to_host: i64,
    was_running: bool,
}

pub async fn move_to(
    state: Arc<Vpses>,
    actor: Actor,
    id: i64,
    target: i64,
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
        match state.db.run(move |c| load_host(c, target)).await {
            Ok(to) => run(&state, &task, &v, &from, &to, &params).await,
            Err(e) => undo(&state, &task, &v, &params, e).await,
        }
    });
    Ok(out)
}

async fn run(
    state: &Arc<Vpses>,
    task: &Task,
    v: &VpsRow,
    from: &HostRow,
    to: &HostRow,
    p: &Params,
) -> Finish {
    match forward(state, task, v, from, to, p).await {
        Ok(downtime) => {
            task.progress(90, 0, None).await;
            cleanup(state, task, v, from.id, Some(downtime)).await
        }
        Err(e) => undo(state, task, v, p, e).await,
    }
}

/// Up to the database naming the new host; returns the downtime.
async fn forward(
    state: &Arc<Vpses>,
    task: &Task,
    v: &VpsRow,
    from: &HostRow,
    to: &HostRow,
    p: &Params,
) -> Result<Duration> {
    let db = &state.db;
    let cf = conn(state, from.id, &from.name)?;
    let ct = conn(state, to.id, &to.name)?;
    let estimate = live_disk(state, from.id, &v.name);
    task.log(format!(
        "moving VPS {} from {} to {}",
        v.name, from.name, to.name
    ))
    .await;
    bring_up::define_step(state, task, &ct, v, to, Step::TargetDefined).await?;
    let _slots = slots(state, task, &[from.id, to.id]).await?;
    let down = Instant::now();
    if p.was_running {
        let r = call(
            &cf,
            AgentRequest::VpsStop {
                name: v.name.clone(),
                timeout_secs: DEFAULT_STOP_TIMEOUT,
            },
            Duration::from_secs(u64::from(DEFAULT_STOP_TIMEOUT) + 60),
        )
        .await?;
        task.log(format!(
            "stopped on {}{}",
            from.name,
            if matches!(r, AgentResponse::Stopped { forced: true }) {
                " (by force)"
            } else {
                ""
            }
        ))
        .await;
    }
    // The old copy must never start by itself again (its host rebooting, say).
    let mut parked = spec(v, from);
    parked.autostart = false;
    call(&cf, AgentRequest::VpsDefine { spec: parked }, QUICK).await?;
    ops::step(db, task.id(), Step::SourceParked).await?;
    task.progress(10, 0, estimate.map(|e| e as i64)).await;
    // The VPS keeps its id range: its files keep their owners as they are.
    let ids = (v.ids_on_disk(), v.ids_on_disk());
    let (bytes, _) = transfer(
        state,
        task,
        (&cf, from.id),
        &v.name,
        (&ct, to.id),
        &v.name,
        ids,
        estimate,
        (10, 85),
    )
    .await?;
    ops::step(db, task.id(), Step::Transferred).await?;
    task.log(format!("{bytes} bytes of root filesystem transferred"))
        .await;
    let steps = (Step::TargetConfigured, Step::TargetStarted);
    bring_up::configure_and_start(state, task, &ct, v, to, p.was_running, steps).await?;
    switch(state, task, v, to.id, p.was_running).await?;
    let downtime = down.elapsed();
    if p.was_running {
        task.log(format!(
            "running on {}; downtime {} ms",
            to.name,
            downtime.as_millis()
        ))
        .await;
    }
    Ok(downtime)
}

/// The database names the new host: from here on the move is carried forward.
async fn switch(state: &Vpses, task: &Task, v: &VpsRow, to: i64, running: bool) -> Result<()> {
    let (id, tid) = (v.id, task.id());
    let observed = if running {
        ObservedState::Running
    } else {
        ObservedState::Stopped
    };
    state
        .db
        .transaction(move |c| {
            crate::repo::vpses::moved(c, id, to, observed.as_str())?;
            ops::step_in(c, tid, Step::Switched)
        })
        .await?;
    ops::stepped(Step::Switched);
    changed(&state.hub, id, ChangeKind::Updated);
    Ok(())
}

/// Removes the parked old copy; retried until done (the VPS itself is free meanwhile).
async fn cleanup(
    state: &Vpses,
    task: &Task,
    v: &VpsRow,
    from_host: i64,
    downtime: Option<Duration>,
) -> Finish {
    let from = match state.db.run(move |c| load_host(c, from_host)).await {
        Ok(h) => h,
        // The old host was removed from the site: nothing is left to clean.
        Err(_) => return Finish::Done(Ok(format!("VPS {} moved", v.name))),
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
    Finish::Done(Ok(match downtime {
        Some(d) => format!("VPS {} moved (downtime {} ms)", v.name, d.as_millis()),
        None => format!("VPS {} moved", v.name),
    }))
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
    let at = match op.reached::<Step>() {
        Ok(at) => at,
        Err(e) => return Finish::Done(Err(e)),
    };
    let complete =
        at == Some(Step::TargetStarted) || (at == Some(Step::TargetConfigured) && !p.was_running);
    if at == Some(Step::Switched) {
        if !state.ops.live.announced(op.task_id) {
            task.log("resumed: the VPS is on its new host; the old copy is removed")
                .await;
        }
        return cleanup(state, task, &v, p.from_host, None).await;
    }
    if !op.undoing() && complete {
        task.log(format!(
            "resumed: the copy on the target was complete (step '{}')",
            op.step
        ))
        .await;
        if let Err(e) = switch(state, task, &v, p.to_host, p.was_running).await {
            return Finish::Done(Err(e));
        }
        return cleanup(state, task, &v, p.from_host, None).await;
    }
    if !op.undoing() {
        task.log(format!(
            "rolling back: the move stopped after step '{}'",
            op.step
        ))
        .await;
    }
    let why = Error::conflict(
        None,
        format!(
            "rolled back: the controller stopped while VPS {} was being moved",
            v.name
        ),
    );
    undo(state, task, &v, &p, why).await
}
