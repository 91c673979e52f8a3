use crate::audit::{self, Actor, Change};
use crate::auth::Principal;
use crate::core::Core;
use crate::error::{ApiError, ApiResult};
use crate::hosts::HostRow;
use crate::models::now;
use crate::schema::{hosts, vpses};
use crate::ssh::{probe_host_key, Credentials, Session, SshError};
use crate::vps::VpsRow;
use actix_web::{delete, get, patch, post, web, HttpResponse};
use diesel::prelude::*;
use serverware_shared::agent::HostSample;
use serverware_shared::api::{
    CreateHostRequest, HistoryQuery, HostResponse, HostRollup, ProbeHostRequest, ProbeHostResponse,
    UpdateHostRequest,
};
use serverware_shared::{validate, ErrorBody, Role};

fn ssh_error(e: SshError) -> ApiError {
    match e {
        SshError::Unreachable(t, why) => ApiError::invalid("address", format!("cannot reach {t}: {why}")),
        SshError::AuthRejected => ApiError::invalid("password", "the host refused the password or key"),
        SshError::HostKeyMismatch { presented } => ApiError::conflict(
            Some("host_key"),
            format!("the host now presents a different key ({presented}) than the one confirmed; probe it again"),
        ),
        SshError::Protocol(m) => ApiError::invalid("address", format!("SSH failed: {m}")),
        SshError::Agent(m) => ApiError::HostUnavailable(m),
    }
}

/// Read a host's SSH key so the operator can confirm its fingerprint before adding it.
#[utoipa::path(tag = "hosts", request_body = ProbeHostRequest, responses(
    (status = 200, body = ProbeHostResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/hosts/probe")]
pub async fn probe_host(
    principal: Principal,
    body: web::Json<ProbeHostRequest>,
) -> ApiResult<web::Json<ProbeHostResponse>> {
    principal.require(Role::Operator)?;
    let a = validate::ssh_address("address", &body.address)?;
    let key = probe_host_key(&a.host, a.port).await.map_err(ssh_error)?;
    Ok(web::Json(ProbeHostResponse {
        fingerprint: key.fingerprint,
        host_key: key.openssh,
    }))
}

fn response(row: &HostRow, state: &Core, all_vpses: &[VpsRow]) -> HostResponse {
    let view = state.hosts.view(row.id).unwrap_or_default();
    let placed: Vec<&VpsRow> = all_vpses
        .iter()
        .filter(|v| v.host_id == Some(row.id))
        .collect();
    let capacity = crate::vps::capacity(row, view.latest.as_ref());
    let unknown_vpses = view
        .latest
        .as_ref()
        .map(|s| {
            s.vpses
                .iter()
                .filter(|x| !all_vpses.iter().any(|v| v.name == x.name))
                .map(|x| x.name.clone())
                .collect()
        })
        .unwrap_or_default();
    HostResponse {
        id: row.id,
        name: row.name.clone(),
        description: row.description.clone(),
        address: format!("ssh://{}@{}:{}", row.ssh_user, row.address, row.ssh_port),
        status: view
            .status
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| row.status.clone()),
        fingerprint: row.host_key_fingerprint.clone(),
        last_seen_at: view.last_seen.or(row.last_seen_at.map(|t| t.and_utc())),
        agent_version: view.agent_version.or(row.agent_version.clone()),
        hostname: view.hostname,
        kernel: view.kernel,
        cpu_model: view.cpu_model,
        sample_interval_ms: row.sample_interval_ms.max(0) as u32,
        vps_count: placed.len() as i64,
        free: crate::vps::free(capacity, &placed),
        capacity,
        vps_bridge: row.vps_bridge.clone(),
        vps_prefix_len: row.vps_prefix_len,
        vps_gateway: row.vps_gateway.clone(),
        max_transfers: row.max_transfers.max(1) as u32,
        duplo_interval_secs: row.duplo_interval_secs.max(1) as u32,
        maintenance: row.maintenance,
        unknown_vpses,
        sample: view.latest,
    }
}

fn load_host(c: &mut crate::db::DbConn, id: i64) -> ApiResult<(HostRow, Vec<VpsRow>)> {
    let row = hosts::table
        .find(id)
        .select(HostRow::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| ApiError::NotFound(format!("no host with id {id}")))?;
    let all = vpses::table.select(VpsRow::as_select()).load(c)?;
    Ok((row, all))
}

