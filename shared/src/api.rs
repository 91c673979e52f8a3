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
    /// `ok` when the controller and its database answer; `standby` for the controller of a
    /// pair that does not lead (it serves nothing else: `pair.leader` says where to go).
    pub status: String,
    /// Controller version.
    pub version: String,
    /// `sqlite` or `postgres` (empty on a standby, which holds no database connection).
    pub database: String,
    /// Set when this controller is one of a pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair: Option<PairStatus>,
}

/// A controller of a pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PairPeer {
    pub name: String,
    /// Where it serves the dashboard and the API.
    pub url: String,
}

/// `GET /api/v1/pair`: the site's controllers and the etcd cluster that decides who leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PairResponse {
    /// `single` (one controller) or `pair`.
    pub mode: String,
    /// The controller that answered (the leader).
    pub name: String,
    /// The leader's lease in etcd, in seconds.
    pub lease_secs: u64,
    /// The controllers present now (each keeps a key in etcd while it runs).
    pub controllers: Vec<ControllerInfo>,
    /// The etcd members (the two controllers' and the witness's).
    pub etcd: Vec<EtcdMemberInfo>,
    /// The site's database as the pair keeps it (each controller its own PostgreSQL, the
    /// leader's the primary); None when the pair uses a database it does not keep.
    #[serde(default)]
    pub database: Option<DatabaseReplication>,
    /// The restore points' store's nodes (Garage's S3 endpoints) and whether each answers: a
    /// node that does not lags behind until it is back and has caught up.
    #[serde(default)]
    pub storage: Vec<StorageNodeInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StorageNodeInfo {
    pub endpoint: String,
    pub answers: bool,
    /// How far the node is behind: blocks it has still to copy from (or to) the others (Garage's
    /// resync queue), when its metrics are configured and answer.
    #[serde(default)]
    pub resync_queue: Option<u64>,
    /// Blocks whose copy failed and waits to be retried.
    #[serde(default)]
    pub resync_errors: Option<u64>,
}

/// `GET /api/v1/pair/join` (admins, on the leader): what a second controller needs to join the
/// pair, as `serverware pair join` writes it into its data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PairJoinResponse {
    /// The site's controller key (OpenSSH private key): hosts trust it.
    pub controller_key: String,
    /// The SSH command line's host key, when this controller has one.
    pub ssh_host_key: Option<String>,
    /// The password of the pair's PostgreSQL servers, when the pair keeps its database.
    pub postgres_password: Option<String>,
    /// The leader's version: a controller of another version does not join.
    #[serde(default)]
    pub version: String,
}

