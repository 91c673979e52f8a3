//! VPSes: their records and the operations on them (create, start, stop, restart, edit, delete,
//! copy, move), one file per operation. Each operation is a Task; the API, the dashboard and the
//! schedulers all come through here. The database is the source of truth; the work on hosts goes
//! through their agents.

mod copy;
mod create;
mod delete;
mod edit;
mod move_to;
mod placement;
mod power;
mod reconcile;
mod transfer;

pub use copy::copy;
pub use create::{create, CreateVps};
pub use delete::delete;
pub use edit::{edit, EditVps};
pub use move_to::move_to;
use placement::fits;
use placement::mib;
pub use placement::{candidates, capacity, free, need, place, Candidate};
pub use power::{start, stop};
pub use reconcile::{reconcile, start_reconciler, RECONCILE_EVERY};
use transfer::{live_disk, push_template, transfer};

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
