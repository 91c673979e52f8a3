//! The controller's core: what every front end (the HTTP API, and next the command lines) and
//! every background loop is given: the database, the live hub, the host connections, the
//! settings from configuration, the operations in progress and the supervisor.

use crate::auth::LoginLimiter;
use crate::config::Config;
use crate::db::Db;
use crate::hub::Hub;
use std::sync::Arc;

/// What every front end and scheduler shares.
pub struct Core {
    pub config: Config,
    pub db: Db,
    pub login_limiter: LoginLimiter,
    /// True when served over HTTPS: session cookies are then marked Secure.
    pub tls: bool,
    /// Live messages to WebSocket clients.
    pub hub: Arc<Hub>,
    /// Connections to hosts and their newest samples.
    pub hosts: Arc<crate::hosts::HostManager>,
    /// Set when the controller is stopping: no new operation is accepted.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Owns the background loops.
    pub supervisor: crate::sched::Supervisor,
    /// The durable-operation engine: what this controller drives now, and each kind's recovery.
    pub ops: Arc<crate::ops::recovery::Engine>,
    /// Held from a placement decision until its VPS is recorded, so two creates cannot both
    /// take the same free capacity.
    pub placement: tokio::sync::Mutex<()>,
    /// netDUPLO: storage and each VPS's duplication.
    pub duplo: Arc<crate::duplo::Duplo>,
    /// netMON: service checks and failover decisions.
    pub netmon: crate::netmon::Netmon,
}

impl Core {
    /// New operations are refused once the controller is stopping.
    pub fn accepting(&self) -> Result<(), crate::error::Error> {
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            Err(crate::error::Error::Stopping(
                "the controller is stopping; try again once it is back".into(),
            ))
        } else {
            Ok(())
        }
    }
}