/// The pair's replicated database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DatabaseReplication {
    /// The controller whose server is the primary.
    pub primary: String,
    /// The standby every commit waits for, as etcd records it (None: the primary is alone, and
    /// no standby may be promoted).
    pub synchronous: Option<String>,
    /// The standbys connected to the primary now.
    pub standbys: Vec<DatabaseStandby>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DatabaseStandby {
    pub name: String,
    /// `streaming` once caught up (`catchup`, `startup` before).
    pub state: String,
    /// `sync` while every commit waits for it, `async` or `potential` otherwise.
    pub sync_state: String,
    /// Bytes of WAL it has yet to replay.
    pub lag_bytes: Option<i64>,
    /// How far behind its replay was last, in milliseconds.
    pub replay_lag_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ControllerInfo {
    pub name: String,
    pub url: String,
    pub version: String,
    /// `leader` or `standby`.
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EtcdMemberInfo {
    pub name: String,
    pub url: String,
    pub healthy: bool,
}

/// Answer of `POST /api/v1/pair/switchover`: the partner that takes the site over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SwitchoverResponse {
    pub to: PairPeer,
    pub message: String,
}

/// Where a controller of a pair stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PairStatus {
    /// `leader` or `standby`.
    pub role: String,
    /// This controller's name.
    pub name: String,
    /// The controller that leads, when known (itself when it leads).
    #[serde(default)]
    pub leader: Option<PairPeer>,
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

/// A public key its user logs in to the SSH command line with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SshKeyResponse {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa` …
    pub key_type: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/ssh-keys`: a public key for one's own account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddSshKeyRequest {
    pub name: String,
    /// OpenSSH's one-line form (`ssh-ed25519 AAAA… comment`, as in `~/.ssh/id_ed25519.pub`).
    pub public_key: String,
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
    /// The target's name when the event was recorded (a VPS, host, user or template).
    #[serde(default)]
    pub target_name: Option<String>,
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
    /// How long events, finished tasks and their logs are kept, in days.
    pub history_retention_days: u32,
    /// netDUPLO restore points: each VPS's newest this many are kept…
    pub duplo_keep_last: u32,
    /// …with the newest of each hour for this many days…
    pub duplo_keep_hourly_days: u32,
    /// …and the newest of each day for this many days.
    pub duplo_keep_daily_days: u32,
    /// Every HA VPS gets a failover drill when its last is older than this many days (0: no
    /// scheduled drills).
    #[serde(default)]
    pub drill_every_days: u32,
}

/// One background loop of the controller, as its supervisor sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LoopStatus {
    pub name: String,
    /// `starting`, `running`, `waiting` (until its next run), `backing_off` (after a failure),
    /// `stopped`.
    pub state: String,
    pub interval_ms: u64,
    pub runs: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub last_ok_at: Option<DateTime<Utc>>,
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
    /// 1–3650 days.
    #[serde(default)]
    pub history_retention_days: Option<u32>,
    /// 1–10000 restore points.
    #[serde(default)]
    pub duplo_keep_last: Option<u32>,
    /// 0–3650 days.
    #[serde(default)]
    pub duplo_keep_hourly_days: Option<u32>,
    /// 0–3650 days.
    #[serde(default)]
    pub duplo_keep_daily_days: Option<u32>,
    /// 0–365 days (0: off).
    #[serde(default)]
    pub drill_every_days: Option<u32>,
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
    /// netDUPLO's cycle interval for the host's VPSes, 1–86400 s (default 10).
    #[serde(default)]
    pub duplo_interval_secs: Option<u32>,
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
    /// Capacity for placement: declared, or what the host reports.
    pub capacity: HostCapacity,
    /// Left after the limits of the VPSes placed here.
    pub free: HostCapacity,
    /// The bridge VPS interfaces join, their prefix length and gateway.
    pub vps_bridge: String,
    pub vps_prefix_len: i32,
    pub vps_gateway: Option<String>,
    /// Root-filesystem transfers this host runs at once (others wait their turn).
    pub max_transfers: u32,
    /// netDUPLO: each of its VPSes is duplicated every this many seconds.
    pub duplo_interval_secs: u32,
    /// In maintenance: its VPSes were moved away, nothing is placed on it, netMON never fails
    /// it over; it leaves maintenance only when an operator says so.
    #[serde(default)]
    pub maintenance: bool,
    /// Containers found on the host that the controller does not know (never touched).
    pub unknown_vpses: Vec<String>,
    /// The newest netRES sample, when the host is connected.
    pub sample: Option<crate::agent::HostSample>,
}

/// Memory, CPUs and disk of a host.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HostCapacity {
    pub memory_bytes: i64,
    /// Thousandths of a CPU.
    pub cpu_millis: i64,
    pub disk_bytes: i64,
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
    /// Declared capacity; 0 returns to what the host reports.
    #[serde(default)]
    pub capacity_memory_bytes: Option<u64>,
    #[serde(default)]
    pub capacity_cpus: Option<u32>,
    #[serde(default)]
    pub capacity_disk_bytes: Option<u64>,
    #[serde(default)]
    pub vps_bridge: Option<String>,
    #[serde(default)]
    pub vps_prefix_len: Option<u8>,
    /// Empty removes the gateway.
    #[serde(default)]
    pub vps_gateway: Option<String>,
    /// 1–8 root-filesystem transfers at once.
    #[serde(default)]
    pub max_transfers: Option<u32>,
    /// netDUPLO's cycle interval for the host's VPSes: 1 s (continuous) to 86400 s.
    #[serde(default)]
    pub duplo_interval_secs: Option<u32>,
    /// Into maintenance (its VPSes are moved away, one task each) or out of it.
    #[serde(default)]
    pub maintenance: Option<bool>,
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

/// A template: a root filesystem in the controller's storage that VPSes are created from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TemplateResponse {
    pub id: i64,
    pub name: String,
    pub os: String,
    pub description: String,
    /// Size of the compressed archive in storage.
    pub size_bytes: i64,
    /// `ready`, `building` or `failed`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// `POST /api/v1/templates/debian`: build a Debian template with debootstrap (a task).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BuildDebianTemplateRequest {
    pub name: String,
    /// Debian suite (default `bookworm`).
    #[serde(default)]
    pub suite: Option<String>,
    /// Debian mirror (default `http://deb.debian.org/debian`).
    #[serde(default)]
    pub mirror: Option<String>,
    #[serde(default)]
    pub description: String,
}

