use crate::auth::LoginLimiter;
use crate::config::Config;
use crate::db::Db;
use crate::hub::Hub;
use std::sync::Arc;

/// What every request handler shares.
pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub login_limiter: LoginLimiter,
    /// True when served over HTTPS: session cookies are then marked Secure.
    pub tls: bool,
    /// Live messages to WebSocket clients.
    pub hub: Arc<Hub>,
    /// Connections to hosts and their newest samples.
    pub hosts: Arc<crate::hosts::HostManager>,
    /// VPSes with an operation running.
    pub vps_busy: crate::vps::Busy,
    /// Held from a placement decision until its VPS is recorded, so two creates cannot both
    /// take the same free capacity.
    pub placement: tokio::sync::Mutex<()>,
}
