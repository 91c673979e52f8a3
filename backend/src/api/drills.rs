//! Failover drills (`vps/drill.rs`): one of an HA VPS, or of every HA VPS on a host (operators);
//! a VPS's drill results (viewers).

use crate::audit::Actor;
use crate::auth::Principal;
use crate::core::Core;
use crate::error::Result;
use crate::vps::drill::{self, StartedBy};
use actix_web::{get, post, web, HttpResponse};
use serverware_shared::api::{DrillResponse, HostDrillResponse, TaskResponse};
use serverware_shared::{ErrorBody, HostId, Role, VpsId};

/// How many of a VPS's drills the list shows.
const SHOWN: i64 = 50;

/// Rehearse the failover of an HA VPS: its newest restore point is brought up on another host
/// in an isolated network, checked, and removed; the live VPS keeps running. The task's result
/// gives RTO and RPO.
#[utoipa::path(tag = "duplo", params(("id" = i64, Path)), responses(
    (status = 202, body = TaskResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/vpses/{id}/drill")]
pub async fn drill_vps(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<VpsId>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let actor = Actor::from(&principal);
    let t = drill::drill(
        state.vpses.clone(),
        StartedBy::User(&actor),
        id.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Accepted().json(t))
}

/// A VPS's failover drills, newest first (at most 50).
#[utoipa::path(tag = "duplo", params(("id" = i64, Path)), responses(
    (status = 200, body = Vec<DrillResponse>), (status = 404, body = ErrorBody)))]
#[get("/vpses/{id}/drills")]
pub async fn list_drills(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<VpsId>,
) -> Result<web::Json<Vec<DrillResponse>>> {
    principal.require(Role::Viewer)?;
    Ok(web::Json(
        drill::list(&state.vpses, id.into_inner(), SHOWN).await?,
    ))
}

/// Rehearse the failover of a whole host: a drill of each of its HA VPSes, all at once.
#[utoipa::path(tag = "hosts", params(("id" = i64, Path)), responses(
    (status = 202, body = HostDrillResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/hosts/{id}/drill")]
pub async fn drill_host(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<HostId>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let actor = Actor::from(&principal);
    let (tasks, refused) = drill::drill_host(state.vpses.clone(), &actor, id.into_inner()).await?;
    Ok(HttpResponse::Accepted().json(HostDrillResponse { tasks, refused }))
}
