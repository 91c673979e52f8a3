//! `/api/v1/hosts`: the host list, adding, editing and removing hosts, their samples and
//! history, and failing their HA VPSes over. Each handler checks the caller's role and calls the
//! `hosts` domain service.

use crate::audit::Actor;
use crate::auth::Principal;
use crate::error::Result;
use crate::hosts;
use crate::hosts::HostAdmin;
use actix_web::{delete, get, patch, post, web, HttpResponse};
use serverware_shared::agent::HostSample;
use serverware_shared::api::{
    CreateHostRequest, FailoverResponse, HistoryQuery, HostListQuery, HostResponse, HostRollup,
    ProbeHostRequest, ProbeHostResponse, UpdateHostRequest,
};
use serverware_shared::{ErrorBody, Role};
use serverware_shared::{HostId, VpsId};

/// Read a host's SSH key so the operator can confirm its fingerprint before adding it.
#[utoipa::path(tag = "hosts", request_body = ProbeHostRequest, responses(
    (status = 200, body = ProbeHostResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/hosts/probe")]
pub async fn probe_host(
    principal: Principal,
    body: web::Json<ProbeHostRequest>,
) -> Result<web::Json<ProbeHostResponse>> {
    principal.require(Role::Operator)?;
    Ok(web::Json(hosts::probe(&body.address).await?))
}

/// Add a host: log in once with the given password or key on the confirmed host key, install the
/// controller's key and the agent, then keep a connection. Nothing is stored if a step fails.
#[utoipa::path(tag = "hosts", request_body = CreateHostRequest, responses(
    (status = 201, body = HostResponse), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/hosts")]
pub async fn create_host(
    state: web::Data<HostAdmin>,
    principal: Principal,
    body: web::Json<CreateHostRequest>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let host = hosts::add(&state, Actor::from(&principal), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(host))
}

/// The hosts (by name) with their status and newest sample: every one, or a page of them
/// (`limit`, `after`), filtered on the controller (`q`). `X-Total-Count` says how many match;
/// `Link` (`rel="next"`) names the next page.
#[utoipa::path(tag = "hosts", params(HostListQuery), responses((status = 200, body = Vec<HostResponse>), (status = 422, body = ErrorBody)))]
#[get("/hosts")]
pub async fn list_hosts(
    state: web::Data<HostAdmin>,
    principal: Principal,
    q: web::Query<HostListQuery>,
) -> Result<HttpResponse> {
    principal.require(Role::Viewer)?;
    let q = q.into_inner();
    let ask = q.clone();
    let (list, total, next) = hosts::page(&state.db, &state.hosts, q).await?;
    let next = next.map(|after| HostListQuery {
        after: Some(after),
        ..ask
    });
    super::paged("/hosts", &list, Some(total), next)
}

/// One host with its newest sample.
#[utoipa::path(tag = "hosts", params(("id" = i64, Path)), responses((status = 200, body = HostResponse), (status = 404, body = ErrorBody)))]
#[get("/hosts/{id}")]
pub async fn get_host(
    state: web::Data<HostAdmin>,
    principal: Principal,
    id: web::Path<HostId>,
) -> Result<web::Json<HostResponse>> {
    principal.require(Role::Viewer)?;
    Ok(web::Json(
        hosts::get(&state.db, &state.hosts, id.into_inner()).await?,
    ))
}

/// Edit a host: name, description, sampling interval; or pin its new key after it changed.
#[utoipa::path(tag = "hosts", params(("id" = i64, Path)), request_body = UpdateHostRequest, responses(
    (status = 200, body = HostResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/hosts/{id}")]
pub async fn update_host(
    state: web::Data<HostAdmin>,
    principal: Principal,
    id: web::Path<HostId>,
    body: web::Json<UpdateHostRequest>,
) -> Result<web::Json<HostResponse>> {
    principal.require(Role::Operator)?;
    let core = state.into_inner();
    let host = hosts::edit(
        &core,
        Actor::from(&principal),
        id.into_inner(),
        body.into_inner(),
    )
    .await?;
    Ok(web::Json(host))
}

/// The samples the controller keeps in memory for a host (up to 120: 2 minutes at 1 s), oldest
/// first; only the newest carries the per-VPS figures.
#[utoipa::path(tag = "hosts", params(("id" = i64, Path)), responses((status = 200, body = Vec<HostSample>), (status = 404, body = ErrorBody)))]
#[get("/hosts/{id}/samples")]
pub async fn host_samples(
    state: web::Data<HostAdmin>,
    principal: Principal,
    id: web::Path<HostId>,
) -> Result<web::Json<Vec<HostSample>>> {
    principal.require(Role::Viewer)?;
    Ok(web::Json(
        hosts::samples(&state.db, &state.hosts, id.into_inner()).await?,
    ))
}

/// One-minute rollups of a host (average and maximum), oldest first; the minute in progress last.
#[utoipa::path(tag = "hosts", params(("id" = i64, Path), HistoryQuery), responses(
    (status = 200, body = Vec<HostRollup>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/hosts/{id}/history")]
pub async fn host_history(
    state: web::Data<HostAdmin>,
    principal: Principal,
    id: web::Path<HostId>,
    query: web::Query<HistoryQuery>,
) -> Result<web::Json<Vec<HostRollup>>> {
    principal.require(Role::Viewer)?;
    let rollups = hosts::history(&state.db, &state.hosts, id.into_inner(), &query).await?;
    Ok(web::Json(rollups))
}

/// Remove a host that runs no VPS; the controller disconnects from it.
#[utoipa::path(tag = "hosts", params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/hosts/{id}")]
pub async fn delete_host(
    state: web::Data<HostAdmin>,
    principal: Principal,
    id: web::Path<HostId>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    hosts::remove(&state, Actor::from(&principal), id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// netMON: take every HA VPS of this host to other hosts now (each stopped, duplicated once
/// more, brought up where there is most room).
#[utoipa::path(tag = "hosts", params(("id" = i64, Path)), responses(
    (status = 202, body = serverware_shared::api::FailoverResponse), (status = 404, body = ErrorBody)))]
#[post("/hosts/{id}/failover")]
pub async fn fail_over_host(
    state: web::Data<HostAdmin>,
    principal: Principal,
    id: web::Path<HostId>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let core = state.into_inner();
    let vpses = hosts::fail_over(&core, Actor::from(&principal), id.into_inner()).await?;
    Ok(HttpResponse::Accepted().json(FailoverResponse {
        vpses: vpses.into_iter().map(VpsId::get).collect(),
    }))
}
