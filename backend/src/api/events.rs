use crate::audit::{self, Actor, Change};
use crate::auth::Principal;
use crate::core::Core;
use crate::error::{Error, Result};
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
) -> Result<web::Json<EventListResponse>> {
    principal.require(Role::Viewer)?;
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Error::invalid("limit", "limit must be between 1 and 500"));
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
) -> Result<web::Json<SettingsResponse>> {
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
) -> Result<web::Json<SettingsResponse>> {
    principal.require(Role::Admin)?;
    let req = body.into_inner();
    let site_name = req
        .site_name
        .as_deref()
        .map(|s| validate::label("site_name", s))
        .transpose()?;
    // The numbers, each checked, with what its change says.
    let mut numbers: Vec<(&'static str, u32, String)> = Vec::new();
    if let Some(d) = req.rollup_retention_days {
        let d = validate::retention_days("rollup_retention_days", d)?;
        numbers.push((
            settings::ROLLUP_RETENTION_DAYS,
            d,
            format!("host history kept for {d} days"),
        ));
    }
    if let Some(d) = req.history_retention_days {
        let d = validate::retention_days("history_retention_days", d)?;
        numbers.push((
            settings::HISTORY_RETENTION_DAYS,
            d,
            format!("events and finished tasks kept for {d} days"),
        ));
    }
    if let Some(n) = req.duplo_keep_last {
        let n = validate::duplo_keep_last("duplo_keep_last", n)?;
        numbers.push((
            settings::DUPLO_KEEP_LAST,
            n,
            format!("each VPS's newest {n} restore points kept"),
        ));
    }
    if let Some(d) = req.duplo_keep_hourly_days {
        let d = validate::duplo_keep_days("duplo_keep_hourly_days", d)?;
        numbers.push((
            settings::DUPLO_KEEP_HOURLY_DAYS,
            d,
            format!("hourly restore points kept for {d} days"),
        ));
    }
    if let Some(d) = req.duplo_keep_daily_days {
        let d = validate::duplo_keep_days("duplo_keep_daily_days", d)?;
        numbers.push((
            settings::DUPLO_KEEP_DAILY_DAYS,
            d,
            format!("daily restore points kept for {d} days"),
        ));
    }
    let retention = req.rollup_retention_days.is_some();
    let history = req.history_retention_days.is_some();
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
                for (key, value, message) in &numbers {
                    settings::put(conn, key, &value.to_string())?;
                    audit::record(
                        conn,
                        &actor,
                        Change::new("settings.update", "settings", key, message.clone())
                            .details(serde_json::json!({ *key: value })),
                    )?;
                }
                settings::read(conn)
            })
        })
        .await?;
    // A shorter retention applies at once.
    if retention {
        crate::hosts::prune_rollups(&state.db).await?;
    }
    if history {
        crate::settings::prune_history(&state.db).await?;
    }
    Ok(web::Json(out))
}
