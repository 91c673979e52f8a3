//! A VPS as the API shows it, with what its host reports now.

use super::Vpses;
use super::{load, VpsRow};
use crate::error::Result;
use crate::ops;
use serverware_shared::api::VpsResponse;
use serverware_shared::state::{HostStatus, ObservedState, VpsOperation};
use serverware_shared::{HostId, VpsId};
use std::collections::HashMap;

/// What the controller knows of a VPS now: its recorded state while its host is connected,
/// else unknown (a VPS on an offline host is not `running`).
pub fn observed(state: &Vpses, v: &VpsRow) -> ObservedState {
    let recorded = v.recorded();
    if recorded == ObservedState::Creating {
        return recorded;
    }
    match v.host_id {
        Some(h) if state.hosts.connected(h) => recorded,
        _ => ObservedState::Unknown,
    }
}

/// How long after a VPS's last recorded change its host's figures may still predate it.
const LIVE_SETTLE_MS: i64 = 3000;

/// A VPS as the API shows it, with what its host reports now.
pub fn response(
    state: &Vpses,
    v: &VpsRow,
    host_name: Option<String>,
    claim: Option<(VpsOperation, i64)>,
) -> VpsResponse {
    // A host's figures are read on their own thread, up to an interval before the sample that
    // carries them: until one has surely been read since the VPS's last change (a start, a
    // stop), what the controller recorded is shown, so that a task that reported success is
    // never contradicted by an older reading.
    // (Read in place: a list of ten thousand VPSes does not copy their hosts' samples.) A host
    // that stopped sending samples is not believed, whatever its connection says.
    let (host_online, live) = v
        .host_id
        .and_then(|h| {
            state.hosts.with_view(h, |view| {
                let online = view.status == Some(HostStatus::Online);
                let settled = view.last_seen.is_some_and(|t| {
                    t.naive_utc() > v.updated_at + chrono::TimeDelta::milliseconds(LIVE_SETTLE_MS)
                });
                let live = (online && settled)
                    .then_some(view.latest.as_ref())
                    .flatten()
                    .and_then(|s| s.vpses.iter().find(|x| x.name == v.name).cloned());
                (online, live)
            })
        })
        .unwrap_or((false, None));
    let observed = match observed(state, v) {
        ObservedState::Creating => ObservedState::Creating,
        _ if !host_online => ObservedState::Unknown,
        o => o,
    };
    // While netMON brings it up elsewhere, each step's own state (stopped on the new host
    // before its start, …) is not what a person should read.
    let status = if state.netmon.failing_over(v.id) {
        "failing over"
    } else if claim.is_none() && observed == ObservedState::Unknown {
        // Unknown because its host does not answer: said as such.
        "host offline"
    } else {
        serverware_shared::state::status(observed, claim.map(|c| c.0))
    };
    VpsResponse {
        id: v.id.get(),
        name: v.name.clone(),
        description: v.description.clone(),
        host_id: v.host_id.map(HostId::get),
        host_name,
        template_id: v.template_id,
        ipv4: v.ipv4.clone(),
        hostname: v.hostname.clone(),
        memory_limit_bytes: v.memory_limit_bytes,
        cpu_shares: v.cpu_shares,
        cpu_limit_millis: v.cpu_limit_millis,
        disk_limit_bytes: v.disk_limit_bytes,
        autostart: v.autostart,
        privileged: v.privileged,
        id_base: v.ids().map(i64::from),
        status: status.to_string(),
        desired_state: v.desired(),
        observed_state: observed,
        operation: claim.map(|c| c.0),
        state: live.as_ref().map(|l| l.state.clone()),
        live,
        busy_task: claim.map(|c| c.1),
        ha_enabled: v.ha_enabled,
        ha_priority: v.ha_priority,
        check_ports: serverware_shared::validate::parse_check_ports(&v.check_ports),
        services: state.netmon.services(v.id),
        standby: state
            .netmon
            .standby
            .view(v.id)
            .map(|s| serverware_shared::api::StandbyInfo {
                host_id: s.host_id.get(),
                cycle: s.cycle,
            }),
        created_at: v.created_at.and_utc(),
        updated_at: v.updated_at.and_utc(),
    }
}

/// Every VPS as the API shows it, by name.
pub async fn list(state: &Vpses) -> Result<Vec<VpsResponse>> {
    let (rows, names, claims) = state
        .db
        .read(|c| {
            let rows = crate::repo::vpses::all(c)?;
            let names: HashMap<HostId, String> =
                crate::repo::hosts::names(c)?.into_iter().collect();
            Ok((rows, names, ops::claims::all(c)?))
        })
        .await?;
    Ok(rows
        .iter()
        .map(|v| {
            let host = v.host_id.and_then(|h| names.get(&h).cloned());
            response(state, v, host, claims.get(&v.id).copied())
        })
        .collect())
}

