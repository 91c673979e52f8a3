//! Audit: every change is stored as an Event of kind audit (who, what, target, when), in the same
//! transaction as the change itself.

use crate::db::DbConn;
use crate::error::Error;
use crate::models::{now, Event, NewEvent};
use crate::repo::events as repo;
use serverware_shared::api::Severity;

/// Who made a change.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    /// Set when the change was made with an API token.
    pub via_token: Option<String>,
    /// Set when it came another way than the dashboard or the API (`ssh`: the controller's SSH
    /// command line).
    pub via: Option<&'static str>,
}

impl Actor {
    pub fn system(what: &str) -> Actor {
        Actor {
            name: format!("system:{what}"),
            via_token: None,
            via: None,
        }
    }
}

pub struct Change<'a> {
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: String,
    pub message: String,
    pub details: serde_json::Value,
    pub severity: Severity,
}

impl<'a> Change<'a> {
    pub fn new(
        action: &'a str,
        target_type: &'a str,
        target_id: impl ToString,
        message: String,
    ) -> Self {
        Change {
            action,
            target_type,
            target_id: target_id.to_string(),
            message,
            details: serde_json::json!({}),
            severity: Severity::Info,
        }
    }
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
}

/// Stores one audit event and returns it.
pub fn record(conn: &mut DbConn, actor: &Actor, change: Change<'_>) -> Result<Event, Error> {
    record_kind(conn, "audit", actor, change)
}

/// Stores one event of kind `system` (what happened, not who changed what).
pub fn record_system(conn: &mut DbConn, actor: &Actor, change: Change<'_>) -> Result<Event, Error> {
    record_kind(conn, "system", actor, change)
}

fn record_kind(
    conn: &mut DbConn,
    kind: &str,
    actor: &Actor,
    change: Change<'_>,
) -> Result<Event, Error> {
    let mut details = change.details;
    if let (Some(token), Some(obj)) = (&actor.via_token, details.as_object_mut()) {
        obj.insert("via_token".into(), serde_json::Value::String(token.clone()));
    }
    if let (Some(via), Some(obj)) = (actor.via, details.as_object_mut()) {
        obj.insert("via".into(), serde_json::Value::String(via.into()));
    }
    // The target's name as it is now, kept with the event: it still reads right once the
    // object is renamed or gone.
    if let Some(obj) = details.as_object_mut() {
        if !obj.contains_key("target_name") {
            if let Some(name) = repo::target_name(conn, change.target_type, &change.target_id) {
                obj.insert("target_name".into(), serde_json::Value::String(name));
            }
        }
    }
    let details = details.to_string();
    let row = NewEvent {
        kind,
        severity: change.severity.as_str(),
        actor: &actor.name,
        action: change.action,
        target_type: Some(change.target_type),
        target_id: Some(&change.target_id),
        message: &change.message,
        details: &details,
        created_at: now(),
    };
    let event = repo::insert(conn, &row)?;
    crate::db::note_event(&event);
    Ok(event)
}

/// Events, newest first, as `GET /events` filters them; `limit` 1–500 (default 100), paged
/// with `before`.
pub async fn list(
    db: &crate::db::Db,
    q: serverware_shared::api::EventQuery,
) -> Result<serverware_shared::api::EventListResponse, Error> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Error::invalid("limit", "limit must be between 1 and 500"));
    }
    let rows: Vec<Event> = db
        .run(move |conn| repo::list(conn, q, i64::from(limit) + 1))
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
    Ok(serverware_shared::api::EventListResponse {
        events,
        next_before,
    })
}
