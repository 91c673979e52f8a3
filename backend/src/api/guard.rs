//! Who calls: the middleware on `/api/v1` that authenticates every route but the public ones
//! (through the `auth` domain service), the extractor that hands handlers the [`Principal`], and
//! the same-origin check on requests made with the session cookie.

use crate::auth::{self, Principal};
use crate::core::Core;
use crate::error::{Error, Result};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use serverware_shared::SESSION_COOKIE;
use std::future::{ready, Ready};

/// Routes anyone may call.
pub const PUBLIC_API_PATHS: [&str; 2] = ["/api/v1/health", "/api/v1/auth/login"];

impl FromRequest for Principal {
    type Error = Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .ok_or_else(|| Error::Unauthorized("authentication required".into())),
        )
    }
}

/// Middleware on `/api/v1`: every route but the public ones needs a session cookie or a bearer
/// token. Unknown routes answer 401 too, so an anonymous caller learns nothing of the API. A
/// refusal is answered here (not passed up as an error), so the middlewares around it (the
/// cross-site read headers) see it like any other answer.
pub async fn require_auth(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if PUBLIC_API_PATHS.contains(&req.path()) {
        return next.call(req).await.map(|r| r.map_into_left_body());
    }
    match who(&req).await {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.call(req).await.map(|r| r.map_into_left_body())
        }
        Err(e) => Ok(req.error_response(e).map_into_right_body()),
    }
}

/// Who sends the request: its bearer token's user, else its session's.
async fn who(req: &ServiceRequest) -> Result<Principal, Error> {
    let state = req
        .app_data::<web::Data<Core>>()
        .cloned()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("application state missing")))?;
    let bearer = match req.headers().get(actix_web::http::header::AUTHORIZATION) {
        Some(value) => {
            let v = value
                .to_str()
                .map_err(|_| Error::Unauthorized("malformed Authorization header".into()))?;
            let token = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .ok_or_else(|| {
                    Error::Unauthorized("the Authorization header must be 'Bearer <token>'".into())
                })?;
            Some(token.trim().to_string())
        }
        None => None,
    };
    let cookie = req.cookie(SESSION_COOKIE).map(|c| c.value().to_string());
    match (bearer, cookie) {
        (Some(token), _) => auth::authenticate_token(&state.db, token).await,
        (None, Some(secret)) => {
            same_origin(req.request())?;
            auth::authenticate_session(&state.db, state.config.session_idle_minutes, secret).await
        }
        (None, None) => Err(Error::Unauthorized(
            "authentication required: log in or send an API token".into(),
        )),
    }
}

/// A request authenticated by the session cookie that changes something (any method but GET,
/// HEAD and OPTIONS), or opens the live socket, must come from the controller's own pages:
/// browsers say where a request comes from in `Sec-Fetch-Site` and `Origin`, and a page of
/// another site is refused with 403 whatever the request's body or content type. A client that
/// sends neither header is no browser, and cannot have been steered by another site's page.
/// Requests with an API token are not affected: a token is never sent by a browser on its own.
pub fn same_origin(req: &HttpRequest) -> Result<(), Error> {
    use actix_web::http::{header, Method};
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !upgrade && matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let refuse = |from: &str| {
        Error::Forbidden(format!(
            "this request came from {from}, not from the controller's own pages: with the \
             session cookie, changes are accepted only from them (scripts use an API token)"
        ))
    };
    if let Some(site) = req.headers().get("sec-fetch-site") {
        return match site.to_str().unwrap_or("") {
            "same-origin" | "none" => Ok(()),
            other => Err(refuse(&format!("a {other} page"))),
        };
    }
    match own_origin(req.headers()) {
        Some(false) => {
            let origin = req
                .headers()
                .get(header::ORIGIN)
                .and_then(|o| o.to_str().ok())
                .unwrap_or("");
            Err(refuse(&format!("'{}'", origin.escape_default())))
        }
        _ => Ok(()),
    }
}

/// Whether the `Origin` a browser sent is this controller as the request reached it (`Host`);
/// None when it sent none.
pub fn own_origin(headers: &actix_web::http::header::HeaderMap) -> Option<bool> {
    use actix_web::http::header;
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or("");
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let own = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Some(matches!((host, own), (Some(h), Some(own)) if h.eq_ignore_ascii_case(own)))
}
