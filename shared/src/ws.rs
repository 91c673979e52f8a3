//! Messages of the events WebSocket `/api/v1/events` (JSON text frames, tagged by `type`).
//!
//! A client subscribes to topics; the controller sends it only messages of those topics.

use crate::api::EventResponse;
use crate::Role;
use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// What a socket can subscribe to. On the wire a topic is a string: `events`, `inventory`,
/// `hosts`, `host:<id>`, `tasks`, `vpses` or `vpses:<host id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Every new Event (audit and system), as stored.
    Events,
    /// Objects created, changed or deleted (users, tokens, settings, hosts).
    Inventory,
    /// Every host's status and a summary of each sample (for lists and the dashboard).
    Hosts,
    /// Every host's status changes only (online, offline …), without samples: what every page
    /// follows (a thousand hosts' figures each second are for the pages that show them).
    HostStates,
    /// One host's full netRES samples, as they arrive (for its page).
    Host(i64),
    /// Tasks: created, progress, log lines, finished.
    Tasks,
    /// Every VPS's live figures, as its host reports them.
    Vpses,
    /// The live figures of one host's VPSes (a list subscribes to the hosts of the rows it
    /// shows, not to a whole large site).
    VpsesOf(i64),
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Topic::Events => f.write_str("events"),
            Topic::Inventory => f.write_str("inventory"),
            Topic::Hosts => f.write_str("hosts"),
            Topic::HostStates => f.write_str("host-states"),
            Topic::Host(id) => write!(f, "host:{id}"),
            Topic::Tasks => f.write_str("tasks"),
            Topic::Vpses => f.write_str("vpses"),
            Topic::VpsesOf(id) => write!(f, "vpses:{id}"),
        }
    }
}

impl std::str::FromStr for Topic {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "events" => Ok(Topic::Events),
            "inventory" => Ok(Topic::Inventory),
            "hosts" => Ok(Topic::Hosts),
            "host-states" => Ok(Topic::HostStates),
            "tasks" => Ok(Topic::Tasks),
            "vpses" => Ok(Topic::Vpses),
            _ => {
                let id = |prefix: &str| {
                    s.strip_prefix(prefix)
                        .and_then(|id| id.parse::<i64>().ok())
                        .filter(|id| *id > 0)
                };
                id("host:")
                    .map(Topic::Host)
                    .or_else(|| id("vpses:").map(Topic::VpsesOf))
                    .ok_or_else(|| {
                        format!(
                            "unknown topic '{s}' (events, inventory, hosts, host-states, host:<id>, tasks, vpses or vpses:<host id>)"
                        )
                    })
            }
        }
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Topic {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(
                "^(events|inventory|hosts|host:[1-9][0-9]*|tasks|vpses)$",
            ))
            .description(Some(
                "`events`, `inventory`, `hosts`, `host:<id>`, `tasks` or `vpses`",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl ToSchema for Topic {}

impl Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Sent by the browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Subscribe { topics: Vec<Topic> },
    Unsubscribe { topics: Vec<Topic> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// An object that changed; clients re-read it through the REST API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct InventoryChange {
    /// `user`, `token`, `settings` (and later `host`, `vps`, `template`, `task`).
    pub kind: String,
    pub id: String,
    pub change: ChangeKind,
}

/// Sent by the controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First message on a new socket.
    Hello {
        username: String,
        role: Role,
        ping_interval_secs: u64,
    },
    /// The topics this socket now receives.
    Subscribed {
        topics: Vec<Topic>,
    },
    Event {
        event: EventResponse,
    },
    Inventory {
        change: InventoryChange,
    },
    /// A host's status changed (topics `hosts` and `host-states`), with its newest figures.
    HostStatus {
        host_id: i64,
        status: String,
        last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
        summary: Option<crate::agent::HostSummary>,
    },
    /// The newest figures of every host that sent a sample in the last second (topic `hosts`):
    /// one message a second for the whole site, not one per sample per host.
    HostStatuses {
        hosts: Vec<HostStatusEntry>,
    },
    /// One full sample of a host (topic `host:<id>`).
    HostSample {
        host_id: i64,
        sample: crate::agent::HostSample,
    },
    /// A task was created, progressed, logged a line (`line`) or finished (topic `tasks`).
    Task {
        task: crate::api::TaskResponse,
        line: Option<String>,
    },
    /// The containers of one host as it reports them, by name (topic `vpses`); VPS names are
    /// unique per site.
    VpsStats {
        host_id: i64,
        vpses: Vec<crate::agent::VpsSample>,
    },
    /// A message from the client could not be understood; the socket stays open.
    Error {
        message: String,
    },
}

/// A host's status and newest figures, in [`ServerMessage::HostStatuses`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HostStatusEntry {
    pub host_id: i64,
    pub status: String,
    pub last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
    pub summary: Option<crate::agent::HostSummary>,
}

impl ServerMessage {
    /// The topic a message belongs to; `None` for control messages sent to one socket. (A
    /// host's VPS figures go to [`Topic::VpsesOf`] that host too.)
    pub fn topic(&self) -> Option<Topic> {
        match self {
            ServerMessage::Event { .. } => Some(Topic::Events),
            ServerMessage::Inventory { .. } => Some(Topic::Inventory),
            ServerMessage::HostStatus { .. } | ServerMessage::HostStatuses { .. } => {
                Some(Topic::Hosts)
            }
            ServerMessage::HostSample { host_id, .. } => Some(Topic::Host(*host_id)),
            ServerMessage::Task { .. } => Some(Topic::Tasks),
            ServerMessage::VpsStats { .. } => Some(Topic::Vpses),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"subscribe","topics":["events"]}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Subscribe {
                topics: vec![Topic::Events]
            }
        );
        assert!(serde_json::from_str::<ClientMessage>(
            r#"{"type":"subscribe","topics":["secrets"]}"#
        )
        .is_err());
        let s = serde_json::to_string(&ServerMessage::Subscribed {
            topics: vec![Topic::Inventory],
        })
        .unwrap();
        assert_eq!(s, r#"{"type":"subscribed","topics":["inventory"]}"#);
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"subscribe","topics":["hosts","host:42","vpses:7"]}"#)
                .unwrap();
        assert_eq!(
            m,
            ClientMessage::Subscribe {
                topics: vec![Topic::Hosts, Topic::Host(42), Topic::VpsesOf(7)]
            }
        );
        assert_eq!(Topic::VpsesOf(7).to_string(), "vpses:7");
        for bad in [
            "host:", "host:x", "host:-1", "host:0", "HOSTS", "vpses:", "vpses:0",
        ] {
            assert!(
                serde_json::from_str::<Topic>(&format!("\"{bad}\"")).is_err(),
                "{bad}"
            );
        }
    }
}