/// Query of `POST /api/v1/templates` (the body is a tar archive, gzip-compressed or not).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[serde(deny_unknown_fields)]
pub struct UploadTemplateQuery {
    pub name: String,
    pub os: String,
    #[serde(default)]
    pub description: String,
}

/// A long operation: progress, log and final status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TaskResponse {
    pub id: i64,
    /// `vps.create`, `vps.start`, `vps.move` …
    pub kind: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// What the task works on, for people (`VPS web-1`).
    pub progress_pct: i32,
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub created_by: String,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The log, in `GET /tasks/{id}` only.
    #[serde(default)]
    pub log: Option<Vec<TaskLogLine>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TaskLogLine {
    pub at: DateTime<Utc>,
    pub line: String,
}

/// Query of `GET /api/v1/tasks`: newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    /// `running`, `succeeded` or `failed`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub target_type: Option<String>,
    #[serde(default)]
    pub target_id: Option<String>,
    /// 1–500, default 100.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only tasks with an id below this (the next page: the answer's `Link`, `rel="next"`).
    #[serde(default)]
    pub before: Option<i64>,
}

/// `GET /api/v1/vpses` paged and filtered on the controller's side. Without `limit`, every VPS
/// that matches (fine for a small site; a large one pages).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema, IntoParams))]
pub struct VpsListQuery {
    /// Page size, 1–1000. The answer's `Link` header (`rel="next"`) names the next page, and
    /// `X-Total-Count` says how many match in all.
    #[serde(default)]
    pub limit: Option<u32>,
    /// The page after this VPS name (names are unique; pages go by name).
    #[serde(default)]
    pub after: Option<String>,
    /// Only VPSes whose name or address contains this (at most 64 characters).
    #[serde(default)]
    pub q: Option<String>,
    /// Only the VPSes on this host.
    #[serde(default)]
    pub host_id: Option<i64>,
    /// Only the VPS of exactly this name.
    #[serde(default)]
    pub name: Option<String>,
    /// The order: `name` (the default), `ipv4`, `status`, `host`, `uptime`, `processes`,
    /// `cpu` or `memory` (the live figures as the controller has them now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// Largest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<bool>,
    /// The page starting this many VPSes in (a list that scrolls to any row); not with `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
}

/// The orders of the VPS list ([`VpsListQuery::sort`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VpsSort {
    #[default]
    Name,
    Ipv4,
    Status,
    Host,
    Uptime,
    Processes,
    Cpu,
    Memory,
}

impl VpsSort {
    pub const ALL: [VpsSort; 8] = [
        VpsSort::Name,
        VpsSort::Ipv4,
        VpsSort::Status,
        VpsSort::Host,
        VpsSort::Uptime,
        VpsSort::Processes,
        VpsSort::Cpu,
        VpsSort::Memory,
    ];

    /// Its name in the query.
    pub fn as_str(self) -> &'static str {
        match self {
            VpsSort::Name => "name",
            VpsSort::Ipv4 => "ipv4",
            VpsSort::Status => "status",
            VpsSort::Host => "host",
            VpsSort::Uptime => "uptime",
            VpsSort::Processes => "processes",
            VpsSort::Cpu => "cpu",
            VpsSort::Memory => "memory",
        }
    }
}

