//! `/api/v1/backups`: the controller's own backups (admins): the list with its schedule, and one
//! made now.

use crate::audit::Actor;
use crate::auth::Principal;
use crate::core::Core;
use crate::error::Result;
use actix_web::{get, post, web, HttpResponse};
use serverware_shared::api::{BackupInfo, BackupList};
use serverware_shared::{ErrorBody, Role};

/// The backups, newest first, where they are and their schedule.
#[utoipa::path(tag = "system", responses((status = 200, body = BackupList), (status = 403, body = ErrorBody)))]
#[get("/backups")]
pub async fn list_backups(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<BackupList>> {
    principal.require(Role::Admin)?;
    Ok(web::Json(crate::backup::listing(&state.config).await))
}

/// Back the controller up now (the oldest past the kept number are removed).
#[utoipa::path(tag = "system", responses((status = 201, body = BackupInfo), (status = 403, body = ErrorBody)))]
#[post("/backups")]
pub async fn create_backup(state: web::Data<Core>, principal: Principal) -> Result<HttpResponse> {
    principal.require(Role::Admin)?;
    state.accepting()?;
    let b = crate::backup::now(&state.config, &state.db, Actor::from(&principal)).await?;
    Ok(HttpResponse::Created().json(b))
}
