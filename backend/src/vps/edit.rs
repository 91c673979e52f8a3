//! Edit a VPS's settings; limits apply at once, an address at the next start.

use super::agent::{call, spec, QUICK};
use super::operation::{check, spawn};
use super::placement::{candidates, mib, need};
use super::record::{changed, host_of};
use super::Vpses;
use crate::audit::{self, Actor, Change};
use crate::error::{Error, Result};
use crate::ops::{self, Finish};
use crate::repo::vpses::{load, ports_text, unique, VpsRow};
use crate::tasks::Task;
use serverware_shared::agent::AgentRequest;
use serverware_shared::api::TaskResponse;
use serverware_shared::state::VpsOperation;
use serverware_shared::ws::ChangeKind;
use serverware_shared::VpsId;
use std::sync::Arc;

pub struct EditVps {
    pub description: Option<String>,
    pub ipv4: Option<String>,
    pub hostname: Option<String>,
    pub memory_limit_bytes: Option<u64>,
    /// `Some(None)` removes the setting.
    pub cpu_shares: Option<Option<u32>>,
    pub cpu_limit_millis: Option<Option<u32>>,
    pub autostart: Option<bool>,
    pub ha_enabled: Option<bool>,
    pub ha_priority: Option<i32>,
    pub check_ports: Option<Vec<u16>>,
}

