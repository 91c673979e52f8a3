//! Failover drills: an HA VPS's newest restore point brought up on another host, the one netMON's
//! placement would choose, in a network of its own on that host (a bridge with no uplink: the
//! copy keeps the live VPS's address and conflicts with nothing), netMON's checks run against it
//! from inside that network, and everything removed again. The live VPS is never touched: no
//! claim on it, no stop, no point made. The report: RTO (netMON's detection of a lost host, its
//! lease, plus the measured restore → answering) and RPO (how old the point was at the drill's
//! start). A drill cut short by a crash is marked failed at the next start, and its copy and
//! network are removed once its host answers ([`clean_up`]).

use super::agent::{call, conn, spec, QUICK};
use super::placement::{candidates, need, place};
use super::transfer::slots;
use super::Vpses;
use crate::audit::{self, Actor, Change};
use crate::error::{Error, Result};
use crate::hosts::{Conn, HostRow};
use crate::repo::drills::{self as repo, Drill, NewDrill};
use crate::repo::vpses::{load, load_host, VpsRow};
use crate::tasks::Task;
use serverware_shared::agent::{drill_names, lease_ttl_ms, AgentRequest, DRILL_MAX};
use serverware_shared::api::{DrillResponse, TaskResponse};
use serverware_shared::duplo::Manifest;
use serverware_shared::validate::parse_check_ports;
use serverware_shared::VpsId;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a drill's copy has to answer its checks once started.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(120);
/// How often the copy is checked until it answers.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// Who asked for a drill, as its record says.
#[derive(Clone, Copy)]
pub enum StartedBy<'a> {
    User(&'a Actor),
    Schedule,
}

/// Starts a drill of HA VPS `id`; its task.
pub async fn drill(state: Arc<Vpses>, by: StartedBy<'_>, id: VpsId) -> Result<TaskResponse> {
    state.accepting()?;
    let src = state.db.run(move |c| load(c, id)).await?;
    if !src.ha_enabled {
        return Err(Error::conflict(
            None,
            format!(
                "VPS {} is not HA: a drill rehearses netMON's failover of an HA VPS",
                src.name
            ),
        ));
    }
    let vid = src.id.get();
    if let Some(d) = state.db.run(move |c| repo::running_of(c, vid)).await? {
        return Err(Error::conflict(
            None,
            format!(
                "a drill of VPS {} is under way (task {})",
                src.name,
                d.task_id.unwrap_or_default()
            ),
        ));
    }
    let from = src
        .host_id
        .ok_or_else(|| Error::conflict(None, format!("VPS {} is on no host", src.name)))?;
    let cycle = super::restore::newest_point(&state, &src, "drill from").await?;
    let (manifest, pin) = super::restore::point(&state, id, cycle).await?;
    // The host netMON would fail over to: any other host with room, as placement chooses.
    let cands: Vec<_> = candidates(&state, None)
        .await?
        .into_iter()
        .filter(|c| c.id != from)
        .collect();
    let to_id = place(&cands, &need(&src)).map_err(|m| {
        Error::conflict(
            None,
            format!("no other host can hold the drill's copy: {m}"),
        )
    })?;
    let to = state.db.run(move |c| load_host(c, to_id)).await?;
    conn(&state, to.id, &to.name)?;
    let actor = match by {
        StartedBy::User(a) => a.clone(),
        StartedBy::Schedule => Actor::system("drill-schedule"),
    };
    let taken = chrono::DateTime::from_timestamp_millis(manifest.taken_at_ms)
        .unwrap_or_default()
        .naive_utc();
    let started = chrono::Utc::now().naive_utc();
    let (a, s2, to2) = (actor.clone(), src.clone(), to.clone());
    let (drill, row) = state
        .db
        .run(move |c| {
            crate::db::atomic(c, |c| {
                if repo::running_of(c, s2.id.get())?.is_some() {
                    return Err(Error::conflict(
                        None,
                        format!("a drill of VPS {} is under way", s2.name),
                    ));
                }
                let drill = repo::insert(
                    c,
                    &NewDrill {
                        vps_id: s2.id.get(),
                        vps_name: &s2.name,
                        host_id: to2.id.get(),
                        host_name: &to2.name,
                        task_id: None,
                        cycle: cycle as i64,
                        point_taken_at: taken,
                        started_by: &a.name,
                        state: "running",
                        started_at: started,
                        cleaned: false,
                    },
                )?;
                if drill as u64 > DRILL_MAX {
                    return Err(Error::Internal(anyhow::anyhow!("drill numbers ran out")));
                }
                let row = crate::tasks::insert(c, "vps.drill", "vps", &s2.id.to_string(), &a)?;
                repo::set_task(c, drill, row.id)?;
                audit::record(
                    c,
                    &a,
                    Change::new(
                        "vps.drill",
                        "vps",
                        s2.id,
                        format!(
                            "failover drill of VPS {} on host {} from restore point {cycle}",
                            s2.name, to2.name
                        ),
                    )
                    .details(
                        serde_json::json!({ "drill": drill, "host_id": to2.id, "cycle": cycle }),
                    ),
                )?;
                Ok((drill, row))
            })
        })
        .await?;
    let task = Task::new(state.db.clone(), state.hub.clone(), actor, &row);
    let out = task.response();
    tokio::spawn(async move {
        let _pin = pin;
        let r = run(&state, &task, drill, &src, &to, manifest).await;
        task.finish(&r).await;
    });
    Ok(out)
}

