//! `GET /metrics`: the site in the Prometheus text format, for viewers and above.

use crate::auth::Principal;
use crate::core::Core;
use crate::error::Result;
use crate::metrics;
use actix_web::{web, HttpResponse};
use serverware_shared::Role;

pub async fn metrics(state: web::Data<Core>, principal: Principal) -> Result<HttpResponse> {
    principal.require(Role::Viewer)?;
    let text = metrics::gather(
        &state.db,
        &state.hosts,
        &state.hub,
        &state.duplication.duplo,
    )
    .await?;
    Ok(HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(text))
}
