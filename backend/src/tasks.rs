//! Tasks: long operations with progress (percent and bytes), log lines and a final status,
//! stored in the database and pushed live on the socket topic `tasks`.

use crate::audit::{self, Actor, Change};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::models::now;
use crate::repo::tasks as repo;
use chrono::{DateTime, Utc};
use serverware_shared::api::{Severity, TaskLogLine, TaskResponse};
use serverware_shared::state::TaskStatus;
use serverware_shared::ws::ServerMessage;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::repo::tasks::TaskRow;

impl TaskRow {
    pub fn to_response(&self) -> TaskResponse {
        TaskResponse {
            id: self.id,
            kind: self.kind.clone(),
            status: self.status.clone(),
            target_type: self.target_type.clone(),
            target_id: self.target_id.clone(),
            progress_pct: self.progress_pct,
            bytes_done: self.bytes_done,
            bytes_total: self.bytes_total,
            created_by: self.created_by.clone(),
            error: self.error.clone(),
            created_at: self.created_at.and_utc(),
            started_at: self.started_at.map(|t| t.and_utc()),
            finished_at: self.finished_at.map(|t| t.and_utc()),
            log: None,
        }
    }
}

/// Progress is pushed at most this often (the final state always).
const PUSH_EVERY: Duration = Duration::from_millis(250);

/// A running task, handed to the code doing the work.
pub struct Task {
    db: Db,
    hub: Arc<Hub>,
    actor: Actor,
    state: Mutex<TaskResponse>,
    last_push: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stamps the task as starting now, inside the caller's transaction: called once its claims
/// are taken, which is after the operation that held them before stamped its end.
pub fn started_now(c: &mut crate::db::DbConn, row: &mut TaskRow) -> Result<()> {
    let t = now();
    repo::set_started(c, row.id, t)?;
    row.started_at = Some(t);
    Ok(())
}

/// Creates a task row (status `running`) inside the caller's transaction.
pub fn insert(
    c: &mut crate::db::DbConn,
    kind: &str,
    target_type: &str,
    target_id: &str,
    actor: &Actor,
) -> Result<TaskRow> {
    repo::insert_running(c, kind, target_type, target_id, &actor.name, now())
}

impl Task {
    pub fn new(db: Db, hub: Arc<Hub>, actor: Actor, row: &TaskRow) -> Arc<Task> {
        let t = Arc::new(Task {
            db,
            hub,
            actor,
            state: Mutex::new(row.to_response()),
            last_push: Mutex::new(None),
        });
        t.push(None);
        t
    }

    pub fn id(&self) -> i64 {
        lock(&self.state).id
    }

    pub fn response(&self) -> TaskResponse {
        lock(&self.state).clone()
    }

    fn push(&self, line: Option<String>) {
        let task = self.response();
        *lock(&self.last_push) = Some(Instant::now());
        self.hub.publish(&ServerMessage::Task { task, line });
    }

    /// Adds a line to the task's log (stored and pushed).
    pub async fn log(&self, line: impl Into<String>) {
        let line = line.into();
        tracing::info!(task = self.id(), "{line}");
        let (id, l) = (self.id(), line.clone());
        let _ = self.db.run(move |c| repo::add_log(c, id, now(), &l)).await;
        self.push(Some(line));
    }

    /// Sets progress; stored and pushed at most four times a second.
    pub async fn progress(&self, pct: i32, bytes_done: i64, bytes_total: Option<i64>) {
        {
            let mut s = lock(&self.state);
            s.progress_pct = pct.clamp(0, 100);
            s.bytes_done = bytes_done;
            s.bytes_total = bytes_total;
        }
        let due = lock(&self.last_push).is_none_or(|t| t.elapsed() >= PUSH_EVERY);
        if due {
            self.store().await;
            self.push(None);
        }
    }

    async fn store(&self) {
        let s = self.response();
        let _ = self
            .db
            .run(move |c| {
                repo::store(
                    c,
                    s.id,
                    &repo::TaskProgress {
                        status: &s.status,
                        progress_pct: s.progress_pct,
                        bytes_done: s.bytes_done,
                        bytes_total: s.bytes_total,
                        error: s.error.as_deref(),
                        finished_at: s.finished_at.map(|t| t.naive_utc()),
                    },
                )
            })
            .await;
    }

