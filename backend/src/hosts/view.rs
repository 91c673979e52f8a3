//! Hosts as the API and the command line show them: one host, the list, its recent samples and
//! its history of one-minute rollups.

use super::{Bucket, HostManager, HostRow};
use crate::db::{Db, DbConn};
use crate::error::{Error, Result};
use crate::vps::VpsRow;
use serverware_shared::agent::HostSample;
use serverware_shared::api::{HistoryQuery, HostResponse, HostRollup};
use serverware_shared::HostId;

/// Every VPS of the site by host, and every VPS name: built once for a list of hosts, so that
/// each host's response costs its own VPSes, not the site's.
pub struct Placed<'a> {
    by_host: std::collections::HashMap<HostId, Vec<&'a VpsRow>>,
    names: std::collections::HashSet<&'a str>,
}

impl<'a> Placed<'a> {
    pub fn of(all: &'a [VpsRow]) -> Placed<'a> {
        let mut by_host: std::collections::HashMap<HostId, Vec<&'a VpsRow>> = Default::default();
        for v in all {
            if let Some(h) = v.host_id {
                by_host.entry(h).or_default().push(v);
            }
        }
        Placed {
            by_host,
            names: all.iter().map(|v| v.name.as_str()).collect(),
        }
    }
}

/// A host as the API shows it: its row, its connection's newest state and sample, its VPSes' use
/// of its capacity, and containers on it that are no VPS of the site.
pub fn response(row: &HostRow, hosts: &HostManager, all_vpses: &[VpsRow]) -> HostResponse {
    response_in(row, hosts, &Placed::of(all_vpses))
}

/// [`response`] with the site's VPSes indexed once ([`Placed`]).
pub fn response_in(row: &HostRow, hosts: &HostManager, site: &Placed<'_>) -> HostResponse {
    let view = hosts.view(row.id).unwrap_or_default();
    let placed: &[&VpsRow] = site.by_host.get(&row.id).map_or(&[], Vec::as_slice);
    let capacity = crate::vps::capacity(row, view.latest.as_ref());
    let unknown_vpses = view
        .latest
        .as_ref()
        .map(|s| {
            s.vpses
                .iter()
                .filter(|x| !site.names.contains(x.name.as_str()))
                .map(|x| x.name.clone())
                .collect()
        })
        .unwrap_or_default();
    HostResponse {
        id: row.id.get(),
        name: row.name.clone(),
        description: row.description.clone(),
        address: format!("ssh://{}@{}:{}", row.ssh_user, row.address, row.ssh_port),
        status: view
            .status
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| row.status.as_str().to_string()),
        fingerprint: row.host_key_fingerprint.clone(),
        last_seen_at: view.last_seen.or(row.last_seen_at.map(|t| t.and_utc())),
        agent_version: view.agent_version.or(row.agent_version.clone()),
        hostname: view.hostname,
        kernel: view.kernel,
        cpu_model: view.cpu_model,
        sample_interval_ms: row.sample_interval_ms.max(0) as u32,
        vps_count: placed.len() as i64,
        free: crate::vps::free(capacity, placed.iter().map(|v| crate::vps::need(v))),
        capacity,
        vps_bridge: row.vps_bridge.clone(),
        vps_prefix_len: row.vps_prefix_len,
        vps_gateway: row.vps_gateway.clone(),
        max_transfers: row.max_transfers.max(1) as u32,
        duplo_interval_secs: row.duplo_interval_secs.max(1) as u32,
        maintenance: row.maintenance,
        unknown_vpses,
        sample: view.latest,
    }
}

/// A host's row, and every VPS of the site (a host's response needs them all to name the
/// containers on it that are no VPS).
pub fn load_with_vpses(c: &mut DbConn, id: HostId) -> Result<(HostRow, Vec<VpsRow>)> {
    let row = crate::repo::hosts::find(c, id)?;
    let all = crate::repo::vpses::all(c)?;
    Ok((row, all))
}

