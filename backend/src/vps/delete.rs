//! Delete a VPS: from its host, then from the database.

use super::*;

pub async fn delete(state: Arc<AppState>, actor: Actor, id: i64) -> ApiResult<TaskResponse> {
    let v = state.db.run(move |c| load(c, id)).await?;
    forbid(&v, "deleted", &["stopped", "running", "error"])?;
    let host = match v.host_id {
        Some(_) => {
            let h = host_of(&state, &v).await?;
            // A container is only forgotten once it is gone from its host.
            conn(&state, h.id, &h.name)?;
            Some(h)
        }
        None => None,
    };
    let task = begin(
        &state,
        &actor,
        "vps.delete",
        &v,
        &[id],
        format!("delete VPS {}", v.name),
        serde_json::json!({ "name": v.name, "ipv4": v.ipv4 }),
    )
    .await?;
    let out = task.response();
    spawn(state, task, vec![id], move |state, task| async move {
        if let Some(h) = host {
            let c = conn(&state, h.id, &h.name)?;
            task.log(format!("removing VPS {} from host {}", v.name, h.name))
                .await;
            call(
                &c,
                AgentRequest::VpsDestroy {
                    name: v.name.clone(),
                },
                QUICK,
            )
            .await?;
        }
        state
            .db
            .run(move |c| {
                diesel::delete(vpses::table.find(id)).execute(c)?;
                Ok(())
            })
            .await?;
        changed(&state, id, ChangeKind::Deleted);
        Ok(format!("VPS {} deleted", v.name))
    });
    Ok(out)
}
