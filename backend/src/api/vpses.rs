//! `/api/v1/vpses`: VPSes and their operations. Every operation answers with its Task (202);
//! the work runs in the background and shows on the `tasks` topic.

use crate::audit::Actor;
use crate::auth::Principal;
use crate::error::Result;
use crate::netmon::Monitor;
use crate::vps;
use crate::vps::Vpses;
use actix_web::{delete, get, patch, post, web, HttpResponse};
use serverware_shared::api::{
    CopyVpsRequest, CreateVpsRequest, MoveVpsRequest, StopVpsRequest, TaskResponse,
    UpdateVpsRequest, UpdateVpsResponse, VpsListQuery, VpsResponse,
};
use serverware_shared::{validate, ErrorBody, Role};
use serverware_shared::{HostId, VpsId};

async fn one(state: &Vpses, id: VpsId) -> Result<VpsResponse> {
    vps::get(state, id).await
}

/// The VPSes, with what their hosts report now: every one, or a page of them (`limit`, and
/// `after` a name or `offset` rows in), filtered (`q`, `host_id`, `name`) and ordered (`sort`,
/// `desc`) on the controller. `X-Total-Count` says how many
/// match; `Link` (`rel="next"`) names the next page.
#[utoipa::path(tag = "vpses", params(VpsListQuery), responses((status = 200, body = Vec<VpsResponse>), (status = 422, body = ErrorBody)))]
#[get("/vpses")]
pub async fn list_vpses(
    state: web::Data<Vpses>,
    principal: Principal,
    q: web::Query<VpsListQuery>,
) -> Result<HttpResponse> {
    principal.require(Role::Viewer)?;
    let q = q.into_inner();
    let ask = q.clone();
    let (list, total, next) = vps::page(&state, q).await?;
    let next = next.map(|n| match n {
        vps::Next::After(name) => VpsListQuery {
            after: Some(name),
            ..ask
        },
        vps::Next::Offset(at) => VpsListQuery {
            offset: Some(at as u32),
            ..ask
        },
    });
    super::paged("/vpses", &list, Some(total), next)
}

#[utoipa::path(tag = "vpses", params(("id" = i64, Path)), responses((status = 200, body = VpsResponse), (status = 404, body = ErrorBody)))]
#[get("/vpses/{id}")]
pub async fn get_vps(
    state: web::Data<Vpses>,
    principal: Principal,
    id: web::Path<VpsId>,
) -> Result<web::Json<VpsResponse>> {
    principal.require(Role::Viewer)?;
    Ok(web::Json(one(&state, id.into_inner()).await?))
}

fn accepted(t: TaskResponse) -> HttpResponse {
    HttpResponse::Accepted().json(t)
}

/// Create a VPS from a template on a host, or where the most capacity is left.
#[utoipa::path(tag = "vpses", request_body = CreateVpsRequest, responses(
    (status = 202, body = TaskResponse), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/vpses")]
pub async fn create_vps(
    state: web::Data<Vpses>,
    principal: Principal,
    body: web::Json<CreateVpsRequest>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let r = body.into_inner();
    let name = validate::vps_name("name", &r.name)?;
    let description = validate::description("description", &r.description)?;
    let ipv4 = validate::ipv4_address("ipv4", &r.ipv4)?.to_string();
    let hostname = validate::hostname("hostname", r.hostname.as_deref().unwrap_or(&name))?;
    let memory = validate::memory_limit("memory_limit_bytes", r.memory_limit_bytes)?;
    let shares = r
        .cpu_shares
        .map(|v| validate::cpu_shares("cpu_shares", v))
        .transpose()?;
    let limit = r
        .cpu_limit_millis
        .map(|v| validate::cpu_limit_millis("cpu_limit_millis", v))
        .transpose()?;
    let task = vps::create(
        state.into_inner(),
        Actor::from(&principal),
        vps::CreateVps {
            name,
            description,
            template_id: r.template_id,
            host_id: r.host_id.map(HostId),
            ipv4,
            hostname,
            memory_limit_bytes: memory,
            cpu_shares: shares,
            cpu_limit_millis: limit,
            disk_limit_bytes: r.disk_limit_bytes.filter(|d| *d > 0),
            autostart: r.autostart.unwrap_or(true),
            start: r.start,
            privileged: r.privileged,
            ha_enabled: r.ha_enabled,
            ha_priority: validate::ha_priority("ha_priority", r.ha_priority)?,
            check_ports: validate::check_ports("check_ports", &r.check_ports)?,
        },
    )
    .await?;
    Ok(accepted(task))
}

