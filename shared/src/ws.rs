//! Messages of the events WebSocket `/api/v1/events` (JSON text frames, tagged by `type`).
//!
//! A client subscribes to topics; the controller sends it only messages of those topics.

use crate::api::EventResponse;
use crate::Role;
use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// What a socket can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    /// Every new Event (audit and system), as stored.
    Events,
    /// Objects created, changed or deleted (users, tokens, settings, hosts).
    Inventory,
    /// Every host's status and netRES samples, as they arrive.
    Hosts,
}

impl Topic {
    pub const ALL: [Topic; 3] = [Topic::Events, Topic::Inventory, Topic::Hosts];
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
    /// A host's status changed or it sent a sample.
    HostStatus {
        host_id: i64,
        status: String,
        last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
        sample: Option<crate::agent::HostSample>,
    },
    /// A message from the client could not be understood; the socket stays open.
    Error {
        message: String,
    },
}

impl ServerMessage {
    /// The topic a message belongs to; `None` for control messages sent to one socket.
    pub fn topic(&self) -> Option<Topic> {
        match self {
            ServerMessage::Event { .. } => Some(Topic::Events),
            ServerMessage::Inventory { .. } => Some(Topic::Inventory),
            ServerMessage::HostStatus { .. } => Some(Topic::Hosts),
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
    }
}
