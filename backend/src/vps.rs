//! VPS operations: create, start, stop, restart, edit, delete, copy, move. Each is a Task; the
//! API, the dashboard and (later) the schedulers all come through here. The database is the
//! source of truth; the work on hosts goes through their agents.

use crate::audit::{self, Actor, Change};
use crate::error::{ApiError, ApiResult};
use crate::hosts::{Conn, HostRow};
use crate::models::now;
use crate::schema::{hosts, vpses};
use crate::ssh::SshError;
use crate::state::AppState;
use crate::tasks::Task;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serverware_shared::agent::{AgentRequest, AgentResponse, HostSample, VpsSpec};
use serverware_shared::api::{HostCapacity, TaskResponse, VpsResponse};
use serverware_shared::ws::{ChangeKind, InventoryChange, ServerMessage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a quick agent request may take.
const QUICK: Duration = Duration::from_secs(60);
pub const DEFAULT_STOP_TIMEOUT: u32 = 30;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = vpses)]
pub struct VpsRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub host_id: Option<i64>,
    pub template_id: Option<i64>,
    pub ipv4: String,
    pub hostname: String,
    pub memory_limit_bytes: i64,
    pub cpu_shares: Option<i32>,
    pub cpu_limit_millis: Option<i32>,
    pub disk_limit_bytes: Option<i64>,
    pub autostart: bool,
    pub ha_enabled: bool,
    pub status: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// VPSes with a task running on them: one task per VPS at a time.
#[derive(Default)]
pub struct Busy(Mutex<HashMap<i64, i64>>);

impl Busy {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, i64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn task_of(&self, vps: i64) -> Option<i64> {
        self.lock().get(&vps).copied()
    }
    /// Claims the VPSes for a task, or says which task holds one.
    fn claim(&self, ids: &[i64], task: i64) -> Result<(), i64> {
        let mut m = self.lock();
        if let Some(t) = ids.iter().find_map(|id| m.get(id)) {
            return Err(*t);
        }
        for id in ids {
            m.insert(*id, task);
        }
        Ok(())
    }
    fn set(&self, ids: &[i64], task: i64) {
        let mut m = self.lock();
        for id in ids {
            m.insert(*id, task);
        }
    }
    fn release(&self, ids: &[i64]) {
        let mut m = self.lock();
        for id in ids {
            m.remove(id);
        }
    }
}

/// The interface name and MAC of a VPS follow from its id, so they stay the same on every host.
pub fn spec(v: &VpsRow, h: &HostRow) -> VpsSpec {
    let id = v.id as u64;
    VpsSpec {
        name: v.name.clone(),
        hostname: v.hostname.clone(),
        ipv4: v.ipv4.clone(),
        prefix_len: h.vps_prefix_len.clamp(8, 30) as u8,
        gateway: h.vps_gateway.clone(),
        bridge: h.vps_bridge.clone(),
        mac: format!(
            "02:53:57:{:02x}:{:02x}:{:02x}",
            (id >> 16) & 0xff,
            (id >> 8) & 0xff,
            id & 0xff
        ),
        veth: format!("swv{id}"),
        memory_limit_bytes: v.memory_limit_bytes.max(0) as u64,
        cpu_shares: v.cpu_shares.map(|s| s.max(2) as u32),
        cpu_limit_millis: v.cpu_limit_millis.map(|m| m.max(1) as u32),
        autostart: v.autostart,
    }
}

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
    HostCapacity {
        memory_bytes: v.memory_limit_bytes,
        cpu_millis: v.cpu_limit_millis.map(i64::from).unwrap_or(0),
        disk_bytes: v.disk_limit_bytes.unwrap_or(0),
    }
}

pub fn free(cap: HostCapacity, placed: &[&VpsRow]) -> HostCapacity {
    let mut f = cap;
    for v in placed {
        let n = need(v);
        f.memory_bytes -= n.memory_bytes;
        f.cpu_millis -= n.cpu_millis;
        f.disk_bytes -= n.disk_bytes;
    }
    f
}

/// A host that could take a VPS.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: i64,
    pub name: String,
    pub online: bool,
    pub capacity: HostCapacity,
    pub free: HostCapacity,
    pub load1: f64,
}

fn mib(b: i64) -> String {
    format!("{} MiB", b / (1 << 20))
}

