//! VPSes: their records and the operations on them (create, start, stop, restart, edit, delete,
//! copy, move), one file per operation. Each operation is a Task; the API, the dashboard and the
//! schedulers all come through here. The database is the source of truth; the work on hosts goes
//! through their agents.

mod copy;
mod create;
mod delete;
mod edit;
mod move_to;
pub mod placement;
mod power;
mod reconcile;
mod restore;
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
pub use reconcile::{reconcile, RECONCILE_EVERY};
pub use restore::{fail_over, restore, RestoreVps};
use transfer::{live_disk, push_template, slots, transfer};

use crate::audit::{self, Actor, Change};
use crate::core::Core;
use crate::error::{ApiError, ApiResult};
use crate::hosts::{Conn, HostRow};
use crate::models::now;
use crate::ops::{self, Finish, OpRow};
use crate::schema::{hosts, vpses};
use crate::ssh::SshError;
use crate::tasks::Task;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serverware_shared::agent::{AgentRequest, AgentResponse, HostSample, VpsSpec};
use serverware_shared::api::{HostCapacity, TaskResponse, VpsResponse};
use serverware_shared::state::{DesiredState, HostStatus, ObservedState, VpsOperation};
use serverware_shared::ws::{ChangeKind, InventoryChange, ServerMessage};
use std::collections::HashMap;
use std::sync::Arc;
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
    /// The observed state as last recorded (see [`ObservedState`]); shown as `unknown` while
    /// the host cannot be reached.
    pub status: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// What the operator asked for (see [`DesiredState`]).
    pub desired_state: String,
    /// Root in the VPS is root on its host (no id mapping).
    pub privileged: bool,
    /// Where the VPS's ids start on its host; None when privileged.
    pub id_base: Option<i64>,
    /// netMON: who goes first when room is short.
    pub ha_priority: i32,
    /// netMON: the TCP ports its service checks try ("22,80").
    pub check_ports: String,
}

impl VpsRow {
    /// The base of the VPS's id range as the agent takes it (None: privileged).
    pub fn ids(&self) -> Option<u32> {
        if self.privileged {
            None
        } else {
            self.id_base.and_then(|b| u32::try_from(b).ok())
        }
    }

    /// The ids its root filesystem carries on its host, for a transfer: its base, or 0.
    pub fn ids_on_disk(&self) -> u32 {
        self.ids().unwrap_or(0)
    }

    pub fn desired(&self) -> DesiredState {
        DesiredState::parse(&self.desired_state).unwrap_or(DesiredState::Stopped)
    }

    /// The state as recorded, whatever the host's connection.
    pub fn recorded(&self) -> ObservedState {
        ObservedState::parse(&self.status).unwrap_or(ObservedState::Unknown)
    }
}

/// What the controller knows of a VPS now: its recorded state while its host is connected,
/// else unknown (a VPS on an offline host is not `running`).
pub fn observed(state: &Core, v: &VpsRow) -> ObservedState {
    let recorded = v.recorded();
    if recorded == ObservedState::Creating {
        return recorded;
    }
    match v.host_id {
        Some(h) if state.hosts.conn(h).is_some() => recorded,
        _ => ObservedState::Unknown,
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
        // An HA VPS is started by the controller only, never by its host on its own: after a
        // failover the host that comes back must not start its stale copy.
        autostart: v.autostart && !v.ha_enabled,
        id_base: v.ids(),
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

/// How long after a VPS's last recorded change its host's figures may still predate it.
const LIVE_SETTLE_MS: i64 = 3000;

/// A VPS as the API shows it, with what its host reports now.
pub fn response(
    state: &Core,
    v: &VpsRow,
    host_name: Option<String>,
    claim: Option<(VpsOperation, i64)>,
) -> VpsResponse {
    // A host's figures are read on their own thread, up to an interval before the sample that
    // carries them: until one has surely been read since the VPS's last change (a start, a
    // stop), what the controller recorded is shown, so that a task that reported success is
    // never contradicted by an older reading.
    let live = v.host_id.and_then(|h| {
        state
            .hosts
            .view(h)
            .filter(|view| view.status == Some(HostStatus::Online))
            .filter(|view| {
                view.last_seen.is_some_and(|t| {
                    t.naive_utc() > v.updated_at + chrono::TimeDelta::milliseconds(LIVE_SETTLE_MS)
                })
            })
            .and_then(|view| view.latest)
            .and_then(|s| s.vpses.into_iter().find(|x| x.name == v.name))
    });
    // A host that stopped sending samples is not believed, whatever its connection says.
    let host_online = v.host_id.is_some_and(|h| {
        state
            .hosts
            .view(h)
            .is_some_and(|view| view.status == Some(HostStatus::Online))
    });
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
                host_id: s.host_id,
                cycle: s.cycle,
            }),
        created_at: v.created_at.and_utc(),
        updated_at: v.updated_at.and_utc(),
    }
}

