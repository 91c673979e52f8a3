use crate::auth::{self as authn, Principal};
use crate::core::Core;
use crate::error::Result;
use crate::models::User;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serverware_shared::api::{ChangePasswordRequest, LoginRequest, SessionResponse};
use serverware_shared::{ErrorBody, SESSION_COOKIE};

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
    crate::auth::users::logout(&state.db, &principal).await?;
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
    let user = crate::auth::users::get(&state.db, principal.user_id).await?;
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
    crate::auth::users::change_password(
        &state.db,
        &principal,
        req.current_password,
        req.new_password,
    )
    .await?;
    crate::auth::users::forget_first_password(&state.config.data_dir, &principal.username);
    Ok(HttpResponse::NoContent().finish())
}
