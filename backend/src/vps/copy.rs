//! Copy a VPS (a running source is paused while its files are copied). Durable: a copy the
//! controller did not see to its end is finished if the copy was complete, else unwound; the
//! source is never left paused.

use super::*;

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
    src_id: i64,
    from_host: i64,
    to_host: i64,
    src_running: bool,
    start: bool,
}

pub async fn copy(
    state: Arc<Vpses>,
    actor: Actor,
    id: i64,
    name: String,
    ipv4: String,
    target: Option<i64>,
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
            let running = src.status == serverware_shared::state::ObservedState::Running;
            match copy_work(&state, &task, &src, &from, &copy, start_copy).await {
                Ok(m) => Finish::Done(Ok(m)),
                Err(e) => undo(&state, &task, &src, from.id, running, &copy, to_id, e).await,
            }
        },
    );
    Ok(out)
}

/// Unwinds a copy: the source runs on (thawed), the unfinished copy goes. Until both hosts
/// answer, the record stays and the recovery loop tries again.
#[allow(clippy::too_many_arguments)]
async fn undo(
    state: &Vpses,
    task: &Task,
    src: &VpsRow,
    from_host: i64,
    src_running: bool,
    copy: &VpsRow,
    to_host: i64,
    why: Error,
) -> Finish {
    let _ = ops::set_phase(&state.db, task.id(), ops::Phase::Undo).await;
    if src_running && !thaw(state, task, src, from_host).await {
        return Finish::Later {
            release_claims: false,
        };
    }
    if !remove_unfinished(state, task, to_host, copy).await {
        return Finish::Later {
            release_claims: false,
        };
    }
    task.log("rolled back").await;
    Finish::Done(Err(why))
}

/// Resumes a paused source (harmless when it is not paused). False when its host cannot do it.
async fn thaw(state: &Vpses, task: &Task, src: &VpsRow, host: i64) -> bool {
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

/// After a restart: a copy that was complete is finished, any other is rolled back.
pub(super) async fn recover(state: &Vpses, task: &Task, op: &OpRow) -> Finish {
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
    let at = match op.reached::<Step>() {
        Ok(at) => at,
        Err(e) => return Finish::Done(Err(e)),
    };
    let complete =
        !op.undoing() && (at == Some(Step::Started) || (at == Some(Step::Configured) && !p.start));
    if complete {
        if let Some(copy) = &copy {
            let observed = if p.start {
                ObservedState::Running
            } else {
                ObservedState::Stopped
            };
            if let Err(e) = set_state(state, copy.id, observed, None).await {
                return Finish::Done(Err(e));
            }
            task.log(format!("resumed: the copy {} was complete", copy.name))
                .await;
            return Finish::Done(Ok(format!("copy {} created", copy.name)));
        }
    }
    if !op.undoing() {
        task.log(format!(
            "rolling back: the copy stopped after step '{}'",
            op.step
        ))
        .await;
    }
    let why = Error::conflict(None, "rolled back: the controller stopped during the copy");
    if let Some(src) = &src {
        if p.src_running && !thaw(state, task, src, p.from_host).await {
            return Finish::Later {
                release_claims: false,
            };
        }
    }
    match &copy {
        Some(copy) => {
            undo(
                state,
                task,
                src.as_ref().unwrap_or(copy),
                p.from_host,
                false,
                copy,
                p.to_host,
                why,
            )
            .await
        }
        None => {
            task.log("rolled back").await;
            Finish::Done(Err(why))
        }
    }
}

pub(super) async fn copy_work(
    state: &Arc<Vpses>,
    task: &Task,
    src: &VpsRow,
    from: &HostRow,
    copy: &VpsRow,
    start_copy: bool,
) -> Result<String> {
    let to = host_of(state, copy).await?;
    let cf = conn(state, from.id, &from.name)?;
    let ct = conn(state, to.id, &to.name)?;
    task.log(format!(
        "copying VPS {} on {} to {} on {}",
        src.name, from.name, copy.name, to.name
    ))
    .await;
    bring_up::define_step(state, task, &ct, copy, &to, Step::Defined).await?;
    let _slots = slots(state, task, &[from.id, to.id]).await?;
    let running = src.status == serverware_shared::state::ObservedState::Running;
    if running {
        call(
            &cf,
            AgentRequest::VpsFreeze {
                name: src.name.clone(),
                frozen: true,
            },
            QUICK,
        )
        .await?;
        task.log(format!("{} is paused while its files are copied", src.name))
            .await;
        ops::step(&state.db, task.id(), Step::Frozen).await?;
    }
    let estimate = live_disk(state, from.id, &src.name);
    let t0 = Instant::now();
    let r = transfer(
        state,
        task,
        (&cf, from.id),
        &src.name,
        (&ct, to.id),
        &copy.name,
        // From the source's id range into the copy's own.
        (src.ids_on_disk(), copy.ids_on_disk()),
        estimate,
        (5, 90),
    )
    .await;
    if running {
        let thaw = call(
            &cf,
            AgentRequest::VpsFreeze {
                name: src.name.clone(),
                frozen: false,
            },
            QUICK,
        )
        .await;
        task.log(format!(
            "{} resumed after {:.1} s",
            src.name,
            t0.elapsed().as_secs_f64()
        ))
        .await;
        thaw?;
    }
    let (bytes, note) = r?;
    ops::step(&state.db, task.id(), Step::Transferred).await?;
    task.log(format!(
        "{bytes} bytes copied in {:.1} s; {note}",
        t0.elapsed().as_secs_f64()
    ))
    .await;
    let steps = (Step::Configured, Step::Started);
    if bring_up::finish_on(state, task, &ct, copy, &to, start_copy, steps).await? {
        Ok(format!("copy {} is running on {}", copy.name, to.name))
    } else {
        Ok(format!("copy {} created on {}", copy.name, to.name))
    }
}