fn fits(c: &Candidate, n: &HostCapacity) -> Result<(), String> {
    if !c.online {
        return Err(format!("{} is not online", c.name));
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
pub fn place(cands: &[Candidate], n: &HostCapacity) -> Result<i64, String> {
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

pub fn load(c: &mut crate::db::DbConn, id: i64) -> ApiResult<VpsRow> {
    vpses::table
        .find(id)
        .select(VpsRow::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| ApiError::NotFound(format!("no VPS with id {id}")))
}

pub fn load_host(c: &mut crate::db::DbConn, id: i64) -> ApiResult<HostRow> {
    hosts::table
        .find(id)
        .select(HostRow::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| ApiError::invalid("host_id", format!("no host with id {id}")))
}

/// A VPS as the API shows it, with what its host reports now.
pub fn response(state: &AppState, v: &VpsRow, host_name: Option<String>) -> VpsResponse {
    let live = v.host_id.and_then(|h| {
        state
            .hosts
            .view(h)
            .filter(|view| view.status == "online")
            .and_then(|view| view.latest)
            .and_then(|s| s.vpses.into_iter().find(|x| x.name == v.name))
    });
    VpsResponse {
        id: v.id,
        name: v.name.clone(),
        description: v.description.clone(),
        host_id: v.host_id,
        host_name,
        template_id: v.template_id,
        ipv4: v.ipv4.clone(),
        hostname: v.hostname.clone(),
        memory_limit_bytes: v.memory_limit_bytes,
        cpu_shares: v.cpu_shares,
        cpu_limit_millis: v.cpu_limit_millis,
        disk_limit_bytes: v.disk_limit_bytes,
        autostart: v.autostart,
        status: v.status.clone(),
        state: live.as_ref().map(|l| l.state.clone()),
        live,
        busy_task: state.vps_busy.task_of(v.id),
        created_at: v.created_at.and_utc(),
        updated_at: v.updated_at.and_utc(),
    }
}

fn conn(state: &AppState, host_id: i64, name: &str) -> Result<Conn, ApiError> {
    state
        .hosts
        .conn(host_id)
        .ok_or_else(|| ApiError::conflict(None, format!("host {name} is offline")))
}

fn agent_err(e: SshError) -> ApiError {
    match e {
        SshError::Agent(m) => ApiError::HostUnavailable(format!("the host refused: {m}")),
        other => ApiError::HostUnavailable(other.to_string()),
    }
}

async fn call(c: &Conn, req: AgentRequest, timeout: Duration) -> ApiResult<AgentResponse> {
    c.agent.call(req, timeout).await.map_err(agent_err)
}

fn changed(state: &AppState, id: i64, change: ChangeKind) {
    state.hub.publish(&ServerMessage::Inventory {
        change: InventoryChange {
            kind: "vps".into(),
            id: id.to_string(),
            change,
        },
    });
}

async fn set_status(state: &AppState, id: i64, status: &str) -> ApiResult<()> {
    let s = status.to_string();
    state
        .db
        .run(move |c| {
            diesel::update(vpses::table.find(id))
                .set((vpses::status.eq(&s), vpses::updated_at.eq(now())))
                .execute(c)?;
            Ok(())
        })
        .await?;
    changed(state, id, ChangeKind::Updated);
    Ok(())
}

/// Starts the work of a task in the background, holding `vps_ids` until it ends.
fn spawn<F, Fut>(state: Arc<AppState>, task: Arc<Task>, vps_ids: Vec<i64>, work: F)
where
    F: FnOnce(Arc<AppState>, Arc<Task>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ApiResult<String>> + Send + 'static,
{
    tokio::spawn(async move {
        let r = work(state.clone(), task.clone()).await;
        state.vps_busy.release(&vps_ids);
        task.finish(&r).await;
        for id in vps_ids {
            changed(&state, id, ChangeKind::Updated);
        }
    });
}

/// Records the request (audited, in one transaction with the task) and claims the VPSes.
async fn begin(
    state: &Arc<AppState>,
    actor: &Actor,
    kind: &'static str,
    vps: &VpsRow,
    claim: &[i64],
    message: String,
    details: serde_json::Value,
) -> ApiResult<Arc<Task>> {
    // Claim first with a placeholder so two requests cannot both pass the state checks.
    if let Err(t) = state.vps_busy.claim(claim, 0) {
        return Err(busy(vps, t));
    }
    let (a, id) = (actor.clone(), vps.id);
    let row = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let row = crate::tasks::insert(c, kind, "vps", &id.to_string(), &a)?;
                audit::record(
                    c,
                    &a,
                    Change::new(kind, "vps", id, message).details(details),
                )?;
                Ok(row)
            })
        })
        .await;
    let row = match row {
        Ok(r) => r,
        Err(e) => {
            state.vps_busy.release(claim);
            return Err(e);
        }
    };
    state.vps_busy.set(claim, row.id);
    Ok(Task::new(
        state.db.clone(),
        state.hub.clone(),
        actor.clone(),
        &row,
    ))
}

fn busy(v: &VpsRow, task: i64) -> ApiError {
    if task == 0 {
        ApiError::conflict(
            None,
            format!("VPS {} is busy with another operation", v.name),
        )
    } else {
        ApiError::conflict(
            None,
            format!(
                "VPS {} is busy with task {task}; wait for it to end",
                v.name
            ),
        )
    }
}

fn forbid(v: &VpsRow, what: &str, allowed: &[&str]) -> ApiResult<()> {
    if allowed.contains(&v.status.as_str()) {
        Ok(())
    } else {
        Err(ApiError::conflict(
            None,
            format!("VPS {} is {}; it cannot be {what} now", v.name, v.status),
        ))
    }
}

/// Host row and name of a placed VPS.
async fn host_of(state: &AppState, v: &VpsRow) -> ApiResult<HostRow> {
    let Some(h) = v.host_id else {
        return Err(ApiError::conflict(
            None,
            format!("VPS {} is on no host", v.name),
        ));
    };
    state.db.run(move |c| load_host(c, h)).await
}

/// The online hosts with what is free on each, for placement.
pub async fn candidates(state: &AppState, except_vps: Option<i64>) -> ApiResult<Vec<Candidate>> {
    let (hs, vs) = state
        .db
        .run(|c| {
            let hs: Vec<HostRow> = hosts::table
                .order(hosts::id)
                .select(HostRow::as_select())
                .load(c)?;
            let vs: Vec<VpsRow> = vpses::table.select(VpsRow::as_select()).load(c)?;
            Ok((hs, vs))
        })
        .await?;
    Ok(hs
        .iter()
        .map(|h| {
            let view = state.hosts.view(h.id).unwrap_or_default();
            let cap = capacity(h, view.latest.as_ref());
            let placed: Vec<&VpsRow> = vs
                .iter()
                .filter(|v| v.host_id == Some(h.id) && Some(v.id) != except_vps)
                .collect();
            Candidate {
                id: h.id,
                name: h.name.clone(),
                online: view.status == "online" && state.hosts.conn(h.id).is_some(),
                capacity: cap,
                free: free(cap, &placed),
                load1: view.latest.as_ref().map(|s| s.load[0]).unwrap_or(0.0),
            }
        })
        .collect())
}

/// A host may already have a container of that name that SERVERware does not manage (it is
/// reported, never touched): refuse before anything is made.
fn name_free_on(state: &AppState, host_id: i64, host_name: &str, name: &str) -> ApiResult<()> {
    let taken = state
        .hosts
        .view(host_id)
        .and_then(|v| v.latest)
        .is_some_and(|s| s.vpses.iter().any(|x| x.name == name));
    if taken {
        return Err(ApiError::conflict(
            Some("name"),
            format!("host {host_name} already has a container named '{name}' that SERVERware does not manage"),
        ));
    }
    Ok(())
}

/// Streams a template archive from storage into a new VPS's root filesystem on a host.
async fn push_template(
    task: &Task,
    c: &Conn,
    name: &str,
    path: &std::path::Path,
) -> ApiResult<u64> {
    use tokio::io::AsyncReadExt;
    let total = tokio::fs::metadata(path)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .len();
    let ch = c
        .session
        .exec_channel(crate::hosts::AGENT_PATH, &["rootfs-import", name, "--gzip"])
        .await
        .map_err(agent_err)?;
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut sent = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        if n == 0 {
            break;
        }
        ch.data(&buf[..n])
            .await
            .map_err(|e| ApiError::HostUnavailable(format!("sending to the host failed: {e}")))?;
        sent += n as u64;
        task.progress(
            10 + (sent * 70 / total.max(1)) as i32,
            sent as i64,
            Some(total as i64),
        )
        .await;
    }
    finish_stream(ch, "unpacking the template").await?;
    Ok(sent)
}

