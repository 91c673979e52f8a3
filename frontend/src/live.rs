//! The live events socket: connects while signed in, reconnects with backoff, re-subscribes to
//! the topics of the page in view and tells pages to refresh after a reconnect.

use leptos::prelude::*;
use serverware_shared::agent::{HostSample, HostSummary};
use serverware_shared::api::EventResponse;
use serverware_shared::ws::{ClientMessage, ServerMessage, Topic};
use std::collections::{BTreeMap, VecDeque};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// A host's newest pushed state, and its recent CPU % for sparklines.
#[derive(Debug, Clone, PartialEq)]
pub struct HostLive {
    pub status: String,
    pub last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
    pub summary: Option<HostSummary>,
    pub cpu_history: VecDeque<f64>,
}

/// (time ms, CPU %, memory bytes, rx B/s, tx B/s)
pub type VpsPoint = (f64, f64, f64, f64, f64);

/// A VPS's newest figures and a short history for its charts.
#[derive(Debug, Clone, PartialEq)]
pub struct VpsLive {
    pub host_id: i64,
    pub sample: serverware_shared::agent::VpsSample,
    pub history: VecDeque<VpsPoint>,
}

/// Points of a sparkline, and of a live chart on a host's page.
pub const SPARK_POINTS: usize = 60;
pub const LIVE_POINTS: usize = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Open,
    Offline,
}

/// Live state shared by all pages (a cheap `Copy` handle).
#[derive(Clone, Copy)]
pub struct Live {
    pub state: RwSignal<LinkState>,
    /// Bumped on every (re)connect: pages reload what they show.
    pub generation: RwSignal<u64>,
    /// Newest first; events pushed since the page subscribed.
    pub events: RwSignal<VecDeque<EventResponse>>,
    /// Bumped on every inventory change.
    pub inventory: RwSignal<u64>,
    /// Bumped when a host's status changes (not on every sample): pages re-read what depends
    /// on it (a VPS on a host that went offline).
    pub host_states: RwSignal<u64>,
    /// Bumped by what can change the site's health (a system event, a VPS or host change).
    pub site_changes: RwSignal<u64>,
    /// Newest status and summary per host id, as pushed (topic `hosts`).
    pub hosts: RwSignal<std::collections::HashMap<i64, HostLive>>,
    /// Tasks as last pushed, with their newest log line (topic `tasks`).
    pub tasks: RwSignal<
        std::collections::BTreeMap<i64, (serverware_shared::api::TaskResponse, Option<String>)>,
    >,
    /// Each VPS's newest figures, by name, and its recent CPU % and memory (topic `vpses`).
    pub vps_stats: RwSignal<std::collections::HashMap<String, VpsLive>>,
    /// Recent full samples of the hosts whose `host:<id>` topic a page subscribed to.
    pub samples: RwSignal<std::collections::HashMap<i64, VecDeque<HostSample>>>,
    /// Topic → how many mounted components want it.
    wanted: StoredValue<BTreeMap<Topic, usize>>,
    socket: StoredValue<Option<WebSocket>, LocalStorage>,
    enabled: StoredValue<bool>,
    attempt: StoredValue<u32>,
}

const KEEP_EVENTS: usize = 500;

impl Live {
    pub fn new() -> Self {
        Live {
            state: RwSignal::new(LinkState::Offline),
            generation: RwSignal::new(0),
            events: RwSignal::new(VecDeque::new()),
            inventory: RwSignal::new(0),
            host_states: RwSignal::new(0),
            site_changes: RwSignal::new(0),
            hosts: RwSignal::new(Default::default()),
            samples: RwSignal::new(Default::default()),
            tasks: RwSignal::new(Default::default()),
            vps_stats: RwSignal::new(Default::default()),
            wanted: StoredValue::new(BTreeMap::new()),
            socket: StoredValue::new_local(None),
            enabled: StoredValue::new(false),
            attempt: StoredValue::new(0),
        }
    }

    /// Connect (after login) or disconnect (after logout).
    pub fn set_enabled(self, on: bool) {
        self.enabled.set_value(on);
        if on {
            if self.socket.with_value(|s| s.is_none()) {
                self.connect();
            }
        } else {
            if let Some(ws) = self.socket.try_update_value(|s| s.take()).flatten() {
                let _ = ws.close();
            }
            self.state.set(LinkState::Offline);
        }
    }

