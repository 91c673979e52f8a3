//! A simulated site for netMON's decisions: hosts that lose power or their link, agents that
//! fence themselves when their lease runs out, VPSes whose services answer only where they run,
//! restores that take time and can fail, and a controller that restarts. Every 100 ms step
//! checks that no VPS runs on two hosts. Scenario tests give a list of commands at times and
//! read the log (the way pve-ha-manager's `src/test/test-*/` do).

use super::decide::*;
use serverware_shared::agent::{guard_verdict, GuardVerdict};
use std::collections::{BTreeMap, BTreeSet};

pub const STEP: Ms = 100;
const HEARTBEAT_EVERY: Ms = 500;
const RENEW_EVERY: Ms = 1000;

pub struct SimHost {
    pub name: String,
    pub powered: bool,
    /// Reaches the controller (and the controller reaches its VPSes).
    pub linked: bool,
    pub memory: u64,
    pub heartbeat_at: Option<Ms>,
    /// The controller's side: when it last sent a renewal, and the last one acknowledged.
    pub renewed_at: Option<Ms>,
    pub acked_at: Option<Ms>,
    /// The host's side: when its agent last got one.
    pub lease_got: Option<Ms>,
    /// When its guard, holding on, asks its peers again.
    pub guard_next: Ms,
    pub maintenance: bool,
    /// Restores onto it fail.
    pub broken_disk: bool,
}

pub struct SimVps {
    pub name: String,
    pub host: HostId,
    pub running_on: BTreeSet<HostId>,
    pub priority: i32,
    pub memory: u64,
    pub services: Services,
    /// Its services never answer, wherever it runs.
    pub broken: bool,
    /// The host keeping its standby copy.
    pub standby: Option<HostId>,
    /// An operator's move holds it (netMON sees it busy) until then.
    pub moving: Option<(Ms, HostId)>,
    /// Its services answer only from then on (a moved VPS boots).
    pub answers_from: Ms,
}

enum Pending {
    Outcome(Outcome),
    Start {
        vps: VpsId,
        host: HostId,
    },
    Stop {
        vps: VpsId,
        host: HostId,
    },
    Clean {
        host: HostId,
        vpses: Vec<VpsId>,
    },
    /// An operator's move ends: it runs on its new host, booting.
    Moved {
        vps: VpsId,
    },
}

pub struct Sim {
    pub now: Ms,
    pub params: Params,
    pub manager: Manager,
    pub hosts: BTreeMap<HostId, SimHost>,
    pub vpses: BTreeMap<VpsId, SimVps>,
    revoked: BTreeSet<HostId>,
    pending: Vec<(Ms, Pending)>,
    pub log: Vec<String>,
    pub timelines: Vec<Timeline>,
    /// How long a restore and start takes.
    pub restore_ms: Ms,
    /// How long an operator's move holds a VPS, and how long it then takes to answer.
    pub move_ms: Ms,
    pub boot_ms: Ms,
    pub controller_up: bool,
    /// When the controller last woke from being starved.
    pub stalled_at: Option<Ms>,
    /// How long a host may be silent before it is suspected (real hosts: 3 s).
    pub heartbeat_timeout_ms: Ms,
    /// It has just woken: the samples that waited are read after its first decisions.
    unread: bool,
}

impl Sim {
    /// `hosts` hosts (node-a, node-b, …) with `memory` each.
    pub fn new(hosts: usize, memory: u64) -> Sim {
        let params = Params::default();
        let mut s = Sim {
            now: 0,
            params,
            manager: Manager::new(params),
            hosts: BTreeMap::new(),
            vpses: BTreeMap::new(),
            revoked: BTreeSet::new(),
            pending: Vec::new(),
            log: Vec::new(),
            timelines: Vec::new(),
            restore_ms: 1500,
            move_ms: 3000,
            boot_ms: 600,
            controller_up: true,
            stalled_at: None,
            unread: false,
            heartbeat_timeout_ms: 1500,
        };
        for i in 0..hosts {
            s.hosts.insert(
                HostId(i as i64 + 1),
                SimHost {
                    name: format!("node-{}", (b'a' + i as u8) as char),
                    powered: true,
                    linked: true,
                    memory,
                    heartbeat_at: Some(0),
                    renewed_at: Some(0),
                    acked_at: Some(0),
                    lease_got: Some(0),
                    guard_next: 0,
                    maintenance: false,
                    broken_disk: false,
                },
            );
        }
        s
    }

