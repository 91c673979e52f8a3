//! netDUPLO's routes: a VPS's duplication, its restore points, and storage.

use crate::audit::Actor;
use crate::auth::Principal;
use crate::core::Core;
use crate::error::{Error, Result};
use actix_web::{get, patch, post, web, HttpResponse};
use serverware_shared::api::{
    DuploStatus, RestorePoint, RestoreVpsRequest, StorageReport, TaskResponse, UpdateDuploRequest,
};
use serverware_shared::validate;
use serverware_shared::{ErrorBody, Role};
use serverware_shared::{HostId, VpsId};

/// A VPS's duplication now: last cycle, lag, next cycle, journal, failures, newest points.
#[utoipa::path(tag = "duplo", params(("id" = i64, Path)), responses((status = 200, body = DuploStatus), (status = 404, body = ErrorBody)))]
#[get("/vpses/{id}/duplo")]
pub async fn get_duplo(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<VpsId>,
) -> Result<web::Json<DuploStatus>> {
    principal.require(Role::Viewer)?;
    Ok(web::Json(
        crate::duplo::view::status(&state.duplication, id.into_inner()).await?,
    ))
}

/// Turns a VPS's duplication on or off (its restore points stay).
#[utoipa::path(tag = "duplo", params(("id" = i64, Path)), request_body = UpdateDuploRequest, responses((status = 200, body = DuploStatus), (status = 404, body = ErrorBody)))]
#[patch("/vpses/{id}/duplo")]
pub async fn update_duplo(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<VpsId>,
    body: web::Json<UpdateDuploRequest>,
) -> Result<web::Json<DuploStatus>> {
    principal.require(Role::Operator)?;
    let id = id.into_inner();
    if let Some(on) = body.enabled {
        crate::duplo::admin::set_enabled(&state.duplication, Actor::from(&principal), id, on)
            .await?;
    }
    Ok(web::Json(
        crate::duplo::view::status(&state.duplication, id).await?,
    ))
}

/// Runs a cycle of the VPS now (202; the status shows it running, then its new point).
#[utoipa::path(tag = "duplo", params(("id" = i64, Path)), responses((status = 202, body = DuploStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/vpses/{id}/duplo/now")]
pub async fn duplicate_now(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<VpsId>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let id = id.into_inner();
    crate::duplo::admin::request_now(&state.duplication, id).await?;
    Ok(HttpResponse::Accepted().json(crate::duplo::view::status(&state.duplication, id).await?))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
pub struct PointsQuery {
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// A VPS's restore points, newest first.
#[utoipa::path(tag = "duplo", params(("id" = i64, Path), PointsQuery), responses((status = 200, body = Vec<RestorePoint>), (status = 404, body = ErrorBody)))]
#[get("/vpses/{id}/points")]
pub async fn list_points(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<VpsId>,
    q: web::Query<PointsQuery>,
) -> Result<web::Json<Vec<RestorePoint>>> {
    principal.require(Role::Viewer)?;
    let id = id.into_inner();
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 1000"));
    }
    // A deleted VPS's points are still listed (they stay until pruned).
    let points = crate::duplo::view::points(&state.duplication, id, limit).await?;
    if points.is_empty() {
        state.db.run(move |c| crate::vps::load(c, id)).await?;
    }
    Ok(web::Json(points))
}

/// netDUPLO's storage: use per VPS, chunks shared, what the last collection freed and what
/// the next one reclaims, and the retention policy.
#[utoipa::path(tag = "duplo", responses((status = 200, body = StorageReport)))]
#[get("/storage")]
pub async fn get_storage(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<StorageReport>> {
    principal.require(Role::Viewer)?;
    Ok(web::Json(
        crate::duplo::view::storage(&state.duplication).await?,
    ))
}

/// Restores a VPS from one of its restore points: in place (the VPS is stopped, its files
/// replaced; only what its host lacks travels) or, with `name` and `ipv4`, as a new VPS.
#[utoipa::path(tag = "duplo", params(("id" = i64, Path)), request_body = RestoreVpsRequest, responses(
    (status = 202, body = TaskResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/vpses/{id}/restore")]
pub async fn restore_vps(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<VpsId>,
    body: web::Json<RestoreVpsRequest>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let r = body.into_inner();
    let clone = match (&r.name, &r.ipv4) {
        (None, None) => None,
        (Some(n), Some(ip)) => Some((
            validate::vps_name("name", n)?,
            validate::ipv4_address("ipv4", ip)?.to_string(),
        )),
        (Some(_), None) => {
            return Err(Error::invalid(
                "ipv4",
                "a VPS made from a restore point needs its own address",
            ))
        }
        (None, Some(_)) => {
            return Err(Error::invalid(
                "name",
                "a VPS made from a restore point needs its own name",
            ))
        }
    };
    let task = crate::vps::restore(
        state.vpses.clone(),
        Actor::from(&principal),
        id.into_inner(),
        crate::vps::RestoreVps {
            cycle: r.cycle,
            clone,
            host_id: r.host_id.map(HostId),
            start: r.start,
        },
    )
    .await?;
    Ok(HttpResponse::Accepted().json(task))
}
