//! Rows of the database and their conversion to API types.

use crate::schema::{api_tokens, events, sessions, users};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serverware_shared::api::{EventKind, EventResponse, Severity, TokenResponse, UserResponse};
use serverware_shared::Role;

/// Newtype ids keep a user id from being passed where a token id is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub i64);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenId(pub i64);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub i64);

pub fn parse_role(s: &str) -> Role {
    // The CHECK constraint keeps other values out; viewer is the safe reading if one slips in.
    s.parse().unwrap_or(Role::Viewer)
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub last_login_at: Option<NaiveDateTime>,
}

impl User {
    pub fn role(&self) -> Role {
        parse_role(&self.role)
    }
    pub fn to_response(&self) -> UserResponse {
        UserResponse {
            id: self.id,
            username: self.username.clone(),
            role: self.role(),
            disabled: self.disabled,
            created_at: self.created_at.and_utc(),
            last_login_at: self.last_login_at.map(|t| t.and_utc()),
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
    pub disabled: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id: i64,
    pub token_hash: String,
    pub user_id: i64,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = sessions)]
pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub user_id: i64,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub prefix: String,
    pub token_hash: String,
    pub role: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub expires_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    pub parent_token_id: Option<i64>,
}

impl ApiToken {
    pub fn to_response(&self, username: &str) -> TokenResponse {
        TokenResponse {
            id: self.id,
            name: self.name.clone(),
            prefix: self.prefix.clone(),
            role: parse_role(&self.role),
            user_id: self.user_id,
            username: username.to_string(),
            created_at: self.created_at.and_utc(),
            last_used_at: self.last_used_at.map(|t| t.and_utc()),
            expires_at: self.expires_at.map(|t| t.and_utc()),
            revoked_at: self.revoked_at.map(|t| t.and_utc()),
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct NewApiToken<'a> {
    pub user_id: i64,
    pub name: &'a str,
    pub prefix: &'a str,
    pub token_hash: &'a str,
    pub role: &'a str,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub parent_token_id: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct Event {
    pub id: i64,
    pub kind: String,
    pub severity: String,
    pub actor: String,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub message: String,
    pub details: String,
    pub created_at: NaiveDateTime,
}

impl Event {
    pub fn to_response(&self) -> EventResponse {
        let details: serde_json::Value =
            serde_json::from_str(&self.details).unwrap_or(serde_json::Value::Null);
        EventResponse {
            id: self.id,
            kind: if self.kind == "audit" {
                EventKind::Audit
            } else {
                EventKind::System
            },
            severity: match self.severity.as_str() {
                "warning" => Severity::Warning,
                "error" => Severity::Error,
                _ => Severity::Info,
            },
            actor: self.actor.clone(),
            action: self.action.clone(),
            target_type: self.target_type.clone(),
            target_id: self.target_id.clone(),
            message: self.message.clone(),
            target_name: details
                .get("target_name")
                .and_then(|n| n.as_str())
                .map(str::to_string),
            details,
            created_at: self.created_at.and_utc(),
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = events)]
pub struct NewEvent<'a> {
    pub kind: &'a str,
    pub severity: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub message: &'a str,
    pub details: &'a str,
    pub created_at: NaiveDateTime,
}

/// Now, in UTC, at the database's precision (microseconds) so values read back compare equal.
pub fn now() -> NaiveDateTime {
    use chrono::{SubsecRound, Utc};
    Utc::now().naive_utc().trunc_subsecs(6)
}