    /// Ends the task and records an event of its outcome.
    pub async fn finish(&self, result: &Result<String, Error>) {
        self.finish_ended(result, Utc::now()).await
    }

    /// Ends the task whose work ended at `ended`: an operation stamps the moment before it
    /// frees its VPSes, so that the next operation on them never seems to overlap it.
    pub async fn finish_ended(&self, result: &Result<String, Error>, ended: DateTime<Utc>) {
        {
            let mut s = lock(&self.state);
            s.finished_at = Some(ended);
            match result {
                Ok(_) => {
                    s.status = TaskStatus::Succeeded.as_str().into();
                    s.progress_pct = 100;
                }
                Err(e) => {
                    s.status = TaskStatus::Failed.as_str().into();
                    s.error = Some(e.message());
                }
            }
        }
        let line = match result {
            Ok(m) => format!("done: {m}"),
            Err(e) => format!("failed: {}", e.message()),
        };
        self.log(line).await;
        self.store().await;
        self.push(None);
        let s = self.response();
        let actor = self.actor.clone();
        let _ = self
            .db
            .run(move |c| {
                let action = format!(
                    "{}.{}",
                    s.kind,
                    if s.status == TaskStatus::Succeeded.as_str() {
                        TaskStatus::Succeeded.as_str()
                    } else {
                        TaskStatus::Failed.as_str()
                    }
                );
                let message = match &s.error {
                    None => format!("task {} ({}) succeeded", s.id, s.kind),
                    Some(e) => format!("task {} ({}) failed: {e}", s.id, s.kind),
                };
                audit::record_system(
                    c,
                    &actor,
                    Change::new(
                        &action,
                        s.target_type.as_deref().unwrap_or("task"),
                        s.target_id.clone().unwrap_or_default(),
                        message,
                    )
                    .details(serde_json::json!({ "task": s.id }))
                    .severity(if s.error.is_some() {
                        Severity::Error
                    } else {
                        Severity::Info
                    }),
                )?;
                Ok(())
            })
            .await;
    }
}

/// Deletes events, and finished tasks with their logs, older than `retention_days` (the site's
/// history retention). Running tasks and the operations they drive are never touched.
pub async fn prune_history(db: &Db, retention_days: u32) -> Result<usize> {
    db.run(move |c| {
        let days = retention_days;
        let cutoff = Utc::now().naive_utc() - chrono::TimeDelta::days(i64::from(days));
        crate::db::atomic(c, |c| repo::delete_finished_before(c, cutoff))
    })
    .await
}

pub fn load(c: &mut crate::db::DbConn, id: i64) -> Result<TaskRow> {
    repo::find(c, id)
}

pub fn load_log(c: &mut crate::db::DbConn, id: i64) -> Result<Vec<TaskLogLine>> {
    Ok(repo::log(c, id)?
        .into_iter()
        .map(|(at, line)| TaskLogLine {
            at: at.and_utc(),
            line,
        })
        .collect())
}

/// Tasks, newest first, as `GET /tasks` filters them (`status`, `target_type`, `target_id`,
/// `limit` 1–500, default 100).
/// A page of tasks, and whether an older page follows.
pub async fn list(
    db: &Db,
    q: serverware_shared::api::TaskQuery,
) -> Result<(Vec<TaskResponse>, bool)> {
    if let Some(s) = &q.status {
        if serverware_shared::state::TaskStatus::parse(s).is_none() {
            return Err(Error::invalid("status", "running, succeeded or failed"));
        }
    }
    let limit = i64::from(q.limit.unwrap_or(100));
    if !(1..=500).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 500"));
    }
    let rows: Vec<TaskRow> = db
        .run(move |c| {
            repo::list(
                c,
                q.status.as_deref(),
                q.target_type.as_deref(),
                q.target_id.as_deref(),
                q.before,
                limit + 1,
            )
        })
        .await?;
    let more = rows.len() as i64 > limit;
    Ok((
        rows.iter()
            .take(limit as usize)
            .map(TaskRow::to_response)
            .collect(),
        more,
    ))
}

/// One task with its log.
pub async fn get(db: &Db, id: i64) -> Result<TaskResponse> {
    db.run(move |c| {
        let row = load(c, id)?;
        let mut t = row.to_response();
        t.log = Some(load_log(c, id)?);
        Ok(t)
    })
    .await
}
