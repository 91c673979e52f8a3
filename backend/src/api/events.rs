//! `/api/v1/events` (the audit trail, and the live socket on the same path) and
//! `/api/v1/settings`.

use crate::audit::{self, Actor};
use crate::auth::Principal;
use crate::core::Core;
use crate::error::Result;
use crate::settings;
use actix_web::{get, patch, web};
use serverware_shared::api::{
    EventListResponse, EventQuery, SettingsResponse, UpdateSettingsRequest,
};
use serverware_shared::{ErrorBody, Role};

/// List events, newest first, with filters; page with `before`.
///
/// The same path with `Upgrade: websocket` opens the live events socket: send
/// `{"type":"subscribe","topics":["events","inventory"]}` and receive `ServerMessage`s of those
/// topics only.
#[utoipa::path(tag = "events", params(EventQuery), responses((status = 200, body = EventListResponse), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/events")]
pub async fn list_events(
    state: web::Data<Core>,
    principal: Principal,
    query: web::Query<EventQuery>,
) -> Result<web::Json<EventListResponse>> {
    principal.require(Role::Viewer)?;
    Ok(web::Json(audit::list(&state.db, query.into_inner()).await?))
}

/// Site-wide settings.
#[utoipa::path(tag = "settings", responses((status = 200, body = SettingsResponse), (status = 401, body = ErrorBody)))]
#[get("/settings")]
pub async fn get_settings(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<SettingsResponse>> {
    principal.require(Role::Viewer)?;
    Ok(web::Json(settings::current(&state.db).await?))
}

/// Change site-wide settings (admin).
#[utoipa::path(tag = "settings", request_body = UpdateSettingsRequest, responses(
    (status = 200, body = SettingsResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/settings")]
pub async fn update_settings(
    state: web::Data<Core>,
    principal: Principal,
    body: web::Json<UpdateSettingsRequest>,
) -> Result<web::Json<SettingsResponse>> {
    principal.require(Role::Admin)?;
    let out = settings::update(&state.db, Actor::from(&principal), body.into_inner()).await?;
    Ok(web::Json(out))
}
