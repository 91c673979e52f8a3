//! netMON's decisions as pure logic: it is told what the world looks like now (hosts, their
//! heartbeats and leases, HA VPSes and whether their services answer) and what became of the
//! actions it asked for, and it answers with actions. It never waits, reads a clock or touches
//! a host itself, so scenario tests drive it through hours of failures in milliseconds (the
//! shape of Proxmox VE's pve-ha-manager, whose `Env` and simulator inspired it).
//!
//! The rules it keeps:
//! - **Never twice.** A VPS is brought up elsewhere only once its old host is fenced: the host's
//!   lease, no longer renewed, has surely run out (its agent and guard stop its HA VPSes by
//!   then). A VPS whose services still answer is never started elsewhere, fenced or not.
//! - **No false alarms.** A host is suspected only after its own heartbeat timeout; one that
//!   answers again before its lease ran out is simply trusted again (nothing was started).
//! - **Who goes first.** When room is short, higher priority first, then the older VPS.

use serde::{Deserialize, Serialize};
use serverware_shared::agent::may_fail_over;
use std::collections::{BTreeMap, BTreeSet};

pub use serverware_shared::{HostId, VpsId};
/// Milliseconds on the controller's monotonic clock.
pub type Ms = u64;

/// Bringing a VPS up may fail this many times (each after a longer pause) before it waits for
/// an operator.
const MAX_TRIES: u32 = 6;

/// The pause before bringing a VPS up again after it failed `tries` times: 2 s, 4 s, 8 s … 30 s.
fn retry_pause_ms(tries: u32) -> Ms {
    (1000u64 << tries.min(5)).min(30_000)
}

/// A failover that failed on as many hosts as it may be tried on, or whose bringing up failed
/// too often: it waits for an operator.
fn gave_up(p: &Params, f: &Failover) -> bool {
    f.failed_on.len() as u32 >= p.attempts || f.tries >= MAX_TRIES
}

/// The knobs, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Params {
    /// How long an agent's lease lasts past its last renewal.
    pub lease_ms: Ms,
    /// Added to the lease before a host counts as fenced: its guard asks its peers and stops
    /// the VPSes, and clocks drift.
    pub lease_margin_ms: Ms,
    /// Added to that margin for each HA VPS on the host: a guard kills them all at once, and
    /// more VPSes take longer to be gone.
    pub fence_per_vps_ms: Ms,
    /// How long a guard that held on (the controller was down) takes to ask its peers again.
    pub recheck_ms: Ms,
    /// How long a guard waits for its own renewal when a restarted controller renewed others
    /// first ([`serverware_shared::agent::RECONNECT_GRACE_MS`]).
    pub reconnect_grace_ms: Ms,
    /// How long a VPS's services may fail on a healthy host before it is restarted in place.
    pub service_grace_ms: Ms,
    /// A heartbeat must arrive this long after its services stopped answering before the host
    /// counts as healthy for that (one sent just before the host died does not).
    pub proof_of_life_ms: Ms,
    /// How long a started VPS gets for its services to answer.
    pub answer_within_ms: Ms,
    /// Restarts in place before a VPS is moved to another host instead.
    pub restarts_in_place: u32,
    /// Hosts a VPS is tried on before it waits for the operator.
    pub attempts: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            lease_ms: 3000,
            lease_margin_ms: 1000,
            fence_per_vps_ms: 25,
            recheck_ms: 1300,
            reconnect_grace_ms: serverware_shared::agent::RECONNECT_GRACE_MS,
            service_grace_ms: 1500,
            proof_of_life_ms: 250,
            answer_within_ms: 30_000,
            restarts_in_place: 1,
            attempts: 3,
        }
    }
}

