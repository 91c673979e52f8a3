//! The supervisor: it owns every background loop of the controller (recovery and reconcile,
//! retention, the built-in template), runs each at its interval, restarts one that fails or
//! panics with back-off, stops them all together, and shows each one's state to admins
//! (`GET /api/v1/system/loops`). Host connections are owned by the host manager and shown here
//! as one line.

use serverware_shared::api::LoopStatus;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest wait before a failed loop runs again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Supervisor {
    loops: Mutex<Vec<Arc<Mutex<LoopStatus>>>>,
    stop: Mutex<Option<tokio::sync::watch::Sender<bool>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Supervisor {
    fn stop_rx(&self) -> tokio::sync::watch::Receiver<bool> {
        let mut s = lock(&self.stop);
        s.get_or_insert_with(|| tokio::sync::watch::channel(false).0)
            .subscribe()
    }

    /// Runs `step` every `every` until the controller stops. A step that fails (or panics)
    /// is recorded and run again after a back-off that doubles up to a minute.
    pub fn spawn<F, Fut>(&self, name: &str, every: Duration, step: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let status = Arc::new(Mutex::new(LoopStatus {
            name: name.to_string(),
            state: "starting".into(),
            interval_ms: every.as_millis() as u64,
            runs: 0,
            failures: 0,
            last_error: None,
            last_ok_at: None,
        }));
        lock(&self.loops).push(status.clone());
        let mut stop = self.stop_rx();
        let step = Arc::new(step);
        let name = name.to_string();
        tokio::spawn(async move {
            let mut backoff = every.max(Duration::from_secs(1));
            loop {
                if *stop.borrow() {
                    break;
                }
                lock(&status).state = "running".into();
                // Its own task, so that a panic is caught here and not the end of the loop.
                let s = step.clone();
                let outcome = tokio::spawn(async move { s().await }).await;
                let failure = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(e) => Some(format!("panicked: {e}")),
                };
                let wait = {
                    let mut st = lock(&status);
                    st.runs += 1;
                    match failure {
                        None => {
                            st.state = "waiting".into();
                            st.last_ok_at = Some(chrono::Utc::now());
                            backoff = every.max(Duration::from_secs(1));
                            every
                        }
                        Some(why) => {
                            tracing::warn!(
                                target: "serverware::sched",
                                "loop {name} failed: {why}; again in {backoff:?}"
                            );
                            st.failures += 1;
                            st.state = "backing_off".into();
                            st.last_error = Some(why);
                            let w = backoff;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            w
                        }
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => break,
                }
            }
            lock(&status).state = "stopped".into();
        });
    }

    /// Stops every loop (each ends after its current step).
    pub fn stop_all(&self) {
        if let Some(s) = lock(&self.stop).as_ref() {
            let _ = s.send(true);
        }
    }

    /// Each loop's state, in the order they were started.
    pub fn status(&self) -> Vec<LoopStatus> {
        lock(&self.loops).iter().map(|s| lock(s).clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_failing_loop_is_retried_with_back_off_and_a_panicking_one_restarted() {
        let sup = Supervisor::default();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        sup.spawn("flaky", Duration::from_secs(1), move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Err("first run fails".to_string()),
                    1 => panic!("second run panics"),
                    _ => Ok(()),
                }
            }
        });
        // Fails after 1 s of back-off, panics after 2 s more, then runs well.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while calls.load(Ordering::SeqCst) < 3 || sup.status()[0].last_ok_at.is_none() {
            assert!(std::time::Instant::now() < deadline, "{:?}", sup.status());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let st = &sup.status()[0];
        assert_eq!(st.name, "flaky");
        assert!(st.runs >= 3, "{st:?}");
        assert_eq!(st.failures, 2, "{st:?}");
        assert!(
            st.last_error.as_deref().unwrap().contains("panicked"),
            "{st:?}"
        );
        assert!(st.last_ok_at.is_some(), "{st:?}");
        sup.stop_all();
        while sup.status()[0].state != "stopped" {
            assert!(std::time::Instant::now() < deadline, "{:?}", sup.status());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
