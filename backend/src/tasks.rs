//! Tasks: long operations with progress (percent and bytes), log lines and a final status,
//! stored in the database and pushed live on the socket topic `tasks`.

use crate::audit::{self, Actor, Change};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::models::now;
use crate::schema::{task_logs, tasks};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serverware_shared::api::{Severity, TaskLogLine, TaskResponse};
use serverware_shared::state::TaskStatus;
use serverware_shared::ws::ServerMessage;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tasks)]
pub struct TaskRow {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub progress_pct: i32,
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub created_by: String,
    pub error: Option<String>,
    pub created_at: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
}

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
    diesel::update(tasks::table.find(row.id))
        .set(tasks::started_at.eq(t))
        .execute(c)?;
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
    let t = now();
    diesel::insert_into(tasks::table)
        .values((
            tasks::kind.eq(kind),
            tasks::status.eq(TaskStatus::Running.as_str()),
            tasks::target_type.eq(target_type),
            tasks::target_id.eq(target_id),
            tasks::created_by.eq(&actor.name),
            tasks::created_at.eq(t),
            tasks::started_at.eq(t),
        ))
        .execute(c)?;
    Ok(tasks::table
        .order(tasks::id.desc())
        .filter(tasks::kind.eq(kind))
        .filter(tasks::target_id.eq(target_id))
        .select(TaskRow::as_select())
        .first(c)?)
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
        let _ = self
            .db
            .run(move |c| {
                diesel::insert_into(task_logs::table)
                    .values((
                        task_logs::task_id.eq(id),
                        task_logs::at.eq(now()),
                        task_logs::line.eq(&l),
                    ))
                    .execute(c)?;
                Ok(())
            })
            .await;
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
                diesel::update(tasks::table.find(s.id))
                    .set((
                        tasks::status.eq(&s.status),
                        tasks::progress_pct.eq(s.progress_pct),
                        tasks::bytes_done.eq(s.bytes_done),
                        tasks::bytes_total.eq(s.bytes_total),
                        tasks::error.eq(&s.error),
                        tasks::finished_at.eq(s.finished_at.map(|t| t.naive_utc())),
                    ))
                    .execute(c)?;
                Ok(())
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
        c.transaction(|c| {
            use crate::schema::events;
            let old: Vec<i64> = tasks::table
                .filter(tasks::status.ne(TaskStatus::Running.as_str()))
                .filter(tasks::finished_at.lt(cutoff))
                .select(tasks::id)
                .load(c)?;
            let mut n = 0;
            for chunk in old.chunks(500) {
                diesel::delete(task_logs::table.filter(task_logs::task_id.eq_any(chunk)))
                    .execute(c)?;
                n += diesel::delete(tasks::table.filter(tasks::id.eq_any(chunk))).execute(c)?;
            }
            n += diesel::delete(events::table.filter(events::created_at.lt(cutoff))).execute(c)?;
            Ok(n)
        })
    })
    .await
}

pub fn load(c: &mut crate::db::DbConn, id: i64) -> Result<TaskRow> {
    tasks::table
        .find(id)
        .select(TaskRow::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no task with id {id}")))
}

pub fn load_log(c: &mut crate::db::DbConn, id: i64) -> Result<Vec<TaskLogLine>> {
    let rows: Vec<(NaiveDateTime, String)> = task_logs::table
        .filter(task_logs::task_id.eq(id))
        .order(task_logs::id)
        .select((task_logs::at, task_logs::line))
        .load(c)?;
    Ok(rows
        .into_iter()
        .map(|(at, line)| TaskLogLine {
            at: at.and_utc(),
            line,
        })
        .collect())
}

/// Tasks, newest first, as `GET /tasks` filters them (`status`, `target_type`, `target_id`,
/// `limit` 1–500, default 100).
pub async fn list(db: &Db, q: serverware_shared::api::TaskQuery) -> Result<Vec<TaskResponse>> {
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
            let mut b = tasks::table.into_boxed();
            if let Some(s) = &q.status {
                b = b.filter(tasks::status.eq(s.clone()));
            }
            if let Some(t) = &q.target_type {
                b = b.filter(tasks::target_type.eq(t.clone()));
            }
            if let Some(t) = &q.target_id {
                b = b.filter(tasks::target_id.eq(t.clone()));
            }
            Ok(b.order(tasks::id.desc())
                .limit(limit)
                .select(TaskRow::as_select())
                .load(c)?)
        })
        .await?;
    Ok(rows.iter().map(TaskRow::to_response).collect())
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
