//! netDUPLO: every VPS duplicated to storage in cycles, at its host's interval. A cycle asks the
//! host's agent what its change journal saw since the last acknowledged cycle, streams only
//! that (or, when the journal cannot vouch, the whole tree) into storage, commits it as a restore
//! point, and only then acknowledges it to the journal. A cycle that fails anywhere leaves
//! storage with its previous point and the journal with everything since: the next cycle
//! carries it.
//!
//! Nothing here needs recovery after a crash: storage's commit is atomic, chunks a dead cycle
//! wrote are collected by [`prune`], and the journal keeps what was never acknowledged.

pub mod admin;
pub mod cycle;
pub mod prune;
pub mod records;
pub mod restore;
pub mod trees;
pub mod view;

use crate::storage::tree::Tree;
use crate::storage::{points, DirStore, ObjectStore};
use serverware_shared::{HostId, VpsId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the scheduler looks for cycles that are due.
pub const TICK: Duration = Duration::from_millis(200);
/// After a wake-up, the scheduler waits this much more before its pass.
const WAKE_GATHER: Duration = Duration::from_millis(50);

/// Cycles that found nothing changed are written to the points' rows this often, in one
/// transaction (a row per cycle would be a write per VPS per interval).
const UNCHANGED_WRITES_EVERY: Duration = Duration::from_secs(30);

/// The scheduler reads the list of duplicated VPSes again after this long.
const SCHEDULE_ROWS_FOR: Duration = Duration::from_secs(1);

/// The scheduler's list of duplicated VPSes: (VPS, its host, the host's interval, its status).
type ScheduleRows = Arc<Vec<(VpsId, HostId, i32, String)>>;

/// A full compare at least this often, whatever the journal says: it also catches changes no
/// journal sees (writes through shared memory maps). Cheap: unchanged files are not read.
pub const FULL_COMPARE_EVERY: Duration = Duration::from_secs(3600);

/// The longest wait after failures (doubling from the host's interval).
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What the controller knows of one VPS's duplication (kept in memory; storage and the
/// `duplo_points` rows hold what lasts).
#[derive(Debug, Clone, Default)]
pub struct VpsDuplo {
    /// Its newest point read from storage (once after the controller starts, and again after a
    /// cycle failed with its tree); the tree itself is read again whenever the trees' budget
    /// let it go ([`Duplo::take_for_cycle`]).
    pub loaded: bool,
    pub last_cycle: u64,
    /// When the newest point's tree was read, and when it landed (ms since the epoch).
    pub last_taken_ms: Option<i64>,
    /// The last cycle that found nothing changed since the newest point (and landed none):
    /// when it asked the journal (ms since the epoch).
    pub unchanged_ms: Option<i64>,
    pub last_done_ms: Option<i64>,
    /// A cycle running since (ms since the epoch).
    pub running_since_ms: Option<i64>,
    /// When the last cycle ended (landed or failed): the next is due its host's interval later
    /// (as the interval is now), or after failures a back-off. None: due now.
    pub done_at: Option<Instant>,
    /// When the scheduler first saw it (this run): with no cycle ended yet, it is due since
    /// then, so that on a site with more to copy than it keeps up with, a VPS with no cycle yet
    /// waits its turn among the overdue instead of behind every one of them.
    pub seen_at: Option<Instant>,
    pub now_requested: bool,
    /// Failures in a row, and the last one's message.
    pub failures: u32,
    pub last_error: Option<String>,
    /// Why the last cycle compared the whole tree (the journal could not vouch), if it did.
    pub last_full_reason: Option<String>,
    /// When the last full compare landed (this run).
    pub last_full_at: Option<Instant>,
}

impl VpsDuplo {
    /// Until when storage is known to hold the VPS's tree (ms since the epoch): its newest
    /// point's read, or the last cycle since that found nothing changed.
    pub fn fresh_ms(&self) -> Option<i64> {
        self.last_taken_ms.max(self.unchanged_ms)
    }

    /// When the next cycle is due at `interval`; None: now.
    pub fn next_due(&self, interval: Duration) -> Option<Instant> {
        self.done_at
            .map(|t| t + next_after(interval, self.failures))
    }
}

/// netDUPLO as a service: its state and what its cycles need, handed over when the controller
/// is wired (`server.rs`). Cycles reach hosts through `hosts` and record points in `db`.
pub struct Duplication {
    pub db: crate::db::Db,
    pub hosts: Arc<crate::hosts::HostManager>,
    pub duplo: Arc<Duplo>,
    /// Set when the controller is stopping: no cycle is asked for any more.
    pub stopping: crate::ops::Stopping,
}

/// The store, and each VPS's duplication state.
pub struct Duplo {
    pub store: Arc<dyn ObjectStore>,
    pub dir: std::path::PathBuf,
    vpses: Mutex<HashMap<VpsId, VpsDuplo>>,
    /// Each VPS's newest point's tree, which its next cycle takes and changes (kept apart from
    /// [`VpsDuplo`], which is cloned for every look), while they fit in their budget.
    trees: Mutex<trees::Trees>,
    /// Cycles hold it shared while they put chunks and commit; chunk collection holds it
    /// exclusively while it checks and deletes a batch (so a chunk a cycle is reusing is never
    /// deleted under it).
    pub gate: Arc<std::sync::RwLock<()>>,
    /// Restore points being read (by a restore): pruning leaves them alone.
    pub pinned: Mutex<HashMap<(VpsId, u64), usize>>,
    /// Wakes the scheduler (duplicate now).
    pub wake: tokio::sync::Notify,
    /// The last chunk collection: when, and what it found.
    pub collected: Mutex<Option<(Instant, prune::Collected)>>,
    /// Set when something may have left unused chunks (a failed cycle, a deleted VPS).
    pub dirty: std::sync::atomic::AtomicBool,
    /// Each VPS's term: a cycle begun before a restore or failover of it is refused.
    pub terms: Arc<crate::storage::cycle::Terms>,
    /// The scheduler's list, and when it was read.
    schedule_rows: Mutex<Option<(Instant, ScheduleRows)>>,
    /// Cycles landed, that found nothing changed, and failed since the controller started
    /// (`/metrics`).
    pub landed: std::sync::atomic::AtomicU64,
    pub unchanged: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
    /// Points found unchanged (VPS → its cycle, and when) not written to their rows yet, and
    /// when they last were.
    unchanged_marks: Mutex<UnchangedMarks>,
}

/// When the marks were last written, and each VPS's mark: its cycle and when it found nothing
/// changed (ms).
type UnchangedMarks = (Instant, HashMap<VpsId, (u64, i64)>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Duplo {
    pub fn open(dir: &std::path::Path) -> std::io::Result<Duplo> {
        Ok(Duplo::with_store(Arc::new(DirStore::open(dir)?), dir))
    }

    /// Over any store (its directory shown as where it lives).
    pub fn with_store(store: Arc<dyn ObjectStore>, dir: &std::path::Path) -> Duplo {
        Duplo {
            store,
            dir: dir.to_path_buf(),
            vpses: Default::default(),
            trees: Mutex::new(trees::Trees::new(
                (crate::config::DEFAULT_DUPLO_TREE_CACHE_MB << 20) as usize,
            )),
            gate: Default::default(),
            pinned: Default::default(),
            wake: Default::default(),
            collected: Default::default(),
            dirty: Default::default(),
            terms: Default::default(),
            schedule_rows: Default::default(),
            landed: Default::default(),
            unchanged: Default::default(),
            failed: Default::default(),
            unchanged_marks: Mutex::new((Instant::now(), HashMap::new())),
        }
    }

    /// The memory the kept trees may take (see [`trees`]); trees past it go now.
    pub fn with_tree_budget(self, bytes: usize) -> Duplo {
        *lock(&self.trees) = trees::Trees::new(bytes);
        self
    }

    /// What `/metrics` shows of duplication.
    pub fn figures(&self) -> crate::metrics::DuploFigures {
        use std::sync::atomic::Ordering::Relaxed;
        let (bytes, kept) = lock(&self.trees).usage();
        crate::metrics::DuploFigures {
            landed: self.landed.load(Relaxed),
            unchanged: self.unchanged.load(Relaxed),
            failed: self.failed.load(Relaxed),
            trees_bytes: bytes as u64,
            trees_kept: kept as u64,
        }
    }

    pub fn state(&self, vps_id: VpsId) -> VpsDuplo {
        lock(&self.vpses).get(&vps_id).cloned().unwrap_or_default()
    }

    pub fn update<R>(&self, vps_id: VpsId, f: impl FnOnce(&mut VpsDuplo) -> R) -> R {
        f(lock(&self.vpses).entry(vps_id).or_default())
    }

    /// Forgets a VPS (deleted): its points stay in storage until pruned.
    pub fn forget(&self, vps_id: VpsId) {
        lock(&self.vpses).remove(&vps_id);
        lock(&self.trees).remove(vps_id);
    }

    /// The newest point's tree, taken by a cycle (put back by [`Duplo::put_tree`] when it lands).
    pub fn take_tree(&self, vps_id: VpsId) -> Option<Tree> {
        lock(&self.trees).remove(vps_id)
    }

    pub fn put_tree(&self, vps_id: VpsId, tree: Tree) {
        lock(&self.trees).put(vps_id, tree);
    }

    pub fn has_tree(&self, vps_id: VpsId) -> bool {
        lock(&self.trees).contains(vps_id)
    }

    /// Asks for a cycle of `vps_id` as soon as it can run.
    pub fn request_now(&self, vps_id: VpsId) {
        self.update(vps_id, |s| s.now_requested = true);
        self.wake.notify_one();
    }

    /// Holds restore point (`vps_id`, `cycle`) against pruning while the guard lives.
    pub fn pin(self: &Arc<Self>, vps_id: VpsId, cycle: u64) -> Pin {
        *lock(&self.pinned).entry((vps_id, cycle)).or_default() += 1;
        Pin {
            duplo: self.clone(),
            key: (vps_id, cycle),
        }
    }

    /// When the earliest cycle running now started (ms since the epoch).
    pub fn earliest_running_ms(&self) -> Option<i64> {
        lock(&self.vpses)
            .values()
            .filter_map(|s| s.running_since_ms)
            .min()
    }

    /// A cycle found the VPS unchanged since its point of `cycle` at `at_ms`: written to the
    /// point's row with the next batch.
    pub fn mark_unchanged(&self, vps_id: VpsId, cycle: u64, at_ms: i64) {
        lock(&self.unchanged_marks).1.insert(vps_id, (cycle, at_ms));
    }

    pub fn is_pinned(&self, vps_id: VpsId, cycle: u64) -> bool {
        lock(&self.pinned).contains_key(&(vps_id, cycle))
    }

    /// The tree of the VPS's newest point, taken for the cycle about to run (put back by
    /// [`Duplo::put_tree`]): the one kept since its last cycle, else read from storage — once
    /// per controller run, after a cycle failed with it, and whenever the trees' budget let it
    /// go. None: the VPS has no point yet.
    pub fn take_for_cycle(&self, vps_id: VpsId) -> std::io::Result<Option<Tree>> {
        let s = self.state(vps_id);
        if s.loaded {
            if let Some(t) = self.take_tree(vps_id) {
                return Ok(Some(t));
            }
            if s.last_cycle == 0 {
                return Ok(None);
            }
        }
        let list = points::list(&*self.store, vps_id)?;
        let last = match list.last() {
            Some(p) => Some(points::load_tree(&*self.store, p)?),
            None => None,
        };
        let (cycle, taken) = last
            .as_ref()
            .map_or((0, None), |(h, _)| (h.cycle, Some(h.taken_at_ms)));
        self.update(vps_id, |s| {
            s.loaded = true;
            if s.last_cycle != cycle {
                s.unchanged_ms = None;
            }
            s.last_cycle = cycle;
            s.last_taken_ms = taken;
            s.last_done_ms = s.last_done_ms.or(taken);
        });
        Ok(last.map(|(_, t)| t))
    }
}

pub struct Pin {
    duplo: Arc<Duplo>,
    key: (VpsId, u64),
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut p = lock(&self.duplo.pinned);
        if let Some(n) = p.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                p.remove(&self.key);
            }
        }
    }
}