/// Closes a stream's input and waits for the program at its end to succeed.
async fn finish_stream(mut ch: russh::Channel<russh::client::Msg>, what: &str) -> ApiResult<()> {
    ch.eof()
        .await
        .map_err(|e| ApiError::HostUnavailable(format!("{what}: {e}")))?;
    let (mut code, mut err) = (None, Vec::new());
    while let Some(msg) = ch.wait().await {
        match msg {
            russh::ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            russh::ChannelMsg::ExtendedData { data, .. } => err.extend_from_slice(&data),
            _ => {}
        }
    }
    match code {
        Some(0) => Ok(()),
        _ => Err(ApiError::HostUnavailable(format!(
            "{what} failed on the host: {}",
            String::from_utf8_lossy(&err).trim()
        ))),
    }
}

/// Streams a root filesystem from one host (or VPS) to another through the controller.
async fn transfer(
    task: &Task,
    from: &Conn,
    from_name: &str,
    to: &Conn,
    to_name: &str,
    estimate: Option<u64>,
    pct: (i32, i32),
) -> ApiResult<u64> {
    let mut src = from
        .session
        .exec_channel(crate::hosts::AGENT_PATH, &["rootfs-export", from_name])
        .await
        .map_err(agent_err)?;
    let dst = to
        .session
        .exec_channel(crate::hosts::AGENT_PATH, &["rootfs-import", to_name])
        .await
        .map_err(agent_err)?;
    let (mut n, mut code, mut err) = (0u64, None, Vec::new());
    while let Some(msg) = src.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => {
                dst.data(&data[..]).await.map_err(|e| {
                    ApiError::HostUnavailable(format!("sending to the target host failed: {e}"))
                })?;
                n += data.len() as u64;
                let done = match estimate {
                    Some(t) if t > 0 => (n * 100 / t).min(99) as i32,
                    _ => 50,
                };
                task.progress(
                    pct.0 + (pct.1 - pct.0) * done / 100,
                    n as i64,
                    estimate.map(|e| e.max(n) as i64),
                )
                .await;
            }
            russh::ChannelMsg::ExtendedData { data, .. } => err.extend_from_slice(&data),
            russh::ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            _ => {}
        }
    }
    if code != Some(0) {
        let _ = dst.close().await;
        return Err(ApiError::HostUnavailable(format!(
            "reading the root filesystem failed: {}",
            String::from_utf8_lossy(&err).trim()
        )));
    }
    finish_stream(dst, "writing the root filesystem").await?;
    Ok(n)
}

/// The live figures of a VPS on its host (for sizes and states).
fn live_disk(state: &AppState, host: i64, name: &str) -> Option<u64> {
    state
        .hosts
        .view(host)?
        .latest?
        .vpses
        .into_iter()
        .find(|v| v.name == name)
        .map(|v| v.disk_used_bytes)
}

/// After a failed create or copy nothing half-made stays: the container goes from its host
/// (if the host can be reached) and the record goes too.
async fn remove_unfinished(state: &AppState, task: &Task, host_id: i64, vps: &VpsRow) {
    if let Some(c) = state.hosts.conn(host_id) {
        let _ = c
            .agent
            .call(
                AgentRequest::VpsDestroy {
                    name: vps.name.clone(),
                },
                QUICK,
            )
            .await;
    }
    let id = vps.id;
    let _ = state
        .db
        .run(move |c| {
            diesel::delete(vpses::table.find(id)).execute(c)?;
            Ok(())
        })
        .await;
    task.log(format!("removed the unfinished VPS {}", vps.name))
        .await;
    changed(state, id, ChangeKind::Deleted);
}

// ---- operations ----------------------------------------------------------------------------

pub struct CreateVps {
    pub name: String,
    pub description: String,
    pub template_id: i64,
    pub host_id: Option<i64>,
    pub ipv4: String,
    pub hostname: String,
    pub memory_limit_bytes: u64,
    pub cpu_shares: Option<u32>,
    pub cpu_limit_millis: Option<u32>,
    pub disk_limit_bytes: Option<u64>,
    pub autostart: bool,
    pub start: bool,
}

/// A VPS about to be made on a host (create, copy).
#[derive(Insertable)]
#[diesel(table_name = vpses)]
struct NewVps<'a> {
    name: &'a str,
    description: &'a str,
    host_id: Option<i64>,
    template_id: Option<i64>,
    ipv4: &'a str,
    hostname: &'a str,
    memory_limit_bytes: i64,
    cpu_shares: Option<i32>,
    cpu_limit_millis: Option<i32>,
    disk_limit_bytes: Option<i64>,
    autostart: bool,
}

/// Records a new VPS with status `creating` and returns it.
fn insert_creating(c: &mut crate::db::DbConn, v: NewVps<'_>) -> ApiResult<VpsRow> {
    let t = now();
    diesel::insert_into(vpses::table)
        .values((
            &v,
            vpses::status.eq("creating"),
            vpses::created_at.eq(t),
            vpses::updated_at.eq(t),
        ))
        .execute(c)?;
    Ok(vpses::table
        .filter(vpses::name.eq(v.name))
        .select(VpsRow::as_select())
        .first(c)?)
}

/// Name and address must be free across the site.
fn unique(c: &mut crate::db::DbConn, name: &str, ipv4: &str, except: Option<i64>) -> ApiResult<()> {
    let mut q = vpses::table.filter(vpses::name.eq(name)).into_boxed();
    if let Some(id) = except {
        q = q.filter(vpses::id.ne(id));
    }
    if q.count().get_result::<i64>(c)? > 0 {
        return Err(ApiError::conflict(
            Some("name"),
            format!("a VPS named '{name}' exists"),
        ));
    }
    let mut q = vpses::table.filter(vpses::ipv4.eq(ipv4)).into_boxed();
    if let Some(id) = except {
        q = q.filter(vpses::id.ne(id));
    }
    if let Some(other) = q.select(vpses::name).first::<String>(c).optional()? {
        return Err(ApiError::conflict(
            Some("ipv4"),
            format!("{ipv4} is already the address of VPS {other}"),
        ));
    }
    let host_addr: i64 = hosts::table
        .filter(hosts::address.eq(ipv4))
        .count()
        .get_result(c)?;
    if host_addr > 0 {
        return Err(ApiError::conflict(
            Some("ipv4"),
            format!("{ipv4} is the address of a host"),
        ));
    }
    Ok(())
}

