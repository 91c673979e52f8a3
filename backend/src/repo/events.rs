//! `events`: the audit and system events (`audit.rs` says what they are).

use crate::db::DbConn;
use crate::error::Result;
use crate::models::{Event, NewEvent};
use crate::schema::events;
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// How many events of `action` were recorded since `since`.
pub fn count_since(c: &mut DbConn, action: &str, since: NaiveDateTime) -> Result<i64> {
    Ok(events::table
        .filter(events::action.eq(action))
        .filter(events::created_at.ge(since))
        .count()
        .get_result(c)?)
}

/// Stores an event; the row as stored.
pub fn insert(c: &mut DbConn, row: &NewEvent<'_>) -> Result<Event> {
    Ok(crate::with_backend!(c, |c| diesel::insert_into(
        events::table
    )
    .values(row)
    .returning(Event::as_returning())
    .get_result(c))?)
}

/// The name of the VPS, host, user or template an event is about, if it exists.
pub fn target_name(c: &mut DbConn, kind: &str, id: &str) -> Option<String> {
    use crate::schema::{hosts, templates, users, vpses};
    let id: i64 = id.parse().ok()?;
    let r = match kind {
        "vps" => vpses::table.find(id).select(vpses::name).first(c),
        "host" => hosts::table.find(id).select(hosts::name).first(c),
        "user" => users::table.find(id).select(users::username).first(c),
        "template" => templates::table.find(id).select(templates::name).first(c),
        _ => return None,
    };
    r.ok()
}

/// Events, newest first, as the listing filters them (at most `limit`).
pub fn list(
    c: &mut DbConn,
    q: serverware_shared::api::EventQuery,
    limit: i64,
) -> Result<Vec<Event>> {
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
    Ok(sel.order(events::id.desc()).limit(limit).load(c)?)
}
