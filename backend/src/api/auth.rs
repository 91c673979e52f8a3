use crate::audit::{self, Actor, Change};
use crate::auth::{self as authn, AuthMethod, Principal};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::models::{now, User};
use crate::schema::{sessions, users};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use diesel::prelude::*;
use serverware_shared::api::{ChangePasswordRequest, LoginRequest, SessionResponse};
use serverware_shared::{validate, ErrorBody, SESSION_COOKIE};

pub fn session_cookie(value: String, secure: bool) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .finish()
}

fn session_response(
    user: &User,
    p_role: serverware_shared::Role,
    method: &str,
    idle: u64,
) -> SessionResponse {
    SessionResponse {
        user: user.to_response(),
        effective_role: p_role,
        auth_method: method.into(),
        idle_timeout_minutes: idle,
    }
}

/// Log in with a user name and password. Sets an HttpOnly, SameSite=Strict session cookie.
/// Repeated failures lock the account and the client address for a while (429 with Retry-After).
#[utoipa::path(tag = "auth", request_body = LoginRequest, security(()), responses(
    (status = 200, body = SessionResponse),
    (status = 400, body = ErrorBody),
    (status = 401, description = "Wrong user name or password", body = ErrorBody),
    (status = 429, description = "Too many failures; see Retry-After", body = ErrorBody),
))]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<Core>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse> {
    let LoginRequest { username, password } = body.into_inner();
    let user_agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(200).collect::<String>())
        // Only the SSH command line's sessions are recorded as its.
        .map(|s| {
            if s.starts_with(authn::SSH_SESSION_AGENT) {
                format!("web: {s}")
            } else {
                s
            }
        });
    let addr = req.peer_addr().map(|a| a.ip());
    let (user, secret) = authn::password_login(
        &state.db,
        &state.login_limiter,
        &username,
        password,
        addr,
        user_agent,
        None,
    )
    .await?;
    let body = session_response(
        &user,
        user.role(),
        "session",
        state.config.session_idle_minutes,
    );
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(secret, state.tls))
        .json(body))
}

/// End the current session (server-side) and clear the cookie.
#[utoipa::path(tag = "auth", responses((status = 204), (status = 401, body = ErrorBody)))]
#[post("/auth/logout")]
pub async fn logout(state: web::Data<Core>, principal: Principal) -> Result<HttpResponse> {
    if let AuthMethod::Session { session_id, .. } = principal.method {
        let actor = Actor::from(&principal);
        state
            .db
            .run(move |conn| {
                diesel::delete(sessions::table.find(session_id)).execute(conn)?;
                audit::record(
                    conn,
                    &actor,
                    Change::new(
                        "auth.logout",
                        "user",
                        principal.user_id,
                        format!("{} logged out", actor.name),
                    ),
                )?;
                Ok(())
            })
            .await?;
    }
    let mut gone = session_cookie(String::new(), state.tls);
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

/// Who am I: the user, the role in force and how this request was authenticated.
#[utoipa::path(tag = "auth", responses((status = 200, body = SessionResponse), (status = 401, body = ErrorBody)))]
#[get("/auth/me")]
pub async fn me(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<SessionResponse>> {
    let id = principal.user_id;
    let user: User = state
        .db
        .run(move |conn| {
            Ok(users::table
                .find(id)
                .select(User::as_select())
                .first(conn)?)
        })
        .await?;
    let method = if principal.token_name().is_some() {
        "token"
    } else {
        "session"
    };
    Ok(web::Json(session_response(
        &user,
        principal.role,
        method,
        state.config.session_idle_minutes,
    )))
}

/// Change one's own password. Ends the user's other sessions.
#[utoipa::path(tag = "auth", request_body = ChangePasswordRequest, responses(
    (status = 204), (status = 401, body = ErrorBody), (status = 403, description = "Wrong current password", body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/auth/password")]
pub async fn change_password(
    state: web::Data<Core>,
    principal: Principal,
    body: web::Json<ChangePasswordRequest>,
) -> Result<HttpResponse> {
    let req = body.into_inner();
    validate::new_password("new_password", &req.new_password)?;
    let actor = Actor::from(&principal);
    let keep_session = match principal.method {
        AuthMethod::Session { session_id, .. } => Some(session_id),
        AuthMethod::Token { .. } => None,
    };
    let uid = principal.user_id;
    let user: User = state
        .db
        .run(move |conn| {
            Ok(users::table
                .find(uid)
                .select(User::as_select())
                .first(conn)?)
        })
        .await?;
    if !authn::verify_password_off(req.current_password.clone(), user.password_hash.clone()).await?
    {
        return Err(Error::Forbidden("the current password is wrong".into()));
    }
    let hash = authn::hash_password_off(req.new_password.clone()).await?;
    state
        .db
        .run(move |conn| {
            conn.transaction(|conn| {
                diesel::update(users::table.find(uid))
                    .set((users::password_hash.eq(hash), users::updated_at.eq(now())))
                    .execute(conn)?;
                // The session that changed the password stays; every other one ends.
                diesel::delete(
                    sessions::table
                        .filter(sessions::user_id.eq(uid))
                        .filter(sessions::id.ne(keep_session.unwrap_or(-1))),
                )
                .execute(conn)?;
                audit::record(
                    conn,
                    &actor,
                    Change::new(
                        "user.password",
                        "user",
                        uid,
                        format!("{} changed their password", actor.name),
                    ),
                )?;
                Ok(())
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
