//! Start, stop and restart. Each sets the VPS's desired state in the transaction that records
//! the request, so a controller that dies before the host acted still knows what was asked: the
//! reconciler finishes it.

use super::agent::{call, conn, spec, QUICK};
use super::operation::{begin, check, spawn, Begin};
use super::record::{host_of, set_state};
use super::Vpses;
use crate::audit::Actor;
use crate::error::Result;
use crate::hosts::HostRow;
use crate::ops::Finish;
use crate::repo::vpses::{load, VpsRow};
use crate::tasks::Task;
use serverware_shared::agent::{AgentRequest, AgentResponse};
use serverware_shared::api::TaskResponse;
use serverware_shared::state::{DesiredState, ObservedState, VpsOperation};
use serverware_shared::VpsId;
use std::sync::Arc;
use std::time::Duration;

pub async fn start(state: Arc<Vpses>, actor: Actor, id: VpsId) -> Result<TaskResponse> {
    let v = state.db.run(move |c| load(c, id)).await?;
    check(&state, &v, VpsOperation::Start).await?;
    let host = host_of(&state, &v).await?;
    let task = begin(
        &state,
        &actor,
        VpsOperation::Start,
        &v,
        &[(id, v.name.clone())],
        format!("start VPS {}", v.name),
        serde_json::json!({}),
        Begin {
            desired: Some(DesiredState::Running),
            ..Default::default()
        },
    )
    .await?;
    let out = task.response();
    spawn(state, task, vec![id], move |state, task| async move {
        Finish::Done(start_on(&state, &task, &v, &host).await)
    });
    Ok(out)
}

/// Writes the configuration (so edits made while stopped apply) and starts the VPS.
async fn start_on(state: &Vpses, task: &Task, v: &VpsRow, host: &HostRow) -> Result<String> {
    let c = conn(state, host.id, &host.name)?;
    task.log(format!("starting VPS {} on {}", v.name, host.name))
        .await;
    call(
        &c,
        AgentRequest::VpsDefine {
            spec: spec(v, host),
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
            set_state(state, v.id, ObservedState::Running, None).await?;
            Ok(format!("VPS {} is running", v.name))
        }
        Err(e) => {
            set_state(state, v.id, ObservedState::Stopped, None).await?;
            Err(e)
        }
    }
}

pub async fn stop(
    state: Arc<Vpses>,
    actor: Actor,
    id: VpsId,
    timeout: u32,
    restart: bool,
) -> Result<TaskResponse> {
    let v = state.db.run(move |c| load(c, id)).await?;
    let op = if restart {
        VpsOperation::Restart
    } else {
        VpsOperation::Stop
    };
    check(&state, &v, op).await?;
    let host = host_of(&state, &v).await?;
    let task = begin(
        &state,
        &actor,
        op,
        &v,
        &[(id, v.name.clone())],
        format!(
            "{} VPS {}",
            if restart { "restart" } else { "stop" },
            v.name
        ),
        serde_json::json!({ "timeout_secs": timeout }),
        Begin {
            desired: Some(if restart {
                DesiredState::Running
            } else {
                DesiredState::Stopped
            }),
            ..Default::default()
        },
    )
    .await?;
    let out = task.response();
    spawn(state, task, vec![id], move |state, task| async move {
        let r = async {
            stop_on(&state, &task, &v, &host, timeout).await?;
            if !restart {
                return Ok(format!("VPS {} is stopped", v.name));
            }
            task.progress(50, 0, None).await;
            start_on(&state, &task, &v, &host).await?;
            Ok(format!("VPS {} restarted", v.name))
        }
        .await;
        Finish::Done(r)
    });
    Ok(out)
}

/// Stops a VPS cleanly, by force after `timeout` seconds.
pub(super) async fn stop_on(
    state: &Vpses,
    task: &Task,
    v: &VpsRow,
    host: &HostRow,
    timeout: u32,
) -> Result<()> {
    let c = conn(state, host.id, &host.name)?;
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
    set_state(state, v.id, ObservedState::Stopped, None).await
}
