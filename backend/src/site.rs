//! The site at a glance (`GET /api/v1/site`): whether it is healthy, and each incident an
//! operator should see now, named, with what is being done about it and where to act.
//!
//! Everything is read from what the controller knows this instant (host connections, netMON's
//! failovers, netDUPLO's cycles, the storage disk); nothing is stored, so an incident ends the
//! moment its cause does.

use crate::error::Result;
use crate::repo;
use serverware_shared::api::{
    AtRisk, DuplicationHealth, HaCounts, HostCounts, Incident, IncidentKind, Severity, SiteHealth,
    StorageHealth, VpsResponse,
};
use serverware_shared::state::HostStatus;
use serverware_shared::VpsId;
use std::collections::HashMap;
use std::sync::Arc;

/// Reads of the site's health asked at the same time share one computation (at 10,000 VPSes
/// one costs a few hundred ms, and every open dashboard asks again after each change). Never
/// stale: a read is answered by a computation that began after it arrived, so a burst of any
/// size costs at most two (the one running and the next, for everyone who came meanwhile).
pub struct SharedReads<T> {
    /// Reads asked so far (a read's number is its place in this count).
    arrivals: std::sync::atomic::AtomicU64,
    /// One computation at a time; the last one's answer and the reads it covers (numbers up
    /// to this one arrived before it began).
    last: tokio::sync::Mutex<Option<(u64, Arc<T>)>>,
}

impl<T> Default for SharedReads<T> {
    fn default() -> Self {
        SharedReads {
            arrivals: Default::default(),
            last: tokio::sync::Mutex::new(None),
        }
    }
}

impl<T> SharedReads<T> {
    pub async fn get<F, Fut>(&self, compute: F) -> Result<Arc<T>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        use std::sync::atomic::Ordering::SeqCst;
        let me = self.arrivals.fetch_add(1, SeqCst) + 1;
        let mut last = self.last.lock().await;
        if let Some((covered, answer)) = last.as_ref() {
            if *covered >= me {
                return Ok(answer.clone());
            }
        }
        let covered = self.arrivals.load(SeqCst);
        let answer = Arc::new(compute().await?);
        *last = Some((covered, answer.clone()));
        Ok(answer)
    }
}

/// Storage this full is an incident (a warning; an error past [`STORAGE_FULL`]).
const STORAGE_WARN: f64 = 0.85;
const STORAGE_FULL: f64 = 0.95;

struct Host {
    id: i64,
    name: String,
    maintenance: bool,
    status: HostStatus,
    last_seen: Option<chrono::DateTime<chrono::Utc>>,
    /// netDUPLO's interval for its VPSes (ms).
    interval_ms: i64,
    /// Its newest sample's figures (online hosts).
    summary: Option<serverware_shared::agent::HostSummary>,
}

