use crate::auth::LoginLimiter;
use crate::config::Config;
use crate::db::Db;

/// What every request handler shares.
pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub login_limiter: LoginLimiter,
    /// True when served over HTTPS: session cookies are then marked Secure.
    pub tls: bool,
}