/// A drill of every duplicated HA VPS on host `host_id` at once, as a failover of the whole host
/// would restore them together: the tasks begun, and each VPS that could not be drilled with why.
pub async fn drill_host(
    state: Arc<Vpses>,
    actor: &Actor,
    host_id: serverware_shared::HostId,
) -> Result<(Vec<TaskResponse>, Vec<String>)> {
    let host = state.db.run(move |c| load_host(c, host_id)).await?;
    let on: Vec<VpsRow> = state
        .db
        .run(crate::repo::vpses::ha)
        .await?
        .into_iter()
        .filter(|(v, _)| v.host_id == Some(host_id))
        .map(|(v, _)| v)
        .collect();
    if on.is_empty() {
        return Err(Error::conflict(
            None,
            format!("host {} runs no HA VPS to drill", host.name),
        ));
    }
    let (mut tasks, mut refused) = (Vec::new(), Vec::new());
    for v in on {
        match drill(state.clone(), StartedBy::User(actor), v.id).await {
            Ok(t) => tasks.push(t),
            Err(e) => refused.push(format!("{}: {}", v.name, e.message())),
        }
    }
    Ok((tasks, refused))
}

/// What a drill found, as its record keeps it.
struct Found {
    passed: bool,
    rto_ms: Option<i64>,
    rpo_ms: i64,
    message: String,
}

/// The drill's work, its record finished and its parts removed whatever happened.
async fn run(
    state: &Arc<Vpses>,
    task: &Task,
    drill: i64,
    src: &VpsRow,
    to: &HostRow,
    manifest: Arc<Manifest>,
) -> std::result::Result<String, Error> {
    // How old the data a failover would bring up is: the point's read, or, for the newest
    // point, the last cycle that found the VPS unchanged since.
    let d = state.duplo.state(src.id);
    let fresh_ms = match d.unchanged_ms {
        Some(t) if d.last_cycle == manifest.cycle => t.max(manifest.taken_at_ms),
        _ => manifest.taken_at_ms,
    };
    let rpo_ms = (chrono::Utc::now().timestamp_millis() - fresh_ms).max(0);
    let detect_ms = match src.host_id {
        Some(h) => state
            .db
            .run(move |c| load_host(c, h))
            .await
            .map(|h| lease_ttl_ms(h.sample_interval_ms.max(0) as u64) as i64)
            .unwrap_or(0),
        None => 0,
    };
    let tried = bring_up_and_check(state, task, drill, src, to, manifest).await;
    let found = match tried {
        Ok(answered_ms) => Found {
            passed: true,
            rto_ms: Some(detect_ms + answered_ms),
            rpo_ms,
            message: format!(
                "RTO {:.1} s (netMON notices a lost host within {:.1} s, then the restore until the checks passed took {:.1} s), RPO {:.1} s",
                (detect_ms + answered_ms) as f64 / 1000.0,
                detect_ms as f64 / 1000.0,
                answered_ms as f64 / 1000.0,
                rpo_ms as f64 / 1000.0
            ),
        },
        Err(e) => Found {
            passed: false,
            rto_ms: None,
            rpo_ms,
            message: e.message(),
        },
    };
    task.log(&found.message).await;
    let removed = remove(state, drill, to).await;
    match &removed {
        Ok(()) => {
            task.log("the drill's copy and its network are removed")
                .await
        }
        Err(e) => {
            task.log(format!(
                "the drill's copy stays on {} until it answers: {}",
                to.name,
                e.message()
            ))
            .await
        }
    }
    let cleaned = removed.is_ok();
    let Found {
        passed,
        rto_ms,
        rpo_ms,
        message,
    } = found;
    let (m, vps) = (message.clone(), (src.id, src.name.clone()));
    state
        .db
        .run(move |c| {
            crate::db::atomic(c, |c| {
                let at = chrono::Utc::now().naive_utc();
                let st = if passed { "passed" } else { "failed" };
                repo::finish(c, drill, st, rto_ms, Some(rpo_ms), &m, at)?;
                if cleaned {
                    repo::set_cleaned(c, drill)?;
                }
                ended(c, drill, &vps, passed, &m, rto_ms, Some(rpo_ms))
            })
        })
        .await?;
    super::changed(
        &state.hub,
        src.id,
        serverware_shared::ws::ChangeKind::Updated,
    );
    if passed {
        Ok(format!("drill of VPS {} passed: {message}", src.name))
    } else {
        Err(Error::conflict(
            None,
            format!("drill of VPS {} failed: {message}", src.name),
        ))
    }
}