/// More memory must still fit on its host.
async fn memory_fits(state: &Arc<Vpses>, v: &VpsRow, e: &EditVps) -> Result<()> {
    let id = v.id;
    if let (Some(m), Some(h)) = (e.memory_limit_bytes, v.host_id) {
        if m as i64 > v.memory_limit_bytes {
            let cands = candidates(state, Some(id)).await?;
            if let Some(c) = cands.iter().find(|c| c.id == h) {
                let mut n = need(v);
                n.memory_bytes = m as i64;
                n.cpu_millis = 0;
                n.disk_bytes = 0;
                if c.free.memory_bytes < n.memory_bytes {
                    return Err(Error::conflict(
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
    Ok(())
}

fn changes(e: &EditVps) -> crate::repo::vpses::VpsChanges {
    use crate::repo::vpses::VpsChanges;
    VpsChanges {
        description: e.description.clone(),
        ipv4: e.ipv4.clone(),
        hostname: e.hostname.clone(),
        memory_limit_bytes: e.memory_limit_bytes.map(|m| m as i64),
        cpu_shares: e.cpu_shares.map(|s| s.map(|v| v as i32)),
        cpu_limit_millis: e.cpu_limit_millis.map(|l| l.map(|v| v as i32)),
        autostart: e.autostart,
        ha_enabled: e.ha_enabled,
        ha_priority: e.ha_priority,
        check_ports: e.check_ports.as_deref().map(ports_text),
    }
}

/// What an edit changes, for people.
fn describe(e: &EditVps) -> Vec<String> {
    let mut what = Vec::new();
    if e.description.is_some() {
        what.push("description".to_string());
    }
    if let Some(ip) = &e.ipv4 {
        what.push(format!("address {ip}"));
    }
    if let Some(h) = &e.hostname {
        what.push(format!("host name {h}"));
    }
    if let Some(m) = e.memory_limit_bytes {
        what.push(format!("memory {}", mib(m as i64)));
    }
    if let Some(s) = e.cpu_shares {
        what.push(format!(
            "CPU shares {}",
            s.map(|v| v.to_string()).unwrap_or("default".into())
        ));
    }
    if let Some(l) = e.cpu_limit_millis {
        what.push(format!(
            "CPU limit {}",
            l.map(|v| format!("{:.2} CPUs", f64::from(v) / 1000.0))
                .unwrap_or("none".into())
        ));
    }
    if let Some(au) = e.autostart {
        what.push(format!("autostart {}", if au { "on" } else { "off" }));
    }
    if let Some(ha) = e.ha_enabled {
        what.push(format!(
            "high availability {}",
            if ha { "on" } else { "off" }
        ));
    }
    if let Some(p) = e.ha_priority {
        what.push(format!("HA priority {p}"));
    }
    if let Some(ports) = &e.check_ports {
        what.push(if ports.is_empty() {
            "service checks: ICMP only".to_string()
        } else {
            format!("service checks: ICMP and TCP {}", ports_text(ports))
        });
    }
    what
}

/// Changes a VPS; limits apply at once to a running VPS, an address or host name at its next
/// start. Returns the VPS, whether a restart is needed, and the task applying it on its host.
pub async fn edit(
    state: Arc<Vpses>,
    actor: Actor,
    id: VpsId,
    e: EditVps,
) -> Result<(VpsRow, bool, Option<TaskResponse>)> {
    state.accepting()?;
    let v = state.db.run(move |c| load(c, id)).await?;
    check(&state, &v, VpsOperation::Edit).await?;
    memory_fits(&state, &v, &e).await?;
    let restart_required = v.status == serverware_shared::state::ObservedState::Running
        && (e.ipv4.as_ref().is_some_and(|i| *i != v.ipv4)
            || e.hostname.as_ref().is_some_and(|h| *h != v.hostname));
    let a = actor.clone();
    let touches_host = e.ipv4.is_some()
        || e.hostname.is_some()
        || e.memory_limit_bytes.is_some()
        || e.cpu_shares.is_some()
        || e.cpu_limit_millis.is_some()
        || e.autostart.is_some()
        || e.ha_enabled.is_some();
    let (nv, row) = state
        .db
        .run(move |c| {
            crate::db::atomic(c, |c| {
                // Checked again inside the transaction: nothing may change under an operation.
                ops::claims::lock(c, &[id])?;
                if let Some(h) = ops::claims::holder(c, id)? {
                    return Err(ops::claims::busy(&v.name, VpsOperation::Edit, h));
                }
                if let Some(ip) = &e.ipv4 {
                    unique(c, &v.name, ip, Some(id))?;
                }
                let what = describe(&e);
                crate::repo::vpses::update(c, id, &changes(&e))?;
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
                    (true, Some(_)) => {
                        let mut row =
                            crate::tasks::insert(c, "vps.edit", "vps", &id.to_string(), &a)?;
                        ops::claims::take(c, &[(id, &nv.name)], row.id, VpsOperation::Edit)?;
                        crate::tasks::started_now(c, &mut row)?;
                        Some(row)
                    }
                    _ => None,
                };
                Ok((nv, row))
            })
        })
        .await?;
    changed(&state.hub, id, ChangeKind::Updated);
    let Some(row) = row else {
        return Ok((nv, restart_required, None));
    };
    let task = Task::new(state.db.clone(), state.hub.clone(), actor, &row);
    let out = task.response();
    let v2 = nv.clone();
    spawn(state, task, vec![id], move |state, task| async move {
        Finish::Done(apply(&state, &task, &v2, restart_required).await)
    });
    Ok((nv, restart_required, Some(out)))
}

/// Writes the changed configuration on the VPS's host, and its limits if it runs.
async fn apply(state: &Vpses, task: &Task, v2: &VpsRow, restart_required: bool) -> Result<String> {
    let host = host_of(state, v2).await?;
    let Some(c) = state.hosts.conn(host.id) else {
        task.log(format!(
            "host {} is offline: the change applies when the VPS next starts",
            host.name
        ))
        .await;
        return Ok("stored; the host is offline".into());
    };
    let sp = spec(v2, &host);
    call(&c, AgentRequest::VpsDefine { spec: sp.clone() }, QUICK).await?;
    task.log("configuration written on the host").await;
    if v2.status == serverware_shared::state::ObservedState::Running {
        call(&c, AgentRequest::VpsApplyLimits { spec: sp }, QUICK).await?;
        task.log("memory and CPU limits applied to the running VPS")
            .await;
    }
    if restart_required {
        task.log("the new address or host name takes effect at the next restart")
            .await;
    }
    Ok(format!("VPS {} updated", v2.name))
}
