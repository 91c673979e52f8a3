use crate::audit::Actor;
use crate::auth::{users, Principal};
use crate::core::Core;
use crate::error::Result;
use crate::models::User;
use actix_web::{delete, get, patch, post, web, HttpResponse};
use serverware_shared::api::{CreateUserRequest, UpdateUserRequest, UserResponse};
use serverware_shared::{ErrorBody, Role};

/// List users (any role may read; no secrets are shown).
#[utoipa::path(tag = "users", responses((status = 200, body = Vec<UserResponse>), (status = 401, body = ErrorBody)))]
#[get("/users")]
pub async fn list_users(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<Vec<UserResponse>>> {
    principal.require(Role::Viewer)?;
    let list = users::list(&state.db).await?;
    Ok(web::Json(list.iter().map(User::to_response).collect()))
}

/// One user.
#[utoipa::path(tag = "users", params(("id" = i64, Path)), responses((status = 200, body = UserResponse), (status = 404, body = ErrorBody)))]
#[get("/users/{id}")]
pub async fn get_user(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> Result<web::Json<UserResponse>> {
    principal.require(Role::Viewer)?;
    let user = users::get(&state.db, id.into_inner()).await?;
    Ok(web::Json(user.to_response()))
}

/// Create a user (admin).
#[utoipa::path(tag = "users", request_body = CreateUserRequest, responses(
    (status = 201, body = UserResponse), (status = 403, body = ErrorBody), (status = 409, description = "The user name is taken", body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/users")]
pub async fn create_user(
    state: web::Data<Core>,
    principal: Principal,
    body: web::Json<CreateUserRequest>,
) -> Result<HttpResponse> {
    principal.require(Role::Admin)?;
    let user = users::create(&state.db, Actor::from(&principal), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(user.to_response()))
}

/// Change a user's role, password or disabled flag (admin). A new password or disabling ends the
/// user's sessions. The last active admin cannot be demoted or disabled.
#[utoipa::path(tag = "users", params(("id" = i64, Path)), request_body = UpdateUserRequest, responses(
    (status = 200, body = UserResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/users/{id}")]
pub async fn update_user(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
    body: web::Json<UpdateUserRequest>,
) -> Result<web::Json<UserResponse>> {
    principal.require(Role::Admin)?;
    let actor = Actor::from(&principal);
    let user = users::update(&state.db, actor, id.into_inner(), body.into_inner()).await?;
    Ok(web::Json(user.to_response()))
}

/// Delete a user with their sessions and tokens (admin). Nobody can delete themselves, and the
/// last active admin stays.
#[utoipa::path(tag = "users", params(("id" = i64, Path)), responses(
    (status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/users/{id}")]
pub async fn delete_user(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> Result<HttpResponse> {
    principal.require(Role::Admin)?;
    users::delete(&state.db, &principal, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
