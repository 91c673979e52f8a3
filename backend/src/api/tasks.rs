//! `/api/v1/tasks`: long operations, newest first, with their logs.

use crate::auth::Principal;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::schema::tasks;
use crate::tasks::TaskRow;
use actix_web::{get, web};
use diesel::prelude::*;
use serverware_shared::api::{TaskQuery, TaskResponse};
use serverware_shared::{ErrorBody, Role};

#[utoipa::path(tag = "tasks", params(TaskQuery), responses((status = 200, body = Vec<TaskResponse>), (status = 422, body = ErrorBody)))]
#[get("/tasks")]
pub async fn list_tasks(
    state: web::Data<Core>,
    principal: Principal,
    query: web::Query<TaskQuery>,
) -> Result<web::Json<Vec<TaskResponse>>> {
    principal.require(Role::Viewer)?;
    let q = query.into_inner();
    if let Some(s) = &q.status {
        if serverware_shared::state::TaskStatus::parse(s).is_none() {
            return Err(Error::invalid("status", "running, succeeded or failed"));
        }
    }
    let limit = i64::from(q.limit.unwrap_or(100));
    if !(1..=500).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 500"));
    }
    let rows: Vec<TaskRow> = state
        .db
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
    Ok(web::Json(rows.iter().map(TaskRow::to_response).collect()))
}

/// One task with its log.
#[utoipa::path(tag = "tasks", params(("id" = i64, Path)), responses((status = 200, body = TaskResponse), (status = 404, body = ErrorBody)))]
#[get("/tasks/{id}")]
pub async fn get_task(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> Result<web::Json<TaskResponse>> {
    principal.require(Role::Viewer)?;
    let id = id.into_inner();
    let t = state
        .db
        .run(move |c| {
            let row: TaskRow = tasks::table
                .find(id)
                .select(TaskRow::as_select())
                .first(c)
                .optional()?
                .ok_or_else(|| Error::NotFound(format!("no task with id {id}")))?;
            let mut t = row.to_response();
            t.log = Some(crate::tasks::load_log(c, id)?);
            Ok(t)
        })
        .await?;
    Ok(web::Json(t))
}