/// Change description, address, host name, limits or autostart. Limits apply to a running VPS
/// at once; an address or host name at its next start (`restart_required`).
#[utoipa::path(tag = "vpses", params(("id" = i64, Path)), request_body = UpdateVpsRequest, responses(
    (status = 200, body = UpdateVpsResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/vpses/{id}")]
pub async fn update_vps(
    state: web::Data<Vpses>,
    principal: Principal,
    id: web::Path<VpsId>,
    body: web::Json<UpdateVpsRequest>,
) -> Result<web::Json<UpdateVpsResponse>> {
    principal.require(Role::Operator)?;
    let r = body.into_inner();
    let e = vps::EditVps {
        description: r
            .description
            .as_deref()
            .map(|d| validate::description("description", d))
            .transpose()?,
        ipv4: r
            .ipv4
            .as_deref()
            .map(|i| validate::ipv4_address("ipv4", i).map(|a| a.to_string()))
            .transpose()?,
        hostname: r
            .hostname
            .as_deref()
            .map(|h| validate::hostname("hostname", h))
            .transpose()?,
        memory_limit_bytes: r
            .memory_limit_bytes
            .map(|m| validate::memory_limit("memory_limit_bytes", m))
            .transpose()?,
        cpu_shares: r
            .cpu_shares
            .map(|v| match v {
                0 => Ok(None),
                v => validate::cpu_shares("cpu_shares", v).map(Some),
            })
            .transpose()?,
        cpu_limit_millis: r
            .cpu_limit_millis
            .map(|v| match v {
                0 => Ok(None),
                v => validate::cpu_limit_millis("cpu_limit_millis", v).map(Some),
            })
            .transpose()?,
        autostart: r.autostart,
        ha_enabled: r.ha_enabled,
        ha_priority: r
            .ha_priority
            .map(|p| validate::ha_priority("ha_priority", p))
            .transpose()?,
        check_ports: r
            .check_ports
            .as_deref()
            .map(|p| validate::check_ports("check_ports", p))
            .transpose()?,
    };
    let id = id.into_inner();
    let state = state.into_inner();
    let (_, restart_required, task) =
        vps::edit(state.clone(), Actor::from(&principal), id, e).await?;
    Ok(web::Json(UpdateVpsResponse {
        vps: one(&state, id).await?,
        restart_required,
        task,
    }))
}

#[utoipa::path(tag = "vpses", params(("id" = i64, Path)), responses(
    (status = 202, body = TaskResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/vpses/{id}/start")]
pub async fn start_vps(
    state: web::Data<Vpses>,
    principal: Principal,
    id: web::Path<VpsId>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    Ok(accepted(
        vps::start(state.into_inner(), Actor::from(&principal), id.into_inner()).await?,
    ))
}

fn stop_timeout(body: Option<web::Json<StopVpsRequest>>) -> Result<u32> {
    match body.and_then(|b| b.into_inner().timeout_secs) {
        None => Ok(vps::DEFAULT_STOP_TIMEOUT),
        Some(t) => Ok(validate::stop_timeout_secs("timeout_secs", t)?),
    }
}

/// Stop cleanly; after `timeout_secs` (default 30) by force.
#[utoipa::path(tag = "vpses", params(("id" = i64, Path)), request_body(content = Option<StopVpsRequest>), responses(
    (status = 202, body = TaskResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/vpses/{id}/stop")]
pub async fn stop_vps(
    state: web::Data<Vpses>,
    principal: Principal,
    id: web::Path<VpsId>,
    body: Option<web::Json<StopVpsRequest>>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let t = stop_timeout(body)?;
    Ok(accepted(
        vps::stop(
            state.into_inner(),
            Actor::from(&principal),
            id.into_inner(),
            t,
            false,
        )
        .await?,
    ))
}

#[utoipa::path(tag = "vpses", params(("id" = i64, Path)), request_body(content = Option<StopVpsRequest>), responses(
    (status = 202, body = TaskResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/vpses/{id}/restart")]
pub async fn restart_vps(
    state: web::Data<Vpses>,
    principal: Principal,
    id: web::Path<VpsId>,
    body: Option<web::Json<StopVpsRequest>>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let t = stop_timeout(body)?;
    Ok(accepted(
        vps::stop(
            state.into_inner(),
            Actor::from(&principal),
            id.into_inner(),
            t,
            true,
        )
        .await?,
    ))
}

/// Delete a VPS and its container (a running one is stopped first).
#[utoipa::path(tag = "vpses", params(("id" = i64, Path)), responses(
    (status = 202, body = TaskResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/vpses/{id}")]
pub async fn delete_vps(
    state: web::Data<Vpses>,
    principal: Principal,
    id: web::Path<VpsId>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    Ok(accepted(
        vps::delete(state.into_inner(), Actor::from(&principal), id.into_inner()).await?,
    ))
}

/// Clone a VPS under a new name and address, on the same or another host.
#[utoipa::path(tag = "vpses", params(("id" = i64, Path)), request_body = CopyVpsRequest, responses(
    (status = 202, body = TaskResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/vpses/{id}/copy")]
pub async fn copy_vps(
    state: web::Data<Vpses>,
    principal: Principal,
    id: web::Path<VpsId>,
    body: web::Json<CopyVpsRequest>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let r = body.into_inner();
    let name = validate::vps_name("name", &r.name)?;
    let ipv4 = validate::ipv4_address("ipv4", &r.ipv4)?.to_string();
    Ok(accepted(
        vps::copy(
            state.into_inner(),
            Actor::from(&principal),
            id.into_inner(),
            name,
            ipv4,
            r.host_id.map(HostId),
            r.start,
        )
        .await?,
    ))
}

/// Move a VPS to another host: stop, transfer its root filesystem and configuration, start.
#[utoipa::path(tag = "vpses", params(("id" = i64, Path)), request_body = MoveVpsRequest, responses(
    (status = 202, body = TaskResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/vpses/{id}/move")]
pub async fn move_vps(
    state: web::Data<Vpses>,
    principal: Principal,
    id: web::Path<VpsId>,
    body: web::Json<MoveVpsRequest>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    Ok(accepted(
        vps::move_to(
            state.into_inner(),
            Actor::from(&principal),
            id.into_inner(),
            HostId(body.host_id),
        )
        .await?,
    ))
}

/// netMON: take this HA VPS to another host now (stopped, duplicated once more, brought up on
/// the host with the most room from that point). 409 unless it is HA and should run.
#[utoipa::path(tag = "vpses", params(("id" = i64, Path)), responses(
    (status = 202, body = serverware_shared::api::FailoverResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/vpses/{id}/failover")]
pub async fn fail_over_vps(
    monitor: web::Data<Monitor>,
    principal: Principal,
    id: web::Path<VpsId>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let actor = crate::audit::Actor::from(&principal);
    let vpses =
        crate::netmon::fail_over_vps(&monitor.into_inner(), &actor, id.into_inner()).await?;
    Ok(
        HttpResponse::Accepted().json(serverware_shared::api::FailoverResponse {
            vpses: vpses.into_iter().map(VpsId::get).collect(),
        }),
    )
}
