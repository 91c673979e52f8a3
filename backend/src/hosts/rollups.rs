//! One-minute rollups of each host's samples: kept in a bucket while the minute runs, stored
//! merged with what is stored for that minute already, pruned past the retention setting.

use crate::db::Db;
use crate::repo::rollups as repo;
use chrono::{DateTime, Utc};
use serverware_shared::agent::HostSample;
use serverware_shared::api::HostRollup;
use serverware_shared::HostId;

/// The figures a rollup keeps, in `HostRollup` order.
const FIGURES: usize = 7;

pub(super) fn figures(s: &HostSample) -> [f64; FIGURES] {
    let m = s.summary();
    [
        m.cpu_pct,
        m.memory_pct,
        m.load1,
        m.rx_bytes_per_sec,
        m.tx_bytes_per_sec,
        m.disk_read_bytes_per_sec,
        m.disk_written_bytes_per_sec,
    ]
}

/// One minute of samples being summed up.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub minute: chrono::NaiveDateTime,
    pub n: u32,
    pub sum: [f64; FIGURES],
    pub max: [f64; FIGURES],
}

impl Bucket {
    pub(super) fn new(minute: chrono::NaiveDateTime) -> Self {
        Bucket {
            minute,
            n: 0,
            sum: [0.0; FIGURES],
            max: [f64::MIN; FIGURES],
        }
    }

    pub(super) fn add(&mut self, f: [f64; FIGURES]) {
        self.n += 1;
        for (i, v) in f.into_iter().enumerate() {
            self.sum[i] += v;
            self.max[i] = self.max[i].max(v);
        }
    }

    /// Folds in what an earlier flush of the same minute stored (a host that came back within it).
    pub fn merge(&mut self, old: &Bucket) {
        self.n += old.n;
        for i in 0..FIGURES {
            self.sum[i] += old.sum[i];
            self.max[i] = self.max[i].max(old.max[i]);
        }
    }

    pub fn to_rollup(&self) -> HostRollup {
        let n = f64::from(self.n.max(1));
        let a = |i: usize| self.sum[i] / n;
        HostRollup {
            minute: self.minute.and_utc(),
            samples: self.n,
            cpu_avg: a(0),
            cpu_max: self.max[0],
            memory_avg: a(1),
            memory_max: self.max[1],
            load_avg: a(2),
            load_max: self.max[2],
            rx_avg: a(3),
            rx_max: self.max[3],
            tx_avg: a(4),
            tx_max: self.max[4],
            disk_read_avg: a(5),
            disk_read_max: self.max[5],
            disk_write_avg: a(6),
            disk_write_max: self.max[6],
        }
    }

    pub fn from_rollup(r: &HostRollup) -> Self {
        let n = f64::from(r.samples);
        Bucket {
            minute: r.minute.naive_utc(),
            n: r.samples,
            sum: [
                r.cpu_avg * n,
                r.memory_avg * n,
                r.load_avg * n,
                r.rx_avg * n,
                r.tx_avg * n,
                r.disk_read_avg * n,
                r.disk_write_avg * n,
            ],
            max: [
                r.cpu_max,
                r.memory_max,
                r.load_max,
                r.rx_max,
                r.tx_max,
                r.disk_read_max,
                r.disk_write_max,
            ],
        }
    }
}

pub(super) fn minute_of(t: DateTime<Utc>) -> chrono::NaiveDateTime {
    use chrono::{DurationRound, TimeDelta};
    t.duration_trunc(TimeDelta::minutes(1))
        .unwrap_or(t)
        .naive_utc()
}

pub use crate::repo::rollups::RollupRow;

/// Stores a finished (or interrupted) minute, merged with what is stored for it already.
/// Stores the minutes of many hosts in one transaction (a large site's minute ends for
/// every host at about the same time: one write, not one per host).
pub(super) fn store_buckets(
    c: &mut crate::db::DbConn,
    all: &[(HostId, Bucket)],
) -> crate::error::Result<()> {
    crate::db::atomic(c, |c| {
        for (host_id, b) in all {
            let mut b = b.clone();
            if let Some(old) = repo::get(c, *host_id, b.minute)? {
                b.merge(&Bucket::from_rollup(&old.to_rollup()));
            }
            repo::put(c, RollupRow::from_rollup(*host_id, &b.to_rollup()))?;
        }
        Ok(())
    })
}

/// Deletes rollups older than the retention setting; returns how many.
pub async fn prune_rollups(db: &Db) -> crate::error::Result<usize> {
    db.run(|c| {
        let days = crate::settings::read(c)?.rollup_retention_days;
        let cutoff = Utc::now().naive_utc() - chrono::TimeDelta::days(i64::from(days));
        repo::delete_older(c, cutoff)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serverware_shared::agent::CpuSample;

    fn sample(busy: f64) -> HostSample {
        HostSample {
            cpus: vec![CpuSample {
                user: busy,
                idle: 100.0 - busy,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn buckets_average_and_keep_the_maximum_and_merge_with_stored_minutes() {
        let m = minute_of(Utc::now());
        let mut b = Bucket::new(m);
        for busy in [10.0, 30.0, 20.0] {
            b.add(figures(&sample(busy)));
        }
        let r = b.to_rollup();
        assert_eq!((r.samples, r.cpu_avg, r.cpu_max), (3, 20.0, 30.0));
        let mut later = Bucket::new(m);
        later.add(figures(&sample(80.0)));
        later.merge(&Bucket::from_rollup(&r));
        let r = later.to_rollup();
        assert_eq!((r.samples, r.cpu_avg, r.cpu_max), (4, 35.0, 80.0));
    }
}