/// A page of the VPS list as `GET /vpses` asks for it: the VPSes, how many match in all, and
/// where the next page starts (None: this was the last).
pub async fn page(
    state: &Vpses,
    q: serverware_shared::api::VpsListQuery,
) -> Result<(Vec<VpsResponse>, usize, Option<Next>)> {
    use serverware_shared::api::VpsSort;
    use serverware_shared::validate;
    let (limit, filter, after) =
        validate::list_paging(q.limit, q.q.as_deref(), q.after.as_deref())?;
    let (sort, desc, offset) =
        validate::vps_order(q.sort.as_deref(), q.desc, q.offset, after.is_some())?;
    let host = q.host_id.map(HostId);
    let exact = q
        .name
        .as_deref()
        .map(|n| validate::resource_name("name", n))
        .transpose()?;
    // By name, only the page's rows are read whole; any other order needs every match's
    // figures (read whole, ordered here).
    let by_name = sort == VpsSort::Name;
    let (rows, names, claims, total) = state
        .db
        .read(move |c| {
            let m = crate::repo::vpses::Matching {
                q: filter.as_deref(),
                name: exact.as_deref(),
                host,
            };
            let (total, ids) = if by_name && m.q.is_none() {
                // Nothing to match on text: the database counts and pages.
                crate::repo::vpses::page_by_name(
                    c,
                    m.name,
                    m.host,
                    after.as_deref(),
                    desc,
                    offset,
                    limit.saturating_add(1),
                )?
            } else {
                let mut keys = crate::repo::vpses::matching(c, &m)?;
                let total = keys.len();
                if by_name && desc {
                    keys.reverse();
                }
                let ids: Vec<VpsId> = if by_name {
                    keys.iter()
                        .filter(|(_, name, _, _)| after.as_ref().is_none_or(|a| name > a))
                        .skip(offset)
                        .take(limit.saturating_add(1))
                        .map(|k| k.0)
                        .collect()
                } else {
                    keys.iter().map(|k| k.0).collect()
                };
                (total, ids)
            };
            // Read by name, smallest first.
            let mut rows = crate::repo::vpses::rows(c, &ids)?;
            if by_name && desc {
                rows.reverse();
            }
            // The names of the hosts the rows are on (a page's few, not the site's).
            let on: std::collections::BTreeSet<HostId> =
                rows.iter().filter_map(|v| v.host_id).collect();
            let on: Vec<HostId> = on.into_iter().collect();
            let names: HashMap<HostId, String> =
                crate::repo::hosts::names_of(c, &on)?.into_iter().collect();
            Ok((rows, names, ops::claims::all(c)?, total))
        })
        .await?;
    let view = |v: &VpsRow| {
        let host = v.host_id.and_then(|h| names.get(&h).cloned());
        response(state, v, host, claims.get(&v.id).copied())
    };
    let mut shown: Vec<VpsResponse> = if by_name {
        // Only the page (and one more) was read.
        rows.iter().map(view).collect()
    } else {
        let mut all: Vec<VpsResponse> = rows.iter().map(view).collect();
        sort_list(&mut all, sort);
        if desc {
            all.reverse();
        }
        all.into_iter()
            .skip(offset)
            .take(limit.saturating_add(1))
            .collect()
    };
    let more = shown.len() > limit;
    shown.truncate(limit);
    let next = match (more, shown.last()) {
        (false, _) | (true, None) => None,
        // Asked by name without a start row: the next page goes after this one's last name.
        (true, Some(last)) if by_name && !desc && q.offset.is_none() => {
            Some(Next::After(last.name.clone()))
        }
        (true, Some(_)) => Some(Next::Offset(offset + shown.len())),
    };
    Ok((shown, total, next))
}

/// Where the page after one starts.
pub enum Next {
    /// After this name (pages by name).
    After(String),
    /// At this row.
    Offset(usize),
}

/// Orders a list by `sort`, smallest first; ties by name (a VPS without figures counts as
/// the smallest).
fn sort_list(list: &mut [VpsResponse], sort: serverware_shared::api::VpsSort) {
    use serverware_shared::api::VpsSort;
    let fig = |v: &VpsResponse, f: fn(&serverware_shared::agent::VpsSample) -> f64| {
        v.live.as_ref().map_or(-1.0, f)
    };
    list.sort_by(|a, b| {
        let o = match sort {
            VpsSort::Name => std::cmp::Ordering::Equal,
            VpsSort::Ipv4 => a
                .ipv4
                .parse::<std::net::Ipv4Addr>()
                .ok()
                .cmp(&b.ipv4.parse().ok()),
            VpsSort::Status => a.status.cmp(&b.status),
            VpsSort::Host => a.host_name.cmp(&b.host_name),
            VpsSort::Uptime => {
                fig(a, |s| s.uptime_secs as f64).total_cmp(&fig(b, |s| s.uptime_secs as f64))
            }
            VpsSort::Processes => {
                fig(a, |s| s.processes as f64).total_cmp(&fig(b, |s| s.processes as f64))
            }
            VpsSort::Cpu => fig(a, |s| s.cpu_pct).total_cmp(&fig(b, |s| s.cpu_pct)),
            VpsSort::Memory => {
                fig(a, |s| s.memory_used as f64).total_cmp(&fig(b, |s| s.memory_used as f64))
            }
        };
        o.then_with(|| a.name.cmp(&b.name))
    });
}

/// One VPS as the API shows it.
pub async fn get(state: &Vpses, id: VpsId) -> Result<VpsResponse> {
    let (v, host, claim) = state
        .db
        .read(move |c| {
            let v = load(c, id)?;
            let host = match v.host_id {
                Some(h) => crate::repo::hosts::name(c, h)?,
                None => None,
            };
            Ok((v, host, ops::claims::holder(c, id)?))
        })
        .await?;
    Ok(response(state, &v, host, claim))
}
