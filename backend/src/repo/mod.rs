//! The persistence layer: one module per table family, the only place (with `db.rs`) where
//! queries are built. Domain services and `api/` call these functions and never name diesel.
//! Moving the remaining queries here is under way (`tests/layers.rs` lists the files that still
//! build their own).

pub mod alerts;
pub mod backup;
pub mod claims;
pub mod drills;
pub mod events;
pub mod hosts;
pub mod netmon;
pub mod operations;
pub mod points;
pub mod provision;
pub mod replication;
pub mod rollups;
pub mod settings;
pub mod ssh_keys;
pub mod tasks;
pub mod templates;
pub mod tokens;
pub mod transfer;
pub mod users;
pub mod vpses;