pub async fn health(state: &Arc<crate::vps::Vpses>) -> Result<SiteHealth> {
    let vpses = crate::vps::list(state).await?;
    let since = (chrono::Utc::now() - chrono::TimeDelta::hours(24)).naive_utc();
    let (rows, newest, duplicated, failovers_24h, lag_minutes) = state
        .db
        .read(move |c| {
            let rows: Vec<_> = repo::hosts::list(c)?
                .into_iter()
                .map(|h| {
                    (
                        h.id,
                        h.name,
                        h.maintenance,
                        h.last_seen_at,
                        h.duplo_interval_secs,
                    )
                })
                .collect();
            let newest = repo::points::newest_taken(c)?;
            let duplicated = repo::vpses::duplicated_ids(c)?;
            let failovers = repo::events::count_since(c, "netmon.failover", since)?;
            let lag = crate::settings::alert_lag_minutes(c)?;
            Ok((rows, newest, duplicated, failovers, lag))
        })
        .await?;
    let hosts: Vec<Host> = rows
        .into_iter()
        .map(|(id, name, maintenance, seen, interval)| {
            let (status, summary, last_seen) = state
                .hosts
                .with_view(id, |v| {
                    let online = v.status == Some(HostStatus::Online);
                    (
                        v.status,
                        v.latest.as_ref().filter(|_| online).map(|s| s.summary()),
                        v.last_seen,
                    )
                })
                .unwrap_or((None, None, None));
            Host {
                summary,
                id: id.get(),
                name,
                maintenance,
                status: status.unwrap_or(HostStatus::Connecting),
                last_seen: last_seen.or(seen.map(|t| t.and_utc())),
                interval_ms: i64::from(interval.max(0)) * 1000,
            }
        })
        .collect();
    let newest: HashMap<i64, i64> = newest
        .into_iter()
        .filter_map(|(v, t)| Some((v, t?.and_utc().timestamp_millis())))
        .collect();
    Ok(assess(
        state,
        &hosts,
        &vpses,
        &newest,
        // A set: ten thousand VPSes each looked up in a list were 10^8 comparisons a round.
        &duplicated.iter().map(|v| v.get()).collect(),
        failovers_24h.max(0) as u64,
        i64::from(lag_minutes) * 60_000,
    ))
}

/// What `assess` looks at.
struct Site<'a> {
    state: &'a crate::vps::Vpses,
    hosts: &'a [Host],
    vpses: &'a [VpsResponse],
    newest: &'a HashMap<i64, i64>,
    duplicated: &'a std::collections::HashSet<i64>,
    /// Hosts that can take a failed-over VPS.
    usable: Vec<i64>,
    /// A newest restore point older than this is an incident.
    lag_threshold_ms: i64,
    /// Where each host is in `hosts`, by id.
    by_id: HashMap<i64, usize>,
}

fn up(h: &Host) -> bool {
    h.status == HostStatus::Online
}

fn wanted(v: &VpsResponse) -> bool {
    v.desired_state == serverware_shared::state::DesiredState::Running
}

