//! `tasks` and `task_logs`: what was asked, how it went, and each task's log.

use crate::db::DbConn;
use crate::error::{Error, Result};
use crate::schema::{events, task_logs, tasks};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serverware_shared::state::TaskStatus;

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

/// Creates a task row, running since `t`.
pub fn insert_running(
    c: &mut DbConn,
    kind: &str,
    target_type: &str,
    target_id: &str,
    created_by: &str,
    t: NaiveDateTime,
) -> Result<TaskRow> {
    diesel::insert_into(tasks::table)
        .values((
            tasks::kind.eq(kind),
            tasks::status.eq(TaskStatus::Running.as_str()),
            tasks::target_type.eq(target_type),
            tasks::target_id.eq(target_id),
            tasks::created_by.eq(created_by),
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

pub fn set_started(c: &mut DbConn, id: i64, t: NaiveDateTime) -> Result<()> {
    diesel::update(tasks::table.find(id))
        .set(tasks::started_at.eq(t))
        .execute(c)?;
    Ok(())
}

/// Where a task stands.
#[derive(AsChangeset)]
#[diesel(table_name = tasks, treat_none_as_null = true)]
pub struct TaskProgress<'a> {
    pub status: &'a str,
    pub progress_pct: i32,
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub error: Option<&'a str>,
    pub finished_at: Option<NaiveDateTime>,
}

pub fn store(c: &mut DbConn, id: i64, p: &TaskProgress<'_>) -> Result<()> {
    diesel::update(tasks::table.find(id)).set(p).execute(c)?;
    Ok(())
}

pub fn add_log(c: &mut DbConn, task: i64, at: NaiveDateTime, line: &str) -> Result<()> {
    diesel::insert_into(task_logs::table)
        .values((
            task_logs::task_id.eq(task),
            task_logs::at.eq(at),
            task_logs::line.eq(line),
        ))
        .execute(c)?;
    Ok(())
}

/// The task, or "not found".
pub fn find(c: &mut DbConn, id: i64) -> Result<TaskRow> {
    tasks::table
        .find(id)
        .select(TaskRow::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no task with id {id}")))
}

/// The task's log lines, in order.
pub fn log(c: &mut DbConn, id: i64) -> Result<Vec<(NaiveDateTime, String)>> {
    Ok(task_logs::table
        .filter(task_logs::task_id.eq(id))
        .order(task_logs::id)
        .select((task_logs::at, task_logs::line))
        .load(c)?)
}

/// Tasks, newest first, filtered by what is given.
pub fn list(
    c: &mut DbConn,
    status: Option<&str>,
    target_type: Option<&str>,
    target_id: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<TaskRow>> {
    let mut b = tasks::table.into_boxed();
    if let Some(id) = before {
        b = b.filter(tasks::id.lt(id));
    }
    if let Some(s) = status {
        b = b.filter(tasks::status.eq(s.to_string()));
    }
    if let Some(t) = target_type {
        b = b.filter(tasks::target_type.eq(t.to_string()));
    }
    if let Some(t) = target_id {
        b = b.filter(tasks::target_id.eq(t.to_string()));
    }
    Ok(b.order(tasks::id.desc())
        .limit(limit)
        .select(TaskRow::as_select())
        .load(c)?)
}

/// Deletes finished tasks (with their logs) and events from before `cutoff`: how many rows.
/// Running tasks are never touched.
pub fn delete_finished_before(c: &mut DbConn, cutoff: NaiveDateTime) -> Result<usize> {
    let old: Vec<i64> = tasks::table
        .filter(tasks::status.ne(TaskStatus::Running.as_str()))
        .filter(tasks::finished_at.lt(cutoff))
        .select(tasks::id)
        .load(c)?;
    let mut n = 0;
    for chunk in old.chunks(500) {
        diesel::delete(task_logs::table.filter(task_logs::task_id.eq_any(chunk))).execute(c)?;
        n += diesel::delete(tasks::table.filter(tasks::id.eq_any(chunk))).execute(c)?;
    }
    n += diesel::delete(events::table.filter(events::created_at.lt(cutoff))).execute(c)?;
    Ok(n)
}