/// The address the drill's checks come from: the VPS network's gateway (what its services see
/// in production), else the network's first address that is not the VPS's.
fn probe_address(ip: &str, prefix: u8, gateway: Option<&str>) -> Result<String> {
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| Error::Internal(anyhow::anyhow!("the VPS's address {ip} is not IPv4")))?;
    let prefix = prefix.clamp(8, 30);
    if let Some(g) = gateway.and_then(|g| g.parse::<Ipv4Addr>().ok()) {
        if g != ip {
            return Ok(format!("{g}/{prefix}"));
        }
    }
    let mask = u32::MAX << (32 - u32::from(prefix));
    let net = u32::from(ip) & mask;
    let first = Ipv4Addr::from(net + 1);
    let pick = if first == ip {
        Ipv4Addr::from(net + 2)
    } else {
        first
    };
    Ok(format!("{pick}/{prefix}"))
}

/// The network, the copy defined from the point, started and checked: how long from the
/// restore's start until the checks passed (ms).
async fn bring_up_and_check(
    state: &Arc<Vpses>,
    task: &Task,
    drill: i64,
    src: &VpsRow,
    to: &HostRow,
    manifest: Arc<Manifest>,
) -> Result<i64> {
    let n = drill_names(drill as u64);
    let c = conn(state, to.id, &to.name)?;
    let mut copy = spec(src, to);
    let probe = probe_address(&copy.ipv4, copy.prefix_len, copy.gateway.as_deref())?;
    call(
        &c,
        AgentRequest::DrillNet {
            drill: drill as u64,
            probe: Some(probe.clone()),
        },
        QUICK,
    )
    .await?;
    task.log(format!(
        "an isolated network on {}: bridge {} (no uplink), checks from {probe}",
        to.name, n.bridge
    ))
    .await;
    copy.name = n.container.clone();
    copy.bridge = n.bridge.clone();
    copy.veth = n.container_veth.clone();
    copy.mac = format!(
        "02:53:44:{:02x}:{:02x}:{:02x}",
        (drill >> 16) & 0xff,
        (drill >> 8) & 0xff,
        drill & 0xff
    );
    copy.autostart = false;
    let define = AgentRequest::VpsDefine { spec: copy };
    let t0 = Instant::now();
    call(&c, define.clone(), QUICK).await?;
    {
        let _slots = slots(state, task, &[to.id]).await?;
        task.log(format!(
            "restoring point {} of {} as {} on {}",
            manifest.cycle, src.name, n.container, to.name
        ))
        .await;
        // From storage only: a standby copy there is not lent to a drill (its files would be
        // linked into a copy that then runs).
        crate::duplo::restore::send(
            state.duplo.store.clone(),
            task,
            &c,
            &n.container,
            src.ids_on_disk(),
            None,
            manifest,
            (10, 80),
        )
        .await?;
    }
    call(&c, define, QUICK).await?;
    call(
        &c,
        AgentRequest::VpsStart {
            name: n.container.clone(),
        },
        QUICK,
    )
    .await?;
    let ports = parse_check_ports(&src.check_ports);
    task.log(format!(
        "started; checking {} (icmp{}) from inside its network",
        src.ipv4,
        ports
            .iter()
            .map(|p| format!(", tcp/{p}"))
            .collect::<String>()
    ))
    .await;
    task.progress(85, 0, None).await;
    let started = Instant::now();
    let mut last: String;
    loop {
        let r = call(
            &c,
            AgentRequest::DrillCheck {
                drill: drill as u64,
                ipv4: src.ipv4.clone(),
                ports: ports.clone(),
            },
            QUICK,
        )
        .await;
        match r {
            Ok(_) => break,
            Err(Error::HostUnavailable(m)) => last = m,
            Err(e) => return Err(e),
        }
        if started.elapsed() >= ANSWER_WITHIN {
            return Err(Error::conflict(
                None,
                format!(
                    "the copy did not answer its checks within {} s: {last}",
                    ANSWER_WITHIN.as_secs()
                ),
            ));
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
    task.progress(95, 0, None).await;
    Ok(t0.elapsed().as_millis() as i64)
}

/// The drill's copy and network gone from `host` (each step harmless when already done).
async fn remove_on(c: &Conn, drill: i64) -> Result<()> {
    let n = drill_names(drill as u64);
    let listed = match call(c, AgentRequest::VpsList, QUICK).await? {
        serverware_shared::agent::AgentResponse::VpsList { vpses } => {
            vpses.iter().any(|v| v.name == n.container)
        }
        _ => true,
    };
    if listed {
        call(
            c,
            AgentRequest::VpsStop {
                name: n.container.clone(),
                timeout_secs: 1,
            },
            Duration::from_secs(60),
        )
        .await?;
        call(
            c,
            AgentRequest::VpsDestroy {
                name: n.container.clone(),
            },
            QUICK,
        )
        .await?;
    }
    call(
        c,
        AgentRequest::DrillNet {
            drill: drill as u64,
            probe: None,
        },
        QUICK,
    )
    .await?;
    Ok(())
}

async fn remove(state: &Vpses, drill: i64, host: &HostRow) -> Result<()> {
    let c = conn(state, host.id, &host.name)?;
    remove_on(&c, drill).await
}

/// The drill's end as a system event (`vps.drill.passed` or `vps.drill.failed`, the one alerts
/// tell of), with its figures.
fn ended(
    c: &mut crate::db::DbConn,
    drill: i64,
    (id, name): &(VpsId, String),
    passed: bool,
    message: &str,
    rto_ms: Option<i64>,
    rpo_ms: Option<i64>,
) -> Result<()> {
    let (action, severity) = if passed {
        ("vps.drill.passed", serverware_shared::api::Severity::Info)
    } else {
        ("vps.drill.failed", serverware_shared::api::Severity::Error)
    };
    audit::record_system(
        c,
        &Actor::system("drill"),
        Change::new(
            action,
            "vps",
            *id,
            format!(
                "failover drill of VPS {name} {}: {message}",
                if passed { "passed" } else { "failed" }
            ),
        )
        .details(serde_json::json!({ "drill": drill, "rto_ms": rto_ms, "rpo_ms": rpo_ms }))
        .severity(severity),
    )?;
    Ok(())
}

/// At start: drills an earlier run left under way are failed (their copies are removed by
/// [`clean_up`]).
pub async fn settle_interrupted(state: &Vpses) -> Result<usize> {
    state
        .db
        .run(|c| {
            let left = repo::running(c)?;
            let at = chrono::Utc::now().naive_utc();
            let why = "the controller stopped during the drill";
            for d in &left {
                repo::finish(c, d.id, "failed", None, d.rpo_ms, why, at)?;
                let vps = (VpsId(d.vps_id), d.vps_name.clone());
                ended(c, d.id, &vps, false, why, None, d.rpo_ms)?;
            }
            Ok(left.len())
        })
        .await
}

/// Removes what drills left on hosts that answer now; a drill whose host is gone is done.
pub async fn clean_up(state: &Vpses) -> Result<usize> {
    let left = state.db.run(repo::unclean).await?;
    let mut n = 0;
    for d in left {
        let h = serverware_shared::HostId(d.host_id);
        let host = match state.db.run(move |c| load_host(c, h)).await {
            Ok(h) => Some(h),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let done = match host {
            None => true,
            Some(h) => match state.hosts.conn(h.id) {
                Some(c) => match remove_on(&c, d.id).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(
                            drill = d.id,
                            "cannot remove the drill's copy on {}: {}",
                            h.name,
                            e.message()
                        );
                        false
                    }
                },
                None => false,
            },
        };
        if done {
            let id = d.id;
            state.db.run(move |c| repo::set_cleaned(c, id)).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// A VPS's drills, newest first.
pub async fn list(state: &Vpses, id: VpsId, limit: i64) -> Result<Vec<DrillResponse>> {
    state.db.run(move |c| load(c, id)).await?;
    let rows = state
        .db
        .run(move |c| repo::of_vps(c, id.get(), limit))
        .await?;
    Ok(rows.iter().map(response).collect())
}

pub fn response(d: &Drill) -> DrillResponse {
    let utc = |t: chrono::NaiveDateTime| t.and_utc();
    DrillResponse {
        id: d.id,
        vps_id: d.vps_id,
        vps_name: d.vps_name.clone(),
        host_id: d.host_id,
        host_name: d.host_name.clone(),
        task_id: d.task_id,
        cycle: d.cycle.max(0) as u64,
        point_taken_at: utc(d.point_taken_at),
        started_by: d.started_by.clone(),
        state: d.state.clone(),
        started_at: utc(d.started_at),
        finished_at: d.finished_at.map(utc),
        rto_ms: d.rto_ms,
        rpo_ms: d.rpo_ms,
        message: d.message.clone(),
        cleaned: d.cleaned,
    }
}

/// The weekly schedule (`drill_every_days`, 0: off): each HA VPS whose last drill began longer
/// ago than that gets one, one drill at a time across the site.
pub async fn scheduled(state: &Arc<Vpses>) -> Result<()> {
    let every = state.db.run(crate::settings::drill_every_days).await?;
    if every == 0 {
        return Ok(());
    }
    let (ha, last, running) = state
        .db
        .run(|c| {
            Ok((
                crate::repo::vpses::ha(c)?
                    .into_iter()
                    .filter(|(_, duplicated)| *duplicated)
                    .map(|(v, _)| v.id)
                    .collect::<Vec<_>>(),
                repo::last_started(c)?,
                repo::running(c)?.len(),
            ))
        })
        .await?;
    if running > 0 {
        return Ok(());
    }
    let due_before = chrono::Utc::now().naive_utc() - chrono::TimeDelta::days(i64::from(every));
    let last: std::collections::HashMap<i64, chrono::NaiveDateTime> = last.into_iter().collect();
    let due = ha
        .into_iter()
        .filter(|id| last.get(&id.get()).is_none_or(|t| *t < due_before))
        .min_by_key(|id| last.get(&id.get()).copied());
    if let Some(id) = due {
        if let Err(e) = drill(state.clone(), StartedBy::Schedule, id).await {
            tracing::info!(
                vps = id.get(),
                "the scheduled drill did not start: {}",
                e.message()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_takes_the_gateway_else_a_free_first_address() {
        assert_eq!(
            probe_address("10.0.0.5", 24, Some("10.0.0.1")).unwrap(),
            "10.0.0.1/24"
        );
        assert_eq!(probe_address("10.0.0.5", 24, None).unwrap(), "10.0.0.1/24");
        assert_eq!(probe_address("10.0.0.1", 24, None).unwrap(), "10.0.0.2/24");
        assert_eq!(
            probe_address("10.0.0.1", 24, Some("10.0.0.1")).unwrap(),
            "10.0.0.2/24"
        );
        assert_eq!(probe_address("10.9.3.7", 16, None).unwrap(), "10.9.0.1/16");
    }
}
