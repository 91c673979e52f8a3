//! A host's samples as they arrive: the ring kept in memory for live charts, the minute being
//! summed up into a rollup (stored once the minute is over), and containers no VPS record
//! names (reported once, never touched).

use super::rollups::{figures, minute_of, store_buckets, Bucket};
use super::{lock, HostManager, Runtime};
use chrono::Utc;
use serverware_shared::agent::HostSample;
use serverware_shared::api::HostRollup;
use serverware_shared::HostId;

/// Samples kept in memory per host for live charts: what a host's page draws (2 minutes at
/// the default 1 s; older figures are in the one-minute rollups). At a thousand hosts this
/// ring is most of the controller's memory, so only its newest sample keeps the per-VPS figures.
pub const RING: usize = 120;
impl HostManager {
    /// The samples kept in memory for a host, oldest first.
    pub fn recent(&self, id: HostId) -> Vec<HostSample> {
        lock(&self.runtimes)
            .get(&id)
            .map(|rt| lock(&rt.ring).iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The minute being summed up for a host, as a rollup so far.
    pub fn current_rollup(&self, id: HostId) -> Option<HostRollup> {
        lock(&self.runtimes)
            .get(&id)
            .and_then(|rt| lock(&rt.bucket).as_ref().map(Bucket::to_rollup))
    }

    pub(super) fn record_sample(&self, id: HostId, rt: &Runtime, sample: &HostSample) {
        {
            let mut ring = lock(&rt.ring);
            if ring.len() == RING {
                ring.pop_front();
            }
            if let Some(prev) = ring.back_mut() {
                prev.vpses = Vec::new();
            }
            ring.push_back(sample.clone());
        }
        let names: Vec<String> = sample.vpses.iter().map(|v| v.name.clone()).collect();
        let new_container = {
            let mut c = lock(&rt.containers);
            let new = names.iter().any(|n| !c.contains(n));
            *c = names;
            new
        };
        if new_container {
            self.check_unknown(id, sample);
        }
        let minute = minute_of(Utc::now());
        let done = {
            let mut b = lock(&rt.bucket);
            let done = match b.as_ref() {
                Some(cur) if cur.minute != minute => b.take(),
                _ => None,
            };
            b.get_or_insert_with(|| Bucket::new(minute))
                .add(figures(sample));
            done
        };
        if let Some(done) = done {
            self.flush(id, done);
        }
    }

    /// Reports containers on a host that no VPS record names (once each); they are never touched.
    fn check_unknown(&self, id: HostId, sample: &HostSample) {
        let found: Vec<String> = sample.vpses.iter().map(|v| v.name.clone()).collect();
        if found.is_empty() {
            return;
        }
        let (db, reported) = (self.db.clone(), self.reported_unknown.clone());
        tokio::spawn(async move {
            let _ = db
                .run(move |c| {
                    let known = crate::repo::vpses::names(c)?;
                    for name in found.into_iter().filter(|n| !known.contains(n)) {
                        if !lock(&reported).insert((id, name.clone())) {
                            continue;
                        }
                        crate::audit::record_system(
                            c,
                            &crate::audit::Actor::system("netres"),
                            crate::audit::Change::new(
                                "host.unknown_vps",
                                "host",
                                id,
                                format!("host {id} runs a container '{name}' that is not a known VPS; it is left alone"),
                            )
                            .severity(serverware_shared::api::Severity::Warning)
                            .details(serde_json::json!({ "container": name })),
                        )?;
                    }
                    Ok(())
                })
                .await;
        });
    }

    /// A minute to write to the database: written with the other hosts' within a second
    /// ([`HostManager::write_rollups`]).
    fn flush(&self, id: HostId, bucket: Bucket) {
        lock(&self.rollups_due).push((id, bucket));
    }

    /// Writes the minutes that ended since last time, in one transaction, in the background.
    pub(super) fn write_rollups(&self) {
        let due = std::mem::take(&mut *lock(&self.rollups_due));
        if due.is_empty() {
            return;
        }
        let db = self.db.clone();
        tokio::spawn(async move {
            let n = due.len();
            if let Err(e) = db.run(move |c| store_buckets(c, &due)).await {
                tracing::warn!("storing {n} rollups failed: {e}");
            }
        });
    }

    /// Stores the minute in progress now (the host went offline or is being disconnected).
    pub(super) fn flush_partial(&self, id: HostId, rt: &Runtime) {
        if let Some(b) = lock(&rt.bucket).take() {
            self.flush(id, b);
        }
    }
}