/// When a VPS's next cycle is due after one that ended now: its interval, or after failures a
/// back-off doubling from it.
pub fn next_after(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    interval
        .saturating_mul(1 << failures.min(16))
        .clamp(Duration::from_secs(1), MAX_BACKOFF.max(interval))
}

/// At most this many cycles run at once on one host (the rest wait their turn): a host's disk
/// and its link to the controller are shared by its VPSes.
pub const MAX_CYCLES_PER_HOST: usize = 2;
/// At most this many cycles run at once on the whole site: storage and the controller's CPU are
/// shared by every host. Cycles past it wait, most overdue first; the lag each VPS's page shows
/// says when a site has more to copy than this keeps up with.
pub const MAX_CYCLES_PER_SITE: usize = 64;

/// One pass of the scheduler: starts the cycles that are due, most overdue first, within
/// [`MAX_CYCLES_PER_HOST`] and [`MAX_CYCLES_PER_SITE`].
pub async fn schedule(dup: &Arc<Duplication>) -> Result<(), String> {
    // The duplicated VPSes are read again at most every `SCHEDULE_ROWS_FOR` (ten thousand rows,
    // and passes come several times a second on a busy site); the claims every pass. A cycle
    // reads its VPS's row itself, so a list a moment old starts nothing wrong: a VPS deleted
    // meanwhile ends its cycle quietly.
    let cached = lock(&dup.duplo.schedule_rows)
        .as_ref()
        .filter(|(at, _)| at.elapsed() < SCHEDULE_ROWS_FOR)
        .map(|(_, rows)| rows.clone());
    let ((rows, fresh), busy) = dup
        .db
        .read(move |c| {
            let rows = match cached {
                Some(rows) => (rows, false),
                None => (Arc::new(crate::repo::vpses::duplicated(c)?), true),
            };
            let busy: std::collections::HashSet<VpsId> =
                crate::ops::claims::all(c)?.into_keys().collect();
            Ok((rows, busy))
        })
        .await
        .map_err(|e| e.message())?;
    if fresh {
        *lock(&dup.duplo.schedule_rows) = Some((Instant::now(), rows.clone()));
    }
    let now = Instant::now();
    let mut per_host: HashMap<HostId, usize> = HashMap::new();
    let mut running = 0usize;
    // (asked now, due since, VPS, host)
    let mut due: Vec<(bool, Instant, VpsId, HostId)> = Vec::new();
    for &(vps_id, host_id, interval, ref status) in rows.iter() {
        let interval = Duration::from_secs(interval.max(1) as u64);
        let (is_running, asked, next, seen) = dup.duplo.update(vps_id, |s| {
            (
                s.running_since_ms.is_some(),
                s.now_requested,
                s.next_due(interval),
                *s.seen_at.get_or_insert(now),
            )
        });
        if is_running {
            *per_host.entry(host_id).or_default() += 1;
            running += 1;
            continue;
        }
        if busy.contains(&vps_id) || status == "creating" || !dup.hosts.connected(host_id) {
            continue;
        }
        if let Some((asked, since)) = due_since(asked, next, seen, now) {
            due.push((asked, since, vps_id, host_id));
        }
    }
    for (vps_id, _) in pick(due, running, per_host) {
        // (started, asked for: an asked-for cycle lands a point even when nothing changed)
        let (start, asked) = dup.duplo.update(vps_id, |s| {
            if s.running_since_ms.is_some() {
                return (false, false);
            }
            s.running_since_ms = Some(now_ms());
            (true, std::mem::take(&mut s.now_requested))
        });
        if !start {
            continue;
        }
        let dup = dup.clone();
        tokio::spawn(async move {
            let result = cycle::run(&dup, vps_id, asked).await;
            cycle::finish(&dup, vps_id, result).await;
            // Its place is free: the next one waiting starts without waiting for the tick.
            dup.duplo.wake.notify_one();
        });
    }
    Ok(())
}

