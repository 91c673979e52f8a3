//! netMON: watches hosts and HA VPSes and brings a lost host's VPSes up elsewhere. Its
//! decisions are pure logic ([`decide`]), tested on a simulated site (`sim`, `scenarios`);
//! this module feeds them what the controller sees (heartbeats, leases, service checks) and
//! carries out what they ask, through the same operations an operator uses. Its memory is
//! written (`repo::netmon`) before what it decided is carried out, and taken up again by the
//! next controller to run (`takeover.rs`).

mod act;
pub mod checks;
pub mod decide;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod sim;
pub mod standby;
mod takeover;

use crate::audit::{Actor, Change};
use crate::hosts::LeasePlan;
use act::act;
use chrono::{DateTime, Utc};
use decide::{HostObs, Manager, Ms, Outcome, Params, Services, VpsObs, World};
use serverware_shared::api::{ServiceHealth, Severity};
use serverware_shared::{HostId, VpsId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
pub(crate) use takeover::persist;

/// One round of decisions this often.
pub const TICK: Duration = Duration::from_millis(200);
/// A host not heard from since this controller started is suspected only this long after its
/// start plus its heartbeat timeout (connecting to every host takes a moment).
const CONNECT_GRACE_MS: Ms = 10_000;
/// Where netMON's clock stands when this controller starts: far from zero, so that the times a
/// previous run wrote down, moved onto this run's clock, stay what they were (see
/// [`Manager::taken_over`]).
const EPOCH_MS: Ms = 1 << 36;
/// HA VPSes' services are checked this often.
pub const CHECK_EVERY: Duration = Duration::from_millis(1000);
/// More HA VPSes than this have their checks' starts spread over [`SPREAD_OVER`].
const SPREAD_FROM: usize = 64;
const SPREAD_OVER: Duration = Duration::from_millis(800);

#[derive(Debug, Clone)]
struct Health {
    up: bool,
    since: Instant,
    since_utc: DateTime<Utc>,
    detail: Option<String>,
}

/// netMON as a service: its state and the parts it drives, handed over when the controller is
/// wired (`server.rs`). It carries out its decisions through the same VPS operations an
/// operator uses (`vpses`) and asks netDUPLO for a last cycle of a stopped VPS (`duplication`).
pub struct Monitor {
    pub db: crate::db::Db,
    pub hub: Arc<crate::hub::Hub>,
    pub hosts: Arc<crate::hosts::HostManager>,
    pub duplo: Arc<crate::duplo::Duplo>,
    pub duplication: Arc<crate::duplo::Duplication>,
    pub vpses: Arc<crate::vps::Vpses>,
    pub netmon: Arc<Netmon>,
}

/// netMON's state in the controller.
pub struct Netmon {
    started: Instant,
    manager: Mutex<Manager>,
    health: Mutex<HashMap<VpsId, Health>>,
    next_check: Mutex<Instant>,
    checking: std::sync::atomic::AtomicBool,
    /// Standby copies of the HA VPSes.
    pub standby: standby::Standbys,
    /// The VPSes being failed over, as last told to the dashboards.
    told: Mutex<std::collections::BTreeSet<VpsId>>,
    /// Whether the memory a previous run wrote down was taken up.
    taken_over: std::sync::atomic::AtomicBool,
    /// The memory as last written (held while writing, so writes land in order).
    written: tokio::sync::Mutex<Option<String>>,
    /// Hosts the previous run did not trust: they get no grace to connect (a host not heard
    /// since this run started is silent, not presumed alive).
    untrusted_at_start: Mutex<std::collections::BTreeSet<HostId>>,
    /// Every host's address as the leases carry it: the same list (the same `Arc`) from one
    /// round to the next until a host is added, removed or readdressed, so that a renewal
    /// knows at once whether its host already holds it.
    lease_peers: Mutex<Arc<Vec<(HostId, String)>>>,
    /// The service checks' ICMP socket, opened at the first round (or why it cannot be).
    checker: tokio::sync::OnceCell<Result<checks::Checker, String>>,
}

impl Default for Netmon {
    fn default() -> Self {
        Netmon {
            started: Instant::now(),
            manager: Mutex::new(Manager::new(Params::default())),
            health: Mutex::new(HashMap::new()),
            next_check: Mutex::new(Instant::now()),
            checking: Default::default(),
            standby: Default::default(),
            told: Default::default(),
            taken_over: Default::default(),
            written: Default::default(),
            untrusted_at_start: Default::default(),
            lease_peers: Default::default(),
            checker: Default::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Netmon {
    /// Whether netMON is bringing the VPS up elsewhere now.
    pub fn failing_over(&self, vps: VpsId) -> bool {
        lock(&self.manager).failing_over().contains(&vps)
    }

    /// Where a VPS's failover stands, if one is under way.
    pub fn failover(&self, vps: VpsId) -> Option<decide::FailoverView> {
        lock(&self.manager).failover_view(vps)
    }

    /// Tells the dashboards of each VPS whose failover began or ended since last told (its
    /// status reads `failing over` meanwhile).
    fn tell_failovers(&self, hub: &crate::hub::Hub) {
        let now: std::collections::BTreeSet<VpsId> =
            lock(&self.manager).failing_over().into_iter().collect();
        let mut told = lock(&self.told);
        for id in now.symmetric_difference(&told) {
            crate::vps::changed(hub, *id, serverware_shared::ws::ChangeKind::Updated);
        }
        *told = now;
    }

    /// What the service checks of a VPS find now (None: not checked).
    pub fn services(&self, vps: VpsId) -> Option<ServiceHealth> {
        lock(&self.health).get(&vps).map(|h| ServiceHealth {
            up: h.up,
            since: h.since_utc,
            detail: h.detail.clone(),
        })
    }

    fn ms(&self, t: Instant) -> Ms {
        EPOCH_MS + t.saturating_duration_since(self.started).as_millis() as Ms
    }

    fn record(&self, vps: VpsId, r: Result<(), String>) -> Option<bool> {
        let mut h = lock(&self.health);
        let up = r.is_ok();
        let changed = h.get(&vps).is_none_or(|x| x.up != up);
        if changed {
            h.insert(
                vps,
                Health {
                    up,
                    since: Instant::now(),
                    since_utc: Utc::now(),
                    detail: r.err(),
                },
            );
            Some(up)
        } else {
            if let (Some(x), Err(e)) = (h.get_mut(&vps), r) {
                x.detail = Some(e);
            }
            None
        }
    }
}

/// An HA VPS as netMON needs it.
struct HaVps {
    id: VpsId,
    name: String,
    host_id: Option<HostId>,
    ipv4: String,
    memory: i64,
    priority: i32,
    ports: Vec<u16>,
    running_wanted: bool,
    duplicated: bool,
    /// Being made (its files are not there yet).
    creating: bool,
}

struct HostInfo {
    id: HostId,
    name: String,
    address: String,
    timeout: Duration,
    interval_ms: u64,
    maintenance: bool,
}

/// What a round reads, in one unit of work (one snapshot): the hosts, the HA VPSes, the
/// claims, and what placement needs (the hosts' rows are read once for both).
async fn read(
    mon: &Monitor,
) -> Result<
    (
        Vec<HostInfo>,
        Vec<HaVps>,
        HashMap<VpsId, i64>,
        crate::vps::placement::SiteRead,
    ),
    String,
> {
    let (site, vs, claims) = mon
        .db
        .read(|c| {
            let site = crate::vps::placement::SiteRead::read(c)?;
            let vs = crate::repo::vpses::ha(c)?;
            let claims = crate::ops::claims::all(c)?;
            Ok((site, vs, claims))
        })
        .await
        .map_err(|e| e.message())?;
    let hosts = site
        .hosts
        .iter()
        .map(|h| HostInfo {
            id: h.id,
            timeout: crate::hosts::heartbeat(
                h.heartbeat_timeout_ms,
                h.sample_interval_ms.max(0) as u32,
            ),
            interval_ms: h.sample_interval_ms.max(0) as u64,
            maintenance: h.maintenance,
            name: h.name.clone(),
            address: h.address.clone(),
        })
        .collect();
    let vpses = vs
        .into_iter()
        .map(|(v, duplicated)| HaVps {
            ports: serverware_shared::validate::parse_check_ports(&v.check_ports),
            running_wanted: v.desired() == serverware_shared::state::DesiredState::Running,
            duplicated,
            creating: v.status == serverware_shared::state::ObservedState::Creating,
            id: v.id,
            name: v.name,
            host_id: v.host_id,
            ipv4: v.ipv4,
            memory: v.memory_limit_bytes,
            priority: v.ha_priority,
        })
        .collect();
    Ok((
        hosts,
        vpses,
        claims.into_iter().map(|(v, (_, t))| (v, t)).collect(),
        site,
    ))
}

/// Checks every HA VPS that should run, in the background (a large site's spread over the
/// second).
fn check_all(mon: &Arc<Monitor>, vpses: &[HaVps]) {
    let nm = &mon.netmon;
    {
        let mut next = lock(&nm.next_check);
        if Instant::now() < *next || nm.checking.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        *next = Instant::now() + CHECK_EVERY;
    }
    let targets: Vec<(VpsId, String, std::net::Ipv4Addr, Vec<u16>)> = vpses
        .iter()
        .filter(|v| v.running_wanted && v.host_id.is_some())
        .filter_map(|v| Some((v.id, v.name.clone(), v.ipv4.parse().ok()?, v.ports.clone())))
        .collect();
    {
        // Not checked any more (stopped on purpose, or no longer HA): forgotten.
        let keep: std::collections::HashSet<VpsId> = targets.iter().map(|t| t.0).collect();
        lock(&nm.health).retain(|id, _| keep.contains(id));
    }
    nm.checking.store(true, std::sync::atomic::Ordering::SeqCst);
    let mon = mon.clone();
    tokio::spawn(async move {
        // A large site's checks start spread over most of the second, not all at once (a
        // thousand probes at one instant would take a thousand threads and burst the network).
        let n = targets.len();
        let spread = |i: usize| {
            if n <= SPREAD_FROM {
                Duration::ZERO
            } else {
                SPREAD_OVER.mul_f64(i as f64 / n as f64)
            }
        };
        let checker = mon
            .netmon
            .checker
            .get_or_init(|| async { checks::Checker::open() })
            .await;
        let results = futures_util::future::join_all(targets.into_iter().enumerate().map(
            |(i, (id, name, ip, ports))| async move {
                tokio::time::sleep(spread(i)).await;
                let r = match checker {
                    Ok(c) => c.check(ip, &ports).await,
                    Err(e) => Err(e.clone()),
                };
                (id, name, r)
            },
        ))
        .await;
        for (id, name, r) in results {
            if let Some(up) = mon.netmon.record(id, r.clone()) {
                tracing::info!(
                    vps = %name,
                    "services {}",
                    if up {
                        "answer".to_string()
                    } else {
                        format!("do not answer: {}", r.err().unwrap_or_default())
                    }
                );
                crate::vps::changed(&mon.hub, id, serverware_shared::ws::ChangeKind::Updated);
            }
        }
        mon.netmon
            .checking
            .store(false, std::sync::atomic::Ordering::SeqCst);
    });
}

/// One round: what the world looks like, netMON's decisions, and their execution.
pub async fn tick(mon: &Arc<Monitor>) -> Result<(), String> {
    if !mon
        .netmon
        .taken_over
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        // Nothing is decided before the previous run's memory is taken up.
        takeover::take_over(mon).await?;
    }
    let (hosts, vpses, claims, site) = read(mon).await?;
    check_all(mon, &vpses);
    let nm = &mon.netmon;
    let now = nm.ms(Instant::now());
    // Each host's lease carries its HA VPSes and the other hosts' addresses.
    let cands = crate::vps::placement::candidates_in(&mon.vpses, &site, None);
    drop(site);
    let room: HashMap<HostId, i64> = cands.iter().map(|c| (c.id, c.free.memory_bytes)).collect();
    let wants: Vec<standby::Want> = vpses
        .iter()
        .filter(|v| v.duplicated)
        .map(|v| standby::Want {
            id: v.id,
            host: v.host_id,
            memory: v.memory.max(0) as u64,
            ready: !v.creating && !claims.contains_key(&v.id),
        })
        .collect();
    standby::tend(
        mon,
        &wants,
        &cands
            .iter()
            .map(|c| (c.id, (c.free.memory_bytes.max(0) as u64, c.maintenance)))
            .collect(),
    );
    // Per host, one pass each: its HA VPSes, and the one list of every host's address.
    let mut ha_on: HashMap<HostId, Vec<String>> = HashMap::new();
    for v in &vpses {
        if let Some(h) = v.host_id {
            ha_on.entry(h).or_default().push(v.name.clone());
        }
    }
    let all: Vec<(HostId, String)> = hosts
        .iter()
        .filter_map(|o| {
            Some((
                o.id,
                o.address.parse::<std::net::Ipv4Addr>().ok()?.to_string(),
            ))
        })
        .collect();
    let all = {
        let mut kept = lock(&nm.lease_peers);
        if **kept != all {
            *kept = Arc::new(all);
        }
        kept.clone()
    };
    for h in &hosts {
        mon.hosts.set_lease_plan(
            h.id,
            Some(LeasePlan {
                ha: ha_on.remove(&h.id).unwrap_or_default(),
                all: all.clone(),
                own: h.id,
            }),
        );
    }
    // A VPS netMON itself stopped to take it elsewhere stays netMON's until it runs there.
    let moving = lock(&nm.manager).failing_over();
    let world = World {
        stalled_at: crate::stall::last_stall_end().map(|i| nm.ms(i)),
        hosts: hosts
            .iter()
            .map(|h| {
                let t = mon.hosts.lease_times(h.id);
                HostObs {
                    id: h.id,
                    name: h.name.clone(),
                    // Never heard since this controller started: it gets a while to connect
                    // from its turn to (hosts connect a few at a time; one still waiting is
                    // not suspected), unless the last run had stopped trusting it.
                    heartbeat_at: match (t.heard, t.first_try) {
                        (Some(i), _) => Some(nm.ms(i)),
                        (None, _) if lock(&nm.untrusted_at_start).contains(&h.id) => None,
                        (None, Some(tried)) => {
                            Some((EPOCH_MS + CONNECT_GRACE_MS).max(nm.ms(tried) + CONNECT_GRACE_MS))
                        }
                        (None, None) => Some(now.max(EPOCH_MS + CONNECT_GRACE_MS)),
                    },
                    heartbeat_timeout_ms: h.timeout.as_millis() as Ms,
                    renewed_at: t.renewed.map(|i| nm.ms(i)),
                    acked_at: t.acked.map(|i| nm.ms(i)),
                    lease_ms: serverware_shared::agent::lease_ttl_ms(h.interval_ms),
                    maintenance: h.maintenance,
                    free_memory: room.get(&h.id).copied().unwrap_or(0).max(0) as u64,
                }
            })
            .collect(),
        vpses: vpses
            .iter()
            .map(|v| {
                let services = match lock(&nm.health).get(&v.id) {
                    Some(h) if h.up => Services::Up {
                        since: nm.ms(h.since),
                    },
                    Some(h) => Services::Down {
                        since: nm.ms(h.since),
                    },
                    None => Services::Unknown,
                };
                VpsObs {
                    id: v.id,
                    name: v.name.clone(),
                    host: v.host_id,
                    // Stopped on purpose: not netMON's to bring back.
                    ha: v.running_wanted || moving.contains(&v.id),
                    priority: v.priority,
                    memory: v.memory.max(0) as u64,
                    services,
                    busy: claims.contains_key(&v.id),
                    standby: nm.standby.host_of(v.id),
                }
            })
            .collect(),
    };
    let actions = lock(&nm.manager).tick(now, &world);
    nm.tell_failovers(&mon.hub);
    // Written before anything decided is carried out; carried out even if it could not be
    // (a lease revoked must stay revoked), and said as this round's failure.
    let written = persist(mon).await;
    for a in actions {
        act(mon, &hosts, &vpses, a).await;
    }
    tokio::time::sleep(TICK).await;
    written
}

fn outcome(mon: &Arc<Monitor>, o: Outcome) {
    let nm = &mon.netmon;
    let now = nm.ms(Instant::now());
    let more = lock(&nm.manager).outcome(now, o);
    nm.tell_failovers(&mon.hub);
    let mon = mon.clone();
    tokio::spawn(async move {
        if let Err(e) = persist(&mon).await {
            tracing::warn!("{e}");
        }
        let (hosts, vpses, _, _) = match read(&mon).await {
            Ok(r) => r,
            Err(_) => return,
        };
        for a in more {
            act(&mon, &hosts, &vpses, a).await;
        }
    });
}

/// Waits for a task to end; whether it succeeded, or its error.
async fn ended(mon: &Monitor, task: i64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let row = mon
            .db
            .run(move |c| crate::tasks::load(c, task))
            .await
            .map_err(|e| e.message())?;
        match row.status.as_str() {
            "succeeded" => return Ok(()),
            "failed" => return Err(row.error.unwrap_or_else(|| "it failed".into())),
            _ if Instant::now() > deadline => return Err("it did not end within an hour".into()),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn event(
    mon: &Monitor,
    action: &str,
    target: (&str, i64),
    severity: Severity,
    message: String,
    details: serde_json::Value,
) {
    event_by(
        mon,
        &Actor::system("netmon"),
        action,
        target,
        severity,
        message,
        details,
    )
    .await
}

/// An event of netMON's done on someone's behalf.
async fn event_by(
    mon: &Monitor,
    actor: &Actor,
    action: &str,
    target: (&str, i64),
    severity: Severity,
    message: String,
    details: serde_json::Value,
) {
    let (action, kind, id) = (action.to_string(), target.0.to_string(), target.1);
    let actor = actor.clone();
    let _ = mon
        .db
        .run(move |c| {
            crate::audit::record_system(
                c,
                &actor,
                Change::new(&action, &kind, id, message)
                    .severity(severity)
                    .details(details),
            )
        })
        .await;
}

/// An operator's failover of HA VPSes now (`POST /vpses/{id}/failover`, or every HA VPS of a
/// host): each is stopped where it is, duplicated once more (nothing is lost), then brought up
/// on the host with the most room from that point. The VPSes it takes on.
pub async fn request(
    mon: &Arc<Monitor>,
    vpses: Vec<VpsId>,
    by: &Actor,
) -> crate::error::Result<Vec<VpsId>> {
    if !mon
        .netmon
        .taken_over
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err(crate::error::Error::Busy(
            "netMON is taking up where the controller's last run left off; try again in a moment"
                .into(),
        ));
    }
    let (hosts, ha, _, _) = read(mon)
        .await
        .map_err(|e| crate::error::Error::Internal(anyhow::anyhow!(e)))?;
    let now = mon.netmon.ms(Instant::now());
    let mut taken = Vec::new();
    let mut actions = Vec::new();
    for id in vpses {
        let Some(v) = ha.iter().find(|v| v.id == id && v.running_wanted) else {
            continue;
        };
        let Some(host) = v.host_id else { continue };
        let a = lock(&mon.netmon.manager).request(now, id, host, Some(by.name.clone()));
        if !a.is_empty() {
            taken.push(id);
        }
        actions.extend(a);
    }
    mon.netmon.tell_failovers(&mon.hub);
    if let Err(e) = persist(mon).await {
        tracing::warn!("{e}");
    }
    for a in actions {
        act(mon, &hosts, &ha, a).await;
    }
    Ok(taken)
}

/// An operator's failover of one HA VPS now (`POST /vpses/{id}/failover`): refused with a
/// conflict when netMON does not take it on (not HA, should not run, or under way already).
pub async fn fail_over_vps(
    mon: &Arc<Monitor>,
    by: &Actor,
    id: VpsId,
) -> crate::error::Result<Vec<VpsId>> {
    mon.vpses.accepting()?;
    let v = mon.db.run(move |c| crate::vps::load(c, id)).await?;
    let vpses = request(mon, vec![id], by).await?;
    record_request(mon, by, &vpses).await;
    if vpses.is_empty() {
        return Err(crate::error::Error::conflict(
            None,
            format!(
                "VPS {} is not failed over: it is not HA, should not run, or is being failed over already",
                v.name
            ),
        ));
    }
    Ok(vpses)
}

/// Says who asked for the failovers netMON took on (`vps.failover`, audit), one event each.
pub async fn record_request(mon: &Monitor, by: &Actor, vpses: &[VpsId]) {
    for &id in vpses {
        let by = by.clone();
        let _ = mon
            .db
            .run(move |c| {
                let v = crate::vps::load(c, id)?;
                let (name, from) = (v.name, v.host_id);
                let host = match from {
                    Some(h) => crate::repo::hosts::name(c, h)?,
                    None => None,
                };
                crate::audit::record(
                    c,
                    &by,
                    Change::new(
                        "vps.failover",
                        "vps",
                        id,
                        format!(
                            "{} asked for VPS {name} to fail over{}: it is stopped, duplicated once more and brought up on another host",
                            by.name,
                            host.map(|h| format!(" from {h}")).unwrap_or_default()
                        ),
                    )
                    .details(serde_json::json!({ "from": from })),
                )
            })
            .await;
    }
}

/// A host put in maintenance: each of its VPSes is moved to the host with the most room (the
/// move operation, one at a time; a VPS that fits nowhere stays, said in an event).
pub fn evacuate(mon: Arc<Monitor>, actor: Actor, host: HostId) {
    tokio::spawn(async move {
        let ids = match mon
            .db
            .run(move |c| crate::repo::vpses::on_host(c, host))
            .await
        {
            Ok(v) => v,
            Err(_) => return,
        };
        for (id, name) in ids {
            let target = match crate::vps::placement::candidates(&mon.vpses, Some(id)).await {
                Ok(cands) => {
                    let v = match mon.db.run(move |c| crate::vps::load(c, id)).await {
                        Ok(v) => v,
                        Err(_) => continue,
                    };
                    let others: Vec<_> = cands.into_iter().filter(|c| c.id != host).collect();
                    crate::vps::placement::place(&others, &crate::vps::placement::need(&v))
                }
                Err(e) => Err(e.message()),
            };
            let r = match target {
                Ok(to) => match crate::vps::move_to(mon.vpses.clone(), actor.clone(), id, to).await
                {
                    Ok(t) => ended(&mon, t.id).await,
                    Err(e) => Err(e.message()),
                },
                Err(e) => Err(e),
            };
            if let Err(why) = r {
                event(
                    &mon,
                    "netmon.warning",
                    ("vps", id.get()),
                    Severity::Warning,
                    format!("VPS {name} stays on its host in maintenance: {why}"),
                    serde_json::json!({ "host_id": host }),
                )
                .await;
            }
        }
    });
}
