//! Delete a VPS: from its host, then from the database. Durable: once asked, it is carried
//! through, also across a controller restart or while its host is briefly offline.

use super::agent::{call, QUICK};
use super::operation::{begin, check, spawn, Begin};
use super::record::changed;
use super::Vpses;
use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::ops::{saga, Finish, OpRow};
use crate::repo::vpses::{load, load_host, VpsRow};
use crate::tasks::Task;
use serde::{Deserialize, Serialize};
use serverware_shared::agent::AgentRequest;
use serverware_shared::api::TaskResponse;
use serverware_shared::state::{DesiredState, VpsOperation};
use serverware_shared::ws::ChangeKind;
use serverware_shared::{HostId, VpsId};
use std::sync::Arc;

crate::ops::steps! {
    /// The steps of a delete.
    pub enum Step for "vps.delete" {
        Destroyed = "destroyed",
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct Params {
    host_id: Option<HostId>,
}

pub async fn delete(state: Arc<Vpses>, actor: Actor, id: VpsId) -> Result<TaskResponse> {
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
        let host_id = v.host_id;
        let saga = Delete {
            state: &state,
            task: &task,
            vps: v,
            host_id,
        };
        saga::forward(&state.db, &task, &saga, None).await
    });
    Ok(out)
}

/// A delete as a saga: carried forward, never undone (the operator asked for the VPS to go);
/// a step that fails is tried again later. A container is only forgotten once it is gone from
/// its host.
struct Delete<'a> {
    state: &'a Vpses,
    task: &'a Task,
    vps: VpsRow,
    host_id: Option<HostId>,
}

impl saga::Saga for Delete<'_> {
    type Step = Step;

    fn applies(&self, _step: Step) -> bool {
        self.host_id.is_some()
    }

    async fn run(&self, step: Step) -> Result<()> {
        let Step::Destroyed = step;
        let (state, task, v) = (self.state, self.task, &self.vps);
        let Some(h) = self.host_id else {
            return Ok(());
        };
        let host = state.db.run(move |c| load_host(c, h)).await?;
        let Some(c) = state.hosts.conn(host.id) else {
            return Err(Error::HostUnavailable(format!(
                "host {} cannot be reached now: VPS {} is removed once it can",
                host.name, v.name
            )));
        };
        task.log(format!("removing VPS {} from host {}", v.name, host.name))
            .await;
        call(
            &c,
            AgentRequest::VpsDestroy {
                name: v.name.clone(),
            },
            QUICK,
        )
        .await?;
        Ok(())
    }

    async fn done(&self) -> Result<String> {
        let id = self.vps.id;
        self.state
            .db
            .run(move |c| crate::repo::vpses::delete(c, id))
            .await?;
        // Its restore points stay in storage (pruned by the policy, the newest kept).
        self.state.duplo.forget(id);
        self.state
            .duplo
            .dirty
            .store(true, std::sync::atomic::Ordering::SeqCst);
        changed(&self.state.hub, id, ChangeKind::Deleted);
        Ok(format!("VPS {} deleted", self.vps.name))
    }

    async fn undo(&self, _reached: Option<Step>, why: Error) -> Finish {
        Finish::Done(Err(why))
    }

    fn goes_on(&self, _reached: Option<Step>) -> bool {
        true
    }

    fn retries(&self) -> bool {
        true
    }

    fn interrupted(&self) -> Error {
        Error::conflict(None, format!("the delete of VPS {} stopped", self.vps.name))
    }
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
    let saga = Delete {
        state,
        task,
        vps: v,
        host_id: p.host_id,
    };
    let announce = !state.ops.live.announced(op.task_id);
    saga::resume(&state.db, task, &saga, op, announce).await
}