/// Whether a VPS's cycle is due at `now` (asked for, or since when): asked for now; due since
/// its next cycle's time; with no cycle ended yet in this run, due since the scheduler first
/// saw it (`seen`).
fn due_since(
    asked: bool,
    next: Option<Instant>,
    seen: Instant,
    now: Instant,
) -> Option<(bool, Instant)> {
    match next {
        _ if asked => Some((true, now)),
        None => Some((false, seen)),
        Some(t) if t <= now => Some((false, t)),
        Some(_) => None,
    }
}

/// Which of the `due` cycles (asked for now, due since, VPS, host) start, given how many run
/// (in all, and per host): asked-for ones first, then the longest overdue, within the limits.
fn pick(
    mut due: Vec<(bool, Instant, VpsId, HostId)>,
    mut running: usize,
    mut per_host: HashMap<HostId, usize>,
) -> Vec<(VpsId, HostId)> {
    due.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut out = Vec::new();
    for (_, _, vps_id, host_id) in due {
        if running >= MAX_CYCLES_PER_SITE {
            break;
        }
        let on_host = per_host.entry(host_id).or_default();
        if *on_host >= MAX_CYCLES_PER_HOST {
            continue;
        }
        *on_host += 1;
        running += 1;
        out.push((vps_id, host_id));
    }
    out
}