impl Site<'_> {
    fn host(&self, id: Option<i64>) -> Option<&Host> {
        id.and_then(|id| self.by_id.get(&id).map(|i| &self.hosts[*i]))
    }

    fn host_name(&self, id: i64) -> String {
        self.host(Some(id))
            .map(|h| h.name.clone())
            .unwrap_or_else(|| format!("#{id}"))
    }

    /// Hosts lost, and what becomes of the VPSes that should run on them.
    fn hosts_lost(&self, incidents: &mut Vec<Incident>) {
        for h in self.hosts.iter().filter(|h| !up(h)) {
            let (title, severity) = match h.status {
                HostStatus::Connecting => continue,
                HostStatus::KeyMismatch => (
                    format!(
                        "Host {}'s SSH key changed: the controller refuses it",
                        h.name
                    ),
                    Severity::Error,
                ),
                HostStatus::AuthFailed => (
                    format!("Host {} refuses the controller's login", h.name),
                    Severity::Error,
                ),
                _ if h.maintenance => (
                    format!("Host {} (in maintenance) is offline", h.name),
                    Severity::Warning,
                ),
                _ => (format!("Host {} is offline", h.name), Severity::Error),
            };
            let on: Vec<&VpsResponse> = self
                .vpses
                .iter()
                .filter(|v| v.host_id == Some(h.id))
                .filter(|v| wanted(v))
                .collect();
            let fates: Vec<String> = on
                .iter()
                .map(|v| {
                    let fate = match self.state.netmon.failover(VpsId(v.id)) {
                        Some(f) if f.gave_up => {
                            "down: it failed on every host tried; it waits for you".to_string()
                        }
                        Some(f) if f.waiting => "down: waiting for a host with room".to_string(),
                        Some(f) => match f.to {
                            Some(to) => format!("failing over to {}", self.host_name(to.get())),
                            None => "failing over".to_string(),
                        },
                        None if v.ha_enabled => {
                            "HA: netMON fails it over once the host is fenced".to_string()
                        }
                        None => "down until the host is back (not HA)".to_string(),
                    };
                    format!("{}: {fate}", v.name)
                })
                .collect();
            let detail = if fates.is_empty() {
                "No VPS should run on it.".to_string()
            } else {
                fates.join(" · ")
            };
            incidents.push(Incident {
                key: format!("host:{}", h.id),
                kind: IncidentKind::HostLost,
                severity,
                title,
                detail,
                vpses: on.iter().map(|v| v.name.clone()).collect(),
                since: h.last_seen,
                link: format!("/hosts/{}", h.id),
            });
        }
    }

    /// HA VPSes: protected, or at risk and why; a failover under way, or one that is stuck.
    fn ha(&self, incidents: &mut Vec<Incident>) -> HaCounts {
        let mut ha = HaCounts::default();
        for v in self
            .vpses
            .iter()
            .filter(|v| v.ha_enabled)
            .filter(|v| wanted(v))
        {
            ha.total += 1;
            let on = self.host(v.host_id);
            let host_up = on.is_some_and(up);
            let failover = self.state.netmon.failover(VpsId(v.id));
            let duplo = self.state.duplo.state(VpsId(v.id));
            let why = if let Some(f) = &failover {
                let from = self.host_name(f.from.get());
                let (kind, severity, title, detail) = if f.gave_up {
                    (
                        IncidentKind::FailoverGaveUp,
                        Severity::Error,
                        format!("VPS {} is down: its failover gave up", v.name),
                        format!("It failed on every host tried since it left {from}; bring it up by hand (Start, or Restore on a host you choose)."),
                    )
                } else if f.waiting {
                    (
                        IncidentKind::NoRoom,
                        Severity::Error,
                        format!("VPS {} is down: no host has room for it", v.name),
                        format!("netMON brings it up from {from} as soon as a host has room: free memory, add a host or take one out of maintenance."),
                    )
                } else {
                    let asked = match (&f.cause, &f.by) {
                        (crate::netmon::decide::Cause::Requested, Some(by)) => {
                            format!(", as {by} asked")
                        }
                        _ => String::new(),
                    };
                    (
                        IncidentKind::FailingOver,
                        Severity::Warning,
                        format!("VPS {} is failing over{asked}", v.name),
                        match f.to {
                            Some(to) => format!("From {from} to {}: it is being brought up there from its newest restore point.", self.host_name(to.get())),
                            None => format!("From {from}: it is being stopped there before it comes up elsewhere."),
                        },
                    )
                };
                incidents.push(Incident {
                    key: format!("vps:{}", v.id),
                    kind,
                    severity,
                    title,
                    detail,
                    vpses: vec![v.name.clone()],
                    since: None,
                    link: format!("/vpses/{}", v.id),
                });
                "being failed over".to_string()
            } else if !host_up {
                "its host is not online".to_string()
            } else if v.services.as_ref().is_some_and(|s| !s.up) {
                "its services do not answer".to_string()
            } else if v.status != "running" {
                format!("it is {}", v.status)
            } else if !self.newest.contains_key(&v.id) && duplo.last_cycle == 0 {
                "no restore point yet".to_string()
            } else if duplo.failures > 0 {
                "its duplication fails".to_string()
            } else if !self.usable.iter().any(|h| Some(*h) != v.host_id) {
                "no other host to fail over to".to_string()
            } else {
                ha.protected += 1;
                continue;
            };
            ha.at_risk.push(AtRisk {
                vps_id: v.id,
                name: v.name.clone(),
                why,
            });
        }
        ha
    }

    /// Duplication: failing, and how far behind the worst is.
    fn duplication(&self, incidents: &mut Vec<Incident>, now_ms: i64) -> DuplicationHealth {
        let mut duplication = DuplicationHealth::default();
        for v in self
            .vpses
            .iter()
            .filter(|v| v.status != "creating" && self.duplicated.contains(&v.id))
        {
            duplication.vpses += 1;
            let s = self.state.duplo.state(VpsId(v.id));
            if s.failures > 0 {
                duplication.failing += 1;
                incidents.push(Incident {
                    key: format!("duplo:{}", v.id),
                    kind: IncidentKind::DuplicationFailing,
                    severity: Severity::Warning,
                    title: format!("Duplication of VPS {} fails", v.name),
                    detail: format!(
                        "{} cycle(s) in a row: {}. Its newest restore point is what a failover would bring up.",
                        s.failures,
                        s.last_error.clone().unwrap_or_default()
                    ),
                    vpses: vec![v.name.clone()],
                    since: None,
                    link: format!("/vpses/{}", v.id),
                });
            }
            let fresh = s.fresh_ms().max(self.newest.get(&v.id).copied());
            if fresh.is_none() {
                duplication.without_point += 1;
            }
            if let Some(t) = fresh {
                let lag = (now_ms - t).max(0);
                // Behind its own schedule by more than the threshold: a VPS duplicated hourly
                // is not lagging 31 minutes after its point.
                let host = self.host(v.host_id);
                let host_up = host.is_some_and(up);
                let due = host.map_or(0, |h| h.interval_ms);
                if lag - due > self.lag_threshold_ms
                    && s.failures == 0
                    && host_up
                    && v.status == "running"
                {
                    incidents.push(Incident {
                        key: format!("lag:{}", v.id),
                        kind: IncidentKind::DuplicationLagging,
                        severity: Severity::Warning,
                        title: format!(
                            "Duplication of VPS {} is {} min behind",
                            v.name,
                            lag / 60_000
                        ),
                        detail: format!(
                            "Its newest restore point is older than its interval plus the site's threshold ({} min): a failover now would lose what changed since.",
                            self.lag_threshold_ms / 60_000
                        ),
                        vpses: vec![v.name.clone()],
                        since: None,
                        link: format!("/vpses/{}", v.id),
                    });
                }
                if duplication.max_lag_ms.is_none_or(|m| lag > m) {
                    duplication.max_lag_ms = Some(lag);
                    duplication.max_lag_vps = Some(v.name.clone());
                }
            }
        }
        duplication
    }

    /// The storage disk: its size and free space; an incident when nearly full.
    fn storage(&self, incidents: &mut Vec<Incident>) -> Option<(u64, u64)> {
        if self.state.duplo.store.remote().is_some() {
            return None;
        }
        let fs = crate::duplo::view::filesystem(&self.state.duplo.dir);
        if let Some((total, free)) = fs.filter(|(t, _)| *t > 0) {
            let used = 1.0 - free as f64 / total as f64;
            if used >= STORAGE_WARN {
                incidents.push(Incident {
                    key: "storage".into(),
                    kind: IncidentKind::StorageFull,
                    severity: if used >= STORAGE_FULL {
                        Severity::Error
                    } else {
                        Severity::Warning
                    },
                    title: format!("Storage is {:.0} % full", used * 100.0),
                    detail: "Duplication fails once it is full; restore points already stored are kept. Shorten the retention policy or give storage more room.".into(),
                    vpses: Vec::new(),
                    since: None,
                    link: "/storage".into(),
                });
            }
        }
        fs
    }
}