/// `GET /api/v1/hosts` paged and filtered on the controller's side, as [`VpsListQuery`]: without
/// `limit`, every host that matches.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema, IntoParams))]
pub struct HostListQuery {
    /// Page size, 1–1000 (`Link` names the next page, `X-Total-Count` the number matching).
    #[serde(default)]
    pub limit: Option<u32>,
    /// The page after this host name (pages go by name).
    #[serde(default)]
    pub after: Option<String>,
    /// Only hosts whose name or address contains this (at most 64 characters).
    #[serde(default)]
    pub q: Option<String>,
}

/// The largest page of a list.
pub const MAX_PAGE: u32 = 1000;

/// A VPS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VpsResponse {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub host_id: Option<i64>,
    pub host_name: Option<String>,
    pub template_id: Option<i64>,
    pub ipv4: String,
    pub hostname: String,
    pub memory_limit_bytes: i64,
    pub cpu_shares: Option<i32>,
    pub cpu_limit_millis: Option<i32>,
    pub disk_limit_bytes: Option<i64>,
    pub autostart: bool,
    /// Root in a privileged VPS is root on its host. Off by default: a VPS's ids are mapped to
    /// a range of its own on the host (`id_base`…`id_base`+65535).
    #[serde(default)]
    pub privileged: bool,
    /// Where the VPS's ids start on its host (absent when privileged).
    #[serde(default)]
    pub id_base: Option<i64>,
    /// What a person reads: `failing over` while netMON brings it up elsewhere, the operation
    /// in progress (`creating`, `moving` …), `host offline` when its host cannot be reached,
    /// else the observed state (`running`, `stopped` …).
    pub status: String,
    /// What the operator asked for; the controller keeps it so.
    pub desired_state: crate::state::DesiredState,
    /// What the controller knows of it on its host.
    pub observed_state: crate::state::ObservedState,
    /// The operation in progress, if any (with `busy_task`).
    pub operation: Option<crate::state::VpsOperation>,
    /// What its host reports now (`running`, `stopped` …), when the host is connected.
    pub state: Option<String>,
    /// The newest figures from its host.
    pub live: Option<crate::agent::VpsSample>,
    /// The task working on it now, if any.
    pub busy_task: Option<i64>,
    /// netMON: brought up on another host when its host is lost, restarted when its services
    /// stop answering.
    #[serde(default)]
    pub ha_enabled: bool,
    /// Who goes first when room is short (higher first).
    #[serde(default)]
    pub ha_priority: i32,
    /// The TCP ports its service checks try, besides an ICMP echo.
    #[serde(default)]
    pub check_ports: Vec<u16>,
    /// What netMON's service checks find now (absent: not checked, e.g. while it is stopped).
    #[serde(default)]
    pub services: Option<ServiceHealth>,
    /// netMON's standby copy of an HA VPS: where, and which restore point it holds.
    #[serde(default)]
    pub standby: Option<StandbyInfo>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Answer of `POST /vpses/{id}/failover` and `POST /hosts/{id}/failover`: the HA VPSes netMON
/// takes to another host (each stopped, duplicated once more, brought up elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FailoverResponse {
    pub vpses: Vec<i64>,
}

/// A standby copy of an HA VPS, kept on another host so a failover there starts from local
/// files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StandbyInfo {
    pub host_id: i64,
    /// The restore point it holds (absent: it is being made).
    #[serde(default)]
    pub cycle: Option<u64>,
}

/// netMON's service checks of a VPS: whether it answers, since when, and what failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ServiceHealth {
    pub up: bool,
    pub since: DateTime<Utc>,
    /// What did not answer (e.g. "tcp/80: connection refused").
    #[serde(default)]
    pub detail: Option<String>,
}

