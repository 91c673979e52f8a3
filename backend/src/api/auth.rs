use crate::audit::{self, Actor, Change};
use crate::auth::{self as authn, AuthMethod, Principal};
use crate::core::Core;
use crate::error::{ApiError, ApiResult};
use crate::models::{now, NewSession, User};
use crate::schema::{sessions, users};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use diesel::prelude::*;
use serverware_shared::api::{ChangePasswordRequest, LoginRequest, SessionResponse, Severity};
use serverware_shared::{validate, ErrorBody, SESSION_COOKIE};
use std::time::Instant;

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
) -> ApiResult<HttpResponse> {
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
    let (user, secret) =
        password_login(&state, &username, password, addr, user_agent, None).await?;
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

/// A login by password, for the dashboard and the SSH command line (`via`): checked against
/// the login limiter, audited, and on success a new session (its secret returned).
pub async fn password_login(
    state: &Core,
    username: &str,
    password: String,
    addr: Option<std::net::IpAddr>,
    user_agent: Option<String>,
    via: Option<&'static str>,
) -> ApiResult<(User, String)> {
    // Only a name that could be a user's is looked up; any other is kept, in the limiter and
    // the failed-login event, as a short escaped prefix: what a client sends is never stored
    // whole.
    let normal = username.trim().to_lowercase();
    let plausible = validate::username("username", &normal).is_ok();
    let account = if plausible {
        normal
    } else {
        shown_name(username)
    };
    if let Err(wait) = state.login_limiter.check(&account, addr, Instant::now()) {
        // Every attempt is on record, refused ones too.
        locked_out(state, &account, addr, via, wait).await?;
        // A locked client waits for its answer: a flood slows to one attempt per connection
        // and second, at the cost of a timer.
        actix_web::rt::time::sleep(authn::REFUSAL_DELAY.min(wait)).await;
        return Err(ApiError::TooManyRequests {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let ip = addr.map(|a| a.to_string());
    let secret = authn::new_session_secret();
    let secret_hash = authn::secret_hash(&secret);
    let acct = account.clone();
    let user: Option<User> = if plausible {
        state
            .db
            .run(move |conn| {
                Ok(users::table
                    .filter(users::username.eq(&acct))
                    .select(User::as_select())
                    .first(conn)
                    .optional()?)
            })
            .await?
    } else {
        None
    };
    // Hashing is slow by design: it runs on the blocking pool without holding the database.
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        // Same work as for a real user, so timing does not reveal which names exist.
        .unwrap_or_else(|| authn::dummy_hash().to_string());
    let verified = authn::verify_password_off(password, hash).await?;
    let user = user.filter(|u| verified && !u.disabled);
    let acct = account.clone();
    let result = state
        .db
        .run(move |conn| {
            let Some(user) = user else {
                // Nobody is known yet: the attempted name is the target, not the actor.
                let actor = Actor {
                    name: "anonymous".into(),
                    via_token: None,
                    via,
                };
                audit::record(
                    conn,
                    &actor,
                    Change::new(
                        "auth.login_failed",
                        "user",
                        &acct,
                        format!("failed login for '{acct}'"),
                    )
                    .details(serde_json::json!({ "ip": ip }))
                    .severity(Severity::Warning),
                )?;
                return Ok(None);
            };
            let user = open_session(
                conn,
                user,
                &secret_hash,
                ip.as_deref(),
                user_agent.as_deref(),
                via,
                None,
            )?;
            Ok(Some(user))
        })
        .await?;
    match result {
        Some(user) => {
            state.login_limiter.success(&account, addr);
            Ok((user, secret))
        }
        None => {
            state.login_limiter.failure(&account, addr, Instant::now());
            Err(ApiError::Unauthorized("wrong user name or password".into()))
        }
    }
}

/// Records an attempt refused unheard because its account or address is locked out.
async fn locked_out(
    state: &Core,
    account: &str,
    addr: Option<std::net::IpAddr>,
    via: Option<&'static str>,
    wait: std::time::Duration,
) -> ApiResult<()> {
    let acct = account.to_string();
    let ip = addr.map(|a| a.to_string());
    let secs = wait.as_secs().max(1);
    state
        .db
        .run(move |conn| {
            audit::record(
                conn,
                &Actor {
                    name: "anonymous".into(),
                    via_token: None,
                    via,
                },
                Change::new(
                    "auth.login_locked",
                    "user",
                    &acct,
                    format!("login for '{acct}' refused unheard: too many failed logins (locked for {secs} s more)"),
                )
                .details(serde_json::json!({ "ip": ip, "retry_after_secs": secs }))
                .severity(Severity::Warning),
            )?;
            Ok(())
        })
        .await
}

/// Records a login of `user`: a new session (its secret's hash), the last login time, and the
/// audit event (`key`: the SSH key it came with).
fn open_session(
    conn: &mut crate::db::DbConn,
    user: User,
    secret_hash: &str,
    ip: Option<&str>,
    user_agent: Option<&str>,
    via: Option<&'static str>,
    key: Option<&str>,
) -> ApiResult<User> {
    let t = now();
    conn.transaction(|conn| {
        diesel::insert_into(sessions::table)
            .values(NewSession {
                token_hash: secret_hash,
                user_id: user.id,
                created_at: t,
                last_seen_at: t,
                ip,
                user_agent,
            })
            .execute(conn)?;
        diesel::update(users::table.find(user.id))
            .set(users::last_login_at.eq(t))
            .execute(conn)?;
        audit::record(
            conn,
            &Actor {
                name: user.username.clone(),
                via_token: None,
                via,
            },
            Change::new(
                "auth.login",
                "user",
                user.id,
                format!(
                    "{} logged in{}{}",
                    user.username,
                    if via == Some("ssh") {
                        " to the SSH command line"
                    } else {
                        ""
                    },
                    key.map(|k| format!(" with key '{k}'")).unwrap_or_default()
                ),
            )
            .details(serde_json::json!({ "ip": ip, "ssh_key": key })),
        )?;
        Ok::<_, ApiError>(())
    })?;
    Ok(User {
        last_login_at: Some(t),
        ..user
    })
}

/// A login to the SSH command line with a public key (its signature checked by the SSH
/// server): the key must be registered to `username`, who must be enabled. A locked account
/// (too many wrong passwords) waits as for a password. A new session; its secret.
pub async fn key_login(
    state: &Core,
    username: &str,
    fingerprint: String,
    addr: Option<std::net::IpAddr>,
) -> ApiResult<(User, String)> {
    use crate::schema::user_ssh_keys;
    let account = username.trim().to_lowercase();
    if validate::username("username", &account).is_err() {
        return Err(ApiError::Unauthorized("no such key for that user".into()));
    }
    if let Err(wait) = state.login_limiter.check(&account, addr, Instant::now()) {
        locked_out(state, &account, addr, Some("ssh"), wait).await?;
        return Err(ApiError::TooManyRequests {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let secret = authn::new_session_secret();
    let secret_hash = authn::secret_hash(&secret);
    let ip = addr.map(|a| a.to_string());
    let acct = account.clone();
    let user = state
        .db
        .run(move |conn| {
            let found: Option<(User, i64, String)> = users::table
                .inner_join(user_ssh_keys::table)
                .filter(users::username.eq(&acct))
                .filter(user_ssh_keys::fingerprint.eq(&fingerprint))
                .select((User::as_select(), user_ssh_keys::id, user_ssh_keys::name))
                .first(conn)
                .optional()?;
            let Some((user, key_id, key_name)) = found.filter(|(u, _, _)| !u.disabled) else {
                return Ok(None);
            };
            diesel::update(user_ssh_keys::table.find(key_id))
                .set(user_ssh_keys::last_used_at.eq(now()))
                .execute(conn)?;
            open_session(
                conn,
                user,
                &secret_hash,
                ip.as_deref(),
                Some(authn::SSH_SESSION_AGENT),
                Some("ssh"),
                Some(&key_name),
            )
            .map(Some)
        })
        .await?;
    match user {
        Some(u) => {
            state.login_limiter.success(&account, addr);
            Ok((u, secret))
        }
        None => Err(ApiError::Unauthorized("no such key for that user".into())),
    }
}

/// How a name that cannot be a user's is kept: at most 40 characters, escaped, marked as cut.
fn shown_name(name: &str) -> String {
    const KEEP: usize = 40;
    let mut shown: String = name
        .chars()
        .take(KEEP)
        .flat_map(char::escape_default)
        .collect();
    let total = name.chars().count();
    if total > KEEP {
        shown.push_str(&format!("… ({total} characters)"));
    }
    shown
}

/// End the current session (server-side) and clear the cookie.
#[utoipa::path(tag = "auth", responses((status = 204), (status = 401, body = ErrorBody)))]
#[post("/auth/logout")]
pub async fn logout(state: web::Data<Core>, principal: Principal) -> ApiResult<HttpResponse> {
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
) -> ApiResult<web::Json<SessionResponse>> {
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
) -> ApiResult<HttpResponse> {
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
        return Err(ApiError::Forbidden("the current password is wrong".into()));
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