fn assess(
    state: &crate::vps::Vpses,
    hosts: &[Host],
    vpses: &[VpsResponse],
    newest: &HashMap<i64, i64>,
    duplicated: &std::collections::HashSet<i64>,
    failovers_24h: u64,
    lag_threshold_ms: i64,
) -> SiteHealth {
    let site = Site {
        state,
        hosts,
        vpses,
        newest,
        duplicated,
        usable: hosts
            .iter()
            .filter(|h| up(h) && !h.maintenance)
            .map(|h| h.id)
            .collect(),
        lag_threshold_ms,
        by_id: hosts.iter().enumerate().map(|(i, h)| (h.id, i)).collect(),
    };
    let mut incidents = Vec::new();
    site.hosts_lost(&mut incidents);
    let ha = site.ha(&mut incidents);
    let duplication = site.duplication(&mut incidents, crate::duplo::now_ms());
    let fs = site.storage(&mut incidents);
    let rank = |s: Severity| match s {
        Severity::Error => 0,
        Severity::Warning => 1,
        Severity::Info => 2,
    };
    incidents.sort_by(|a, b| {
        rank(a.severity)
            .cmp(&rank(b.severity))
            .then(a.key.cmp(&b.key))
    });
    SiteHealth {
        healthy: incidents.is_empty(),
        hosts: HostCounts {
            total: hosts.len() as u64,
            online: hosts.iter().filter(|h| up(h)).count() as u64,
            down: hosts
                .iter()
                .filter(|h| !up(h) && !h.maintenance && h.status != HostStatus::Connecting)
                .count() as u64,
            maintenance: hosts.iter().filter(|h| h.maintenance).count() as u64,
        },
        ha,
        duplication,
        storage: StorageHealth {
            filesystem_bytes: fs.map(|f| f.0),
            filesystem_free_bytes: fs.map(|f| f.1),
        },
        failovers_24h,
        incidents,
        totals: totals(hosts, vpses),
    }
}

