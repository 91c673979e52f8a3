//! Types that cross a wire between the SERVERware controller, its agents and the dashboard,
//! and the input validation both sides apply so they reject the same input with the same message.
//!
//! This crate must build for `wasm32-unknown-unknown`: server-only dependencies stay behind features.

pub mod agent;
pub mod alerts;
pub mod api;
pub mod duplo;
pub mod error;
pub mod ids;
#[cfg(feature = "probe")]
pub mod probe;
pub mod provision;
pub mod role;
pub mod sites;
pub mod state;
pub mod validate;
pub mod ws;

/// This build's version: the package's (`SERVERWARE_VERSION` at build time) or the workspace's.
pub const BUILD: &str = env!("SERVERWARE_BUILD");

pub use error::{ErrorBody, ErrorCode};
pub use ids::{HostId, VpsId};
pub use role::Role;
pub use validate::ValidationError;

/// Version of the HTTP API under `/api/v1`.
pub const API_VERSION: &str = "v1";
/// Name of the session cookie set by `POST /api/v1/auth/login`.
pub const SESSION_COOKIE: &str = "serverware_session";
/// Prefix of every API token, so leaked tokens are easy to recognise.
pub const TOKEN_PREFIX: &str = "swt_";
