//! Move a VPS to another host: stop, transfer, start there, remove the old copy.

use super::*;

pub async fn move_to(
    state: Arc<AppState>,
    actor: Actor,
    id: i64,
    target: i64,
) -> ApiResult<TaskResponse> {
    let v = state.db.run(move |c| load(c, id)).await?;
    forbid(&v, "moved", &["stopped", "running"])?;
    let from = host_of(&state, &v).await?;
    if from.id == target {
        return Err(ApiError::conflict(
            Some("host_id"),
            format!("VPS {} is already on {}", v.name, from.name),
        ));
    }
    conn(&state, from.id, &from.name)?;
    let cands = candidates(&state, Some(id)).await?;
    let c = cands
        .iter()
        .find(|c| c.id == target)
        .ok_or_else(|| ApiError::invalid("host_id", format!("no host with id {target}")))?;
    fits(c, &need(&v)).map_err(|m| ApiError::conflict(Some("host_id"), m))?;
    let to_name = c.name.clone();
    name_free_on(&state, target, &to_name, &v.name)?;
    let task = begin(
        &state,
        &actor,
        "vps.move",
        &v,
        &[id],
        format!("move VPS {} from {} to {to_name}", v.name, from.name),
        serde_json::json!({ "from": from.id, "to": target }),
    )
    .await?;
    let out = task.response();
    spawn(state, task, vec![id], move |state, task| async move {
        let to = state.db.run(move |c| load_host(c, target)).await?;
        move_work(&state, &task, &v, &from, &to).await
    });
    Ok(out)
}

pub(super) async fn move_work(
    state: &Arc<AppState>,
    task: &Task,
    v: &VpsRow,
    from: &HostRow,
    to: &HostRow,
) -> ApiResult<String> {
    let cf = conn(state, from.id, &from.name)?;
    let ct = conn(state, to.id, &to.name)?;
    let running = v.status == "running";
    let estimate = live_disk(state, from.id, &v.name);
    task.log(format!(
        "moving VPS {} from {} to {}",
        v.name, from.name, to.name
    ))
    .await;
    call(&ct, AgentRequest::VpsDefine { spec: spec(v, to) }, QUICK).await?;
    let down = Instant::now();
    if running {
        set_status(state, v.id, "moving").await?;
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
    task.progress(10, 0, estimate.map(|e| e as i64)).await;
    let result = async {
        let bytes = transfer(task, &cf, &v.name, &ct, &v.name, estimate, (10, 85)).await?;
        task.log(format!("{bytes} bytes of root filesystem transferred"))
            .await;
        call(&ct, AgentRequest::VpsDefine { spec: spec(v, to) }, QUICK).await?;
        if running {
            call(
                &ct,
                AgentRequest::VpsStart {
                    name: v.name.clone(),
                },
                QUICK,
            )
            .await?;
        }
        Ok::<u64, ApiError>(bytes)
    }
    .await;
    match result {
        Ok(bytes) => {
            let downtime = down.elapsed();
            let (id, to_id) = (v.id, to.id);
            let status = if running { "running" } else { "stopped" };
            state
                .db
                .run(move |c| {
                    diesel::update(vpses::table.find(id))
                        .set((
                            vpses::host_id.eq(to_id),
                            vpses::status.eq(status),
                            vpses::updated_at.eq(now()),
                        ))
                        .execute(c)?;
                    Ok(())
                })
                .await?;
            if running {
                task.log(format!(
                    "running on {}; downtime {} ms",
                    to.name,
                    downtime.as_millis()
                ))
                .await;
            }
            task.progress(90, bytes as i64, Some(bytes as i64)).await;
            if let Err(e) = call(
                &cf,
                AgentRequest::VpsDestroy {
                    name: v.name.clone(),
                },
                QUICK,
            )
            .await
            {
                task.log(format!(
                    "could not remove the old copy on {}: {}",
                    from.name,
                    e.body().message
                ))
                .await;
            } else {
                task.log(format!("removed from {}", from.name)).await;
            }
            Ok(if running {
                format!(
                    "VPS {} moved to {} (downtime {} ms)",
                    v.name,
                    to.name,
                    downtime.as_millis()
                )
            } else {
                format!("VPS {} moved to {}", v.name, to.name)
            })
        }
        Err(e) => {
            // Back to where it was: the partial copy goes, the original runs again.
            let _ = ct
                .agent
                .call(
                    AgentRequest::VpsDestroy {
                        name: v.name.clone(),
                    },
                    QUICK,
                )
                .await;
            if running {
                match call(
                    &cf,
                    AgentRequest::VpsStart {
                        name: v.name.clone(),
                    },
                    QUICK,
                )
                .await
                {
                    Ok(_) => {
                        set_status(state, v.id, "running").await?;
                        task.log(format!("started again on {}", from.name)).await;
                    }
                    Err(e2) => {
                        set_status(state, v.id, "error").await?;
                        task.log(format!(
                            "could not start it again on {}: {}",
                            from.name,
                            e2.body().message
                        ))
                        .await;
                    }
                }
            }
            Err(e)
        }
    }
}
