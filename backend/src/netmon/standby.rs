//! Standby copies: why a failover's time does not grow with the VPS's size.
//!
//! Every HA VPS that is duplicated gets a standby host: the host with the most room besides its
//! own. After each cycle of the VPS lands, the standby host's copy is brought to that restore
//! point (`serverware-agent rootfs-standby`): only the chunks it lacks travel, and its unchanged
//! files are linked, not copied, so the work follows what changed, not how big the VPS is. One
//! copy per standby host is brought up to date at a time, and a copy is refreshed at most every
//! [`MIN_GAP`]: a VPS written to without pause costs its standby host little.
//!
//! A failover prefers the standby host ([`decide`](super::decide) places the VPS there when it
//! has room), and the restore there is seeded from the copy: what changed since the copy's point
//! travels, the rest is linked into the VPS's tree. Any other restore onto that host uses the
//! copy the same way. Without a copy (none yet, or a failover elsewhere) a failover still works,
//! by sending the whole point.
//!
//! Which host holds which copy is asked of the hosts (`StandbyList`) once per controller run and
//! kept in memory; copies nobody wants any more (the VPS gone, no longer HA, moved onto its
//! standby host, its standby host changed) are removed when their host can be reached.

use super::Monitor;
use serverware_shared::agent::{AgentRequest, AgentResponse, StandbyCopy};
use serverware_shared::{HostId, VpsId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shortest time between two refreshes of one copy.
pub const MIN_GAP: Duration = Duration::from_secs(2);
/// A standby host not heard from this long is replaced.
const LOST_AFTER: Duration = Duration::from_secs(60);
/// After a failed refresh, the next waits this long (doubling, at most 5 min).
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Copy {
    host: HostId,
    /// The restore point it holds (None: none yet, or not known to be whole).
    cycle: Option<u64>,
    busy: bool,
    /// When the last refresh ended, and how many failed in a row.
    ended: Option<Instant>,
    failures: u32,
}

#[derive(Default)]
struct Inner {
    copies: HashMap<VpsId, Copy>,
    /// Hosts whose copies were read (this run), or are being read.
    listed: HashSet<HostId>,
    /// Copies to remove: (host, VPS); and those being removed.
    drops: HashSet<(HostId, VpsId)>,
    dropping: HashSet<(HostId, VpsId)>,
    /// Hosts refreshing a copy now.
    refreshing: HashSet<HostId>,
    /// Hosts removed from the site (ids are never used again): a round that read one before it
    /// went neither picks it nor refreshes a copy on it.
    removed: HashSet<HostId>,
}

#[derive(Default)]
pub struct Standbys {
    inner: Mutex<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the API shows of a VPS's standby copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyView {
    pub host_id: HostId,
    pub cycle: Option<u64>,
}

/// An HA VPS as the standby manager needs it.
pub struct Want {
    pub id: VpsId,
    pub host: Option<HostId>,
    pub memory: u64,
    /// Duplicated, recorded as running or stopped (not being made), and no operation holds it.
    pub ready: bool,
}

impl Standbys {
    pub fn view(&self, vps: VpsId) -> Option<StandbyView> {
        lock(&self.inner).copies.get(&vps).map(|c| StandbyView {
            host_id: c.host,
            cycle: c.cycle,
        })
    }

    /// The host holding a copy of `vps`, if any.
    pub fn host_of(&self, vps: VpsId) -> Option<HostId> {
        lock(&self.inner).copies.get(&vps).map(|c| c.host)
    }
}

/// One round: reads the copies of hosts not read yet, picks standby hosts, starts the refreshes
/// and removals that are due. Never waits for a host.
pub fn tend(mon: &Arc<Monitor>, vpses: &[Want], room: &HashMap<HostId, (u64, bool)>) {
    let sb = &mon.netmon.standby;
    let now = Instant::now();
    let reachable = |h: HostId| {
        mon.hosts.connected(h)
            && mon
                .hosts
                .lease_times(h)
                .heard
                .is_some_and(|t| now.duration_since(t) < LOST_AFTER)
    };
    let mut inner = lock(&sb.inner);
    let removed = inner.removed.clone();
    let room: HashMap<HostId, (u64, bool)> = room
        .iter()
        .filter(|(h, _)| !removed.contains(h))
        .map(|(h, r)| (*h, *r))
        .collect();
    let room = &room;
    // Each host's copies, once per run.
    for &h in room.keys() {
        if !inner.listed.contains(&h) && mon.hosts.connected(h) {
            inner.listed.insert(h);
            let mon = mon.clone();
            tokio::spawn(async move { list(&mon, h).await });
        }
    }
    let wanted: HashMap<VpsId, &Want> = vpses.iter().map(|v| (v.id, v)).collect();
    // Copies of VPSes that are no longer HA (or gone).
    let gone: Vec<VpsId> = inner
        .copies
        .iter()
        .filter(|(id, c)| !wanted.contains_key(id) && !c.busy)
        .map(|(id, _)| *id)
        .collect();
    for id in gone {
        if let Some(c) = inner.copies.remove(&id) {
            inner.drops.insert((c.host, id));
        }
    }
    for v in vpses {
        let Some(vhost) = v.host else { continue };
        if !v.ready {
            continue;
        }
        // A copy on a host that can no longer serve as the standby: replaced.
        if let Some(c) = inner.copies.get(&v.id) {
            let usable = room.get(&c.host).is_some_and(|(_, maint)| !maint);
            if !c.busy && (c.host == vhost || !usable || !reachable(c.host)) {
                let host = c.host;
                inner.copies.remove(&v.id);
                inner.drops.insert((host, v.id));
            }
        }
        if !inner.copies.contains_key(&v.id) {
            let pick = room
                .iter()
                .filter(|(h, (free, maint))| {
                    **h != vhost
                        && !maint
                        && *free >= v.memory
                        && reachable(**h)
                        && !inner.drops.contains(&(**h, v.id))
                        && !inner.dropping.contains(&(**h, v.id))
                })
                .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(a.0)))
                .map(|(h, _)| *h);
            let Some(host) = pick else { continue };
            inner.copies.insert(
                v.id,
                Copy {
                    host,
                    cycle: None,
                    busy: false,
                    ended: None,
                    failures: 0,
                },
            );
        }
        let newest = mon.duplo.state(v.id).last_cycle;
        let c = inner.copies.get(&v.id).expect("just made").clone();
        let due = c.ended.is_none_or(|t| {
            let wait = if c.failures == 0 {
                MIN_GAP
            } else {
                RETRY
                    .saturating_mul(1 << c.failures.min(6))
                    .min(Duration::from_secs(300))
            };
            now.duration_since(t) >= wait
        });
        if newest == 0
            || c.busy
            || c.cycle == Some(newest)
            || !due
            || inner.refreshing.contains(&c.host)
            || !reachable(c.host)
        {
            continue;
        }
        inner.refreshing.insert(c.host);
        if let Some(x) = inner.copies.get_mut(&v.id) {
            x.busy = true;
        }
        let mon = mon.clone();
        let (vps, host) = (v.id, c.host);
        tokio::spawn(async move {
            let r = refresh(&mon, vps, host, newest).await;
            let mut inner = lock(&mon.netmon.standby.inner);
            inner.refreshing.remove(&host);
            if let Some(x) = inner.copies.get_mut(&vps).filter(|x| x.host == host) {
                x.busy = false;
                x.ended = Some(Instant::now());
                match &r {
                    Ok(()) => {
                        x.cycle = Some(newest);
                        x.failures = 0;
                    }
                    Err(_) => {
                        x.cycle = None;
                        x.failures += 1;
                    }
                }
            }
            if let Err(e) = r {
                tracing::warn!(
                    vps = %vps, host = %host,
                    "the standby copy was not brought up to date: {e}"
                );
            }
        });
    }
    start_drops(mon, &mut inner, room);
}

