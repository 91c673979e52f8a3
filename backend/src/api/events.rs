use crate::audit::{self, Actor, Change};
use crate::auth::Principal;
use crate::core::Core;
use crate::error::{ApiError, ApiResult};
use crate::models::Event;
use crate::schema::events;
use crate::settings;
use actix_web::{get, patch, web};
use diesel::prelude::*;
use serverware_shared::api::{
    EventListResponse, EventQuery, SettingsResponse, UpdateSettingsRequest,
};
use serverware_shared::{validate, ErrorBody, Role};

/// List events, newest first, with filters; page with `before`.
///
/// The same path with `Upgrade: websocket` opens the live events socket: send
/// `{"type":"subscribe","topics":["events","inventory"]}` and receive `ServerMessage`s of those
/// topics only.
#[utoipa::path(tag = "events", params(EventQuery), responses((status = 200, body = EventListResponse), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/events")]
pub async fn list_events(
    state: web::Data<Core>,
    principal: Principal,
    query: web::Query<EventQuery>,
) -> ApiResult<web::Json<EventListResponse>> {
    principal.require(Role::Viewer)?;
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "limit must be between 1 and 500",
        ));
    }
    let rows: Vec<Event> = state
        .db
        .run(move |conn| {
            let mut sel = events::table.select(Event::as_select()).into_boxed();
            if let Some(kind) = q.kind {
                sel = sel.filter(events::kind.eq(kind.as_str()));
            }
            if let Some(actor) = q.actor {
                sel = sel.filter(events::actor.eq(actor));
            }
            if let Some(action) = q.action {
                if let Some(prefix) = action.strip_suffix('.') {
                    // Prefix match without LIKE wildcards from user input.
                    let lo = format!("{prefix}.");
                    let hi = format!("{prefix}/"); // '/' sorts right after '.'
                    sel = sel
                        .filter(events::action.ge(lo))
                        .filter(events::action.lt(hi));
                } else {
                    sel = sel.filter(events::action.eq(action));
                }
            }
            if let Some(t) = q.target_type {
                sel = sel.filter(events::target_type.eq(t));
            }
            if let Some(t) = q.target_id {
                sel = sel.filter(events::target_id.eq(t));
            }
            if let Some(since) = q.since {
                sel = sel.filter(events::created_at.ge(since.naive_utc()));
            }
            if let Some(until) = q.until {
                sel = sel.filter(events::created_at.lt(until.naive_utc()));
            }
            if let Some(before) = q.before {
                sel = sel.filter(events::id.lt(before));
            }
            Ok(sel
                .order(events::id.desc())
                .limit(i64::from(limit) + 1)
                .load(conn)?)
        })
        .await?;
    let more = rows.len() > limit as usize;
    let events: Vec<_> = rows
        .iter()
        .take(limit as usize)
        .map(Event::to_response)
        .collect();
    let next_before = if more {
        events.last().map(|e| e.id)
    } else {
        None
    };
    Ok(web::Json(EventListResponse {
        events,
        next_before,
    }))
}

/// Site-wide settings.
#[utoipa::path(tag = "settings", responses((status = 200, body = SettingsResponse), (status = 401, body = ErrorBody)))]
#[get("/settings")]
pub async fn get_settings(
    state: web::Data<Core>,
    principal: Principal,
) -> ApiResult<web::Json<SettingsResponse>> {
    principal.require(Role::Viewer)?;
    Ok(web::Json(state.db.run(settings::read).await?))
}

/// Change site-wide settings (admin).
#[utoipa::path(tag = "settings", request_body = UpdateSettingsRequest, responses(
    (status = 200, body = SettingsResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/settings")]
pub async fn update_settings(
    state: web::Data<Core>,
    principal: Principal,
    body: web::Json<UpdateSettingsRequest>,
) -> ApiResult<web::Json<SettingsResponse>> {
    principal.require(Role::Admin)?;
    let req = body.into_inner();
    let site_name = req
        .site_name
        .as_deref()
        .map(|s| validate::label("site_name", s))
        .transpose()?;
    let retention = req
        .rollup_retention_days
        .map(|d| validate::retention_days("rollup_retention_days", d))
        .transpose()?;
    let history = req
        .history_retention_days
        .map(|d| validate::retention_days("history_retention_days", d))
        .transpose()?;
    let actor = Actor::from(&principal);
    let out = state
        .db
        .run(move |conn| {
            conn.transaction(|conn| {
                if let Some(name) = &site_name {
                    settings::put(conn, settings::SITE_NAME, name)?;
                    audit::record(
                        conn,
                        &actor,
                        Change::new(
                            "settings.update",
                            "settings",
                            settings::SITE_NAME,
                            format!("site name set to '{name}'"),
                        )
                        .details(serde_json::json!({ "site_name": name })),
                    )?;
                }
                if let Some(days) = retention {
                    settings::put(conn, settings::ROLLUP_RETENTION_DAYS, &days.to_string())?;
                    audit::record(
                        conn,
                        &actor,
                        Change::new(
                            "settings.update",
                            "settings",
                            settings::ROLLUP_RETENTION_DAYS,
                            format!("host history kept for {days} days"),
                        )
                        .details(serde_json::json!({ "rollup_retention_days": days })),
                    )?;
                }
                if let Some(days) = history {
                    settings::put(conn, settings::HISTORY_RETENTION_DAYS, &days.to_string())?;
                    audit::record(
                        conn,
                        &actor,
                        Change::new(
                            "settings.update",
                            "settings",
                            settings::HISTORY_RETENTION_DAYS,
                            format!("events and finished tasks kept for {days} days"),
                        )
                        .details(serde_json::json!({ "history_retention_days": days })),
                    )?;
                }
                settings::read(conn)
            })
        })
        .await?;
    // A shorter retention applies at once.
    if retention.is_some() {
        crate::hosts::prune_rollups(&state.db).await?;
    }
    if history.is_some() {
        crate::tasks::prune_history(&state.db).await?;
    }
    Ok(web::Json(out))
}
