//! The SERVERware controller: HTTP/WS API, auth, database and (later) the schedulers that watch,
//! copy and heal hosts and VPSes.

pub mod alerts;
pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod controllers;
pub mod core;
pub mod db;
pub mod duplo;
pub mod error;
pub mod fault;
pub mod files;
pub mod hosts;
pub mod hub;
pub mod keys;
pub mod metrics;
pub mod models;
pub mod netmon;
pub mod ops;
pub mod pair;
pub mod provision;
pub mod repo;
pub mod sched;
pub mod schema;
pub mod server;
pub mod settings;
pub mod site;
pub mod ssh;
pub mod sshd;
pub mod stall;
pub mod storage;
pub mod takeover;
pub mod tasks;
pub mod templates;
pub mod vps;
