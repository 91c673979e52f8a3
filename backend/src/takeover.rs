//! A controller of a pair taking the site over: once it serves, it waits (bounded) for every
//! host to be back online under it, then records one `controller.takeover` event (or
//! `controller.leads` when it saw no other controller lead before it, as at the pair's first
//! start) with the timeline: when it won the lease, how long until it served, until its hosts were back, and
//! how many unfinished operations it found to carry on.

use crate::audit::{Actor, Change};
use crate::db::Db;
use crate::hosts::HostManager;
use serverware_shared::api::Severity;
use serverware_shared::state::HostStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the event waits for hosts that do not come back (powered off with the leader).
pub const HOSTS_WAIT: Duration = Duration::from_secs(60);

/// What the new leader knows of its takeover when it starts serving.
pub struct Takeover {
    /// This controller's name.
    pub name: String,
    /// The controller that led before, when this one saw it.
    pub previous: Option<String>,
    /// When it won the lease (its own clock, and the wall clock).
    pub won: Instant,
    pub won_at: chrono::DateTime<chrono::Utc>,
    /// When its API served again.
    pub serving: Instant,
    /// Unfinished operations it found and carries on.
    pub operations: usize,
}

/// Waits for the hosts, then records the event (in the background).
pub fn record(db: Db, hosts: Arc<HostManager>, t: Takeover) {
    tokio::spawn(async move {
        let deadline = Instant::now() + HOSTS_WAIT;
        let (online, total) = loop {
            let views = hosts.views();
            let online = views
                .values()
                .filter(|v| v.status == Some(HostStatus::Online))
                .count();
            if online == views.len() || Instant::now() >= deadline {
                break (online, views.len());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let ms = |i: Instant| i.duration_since(t.won).as_millis() as u64;
        let back = Instant::now();
        let message = match &t.previous {
            Some(p) => format!(
                "{} took over the site from {p}: serving after {} ms, {online} of {total} hosts back after {} ms",
                t.name,
                ms(t.serving),
                ms(back)
            ),
            None => format!(
                "{} leads the site: serving after {} ms, {online} of {total} hosts back after {} ms",
                t.name,
                ms(t.serving),
                ms(back)
            ),
        };
        let details = serde_json::json!({
            "controller": t.name,
            "previous": t.previous,
            "won_at": t.won_at.to_rfc3339(),
            "serving_after_ms": ms(t.serving),
            "hosts_back_after_ms": ms(back),
            "hosts_online": online,
            "hosts_total": total,
            "operations_carried_on": t.operations,
        });
        let severity = if online == total {
            Severity::Warning
        } else {
            Severity::Error
        };
        let name = t.name.clone();
        let action = if t.previous.is_some() {
            "controller.takeover"
        } else {
            "controller.leads"
        };
        let r = db
            .run(move |c| {
                crate::audit::record_system(
                    c,
                    &Actor::system("pair"),
                    Change::new(action, "controller", name, message)
                        .details(details)
                        .severity(severity),
                )
            })
            .await;
        if let Err(e) = r {
            tracing::warn!("cannot record the takeover: {e}");
        }
    });
}
