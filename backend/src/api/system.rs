//! `/api/v1/system`: the controller's own state, for admins.

use crate::auth::Principal;
use crate::core::Core;
use crate::error::Result;
use actix_web::{get, post, web};
use serverware_shared::api::LoopStatus;
use serverware_shared::{ErrorBody, Role};

/// The controller's background loops as its supervisor sees them, and its host connections.
#[utoipa::path(tag = "system", responses((status = 200, body = Vec<LoopStatus>), (status = 403, body = ErrorBody)))]
#[get("/system/loops")]
pub async fn list_loops(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<Vec<LoopStatus>>> {
    principal.require(Role::Admin)?;
    let mut loops = state.supervisor.status();
    let views = state.hosts.views();
    let online = views
        .values()
        .filter(|v| v.status == Some(serverware_shared::state::HostStatus::Online))
        .count();
    loops.push(LoopStatus {
        name: "host connections".into(),
        state: format!("{online} of {} online", views.len()),
        interval_ms: 0,
        runs: 0,
        failures: 0,
        last_error: None,
        last_ok_at: None,
    });
    Ok(web::Json(loops))
}

/// The site at a glance: hosts, HA VPSes protected and at risk, duplication, storage, and each
/// incident an operator should see now (worst first), with what is being done and where to act.
#[utoipa::path(tag = "system", responses((status = 200, body = serverware_shared::api::SiteHealth), (status = 401, body = ErrorBody)))]
#[get("/site")]
pub async fn site_health(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<serverware_shared::api::SiteHealth>> {
    principal.require(Role::Viewer)?;
    let health = state
        .site_reads
        .get(|| crate::site::health(&state.vpses))
        .await?;
    Ok(web::Json(health.as_ref().clone()))
}

/// The site's controllers: who is present, who leads, and the etcd members that decide it.
#[utoipa::path(tag = "system", responses((status = 200, body = serverware_shared::api::PairResponse), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[get("/pair")]
pub async fn pair(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<serverware_shared::api::PairResponse>> {
    principal.require(Role::Viewer)?;
    Ok(web::Json(
        crate::controllers::view(
            state.pair.as_deref(),
            &state.db,
            state
                .config
                .pair
                .as_ref()
                .filter(|p| p.postgres.is_some())
                .map(|p| p.postgres_key())
                .as_deref(),
            state.duplication.duplo.store.clone(),
        )
        .await?,
    ))
}

/// What a second controller needs to join the pair (`serverware pair join`): admins only.
#[utoipa::path(tag = "system", responses((status = 200, body = serverware_shared::api::PairJoinResponse), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[get("/pair/join")]
pub async fn pair_join(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<serverware_shared::api::PairJoinResponse>> {
    principal.require(Role::Admin)?;
    Ok(web::Json(
        crate::controllers::join_secrets(
            state.pair.as_deref(),
            &state.config.data_dir,
            &state.db,
            &crate::audit::Actor::from(&principal),
        )
        .await?,
    ))
}

/// A planned switch-over: running operations end, then the partner takes the site over.
#[utoipa::path(tag = "system", responses((status = 202, body = serverware_shared::api::SwitchoverResponse), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/pair/switchover")]
pub async fn switchover(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<actix_web::HttpResponse> {
    principal.require(Role::Admin)?;
    let r = crate::controllers::switch_over(
        state.pair.as_deref(),
        &state.db,
        &crate::audit::Actor::from(&principal),
    )
    .await?;
    Ok(actix_web::HttpResponse::Accepted().json(r))
}