/// `POST /api/v1/vpses`: create a VPS from a template (a task).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateVpsRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub template_id: i64,
    /// The host; absent: placed where the most capacity is left.
    #[serde(default)]
    pub host_id: Option<i64>,
    pub ipv4: String,
    /// Default: the VPS's name.
    #[serde(default)]
    pub hostname: Option<String>,
    pub memory_limit_bytes: u64,
    /// Relative CPU weight (2–262144; 1024 is the default weight).
    #[serde(default)]
    pub cpu_shares: Option<u32>,
    /// Hard CPU limit in thousandths of a CPU (100–256000).
    #[serde(default)]
    pub cpu_limit_millis: Option<u32>,
    /// Disk the VPS may use, counted for placement.
    #[serde(default)]
    pub disk_limit_bytes: Option<u64>,
    /// Start with its host (default true).
    #[serde(default)]
    pub autostart: Option<bool>,
    /// Start it once created.
    #[serde(default)]
    pub start: bool,
    /// Run without an id mapping, root in the VPS being root on the host: only for templates
    /// that truly need it (default false).
    #[serde(default)]
    pub privileged: bool,
    /// netMON high availability: brought up on another host when its host is lost (default
    /// off).
    #[serde(default)]
    pub ha_enabled: bool,
    /// Who goes first when room is short (−1000–1000, higher first; default 0).
    #[serde(default)]
    pub ha_priority: i32,
    /// TCP ports its service checks try besides an ICMP echo (at most 8).
    #[serde(default)]
    pub check_ports: Vec<u32>,
}

/// `PATCH /api/v1/vpses/{id}`. Absent fields stay as they are.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateVpsRequest {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub ipv4: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub memory_limit_bytes: Option<u64>,
    /// 0 removes the setting.
    #[serde(default)]
    pub cpu_shares: Option<u32>,
    /// 0 removes the limit.
    #[serde(default)]
    pub cpu_limit_millis: Option<u32>,
    #[serde(default)]
    pub autostart: Option<bool>,
    #[serde(default)]
    pub ha_enabled: Option<bool>,
    #[serde(default)]
    pub ha_priority: Option<i32>,
    /// Replaces the list (an empty one: ICMP only).
    #[serde(default)]
    pub check_ports: Option<Vec<u32>>,
}

/// Answer of `PATCH /api/v1/vpses/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UpdateVpsResponse {
    pub vps: VpsResponse,
    /// A change (address or host name) takes effect at the next start.
    pub restart_required: bool,
    /// The task applying the change on the host, if the VPS is on one.
    pub task: Option<TaskResponse>,
}

/// `POST /api/v1/vpses/{id}/stop` (and `restart`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StopVpsRequest {
    /// Seconds to wait for a clean stop before forcing it (1–600, default 30).
    #[serde(default)]
    pub timeout_secs: Option<u32>,
}

/// `POST /api/v1/vpses/{id}/copy`: a clone under a new name and address.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CopyVpsRequest {
    pub name: String,
    pub ipv4: String,
    /// Default: the source's host.
    #[serde(default)]
    pub host_id: Option<i64>,
    #[serde(default)]
    pub start: bool,
}

/// `POST /api/v1/vpses/{id}/move`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MoveVpsRequest {
    pub host_id: i64,
}

/// One restore point of a VPS: a completed netDUPLO cycle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RestorePoint {
    pub cycle: u64,
    /// When the VPS's tree was read.
    pub taken_at: DateTime<Utc>,
    /// The host it was read on (absent when not recorded).
    pub host_id: Option<i64>,
    /// Whether the cycle compared the whole tree (the first one, or the journal could not
    /// vouch), and why.
    pub full: bool,
    pub full_reason: Option<String>,
    /// Entries of the tree at this point, and the bytes of its files.
    pub files: u64,
    pub bytes: u64,
    /// Files whose content the cycle read (changed ones: an unchanged file is not read again),
    /// and what it added to storage (new chunks, before compression).
    pub entries_read: u64,
    pub chunks_new: u64,
    pub bytes_new: u64,
    pub duration_ms: u64,
    /// How long the VPS was frozen for a consistent point (0: not frozen).
    pub freeze_ms: u64,
    /// The whole tree was read while the VPS was frozen.
    pub consistent: bool,
    /// The newest point only: cycles since found the VPS unchanged, the last of them at this
    /// time (recorded in batches, so it may trail the VPS's status a little).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchanged_until: Option<DateTime<Utc>>,
}

