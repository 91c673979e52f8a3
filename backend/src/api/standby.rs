//! What a controller of a pair serves while it does not lead (see `server::standby`): its
//! health, saying where it stands and who leads, and a `standby` refusal of everything else.

use crate::error::Error;
use crate::pair::Leadership;
use actix_web::{web, HttpResponse, ResponseError};
use serverware_shared::api::HealthResponse;

/// `GET /api/v1/health` on the standby: `status` is `standby`; `pair.leader` says where to go.
pub async fn health(lead: web::Data<Leadership>) -> web::Json<HealthResponse> {
    web::Json(HealthResponse {
        status: "standby".into(),
        version: serverware_shared::BUILD.into(),
        database: String::new(),
        pair: Some(lead.status()),
    })
}

/// Everything else: 503 `standby`, naming the leader and where it serves.
pub async fn refuse(lead: web::Data<Leadership>) -> HttpResponse {
    let status = lead.status();
    let message = match &status.leader {
        Some(l) if l.name != status.name => format!(
            "{} is the standby controller of the pair; the leader is {} at {}",
            status.name, l.name, l.url
        ),
        _ => format!(
            "{} is the standby controller of the pair; no controller leads at the moment (a \
             takeover takes a few seconds)",
            status.name
        ),
    };
    Error::Standby(message).error_response()
}
