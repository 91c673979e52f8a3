//! The persistence layer: one module per table family, the only place (with `db.rs`) where
//! queries are built. Domain services and `api/` call these functions and never name diesel.
//! Moving the remaining queries here is under way (`tests/layers.rs` lists the files that still
//! build their own).

pub mod netmon;