/// What the online hosts' newest samples add up to, and the VPSes.
fn totals(hosts: &[Host], vpses: &[VpsResponse]) -> serverware_shared::api::SiteTotals {
    let online: Vec<_> = hosts.iter().filter_map(|h| h.summary).collect();
    let cpus: u64 = online.iter().map(|s| u64::from(s.cpus)).sum();
    let busy: f64 = online.iter().map(|s| s.cpu_pct * f64::from(s.cpus)).sum();
    serverware_shared::api::SiteTotals {
        cpus,
        cpu_pct: if cpus == 0 { 0.0 } else { busy / cpus as f64 },
        memory_used: online.iter().map(|s| s.memory_used).sum(),
        memory_total: online.iter().map(|s| s.memory_total).sum(),
        rx_bytes_per_sec: online.iter().map(|s| s.rx_bytes_per_sec).sum(),
        tx_bytes_per_sec: online.iter().map(|s| s.tx_bytes_per_sec).sum(),
        vpses: vpses.len() as u64,
        vpses_running: vpses.iter().filter(|v| v.status == "running").count() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::SharedReads;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;

    #[tokio::test]
    async fn reads_at_the_same_time_share_a_computation_and_none_is_stale() {
        let reads = Arc::new(SharedReads::<u64>::default());
        let runs = Arc::new(AtomicU64::new(0));
        // The first computation is held until every other read has arrived.
        let gate = Arc::new(tokio::sync::Notify::new());
        let compute = |runs: Arc<AtomicU64>, gate: Option<Arc<tokio::sync::Notify>>| async move {
            let n = runs.fetch_add(1, SeqCst) + 1;
            if let Some(g) = gate {
                g.notified().await;
            }
            Ok(n)
        };
        let first = {
            let (reads, runs, gate) = (reads.clone(), runs.clone(), gate.clone());
            tokio::spawn(async move { reads.get(|| compute(runs, Some(gate))).await })
        };
        while runs.load(SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let others: Vec<_> = (0..20)
            .map(|_| {
                let (reads, runs) = (reads.clone(), runs.clone());
                tokio::spawn(async move { reads.get(|| compute(runs, None)).await })
            })
            .collect();
        while reads.arrivals.load(SeqCst) < 21 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        assert_eq!(*first.await.unwrap().unwrap(), 1);
        for o in others {
            // Every later read is answered by the second computation, begun after it arrived.
            assert_eq!(*o.await.unwrap().unwrap(), 2);
        }
        assert_eq!(runs.load(SeqCst), 2);
        // A read after all that is computed again.
        assert_eq!(*reads.get(|| compute(runs.clone(), None)).await.unwrap(), 3);
    }
}