/// The scheduler's loop body: a pass, then a wait of a tick or until woken.
/// Runs one cycle of a VPS now and waits for it (after the one running, if any): its cycle
/// number. netMON calls it on a stopped VPS before bringing it up elsewhere.
pub async fn cycle_now(dup: &Arc<Duplication>, vps_id: VpsId) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mine = dup.duplo.update(vps_id, |s| {
            if s.running_since_ms.is_some() {
                return false;
            }
            s.running_since_ms = Some(now_ms());
            true
        });
        if mine {
            break;
        }
        if Instant::now() > deadline {
            return Err("a cycle of it never ended".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let result = cycle::run(dup, vps_id, true).await;
    let out = result.as_ref().map(|r| r.cycle()).map_err(|e| e.clone());
    cycle::finish(dup, vps_id, result).await;
    out
}

/// Writes the points found unchanged since the last batch, when a batch is due.
async fn write_unchanged(dup: &Duplication) {
    let marks: Vec<(VpsId, i64, chrono::NaiveDateTime)> = {
        let mut m = lock(&dup.duplo.unchanged_marks);
        if m.0.elapsed() < UNCHANGED_WRITES_EVERY {
            return;
        }
        m.0 = Instant::now();
        std::mem::take(&mut m.1)
            .into_iter()
            .map(|(v, (cycle, ms))| {
                let at = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
                (v, cycle as i64, at.naive_utc())
            })
            .collect()
    };
    if marks.is_empty() {
        return;
    }
    let n = marks.len();
    let res = dup
        .db
        .run(move |c| crate::repo::points::mark_unchanged(c, &marks))
        .await;
    if let Err(e) = res {
        // Only the rows' record of it is lost: the next cycles find the same again.
        tracing::warn!(
            "cannot record {n} unchanged restore points: {}",
            e.message()
        );
    }
}

pub async fn tick(dup: &Arc<Duplication>) -> Result<(), String> {
    schedule(dup).await?;
    write_unchanged(dup).await;
    tokio::select! {
        _ = tokio::time::sleep(TICK) => {}
        // Woken (a cycle asked for, or a place freed): a moment more gathers what else ends,
        // so that a site running many cycles reads its schedule a few times a second, not at
        // every cycle's end.
        _ = dup.duplo.wake.notified() => tokio::time::sleep(WAKE_GATHER).await,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a site with more to copy than it keeps up with, a VPS with no cycle yet (a new one,
    /// or any after a restart) waits its turn among the overdue: it once went behind every
    /// overdue VPS at every pass, and never got a point.
    #[test]
    fn a_vps_with_no_cycle_yet_is_due_since_it_was_first_seen() {
        let now = Instant::now();
        let ago = |s: u64| now - Duration::from_secs(s);
        let new = due_since(false, None, ago(30), now).unwrap();
        let overdue = due_since(false, Some(ago(10)), ago(600), now).unwrap();
        assert_eq!(new, (false, ago(30)));
        assert_eq!(
            due_since(false, Some(now + Duration::from_secs(1)), ago(600), now),
            None
        );
        assert_eq!(
            due_since(true, Some(now + Duration::from_secs(5)), ago(1), now),
            Some((true, now))
        );
        let picked = pick(
            vec![
                (overdue.0, overdue.1, VpsId(1), HostId(1)),
                (new.0, new.1, VpsId(2), HostId(2)),
            ],
            MAX_CYCLES_PER_SITE - 1,
            HashMap::new(),
        );
        assert_eq!(picked, [(VpsId(2), HostId(2))], "the one waiting longest");
    }

    #[test]
    fn cycles_start_within_the_limits_most_overdue_first() {
        let now = Instant::now();
        let (h1, h2) = (HostId(1), HostId(2));
        let ago = |s: u64| now - Duration::from_secs(s);
        let v = VpsId;
        // Host 1 runs one already: one more may start there, the most overdue (v3), unless
        // one was asked for (v5 is).
        let due = vec![
            (false, ago(5), v(1), h1),
            (false, ago(30), v(3), h1),
            (true, now, v(5), h1),
            (false, ago(10), v(2), h2),
            (false, ago(20), v(4), h2),
            (false, ago(1), v(6), h2),
        ];
        let picked = pick(due.clone(), 1, HashMap::from([(h1, 1)]));
        assert_eq!(picked, [(v(5), h1), (v(4), h2), (v(2), h2)]);
        // The site's limit is never passed, whatever the hosts allow.
        let many: Vec<_> = (0..1000)
            .map(|i| (false, ago(i), v(i as i64 + 10), HostId(i as i64 + 10)))
            .collect();
        let picked = pick(many, MAX_CYCLES_PER_SITE - 3, HashMap::new());
        assert_eq!(picked.len(), 3);
        assert_eq!(picked[0].0, v(1009), "the longest overdue first");
        assert!(pick(due, MAX_CYCLES_PER_SITE, HashMap::new()).is_empty());
    }
}