/// `GET /api/v1/vpses/{id}/duplo`: a VPS's duplication now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DuploStatus {
    pub vps_id: i64,
    pub enabled: bool,
    /// Its host's interval.
    pub interval_secs: u32,
    /// The newest restore point.
    pub last_cycle: Option<u64>,
    pub last_taken_at: Option<DateTime<Utc>>,
    /// The last cycle that found nothing changed since the newest point (and so landed none):
    /// the newest point still was the VPS's tree then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unchanged_at: Option<DateTime<Utc>>,
    /// How far storage is behind the VPS now (ms): the age of the newest point's read, or of
    /// the last cycle that found it unchanged since.
    pub lag_ms: Option<i64>,
    /// A cycle is running (since when).
    pub running_since: Option<DateTime<Utc>>,
    /// When the next cycle is due, in ms from now (0: as soon as it can run).
    pub next_in_ms: Option<i64>,
    /// Why the last cycle compared in full, when the change journal could not vouch for what
    /// changed (it was lost, or just started).
    pub journal_lost: Option<String>,
    /// Failed cycles in a row, and the last one's error.
    pub failures: u32,
    pub last_error: Option<String>,
    /// Restore points kept, and the newest few.
    pub points: u64,
    pub recent: Vec<RestorePoint>,
}

/// `PATCH /api/v1/vpses/{id}/duplo`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UpdateDuploRequest {
    /// Duplication of this VPS on or off (its restore points stay).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// One VPS's share of storage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StorageVps {
    pub vps_id: i64,
    /// Absent when the VPS was deleted (its points stay until pruned).
    pub name: Option<String>,
    pub points: u64,
    /// Bytes of files at its newest point.
    pub newest_bytes: u64,
    /// What its kept points' cycles added to storage (new chunks, before compression).
    pub bytes_added: u64,
}

/// `GET /api/v1/storage`: netDUPLO's storage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StorageReport {
    pub dir: String,
    /// The filesystem holding it.
    pub filesystem_bytes: Option<u64>,
    pub filesystem_free_bytes: Option<u64>,
    /// From the last chunk collection (absent until one ran).
    pub collected_at: Option<DateTime<Utc>>,
    pub points: u64,
    /// Chunks some point uses, and their stored (compressed) bytes.
    pub chunks_used: u64,
    pub bytes_stored: u64,
    /// Bytes of file content all points stand for: what storage would hold without sharing
    /// chunks between points and VPSes, and without compression.
    pub bytes_logical: u64,
    /// Unused chunks the next collection reclaims, and what the last one freed.
    pub bytes_reclaimable: u64,
    pub bytes_freed_last: u64,
    /// The retention policy in force.
    pub keep_last: u32,
    pub keep_hourly_days: u32,
    pub keep_daily_days: u32,
    pub vpses: Vec<StorageVps>,
}

/// A failover drill of an HA VPS: its newest restore point brought up on another host in an
/// isolated network, checked, removed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DrillResponse {
    pub id: i64,
    pub vps_id: i64,
    pub vps_name: String,
    /// Where the drill's copy ran.
    pub host_id: i64,
    pub host_name: String,
    pub task_id: Option<i64>,
    /// The restore point it came from.
    pub cycle: u64,
    pub point_taken_at: DateTime<Utc>,
    /// Who asked (`system:drill-schedule` for the schedule).
    pub started_by: String,
    /// `running`, `passed` or `failed`.
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How long the failover would have taken: netMON noticing the lost host (its lease), then
    /// the restore until the checks passed. Set when it passed.
    pub rto_ms: Option<i64>,
    /// How old its data would have been: the point's age when the drill began.
    pub rpo_ms: Option<i64>,
    /// The report, or why it failed.
    pub message: Option<String>,
    /// Its copy and network are gone from the host.
    pub cleaned: bool,
}

/// `POST /api/v1/hosts/{id}/drill`: a drill of each HA VPS on the host, one after another.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HostDrillResponse {
    /// The task of the first drill (each VPS gets its own).
    pub tasks: Vec<TaskResponse>,
    /// HA VPSes that could not be drilled, with why.
    pub refused: Vec<String>,
}

