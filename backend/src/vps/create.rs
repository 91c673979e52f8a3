//! Create a VPS from a template. Durable: its steps are recorded; a create the controller did
//! not see to its end is finished if the VPS was complete, else unwound (the container goes
//! from its host, the record from the database).

use super::agent::conn;
use super::on_host::{name_free_on, remove_unfinished};
use super::operation::spawn;
use super::placement::{candidates, fits, place};
use super::record::{host_of, set_state};
use super::transfer::push_template;
use super::{bring_up, Vpses};
use crate::audit::{self, Actor, Change};
use crate::error::{Error, Result};
use crate::ops::{self, saga, Finish, OpRow};
use crate::repo::vpses::{insert_creating, load, ports_text, unique, NewVps, VpsRow};
use crate::tasks::Task;
use serde::{Deserialize, Serialize};
use serverware_shared::api::{HostCapacity, TaskResponse};
use serverware_shared::state::{DesiredState, ObservedState, VpsOperation};
use serverware_shared::HostId;
use std::sync::Arc;

crate::ops::steps! {
    /// The steps of a create, in order (`started` only when it starts the VPS).
    pub enum Step for "vps.create" {
        Defined = "defined",
        Unpacked = "unpacked",
        Configured = "configured",
        Started = "started",
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct Params {
    host_id: HostId,
    template: std::path::PathBuf,
    start: bool,
}

pub struct CreateVps {
    pub name: String,
    pub description: String,
    pub template_id: i64,
    pub host_id: Option<HostId>,
    pub ipv4: String,
    pub hostname: String,
    pub memory_limit_bytes: u64,
    pub cpu_shares: Option<u32>,
    pub cpu_limit_millis: Option<u32>,
    pub disk_limit_bytes: Option<u64>,
    pub autostart: bool,
    pub start: bool,
    /// No id mapping: root in the VPS is root on its host.
    pub privileged: bool,
    pub ha_enabled: bool,
    pub ha_priority: i32,
    pub check_ports: Vec<u16>,
}

pub async fn create(state: Arc<Vpses>, actor: Actor, req: CreateVps) -> Result<TaskResponse> {
    state.accepting()?;
    let tid = req.template_id;
    let template = state
        .db
        .run(move |c| {
            crate::templates::load(c, tid)
                .map_err(|_| Error::invalid("template_id", format!("no template with id {tid}")))
        })
        .await?;
    if template.status != "ready" {
        return Err(Error::conflict(
            Some("template_id"),
            format!("template {} is {}", template.name, template.status),
        ));
    }
    let path = crate::templates::file(&state.templates_dir, &template);
    if !path.is_file() {
        return Err(Error::conflict(
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
                .ok_or_else(|| Error::invalid("host_id", format!("no host with id {h}")))?;
            fits(c, &want).map_err(|m| Error::conflict(Some("host_id"), m))?;
            h
        }
        None => place(&cands, &want).map_err(|m| Error::conflict(Some("host_id"), m))?,
    };
    let host_name = cands
        .iter()
        .find(|c| c.id == host_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    name_free_on(&state, host_id, &host_name, &req.name).await?;
    let a = actor.clone();
    let path2 = path.clone();
    let (vps, row) =
        state
            .db
            .run(move |c| {
                crate::db::atomic(c, |c| {
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
                            desired_state: if req.start {
                                DesiredState::Running
                            } else {
                                DesiredState::Stopped
                            },
                            privileged: req.privileged,
                            ha_enabled: req.ha_enabled,
                            ha_priority: req.ha_priority,
                            check_ports: ports_text(&req.check_ports),
                        },
                    )?;
                    let row =
                        crate::tasks::insert(c, "vps.create", "vps", &vps.id.to_string(), &a)?;
                    ops::claims::take(c, &[(vps.id, &vps.name)], row.id, VpsOperation::Create)?;
                    ops::record(
                        c,
                        row.id,
                        "vps.create",
                        vps.id,
                        &Params {
                            host_id,
                            template: path2.clone(),
                            start: req.start,
                        },
                    )?;
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
    let task = Task::new(state.db.clone(), state.hub.clone(), actor, &row);
    let out = task.response();
    let start = req.start;
    spawn(state, task, vec![vps.id], move |state, task| async move {
        let saga = Create {
            state: &state,
            task: &task,
            vps,
            host_id,
            template: path,
            start,
            resumed: false,
        };
        saga::forward(&state.db, &task, &saga, None).await
    });
    Ok(out)
}

/// A create as a saga: the VPS as recorded (status `creating`), where it is made, from which
/// template, and whether it starts.
struct Create<'a> {
    state: &'a Arc<Vpses>,
    task: &'a Task,
    vps: VpsRow,
    host_id: HostId,
    template: std::path::PathBuf,
    start: bool,
    /// Taken up after the controller that started it died (or a partner took over).
    resumed: bool,
}

impl saga::Saga for Create<'_> {
    type Step = Step;

    fn applies(&self, step: Step) -> bool {
        step != Step::Started || self.start
    }

    async fn run(&self, step: Step) -> Result<()> {
        let (state, task, vps) = (self.state, self.task, &self.vps);
        let host = host_of(state, vps).await?;
        let c = conn(state, host.id, &host.name)?;
        match step {
            Step::Defined => {
                task.log(format!("creating VPS {} on host {}", vps.name, host.name))
                    .await;
                bring_up::define(&c, vps, &host).await?;
                task.progress(10, 0, None).await;
            }
            Step::Unpacked => {
                let (bytes, note) = push_template(
                    state,
                    task,
                    &c,
                    host.id,
                    &vps.name,
                    vps.ids_on_disk(),
                    &self.template,
                    self.resumed,
                )
                .await?;
                task.log(format!(
                    "root filesystem unpacked ({bytes} bytes of template sent; {note})"
                ))
                .await;
                task.progress(85, bytes as i64, Some(bytes as i64)).await;
            }
            // Writes the host name into the new root filesystem too.
            Step::Configured => bring_up::define(&c, vps, &host).await?,
            Step::Started => {
                task.log("starting").await;
                bring_up::start(&c, vps).await?;
            }
        }
        Ok(())
    }

    async fn done(&self) -> Result<String> {
        let observed = if self.start {
            ObservedState::Running
        } else {
            ObservedState::Stopped
        };
        set_state(self.state, self.vps.id, observed, None).await?;
        Ok(if self.start {
            format!("VPS {} created and running", self.vps.name)
        } else {
            format!("VPS {} created", self.vps.name)
        })
    }

    /// Nothing half-made stays: the container goes from its host, then the record. If the
    /// host cannot be reached the record stays (claimed) and the recovery loop tries again.
    async fn undo(&self, _reached: Option<Step>, why: Error) -> Finish {
        if remove_unfinished(self.state, self.task, self.host_id, &self.vps).await {
            self.task.log("rolled back").await;
            Finish::Done(Err(why))
        } else {
            Finish::Later {
                release_claims: false,
            }
        }
    }

    /// A create the API acknowledged is carried on after its controller died (or its partner
    /// took over): each step can be done again (defining and configuring write the same
    /// files, an import already landed is kept, starting what runs is done).
    fn goes_on(&self, _reached: Option<Step>) -> bool {
        true
    }

    fn interrupted(&self) -> Error {
        Error::conflict(
            None,
            format!(
                "rolled back: the controller stopped while VPS {} was being created",
                self.vps.name
            ),
        )
    }
}

/// After a restart (or a takeover): the create goes on from its last recorded step (or is
/// rolled back, when it was already being undone). The template is read from this
/// controller's storage, where the one that recorded it may have kept it elsewhere.
pub(super) async fn recover(state: &Arc<Vpses>, task: &Task, op: &OpRow) -> Finish {
    let p: Params = match op.params() {
        Ok(p) => p,
        Err(e) => return Finish::Done(Err(e)),
    };
    let id = op.vps_id;
    let vps = match state.db.run(move |c| load(c, id)).await {
        Ok(v) => v,
        Err(Error::NotFound(_)) => {
            return Finish::Done(Err(Error::conflict(None, "rolled back: the VPS is gone")))
        }
        Err(e) => return Finish::Done(Err(e)),
    };
    let template = match vps.template_id {
        Some(tid) => {
            let row = state.db.run(move |c| crate::templates::load(c, tid)).await;
            match row {
                Ok(t) => crate::templates::file(&state.templates_dir, &t),
                Err(_) => p.template,
            }
        }
        None => p.template,
    };
    let saga = Create {
        state,
        task,
        vps,
        host_id: p.host_id,
        template,
        start: p.start,
        resumed: true,
    };
    saga::resume(&state.db, task, &saga, op, true).await
}