/// Starts the removals that are due, where the host can be reached (forgotten with a host that
/// is gone).
fn start_drops(mon: &Arc<Monitor>, inner: &mut Inner, room: &HashMap<HostId, (u64, bool)>) {
    inner.drops.retain(|(h, _)| room.contains_key(h));
    let due: Vec<(HostId, VpsId)> = inner
        .drops
        .iter()
        .filter(|(h, _)| mon.hosts.connected(*h))
        .copied()
        .collect();
    for d in due {
        inner.drops.remove(&d);
        inner.dropping.insert(d);
        let mon = mon.clone();
        tokio::spawn(async move {
            let r = drop_copy(&mon, d.0, d.1).await;
            let mut inner = lock(&mon.netmon.standby.inner);
            inner.dropping.remove(&d);
            if let Err(e) = r {
                tracing::warn!(host = %d.0, vps = %d.1, "a standby copy stays: {e}");
                inner.drops.insert(d);
            }
        });
    }
}

const CALL: Duration = Duration::from_secs(60);

async fn list(mon: &Arc<Monitor>, host: HostId) {
    let r = match mon.hosts.conn(host) {
        Some(c) => c
            .agent
            .call(AgentRequest::StandbyList, CALL)
            .await
            .map_err(|e| e.to_string()),
        None => Err("not connected".to_string()),
    };
    let mut inner = lock(&mon.netmon.standby.inner);
    let copies: Vec<StandbyCopy> = match r {
        Ok(AgentResponse::Standbys { copies }) => copies,
        other => {
            tracing::warn!(
                host = %host,
                "the host's standby copies could not be read: {other:?}"
            );
            inner.listed.remove(&host);
            return;
        }
    };
    for c in copies {
        match inner.copies.get(&VpsId(c.vps_id)) {
            None => {
                // Kept while it is wanted (the next round drops it otherwise).
                inner.copies.insert(
                    VpsId(c.vps_id),
                    Copy {
                        host,
                        cycle: c.cycle,
                        busy: false,
                        ended: None,
                        failures: 0,
                    },
                );
            }
            Some(x) if x.host != host => {
                inner.drops.insert((host, VpsId(c.vps_id)));
            }
            Some(_) => {}
        }
    }
}