    /// Subscribes to `topics` while the calling component is mounted.
    pub fn subscribe_while_mounted(self, topics: Vec<Topic>) {
        self.want(&topics);
        on_cleanup(move || self.unwant(&topics));
    }

    /// Subscribes to `topics` (counted: each [`Live::want`] is undone by one [`Live::unwant`]).
    pub fn want(self, topics: &[Topic]) {
        let mut new = Vec::new();
        self.wanted.update_value(|w| {
            for t in topics {
                let n = w.entry(*t).or_default();
                *n += 1;
                if *n == 1 {
                    new.push(*t);
                }
            }
        });
        if !new.is_empty() {
            self.send(&ClientMessage::Subscribe { topics: new });
        }
    }

    /// Undoes a [`Live::want`] of `topics`: those nobody wants any more are unsubscribed.
    pub fn unwant(self, topics: &[Topic]) {
        let mut gone = Vec::new();
        self.wanted.update_value(|w| {
            for t in topics {
                if let Some(n) = w.get_mut(t) {
                    *n -= 1;
                    if *n == 0 {
                        w.remove(t);
                        gone.push(*t);
                        if let Topic::Host(id) = t {
                            let id = *id;
                            self.samples.update(|m| {
                                m.remove(&id);
                            });
                        }
                    }
                }
            }
        });
        if !gone.is_empty() {
            self.send(&ClientMessage::Unsubscribe { topics: gone });
        }
    }

    fn send(self, msg: &ClientMessage) {
        let Ok(text) = serde_json::to_string(msg) else {
            return;
        };
        self.socket.with_value(|s| {
            if let Some(ws) = s {
                if ws.ready_state() == WebSocket::OPEN {
                    let _ = ws.send_with_str(&text);
                }
            }
        });
    }

    fn connect(self) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let loc = window.location();
        let proto = if loc.protocol().ok().as_deref() == Some("https:") {
            "wss"
        } else {
            "ws"
        };
        let host = loc.host().unwrap_or_default();
        let Ok(ws) = WebSocket::new(&format!("{proto}://{host}/api/v1/events")) else {
            self.schedule_reconnect();
            return;
        };
        self.state.set(LinkState::Connecting);

