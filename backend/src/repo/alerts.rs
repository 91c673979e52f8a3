//! `alert_targets`, `alert_incidents`, `alert_messages`: where alerts go, the incidents they were
//! sent for, and the outbox of messages the sender delivers.

use crate::db::DbConn;
use crate::error::Result;
use crate::models::Event;
use crate::schema::{alert_incidents, alert_messages, alert_targets, events};
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = alert_targets)]
pub struct Target {
    pub id: i64,
    pub name: String,
    pub channel: String,
    pub secret: Option<String>,
    pub rules: String,
    pub enabled: bool,
    pub created_at: NaiveDateTime,
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = alert_targets)]
pub struct NewTarget<'a> {
    pub name: &'a str,
    pub channel: &'a str,
    pub secret: Option<&'a str>,
    pub rules: &'a str,
    pub enabled: bool,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = alert_incidents)]
pub struct Incident {
    pub id: i64,
    pub incident_key: String,
    pub rule: String,
    pub severity: String,
    pub title: String,
    pub detail: String,
    pub opened_at: NaiveDateTime,
    pub cleared_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = alert_incidents)]
pub struct NewIncident<'a> {
    pub incident_key: &'a str,
    pub rule: &'a str,
    pub severity: &'a str,
    pub title: &'a str,
    pub detail: &'a str,
    pub opened_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = alert_messages)]
pub struct Message {
    pub id: i64,
    pub target_id: i64,
    pub dedupe: String,
    pub subject: String,
    pub body: String,
    pub created_at: NaiveDateTime,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub sent_at: Option<NaiveDateTime>,
    pub failed_at: Option<NaiveDateTime>,
    pub last_error: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = alert_messages)]
pub struct NewMessage<'a> {
    pub target_id: i64,
    pub dedupe: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub created_at: NaiveDateTime,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
}

pub fn targets(c: &mut DbConn) -> Result<Vec<Target>> {
    Ok(alert_targets::table
        .order(alert_targets::id)
        .select(Target::as_select())
        .load(c)?)
}

pub fn target(c: &mut DbConn, id: i64) -> Result<Option<Target>> {
    Ok(alert_targets::table
        .find(id)
        .select(Target::as_select())
        .first(c)
        .optional()?)
}

pub fn target_named(c: &mut DbConn, name: &str) -> Result<Option<Target>> {
    Ok(alert_targets::table
        .filter(alert_targets::name.eq(name))
        .select(Target::as_select())
        .first(c)
        .optional()?)
}

/// Stores a new target; its id.
pub fn insert_target(c: &mut DbConn, t: &NewTarget<'_>) -> Result<i64> {
    Ok(crate::with_backend!(c, |c| diesel::insert_into(
        alert_targets::table
    )
    .values(t)
    .returning(alert_targets::id)
    .get_result(c))?)
}

/// Replaces a target's settings (its creation time stays).
pub fn update_target(c: &mut DbConn, id: i64, t: &NewTarget<'_>) -> Result<()> {
    diesel::update(alert_targets::table.find(id))
        .set((
            alert_targets::name.eq(t.name),
            alert_targets::channel.eq(t.channel),
            alert_targets::secret.eq(t.secret),
            alert_targets::rules.eq(t.rules),
            alert_targets::enabled.eq(t.enabled),
        ))
        .execute(c)?;
    Ok(())
}

/// Deletes a target and its messages; whether it existed.
pub fn delete_target(c: &mut DbConn, id: i64) -> Result<bool> {
    diesel::delete(alert_messages::table.filter(alert_messages::target_id.eq(id))).execute(c)?;
    Ok(diesel::delete(alert_targets::table.find(id)).execute(c)? > 0)
}

/// Incidents open now.
pub fn open_incidents(c: &mut DbConn) -> Result<Vec<Incident>> {
    Ok(alert_incidents::table
        .filter(alert_incidents::cleared_at.is_null())
        .order(alert_incidents::id)
        .select(Incident::as_select())
        .load(c)?)
}

/// Open incidents first, then the newest cleared, `limit` in all.
pub fn recent_incidents(c: &mut DbConn, limit: i64) -> Result<Vec<Incident>> {
    let mut open = open_incidents(c)?;
    let cleared: Vec<Incident> = alert_incidents::table
        .filter(alert_incidents::cleared_at.is_not_null())
        .order(alert_incidents::id.desc())
        .limit((limit - open.len() as i64).max(0))
        .select(Incident::as_select())
        .load(c)?;
    open.reverse();
    open.extend(cleared);
    Ok(open)
}

pub fn insert_incident(c: &mut DbConn, i: &NewIncident<'_>) -> Result<i64> {
    Ok(crate::with_backend!(c, |c| diesel::insert_into(
        alert_incidents::table
    )
    .values(i)
    .returning(alert_incidents::id)
    .get_result(c))?)
}

