//! Placement: what a host can hold, what a VPS needs, and where a new VPS goes.

use super::Vpses;
use crate::error::Result;
use crate::hosts::HostRow;
use crate::ops;
use crate::repo::vpses::VpsRow;
use serverware_shared::agent::HostSample;
use serverware_shared::api::HostCapacity;
use serverware_shared::state::HostStatus;
use serverware_shared::{HostId, VpsId};

/// What a host can hold: declared, else what it reports (memory, CPUs, the disk under /var/lib/lxc).
pub fn capacity(h: &HostRow, sample: Option<&HostSample>) -> HostCapacity {
    let disk = sample.and_then(|s| {
        s.filesystems
            .iter()
            .filter(|f| {
                "/var/lib/lxc".starts_with(&f.mount_point)
                    && (f.mount_point == "/"
                        || "/var/lib/lxc"[f.mount_point.len()..].starts_with('/')
                        || f.mount_point == "/var/lib/lxc")
            })
            .max_by_key(|f| f.mount_point.len())
            .map(|f| f.size_bytes as i64)
    });
    HostCapacity {
        memory_bytes: h
            .capacity_memory_bytes
            .or(sample.map(|s| s.memory.total as i64))
            .unwrap_or(0),
        cpu_millis: h
            .capacity_cpus
            .map(|c| i64::from(c) * 1000)
            .or(sample.map(|s| s.cpus.len() as i64 * 1000))
            .unwrap_or(0),
        disk_bytes: h.capacity_disk_bytes.or(disk).unwrap_or(0),
    }
}

/// What a VPS takes of its host's capacity.
pub fn need(v: &VpsRow) -> HostCapacity {
    need_of(v.memory_limit_bytes, v.cpu_limit_millis, v.disk_limit_bytes)
}

fn need_of(memory_bytes: i64, cpu_millis: Option<i32>, disk_bytes: Option<i64>) -> HostCapacity {
    HostCapacity {
        memory_bytes,
        cpu_millis: cpu_millis.map(i64::from).unwrap_or(0),
        disk_bytes: disk_bytes.unwrap_or(0),
    }
}

pub fn free(cap: HostCapacity, placed: impl IntoIterator<Item = HostCapacity>) -> HostCapacity {
    let mut f = cap;
    for n in placed {
        f.memory_bytes -= n.memory_bytes;
        f.cpu_millis -= n.cpu_millis;
        f.disk_bytes -= n.disk_bytes;
    }
    f
}

/// A host that could take a VPS.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: HostId,
    pub name: String,
    pub online: bool,
    /// In maintenance: nothing is placed on it.
    pub maintenance: bool,
    pub capacity: HostCapacity,
    pub free: HostCapacity,
    pub load1: f64,
}

pub(super) fn mib(b: i64) -> String {
    format!("{} MiB", b / (1 << 20))
}

pub(super) fn fits(c: &Candidate, n: &HostCapacity) -> Result<(), String> {
    if !c.online {
        return Err(format!("{} is not online", c.name));
    }
    if c.maintenance {
        return Err(format!("{} is in maintenance", c.name));
    }
    if c.free.memory_bytes < n.memory_bytes {
        return Err(format!(
            "{} has {} of memory free, the VPS needs {}",
            c.name,
            mib(c.free.memory_bytes.max(0)),
            mib(n.memory_bytes)
        ));
    }
    if n.cpu_millis > 0 && c.free.cpu_millis < n.cpu_millis {
        return Err(format!(
            "{} has {:.1} CPUs free, the VPS needs {:.1}",
            c.name,
            c.free.cpu_millis.max(0) as f64 / 1000.0,
            n.cpu_millis as f64 / 1000.0
        ));
    }
    if n.disk_bytes > 0 && c.free.disk_bytes < n.disk_bytes {
        return Err(format!(
            "{} has {} of disk free, the VPS needs {}",
            c.name,
            mib(c.free.disk_bytes.max(0)),
            mib(n.disk_bytes)
        ));
    }
    Ok(())
}

