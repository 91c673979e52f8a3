//! The controller pair: two controllers and a witness run an etcd cluster of three, and the
//! leader is whoever holds the site's leader key under an etcd lease (`lead.rs`), spoken to
//! over etcd's JSON gateway (`etcd.rs`). Never a consensus of our own: etcd decides.

pub mod address;
pub mod etcd;
pub mod lead;
pub mod postgres;
pub mod raft;
pub mod setup;

pub use address::ServiceAddress;
pub use etcd::{Etcd, EtcdError};
pub use lead::{Leadership, Member, Options, Peer, Role};
pub use postgres::Keeper;
