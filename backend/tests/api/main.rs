//! The API integration suite: a real controller on a real database, driven over HTTP.
//! It runs on SQLite, or on PostgreSQL when `SERVERWARE_TEST_POSTGRES_URL` names a server
//! (the README's test command runs it both ways).

mod support;

mod abuse;
mod alerts;
mod auth;
mod backup;
mod cli;
mod concurrency;
mod console;
mod crash;
mod drill;
mod duplo;
mod errors;
mod hostile;
mod hosts_api;
mod lists;
mod netmon;
mod own_machine;
mod pair_machines;
mod pair_site;
mod provision;
mod roles;
mod schema;
mod ssh_hosts;
mod sshd;
mod sw;
mod templates;
mod tokens;
mod upgrade;
mod users_events;
mod vps_lifecycle;
mod ws;
