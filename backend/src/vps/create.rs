//! Create a VPS from a template.

use super::*;

pub struct CreateVps {
    pub name: String,
    pub description: String,
    pub template_id: i64,
    pub host_id: Option<i64>,
    pub ipv4: String,
    pub hostname: String,
    pub memory_limit_bytes: u64,
    pub cpu_shares: Option<u32>,
    pub cpu_limit_millis: Option<u32>,
    pub disk_limit_bytes: Option<u64>,
    pub autostart: bool,
    pub start: bool,
}

pub async fn create(state: Arc<AppState>, actor: Actor, req: CreateVps) -> ApiResult<TaskResponse> {
    let tid = req.template_id;
    let template = state
        .db
        .run(move |c| {
            crate::templates::load(c, tid)
                .map_err(|_| ApiError::invalid("template_id", format!("no template with id {tid}")))
        })
        .await?;
    if template.status != "ready" {
        return Err(ApiError::conflict(
            Some("template_id"),
            format!("template {} is {}", template.name, template.status),
        ));
    }
    let path = crate::templates::file(&state.config.data_dir, &template);
    if !path.is_file() {
        return Err(ApiError::conflict(
            Some("template_id"),
            format!(
                "the archive of template {} is missing from storage",
                template.name
            ),
        ));
    }
    let (n, ip) = (req.name.clone(), req.ipv4.clone());
    state.db.run(move |c| unique(c, &n, &ip, None)).await?;
    let placing = state.placement.lock().await;
    let want = HostCapacity {
        memory_bytes: req.memory_limit_bytes as i64,
        cpu_millis: req.cpu_limit_millis.map(i64::from).unwrap_or(0),
        disk_bytes: req.disk_limit_bytes.map(|d| d as i64).unwrap_or(0),
    };
    let cands = candidates(&state, None).await?;
    let host_id = match req.host_id {
        Some(h) => {
            let c = cands
                .iter()
                .find(|c| c.id == h)
                .ok_or_else(|| ApiError::invalid("host_id", format!("no host with id {h}")))?;
            fits(c, &want).map_err(|m| ApiError::conflict(Some("host_id"), m))?;
            h
        }
        None => place(&cands, &want).map_err(|m| ApiError::conflict(Some("host_id"), m))?,
    };
    let host_name = cands
        .iter()
        .find(|c| c.id == host_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    name_free_on(&state, host_id, &host_name, &req.name)?;
    let a = actor.clone();
    let (vps, row) =
        state
            .db
            .run(move |c| {
                c.transaction(|c| {
                    unique(c, &req.name, &req.ipv4, None)?;
                    let vps = insert_creating(
                        c,
                        NewVps {
                            name: &req.name,
                            description: &req.description,
                            host_id: Some(host_id),
                            template_id: Some(req.template_id),
                            ipv4: &req.ipv4,
                            hostname: &req.hostname,
                            memory_limit_bytes: req.memory_limit_bytes as i64,
                            cpu_shares: req.cpu_shares.map(|v| v as i32),
                            cpu_limit_millis: req.cpu_limit_millis.map(|v| v as i32),
                            disk_limit_bytes: req.disk_limit_bytes.map(|v| v as i64),
                            autostart: req.autostart,
                        },
                    )?;
                    let row =
                        crate::tasks::insert(c, "vps.create", "vps", &vps.id.to_string(), &a)?;
                    audit::record(
                    c,
                    &a,
                    Change::new(
                        "vps.create",
                        "vps",
                        vps.id,
                        format!("created VPS {} ({}) on host {host_name}", vps.name, vps.ipv4),
                    )
                    .details(serde_json::json!({
                        "name": vps.name, "ipv4": vps.ipv4, "host_id": host_id,
                        "template": req.template_id, "memory_limit_bytes": vps.memory_limit_bytes,
                    })),
                )?;
                    Ok((vps, row))
                })
            })
            .await?;
    drop(placing);
    let _ = state.vps_busy.claim(&[vps.id], row.id);
    let task = Task::new(state.db.clone(), state.hub.clone(), actor, &row);
    let out = task.response();
    let start = req.start;
    spawn(state, task, vec![vps.id], move |state, task| async move {
        let r = create_work(&state, &task, &vps, &path, start).await;
        if r.is_err() {
            remove_unfinished(&state, &task, host_id, &vps).await;
        }
        r
    });
    Ok(out)
}

pub(super) async fn create_work(
    state: &Arc<AppState>,
    task: &Task,
    vps: &VpsRow,
    template: &std::path::Path,
    start: bool,
) -> ApiResult<String> {
    let host = host_of(state, vps).await?;
    let c = conn(state, host.id, &host.name)?;
    task.log(format!("creating VPS {} on host {}", vps.name, host.name))
        .await;
    let spec = spec(vps, &host);
    call(&c, AgentRequest::VpsDefine { spec: spec.clone() }, QUICK).await?;
    task.progress(10, 0, None).await;
    let bytes = push_template(task, &c, &vps.name, template).await?;
    task.log(format!(
        "root filesystem unpacked ({bytes} bytes of template sent)"
    ))
    .await;
    // Writes the host name into the new root filesystem too.
    call(&c, AgentRequest::VpsDefine { spec }, QUICK).await?;
    task.progress(85, bytes as i64, Some(bytes as i64)).await;
    if start {
        task.log("starting").await;
        call(
            &c,
            AgentRequest::VpsStart {
                name: vps.name.clone(),
            },
            QUICK,
        )
        .await?;
        set_status(state, vps.id, "running").await?;
        Ok(format!(
            "VPS {} created and running on {}",
            vps.name, host.name
        ))
    } else {
        set_status(state, vps.id, "stopped").await?;
        Ok(format!("VPS {} created on {}", vps.name, host.name))
    }
}