/// Add a host: log in once with the given password or key on the confirmed host key, install the
/// controller's key and the agent, then keep a connection. Nothing is stored if a step fails.
#[utoipa::path(tag = "hosts", request_body = CreateHostRequest, responses(
    (status = 201, body = HostResponse), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/hosts")]
pub async fn create_host(
    state: web::Data<Core>,
    principal: Principal,
    body: web::Json<CreateHostRequest>,
) -> ApiResult<HttpResponse> {
    principal.require(Role::Operator)?;
    let req = body.into_inner();
    let name = validate::resource_name("name", &req.name)?;
    let description = validate::description("description", &req.description)?;
    let a = validate::ssh_address("address", &req.address)?;
    let duplo_interval = validate::duplo_interval_secs(
        "duplo_interval_secs",
        req.duplo_interval_secs
            .unwrap_or(validate::DEFAULT_DUPLO_INTERVAL_SECS),
    )?;
    if req.host_key.split_whitespace().count() < 2 {
        return Err(ApiError::invalid(
            "host_key",
            "confirm the host key from the probe first",
        ));
    }
    let creds = match (&req.password, &req.private_key) {
        (Some(p), None) if !p.is_empty() => Credentials::Password(p.clone()),
        (None, Some(k)) => Credentials::Key(std::sync::Arc::new(
            russh::keys::PrivateKey::from_openssh(k).map_err(|_| {
                ApiError::invalid("private_key", "not an unencrypted OpenSSH private key")
            })?,
        )),
        _ => {
            return Err(ApiError::invalid(
                "password",
                "give either a password or a private key",
            ))
        }
    };
    let (n, addr, port) = (name.clone(), a.host.clone(), i32::from(a.port));
    let taken = state
        .db
        .run(move |c| {
            let by_name: i64 = hosts::table
                .filter(hosts::name.eq(&n))
                .count()
                .get_result(c)?;
            let by_addr: i64 = hosts::table
                .filter(hosts::address.eq(&addr))
                .filter(hosts::ssh_port.eq(port))
                .count()
                .get_result(c)?;
            Ok((by_name > 0, by_addr > 0))
        })
        .await?;
    if taken.0 {
        return Err(ApiError::conflict(
            Some("name"),
            format!("a host named '{name}' exists"),
        ));
    }
    if taken.1 {
        return Err(ApiError::conflict(
            Some("address"),
            "this address is already a host",
        ));
    }

    let session = Session::connect(&a.host, a.port, &a.user, &req.host_key, &creds)
        .await
        .map_err(ssh_error)?;
    let public = crate::keys::public_line(&state.hosts.controller_key());
    let install = "umask 077; mkdir -p ~/.ssh && { grep -qxF \"$1\" ~/.ssh/authorized_keys 2>/dev/null || printf '%s\\n' \"$1\" >> ~/.ssh/authorized_keys; }";
    let (code, _, err) = session
        .run("sh", &["-c", install, "sh", &public])
        .await
        .map_err(ssh_error)?;
    if code != 0 {
        return Err(ApiError::invalid(
            "address",
            format!(
                "cannot install the controller's key: {}",
                String::from_utf8_lossy(&err).trim()
            ),
        ));
    }
    let agent = state.hosts.agent_binary().ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "the agent binary was not found next to the controller"
        ))
    })?;
    session
        .upload(crate::hosts::AGENT_PATH, &agent)
        .await
        .map_err(ssh_error)?;
    // The controller will only ever log in with its own key: prove that it does before
    // anything is stored.
    let own = Session::connect(
        &a.host,
        a.port,
        &a.user,
        &req.host_key,
        &crate::ssh::Credentials::Key(state.hosts.controller_key()),
    )
    .await;
    match own {
        Ok(own) => {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), own.close()).await;
        }
        Err(e) => {
            let why = match e {
                crate::ssh::SshError::AuthRejected => {
                    let (_, out, _) =
                        session
                            .run("sshd", &["-T"])
                            .await
                            .unwrap_or((1, Vec::new(), Vec::new()));
                    let files = String::from_utf8_lossy(&out)
                        .lines()
                        .find_map(|l| l.strip_prefix("authorizedkeysfile ").map(str::to_string))
                        .unwrap_or_else(|| "unknown".into());
                    // Leave no key behind that nothing uses.
                    let remove = "f=~/.ssh/authorized_keys; [ -f \"$f\" ] || exit 0; grep -vxF \"$1\" \"$f\" > \"$f.sw\"; mv \"$f.sw\" \"$f\"";
                    let _ = session.run("sh", &["-c", remove, "sh", &public]).await;
                    format!(
                    "the controller's key was installed in ~/.ssh/authorized_keys but the host does not accept it; its sshd reads keys from: {files} (AuthorizedKeysFile)"
                )
                }
                other => format!("the controller could not log in with its own key: {other}"),
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), session.close()).await;
            return Err(ApiError::invalid("address", why));
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), session.close()).await;

    let fingerprint = russh::keys::PublicKey::from_openssh(&req.host_key)
        .map(|k| k.fingerprint(russh::keys::HashAlg::Sha256).to_string())
        .map_err(|_| ApiError::invalid("host_key", "not an OpenSSH public key"))?;
    let actor = Actor::from(&principal);
    let row = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let t = now();
                diesel::insert_into(hosts::table)
                    .values((
                        hosts::name.eq(&name),
                        hosts::description.eq(&description),
                        hosts::ssh_user.eq(&a.user),
                        hosts::address.eq(&a.host),
                        hosts::ssh_port.eq(i32::from(a.port)),
                        hosts::host_key_fingerprint.eq(&fingerprint),
                        hosts::host_key.eq(&req.host_key),
                        hosts::status.eq(serverware_shared::state::HostStatus::Connecting.as_str()),
                        hosts::heartbeat_timeout_ms.eq(3000),
                        hosts::duplo_interval_secs.eq(duplo_interval as i32),
                        hosts::created_at.eq(t),
                        hosts::updated_at.eq(t),
                    ))
                    .execute(c)?;
                let row: HostRow = hosts::table.filter(hosts::name.eq(&name)).select(HostRow::as_select()).first(c)?;
                audit::record(
                    c,
                    &actor,
                    Change::new("host.create", "host", row.id, format!("added host {} ({})", row.name, a))
                        .details(serde_json::json!({ "name": row.name, "address": a.to_string(), "fingerprint": fingerprint })),
                )?;
                Ok(row)
            })
        })
        .await?;
    state.hosts.spawn(row.clone());
    Ok(HttpResponse::Created().json(response(&row, &state, &[])))
}

