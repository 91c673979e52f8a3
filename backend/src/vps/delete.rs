//! Delete a VPS: from its host, then from the database. Durable: once asked, it is carried
//! through, also across a controller restart or while its host is briefly offline.

use super::*;

crate::ops::steps! {
    /// The steps of a delete.
    pub enum Step for "vps.delete" {
        Destroyed = "destroyed",
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct Params {
    host_id: Option<i64>,
}

pub async fn delete(state: Arc<Vpses>, actor: Actor, id: i64) -> Result<TaskResponse> {
    let v = state.db.run(move |c| load(c, id)).await?;
    check(&state, &v, VpsOperation::Delete).await?;
    let task = begin(
        &state,
        &actor,
        VpsOperation::Delete,
        &v,
        &[(id, v.name.clone())],
        format!("delete VPS {}", v.name),
        serde_json::json!({ "name": v.name, "ipv4": v.ipv4 }),
        Begin {
            durable: Some(serde_json::json!(Params { host_id: v.host_id })),
            desired: Some(DesiredState::Stopped),
            ..Default::default()
        },
    )
    .await?;
    let out = task.response();
    spawn(state, task, vec![id], move |state, task| async move {
        forward(&state, &task, &v, v.host_id).await
    });
    Ok(out)
}

/// A container is only forgotten once it is gone from its host.
async fn forward(state: &Vpses, task: &Task, v: &VpsRow, host_id: Option<i64>) -> Finish {
    if let Some(h) = host_id {
        let host = match state.db.run(move |c| load_host(c, h)).await {
            Ok(h) => h,
            Err(e) => return Finish::Done(Err(e)),
        };
        let Some(c) = state.hosts.conn(host.id) else {
            task.log(format!(
                "host {} cannot be reached now: VPS {} is removed once it can",
                host.name, v.name
            ))
            .await;
            return Finish::Later {
                release_claims: false,
            };
        };
        task.log(format!("removing VPS {} from host {}", v.name, host.name))
            .await;
        let r = call(
            &c,
            AgentRequest::VpsDestroy {
                name: v.name.clone(),
            },
            QUICK,
        )
        .await;
        if let Err(e) = r {
            task.log(format!(
                "removing it failed ({}); trying again later",
                e.message()
            ))
            .await;
            return Finish::Later {
                release_claims: false,
            };
        }
        if let Err(e) = ops::step(&state.db, task.id(), Step::Destroyed).await {
            return Finish::Done(Err(e));
        }
    }
    let id = v.id;
    let r = state
        .db
        .run(move |c| crate::repo::vpses::delete(c, id))
        .await;
    if let Err(e) = r {
        return Finish::Done(Err(e));
    }
    // Its restore points stay in storage (pruned by the policy, the newest kept).
    state.duplo.forget(id);
    state
        .duplo
        .dirty
        .store(true, std::sync::atomic::Ordering::SeqCst);
    changed(&state.hub, id, ChangeKind::Deleted);
    Finish::Done(Ok(format!("VPS {} deleted", v.name)))
}

/// A delete is always carried forward: the operator asked for the VPS to go.
pub(super) async fn recover(state: &Vpses, task: &Task, op: &OpRow) -> Finish {
    let p: Params = match op.params() {
        Ok(p) => p,
        Err(e) => return Finish::Done(Err(e)),
    };
    let id = op.vps_id;
    let v = match state.db.run(move |c| load(c, id)).await {
        Ok(v) => v,
        Err(Error::NotFound(_)) => return Finish::Done(Ok("the VPS was already deleted".into())),
        Err(e) => return Finish::Done(Err(e)),
    };
    if !state.ops.live.announced(op.task_id) {
        task.log(format!(
            "resumed: the delete goes on after step '{}'",
            op.step
        ))
        .await;
    }
    forward(state, task, &v, p.host_id).await
}