/// Picks the online host with the most room left after placing the VPS: the largest share of
/// memory left (then CPU, then disk); live load breaks ties. Says why when none fits.
pub fn place(cands: &[Candidate], n: &HostCapacity) -> Result<HostId, String> {
    let share = |free: i64, need: i64, cap: i64| -> f64 {
        if cap <= 0 {
            0.0
        } else {
            (free - need) as f64 / cap as f64
        }
    };
    let mut best: Option<(&Candidate, (f64, f64, f64))> = None;
    let mut why = Vec::new();
    for c in cands {
        if let Err(e) = fits(c, n) {
            why.push(e);
            continue;
        }
        let score = (
            share(c.free.memory_bytes, n.memory_bytes, c.capacity.memory_bytes),
            share(c.free.cpu_millis, n.cpu_millis, c.capacity.cpu_millis),
            share(c.free.disk_bytes, n.disk_bytes, c.capacity.disk_bytes),
        );
        let better = match &best {
            None => true,
            Some((b, bs)) => {
                let close = (score.0 - bs.0).abs() < 0.01;
                if !close {
                    score.0 > bs.0
                } else if (score.1 - bs.1).abs() >= 0.01 {
                    score.1 > bs.1
                } else if (score.2 - bs.2).abs() >= 0.01 {
                    score.2 > bs.2
                } else {
                    c.load1 < b.load1
                }
            }
        };
        if better {
            best = Some((c, score));
        }
    }
    match best {
        Some((c, _)) => Ok(c.id),
        None if cands.is_empty() => Err("there is no host to place the VPS on".into()),
        None => Err(format!("no host has room for this VPS: {}", why.join("; "))),
    }
}

/// What placement reads of the site: every host's row, every VPS's needs and the room
/// operations have reserved.
pub struct SiteRead {
    pub hosts: Vec<HostRow>,
    needs: Vec<crate::repo::vpses::Need>,
    reserved: Vec<(HostId, VpsId)>,
}

impl SiteRead {
    /// Read in one unit of work (netMON reads it with its own rows, in the same unit).
    pub fn read(c: &mut crate::db::DbConn) -> Result<SiteRead> {
        Ok(SiteRead {
            hosts: crate::repo::hosts::all(c)?,
            needs: crate::repo::vpses::needs(c)?,
            reserved: ops::claims::reservations(c)?,
        })
    }
}

/// Every host with what is free on each (after its VPSes and the room reserved on it), for
/// placement.
pub async fn candidates(state: &Vpses, except_vps: Option<VpsId>) -> Result<Vec<Candidate>> {
    let site = state.db.read(SiteRead::read).await?;
    Ok(candidates_in(state, &site, except_vps))
}

/// [`candidates`] of what was read.
pub fn candidates_in(state: &Vpses, site: &SiteRead, except_vps: Option<VpsId>) -> Vec<Candidate> {
    // Each host's VPSes, in one pass (a site has thousands of both): a VPS counts where it is
    // and where an operation has reserved room for it.
    let mut on_host: std::collections::HashMap<HostId, HostCapacity> = Default::default();
    let mut reserved_vpses: std::collections::HashSet<VpsId> = Default::default();
    for (_, vid) in &site.reserved {
        if Some(*vid) != except_vps {
            reserved_vpses.insert(*vid);
        }
    }
    let mut by_id: std::collections::HashMap<VpsId, (Option<HostId>, HostCapacity)> =
        Default::default();
    for &(id, host, memory, cpu, disk) in &site.needs {
        if Some(id) == except_vps {
            continue;
        }
        let n = need_of(memory, cpu, disk);
        if let Some(h) = host {
            add(on_host.entry(h).or_default(), n);
        }
        if reserved_vpses.contains(&id) {
            by_id.insert(id, (host, n));
        }
    }
    // Room reserved for a VPS on a host it is not on counts there too (once per host).
    let mut counted: std::collections::HashSet<(HostId, VpsId)> = Default::default();
    for (h, vid) in &site.reserved {
        if let Some((host, n)) = by_id.get(vid) {
            if *host != Some(*h) && counted.insert((*h, *vid)) {
                add(on_host.entry(*h).or_default(), *n);
            }
        }
    }
    site.hosts
        .iter()
        .map(|h| {
            // Read in place: netMON asks five times a second, and a host's newest sample (with
            // its VPSes' figures) is not copied a thousand times for three numbers.
            let (status, cap, load1) = state
                .hosts
                .with_view(h.id, |view| {
                    (
                        view.status,
                        capacity(h, view.latest.as_ref()),
                        view.latest.as_ref().map(|s| s.load[0]).unwrap_or(0.0),
                    )
                })
                .unwrap_or_else(|| (None, capacity(h, None), 0.0));
            let placed = on_host.get(&h.id).copied().unwrap_or_default();
            Candidate {
                id: h.id,
                name: h.name.clone(),
                online: status == Some(HostStatus::Online) && state.hosts.connected(h.id),
                maintenance: h.maintenance,
                capacity: cap,
                free: free(cap, [placed]),
                load1,
            }
        })
        .collect()
}