/// List hosts with their status and newest sample.
#[utoipa::path(tag = "hosts", responses((status = 200, body = Vec<HostResponse>)))]
#[get("/hosts")]
pub async fn list_hosts(
    state: web::Data<Core>,
    principal: Principal,
) -> ApiResult<web::Json<Vec<HostResponse>>> {
    principal.require(Role::Viewer)?;
    let (rows, all) = state
        .db
        .run(|c| {
            let rows: Vec<HostRow> = hosts::table
                .order(hosts::name)
                .select(HostRow::as_select())
                .load(c)?;
            let all: Vec<VpsRow> = vpses::table.select(VpsRow::as_select()).load(c)?;
            Ok((rows, all))
        })
        .await?;
    Ok(web::Json(
        rows.iter().map(|r| response(r, &state, &all)).collect(),
    ))
}

/// One host with its newest sample.
#[utoipa::path(tag = "hosts", params(("id" = i64, Path)), responses((status = 200, body = HostResponse), (status = 404, body = ErrorBody)))]
#[get("/hosts/{id}")]
pub async fn get_host(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> ApiResult<web::Json<HostResponse>> {
    principal.require(Role::Viewer)?;
    let id = id.into_inner();
    let (row, all) = state.db.run(move |c| load_host(c, id)).await?;
    Ok(web::Json(response(&row, &state, &all)))
}

/// Edit a host: name, description, sampling interval; or pin its new key after it changed.
#[utoipa::path(tag = "hosts", params(("id" = i64, Path)), request_body = UpdateHostRequest, responses(
    (status = 200, body = HostResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/hosts/{id}")]
pub async fn update_host(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
    body: web::Json<UpdateHostRequest>,
) -> ApiResult<web::Json<HostResponse>> {
    principal.require(Role::Operator)?;
    let id = id.into_inner();
    let req = body.into_inner();
    let name = req
        .name
        .as_deref()
        .map(|n| validate::resource_name("name", n))
        .transpose()?;
    let description = req
        .description
        .as_deref()
        .map(|d| validate::description("description", d))
        .transpose()?;
    let interval = req
        .sample_interval_ms
        .map(|v| validate::sample_interval_ms("sample_interval_ms", v))
        .transpose()?;
    let bridge = req
        .vps_bridge
        .as_deref()
        .map(|b| validate::interface_name("vps_bridge", b))
        .transpose()?;
    let prefix = req
        .vps_prefix_len
        .map(|p| validate::prefix_len("vps_prefix_len", p))
        .transpose()?;
    let gateway = match req.vps_gateway.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(g) => Some(Some(validate::ipv4_address("vps_gateway", g)?.to_string())),
    };
    let max_transfers = req
        .max_transfers
        .map(|v| validate::max_transfers("max_transfers", v))
        .transpose()?;
    let duplo_interval = req
        .duplo_interval_secs
        .map(|v| validate::duplo_interval_secs("duplo_interval_secs", v))
        .transpose()?;
    let maintenance = req.maintenance;
    let cap_mem = req
        .capacity_memory_bytes
        .map(|m| (m > 0).then_some(m as i64));
    let cap_cpus = match req.capacity_cpus {
        Some(c) if c > 4096 => {
            return Err(ApiError::invalid(
                "capacity_cpus",
                "must be between 0 and 4096",
            ))
        }
        other => other.map(|c| (c > 0).then_some(c as i32)),
    };
    let cap_disk = req.capacity_disk_bytes.map(|d| (d > 0).then_some(d as i64));
    let (current, _) = state.db.run(move |c| load_host(c, id)).await?;
    // A new key is pinned only if the host presents exactly the key the operator confirmed.
    let new_key = match req.host_key.as_deref().map(str::trim) {
        None => None,
        Some(k) => {
            let confirmed = russh::keys::PublicKey::from_openssh(k)
                .map_err(|_| ApiError::invalid("host_key", "not an OpenSSH public key"))?;
            let presented = probe_host_key(&current.address, current.ssh_port as u16)
                .await
                .map_err(ssh_error)?;
            let fp = confirmed
                .fingerprint(russh::keys::HashAlg::Sha256)
                .to_string();
            if presented.fingerprint != fp {
                return Err(ApiError::conflict(
                    Some("host_key"),
                    format!(
                        "the host presents {}, not the key you confirmed ({fp}); probe it again",
                        presented.fingerprint
                    ),
                ));
            }
            Some((presented.openssh, fp))
        }
    };
    let actor = Actor::from(&principal);
    let (name2, desc2, key2) = (name.clone(), description.clone(), new_key.clone());
    let (row, all) = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let (old, _) = load_host(c, id)?;
                let mut what = Vec::new();
                if let Some(n) = &name2 {
                    if *n != old.name {
                        let taken: i64 = hosts::table
                            .filter(hosts::name.eq(n))
                            .filter(hosts::id.ne(id))
                            .count()
                            .get_result(c)?;
                        if taken > 0 {
                            return Err(ApiError::conflict(
                                Some("name"),
                                format!("a host named '{n}' exists"),
                            ));
                        }
                        diesel::update(hosts::table.find(id))
                            .set(hosts::name.eq(n))
                            .execute(c)?;
                        what.push(format!("renamed to {n}"));
                    }
                }
                if let Some(d) = &desc2 {
                    diesel::update(hosts::table.find(id))
                        .set(hosts::description.eq(d))
                        .execute(c)?;
                    what.push("description changed".to_string());
                }
                if let Some(ms) = interval {
                    diesel::update(hosts::table.find(id))
                        .set(hosts::sample_interval_ms.eq(ms as i32))
                        .execute(c)?;
                    what.push(format!("samples every {ms} ms"));
                }
                if let Some(b) = &bridge {
                    diesel::update(hosts::table.find(id))
                        .set(hosts::vps_bridge.eq(b))
                        .execute(c)?;
                    what.push(format!("VPS bridge {b}"));
                }
                if let Some(p) = prefix {
                    diesel::update(hosts::table.find(id))
                        .set(hosts::vps_prefix_len.eq(i32::from(p)))
                        .execute(c)?;
                    what.push(format!("VPS prefix /{p}"));
                }
                if let Some(g) = &gateway {
                    diesel::update(hosts::table.find(id))
                        .set(hosts::vps_gateway.eq(g))
                        .execute(c)?;
                    what.push(format!("VPS gateway {}", g.as_deref().unwrap_or("none")));
                }
                if let Some(n) = max_transfers {
                    diesel::update(hosts::table.find(id))
                        .set(hosts::max_transfers.eq(n as i32))
                        .execute(c)?;
                    what.push(format!("{n} transfers at once"));
                }
                if let Some(n) = duplo_interval {
                    diesel::update(hosts::table.find(id))
                        .set(hosts::duplo_interval_secs.eq(n as i32))
                        .execute(c)?;
                    what.push(format!("VPSes duplicated every {n} s"));
                }
                if let Some(m) = maintenance.filter(|m| *m != old.maintenance) {
                    diesel::update(hosts::table.find(id))
                        .set(hosts::maintenance.eq(m))
                        .execute(c)?;
                    what.push(if m {
                        "into maintenance: its VPSes are moved away".to_string()
                    } else {
                        "out of maintenance".to_string()
                    });
                }
                if let Some(m) = cap_mem {
                    diesel::update(hosts::table.find(id))
                        .set(hosts::capacity_memory_bytes.eq(m))
                        .execute(c)?;
                    what.push(format!(
                        "memory capacity {}",
                        m.map(|b| format!("{} MiB", b >> 20))
                            .unwrap_or("as reported".into())
                    ));
                }
                if let Some(n) = cap_cpus {
                    diesel::update(hosts::table.find(id))
                        .set(hosts::capacity_cpus.eq(n))
                        .execute(c)?;
                    what.push(format!(
                        "CPU capacity {}",
                        n.map(|n| n.to_string()).unwrap_or("as reported".into())
                    ));
                }
                if let Some(d) = cap_disk {
                    diesel::update(hosts::table.find(id))
                        .set(hosts::capacity_disk_bytes.eq(d))
                        .execute(c)?;
                    what.push(format!(
                        "disk capacity {}",
                        d.map(|b| format!("{} MiB", b >> 20))
                            .unwrap_or("as reported".into())
                    ));
                }
                if let Some((key, fp)) = &key2 {
                    diesel::update(hosts::table.find(id))
                        .set((hosts::host_key.eq(key), hosts::host_key_fingerprint.eq(fp)))
                        .execute(c)?;
                    what.push(format!(
                        "host key {} replaced by {fp}",
                        old.host_key_fingerprint.as_deref().unwrap_or("(none)")
                    ));
                }
                diesel::update(hosts::table.find(id))
                    .set(hosts::updated_at.eq(now()))
                    .execute(c)?;
                if !what.is_empty() {
                    audit::record(
                        c,
                        &actor,
                        Change::new(
                            if key2.is_some() {
                                "host.rekey"
                            } else {
                                "host.update"
                            },
                            "host",
                            id,
                            format!("host {}: {}", old.name, what.join(", ")),
                        )
                        .details(serde_json::json!({
                            "name": name2, "description": desc2, "sample_interval_ms": interval,
                            "fingerprint": key2.as_ref().map(|k| &k.1),
                        })),
                    )?;
                }
                load_host(c, id)
            })
        })
        .await?;
    if new_key.is_some() {
        // Reconnect on the newly pinned key.
        state.hosts.spawn(row.clone());
    } else if let Some(ms) = interval {
        state.hosts.set_interval(id, ms);
    }
    if maintenance == Some(true) {
        crate::netmon::evacuate(state.clone().into_inner(), Actor::from(&principal), id);
    }
    Ok(web::Json(response(&row, &state, &all)))
}