    pub fn host_id(&self, name: &str) -> HostId {
        *self
            .hosts
            .iter()
            .find(|(_, h)| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
            .0
    }

    pub fn vps_id(&self, name: &str) -> VpsId {
        *self
            .vpses
            .iter()
            .find(|(_, v)| v.name == name)
            .unwrap_or_else(|| panic!("no VPS {name}"))
            .0
    }

    /// An HA VPS running on `host`.
    pub fn add_vps(&mut self, name: &str, host: &str, memory: u64, priority: i32) {
        let h = self.host_id(host);
        let id = VpsId(self.vpses.len() as i64 + 100);
        self.vpses.insert(
            id,
            SimVps {
                name: name.into(),
                host: h,
                running_on: [h].into(),
                priority,
                memory,
                services: Services::Up { since: 0 },
                broken: false,
                standby: None,
                moving: None,
                answers_from: 0,
            },
        );
    }

    /// `host` keeps a standby copy of VPS `name`.
    pub fn standby(&mut self, name: &str, host: &str) {
        let (v, h) = (self.vps_id(name), self.host_id(host));
        self.vpses.get_mut(&v).expect("listed").standby = Some(h);
    }

    fn say(&mut self, line: String) {
        self.log.push(format!("{:>6} {line}", self.now));
    }

    fn hname(&self, h: HostId) -> String {
        self.hosts[&h].name.clone()
    }

    fn vname(&self, v: VpsId) -> String {
        self.vpses[&v].name.clone()
    }

    /// Runs a command: `power-off H`, `power-on H`, `cut H`, `mend H`, `kill V`, `break V`,
    /// `break-disk H`, `maintenance H`, `move V H` (an operator's move: stopped, busy for
    /// [`Sim::move_ms`], then started on H and answering [`Sim::boot_ms`] later),
    /// `controller-down`, `controller-up`, `controller-restart` (its operations go on),
    /// `controller-crash` (killed right after a decision: nothing it set out to do began),
    /// `controller-starved` and `controller-wakes` (it could not run meanwhile; on waking it
    /// decides once before it reads the samples that waited).
    pub fn command(&mut self, cmd: &str) {
        self.say(format!("cmd {cmd}"));
        let (verb, arg) = cmd.split_once(' ').unwrap_or((cmd, ""));
        match verb {
            "power-off" => {
                let h = self.host_id(arg);
                self.hosts.get_mut(&h).unwrap().powered = false;
                for v in self.vpses.values_mut() {
                    v.running_on.remove(&h);
                }
            }
            "power-on" => {
                // It boots with every VPS stopped: HA VPSes start only under a lease.
                let h = self.host_id(arg);
                let host = self.hosts.get_mut(&h).unwrap();
                host.powered = true;
                host.lease_got = None;
            }
            "cut" => {
                let h = self.host_id(arg);
                self.hosts.get_mut(&h).unwrap().linked = false;
            }
            "mend" => {
                let h = self.host_id(arg);
                self.hosts.get_mut(&h).unwrap().linked = true;
            }
            "kill" => {
                let v = self.vps_id(arg);
                self.vpses.get_mut(&v).unwrap().running_on.clear();
            }
            "break" => {
                let v = self.vps_id(arg);
                self.vpses.get_mut(&v).unwrap().broken = true;
            }
            "break-disk" => {
                let h = self.host_id(arg);
                self.hosts.get_mut(&h).unwrap().broken_disk = true;
            }
            "mend-disk" => {
                let h = self.host_id(arg);
                self.hosts.get_mut(&h).unwrap().broken_disk = false;
            }
            "move" => {
                let (v, h) = arg.split_once(' ').expect("move VPS HOST");
                let (v, h) = (self.vps_id(v), self.host_id(h));
                let until = self.now + self.move_ms;
                let vps = self.vpses.get_mut(&v).unwrap();
                vps.running_on.clear();
                vps.moving = Some((until, h));
                self.pending.push((until, Pending::Moved { vps: v }));
            }
            "maintenance" => {
                let h = self.host_id(arg);
                self.hosts.get_mut(&h).unwrap().maintenance = true;
            }
            "controller-down" | "controller-starved" => self.controller_up = false,
            "controller-wakes" => {
                self.controller_up = true;
                self.stalled_at = Some(self.now);
                self.unread = true;
            }
            "controller-up" => self.controller_up = true,
            "controller-restart" => {
                // Its memory survives only as what it stored; the work it had under way was
                // recorded operations, which the next run's engine finishes.
                let saved = serde_json::to_string(&self.manager).unwrap();
                let old: Manager = serde_json::from_str(&saved).unwrap();
                (self.manager, _) = old.taken_over(0, self.params);
            }
            "controller-crash" => {
                // Killed right after deciding: nothing it set out to do began, its revocations
                // were in memory only. The next run takes up what it stored.
                self.pending
                    .retain(|(_, p)| matches!(p, Pending::Moved { .. }));
                self.revoked.clear();
                let saved = serde_json::to_string(&self.manager).unwrap();
                let old: Manager = serde_json::from_str(&saved).unwrap();
                let (m, resume) = old.taken_over(0, self.params);
                self.manager = m;
                for h in self.manager.untrusted_hosts() {
                    self.revoked.insert(h);
                }
                for r in resume {
                    match r {
                        Resume::Stop { vps, host } => {
                            self.pending
                                .push((self.now + STEP, Pending::Stop { vps, host }));
                        }
                        Resume::Recovering { vps, to } => {
                            if self.vpses[&vps].running_on.contains(&to) {
                                self.pending.push((
                                    self.now,
                                    Pending::Outcome(Outcome::Started { vps, host: to }),
                                ));
                            } else {
                                self.manager.requeue(vps);
                            }
                        }
                    }
                }
            }
            other => panic!("unknown command {other}"),
        }
    }

    /// Runs until `until`, with `commands` at their times (one already past runs at once).
    pub fn run(&mut self, until: Ms, commands: &[(Ms, &str)]) {
        let mut due: Vec<(Ms, &str)> = commands.to_vec();
        due.sort_by_key(|c| c.0);
        let mut next = 0;
        while self.now <= until {
            while next < due.len() && due[next].0 <= self.now {
                self.command(due[next].1);
                next += 1;
            }
            self.step();
            self.now += STEP;
        }
    }

    fn step(&mut self) {
        let now = self.now;
        // Hosts: heartbeats and lease renewals cross the link only while the controller runs.
        for (id, h) in self.hosts.iter_mut() {
            let reach = h.powered && h.linked && self.controller_up;
            if reach && !self.unread && now.is_multiple_of(HEARTBEAT_EVERY) {
                h.heartbeat_at = Some(now);
            }
            // Sent while the controller believes the connection up; received only if it is.
            let connected = h.heartbeat_at.is_some_and(|t| now <= t + 1500);
            if self.controller_up
                && connected
                && !self.revoked.contains(id)
                && now.is_multiple_of(RENEW_EVERY)
            {
                // A lease counts from the host's last sample (its `base_ms`), not from now.
                h.renewed_at = h.heartbeat_at;
                if reach {
                    h.lease_got = h.heartbeat_at;
                    h.acked_at = h.heartbeat_at;
                }
            }
        }
        // The host side: a guard whose lease ran out asks the peers it can reach whether theirs
        // hold, and fences or holds on by the same rule as the real one.
        let lease = self.params.lease_ms;
        let n = self.hosts.len();
        let holds = |h: &SimHost| h.lease_got.is_some_and(|t| now <= t + lease);
        let mut fenced = Vec::new();
        let mut held = Vec::new();
        for (id, h) in &self.hosts {
            if !h.powered || holds(h) || now < h.guard_next {
                continue;
            }
            // A peer counts as renewed only if renewed since this host's lease stopped being.
            let slack = serverware_shared::agent::renewed_slack_ms(lease);
            let own = h.lease_got.unwrap_or(0);
            let answers: Vec<bool> = self
                .hosts
                .iter()
                .filter(|(o, p)| *o != id && p.powered && p.linked && h.linked)
                .map(|(_, p)| holds(p) && p.lease_got.is_some_and(|t| t > own + slack))
                .collect();
            match guard_verdict(n, &answers) {
                GuardVerdict::Fence => fenced.push(*id),
                GuardVerdict::Hold => held.push(*id),
            }
        }
        for h in held {
            self.hosts.get_mut(&h).unwrap().guard_next = now + 1000;
        }
        for h in fenced {
            let mut stopped = Vec::new();
            for (vid, v) in self.vpses.iter_mut() {
                if v.running_on.remove(&h) {
                    stopped.push(*vid);
                }
            }
            for v in stopped {
                let line = format!("{} fenced itself: stopped {}", self.hname(h), self.vname(v));
                self.say(line);
            }
        }
        // Work in flight lands.
        let due: Vec<Pending> = {
            let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|(t, _)| *t <= now);
            self.pending = rest;
            due.into_iter().map(|(_, p)| p).collect()
        };
        let mut outcomes = Vec::new();
        for p in due {
            match p {
                Pending::Outcome(o) => outcomes.push(o),
                Pending::Start { vps, host } => {
                    let h = &self.hosts[&host];
                    if h.powered && h.linked && !h.broken_disk {
                        let v = self.vpses.get_mut(&vps).unwrap();
                        v.running_on.insert(host);
                        v.host = host;
                        outcomes.push(Outcome::Started { vps, host });
                    } else {
                        outcomes.push(Outcome::Failed {
                            vps,
                            host,
                            why: "the host did not answer".into(),
                        });
                    }
                }
                Pending::Moved { vps } => {
                    let boot = self.boot_ms;
                    let v = self.vpses.get_mut(&vps).unwrap();
                    let (_, to) = v.moving.take().expect("moving");
                    v.host = to;
                    v.running_on.insert(to);
                    v.answers_from = now + boot;
                    let line = format!("moved {} to {}", v.name, self.hosts[&to].name);
                    self.say(line);
                }
                Pending::Stop { vps, host } => {
                    self.vpses.get_mut(&vps).unwrap().running_on.remove(&host);
                    outcomes.push(Outcome::Stopped { vps });
                }
                Pending::Clean { host, vpses } => {
                    for v in &vpses {
                        assert!(
                            !self.vpses[v].running_on.contains(&host),
                            "a stale copy was running"
                        );
                    }
                    outcomes.push(Outcome::Cleaned { host });
                }
            }
        }
        // Services: a VPS answers where it runs, if the controller can reach that host.
        for v in self.vpses.values_mut() {
            let answers = !v.broken
                && now >= v.answers_from
                && v.running_on.iter().any(|h| {
                    let h = &self.hosts[h];
                    h.powered && h.linked
                });
            v.services = match (v.services, answers) {
                (Services::Up { since }, true) => Services::Up { since },
                (_, true) => Services::Up { since: now },
                (Services::Down { since }, false) => Services::Down { since },
                (_, false) => Services::Down { since: now },
            };
            assert!(
                v.running_on.len() <= 1,
                "at {now} ms {} runs on {:?}",
                v.name,
                v.running_on
            );
        }
        if !self.controller_up {
            return;
        }
        let mut actions = Vec::new();
        for o in outcomes {
            actions.extend(self.manager.outcome(now, o));
        }
        let world = self.world();
        actions.extend(self.manager.tick(now, &world));
        for a in actions {
            self.act(a);
        }
        if std::mem::take(&mut self.unread) {
            // The samples that queued while it was starved, read now.
            for h in self.hosts.values_mut() {
                if h.powered && h.linked {
                    h.heartbeat_at = Some(now);
                }
            }
        }
    }