/// A host as it is seen now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostObs {
    pub id: HostId,
    pub name: String,
    /// When its last heartbeat arrived (None: never since this controller started).
    pub heartbeat_at: Option<Ms>,
    /// How long without a heartbeat before it is suspected.
    pub heartbeat_timeout_ms: Ms,
    /// When the lease it may hold counts from: the arrival of the sample whose boot time the
    /// last renewal sent was based on. It runs out on the host no later than this plus the
    /// lease's length, however late that renewal arrives (None: none since this controller
    /// started).
    pub renewed_at: Option<Ms>,
    /// The same for the last renewal the host acknowledged: its lease holds until about then
    /// plus the lease's length.
    pub acked_at: Option<Ms>,
    /// Its lease's length ([`serverware_shared::agent::lease_ttl_ms`]).
    pub lease_ms: Ms,
    /// In maintenance: never failed over from, never placed on.
    pub maintenance: bool,
    /// Memory it can still give to VPSes.
    pub free_memory: u64,
}

/// Whether a VPS's services answer, as the last checks found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Services {
    /// Not checked yet.
    Unknown,
    /// Answering since then.
    Up { since: Ms },
    /// Not answering since then.
    Down { since: Ms },
}

/// An HA VPS as it is seen now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VpsObs {
    pub id: VpsId,
    pub name: String,
    /// The host it is recorded on.
    pub host: Option<HostId>,
    pub ha: bool,
    pub priority: i32,
    pub memory: u64,
    pub services: Services,
    /// Another operation (move, restore, …) holds it: netMON leaves it alone meanwhile.
    pub busy: bool,
    /// The host keeping a standby copy of it: a failover goes there when it has room.
    #[serde(default)]
    pub standby: Option<HostId>,
}

/// Everything netMON is told at a tick.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct World {
    pub hosts: Vec<HostObs>,
    pub vpses: Vec<VpsObs>,
    /// When the controller itself last could not run on time (it was starved): a host's
    /// silence is counted only from then on.
    #[serde(default)]
    pub stalled_at: Option<Ms>,
}

/// What netMON asks the world to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Stop renewing the host's lease: from now on it will fence itself.
    Revoke { host: HostId },
    /// Renew it again (it answered before its lease ran out).
    Renew { host: HostId },
    /// Stop the VPS and start it again where it is.
    Restart { vps: VpsId, host: HostId },
    /// Stop the VPS where it is (a healthy host) before it goes elsewhere.
    Stop { vps: VpsId, host: HostId },
    /// Bring the VPS up on `to` from its newest restore point, at its address, and record it
    /// there. Reported back with [`Outcome::Started`] or [`Outcome::Failed`].
    Recover {
        vps: VpsId,
        from: HostId,
        to: HostId,
    },
    /// Remove the stale copies a fenced host still holds of VPSes now running elsewhere.
    Clean { host: HostId, vpses: Vec<VpsId> },
    /// One failover ended: its timeline, for the events and the toasts.
    Timeline(Timeline),
    /// Something an operator should know (no room, gave up, …), said once.
    Warn {
        vps: Option<VpsId>,
        host: Option<HostId>,
        message: String,
    },
}

/// What became of an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Started {
        vps: VpsId,
        host: HostId,
    },
    Stopped {
        vps: VpsId,
    },
    Restarted {
        vps: VpsId,
    },
    Failed {
        vps: VpsId,
        host: HostId,
        why: String,
    },
    Cleaned {
        host: HostId,
    },
    /// Its stale copies could not all be removed (it could not be reached, or refused): asked
    /// again, and the host is not trusted meanwhile.
    NotCleaned {
        host: HostId,
    },
}

/// A failover under way, as people are told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverView {
    pub from: HostId,
    pub cause: Cause,
    pub by: Option<String>,
    /// Being brought up there now.
    pub to: Option<HostId>,
    /// Waiting for a host with room (or for its old host to be fenced).
    pub waiting: bool,
    /// It failed on as many hosts as it may be tried on: it waits for an operator.
    pub gave_up: bool,
}