pub async fn create(state: Arc<AppState>, actor: Actor, req: CreateVps) -> ApiResult<TaskResponse> {
    let tid = req.template_id;
    let template = state
        .db
        .run(move |c| {
            crate::templates::load(c, tid)
                .map_err(|_| ApiError::invalid("template_id", format!("no template with id {tid}")))
        })
        .await?;
    if template.status != "ready" {
        return Err(ApiError::conflict(
            Some("template_id"),
            format!("template {} is {}", template.name, template.status),
        ));
    }
    let path = crate::templates::file(&state.config.data_dir, &template);
    if !path.is_file() {
        return Err(ApiError::conflict(
            Some("template_id"),
            format!(
                "the archive of template {} is missing from storage",
                template.name
            ),
        ));
    }
    let (n, ip) = (req.name.clone(), req.ipv4.clone());
    state.db.run(move |c| unique(c, &n, &ip, None)).await?;
    let placing = state.placement.lock().await;
    let want = HostCapacity {
        memory_bytes: req.memory_limit_bytes as i64,
        cpu_millis: req.cpu_limit_millis.map(i64::from).unwrap_or(0),
        disk_bytes: req.disk_limit_bytes.map(|d| d as i64).unwrap_or(0),
    };
    let cands = candidates(&state, None).await?;
    let host_id = match req.host_id {
        Some(h) => {
            let c = cands
                .iter()
                .find(|c| c.id == h)
                .ok_or_else(|| ApiError::invalid("host_id", format!("no host with id {h}")))?;
            fits(c, &want).map_err(|m| ApiError::conflict(Some("host_id"), m))?;
            h
        }
        None => place(&cands, &want).map_err(|m| ApiError::conflict(Some("host_id"), m))?,
    };
    let host_name = cands
        .iter()
        .find(|c| c.id == host_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    name_free_on(&state, host_id, &host_name, &req.name)?;
    let a = actor.clone();
    let (vps, row) =
        state
            .db
            .run(move |c| {
                c.transaction(|c| {
                    unique(c, &req.name, &req.ipv4, None)?;
                    let vps = insert_creating(
                        c,
                        NewVps {
                            name: &req.name,
                            description: &req.description,
                            host_id: Some(host_id),
                            template_id: Some(req.template_id),
                            ipv4: &req.ipv4,
                            hostname: &req.hostname,
                            memory_limit_bytes: req.memory_limit_bytes as i64,
                            cpu_shares: req.cpu_shares.map(|v| v as i32),
                            cpu_limit_millis: req.cpu_limit_millis.map(|v| v as i32),
                            disk_limit_bytes: req.disk_limit_bytes.map(|v| v as i64),
                            autostart: req.autostart,
                        },
                    )?;
                    let row =
                        crate::tasks::insert(c, "vps.create", "vps", &vps.id.to_string(), &a)?;
                    audit::record(
                    c,
                    &a,
                    Change::new(
                        "vps.create",
                        "vps",
                        vps.id,
                        format!("created VPS {} ({}) on host {host_name}", vps.name, vps.ipv4),
                    )
                    .details(serde_json::json!({
                        "name": vps.name, "ipv4": vps.ipv4, "host_id": host_id,
                        "template": req.template_id, "memory_limit_bytes": vps.memory_limit_bytes,
                    })),
                )?;
                    Ok((vps, row))
                })
            })
            .await?;
    drop(placing);
    let _ = state.vps_busy.claim(&[vps.id], row.id);
    let task = Task::new(state.db.clone(), state.hub.clone(), actor, &row);
    let out = task.response();
    let start = req.start;
    spawn(state, task, vec![vps.id], move |state, task| async move {
        let r = create_work(&state, &task, &vps, &path, start).await;
        if r.is_err() {
            remove_unfinished(&state, &task, host_id, &vps).await;
        }
        r
    });
    Ok(out)
}

async fn create_work(
    state: &Arc<AppState>,
    task: &Task,
    vps: &VpsRow,
    template: &std::path::Path,
    start: bool,
) -> ApiResult<String> {
    let host = host_of(state, vps).await?;
    let c = conn(state, host.id, &host.name)?;
    task.log(format!("creating VPS {} on host {}", vps.name, host.name))
        .await;
    let spec = spec(vps, &host);
    call(&c, AgentRequest::VpsDefine { spec: spec.clone() }, QUICK).await?;
    task.progress(10, 0, None).await;
    let bytes = push_template(task, &c, &vps.name, template).await?;
    task.log(format!(
        "root filesystem unpacked ({bytes} bytes of template sent)"
    ))
    .await;
    // Writes the host name into the new root filesystem too.
    call(&c, AgentRequest::VpsDefine { spec }, QUICK).await?;
    task.progress(85, bytes as i64, Some(bytes as i64)).await;
    if start {
        task.log("starting").await;
        call(
            &c,
            AgentRequest::VpsStart {
                name: vps.name.clone(),
            },
            QUICK,
        )
        .await?;
        set_status(state, vps.id, "running").await?;
        Ok(format!(
            "VPS {} created and running on {}",
            vps.name, host.name
        ))
    } else {
        set_status(state, vps.id, "stopped").await?;
        Ok(format!("VPS {} created on {}", vps.name, host.name))
    }
}

pub async fn start(state: Arc<AppState>, actor: Actor, id: i64) -> ApiResult<TaskResponse> {
    let v = state.db.run(move |c| load(c, id)).await?;
    forbid(&v, "started", &["stopped", "error"])?;
    let host = host_of(&state, &v).await?;
    conn(&state, host.id, &host.name)?;
    let task = begin(
        &state,
        &actor,
        "vps.start",
        &v,
        &[id],
        format!("start VPS {}", v.name),
        serde_json::json!({}),
    )
    .await?;
    let out = task.response();
    spawn(state, task, vec![id], move |state, task| async move {
        let c = conn(&state, host.id, &host.name)?;
        task.log(format!("starting VPS {} on {}", v.name, host.name))
            .await;
        // The configuration is rewritten first, so edits made while stopped apply.
        call(
            &c,
            AgentRequest::VpsDefine {
                spec: spec(&v, &host),
            },
            QUICK,
        )
        .await?;
        task.progress(30, 0, None).await;
        match call(
            &c,
            AgentRequest::VpsStart {
                name: v.name.clone(),
            },
            QUICK,
        )
        .await
        {
            Ok(_) => {
                set_status(&state, id, "running").await?;
                Ok(format!("VPS {} is running", v.name))
            }
            Err(e) => {
                set_status(&state, id, "stopped").await?;
                Err(e)
            }
        }
    });
    Ok(out)
}

pub async fn stop(
    state: Arc<AppState>,
    actor: Actor,
    id: i64,
    timeout: u32,
    restart: bool,
) -> ApiResult<TaskResponse> {
    let v = state.db.run(move |c| load(c, id)).await?;
    let verb = if restart { "restarted" } else { "stopped" };
    forbid(&v, verb, &["running", "error"])?;
    let host = host_of(&state, &v).await?;
    conn(&state, host.id, &host.name)?;
    let kind = if restart { "vps.restart" } else { "vps.stop" };
    let task = begin(
        &state,
        &actor,
        kind,
        &v,
        &[id],
        format!(
            "{} VPS {}",
            if restart { "restart" } else { "stop" },
            v.name
        ),
        serde_json::json!({ "timeout_secs": timeout }),
    )
    .await?;
    let out = task.response();
    spawn(state, task, vec![id], move |state, task| async move {
        let c = conn(&state, host.id, &host.name)?;
        task.log(format!(
            "stopping VPS {} (forced after {timeout} s)",
            v.name
        ))
        .await;
        let r = call(
            &c,
            AgentRequest::VpsStop {
                name: v.name.clone(),
                timeout_secs: timeout,
            },
            Duration::from_secs(u64::from(timeout) + 60),
        )
        .await?;
        if let AgentResponse::Stopped { forced: true } = r {
            task.log(format!(
                "VPS {} did not stop within {timeout} s and was stopped by force",
                v.name
            ))
            .await;
        }
        set_status(&state, id, "stopped").await?;
        if !restart {
            return Ok(format!("VPS {} is stopped", v.name));
        }
        task.progress(50, 0, None).await;
        task.log("starting").await;
        call(
            &c,
            AgentRequest::VpsDefine {
                spec: spec(&v, &host),
            },
            QUICK,
        )
        .await?;
        call(
            &c,
            AgentRequest::VpsStart {
                name: v.name.clone(),
            },
            QUICK,
        )
        .await?;
        set_status(&state, id, "running").await?;
        Ok(format!("VPS {} restarted", v.name))
    });
    Ok(out)
}

pub async fn delete(state: Arc<AppState>, actor: Actor, id: i64) -> ApiResult<TaskResponse> {
    let v = state.db.run(move |c| load(c, id)).await?;
    forbid(&v, "deleted", &["stopped", "running", "error"])?;
    let host = match v.host_id {
        Some(_) => {
            let h = host_of(&state, &v).await?;
            // A container is only forgotten once it is gone from its host.
            conn(&state, h.id, &h.name)?;
            Some(h)
        }
        None => None,
    };
    let task = begin(
        &state,
        &actor,
        "vps.delete",
        &v,
        &[id],
        format!("delete VPS {}", v.name),
        serde_json::json!({ "name": v.name, "ipv4": v.ipv4 }),
    )
    .await?;
    let out = task.response();
    spawn(state, task, vec![id], move |state, task| async move {
        if let Some(h) = host {
            let c = conn(&state, h.id, &h.name)?;
            task.log(format!("removing VPS {} from host {}", v.name, h.name))
                .await;
            call(
                &c,
                AgentRequest::VpsDestroy {
                    name: v.name.clone(),
                },
                QUICK,
            )
            .await?;
        }
        state
            .db
            .run(move |c| {
                diesel::delete(vpses::table.find(id)).execute(c)?;
                Ok(())
            })
            .await?;
        changed(&state, id, ChangeKind::Deleted);
        Ok(format!("VPS {} deleted", v.name))
    });
    Ok(out)
}

pub struct EditVps {
    pub description: Option<String>,
    pub ipv4: Option<String>,
    pub hostname: Option<String>,
    pub memory_limit_bytes: Option<u64>,
    /// `Some(None)` removes the setting.
    pub cpu_shares: Option<Option<u32>>,
    pub cpu_limit_millis: Option<Option<u32>>,
    pub autostart: Option<bool>,
}

/// Changes a VPS; limits apply at once to a running VPS, an address or host name at its next
/// start. Returns the VPS, whether a restart is needed, and the task applying it on its host.
pub async fn edit(
    state: Arc<AppState>,
    actor: Actor,
    id: i64,
    e: EditVps,
) -> ApiResult<(VpsRow, bool, Option<TaskResponse>)> {
    let v = state.db.run(move |c| load(c, id)).await?;
    if let Some(t) = state.vps_busy.task_of(id) {
        return Err(busy(&v, t));
    }
    forbid(&v, "edited", &["stopped", "running", "error"])?;
    // More memory must still fit on its host.
    if let (Some(m), Some(h)) = (e.memory_limit_bytes, v.host_id) {
        if m as i64 > v.memory_limit_bytes {
            let cands = candidates(&state, Some(id)).await?;
            if let Some(c) = cands.iter().find(|c| c.id == h) {
                let mut n = need(&v);
                n.memory_bytes = m as i64;
                n.cpu_millis = 0;
                n.disk_bytes = 0;
                if c.free.memory_bytes < n.memory_bytes {
                    return Err(ApiError::conflict(
                        Some("memory_limit_bytes"),
                        format!(
                            "{} has {} of memory free for this VPS, not {}",
                            c.name,
                            mib(c.free.memory_bytes.max(0)),
                            mib(n.memory_bytes)
                        ),
                    ));
                }
            }
        }
    }
    let restart_required = v.status == "running"
        && (e.ipv4.as_ref().is_some_and(|i| *i != v.ipv4)
            || e.hostname.as_ref().is_some_and(|h| *h != v.hostname));
    let a = actor.clone();
    let touches_host = e.ipv4.is_some()
        || e.hostname.is_some()
        || e.memory_limit_bytes.is_some()
        || e.cpu_shares.is_some()
        || e.cpu_limit_millis.is_some()
        || e.autostart.is_some();
    let (nv, row) = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                if let Some(ip) = &e.ipv4 {
                    unique(c, &v.name, ip, Some(id))?;
                }
                let mut what = Vec::new();
                if let Some(d) = &e.description {
                    diesel::update(vpses::table.find(id))
                        .set(vpses::description.eq(d))
                        .execute(c)?;
                    what.push("description".to_string());
                }
                if let Some(ip) = &e.ipv4 {
                    diesel::update(vpses::table.find(id))
                        .set(vpses::ipv4.eq(ip))
                        .execute(c)?;
                    what.push(format!("address {ip}"));
                }
                if let Some(h) = &e.hostname {
                    diesel::update(vpses::table.find(id))
                        .set(vpses::hostname.eq(h))
                        .execute(c)?;
                    what.push(format!("host name {h}"));
                }
                if let Some(m) = e.memory_limit_bytes {
                    diesel::update(vpses::table.find(id))
                        .set(vpses::memory_limit_bytes.eq(m as i64))
                        .execute(c)?;
                    what.push(format!("memory {}", mib(m as i64)));
                }
                if let Some(s) = e.cpu_shares {
                    diesel::update(vpses::table.find(id))
                        .set(vpses::cpu_shares.eq(s.map(|v| v as i32)))
                        .execute(c)?;
                    what.push(format!(
                        "CPU shares {}",
                        s.map(|v| v.to_string()).unwrap_or("default".into())
                    ));
                }
                if let Some(l) = e.cpu_limit_millis {
                    diesel::update(vpses::table.find(id))
                        .set(vpses::cpu_limit_millis.eq(l.map(|v| v as i32)))
                        .execute(c)?;
                    what.push(format!(
                        "CPU limit {}",
                        l.map(|v| format!("{:.2} CPUs", f64::from(v) / 1000.0))
                            .unwrap_or("none".into())
                    ));
                }
                if let Some(au) = e.autostart {
                    diesel::update(vpses::table.find(id))
                        .set(vpses::autostart.eq(au))
                        .execute(c)?;
                    what.push(format!("autostart {}", if au { "on" } else { "off" }));
                }
                diesel::update(vpses::table.find(id))
                    .set(vpses::updated_at.eq(now()))
                    .execute(c)?;
                audit::record(
                    c,
                    &a,
                    Change::new(
                        "vps.update",
                        "vps",
                        id,
                        format!(
                            "VPS {}: {}",
                            v.name,
                            if what.is_empty() {
                                "no change".into()
                            } else {
                                what.join(", ")
                            }
                        ),
                    )
                    .details(serde_json::json!({ "restart_required": restart_required })),
                )?;
                let nv = load(c, id)?;
                let row = match (touches_host, nv.host_id) {
                    (true, Some(_)) => Some(crate::tasks::insert(
                        c,
                        "vps.edit",
                        "vps",
                        &id.to_string(),
                        &a,
                    )?),
                    _ => None,
                };
                Ok((nv, row))
            })
        })
        .await?;
    changed(&state, id, ChangeKind::Updated);
    let Some(row) = row else {
        return Ok((nv, restart_required, None));
    };
    let _ = state.vps_busy.claim(&[id], row.id);
    let task = Task::new(state.db.clone(), state.hub.clone(), actor, &row);
    let out = task.response();
    let v2 = nv.clone();
    spawn(state, task, vec![id], move |state, task| async move {
        let host = host_of(&state, &v2).await?;
        let Some(c) = state.hosts.conn(host.id) else {
            task.log(format!(
                "host {} is offline: the change applies when the VPS next starts",
                host.name
            ))
            .await;
            return Ok("stored; the host is offline".into());
        };
        let sp = spec(&v2, &host);
        call(&c, AgentRequest::VpsDefine { spec: sp.clone() }, QUICK).await?;
        task.log("configuration written on the host").await;
        if v2.status == "running" {
            call(&c, AgentRequest::VpsApplyLimits { spec: sp }, QUICK).await?;
            task.log("memory and CPU limits applied to the running VPS")
                .await;
        }
        if restart_required {
            task.log("the new address or host name takes effect at the next restart")
                .await;
        }
        Ok(format!("VPS {} updated", v2.name))
    });
    Ok((nv, restart_required, Some(out)))
}

