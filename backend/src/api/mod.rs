//! The REST API under `/api/v1`. Handlers are registered through utoipa-actix-web, so the OpenAPI
//! document at `/api/v1/openapi.json` lists exactly the routes that exist.

mod alerts;
pub(crate) mod auth;
mod backups;
pub mod console;
pub mod cors;
pub mod dashboard;
mod drills;
mod duplo;
pub mod error;
pub(crate) mod events;
pub mod guard;
mod hosts;
pub mod metrics;
pub mod provision;
pub(crate) mod ssh_keys;
pub mod standby;
mod system;
mod tasks;
mod templates;
mod tokens;
mod users;
mod vpses;
pub mod ws;

use crate::core::Core;
use crate::error::{Error, Result};
use actix_web::{get, web, HttpResponse};
use serverware_shared::api::HealthResponse;
use serverware_shared::ErrorBody;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa_actix_web::service_config::ServiceConfig;

pub use self::auth::session_cookie;

/// A list's answer: `list` as JSON, `X-Total-Count: total` when counted, and when there is a
/// next page, a `Link` to `path` with `next` as its query (`rel="next"`).
pub(crate) fn paged<T: serde::Serialize, Q: serde::Serialize>(
    path: &str,
    list: &[T],
    total: Option<usize>,
    next: Option<Q>,
) -> crate::error::Result<actix_web::HttpResponse> {
    let mut r = actix_web::HttpResponse::Ok();
    if let Some(total) = total {
        r.insert_header(("X-Total-Count", total.to_string()));
    }
    if let Some(next) = next {
        let query = serde_urlencoded::to_string(&next)
            .map_err(|e| crate::error::Error::Internal(e.into()))?;
        r.insert_header(("Link", format!("</api/v1{path}?{query}>; rel=\"next\"")));
    }
    Ok(r.json(list))
}

/// Every `/api/v1` route; used both to serve and to describe the API.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(health)
        .service(openapi_json)
        .service(auth::login)
        .service(auth::logout)
        .service(auth::me)
        .service(auth::change_password)
        .service(users::list_users)
        .service(users::create_user)
        .service(users::get_user)
        .service(users::update_user)
        .service(users::delete_user)
        .service(tokens::list_tokens)
        .service(tokens::create_token)
        .service(tokens::revoke_token)
        .service(ssh_keys::list_ssh_keys)
        .service(ssh_keys::add_ssh_key)
        .service(ssh_keys::delete_ssh_key)
        .service(events::list_events)
        .service(events::get_settings)
        .service(events::update_settings)
        .service(hosts::probe_host)
        .service(hosts::create_host)
        .service(hosts::list_hosts)
        .service(hosts::fail_over_host)
        .service(hosts::get_host)
        .service(hosts::update_host)
        .service(hosts::host_samples)
        .service(hosts::host_history)
        .service(hosts::delete_host)
        .service(backups::list_backups)
        .service(backups::create_backup)
        .service(alerts::get_alerts)
        .service(alerts::create_alert_target)
        .service(alerts::update_alert_target)
        .service(alerts::delete_alert_target)
        .service(alerts::test_alert_target)
        .service(alerts::update_alert_settings)
        .service(provision::get_provision)
        .service(provision::update_provision_settings)
        .service(provision::add_machine)
        .service(provision::approve_machine)
        .service(provision::reimage_machine)
        .service(provision::forget_machine)
        .service(templates::list_templates)
        .service(templates::upload_template)
        .service(templates::build_debian)
        .service(templates::delete_template)
        .service(vpses::list_vpses)
        .service(vpses::create_vps)
        .service(vpses::get_vps)
        .service(vpses::update_vps)
        .service(vpses::delete_vps)
        .service(vpses::start_vps)
        .service(vpses::stop_vps)
        .service(vpses::restart_vps)
        .service(vpses::fail_over_vps)
        .service(vpses::copy_vps)
        .service(vpses::move_vps)
        .service(duplo::get_duplo)
        .service(duplo::update_duplo)
        .service(duplo::duplicate_now)
        .service(duplo::list_points)
        .service(duplo::get_storage)
        .service(duplo::restore_vps)
        .service(drills::drill_vps)
        .service(drills::list_drills)
        .service(drills::drill_host)
        .service(system::list_loops)
        .service(system::site_health)
        .service(system::pair)
        .service(system::switchover)
        .service(system::pair_join)
        .service(tasks::list_tasks)
        .service(tasks::get_task);
}

/// The OpenAPI document of the API, built from the handlers' annotations.
pub fn openapi() -> OpenApi {
    let (_, mut api) = actix_web::App::new()
        .into_utoipa_app()
        .service(utoipa_actix_web::scope("/api/v1").configure(configure))
        .split_for_parts();
    api.info.title = "SERVERware controller API".into();
    api.info.version = serverware_shared::BUILD.into();
    api.info.description = Some(
        "Every route except health and login needs a session cookie (from login) or an API token \
         sent as `Authorization: Bearer <token>`. Errors have one shape: ErrorBody."
            .into(),
    );
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
            serverware_shared::SESSION_COOKIE,
        ))),
    );
    components.add_security_scheme(
        "token",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components
        .schemas
        .entry("ErrorBody".into())
        .or_insert_with(<ErrorBody as utoipa::PartialSchema>::schema);
    api
}

use utoipa_actix_web::AppExt;

/// The OpenAPI document, computed once at start.
pub struct OpenApiDoc(pub String);

/// Is the controller up? The only route besides login that needs no authentication.
#[utoipa::path(tag = "system", responses((status = 200, body = HealthResponse), (status = 503, body = ErrorBody)), security(()))]
#[get("/health")]
async fn health(state: web::Data<Core>) -> Result<web::Json<HealthResponse>> {
    state.db.ping().await?;
    Ok(web::Json(HealthResponse {
        status: "ok".into(),
        version: serverware_shared::BUILD.into(),
        database: state.db.kind().into(),
        pair: state.pair.as_ref().map(|l| l.status()),
    }))
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(tag = "system", responses((status = 200, description = "OpenAPI document", content_type = "application/json"), (status = 401, body = ErrorBody)))]
#[get("/openapi.json")]
async fn openapi_json(doc: web::Data<OpenApiDoc>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}

/// JSON answers for routes that do not exist.
pub async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&Error::NotFound("no such route".into()))
}

pub fn extractor_configs(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(1 << 20)
            .error_handler(|e, _| self::error::json_error(e).into()),
    )
    .app_data(web::QueryConfig::default().error_handler(|e, _| self::error::query_error(e).into()))
    .app_data(web::PathConfig::default().error_handler(|e, _| self::error::path_error(e).into()));
}
