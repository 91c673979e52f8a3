use crate::audit::{self, Actor, Change};
use crate::auth::{self as authn, Principal};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::models::{now, NewUser, User};
use crate::schema::{sessions, users};
use actix_web::{delete, get, patch, post, web, HttpResponse};
use diesel::prelude::*;
use serverware_shared::api::{CreateUserRequest, UpdateUserRequest, UserResponse};
use serverware_shared::{validate, ErrorBody, Role};

/// List users (any role may read; no secrets are shown).
#[utoipa::path(tag = "users", responses((status = 200, body = Vec<UserResponse>), (status = 401, body = ErrorBody)))]
#[get("/users")]
pub async fn list_users(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<Vec<UserResponse>>> {
    principal.require(Role::Viewer)?;
    let list: Vec<User> = state
        .db
        .run(|conn| {
            Ok(users::table
                .order(users::username)
                .select(User::as_select())
                .load(conn)?)
        })
        .await?;
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
    let id = id.into_inner();
    let user = state.db.run(move |conn| find(conn, id)).await?;
    Ok(web::Json(user.to_response()))
}

fn find(conn: &mut crate::db::DbConn, id: i64) -> Result<User> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no user with id {id}")))
}

/// Admins still able to log in, other than `except`.
fn other_active_admins(conn: &mut crate::db::DbConn, except: i64) -> Result<i64> {
    Ok(users::table
        .filter(users::role.eq(Role::Admin.as_str()))
        .filter(users::disabled.eq(false))
        .filter(users::id.ne(except))
        .count()
        .get_result(conn)?)
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
    let req = body.into_inner();
    let username = validate::username("username", &req.username)?;
    validate::new_password("password", &req.password)?;
    let actor = Actor::from(&principal);
    let hash = authn::hash_password_off(req.password.clone()).await?;
    let user = state
        .db
        .run(move |conn| {
            conn.transaction(|conn| {
                let taken: i64 = users::table
                    .filter(users::username.eq(&username))
                    .count()
                    .get_result(conn)?;
                if taken > 0 {
                    return Err(Error::conflict(
                        Some("username"),
                        format!("the user name '{username}' is taken"),
                    ));
                }
                let t = now();
                diesel::insert_into(users::table)
                    .values(NewUser {
                        username: &username,
                        password_hash: &hash,
                        role: req.role.as_str(),
                        disabled: false,
                        created_at: t,
                        updated_at: t,
                    })
                    .execute(conn)
                    .map_err(|e| match Error::from(e) {
                        Error::Conflict { .. } => Error::conflict(
                            Some("username"),
                            format!("the user name '{username}' is taken"),
                        ),
                        other => other,
                    })?;
                let user: User = users::table
                    .filter(users::username.eq(&username))
                    .select(User::as_select())
                    .first(conn)?;
                audit::record(
                    conn,
                    &actor,
                    Change::new(
                        "user.create",
                        "user",
                        user.id,
                        format!("created user {} ({})", user.username, user.role),
                    )
                    .details(serde_json::json!({ "username": user.username, "role": user.role })),
                )?;
                Ok(user)
            })
        })
        .await?;
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
    let id = id.into_inner();
    let req = body.into_inner();
    if let Some(p) = &req.password {
        validate::new_password("password", p)?;
    }
    let actor = Actor::from(&principal);
    let hash = match req.password.clone() {
        Some(p) => Some(authn::hash_password_off(p).await?),
        None => None,
    };
    let user = state
        .db
        .run(move |conn| {
            conn.transaction(|conn| {
                let user = find(conn, id)?;
                let loses_admin = user.role() == Role::Admin
                    && !user.disabled
                    && (req.role.is_some_and(|r| r != Role::Admin) || req.disabled == Some(true));
                if loses_admin && other_active_admins(conn, id)? == 0 {
                    return Err(Error::conflict(
                        Some(if req.disabled == Some(true) {
                            "disabled"
                        } else {
                            "role"
                        }),
                        "this is the last active admin: make another user admin first",
                    ));
                }
                let t = now();
                let mut changed = Vec::new();
                if let Some(role) = req.role {
                    diesel::update(users::table.find(id))
                        .set(users::role.eq(role.as_str()))
                        .execute(conn)?;
                    changed.push("role");
                }
                if let Some(disabled) = req.disabled {
                    diesel::update(users::table.find(id))
                        .set(users::disabled.eq(disabled))
                        .execute(conn)?;
                    changed.push("disabled");
                }
                if let Some(hash) = &hash {
                    diesel::update(users::table.find(id))
                        .set(users::password_hash.eq(hash))
                        .execute(conn)?;
                    changed.push("password");
                }
                if hash.is_some() || req.disabled == Some(true) {
                    diesel::delete(sessions::table.filter(sessions::user_id.eq(id)))
                        .execute(conn)?;
                }
                diesel::update(users::table.find(id))
                    .set(users::updated_at.eq(t))
                    .execute(conn)?;
                let updated = find(conn, id)?;
                audit::record(
                    conn,
                    &actor,
                    Change::new(
                        "user.update",
                        "user",
                        id,
                        format!("updated user {} ({})", updated.username, changed.join(", ")),
                    )
                    .details(serde_json::json!({
                        "changed": changed,
                        "role": updated.role,
                        "disabled": updated.disabled,
                    })),
                )?;
                Ok(updated)
            })
        })
        .await?;
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
    let id = id.into_inner();
    if id == principal.user_id {
        return Err(Error::conflict(None, "you cannot delete your own account"));
    }
    let actor = Actor::from(&principal);
    state
        .db
        .run(move |conn| {
            conn.transaction(|conn| {
                let user = find(conn, id)?;
                if user.role() == Role::Admin
                    && !user.disabled
                    && other_active_admins(conn, id)? == 0
                {
                    return Err(Error::conflict(None, "this is the last active admin"));
                }
                // Foreign keys cascade on both databases; delete explicitly anyway so an SQLite
                // connection opened without the pragma cannot leave orphans.
                diesel::delete(
                    crate::schema::api_tokens::table
                        .filter(crate::schema::api_tokens::user_id.eq(id)),
                )
                .execute(conn)?;
                diesel::delete(sessions::table.filter(sessions::user_id.eq(id))).execute(conn)?;
                diesel::delete(users::table.find(id)).execute(conn)?;
                audit::record(
                    conn,
                    &actor,
                    Change::new(
                        "user.delete",
                        "user",
                        id,
                        format!("deleted user {}", user.username),
                    )
                    .details(serde_json::json!({ "username": user.username })),
                )?;
                Ok(())
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
