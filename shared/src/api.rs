//! Requests and responses of the REST API under `/api/v1`.
//!
//! Doc comments double as the OpenAPI descriptions.

use crate::Role;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::{IntoParams, ToSchema};

/// Answer of `GET /api/v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HealthResponse {
    /// `ok` when the controller and its database answer.
    pub status: String,
    /// Controller version.
    pub version: String,
    /// `sqlite` or `postgres`.
    pub database: String,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// The signed-in user and how the request was authenticated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SessionResponse {
    pub user: UserResponse,
    /// The role in force for this request: the user's, or a token's lower one.
    pub effective_role: Role,
    /// `session` (cookie) or `token` (bearer).
    pub auth_method: String,
    /// Minutes of inactivity after which a session ends.
    pub idle_timeout_minutes: u64,
}

/// A user account. Never includes the password hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UserResponse {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// A disabled user cannot log in and their sessions and tokens stop working.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/users` (admin).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateUserRequest {
    pub username: String,
    pub password: String,
    pub role: Role,
}

/// `PATCH /api/v1/users/{id}` (admin). Absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[serde(default)]
    pub role: Option<Role>,
    /// A new password; ends the user's sessions.
    #[serde(default)]
    pub password: Option<String>,
    /// Disabling ends the user's sessions.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// `POST /api/v1/auth/password`: change one's own password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

/// An API token, as listed. The secret is shown only once, at creation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TokenResponse {
    pub id: i64,
    pub name: String,
    /// The token's first characters, to recognise it.
    pub prefix: String,
    /// The role the token carries (never above its user's).
    pub role: Role,
    pub user_id: i64,
    pub username: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateTokenRequest {
    pub name: String,
    /// The token's role: the user's own role (the default) or a lower one.
    #[serde(default)]
    pub role: Option<Role>,
    /// Days until the token expires (1–3650); no expiry when absent.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// Answer of `POST /api/v1/tokens`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreatedTokenResponse {
    pub token: TokenResponse,
    /// Send as `Authorization: Bearer <secret>`. Store it now: it cannot be shown again.
    pub secret: String,
}

/// Query of `GET /api/v1/tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[serde(deny_unknown_fields)]
pub struct TokenListQuery {
    /// Admins only: `all` lists every user's tokens; a user id lists that user's.
    #[serde(default)]
    pub user: Option<String>,
    /// Include revoked and expired tokens.
    #[serde(default)]
    pub include_inactive: Option<bool>,
}

/// What an Event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A change someone made (who, what, target, when).
    Audit,
    /// Something that happened to the cluster (host down, VPS failed over).
    System,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Audit => "audit",
            EventKind::System => "system",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Something that happened: a change someone made (audit) or a cluster event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventResponse {
    pub id: i64,
    pub kind: EventKind,
    pub severity: Severity,
    /// Who did it: a user name, `token:<name>` suffixes are in `details`; `system` for the controller.
    pub actor: String,
    /// What was done, such as `token.create` or `user.update`.
    pub action: String,
    /// The kind of object acted on, such as `user`, `token`, `host`.
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// One line for people.
    pub message: String,
    /// Structured detail (never secrets).
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Filters of `GET /api/v1/events`. Results are newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// `audit` or `system`.
    #[serde(default)]
    pub kind: Option<EventKind>,
    /// Exact actor user name.
    #[serde(default)]
    pub actor: Option<String>,
    /// Exact action, or a prefix ending in `.` (such as `token.`).
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub target_type: Option<String>,
    #[serde(default)]
    pub target_id: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time (RFC 3339).
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    /// Only events with an id below this (for paging; use `next_before` of the last page).
    #[serde(default)]
    pub before: Option<i64>,
    /// Page size, 1–500 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A page of events, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventListResponse {
    pub events: Vec<EventResponse>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// Site-wide settings (admin to change, everyone to read).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SettingsResponse {
    /// Shown in the dashboard's title.
    pub site_name: String,
    /// How long one-minute host rollups are kept, in days.
    pub rollup_retention_days: u32,
}

/// `PATCH /api/v1/settings` (admin). Absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateSettingsRequest {
    #[serde(default)]
    pub site_name: Option<String>,
    /// 1–3650 days.
    #[serde(default)]
    pub rollup_retention_days: Option<u32>,
}

/// `POST /api/v1/hosts/probe`: read a host's SSH key before adding it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProbeHostRequest {
    /// `ssh://user@address[:port]`
    pub address: String,
}

/// The host key to show the operator for confirmation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProbeHostResponse {
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The key itself (`ssh-ed25519 AAAA…`); send it back in `CreateHostRequest.host_key` to pin it.
    pub host_key: String,
}

/// `POST /api/v1/hosts`: add a host whose key the operator confirmed. The password or key is used
/// once, to install the controller's own key; it is never stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateHostRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `ssh://user@address[:port]`
    pub address: String,
    /// The host key from the probe, as confirmed by the operator.
    pub host_key: String,
    #[serde(default)]
    pub password: Option<String>,
    /// An OpenSSH private key (PEM text), instead of a password.
    #[serde(default)]
    pub private_key: Option<String>,
}

/// A host as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HostResponse {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub address: String,
    /// `connecting`, `online`, `offline`, `key_mismatch` or `auth_failed`.
    pub status: String,
    pub fingerprint: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub agent_version: Option<String>,
    /// What the agent reported when it connected.
    pub hostname: Option<String>,
    pub kernel: Option<String>,
    pub cpu_model: Option<String>,
    /// How often the agent samples, in milliseconds.
    pub sample_interval_ms: u32,
    /// VPSes placed on this host.
    pub vps_count: i64,
    /// The newest netRES sample, when the host is connected.
    pub sample: Option<crate::agent::HostSample>,
}

/// `PATCH /api/v1/hosts/{id}`. Absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateHostRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// 250–60000 ms.
    #[serde(default)]
    pub sample_interval_ms: Option<u32>,
    /// After the host's key changed (status `key_mismatch`): the new key from a fresh probe,
    /// confirmed by the operator. The controller checks the host presents it before pinning it.
    #[serde(default)]
    pub host_key: Option<String>,
}

/// One minute of a host's samples: average and maximum.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HostRollup {
    /// The start of the minute.
    pub minute: DateTime<Utc>,
    pub samples: u32,
    pub cpu_avg: f64,
    pub cpu_max: f64,
    pub memory_avg: f64,
    pub memory_max: f64,
    pub load_avg: f64,
    pub load_max: f64,
    pub rx_avg: f64,
    pub rx_max: f64,
    pub tx_avg: f64,
    pub tx_max: f64,
    pub disk_read_avg: f64,
    pub disk_read_max: f64,
    pub disk_write_avg: f64,
    pub disk_write_max: f64,
}

/// `GET /api/v1/hosts/{id}/history`: rollups in a time range (default: the last 24 hours).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
}
