//! netDUPLO's routes: a VPS's duplication, its restore points, and storage.

use crate::audit::{self, Actor, Change};
use crate::auth::Principal;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::schema::vpses;
use actix_web::{get, patch, post, web, HttpResponse};
use diesel::prelude::*;
use serverware_shared::agent::AgentRequest;
use serverware_shared::api::{
    DuploStatus, RestorePoint, RestoreVpsRequest, StorageReport, TaskResponse, UpdateDuploRequest,
};
use serverware_shared::validate;
use serverware_shared::{ErrorBody, Role};

/// A VPS's duplication now: last cycle, lag, next cycle, journal, failures, newest points.
#[utoipa::path(tag = "duplo", params(("id" = i64, Path)), responses((status = 200, body = DuploStatus), (status = 404, body = ErrorBody)))]
#[get("/vpses/{id}/duplo")]
pub async fn get_duplo(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> Result<web::Json<DuploStatus>> {
    principal.require(Role::Viewer)?;
    Ok(web::Json(
        crate::duplo::view::status(&state.into_inner(), id.into_inner()).await?,
    ))
}

/// Turns a VPS's duplication on or off (its restore points stay).
#[utoipa::path(tag = "duplo", params(("id" = i64, Path)), request_body = UpdateDuploRequest, responses((status = 200, body = DuploStatus), (status = 404, body = ErrorBody)))]
#[patch("/vpses/{id}/duplo")]
pub async fn update_duplo(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
    body: web::Json<UpdateDuploRequest>,
) -> Result<web::Json<DuploStatus>> {
    principal.require(Role::Operator)?;
    let id = id.into_inner();
    let state = state.into_inner();
    if let Some(on) = body.enabled {
        let actor = Actor::from(&principal);
        let v = state
            .db
            .run(move |c| {
                c.transaction(|c| {
                    let v = crate::vps::load(c, id)?;
                    diesel::update(vpses::table.find(id))
                        .set(vpses::duplo_enabled.eq(on))
                        .execute(c)?;
                    audit::record(
                        c,
                        &actor,
                        Change::new(
                            "vps.duplo",
                            "vps",
                            id,
                            format!(
                                "duplication of {} {}",
                                v.name,
                                if on { "on" } else { "off" }
                            ),
                        )
                        .details(serde_json::json!({ "enabled": on })),
                    )?;
                    Ok(v)
                })
            })
            .await?;
        if !on {
            // The host may stop keeping its journal; the next cycle after it is turned on
            // again compares in full.
            if let Some(conn) = v.host_id.and_then(|h| state.hosts.conn(h)) {
                let _ = conn
                    .agent
                    .call(
                        AgentRequest::DuploForget { name: v.name },
                        std::time::Duration::from_secs(10),
                    )
                    .await;
            }
        }
    }
    Ok(web::Json(crate::duplo::view::status(&state, id).await?))
}

/// Runs a cycle of the VPS now (202; the status shows it running, then its new point).
#[utoipa::path(tag = "duplo", params(("id" = i64, Path)), responses((status = 202, body = DuploStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/vpses/{id}/duplo/now")]
pub async fn duplicate_now(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    state.accepting()?;
    let id = id.into_inner();
    let state = state.into_inner();
    let v = state.db.run(move |c| crate::vps::load(c, id)).await?;
    let enabled: bool = state
        .db
        .run(move |c| {
            Ok(vpses::table
                .find(id)
                .select(vpses::duplo_enabled)
                .first(c)?)
        })
        .await?;
    if !enabled {
        return Err(Error::conflict(
            Some("enabled"),
            format!("duplication of {} is off; turn it on first", v.name),
        ));
    }
    match v.host_id {
        Some(h) if state.hosts.conn(h).is_some() => {}
        Some(_) => {
            return Err(Error::HostUnavailable(format!(
                "the host of {} is not connected",
                v.name
            )))
        }
        None => return Err(Error::conflict(None, format!("{} is on no host", v.name))),
    }
    state.duplo.request_now(id);
    Ok(HttpResponse::Accepted().json(crate::duplo::view::status(&state, id).await?))
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
    id: web::Path<i64>,
    q: web::Query<PointsQuery>,
) -> Result<web::Json<Vec<RestorePoint>>> {
    principal.require(Role::Viewer)?;
    let id = id.into_inner();
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 1000"));
    }
    // A deleted VPS's points are still listed (they stay until pruned).
    let points = crate::duplo::view::points(&state, id, limit).await?;
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
        crate::duplo::view::storage(&state.into_inner()).await?,
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
    id: web::Path<i64>,
    body: web::Json<RestoreVpsRequest>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let r = body.into_inner();
    let clone = match (&r.name, &r.ipv4) {
        (None, None) => None,
        (Some(n), Some(ip)) => Some((
            validate::resource_name("name", n)?,
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
        state.into_inner(),
        Actor::from(&principal),
        id.into_inner(),
        crate::vps::RestoreVps {
            cycle: r.cycle,
            clone,
            host_id: r.host_id,
            start: r.start,
        },
    )
    .await?;
    Ok(HttpResponse::Accepted().json(task))
}