pub async fn copy(
    state: Arc<AppState>,
    actor: Actor,
    id: i64,
    name: String,
    ipv4: String,
    target: Option<i64>,
    start_copy: bool,
) -> ApiResult<TaskResponse> {
    let src = state.db.run(move |c| load(c, id)).await?;
    forbid(&src, "copied", &["stopped", "running"])?;
    let from = host_of(&state, &src).await?;
    conn(&state, from.id, &from.name)?;
    let to_id = target.unwrap_or(from.id);
    let (n, ip) = (name.clone(), ipv4.clone());
    state.db.run(move |c| unique(c, &n, &ip, None)).await?;
    let placing = state.placement.lock().await;
    let cands = candidates(&state, None).await?;
    let c = cands
        .iter()
        .find(|c| c.id == to_id)
        .ok_or_else(|| ApiError::invalid("host_id", format!("no host with id {to_id}")))?;
    fits(c, &need(&src)).map_err(|m| ApiError::conflict(Some("host_id"), m))?;
    let to_name = c.name.clone();
    name_free_on(&state, to_id, &to_name, &name)?;
    if let Some(t) = state.vps_busy.task_of(id) {
        return Err(busy(&src, t));
    }
    let a = actor.clone();
    let s2 = src.clone();
    let (copy, row) = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                unique(c, &name, &ipv4, None)?;
                let copy = insert_creating(
                    c,
                    NewVps {
                        name: &name,
                        description: &s2.description,
                        host_id: Some(to_id),
                        template_id: s2.template_id,
                        ipv4: &ipv4,
                        hostname: &name,
                        memory_limit_bytes: s2.memory_limit_bytes,
                        cpu_shares: s2.cpu_shares,
                        cpu_limit_millis: s2.cpu_limit_millis,
                        disk_limit_bytes: s2.disk_limit_bytes,
                        autostart: s2.autostart,
                    },
                )?;
                let row = crate::tasks::insert(c, "vps.copy", "vps", &copy.id.to_string(), &a)?;
                audit::record(
                    c,
                    &a,
                    Change::new(
                        "vps.create",
                        "vps",
                        copy.id,
                        format!(
                            "copied VPS {} to {} ({}) on host {to_name}",
                            s2.name, copy.name, copy.ipv4
                        ),
                    )
                    .details(serde_json::json!({ "copy_of": s2.id, "host_id": to_id })),
                )?;
                Ok((copy, row))
            })
        })
        .await?;
    drop(placing);
    if let Err(t) = state.vps_busy.claim(&[id, copy.id], row.id) {
        let cid = copy.id;
        let _ = state
            .db
            .run(move |c| {
                diesel::delete(vpses::table.find(cid)).execute(c)?;
                Ok(())
            })
            .await;
        return Err(busy(&src, t));
    }
    let task = Task::new(state.db.clone(), state.hub.clone(), actor, &row);
    let out = task.response();
    spawn(
        state,
        task,
        vec![id, copy.id],
        move |state, task| async move {
            let r = copy_work(&state, &task, &src, &from, &copy, start_copy).await;
            if r.is_err() {
                remove_unfinished(&state, &task, to_id, &copy).await;
            }
            r
        },
    );
    Ok(out)
}

