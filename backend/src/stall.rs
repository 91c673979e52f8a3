//! Whether the controller itself was starved: a task that should wake every [`TICK`] notes each
//! wake-up that came much later. A host whose samples went unread while the controller could not
//! run is not to blame for the silence: decisions that a host is gone (its connection dropped,
//! netMON's suspicion) are held back until the controller has run on time for a whole heartbeat
//! timeout and still heard nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often the watch wakes.
pub const TICK: Duration = Duration::from_millis(100);
/// A wake-up this much later than asked counts as a stall.
pub const LATE: Duration = Duration::from_millis(300);

struct Watch {
    started: Instant,
    /// When the last stall ended (ms since `started`; 0: none yet).
    last_stall_end_ms: AtomicU64,
    /// How long it lasted (ms).
    last_stall_ms: AtomicU64,
    stalls: AtomicU64,
}

static WATCH: OnceLock<Watch> = OnceLock::new();

fn watch() -> &'static Watch {
    WATCH.get_or_init(|| Watch {
        started: Instant::now(),
        last_stall_end_ms: AtomicU64::new(0),
        last_stall_ms: AtomicU64::new(0),
        stalls: AtomicU64::new(0),
    })
}

/// Records a wake-up at `woke` that was asked for `due`.
pub fn woke(due: Instant, woke: Instant) {
    let late = woke.saturating_duration_since(due);
    if late >= LATE {
        let w = watch();
        let end = woke.saturating_duration_since(w.started).as_millis() as u64;
        w.last_stall_end_ms.store(end.max(1), Ordering::SeqCst);
        w.last_stall_ms
            .store(late.as_millis() as u64, Ordering::SeqCst);
        w.stalls.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "the controller was starved: woke {} ms late; hosts are not blamed for that silence",
            late.as_millis()
        );
    }
}

/// Starts the watch on the runtime that reads the hosts' samples.
pub fn spawn() {
    let _ = watch();
    tokio::spawn(async {
        let mut due = Instant::now() + TICK;
        loop {
            tokio::time::sleep_until(due.into()).await;
            let now = Instant::now();
            woke(due, now);
            due = now + TICK;
        }
    });
}

/// When the controller last stalled, if it did.
pub fn last_stall_end() -> Option<Instant> {
    let w = watch();
    match w.last_stall_end_ms.load(Ordering::SeqCst) {
        0 => None,
        ms => Some(w.started + Duration::from_millis(ms)),
    }
}

/// Whether the controller stalled within `window` before now: a silence of that length may be
/// its own.
pub fn stalled_within(window: Duration) -> bool {
    last_stall_end().is_some_and(|t| t.elapsed() < window)
}

/// How many stalls since the start.
pub fn count() -> u64 {
    watch().stalls.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_wake_up_excuses_silence_for_a_window() {
        let t0 = Instant::now();
        woke(t0, t0 + Duration::from_millis(50));
        assert!(!stalled_within(Duration::from_secs(3)) || count() > 0);
        let before = count();
        let now = Instant::now();
        woke(now - Duration::from_millis(800), now);
        assert_eq!(count(), before + 1);
        assert!(stalled_within(Duration::from_secs(3)));
        assert!(!stalled_within(Duration::ZERO));
    }
}
