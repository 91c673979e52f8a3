//! VPSes: their records and the operations on them (create, start, stop, restart, edit, delete,
//! copy, move), one file per operation. Each operation is a Task; the API, the dashboard and the
//! schedulers all come through here. The database is the source of truth; the work on hosts goes
//! through their agents.

mod bring_up;
pub mod console;
mod copy;
mod create;
mod delete;
pub mod drill;
mod edit;
mod move_to;
mod on_host;
mod operation;
pub mod placement;
mod power;
mod reconcile;
mod record;
pub use operation::{durable_steps, recover, DURABLE_KINDS};
pub(crate) use record::changed;
mod restore;
mod transfer;

pub use copy::copy;
pub use create::{create, CreateVps};
pub use delete::delete;
pub use edit::{edit, EditVps};
pub use move_to::move_to;
pub use placement::{candidates, capacity, free, need, place, Candidate};
pub use power::{start, stop};
pub use reconcile::{reconcile, RECONCILE_EVERY};
pub use restore::{fail_over, restore, RestoreVps};

mod agent;
mod view;
pub use crate::repo::vpses::{load, load_host, ports_text, VpsRow};
pub use agent::spec;
pub use view::{get, list, observed, page, response, Next};

use crate::error::Result;
use std::sync::Arc;

pub const DEFAULT_STOP_TIMEOUT: u32 = 30;

/// The VPS service: what its operations need, handed over when the controller is wired
/// (`server.rs`), and nothing more.
pub struct Vpses {
    pub db: crate::db::Db,
    /// Where inventory changes are told to the dashboards.
    pub hub: Arc<crate::hub::Hub>,
    /// The connections to hosts (their agents) and their newest samples.
    pub hosts: Arc<crate::hosts::HostManager>,
    /// The durable-operation engine: operations in progress and their recovery.
    pub ops: Arc<crate::ops::recovery::Engine>,
    /// netDUPLO's state: restore points, terms, pins.
    pub duplo: Arc<crate::duplo::Duplo>,
    /// netMON's state, read for what a VPS's view shows (failing over, its services).
    pub netmon: Arc<crate::netmon::Netmon>,
    /// The templates' archives.
    pub templates_dir: std::path::PathBuf,
    /// Set when the controller is stopping: no new operation is accepted.
    pub stopping: crate::ops::Stopping,
    /// Held from a placement decision until its VPS is recorded, so two creates cannot both
    /// take the same free capacity.
    pub placement: tokio::sync::Mutex<()>,
}

impl Vpses {
    /// New operations are refused once the controller is stopping.
    pub fn accepting(&self) -> Result<()> {
        self.stopping.accepting()
    }
}
