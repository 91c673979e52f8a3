//! `/api/v1/alerts`: notification targets, *Send test*, the incidents alerts were sent for and
//! the messages' delivery. Seeing targets needs an operator (a webhook's URL may carry a key of
//! its own); changing them needs an admin.

use crate::alerts;
use crate::audit::Actor;
use crate::auth::Principal;
use crate::core::Core;
use crate::error::Result;
use actix_web::{delete, get, post, put, web, HttpResponse};
use serverware_shared::alerts::{
    AlertSettings, AlertTarget, AlertTargetRequest, AlertTestResult, AlertsOverview,
};
use serverware_shared::{ErrorBody, Role};

/// Targets, incidents (open first) and the newest messages with their delivery.
#[utoipa::path(tag = "alerts", responses((status = 200, body = AlertsOverview)))]
#[get("/alerts")]
pub async fn get_alerts(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<AlertsOverview>> {
    principal.require(Role::Operator)?;
    Ok(web::Json(alerts::overview(&state.db).await?))
}

/// Add a notification target: a webhook (with the secret its messages are signed with) or an
/// SMTP server and addresses, and the rules it wants.
#[utoipa::path(tag = "alerts", request_body = AlertTargetRequest, responses(
    (status = 201, body = AlertTarget), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/alerts/targets")]
pub async fn create_alert_target(
    state: web::Data<Core>,
    principal: Principal,
    body: web::Json<AlertTargetRequest>,
) -> Result<HttpResponse> {
    principal.require(Role::Admin)?;
    state.accepting()?;
    let t =
        alerts::save_target(&state.db, Actor::from(&principal), None, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(t))
}

/// Change a target (a secret left out is kept).
#[utoipa::path(tag = "alerts", params(("id" = i64, Path)), request_body = AlertTargetRequest, responses(
    (status = 200, body = AlertTarget), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[put("/alerts/targets/{id}")]
pub async fn update_alert_target(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
    body: web::Json<AlertTargetRequest>,
) -> Result<web::Json<AlertTarget>> {
    principal.require(Role::Admin)?;
    state.accepting()?;
    let t = alerts::save_target(
        &state.db,
        Actor::from(&principal),
        Some(id.into_inner()),
        body.into_inner(),
    )
    .await?;
    Ok(web::Json(t))
}

/// Remove a target and the messages still waiting for it.
#[utoipa::path(tag = "alerts", params(("id" = i64, Path)), responses(
    (status = 204), (status = 404, body = ErrorBody)))]
#[delete("/alerts/targets/{id}")]
pub async fn delete_alert_target(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> Result<HttpResponse> {
    principal.require(Role::Admin)?;
    state.accepting()?;
    alerts::delete_target(&state.db, Actor::from(&principal), id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// *Send test*: a test message to the target now; what its receiver answered.
#[utoipa::path(tag = "alerts", params(("id" = i64, Path)), responses(
    (status = 200, body = AlertTestResult), (status = 404, body = ErrorBody)))]
#[post("/alerts/targets/{id}/test")]
pub async fn test_alert_target(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> Result<web::Json<AlertTestResult>> {
    principal.require(Role::Admin)?;
    state.accepting()?;
    let r = alerts::test_target(&state.alerts, Actor::from(&principal), id.into_inner()).await?;
    Ok(web::Json(r))
}

/// Change how old a restore point may grow before duplication counts as lagging.
#[utoipa::path(tag = "alerts", request_body = AlertSettings, responses(
    (status = 200, body = AlertsOverview), (status = 422, body = ErrorBody)))]
#[put("/alerts/settings")]
pub async fn update_alert_settings(
    state: web::Data<Core>,
    principal: Principal,
    body: web::Json<AlertSettings>,
) -> Result<web::Json<AlertsOverview>> {
    principal.require(Role::Admin)?;
    state.accepting()?;
    alerts::set_settings(&state.db, Actor::from(&principal), body.into_inner()).await?;
    Ok(web::Json(alerts::overview(&state.db).await?))
}
