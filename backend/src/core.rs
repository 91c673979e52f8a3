//! What the front ends (the HTTP API and the SSH command line) are handed: the services
//! `server.rs` wired, each built with exactly what it needs. Nothing below the front ends sees
//! this struct: services are given their own parts, not this whole.

use crate::auth::LoginLimiter;
use crate::config::Config;
use crate::db::Db;
use crate::hub::Hub;
use std::sync::Arc;

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
    /// Adding, editing and removing hosts.
    pub host_admin: Arc<crate::hosts::HostAdmin>,
    /// VPSes and their operations.
    pub vpses: Arc<crate::vps::Vpses>,
    /// netDUPLO: storage and each VPS's duplication.
    pub duplication: Arc<crate::duplo::Duplication>,
    /// netMON: service checks and failover decisions.
    pub monitor: Arc<crate::netmon::Monitor>,
    /// Set when the controller is stopping: no new operation is accepted.
    pub stopping: crate::ops::Stopping,
    /// Owns the background loops.
    pub supervisor: crate::sched::Supervisor,
    /// The durable-operation engine: what this controller drives now, and each kind's recovery.
    pub ops: Arc<crate::ops::recovery::Engine>,
    /// Set for a controller of a pair (which runs the site only while it leads).
    pub pair: Option<Arc<crate::pair::Leadership>>,
    /// Hosts provisioned over the network: images, the boot service, joins.
    pub provision: Arc<crate::provision::Provisioner>,
    /// Alert targets, the watch over incidents and the sender of their messages.
    pub alerts: Arc<crate::alerts::Alerts>,
    /// The site's health as the dashboards read it: reads at the same time share one.
    pub site_reads: crate::site::SharedReads<serverware_shared::api::SiteHealth>,
}

impl Core {
    /// New operations are refused once the controller is stopping.
    pub fn accepting(&self) -> Result<(), crate::error::Error> {
        self.stopping.accepting()
    }
}
