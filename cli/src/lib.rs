//! `sw`, the SERVERware command line: every command is a call of the controller's REST API, so
//! the controller does the work and the checking (roles, validation, audit) exactly as for the
//! dashboard. The controller's SSH command line runs the same commands ([`args`], [`run`]).

pub mod api;
pub mod args;
pub mod console;
pub mod run;
pub mod saved;
pub mod shell;
pub mod show;