async fn copy_work(
    state: &Arc<AppState>,
    task: &Task,
    src: &VpsRow,
    from: &HostRow,
    copy: &VpsRow,
    start_copy: bool,
) -> ApiResult<String> {
    let to = host_of(state, copy).await?;
    let cf = conn(state, from.id, &from.name)?;
    let ct = conn(state, to.id, &to.name)?;
    task.log(format!(
        "copying VPS {} on {} to {} on {}",
        src.name, from.name, copy.name, to.name
    ))
    .await;
    call(
        &ct,
        AgentRequest::VpsDefine {
            spec: spec(copy, &to),
        },
        QUICK,
    )
    .await?;
    let running = src.status == "running";
    if running {
        call(
            &cf,
            AgentRequest::VpsFreeze {
                name: src.name.clone(),
                frozen: true,
            },
            QUICK,
        )
        .await?;
        task.log(format!("{} is paused while its files are copied", src.name))
            .await;
    }
    let estimate = live_disk(state, from.id, &src.name);
    let t0 = Instant::now();
    let r = transfer(task, &cf, &src.name, &ct, &copy.name, estimate, (5, 90)).await;
    if running {
        let thaw = call(
            &cf,
            AgentRequest::VpsFreeze {
                name: src.name.clone(),
                frozen: false,
            },
            QUICK,
        )
        .await;
        task.log(format!(
            "{} resumed after {:.1} s",
            src.name,
            t0.elapsed().as_secs_f64()
        ))
        .await;
        thaw?;
    }
    let bytes = r?;
    task.log(format!(
        "{bytes} bytes copied in {:.1} s",
        t0.elapsed().as_secs_f64()
    ))
    .await;
    call(
        &ct,
        AgentRequest::VpsDefine {
            spec: spec(copy, &to),
        },
        QUICK,
    )
    .await?;
    if start_copy {
        call(
            &ct,
            AgentRequest::VpsStart {
                name: copy.name.clone(),
            },
            QUICK,
        )
        .await?;
        set_status(state, copy.id, "running").await?;
        Ok(format!("copy {} is running on {}", copy.name, to.name))
    } else {
        set_status(state, copy.id, "stopped").await?;
        Ok(format!("copy {} created on {}", copy.name, to.name))
    }
}

