//! netMON's memory across runs of the controller. It is written each round in which it changed,
//! before what was decided is carried out; the next run takes it up before it decides anything:
//! hosts it suspected or fenced stay so (their leases are not renewed), failovers under way go
//! on where they were, and what the previous run was waiting for is driven again.

use super::decide::{Manager, Outcome, Params, Resume};
use super::Monitor;
use super::{act, ended, lock, outcome, read};
use crate::repo::netmon::{self as saved, Saved};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Writes netMON's memory if it changed since it was last written.
pub(crate) async fn persist(mon: &Monitor) -> Result<(), String> {
    let nm = &mon.netmon;
    let mut written = nm.written.lock().await;
    let (json, at) = {
        let m = lock(&nm.manager);
        let json = serde_json::to_string(&*m)
            .map_err(|e| format!("netMON's state cannot be written down: {e}"))?;
        (json, nm.ms(Instant::now()))
    };
    if written.as_deref() == Some(json.as_str()) {
        return Ok(());
    }
    saved::save(
        &mon.db,
        Saved {
            manager: json.clone(),
            saved_ms: at as i64,
            saved_at: chrono::Utc::now().naive_utc(),
        },
    )
    .await
    .map_err(|e| format!("netMON's state could not be written: {}", e.message()))?;
    *written = Some(json);
    Ok(())
}

/// Takes up the memory the previous run wrote, if any.
pub(super) async fn take_over(mon: &Arc<Monitor>) -> Result<(), String> {
    let nm = &mon.netmon;
    let found = saved::load(&mon.db)
        .await
        .map_err(|e| format!("netMON's state cannot be read: {}", e.message()))?;
    let Some(found) = found else {
        nm.taken_over.store(true, Ordering::SeqCst);
        return Ok(());
    };
    let old: Manager = match serde_json::from_str(&found.manager) {
        Ok(m) => m,
        Err(e) => {
            // Written by a version that kept other things: started afresh, which is what
            // every run did before the memory was kept.
            tracing::warn!(
                "netMON's state from the last run cannot be read ({e}); starting afresh"
            );
            nm.taken_over.store(true, Ordering::SeqCst);
            return Ok(());
        }
    };
    // The instant it was written, on this run's clock: as long before now as the wall clock
    // says (never in the future).
    let now = nm.ms(Instant::now()) as i64;
    let ago = (chrono::Utc::now().naive_utc() - found.saved_at)
        .num_milliseconds()
        .max(0);
    let delta = now - ago - found.saved_ms;
    let (m, resume) = old.taken_over(delta, Params::default());
    let untrusted = m.untrusted_hosts();
    // Before any lease could be renewed by this run.
    for h in &untrusted {
        mon.hosts.revoke(*h, true);
    }
    lock(&nm.untrusted_at_start).extend(untrusted.iter().copied());
    let failovers = m.failing_over().len();
    *lock(&nm.manager) = m;
    *nm.written.lock().await = Some(found.manager);
    nm.taken_over.store(true, Ordering::SeqCst);
    nm.tell_failovers(&mon.hub);
    if failovers + untrusted.len() > 0 {
        tracing::warn!(
            failovers,
            hosts = untrusted.len(),
            "netMON takes up where the last run left off: failovers under way, hosts not trusted"
        );
    }
    drive(mon, resume).await
}

/// Drives again what the previous run was waiting for.
async fn drive(mon: &Arc<Monitor>, resume: Vec<Resume>) -> Result<(), String> {
    if resume.is_empty() {
        return Ok(());
    }
    let unfinished = crate::ops::unfinished(&mon.db)
        .await
        .map_err(|e| e.message())?;
    let (hosts, vpses, _, _) = read(mon).await?;
    for r in resume {
        match r {
            Resume::Stop { vps, host } => {
                let stopped = mon
                    .db
                    .run(move |c| crate::vps::load(c, vps))
                    .await
                    .is_ok_and(|v| v.status == serverware_shared::state::ObservedState::Stopped);
                if !stopped {
                    act(
                        mon,
                        &hosts,
                        &vpses,
                        super::decide::Action::Stop { vps, host },
                    )
                    .await;
                    continue;
                }
                // Stopped before the last run stopped: its last cycle, then on it goes.
                let mon = mon.clone();
                tokio::spawn(async move {
                    if let Err(e) = crate::duplo::cycle_now(&mon.duplication, vps).await {
                        tracing::warn!(vps = %vps, "no last cycle before the failover ({e})");
                    }
                    outcome(&mon, Outcome::Stopped { vps });
                });
            }
            Resume::Recovering { vps, to } => {
                let op = unfinished
                    .iter()
                    .find(|o| o.kind == "vps.restore" && o.vps_id == vps)
                    .map(|o| o.task_id);
                if let Some(task) = op {
                    // The operation engine finishes it; its end is the outcome.
                    let mon = mon.clone();
                    tokio::spawn(async move {
                        let r = ended(&mon, task).await;
                        outcome(
                            &mon,
                            match r {
                                Ok(()) => Outcome::Started { vps, host: to },
                                Err(why) => Outcome::Failed { vps, host: to, why },
                            },
                        );
                    });
                    continue;
                }
                let there = mon
                    .db
                    .run(move |c| crate::vps::load(c, vps))
                    .await
                    .is_ok_and(|v| v.host_id == Some(to));
                if there {
                    outcome(mon, Outcome::Started { vps, host: to });
                } else {
                    // Its operation never began: placed again.
                    lock(&mon.netmon.manager).requeue(vps);
                }
            }
        }
    }
    persist(mon).await
}