fn add(sum: &mut HostCapacity, n: HostCapacity) {
    sum.memory_bytes += n.memory_bytes;
    sum.cpu_millis += n.cpu_millis;
    sum.disk_bytes += n.disk_bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: i64, mem_gib: i64, free_gib: i64, load1: f64) -> Candidate {
        Candidate {
            id: HostId(id),
            name: format!("h{id}"),
            online: true,
            maintenance: false,
            capacity: HostCapacity {
                memory_bytes: mem_gib << 30,
                cpu_millis: 4000,
                disk_bytes: 100 << 30,
            },
            free: HostCapacity {
                memory_bytes: free_gib << 30,
                cpu_millis: 4000,
                disk_bytes: 100 << 30,
            },
            load1,
        }
    }

    fn want(gib: i64) -> HostCapacity {
        HostCapacity {
            memory_bytes: gib << 30,
            cpu_millis: 0,
            disk_bytes: 0,
        }
    }

    #[test]
    fn placement_picks_the_most_room_left_and_breaks_ties_by_load() {
        let hosts = vec![cand(1, 8, 2, 0.1), cand(2, 16, 12, 0.5), cand(3, 8, 6, 0.0)];
        assert_eq!(place(&hosts, &want(1)), Ok(HostId(2)));
        let tied = vec![cand(1, 8, 4, 0.9), cand(2, 8, 4, 0.2)];
        assert_eq!(place(&tied, &want(1)), Ok(HostId(2)));
        let mut off = cand(2, 16, 12, 0.5);
        off.online = false;
        assert_eq!(place(&[cand(1, 8, 2, 0.1), off], &want(1)), Ok(HostId(1)));
        let e = place(&hosts, &want(13)).unwrap_err();
        assert!(e.starts_with("no host has room"), "{e}");
        assert!(e.contains("h2 has 12288 MiB of memory free"), "{e}");
    }

    #[test]
    fn capacity_is_declared_or_reported() {
        let h = HostRow {
            id: HostId(1),
            name: "a".into(),
            description: String::new(),
            ssh_user: "root".into(),
            address: "10.77.1.10".into(),
            ssh_port: 22,
            host_key_fingerprint: None,
            host_key: None,
            status: serverware_shared::state::HostStatus::Online,
            sample_interval_ms: 1000,
            heartbeat_timeout_ms: 3000,
            agent_version: None,
            last_seen_at: None,
            capacity_memory_bytes: Some(1 << 30),
            capacity_cpus: None,
            capacity_disk_bytes: None,
            vps_bridge: "br0".into(),
            vps_prefix_len: 24,
            vps_gateway: None,
            max_transfers: 4,
            duplo_interval_secs: 10,
            maintenance: false,
        };
        let s = HostSample {
            cpus: vec![Default::default(); 2],
            memory: serverware_shared::agent::MemorySample {
                total: 8 << 30,
                ..Default::default()
            },
            filesystems: vec![
                serverware_shared::agent::FilesystemSample {
                    mount_point: "/".into(),
                    size_bytes: 100,
                    ..Default::default()
                },
                serverware_shared::agent::FilesystemSample {
                    mount_point: "/var".into(),
                    size_bytes: 50,
                    ..Default::default()
                },
                serverware_shared::agent::FilesystemSample {
                    mount_point: "/var/lib/lxcx".into(),
                    size_bytes: 7,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let c = capacity(&h, Some(&s));
        assert_eq!(
            (c.memory_bytes, c.cpu_millis, c.disk_bytes),
            (1 << 30, 2000, 50)
        );
    }
}