/// Every VPS as the API shows it, by name.
pub async fn list(state: &Core) -> ApiResult<Vec<VpsResponse>> {
    let (rows, names, claims) = state
        .db
        .run(|c| {
            let rows: Vec<VpsRow> = vpses::table
                .order(vpses::name)
                .select(VpsRow::as_select())
                .load(c)?;
            let names: HashMap<i64, String> = hosts::table
                .select((hosts::id, hosts::name))
                .load::<(i64, String)>(c)?
                .into_iter()
                .collect();
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

/// One VPS as the API shows it.
pub async fn get(state: &Core, id: i64) -> ApiResult<VpsResponse> {
    let (v, host, claim) = state
        .db
        .run(move |c| {
            let v = load(c, id)?;
            let host = match v.host_id {
                Some(h) => hosts::table
                    .find(h)
                    .select(hosts::name)
                    .first::<String>(c)
                    .optional()?,
                None => None,
            };
            Ok((v, host, ops::claims::holder(c, id)?))
        })
        .await?;
    Ok(response(state, &v, host, claim))
}

fn conn(state: &Core, host_id: i64, name: &str) -> Result<Conn, ApiError> {
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

pub(crate) fn changed(state: &Core, id: i64, change: ChangeKind) {
    state.hub.publish(&ServerMessage::Inventory {
        change: InventoryChange {
            kind: "vps".into(),
            id: id.to_string(),
            change,
        },
    });
}

/// Starts the work of a task in the background. Whatever the work does (panics included), the
/// operation ends properly: its claims and reservations are released and the task gets its
/// outcome, unless the work says it must be finished later (then the recovery loop owns it).
fn spawn<F, Fut>(state: Arc<Core>, task: Arc<Task>, vps_ids: Vec<i64>, work: F)
where
    F: FnOnce(Arc<Core>, Arc<Task>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Finish> + Send + 'static,
{
    let id = task.id();
    state.ops_live.enter(id);
    tokio::spawn(async move {
        let inner = tokio::spawn(work(state.clone(), task.clone()));
        let finish = match inner.await {
            Ok(f) => f,
            Err(e) => Finish::Done(Err(ApiError::Internal(anyhow::anyhow!(
                "the operation stopped unexpectedly: {e}"
            )))),
        };
        conclude(&state, &task, &vps_ids, finish).await;
    });
}

/// Ends (or parks) an operation after its work returned.
async fn conclude(state: &Arc<Core>, task: &Task, vps_ids: &[i64], finish: Finish) {
    let id = task.id();
    match finish {
        Finish::Done(r) => {
            state.ops_live.park(id, false);
            let ended = chrono::Utc::now();
            if let Err(e) = ops::release(&state.db, id).await {
                tracing::error!(task = id, "cannot release the operation's claims: {e}");
            }
            task.finish_ended(&r, ended).await;
        }
        Finish::Later { release_claims } => {
            state.ops_live.park(id, true);
            if release_claims {
                if let Err(e) = ops::release_claims(&state.db, id).await {
                    tracing::error!(task = id, "cannot release the operation's claims: {e}");
                }
            }
        }
    }
    state.ops_live.leave(id);
    for v in vps_ids {
        changed(state, *v, ChangeKind::Updated);
    }
}

/// Recovers a recorded operation this controller is not driving (see [`ops::recovery`]).
pub async fn recover(state: &Arc<Core>, task: Arc<Task>, op: OpRow) {
    let finish = match op.kind.as_str() {
        "vps.create" => create::recover(state, &task, &op).await,
        "vps.copy" => copy::recover(state, &task, &op).await,
        "vps.move" => move_to::recover(state, &task, &op).await,
        "vps.delete" => delete::recover(state, &task, &op).await,
        "vps.restore" => restore::recover(state, &task, &op).await,
        other => Finish::Done(Err(ApiError::Internal(anyhow::anyhow!(
            "an operation of unknown kind '{other}' cannot be recovered"
        )))),
    };
    conclude(state, &task, &[op.vps_id], finish).await;
}

/// What a request asks for beyond the task itself, written in the same transaction.
#[derive(Default)]
struct Begin {
    /// The operation's parameters, when it is durable (its steps are recorded).
    durable: Option<serde_json::Value>,
    /// A host to hold room on for the VPS (a move's target).
    reserve: Option<i64>,
    /// The desired state the request sets.
    desired: Option<DesiredState>,
}

/// Records the request in one transaction: the task, the claims on `claim` (409 if another
/// operation holds one, before anything is written), the audit event, and what `extra` asks.
#[allow(clippy::too_many_arguments)]
async fn begin(
    state: &Arc<Core>,
    actor: &Actor,
    op: VpsOperation,
    vps: &VpsRow,
    claim: &[(i64, String)],
    message: String,
    details: serde_json::Value,
    extra: Begin,
) -> ApiResult<Arc<Task>> {
    state.accepting()?;
    let kind = format!("vps.{}", op.as_str());
    let (a, id) = (actor.clone(), vps.id);
    let claim = claim.to_vec();
    let row = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let mut row = crate::tasks::insert(c, &kind, "vps", &id.to_string(), &a)?;
                let names: Vec<(i64, &str)> = claim.iter().map(|(i, n)| (*i, n.as_str())).collect();
                ops::claims::take(c, &names, row.id, op)?;
                crate::tasks::started_now(c, &mut row)?;
                if let Some(p) = &extra.durable {
                    ops::record(c, row.id, &kind, id, p)?;
                }
                if let Some(h) = extra.reserve {
                    ops::claims::reserve(c, row.id, h, id)?;
                }
                if let Some(d) = extra.desired {
                    diesel::update(vpses::table.find(id))
                        .set(vpses::desired_state.eq(d.as_str()))
                        .execute(c)?;
                }
                audit::record(
                    c,
                    &a,
                    Change::new(&kind, "vps", id, message).details(details),
                )?;
                Ok(row)
            })
        })
        .await?;
    Ok(Task::new(
        state.db.clone(),
        state.hub.clone(),
        actor.clone(),
        &row,
    ))
}

/// Whether `op` may begin on `v` now: not while another operation holds it, and only from the
/// states the transition table allows. The refusal names the state.
async fn check(state: &Core, v: &VpsRow, op: VpsOperation) -> ApiResult<()> {
    let id = v.id;
    let holder = state.db.run(move |c| ops::claims::holder(c, id)).await?;
    serverware_shared::state::check(op, observed(state, v), holder)
        .map_err(|r| ApiError::conflict(None, r.message(&v.name, op)))
}

/// Host row and name of a placed VPS.
async fn host_of(state: &Core, v: &VpsRow) -> ApiResult<HostRow> {
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
async fn name_free_on(state: &Core, host_id: i64, host_name: &str, name: &str) -> ApiResult<()> {
    // Asked of the host now: a sample can be a second old and still show a container that was
    // just removed.
    let taken = match state.hosts.conn(host_id) {
        Some(c) => match call(&c, AgentRequest::VpsList, QUICK).await? {
            AgentResponse::VpsList { vpses } => vpses.iter().any(|x| x.name == name),
            _ => false,
        },
        None => state
            .hosts
            .view(host_id)
            .and_then(|v| v.latest)
            .is_some_and(|s| s.vpses.iter().any(|x| x.name == name)),
    };
    if taken {
        if remove_stale_copy(state, host_id, host_name, name).await? {
            return Ok(());
        }
        return Err(ApiError::conflict(
            Some("name"),
            format!("host {host_name} already has a container named '{name}' that SERVERware does not manage"),
        ));
    }
    Ok(())
}

/// A container on `host_id` named as a VPS that the records place on another host, with no
/// operation on it, is a stale copy of that VPS (left by a failover or a move while the host was
/// away): it is removed. The records are the truth and they survive a restart of the controller,
/// whatever it had in memory. Whether one was removed.
pub(crate) async fn remove_stale_copy(
    state: &Core,
    host_id: i64,
    host_name: &str,
    name: &str,
) -> ApiResult<bool> {
    let n = name.to_string();
    let stale = state
        .db
        .run(move |c| {
            let row: Option<VpsRow> = vpses::table
                .filter(vpses::name.eq(&n))
                .select(VpsRow::as_select())
                .first(c)
                .optional()?;
            Ok(match row {
                Some(v) if v.host_id.is_some() && v.host_id != Some(host_id) => {
                    ops::claims::holder(c, v.id)?.is_none().then_some(v)
                }
                _ => None,
            })
        })
        .await?;
    let Some(v) = stale else { return Ok(false) };
    let Some(c) = state.hosts.conn(host_id) else {
        return Ok(false);
    };
    // The agent removes only a container SERVERware made.
    match call(
        &c,
        AgentRequest::VpsDestroy {
            name: v.name.clone(),
        },
        Duration::from_secs(120),
    )
    .await
    {
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(
                vps = v.name,
                host = host_name,
                "a stale copy could not be removed: {}",
                e.body().message
            );
            return Ok(false);
        }
    }
    let (id, vname, hname) = (v.id, v.name.clone(), host_name.to_string());
    state
        .db
        .run(move |c| {
            audit::record_system(
                c,
                &Actor::system("reconcile"),
                Change::new(
                    "vps.stale_copy_removed",
                    "vps",
                    id,
                    format!("the stale copy of VPS {vname} on host {hname} was removed (the VPS is recorded on another host)"),
                )
                .details(serde_json::json!({ "host_id": host_id }))
                .severity(serverware_shared::api::Severity::Warning),
            )?;
            Ok(())
        })
        .await?;
    tracing::warn!(vps = v.name, host = host_name, "removed a stale copy");
    Ok(true)
}

/// Undoes a create or copy: the container goes from its host, then the record. False when the
/// host cannot be reached or refuses: nothing is forgotten then, and it is tried again later.
async fn remove_unfinished(state: &Core, task: &Task, host_id: i64, vps: &VpsRow) -> bool {
    let host = state
        .db
        .run(move |c| load_host(c, host_id))
        .await
        .map(|h| h.name)
        .unwrap_or_else(|_| format!("#{host_id}"));
    let Some(c) = state.hosts.conn(host_id) else {
        task.log(format!(
            "host {host} cannot be reached now: the unfinished VPS {} is removed once it can",
            vps.name
        ))
        .await;
        return false;
    };
    if let Err(e) = call(
        &c,
        AgentRequest::VpsDestroy {
            name: vps.name.clone(),
        },
        QUICK,
    )
    .await
    {
        task.log(format!(
            "removing the unfinished VPS {} from {host} failed ({}); trying again later",
            vps.name,
            e.body().message
        ))
        .await;
        return false;
    }
    let id = vps.id;
    let gone = state
        .db
        .run(move |c| {
            diesel::delete(vpses::table.find(id)).execute(c)?;
            Ok(())
        })
        .await;
    if gone.is_err() {
        return false;
    }
    task.log(format!(
        "removed the unfinished VPS {} from {host}",
        vps.name
    ))
    .await;
    changed(state, id, ChangeKind::Deleted);
    true
}

/// Records what a VPS is now, and optionally what it should be.
async fn set_state(
    state: &Core,
    id: i64,
    observed: ObservedState,
    desired: Option<DesiredState>,
) -> ApiResult<()> {
    state
        .db
        .run(move |c| {
            diesel::update(vpses::table.find(id))
                .set((
                    vpses::status.eq(observed.as_str()),
                    vpses::updated_at.eq(now()),
                ))
                .execute(c)?;
            if let Some(d) = desired {
                diesel::update(vpses::table.find(id))
                    .set(vpses::desired_state.eq(d.as_str()))
                    .execute(c)?;
            }
            Ok(())
        })
        .await?;
    changed(state, id, ChangeKind::Updated);
    Ok(())
}

/// Checked ports as stored ("22,80").
pub fn ports_text(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
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
    desired_state: &'a str,
    privileged: bool,
    ha_enabled: bool,
    ha_priority: i32,
    check_ports: String,
}

impl<'a> NewVps<'a> {
    /// A new VPS like `src` (limits, template, privilege) under its own name and address on
    /// `host_id`: a copy, or a VPS made from one of `src`'s restore points. It runs as its source
    /// does, in an id range of its own.
    fn like(src: &'a VpsRow, name: &'a str, ipv4: &'a str, host_id: i64, start: bool) -> Self {
        NewVps {
            name,
            description: &src.description,
            host_id: Some(host_id),
            template_id: src.template_id,
            ipv4,
            hostname: name,
            memory_limit_bytes: src.memory_limit_bytes,
            cpu_shares: src.cpu_shares,
            cpu_limit_millis: src.cpu_limit_millis,
            disk_limit_bytes: src.disk_limit_bytes,
            autostart: src.autostart,
            desired_state: if start { "running" } else { "stopped" },
            privileged: src.privileged,
            // A new VPS: high availability is the operator's to ask for.
            ha_enabled: false,
            ha_priority: 0,
            check_ports: String::new(),
        }
    }
}

/// The lowest id range no VPS has. Creates and copies take the placement lock, so two never
/// pick at once; the unique index on `id_base` guards the rest.
fn free_id_base(c: &mut crate::db::DbConn) -> ApiResult<i64> {
    use serverware_shared::agent::{FIRST_ID_BASE, ID_RANGE};
    let taken: Vec<Option<i64>> = vpses::table
        .filter(vpses::id_base.is_not_null())
        .select(vpses::id_base)
        .order(vpses::id_base.asc())
        .load(c)?;
    let mut next = i64::from(FIRST_ID_BASE);
    for b in taken.into_iter().flatten() {
        if b > next {
            break;
        }
        next = next.max(b + i64::from(ID_RANGE));
    }
    if u32::try_from(next)
        .ok()
        .is_none_or(|b| !serverware_shared::agent::id_base_ok(b))
    {
        return Err(ApiError::conflict(
            None,
            "every id range of the site is taken: no more unprivileged VPSes can be made",
        ));
    }
    Ok(next)
}

/// Records a new VPS with status `creating` and returns it; an unprivileged one gets an id
/// range of its own.
fn insert_creating(c: &mut crate::db::DbConn, v: NewVps<'_>) -> ApiResult<VpsRow> {
    let t = now();
    let id_base = if v.privileged {
        None
    } else {
        Some(free_id_base(c)?)
    };
    diesel::insert_into(vpses::table)
        .values((
            &v,
            vpses::id_base.eq(id_base),
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
