//! Start, stop and restart.

use super::*;

pub async fn start(state: Arc<AppState>, actor: Actor, id: i64) -> ApiResult<TaskResponse> {
    let v = state.db.run(move |c| load(c, id)).await?;
    forbid(&v, "started", &["stopped", "error"])?;
    let host = host_of(&state, &v).await?;
    conn(&state, host.id, &host.name)?;
    let task = begin(
        &state,
        &actor,
        "vps.start",
        &v,
        &[id],
        format!("start VPS {}", v.name),
        serde_json::json!({}),
    )
    .await?;
    let out = task.response();
    spawn(state, task, vec![id], move |state, task| async move {
        let c = conn(&state, host.id, &host.name)?;
        task.log(format!("starting VPS {} on {}", v.name, host.name))
            .await;
        // The configuration is rewritten first, so edits made while stopped apply.
        call(
            &c,
            AgentRequest::VpsDefine {
                spec: spec(&v, &host),
            },
            QUICK,
        )
        .await?;
        task.progress(30, 0, None).await;
        match call(
            &c,
            AgentRequest::VpsStart {
                name: v.name.clone(),
            },
            QUICK,
        )
        .await
        {
            Ok(_) => {
                set_status(&state, id, "running").await?;
                Ok(format!("VPS {} is running", v.name))
            }
            Err(e) => {
                set_status(&state, id, "stopped").await?;
                Err(e)
            }
        }
    });
    Ok(out)
}

pub async fn stop(
    state: Arc<AppState>,
    actor: Actor,
    id: i64,
    timeout: u32,
    restart: bool,
) -> ApiResult<TaskResponse> {
    let v = state.db.run(move |c| load(c, id)).await?;
    let verb = if restart { "restarted" } else { "stopped" };
    forbid(&v, verb, &["running", "error"])?;
    let host = host_of(&state, &v).await?;
    conn(&state, host.id, &host.name)?;
    let kind = if restart { "vps.restart" } else { "vps.stop" };
    let task = begin(
        &state,
        &actor,
        kind,
        &v,
        &[id],
        format!(
            "{} VPS {}",
            if restart { "restart" } else { "stop" },
            v.name
        ),
        serde_json::json!({ "timeout_secs": timeout }),
    )
    .await?;
    let out = task.response();
    spawn(state, task, vec![id], move |state, task| async move {
        let c = conn(&state, host.id, &host.name)?;
        task.log(format!(
            "stopping VPS {} (forced after {timeout} s)",
            v.name
        ))
        .await;
        let r = call(
            &c,
            AgentRequest::VpsStop {
                name: v.name.clone(),
                timeout_secs: timeout,
            },
            Duration::from_secs(u64::from(timeout) + 60),
        )
        .await?;
        if let AgentResponse::Stopped { forced: true } = r {
            task.log(format!(
                "VPS {} did not stop within {timeout} s and was stopped by force",
                v.name
            ))
            .await;
        }
        set_status(&state, id, "stopped").await?;
        if !restart {
            return Ok(format!("VPS {} is stopped", v.name));
        }
        task.progress(50, 0, None).await;
        task.log("starting").await;
        call(
            &c,
            AgentRequest::VpsDefine {
                spec: spec(&v, &host),
            },
            QUICK,
        )
        .await?;
        call(
            &c,
            AgentRequest::VpsStart {
                name: v.name.clone(),
            },
            QUICK,
        )
        .await?;
        set_status(&state, id, "running").await?;
        Ok(format!("VPS {} restarted", v.name))
    });
    Ok(out)
}