/// `POST /api/v1/vpses/{id}/restore`: from one of its restore points, in place (its files are
/// replaced; it is stopped for it) or, with `name` and `ipv4`, as a new VPS.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreVpsRequest {
    /// The restore point (its cycle).
    pub cycle: u64,
    /// A new VPS's name: restore as a clone instead of in place.
    #[serde(default)]
    pub name: Option<String>,
    /// The new VPS's address (with `name`).
    #[serde(default)]
    pub ipv4: Option<String>,
    /// The host to restore onto (default: the VPS's own).
    #[serde(default)]
    pub host_id: Option<i64>,
    /// Start it afterwards (default: in place, as it was asked to be; a clone, yes).
    #[serde(default)]
    pub start: Option<bool>,
}

/// `GET /api/v1/site`: is the site healthy, and what needs an operator now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SiteHealth {
    /// Nothing is wrong: no incident at all.
    pub healthy: bool,
    pub hosts: HostCounts,
    pub ha: HaCounts,
    pub duplication: DuplicationHealth,
    pub storage: StorageHealth,
    /// Failovers (netMON's and operators') in the last 24 hours.
    pub failovers_24h: u64,
    /// What is wrong now, worst first.
    pub incidents: Vec<Incident>,
    /// What the online hosts add up to now, and the VPSes.
    #[serde(default)]
    pub totals: SiteTotals,
}

/// The site's sums: the online hosts' newest samples, and its VPSes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SiteTotals {
    pub cpus: u64,
    /// Busy, averaged over every CPU online.
    pub cpu_pct: f64,
    pub memory_used: u64,
    pub memory_total: u64,
    pub rx_bytes_per_sec: f64,
    pub tx_bytes_per_sec: f64,
    pub vpses: u64,
    pub vpses_running: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HostCounts {
    pub total: u64,
    pub online: u64,
    /// Not answering (or refused: key changed, login refused), not in maintenance.
    pub down: u64,
    pub maintenance: u64,
}

/// HA VPSes that should run. Protected: running and answering on an online host, with a
/// restore point, duplication working, and another host to fail over to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HaCounts {
    pub total: u64,
    pub protected: u64,
    pub at_risk: Vec<AtRisk>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AtRisk {
    pub vps_id: i64,
    pub name: String,
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DuplicationHealth {
    /// VPSes with duplication on.
    pub vpses: u64,
    /// Of those, whose last cycle failed.
    pub failing: u64,
    /// Of those, with no restore point yet (not counted in the lag: nothing to fail over to).
    #[serde(default)]
    pub without_point: u64,
    /// The oldest newest point: how much a failover could lose at worst now (ms), and whose.
    pub max_lag_ms: Option<i64>,
    pub max_lag_vps: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StorageHealth {
    pub filesystem_bytes: Option<u64>,
    pub filesystem_free_bytes: Option<u64>,
}

/// What sort of incident it is (what alert rule it falls under).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// A host is offline or refuses the controller.
    HostLost,
    /// An HA VPS is being failed over.
    FailingOver,
    /// Its failover failed on every host tried.
    FailoverGaveUp,
    /// It waits for a host with room.
    NoRoom,
    DuplicationFailing,
    /// Its newest restore point is older than the site's threshold.
    DuplicationLagging,
    StorageFull,
}

/// Something wrong now that an operator should see, named, with what is being done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Incident {
    /// Stable while it lasts (`host:3`, `vps:7`, `duplo:7`, `lag:7`, `storage`).
    pub key: String,
    pub kind: IncidentKind,
    pub severity: Severity,
    /// One line: "Host ev1 is offline".
    pub title: String,
    /// What it means and what is being done about it.
    pub detail: String,
    /// The VPSes it touches, by name.
    pub vpses: Vec<String>,
    /// Since when, if known.
    pub since: Option<DateTime<Utc>>,
    /// The dashboard page to act from (`/hosts/3`, `/vpses/7`, `/storage`).
    pub link: String,
}

/// One of the controller's own backups (`serverware backup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BackupInfo {
    /// Its file name in the backup directory.
    pub name: String,
    pub size_bytes: u64,
    pub created_at: DateTime<Utc>,
    /// The release that made it.
    pub version: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    pub files: u64,
}

/// The backups, newest first, and the schedule they are made on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct BackupList {
    pub backups: Vec<BackupInfo>,
    /// Where they are (on the controller's machine).
    pub dir: String,
    /// A backup every this many hours (0: only when asked).
    pub every_hours: u32,
    pub keep: u32,
}