pub fn clear_incident(c: &mut DbConn, id: i64, at: NaiveDateTime) -> Result<()> {
    diesel::update(alert_incidents::table.find(id))
        .set(alert_incidents::cleared_at.eq(at))
        .execute(c)?;
    Ok(())
}

/// Stores a message unless that target has one with the same `dedupe` already; whether it did.
pub fn insert_message(c: &mut DbConn, m: &NewMessage<'_>) -> Result<bool> {
    let there: i64 = alert_messages::table
        .filter(alert_messages::target_id.eq(m.target_id))
        .filter(alert_messages::dedupe.eq(m.dedupe))
        .count()
        .get_result(c)?;
    if there > 0 {
        return Ok(false);
    }
    diesel::insert_into(alert_messages::table)
        .values(m)
        .execute(c)?;
    Ok(true)
}

/// The targets a message with `dedupe` was written for.
pub fn targets_told(c: &mut DbConn, dedupe: &str) -> Result<Vec<i64>> {
    Ok(alert_messages::table
        .filter(alert_messages::dedupe.eq(dedupe))
        .select(alert_messages::target_id)
        .load(c)?)
}

/// Messages due for a delivery attempt, oldest first.
pub fn due(c: &mut DbConn, now: NaiveDateTime, limit: i64) -> Result<Vec<Message>> {
    Ok(alert_messages::table
        .filter(alert_messages::sent_at.is_null())
        .filter(alert_messages::failed_at.is_null())
        .filter(alert_messages::next_attempt_at.le(now))
        .order(alert_messages::id)
        .limit(limit)
        .select(Message::as_select())
        .load(c)?)
}

pub fn mark_sent(c: &mut DbConn, id: i64, at: NaiveDateTime, attempts: i32) -> Result<()> {
    diesel::update(alert_messages::table.find(id))
        .set((
            alert_messages::sent_at.eq(at),
            alert_messages::attempts.eq(attempts),
            alert_messages::last_error.eq(None::<String>),
        ))
        .execute(c)?;
    Ok(())
}

/// A failed attempt: tried again at `next`, or given up (`failed_at`) when `next` is None.
pub fn mark_failed(
    c: &mut DbConn,
    id: i64,
    attempts: i32,
    next: Option<NaiveDateTime>,
    now: NaiveDateTime,
    error: &str,
) -> Result<()> {
    let q = alert_messages::table.find(id);
    match next {
        Some(next) => diesel::update(q)
            .set((
                alert_messages::attempts.eq(attempts),
                alert_messages::next_attempt_at.eq(next),
                alert_messages::last_error.eq(error),
            ))
            .execute(c)?,
        None => diesel::update(q)
            .set((
                alert_messages::attempts.eq(attempts),
                alert_messages::failed_at.eq(now),
                alert_messages::last_error.eq(error),
            ))
            .execute(c)?,
    };
    Ok(())
}

/// The newest messages, newest first.
pub fn recent_messages(c: &mut DbConn, limit: i64) -> Result<Vec<Message>> {
    Ok(alert_messages::table
        .order(alert_messages::id.desc())
        .limit(limit)
        .select(Message::as_select())
        .load(c)?)
}

/// Per target: messages still being tried, and the newest attempt's error if it failed.
pub fn delivery_state(c: &mut DbConn, target: i64) -> Result<(i64, Option<String>)> {
    let pending: i64 = alert_messages::table
        .filter(alert_messages::target_id.eq(target))
        .filter(alert_messages::sent_at.is_null())
        .filter(alert_messages::failed_at.is_null())
        .count()
        .get_result(c)?;
    let newest: Option<(Option<NaiveDateTime>, Option<String>)> = alert_messages::table
        .filter(alert_messages::target_id.eq(target))
        .filter(alert_messages::attempts.gt(0))
        .order(alert_messages::id.desc())
        .select((alert_messages::sent_at, alert_messages::last_error))
        .first(c)
        .optional()?;
    let error = match newest {
        Some((None, e)) => e,
        _ => None,
    };
    Ok((pending, error))
}

/// Deletes delivered (or given up) messages and cleared incidents older than `before`.
pub fn prune(c: &mut DbConn, before: NaiveDateTime) -> Result<usize> {
    let m = diesel::delete(
        alert_messages::table
            .filter(alert_messages::created_at.lt(before))
            .filter(
                alert_messages::sent_at
                    .is_not_null()
                    .or(alert_messages::failed_at.is_not_null()),
            ),
    )
    .execute(c)?;
    let i = diesel::delete(
        alert_incidents::table
            .filter(alert_incidents::cleared_at.is_not_null())
            .filter(alert_incidents::cleared_at.lt(before)),
    )
    .execute(c)?;
    Ok(m + i)
}

/// Events of these actions recorded since `since`, oldest first.
pub fn events_since(c: &mut DbConn, actions: &[&str], since: NaiveDateTime) -> Result<Vec<Event>> {
    Ok(events::table
        .filter(events::action.eq_any(actions))
        .filter(events::created_at.ge(since))
        .order(events::id)
        .select(Event::as_select())
        .load(c)?)
}