/// Every host, by name.
pub async fn list(db: &Db, hosts: &HostManager) -> Result<Vec<HostResponse>> {
    let (rows, all) = db
        .read(|c| {
            let rows = crate::repo::hosts::list(c)?;
            let all = crate::repo::vpses::all(c)?;
            Ok((rows, all))
        })
        .await?;
    let site = Placed::of(&all);
    Ok(rows.iter().map(|r| response_in(r, hosts, &site)).collect())
}

/// A page of the host list as `GET /hosts` asks for it: the hosts, how many match in all, and
/// the name the next page starts after (None: this was the last).
pub async fn page(
    db: &Db,
    hosts: &HostManager,
    q: serverware_shared::api::HostListQuery,
) -> Result<(Vec<HostResponse>, usize, Option<String>)> {
    use serverware_shared::validate;
    let (limit, filter, after) =
        validate::list_paging(q.limit, q.q.as_deref(), q.after.as_deref())?;
    let (rows, all) = db
        .read(|c| Ok((crate::repo::hosts::list(c)?, crate::repo::vpses::all(c)?)))
        .await?;
    let matching: Vec<&HostRow> = rows
        .iter()
        .filter(|r| {
            filter
                .as_deref()
                .is_none_or(|f| r.name.contains(f) || r.address.to_lowercase().contains(f))
        })
        .collect();
    let mut rest = matching
        .iter()
        .filter(|r| after.as_deref().is_none_or(|a| r.name.as_str() > a))
        .peekable();
    let site = Placed::of(&all);
    let shown: Vec<HostResponse> = rest
        .by_ref()
        .take(limit)
        .map(|r| response_in(r, hosts, &site))
        .collect();
    let next = if rest.peek().is_some() {
        shown.last().map(|h| h.name.clone())
    } else {
        None
    };
    Ok((shown, matching.len(), next))
}

/// One host.
pub async fn get(db: &Db, hosts: &HostManager, id: HostId) -> Result<HostResponse> {
    let (row, all) = db.read(move |c| load_with_vpses(c, id)).await?;
    Ok(response(&row, hosts, &all))
}

/// The samples the controller keeps in memory for a host (up to 10 minutes), oldest first.
pub async fn samples(db: &Db, hosts: &HostManager, id: HostId) -> Result<Vec<HostSample>> {
    db.run(move |c| crate::repo::hosts::find(c, id)).await?;
    Ok(hosts.recent(id))
}

/// One-minute rollups of a host (average and maximum), oldest first; the minute in progress last.
pub async fn history(
    db: &Db,
    hosts: &HostManager,
    id: HostId,
    query: &HistoryQuery,
) -> Result<Vec<HostRollup>> {
    let until = query.until.unwrap_or_else(chrono::Utc::now);
    let since = query.since.unwrap_or(until - chrono::TimeDelta::hours(24));
    if since >= until {
        return Err(Error::invalid("since", "must be before until"));
    }
    if until - since > chrono::TimeDelta::days(366) {
        return Err(Error::invalid(
            "since",
            "ask for at most 366 days at a time",
        ));
    }
    let mut out: Vec<HostRollup> = db
        .read(move |c| {
            crate::repo::hosts::find(c, id)?;
            let rows = crate::repo::rollups::between(c, id, since.naive_utc(), until.naive_utc())?;
            Ok(rows.iter().map(|r| r.to_rollup()).collect())
        })
        .await?;
    if let Some(cur) = hosts.current_rollup(id) {
        if cur.minute >= since && cur.minute < until {
            match out.last_mut() {
                Some(last) if last.minute == cur.minute => {
                    let mut b = Bucket::from_rollup(&cur);
                    b.merge(&Bucket::from_rollup(last));
                    *last = b.to_rollup();
                }
                _ => out.push(cur),
            }
        }
    }
    Ok(out)
}
