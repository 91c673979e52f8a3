//! Copy a VPS (a running source is paused while its files are copied).

use super::*;

pub async fn copy(
    state: Arc<AppState>,
    actor: Actor,
    id: i64,
    name: String,
    ipv4: String,
    target: Option<i64>,
    start_copy: bool,
) -> ApiResult<TaskResponse> {
    let src = state.db.run(move |c| load(c, id)).await?;
    forbid(&src, "copied", &["stopped", "running"])?;
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
        .ok_or_else(|| ApiError::invalid("host_id", format!("no host with id {to_id}")))?;
    fits(c, &need(&src)).map_err(|m| ApiError::conflict(Some("host_id"), m))?;
    let to_name = c.name.clone();
    name_free_on(&state, to_id, &to_name, &name)?;
    if let Some(t) = state.vps_busy.task_of(id) {
        return Err(busy(&src, t));
    }
    let a = actor.clone();
    let s2 = src.clone();
    let (copy, row) = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                unique(c, &name, &ipv4, None)?;
                let copy = insert_creating(
                    c,
                    NewVps {
                        name: &name,
                        description: &s2.description,
                        host_id: Some(to_id),
                        template_id: s2.template_id,
                        ipv4: &ipv4,
                        hostname: &name,
                        memory_limit_bytes: s2.memory_limit_bytes,
                        cpu_shares: s2.cpu_shares,
                        cpu_limit_millis: s2.cpu_limit_millis,
                        disk_limit_bytes: s2.disk_limit_bytes,
                        autostart: s2.autostart,
                    },
                )?;
                let row = crate::tasks::insert(c, "vps.copy", "vps", &copy.id.to_string(), &a)?;
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
    if let Err(t) = state.vps_busy.claim(&[id, copy.id], row.id) {
        let cid = copy.id;
        let _ = state
            .db
            .run(move |c| {
                diesel::delete(vpses::table.find(cid)).execute(c)?;
                Ok(())
            })
            .await;
        return Err(busy(&src, t));
    }
    let task = Task::new(state.db.clone(), state.hub.clone(), actor, &row);
    let out = task.response();
    spawn(
        state,
        task,
        vec![id, copy.id],
        move |state, task| async move {
            let r = copy_work(&state, &task, &src, &from, &copy, start_copy).await;
            if r.is_err() {
                remove_unfinished(&state, &task, to_id, &copy).await;
            }
            r
        },
    );
    Ok(out)
}

pub(super) async fn copy_work(
    state: &Arc<AppState>,
    task: &Task,
    src: &VpsRow,
    from: &HostRow,
    copy: &VpsRow,
    start_copy: bool,
) -> ApiResult<String> {
    let to = host_of(state, copy).await?;
    let cf = conn(state, from.id, &from.name)?;
    let ct = conn(state, to.id, &to.name)?;
    task.log(format!(
        "copying VPS {} on {} to {} on {}",
        src.name, from.name, copy.name, to.name
    ))
    .await;
    call(
        &ct,
        AgentRequest::VpsDefine {
            spec: spec(copy, &to),
        },
        QUICK,
    )
    .await?;
    let running = src.status == "running";
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
    }
    let estimate = live_disk(state, from.id, &src.name);
    let t0 = Instant::now();
    let r = transfer(task, &cf, &src.name, &ct, &copy.name, estimate, (5, 90)).await;
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
    let bytes = r?;
    task.log(format!(
        "{bytes} bytes copied in {:.1} s",
        t0.elapsed().as_secs_f64()
    ))
    .await;
    call(
        &ct,
        AgentRequest::VpsDefine {
            spec: spec(copy, &to),
        },
        QUICK,
    )
    .await?;
    if start_copy {
        call(
            &ct,
            AgentRequest::VpsStart {
                name: copy.name.clone(),
            },
            QUICK,
        )
        .await?;
        set_status(state, copy.id, "running").await?;
        Ok(format!("copy {} is running on {}", copy.name, to.name))
    } else {
        set_status(state, copy.id, "stopped").await?;
        Ok(format!("copy {} created on {}", copy.name, to.name))
    }
}