/// One failover, from detection to services answering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub vps: VpsId,
    pub from: HostId,
    pub to: HostId,
    pub detected: Ms,
    pub fenced: Ms,
    pub placed: Ms,
    pub started: Ms,
    pub healthy: Ms,
    /// Why: the host was lost, or the VPS failed alone.
    pub cause: Cause,
    /// Who asked for it (an operator's failover).
    pub by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    HostLost,
    VpsFailed,
    Requested,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum HostState {
    Alive,
    /// Missed its heartbeats since `detected`; its lease is no longer renewed.
    Suspect {
        detected: Ms,
    },
    /// Its lease has surely run out: nothing of it runs any more.
    Fenced {
        detected: Ms,
        fenced: Ms,
    },
    /// Back after being fenced: its stale copies go before it is trusted again.
    Returning {
        detected: Ms,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Stage {
    /// Waiting for a host with room.
    Queued,
    /// Being stopped on its (healthy) host before it goes elsewhere.
    Stopping,
    /// Being brought up on `to`.
    Recovering { to: HostId, placed: Ms },
    /// Up on `to`; waiting for its services to answer.
    Checking { to: HostId, placed: Ms, started: Ms },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Failover {
    from: HostId,
    cause: Cause,
    detected: Ms,
    fenced: Ms,
    stage: Stage,
    /// Hosts it failed on, tried again for it only when no other host can take it.
    failed_on: BTreeSet<HostId>,
    /// Bringing it up failed this many times (the operation's error: storage or the host
    /// answering badly for a moment, not the VPS itself), and when it may be tried again.
    #[serde(default)]
    tries: u32,
    #[serde(default)]
    retry_at: Ms,
    /// Said "no room" already.
    warned: bool,
    /// Who asked for it (an operator's failover).
    #[serde(default)]
    by: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Restart {
    at: Ms,
    count: u32,
    done: bool,
}

/// netMON's memory between ticks. Serializable: a controller that restarts takes it up again.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manager {
    params: Params,
    hosts: BTreeMap<HostId, HostState>,
    failovers: BTreeMap<VpsId, Failover>,
    restarts: BTreeMap<VpsId, Restart>,
    /// Failed-over VPSes whose stale copy their old host may still hold.
    stale: BTreeMap<HostId, BTreeSet<VpsId>>,
    /// Hosts whose stale copies are being removed, and which.
    cleaning: BTreeMap<HostId, BTreeSet<VpsId>>,
    /// Since when the hosts whose leases are renewed have been at least half of all (see
    /// [`may_fail_over`]); None while they are not.
    quorum_since: Option<Ms>,
    /// Each VPS's host as last seen, and when it last settled: an operation (move, restore,
    /// …) let go of it or it turned up on another host. Its services are judged only from
    /// then on, and it gets as long to answer as a VPS netMON started itself.
    #[serde(default)]
    settled: BTreeMap<VpsId, Settled>,
}

/// Work another run of the controller was carrying out for a failover when it stopped, to be
/// driven again by the run that takes its memory over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The VPS was being stopped on its healthy host (an operator's failover): stop it again
    /// (stopping a stopped VPS is no change) and report [`Outcome::Stopped`].
    Stop { vps: VpsId, host: HostId },
    /// It was being brought up on `to`: its operation, if one was recorded, is finished by the
    /// operation engine; its end is the outcome. None recorded: see [`Manager::requeue`].
    Recovering { vps: VpsId, to: HostId },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Settled {
    host: Option<HostId>,
    at: Ms,
}

impl Manager {
    pub fn new(params: Params) -> Manager {
        Manager {
            params,
            ..Default::default()
        }
    }

    /// netMON's memory as written by another run of the controller, taken up by this one:
    /// every time it keeps is moved by `delta` ms onto this run's clock (a time that would fall
    /// before the clock's start is its start: later, never earlier, so nothing is decided sooner
    /// than it would have been), with this run's `params`. Work that was awaiting an answer
    /// from the other run is returned to be driven again (see [`Resume`]); the clean-ups it
    /// had under way are asked for again.
    pub fn taken_over(mut self, delta: i64, params: Params) -> (Manager, Vec<Resume>) {
        let shift = |t: Ms| (t as i64).saturating_add(delta).max(0) as Ms;
        self.params = params;
        for h in self.hosts.values_mut() {
            *h = match *h {
                HostState::Alive => HostState::Alive,
                HostState::Suspect { detected } => HostState::Suspect {
                    detected: shift(detected),
                },
                HostState::Fenced { detected, fenced } => HostState::Fenced {
                    detected: shift(detected),
                    fenced: shift(fenced),
                },
                HostState::Returning { detected } => HostState::Returning {
                    detected: shift(detected),
                },
            };
        }
        let mut resume = Vec::new();
        for (vps, f) in self.failovers.iter_mut() {
            f.detected = shift(f.detected);
            f.fenced = shift(f.fenced);
            f.stage = match f.stage {
                Stage::Queued => Stage::Queued,
                Stage::Stopping => {
                    resume.push(Resume::Stop {
                        vps: *vps,
                        host: f.from,
                    });
                    Stage::Stopping
                }
                Stage::Recovering { to, placed } => {
                    resume.push(Resume::Recovering { vps: *vps, to });
                    Stage::Recovering {
                        to,
                        placed: shift(placed),
                    }
                }
                Stage::Checking {
                    to,
                    placed,
                    started,
                } => Stage::Checking {
                    to,
                    placed: shift(placed),
                    started: shift(started),
                },
            };
        }
        for r in self.restarts.values_mut() {
            r.at = shift(r.at);
            // A restart the other run was carrying out is over, one way or the other: the
            // checks judge the VPS afresh.
            r.done = true;
        }
        self.quorum_since = self.quorum_since.map(shift);
        for st in self.settled.values_mut() {
            st.at = shift(st.at);
        }
        self.cleaning.clear();
        (self, resume)
    }

    /// A failover that was being brought up on a host when the other run stopped, and whose
    /// operation never began (or ended without bringing it up there): placed again, without
    /// counting that host against it.
    pub fn requeue(&mut self, vps: VpsId) {
        if let Some(f) = self.failovers.get_mut(&vps) {
            if matches!(f.stage, Stage::Recovering { .. }) {
                f.stage = Stage::Queued;
            }
        }
    }

    /// The hosts whose leases must not be renewed (suspected, fenced, or back but not yet
    /// cleaned of stale copies).
    pub fn untrusted_hosts(&self) -> Vec<HostId> {
        self.hosts
            .iter()
            .filter(|(_, s)| !matches!(s, HostState::Alive))
            .map(|(h, _)| *h)
            .collect()
    }

    /// Whether the host is trusted (alive and not being fenced or cleaned).
    pub fn host_alive(&self, host: HostId) -> bool {
        matches!(self.hosts.get(&host), None | Some(HostState::Alive))
    }

    /// The VPSes being failed over now.
    pub fn failing_over(&self) -> Vec<VpsId> {
        self.failovers.keys().copied().collect()
    }

    /// Where a VPS's failover stands, if one is under way.
    pub fn failover_view(&self, vps: VpsId) -> Option<FailoverView> {
        let f = self.failovers.get(&vps)?;
        Some(FailoverView {
            from: f.from,
            cause: f.cause,
            by: f.by.clone(),
            gave_up: self.gave_up(f),
            to: match f.stage {
                Stage::Recovering { to, .. } | Stage::Checking { to, .. } => Some(to),
                Stage::Queued | Stage::Stopping => None,
            },
            waiting: f.stage == Stage::Queued,
        })
    }

    /// Asks for one VPS to go to another host now (an operator's request, or a whole host's
    /// VPSes one by one): it is stopped where it is, then brought up elsewhere. Nothing if it
    /// is being failed over already.
    pub fn request(
        &mut self,
        now: Ms,
        vps: VpsId,
        from: HostId,
        by: Option<String>,
    ) -> Vec<Action> {
        if self.failovers.contains_key(&vps) {
            return Vec::new();
        }
        self.failovers.insert(
            vps,
            Failover {
                from,
                cause: Cause::Requested,
                detected: now,
                fenced: now,
                stage: Stage::Stopping,
                failed_on: BTreeSet::new(),
                tries: 0,
                retry_at: 0,
                warned: false,
                by,
            },
        );
        vec![Action::Stop { vps, host: from }]
    }

    /// Takes in what became of an action.
    pub fn outcome(&mut self, now: Ms, o: Outcome) -> Vec<Action> {
        let mut out = Vec::new();
        match o {
            Outcome::Started { vps, host } => {
                if let Some(f) = self.failovers.get_mut(&vps) {
                    if let Stage::Recovering { to, placed } = f.stage {
                        if to == host {
                            f.stage = Stage::Checking {
                                to,
                                placed,
                                started: now,
                            };
                        }
                    }
                }
            }
            Outcome::Stopped { vps } => {
                if let Some(f) = self.failovers.get_mut(&vps) {
                    if f.stage == Stage::Stopping {
                        f.fenced = now;
                        f.stage = Stage::Queued;
                        // Its old host keeps a stopped copy: removed once it runs elsewhere.
                    }
                }
            }
            Outcome::Restarted { vps } => {
                if let Some(r) = self.restarts.get_mut(&vps) {
                    r.done = true;
                    r.at = now;
                }
            }
            Outcome::Failed { vps, host, why } => {
                if let Some(f) = self.failovers.get_mut(&vps) {
                    match f.stage {
                        Stage::Recovering { to, .. } | Stage::Checking { to, .. } if to == host => {
                            // Elsewhere first; here again after a pause if nowhere else can
                            // take it (an error of the moment must not leave it down).
                            f.failed_on.insert(host);
                            f.tries += 1;
                            f.retry_at = now + retry_pause_ms(f.tries);
                            f.stage = Stage::Queued;
                            f.warned = false;
                            out.push(Action::Warn {
                                vps: Some(vps),
                                host: Some(host),
                                message: format!("bringing it up failed: {why}; trying again"),
                            });
                        }
                        Stage::Stopping => {
                            // Not stopped: it may still run, so it must not go elsewhere.
                            self.failovers.remove(&vps);
                            out.push(Action::Warn {
                                vps: Some(vps),
                                host: Some(host),
                                message: format!("it could not be stopped ({why}): it stays"),
                            });
                        }
                        _ => {}
                    }
                } else if let Some(r) = self.restarts.get_mut(&vps) {
                    r.done = true;
                    r.at = now;
                }
            }
            Outcome::NotCleaned { host } => {
                self.cleaning.remove(&host);
            }
            Outcome::Cleaned { host } => {
                let done = self.cleaning.remove(&host).unwrap_or_default();
                if let Some(s) = self.stale.get_mut(&host) {
                    s.retain(|v| !done.contains(v));
                    if s.is_empty() {
                        self.stale.remove(&host);
                    }
                }
                if let Some(HostState::Returning { .. }) = self.hosts.get(&host) {
                    self.hosts.insert(host, HostState::Alive);
                    out.push(Action::Renew { host });
                }
            }
        }
        out
    }

    /// One round: looks at the world and says what to do.
    pub fn tick(&mut self, now: Ms, w: &World) -> Vec<Action> {
        let mut out = Vec::new();
        self.hosts
            .retain(|id, _| w.hosts.iter().any(|h| h.id == *id));
        // Renewed lately enough that its guard's answer counts as renewed to a peer whose lease
        // ran out (see `renewed_slack_ms`).
        let renewed = w
            .hosts
            .iter()
            .filter(|h| {
                h.acked_at.is_some_and(|t| {
                    now < t + serverware_shared::agent::renewed_slack_ms(h.lease_ms)
                })
            })
            .count();
        if !may_fail_over(renewed, w.hosts.len()) {
            self.quorum_since = None;
        } else if self.quorum_since.is_none() {
            self.quorum_since = Some(now);
        }
        for h in &w.hosts {
            self.host(now, h, w, &mut out);
        }
        self.settled
            .retain(|id, _| w.vpses.iter().any(|v| v.id == *id));
        for v in &w.vpses {
            match self.settled.get(&v.id) {
                Some(s) if !v.busy && s.host == v.host => {}
                // First seen (a controller that starts knows nothing of what went before):
                // judged as it is now.
                None if !v.busy => {
                    self.settled.insert(
                        v.id,
                        Settled {
                            host: v.host,
                            at: 0,
                        },
                    );
                }
                _ => {
                    self.settled.insert(
                        v.id,
                        Settled {
                            host: v.host,
                            at: now,
                        },
                    );
                }
            }
            self.vps(now, v, w, &mut out);
        }
        self.failovers
            .retain(|id, _| w.vpses.iter().any(|v| v.id == *id && v.ha));
        self.place(now, w, &mut out);
        out
    }

    fn host(&mut self, now: Ms, h: &HostObs, w: &World, out: &mut Vec<Action>) {
        let state = *self.hosts.entry(h.id).or_insert(HostState::Alive);
        let silent = h
            .heartbeat_at
            .is_none_or(|t| now.saturating_sub(t) > h.heartbeat_timeout_ms);
        // A silence that began while the controller itself could not run is not the host's.
        let own_stall = w
            .stalled_at
            .is_some_and(|t| now.saturating_sub(t) <= h.heartbeat_timeout_ms);
        match state {
            HostState::Alive if silent && !own_stall && !h.maintenance => {
                self.hosts
                    .insert(h.id, HostState::Suspect { detected: now });
                out.push(Action::Revoke { host: h.id });
            }
            HostState::Alive => {}
            HostState::Suspect { .. } if !silent => {
                // Back before its lease ran out: it fenced nothing, nothing was started.
                self.hosts.insert(h.id, HostState::Alive);
                out.push(Action::Renew { host: h.id });
            }
            HostState::Suspect { detected } => {
                // Its lease has run out, its guard has stopped its VPSes by now, and a guard
                // that held on for a controller outage has since seen other leases renewed.
                let p = self.params;
                let ha_here = w
                    .vpses
                    .iter()
                    .filter(|v| v.ha && v.host == Some(h.id))
                    .count() as Ms;
                let margin = p.lease_margin_ms + p.fence_per_vps_ms * ha_here;
                let expired = h.renewed_at.is_none_or(|t| now >= t + h.lease_ms + margin);
                // Never renewed by this controller: its guard may be waiting for that.
                let grace = if h.renewed_at.is_none() {
                    p.reconnect_grace_ms
                } else {
                    0
                };
                let rechecked = self
                    .quorum_since
                    .is_some_and(|q| now >= q + p.recheck_ms + grace + margin);
                if expired && rechecked {
                    self.hosts.insert(
                        h.id,
                        HostState::Fenced {
                            detected,
                            fenced: now,
                        },
                    );
                    self.fail_host(now, h.id, detected, w);
                }
            }
            HostState::Fenced { detected, .. } if !silent => {
                self.hosts.insert(h.id, HostState::Returning { detected });
            }
            HostState::Fenced { detected, .. } => {
                // VPSes that still answered at the fence but have stopped since.
                self.fail_host(now, h.id, detected, w);
            }
            HostState::Returning { .. } => {}
        }
        if let Some(HostState::Returning { .. }) = self.hosts.get(&h.id) {
            if silent {
                // Gone again before it was cleaned.
                let detected = now;
                self.hosts.insert(
                    h.id,
                    HostState::Fenced {
                        detected,
                        fenced: now,
                    },
                );
                self.cleaning.remove(&h.id);
                return;
            }
            self.clean(h.id, out);
        }
    }

    /// The fenced host's HA VPSes that do not answer go elsewhere.
    fn fail_host(&mut self, now: Ms, host: HostId, detected: Ms, w: &World) {
        for v in w.vpses.iter().filter(|v| v.ha && v.host == Some(host)) {
            if self.failovers.contains_key(&v.id) || v.busy {
                continue;
            }
            if matches!(v.services, Services::Up { .. }) {
                // Still answering: it runs somewhere, and must not run twice.
                continue;
            }
            self.failovers.insert(
                v.id,
                Failover {
                    from: host,
                    cause: Cause::HostLost,
                    detected,
                    fenced: now,
                    stage: Stage::Queued,
                    failed_on: BTreeSet::new(),
                    tries: 0,
                    retry_at: 0,
                    warned: false,
                    by: None,
                },
            );
        }
    }

    fn vps(&mut self, now: Ms, v: &VpsObs, w: &World, out: &mut Vec<Action>) {
        // A failover in progress: is it up and answering yet?
        if let Some(f) = self.failovers.get_mut(&v.id) {
            if let Stage::Checking {
                to,
                placed,
                started,
            } = f.stage
            {
                match v.services {
                    Services::Up { since } if since >= started && v.host == Some(to) => {
                        let t = Timeline {
                            vps: v.id,
                            from: f.from,
                            to,
                            detected: f.detected,
                            fenced: f.fenced,
                            placed,
                            started,
                            healthy: since.max(started),
                            cause: f.cause,
                            by: f.by.clone(),
                        };
                        let from = f.from;
                        self.failovers.remove(&v.id);
                        self.restarts.remove(&v.id);
                        out.push(Action::Timeline(t));
                        // The hosts it left keep stopped copies: removed now where the host
                        // is trusted, else when it comes back.
                        self.stale.entry(from).or_default().insert(v.id);
                        let holders: Vec<HostId> = self
                            .stale
                            .iter()
                            .filter(|(h, s)| s.contains(&v.id) && self.host_alive(**h))
                            .map(|(h, _)| *h)
                            .collect();
                        for h in holders {
                            self.clean(h, out);
                        }
                    }
                    _ if now >= started + self.params.answer_within_ms => {
                        // It runs there, answering or not: stopped there before it goes on.
                        f.failed_on.insert(to);
                        self.stale.entry(f.from).or_default().insert(v.id);
                        f.from = to;
                        f.stage = Stage::Stopping;
                        out.push(Action::Warn {
                            vps: Some(v.id),
                            host: Some(to),
                            message:
                                "its services did not answer after it started; trying elsewhere"
                                    .into(),
                        });
                        out.push(Action::Stop {
                            vps: v.id,
                            host: to,
                        });
                    }
                    _ => {}
                }
            }
            return;
        }
        let Some(host) = v.host else { return };
        if !v.ha || v.busy || !self.host_alive(host) {
            return;
        }
        if w.hosts.iter().any(|h| h.id == host && h.maintenance) {
            return;
        }
        // Failing alone on a healthy host: restarted in place; if that does not bring it back,
        // stopped there and brought up elsewhere.
        let p = self.params;
        // Only a host heard from since its services stopped answering is known to be alive:
        // a host that died with them is not asked to restart anything (its VPSes fail over
        // once it is fenced).
        let heard_since = |since: Ms| {
            w.hosts
                .iter()
                .find(|h| h.id == host)
                .and_then(|h| h.heartbeat_at)
                .is_some_and(|t| t >= since + p.proof_of_life_ms)
        };
        // Down since before it last settled (a move or restore stopped it, and it has not
        // answered since): it is starting, and gets as long as a started VPS does.
        let settled = self.settled.get(&v.id).map_or(0, |s| s.at);
        let judged = |since: Ms| {
            if since <= settled {
                now >= settled + p.answer_within_ms && heard_since(settled)
            } else {
                now >= since + p.service_grace_ms && heard_since(since)
            }
        };
        match v.services {
            Services::Down { since } if judged(since) => {
                let next = match self.restarts.get(&v.id) {
                    None => Some(1),
                    Some(r) if !r.done => None,
                    Some(r) if now < r.at + p.answer_within_ms => None,
                    Some(r) if r.count < p.restarts_in_place => Some(r.count + 1),
                    Some(_) => Some(0),
                };
                match next {
                    None => {}
                    Some(0) => {
                        self.restarts.remove(&v.id);
                        self.failovers.insert(
                            v.id,
                            Failover {
                                from: host,
                                cause: Cause::VpsFailed,
                                detected: since,
                                fenced: now,
                                stage: Stage::Stopping,
                                failed_on: BTreeSet::new(),
                                tries: 0,
                                retry_at: 0,
                                warned: false,
                                by: None,
                            },
                        );
                        out.push(Action::Stop { vps: v.id, host });
                    }
                    Some(count) => {
                        self.restarts.insert(
                            v.id,
                            Restart {
                                at: now,
                                count,
                                done: false,
                            },
                        );
                        out.push(Action::Restart { vps: v.id, host });
                    }
                }
            }
            // Answering steadily again since its restart: a later failure starts afresh.
            Services::Up { since }
                if self.restarts.get(&v.id).is_some_and(|r| {
                    r.done && since >= r.at && now >= since + p.answer_within_ms
                }) =>
            {
                self.restarts.remove(&v.id);
            }
            _ => {}
        }
    }

    /// It failed on as many hosts as it may be tried on, or its bringing up failed too often:
    /// it waits for an operator.
    fn gave_up(&self, f: &Failover) -> bool {
        gave_up(&self.params, f)
    }

    /// Asks for the stale copies `host` holds to be removed, unless that is under way.
    fn clean(&mut self, host: HostId, out: &mut Vec<Action>) {
        if self.cleaning.contains_key(&host) {
            return;
        }
        let vpses = self.stale.get(&host).cloned().unwrap_or_default();
        out.push(Action::Clean {
            host,
            vpses: vpses.iter().copied().collect(),
        });
        self.cleaning.insert(host, vpses);
    }

    /// Places the queued failovers, highest priority first, each on the trusted host with the
    /// most room.
    fn place(&mut self, now: Ms, w: &World, out: &mut Vec<Action>) {
        let mut room: BTreeMap<HostId, u64> = w
            .hosts
            .iter()
            .filter(|h| !h.maintenance && self.host_alive(h.id))
            .filter(|h| {
                h.heartbeat_at
                    .is_some_and(|t| now.saturating_sub(t) <= h.heartbeat_timeout_ms)
            })
            .map(|h| (h.id, h.free_memory))
            .collect();
        // Room promised to recoveries under way (their VPS is not recorded there yet).
        for (id, f) in &self.failovers {
            if let Stage::Recovering { to, .. } = f.stage {
                let v = w.vpses.iter().find(|v| v.id == *id);
                if let (Some(v), Some(free)) = (v, room.get_mut(&to)) {
                    if v.host != Some(to) {
                        *free = free.saturating_sub(v.memory);
                    }
                }
            }
        }
        let mut queued: Vec<&VpsObs> = w
            .vpses
            .iter()
            .filter(|v| {
                self.failovers
                    .get(&v.id)
                    .is_some_and(|f| f.stage == Stage::Queued)
            })
            .collect();
        queued.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
        for v in queued {
            let f = self.failovers.get_mut(&v.id).expect("queued");
            if gave_up(&self.params, f) {
                if !f.warned {
                    f.warned = true;
                    out.push(Action::Warn {
                        vps: Some(v.id),
                        host: None,
                        message: format!(
                            "it failed on {} hosts; it waits for an operator",
                            f.failed_on.len()
                        ),
                    });
                }
                continue;
            }
            // Hosts it failed on only when no other can take it, and not before its pause.
            let others = room
                .iter()
                .any(|(h, free)| *h != f.from && !f.failed_on.contains(h) && *free >= v.memory);
            let again = !others && now >= f.retry_at;
            // Waiting for its pause to end on a host that failed it: not a lack of room.
            let pausing = !others
                && !again
                && room
                    .iter()
                    .any(|(h, free)| *h != f.from && f.failed_on.contains(h) && *free >= v.memory);
            let fits = |h: &HostId, free: &u64| {
                *h != f.from && (again || !f.failed_on.contains(h)) && *free >= v.memory
            };
            // Its standby host first (its files are there already), else the most room.
            let target = v
                .standby
                .filter(|s| room.get(s).is_some_and(|free| fits(s, free)))
                .or_else(|| {
                    room.iter()
                        .filter(|(h, free)| fits(h, free))
                        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                        .map(|(h, _)| *h)
                });
            match target {
                Some(to) => {
                    *room.get_mut(&to).expect("listed") -= v.memory;
                    f.stage = Stage::Recovering { to, placed: now };
                    out.push(Action::Recover {
                        vps: v.id,
                        from: f.from,
                        to,
                    });
                }
                None if !f.warned && !pausing => {
                    f.warned = true;
                    out.push(Action::Warn {
                        vps: Some(v.id),
                        host: None,
                        message: "no host has room for it now; it goes as soon as one has".into(),
                    });
                }
                None => {}
            }
        }
    }
}