pub async fn move_to(
    state: Arc<AppState>,
    actor: Actor,
    id: i64,
    target: i64,
) -> ApiResult<TaskResponse> {
    let v = state.db.run(move |c| load(c, id)).await?;
    forbid(&v, "moved", &["stopped", "running"])?;
    let from = host_of(&state, &v).await?;
    if from.id == target {
        return Err(ApiError::conflict(
            Some("host_id"),
            format!("VPS {} is already on {}", v.name, from.name),
        ));
    }
    conn(&state, from.id, &from.name)?;
    let cands = candidates(&state, Some(id)).await?;
    let c = cands
        .iter()
        .find(|c| c.id == target)
        .ok_or_else(|| ApiError::invalid("host_id", format!("no host with id {target}")))?;
    fits(c, &need(&v)).map_err(|m| ApiError::conflict(Some("host_id"), m))?;
    let to_name = c.name.clone();
    name_free_on(&state, target, &to_name, &v.name)?;
    let task = begin(
        &state,
        &actor,
        "vps.move",
        &v,
        &[id],
        format!("move VPS {} from {} to {to_name}", v.name, from.name),
        serde_json::json!({ "from": from.id, "to": target }),
    )
    .await?;
    let out = task.response();
    spawn(state, task, vec![id], move |state, task| async move {
        let to = state.db.run(move |c| load_host(c, target)).await?;
        move_work(&state, &task, &v, &from, &to).await
    });
    Ok(out)
}