async fn refresh(mon: &Arc<Monitor>, vps: VpsId, host: HostId, cycle: u64) -> Result<(), String> {
    let conn = mon
        .hosts
        .conn(host)
        .ok_or_else(|| "the standby host is not connected".to_string())?;
    let v = mon
        .db
        .run(move |c| crate::vps::load(c, vps))
        .await
        .map_err(|e| e.message())?;
    let _pin = mon.duplo.pin(vps, cycle);
    let duplo = mon.duplo.clone();
    let point = tokio::task::spawn_blocking(move || {
        crate::storage::points::load(&*duplo.store, vps, cycle)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("restore point {cycle}: {e}"))?;
    let t0 = Instant::now();
    let s = crate::duplo::restore::send_standby(
        mon.duplo.store.clone(),
        &conn,
        vps,
        v.ids_on_disk(),
        cycle,
        Arc::new(point),
    )
    .await
    .map_err(|e| e.message())?;
    tracing::debug!(
        vps = %v.name, host = %host,
        cycle,
        "standby copy at point {cycle} in {} ms: {} files linked, {} written, {} bytes received",
        t0.elapsed().as_millis(),
        s.files_kept,
        s.files_written,
        s.bytes_received
    );
    Ok(())
}

async fn drop_copy(mon: &Arc<Monitor>, host: HostId, vps: VpsId) -> Result<(), String> {
    let conn = mon
        .hosts
        .conn(host)
        .ok_or_else(|| "not connected".to_string())?;
    match conn
        .agent
        .call(AgentRequest::StandbyDrop { vps_id: vps.get() }, CALL)
        .await
        .map_err(|e| e.to_string())?
    {
        AgentResponse::Ok => Ok(()),
        AgentResponse::Error { message } => Err(message),
        other => Err(format!("the host answered {other:?}")),
    }
}

/// A host leaves the site: the copies it keeps are removed while it can still be reached, and
/// forgotten either way.
pub async fn clear_host(mon: &Monitor, host: HostId) {
    {
        let mut inner = lock(&mon.netmon.standby.inner);
        inner.removed.insert(host);
        inner.copies.retain(|_, c| c.host != host);
        inner.drops.retain(|(h, _)| *h != host);
        inner.listed.remove(&host);
    }
    // A refresh already sending a copy there ends first, so that its copy goes too.
    let deadline = tokio::time::Instant::now() + CALL;
    while lock(&mon.netmon.standby.inner).refreshing.contains(&host)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(conn) = mon.hosts.conn(host) else {
        return;
    };
    const QUICK: Duration = Duration::from_secs(10);
    if let Ok(AgentResponse::Standbys { copies }) =
        conn.agent.call(AgentRequest::StandbyList, QUICK).await
    {
        for c in copies {
            let r = conn
                .agent
                .call(AgentRequest::StandbyDrop { vps_id: c.vps_id }, QUICK)
                .await;
            if let Err(e) = r {
                tracing::warn!(
                    host = %host,
                    vps = %c.vps_id,
                    "a standby copy stays on a removed host: {e}"
                );
            }
        }
    }
}