        let onopen = Closure::<dyn FnMut()>::new(move || {
            self.attempt.set_value(0);
            self.state.set(LinkState::Open);
            let topics: Vec<Topic> = self.wanted.with_value(|w| w.keys().copied().collect());
            if !topics.is_empty() {
                self.send(&ClientMessage::Subscribe { topics });
            }
            self.generation.update(|g| *g += 1);
        });
        let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let Some(text) = e.data().as_string() else {
                return;
            };
            if let Ok(msg) = serde_json::from_str::<ServerMessage>(&text) {
                self.receive(msg);
            }
        });
        let this_ws = ws.clone();
        let onclose = Closure::<dyn FnMut(CloseEvent)>::new(move |_e: CloseEvent| {
            // Only the current socket may trigger a reconnect.
            let current = self
                .socket
                .with_value(|s| s.as_ref().is_some_and(|w| w == &this_ws));
            if current {
                self.socket.set_value(None);
                self.state.set(LinkState::Offline);
                if self.enabled.get_value() {
                    self.schedule_reconnect();
                }
            }
        });
        ws.set_onopen(Some(onopen.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
        ws.set_onclose(Some(onclose.as_ref().unchecked_ref()));
        // The handlers live as long as the socket; they are few and small.
        onopen.forget();
        onmessage.forget();
        onclose.forget();
        self.socket.set_value(Some(ws));
    }

    /// One message from the controller, into the signals the pages read.
    fn receive(self, msg: ServerMessage) {
        match msg {
            ServerMessage::Event { event } => {
                if event.kind == serverware_shared::api::EventKind::System
                    || event.action.starts_with("vps.")
                    || event.action.starts_with("host.")
                {
                    self.site_changes.update(|n| *n += 1);
                }
                self.events.update(|v| {
                    v.push_front(event);
                    v.truncate(KEEP_EVENTS);
                })
            }
            ServerMessage::Inventory { change } => {
                if change.kind == "vps" || change.kind == "host" {
                    self.site_changes.update(|n| *n += 1);
                }
                self.inventory.update(|n| *n += 1)
            }
            ServerMessage::HostStatus {
                host_id,
                status,
                last_seen_at,
                summary,
            } => self.host_status(host_id, status, last_seen_at, summary),
            ServerMessage::HostStatuses { hosts } => {
                for h in hosts {
                    self.host_status(h.host_id, h.status, h.last_seen_at, h.summary);
                }
            }
            ServerMessage::Task { task, line } => self.tasks.update(|m| {
                let id = task.id;
                let keep = line.or_else(|| m.get(&id).and_then(|(_, l)| l.clone()));
                m.insert(id, (task, keep));
                while m.len() > 200 {
                    let first = *m.keys().next().unwrap_or(&id);
                    m.remove(&first);
                }
            }),
            ServerMessage::VpsStats { host_id, vpses } => self.vps_stats(host_id, vpses),
            ServerMessage::HostSample { host_id, sample } => {
                let wanted = self
                    .wanted
                    .with_value(|w| w.contains_key(&Topic::Host(host_id)));
                if wanted {
                    self.samples.update(|m| {
                        let ring = m.entry(host_id).or_default();
                        push_sample(ring, sample);
                    });
                }
            }
            _ => {}
        }
    }

    /// A host's state and newest summary; a change of state tells the pages that count them.
    fn host_status(
        self,
        host_id: i64,
        status: String,
        last_seen_at: Option<chrono::DateTime<chrono::Utc>>,
        summary: Option<HostSummary>,
    ) {
        let before = self
            .hosts
            .with_untracked(|m| m.get(&host_id).map(|h| h.status.clone()));
        if before.map_or(status != "online", |b| !b.is_empty() && b != status) {
            self.host_states.update(|n| *n += 1);
            self.site_changes.update(|n| *n += 1);
        }
        self.hosts.update(|m| {
            let h = m.entry(host_id).or_insert_with(|| HostLive {
                status: String::new(),
                last_seen_at: None,
                summary: None,
                cpu_history: VecDeque::new(),
            });
            let fresh = summary
                .is_some_and(|s| h.summary.is_none_or(|old| old.taken_at_ms != s.taken_at_ms));
            h.status = status;
            h.last_seen_at = last_seen_at;
            if let (true, Some(s)) = (fresh, summary) {
                h.summary = Some(s);
                h.cpu_history.push_back(s.cpu_pct);
                if h.cpu_history.len() > SPARK_POINTS {
                    h.cpu_history.pop_front();
                }
            }
        })
    }

    /// The VPSes of a host as sampled now, each with its recent history.
    fn vps_stats(self, host_id: i64, vpses: Vec<serverware_shared::agent::VpsSample>) {
        let now = js_sys::Date::now();
        self.vps_stats.update(|m| {
            for s in vpses {
                let e = m.entry(s.name.clone()).or_insert_with(|| VpsLive {
                    host_id,
                    sample: s.clone(),
                    history: VecDeque::new(),
                });
                e.host_id = host_id;
                e.history.push_back((
                    now,
                    s.cpu_pct,
                    s.memory_used as f64,
                    s.rx_bytes_per_sec,
                    s.tx_bytes_per_sec,
                ));
                while e.history.len() > LIVE_POINTS {
                    e.history.pop_front();
                }
                e.sample = s;
            }
        });
    }

    fn schedule_reconnect(self) {
        let n = self.attempt.get_value();
        self.attempt.set_value(n.saturating_add(1));
        // 0.5 s, 1 s, 2 s … up to 30 s, with jitter so many browsers do not return at once.
        let base = (500u32 << n.min(6)).min(30_000);
        let jitter = (js_sys::Math::random() * f64::from(base) * 0.3) as u32;
        gloo_timers::callback::Timeout::new(base + jitter, move || {
            if self.enabled.get_value() && self.socket.with_value(|s| s.is_none()) {
                self.connect();
            }
        })
        .forget();
    }
}

/// Appends a sample unless it is already there (a page seeds the ring from the API while
/// samples keep arriving), keeping the newest `LIVE_POINTS` in time order.
pub fn push_sample(ring: &mut VecDeque<HostSample>, sample: HostSample) {
    if ring
        .back()
        .is_some_and(|last| last.taken_at_ms >= sample.taken_at_ms)
    {
        return;
    }
    ring.push_back(sample);
    while ring.len() > LIVE_POINTS {
        ring.pop_front();
    }
}