/// The samples the controller keeps in memory for a host (up to 10 minutes), oldest first.
#[utoipa::path(tag = "hosts", params(("id" = i64, Path)), responses((status = 200, body = Vec<HostSample>), (status = 404, body = ErrorBody)))]
#[get("/hosts/{id}/samples")]
pub async fn host_samples(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> ApiResult<web::Json<Vec<HostSample>>> {
    principal.require(Role::Viewer)?;
    let id = id.into_inner();
    state.db.run(move |c| load_host(c, id)).await?;
    Ok(web::Json(state.hosts.recent(id)))
}

/// One-minute rollups of a host (average and maximum), oldest first; the minute in progress last.
#[utoipa::path(tag = "hosts", params(("id" = i64, Path), HistoryQuery), responses(
    (status = 200, body = Vec<HostRollup>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/hosts/{id}/history")]
pub async fn host_history(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
    query: web::Query<HistoryQuery>,
) -> ApiResult<web::Json<Vec<HostRollup>>> {
    principal.require(Role::Viewer)?;
    let id = id.into_inner();
    let until = query.until.unwrap_or_else(chrono::Utc::now);
    let since = query.since.unwrap_or(until - chrono::TimeDelta::hours(24));
    if since >= until {
        return Err(ApiError::invalid("since", "must be before until"));
    }
    if until - since > chrono::TimeDelta::days(366) {
        return Err(ApiError::invalid(
            "since",
            "ask for at most 366 days at a time",
        ));
    }
    let mut out: Vec<HostRollup> = state
        .db
        .run(move |c| {
            use crate::schema::host_rollups as r;
            load_host(c, id)?;
            let rows: Vec<crate::hosts::RollupRow> = r::table
                .filter(r::host_id.eq(id))
                .filter(r::minute.ge(since.naive_utc()))
                .filter(r::minute.lt(until.naive_utc()))
                .order(r::minute)
                .select(crate::hosts::RollupRow::as_select())
                .load(c)?;
            Ok(rows.iter().map(|r| r.to_rollup()).collect())
        })
        .await?;
    if let Some(cur) = state.hosts.current_rollup(id) {
        if cur.minute >= since && cur.minute < until {
            match out.last_mut() {
                Some(last) if last.minute == cur.minute => {
                    let mut b = crate::hosts::Bucket::from_rollup(&cur);
                    b.merge(&crate::hosts::Bucket::from_rollup(last));
                    *last = b.to_rollup();
                }
                _ => out.push(cur),
            }
        }
    }
    Ok(web::Json(out))
}

/// Remove a host that runs no VPS; the controller disconnects from it.
#[utoipa::path(tag = "hosts", params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/hosts/{id}")]
pub async fn delete_host(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    principal.require(Role::Operator)?;
    let id = id.into_inner();
    let actor = Actor::from(&principal);
    state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let row: HostRow = hosts::table
                    .find(id)
                    .select(HostRow::as_select())
                    .first(c)
                    .optional()?
                    .ok_or_else(|| ApiError::NotFound(format!("no host with id {id}")))?;
                let n: i64 = vpses::table
                    .filter(vpses::host_id.eq(id))
                    .count()
                    .get_result(c)?;
                if n > 0 {
                    return Err(ApiError::conflict(
                        None,
                        format!(
                            "host {} still has {n} VPS(es); move or delete them first",
                            row.name
                        ),
                    ));
                }
                diesel::delete(hosts::table.find(id)).execute(c)?;
                audit::record(
                    c,
                    &actor,
                    Change::new(
                        "host.delete",
                        "host",
                        id,
                        format!("removed host {}", row.name),
                    ),
                )?;
                Ok(())
            })
        })
        .await?;
    // The standby copies it keeps for netMON go with it.
    crate::netmon::standby::clear_host(&state, id).await;
    state.hosts.stop(id);
    Ok(HttpResponse::NoContent().finish())
}

/// netMON: take every HA VPS of this host to other hosts now (each stopped, duplicated once
/// more, brought up where there is most room).
#[utoipa::path(tag = "hosts", params(("id" = i64, Path)), responses(
    (status = 202, body = serverware_shared::api::FailoverResponse), (status = 404, body = ErrorBody)))]
#[post("/hosts/{id}/failover")]
pub async fn fail_over_host(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    principal.require(Role::Operator)?;
    let id = id.into_inner();
    let state = state.into_inner();
    state.accepting()?;
    let (_, all) = state.db.run(move |c| load_host(c, id)).await?;
    let ids = all
        .iter()
        .filter(|v| v.host_id == Some(id) && v.ha_enabled)
        .map(|v| v.id)
        .collect();
    let actor = crate::audit::Actor::from(&principal);
    let vpses = crate::netmon::request(&state, ids, &actor).await?;
    crate::netmon::record_request(&state, &actor, &vpses).await;
    Ok(HttpResponse::Accepted().json(serverware_shared::api::FailoverResponse { vpses }))
}
