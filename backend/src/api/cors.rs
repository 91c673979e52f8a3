//! Reads from another site's dashboard. An organization's operator opens one site's dashboard
//! and sees the health of its other sites on one page: the browser asks each site's own API
//! with an API token made on that site (see `shared::sites`). Browsers allow such a read only
//! when the site says so (CORS); this middleware says so for `GET` under `/api/v1` and nothing
//! else:
//!
//! - `Access-Control-Allow-Origin: *` and never `Allow-Credentials`: a page of another origin
//!   can read an answer only to a request that carried no cookie, so only with a token it was
//!   given (like `curl` with that token). The session cookie is never honoured cross-site.
//! - the preflight allows the method `GET` and the header `Authorization` only: a page of
//!   another origin cannot change anything, with a token or without (a token's request is
//!   never "simple", so a browser always asks first).
//!
//! Same-origin requests, and clients that are no browser, are not affected.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::HttpResponse;

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE_S: &str = "600";

/// The middleware (on the whole app; it acts under `/api/v1/` only).
pub async fn cross_site_reads(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !req.path().starts_with("/api/v1/") || super::guard::own_origin(req.headers()) != Some(false)
    {
        return next.call(req).await.map(|r| r.map_into_boxed_body());
    }
    if req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let res = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "authorization"))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE_S))
            .finish();
        return Ok(req.into_response(res));
    }
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    // A refusal (401 for a token the site does not know) is an answer too, readable: the page
    // says why.
    let mut res = next.call(req).await?.map_into_boxed_body();
    if readable {
        let h = res.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("link, x-total-count"),
        );
    }
    Ok(res)
}