async fn move_work(
    state: &Arc<AppState>,
    task: &Task,
    v: &VpsRow,
    from: &HostRow,
    to: &HostRow,
) -> ApiResult<String> {
    let cf = conn(state, from.id, &from.name)?;
    let ct = conn(state, to.id, &to.name)?;
    let running = v.status == "running";
    let estimate = live_disk(state, from.id, &v.name);
    task.log(format!(
        "moving VPS {} from {} to {}",
        v.name, from.name, to.name
    ))
    .await;
    call(&ct, AgentRequest::VpsDefine { spec: spec(v, to) }, QUICK).await?;
    let down = Instant::now();
    if running {
        set_status(state, v.id, "moving").await?;
        let r = call(
            &cf,
            AgentRequest::VpsStop {
                name: v.name.clone(),
                timeout_secs: DEFAULT_STOP_TIMEOUT,
            },
            Duration::from_secs(u64::from(DEFAULT_STOP_TIMEOUT) + 60),
        )
        .await?;
        task.log(format!(
            "stopped on {}{}",
            from.name,
            if matches!(r, AgentResponse::Stopped { forced: true }) {
                " (by force)"
            } else {
                ""
            }
        ))
        .await;
    }
    task.progress(10, 0, estimate.map(|e| e as i64)).await;
    let result = async {
        let bytes = transfer(task, &cf, &v.name, &ct, &v.name, estimate, (10, 85)).await?;
        task.log(format!("{bytes} bytes of root filesystem transferred"))
            .await;
        call(&ct, AgentRequest::VpsDefine { spec: spec(v, to) }, QUICK).await?;
        if running {
            call(
                &ct,
                AgentRequest::VpsStart {
                    name: v.name.clone(),
                },
                QUICK,
            )
            .await?;
        }
        Ok::<u64, ApiError>(bytes)
    }
    .await;
    match result {
        Ok(bytes) => {
            let downtime = down.elapsed();
            let (id, to_id) = (v.id, to.id);
            let status = if running { "running" } else { "stopped" };
            state
                .db
                .run(move |c| {
                    diesel::update(vpses::table.find(id))
                        .set((
                            vpses::host_id.eq(to_id),
                            vpses::status.eq(status),
                            vpses::updated_at.eq(now()),
                        ))
                        .execute(c)?;
                    Ok(())
                })
                .await?;
            if running {
                task.log(format!(
                    "running on {}; downtime {} ms",
                    to.name,
                    downtime.as_millis()
                ))
                .await;
            }
            task.progress(90, bytes as i64, Some(bytes as i64)).await;
            if let Err(e) = call(
                &cf,
                AgentRequest::VpsDestroy {
                    name: v.name.clone(),
                },
                QUICK,
            )
            .await
            {
                task.log(format!(
                    "could not remove the old copy on {}: {}",
                    from.name,
                    e.body().message
                ))
                .await;
            } else {
                task.log(format!("removed from {}", from.name)).await;
            }
            Ok(if running {
                format!(
                    "VPS {} moved to {} (downtime {} ms)",
                    v.name,
                    to.name,
                    downtime.as_millis()
                )
            } else {
                format!("VPS {} moved to {}", v.name, to.name)
            })
        }
        Err(e) => {
            // Back to where it was: the partial copy goes, the original runs again.
            let _ = ct
                .agent
                .call(
                    AgentRequest::VpsDestroy {
                        name: v.name.clone(),
                    },
                    QUICK,
                )
                .await;
            if running {
                match call(
                    &cf,
                    AgentRequest::VpsStart {
                        name: v.name.clone(),
                    },
                    QUICK,
                )
                .await
                {
                    Ok(_) => {
                        set_status(state, v.id, "running").await?;
                        task.log(format!("started again on {}", from.name)).await;
                    }
                    Err(e2) => {
                        set_status(state, v.id, "error").await?;
                        task.log(format!(
                            "could not start it again on {}: {}",
                            from.name,
                            e2.body().message
                        ))
                        .await;
                    }
                }
            }
            Err(e)
        }
    }
}

/// How often the database is compared with what hosts report.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// The database is the source of truth: a VPS that should run but is reported stopped (its host
/// rebooted, or it crashed) is started again if it has autostart, else recorded as stopped.
/// VPSes with a task running are left to it.
pub async fn reconcile(state: &Arc<AppState>) -> ApiResult<()> {
    let rows: Vec<VpsRow> = state
        .db
        .run(|c| {
            Ok(vpses::table
                .filter(vpses::status.eq("running"))
                .select(VpsRow::as_select())
                .load(c)?)
        })
        .await?;
    for v in rows {
        let Some(h) = v.host_id else { continue };
        if state.vps_busy.task_of(v.id).is_some() {
            continue;
        }
        // A sample from before its last change says nothing about it yet.
        let settled =
            chrono::Utc::now().naive_utc() - v.updated_at > chrono::TimeDelta::seconds(15);
        if !settled {
            continue;
        }
        let Some(view) = state.hosts.view(h).filter(|view| view.status == "online") else {
            continue;
        };
        let Some(sample) = view.latest else { continue };
        let reported = sample
            .vpses
            .iter()
            .find(|x| x.name == v.name)
            .map(|x| x.state.clone());
        if reported.as_deref() != Some("stopped") {
            continue;
        }
        let system = Actor::system("reconcile");
        if v.autostart {
            tracing::warn!(
                vps = v.name,
                "VPS should run but is stopped; starting it (autostart)"
            );
            let id = v.id;
            state
                .db
                .run(move |c| {
                    diesel::update(vpses::table.find(id))
                        .set(vpses::status.eq("stopped"))
                        .execute(c)?;
                    Ok(())
                })
                .await?;
            if let Err(e) = start(state.clone(), system, v.id).await {
                tracing::warn!(vps = v.name, "restarting it failed: {}", e.body().message);
            }
        } else {
            let (id, name) = (v.id, v.name.clone());
            state
                .db
                .run(move |c| {
                    diesel::update(vpses::table.find(id))
                        .set((vpses::status.eq("stopped"), vpses::updated_at.eq(now())))
                        .execute(c)?;
                    audit::record_system(
                        c,
                        &system,
                        Change::new(
                            "vps.stopped_unexpectedly",
                            "vps",
                            id,
                            format!("VPS {name} stopped on its own (autostart is off)"),
                        )
                        .severity(serverware_shared::api::Severity::Warning),
                    )?;
                    Ok(())
                })
                .await?;
            changed(state, v.id, ChangeKind::Updated);
        }
    }
    Ok(())
}

/// Runs [`reconcile`] every few seconds.
pub fn start_reconciler(state: Arc<AppState>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RECONCILE_EVERY).await;
            if let Err(e) = reconcile(&state).await {
                tracing::warn!("reconciling VPSes failed: {}", e.body().message);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: i64, mem_gib: i64, free_gib: i64, load1: f64) -> Candidate {
        Candidate {
            id,
            name: format!("h{id}"),
            online: true,
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
        assert_eq!(place(&hosts, &want(1)), Ok(2));
        let tied = vec![cand(1, 8, 4, 0.9), cand(2, 8, 4, 0.2)];
        assert_eq!(place(&tied, &want(1)), Ok(2));
        let mut off = cand(2, 16, 12, 0.5);
        off.online = false;
        assert_eq!(place(&[cand(1, 8, 2, 0.1), off], &want(1)), Ok(1));
        let e = place(&hosts, &want(13)).unwrap_err();
        assert!(e.starts_with("no host has room"), "{e}");
        assert!(e.contains("h2 has 12288 MiB of memory free"), "{e}");
    }

    #[test]
    fn capacity_is_declared_or_reported() {
        let h = HostRow {
            id: 1,
            name: "a".into(),
            description: String::new(),
            ssh_user: "root".into(),
            address: "10.77.1.10".into(),
            ssh_port: 22,
            host_key_fingerprint: None,
            host_key: None,
            status: "online".into(),
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