    fn world(&self) -> World {
        World {
            stalled_at: self.stalled_at,
            hosts: self
                .hosts
                .iter()
                .map(|(id, h)| HostObs {
                    id: *id,
                    name: h.name.clone(),
                    heartbeat_at: h.heartbeat_at,
                    heartbeat_timeout_ms: self.heartbeat_timeout_ms,
                    renewed_at: h.renewed_at,
                    acked_at: h.acked_at,
                    lease_ms: self.params.lease_ms,
                    maintenance: h.maintenance,
                    free_memory: h.memory
                        - self
                            .vpses
                            .values()
                            .filter(|v| v.host == *id)
                            .map(|v| v.memory)
                            .sum::<u64>(),
                })
                .collect(),
            vpses: self
                .vpses
                .iter()
                .map(|(id, v)| VpsObs {
                    id: *id,
                    name: v.name.clone(),
                    host: Some(v.host),
                    ha: true,
                    priority: v.priority,
                    memory: v.memory,
                    services: v.services,
                    busy: v.moving.is_some(),
                    standby: v.standby,
                })
                .collect(),
        }
    }

    fn act(&mut self, a: Action) {
        let now = self.now;
        match a {
            Action::Revoke { host } => {
                self.revoked.insert(host);
                let l = format!("suspect {}: lease no longer renewed", self.hname(host));
                self.say(l);
            }
            Action::Renew { host } => {
                self.revoked.remove(&host);
                // At once, not at the next round of renewals.
                let h = self.hosts.get_mut(&host).unwrap();
                if h.powered && h.linked {
                    h.renewed_at = h.heartbeat_at;
                    h.acked_at = h.heartbeat_at;
                    h.lease_got = h.heartbeat_at;
                }
                let l = format!("trust {} again", self.hname(host));
                self.say(l);
            }
            Action::Restart { vps, host } => {
                let l = format!("restart {} on {}", self.vname(vps), self.hname(host));
                self.say(l);
                let ok = self.hosts[&host].powered;
                if ok {
                    self.vpses.get_mut(&vps).unwrap().running_on.insert(host);
                }
                self.pending
                    .push((now + 1000, Pending::Outcome(Outcome::Restarted { vps })));
            }
            Action::Stop { vps, host } => {
                let l = format!("stop {} on {}", self.vname(vps), self.hname(host));
                self.say(l);
                self.pending.push((now + 500, Pending::Stop { vps, host }));
            }
            Action::Recover { vps, from, to } => {
                let l = format!(
                    "recover {} from {} on {}",
                    self.vname(vps),
                    self.hname(from),
                    self.hname(to)
                );
                self.say(l);
                self.pending
                    .push((now + self.restore_ms, Pending::Start { vps, host: to }));
            }
            Action::Clean { host, vpses } => {
                let names: Vec<String> = vpses.iter().map(|v| self.vname(*v)).collect();
                let l = format!("clean {} of {}", self.hname(host), names.join(", "));
                self.say(l);
                self.pending
                    .push((now + 300, Pending::Clean { host, vpses }));
            }
            Action::Timeline(t) => {
                let l = format!(
                    "failed over {} {}→{}: detected {} fenced {} placed {} started {} healthy {}",
                    self.vname(t.vps),
                    self.hname(t.from),
                    self.hname(t.to),
                    t.detected,
                    t.fenced,
                    t.placed,
                    t.started,
                    t.healthy
                );
                self.say(l);
                self.timelines.push(t);
            }
            Action::Warn { vps, message, .. } => {
                let who = vps.map(|v| self.vname(v)).unwrap_or_default();
                self.say(format!("warn {who}: {message}"));
            }
        }
    }

    /// The log without its times, for comparing the order of what happened.
    pub fn lines(&self) -> Vec<String> {
        self.log.iter().map(|l| l[7..].to_string()).collect()
    }

    /// Where each VPS runs now (name → host name).
    pub fn placement(&self) -> BTreeMap<String, Vec<String>> {
        self.vpses
            .values()
            .map(|v| {
                (
                    v.name.clone(),
                    v.running_on.iter().map(|h| self.hname(*h)).collect(),
                )
            })
            .collect()
    }

    /// How long after `since` a VPS answered again on another host.
    pub fn failover_ms(&self, vps: &str, since: Ms) -> Option<Ms> {
        let id = self.vps_id(vps);
        self.timelines
            .iter()
            .find(|t| t.vps == id)
            .map(|t| t.healthy - since)
    }
}
