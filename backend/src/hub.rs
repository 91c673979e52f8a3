//! Fan-out of live messages to WebSocket clients. Each client has one bounded queue and a set of
//! topics; publishing never waits: a client whose queue is full is dropped, so a slow browser
//! never slows the controller.

use serverware_shared::ws::{ServerMessage, Topic};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Messages a client may have queued before it counts as too slow.
pub const CLIENT_QUEUE: usize = 256;

struct Client {
    tx: mpsc::Sender<Arc<str>>,
    topics: HashSet<Topic>,
}

#[derive(Default)]
pub struct Hub {
    clients: Mutex<HashMap<u64, Client>>,
    next_id: AtomicU64,
    dropped_slow: AtomicU64,
}

/// Removes its client from the hub when the socket ends, however it ends.
pub struct ClientGuard {
    hub: Arc<Hub>,
    pub id: u64,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.hub.lock().remove(&self.id);
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Client>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(self: &Arc<Self>) -> (ClientGuard, mpsc::Receiver<Arc<str>>) {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            Client {
                tx,
                topics: HashSet::new(),
            },
        );
        (
            ClientGuard {
                hub: self.clone(),
                id,
            },
            rx,
        )
    }

    /// Changes a client's topics and returns the ones it now has.
    pub fn update_topics(&self, id: u64, add: &[Topic], remove: &[Topic]) -> Vec<Topic> {
        let mut clients = self.lock();
        let Some(c) = clients.get_mut(&id) else {
            return Vec::new();
        };
        c.topics.extend(add.iter().copied());
        for t in remove {
            c.topics.remove(t);
        }
        let mut now: Vec<Topic> = c.topics.iter().copied().collect();
        now.sort();
        now
    }

    /// Sends `msg` to every client subscribed to its topic.
    pub fn publish(&self, msg: &ServerMessage) {
        let Some(topic) = msg.topic() else { return };
        self.publish_with(topic, || msg.clone());
    }

    /// Builds and sends a message of `topic` only when some client is subscribed to it.
    pub fn publish_with(&self, topic: Topic, build: impl FnOnce() -> ServerMessage) {
        if !self.lock().values().any(|c| c.topics.contains(&topic)) {
            return;
        }
        let msg = build();
        debug_assert!(
            msg.topic() == Some(topic)
                || matches!((&msg, topic), (ServerMessage::VpsStats { host_id, .. }, Topic::VpsesOf(h)) if *host_id == h)
                || matches!(
                    (&msg, topic),
                    (ServerMessage::HostStatus { .. }, Topic::HostStates)
                )
        );
        let Ok(json) = serde_json::to_string(&msg) else {
            return;
        };
        let json: Arc<str> = json.into();
        let mut clients = self.lock();
        let mut gone = Vec::new();
        for (id, c) in clients.iter() {
            if !c.topics.contains(&topic) {
                continue;
            }
            match c.tx.try_send(json.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(
                        client = id,
                        "dropping a WebSocket client that stopped reading"
                    );
                    self.dropped_slow.fetch_add(1, Ordering::Relaxed);
                    gone.push(*id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(*id),
            }
        }
        // Dropping the sender ends the client's queue; its socket task then closes the socket.
        for id in gone {
            clients.remove(&id);
        }
    }

    pub fn client_count(&self) -> usize {
        self.lock().len()
    }

    /// How many clients were dropped for not reading.
    pub fn dropped_slow(&self) -> u64 {
        self.dropped_slow.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serverware_shared::ws::{ChangeKind, InventoryChange};

    fn inv() -> ServerMessage {
        ServerMessage::Inventory {
            change: InventoryChange {
                kind: "user".into(),
                id: "1".into(),
                change: ChangeKind::Created,
            },
        }
    }

    #[test]
    fn only_subscribers_receive_and_full_queues_are_dropped() {
        let hub = Arc::new(Hub::default());
        let (a, mut rx_a) = hub.register();
        let (b, mut rx_b) = hub.register();
        hub.update_topics(a.id, &[Topic::Inventory], &[]);
        hub.publish(&inv());
        assert!(rx_a.try_recv().is_ok());
        assert!(rx_b.try_recv().is_err(), "b did not subscribe");
        for _ in 0..CLIENT_QUEUE + 1 {
            hub.publish(&inv());
        }
        assert_eq!(hub.client_count(), 1, "a was dropped, b stays");
        assert_eq!(hub.dropped_slow(), 1);
        drop(b);
        assert_eq!(hub.client_count(), 0);
    }
}
