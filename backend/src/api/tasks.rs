//! `/api/v1/tasks`: long operations, newest first, with their logs.

use crate::auth::Principal;
use crate::core::Core;
use crate::error::Result;
use actix_web::{get, web, HttpResponse};
use serverware_shared::api::{TaskQuery, TaskResponse};
use serverware_shared::{ErrorBody, Role};

#[utoipa::path(tag = "tasks", params(TaskQuery), responses((status = 200, body = Vec<TaskResponse>), (status = 422, body = ErrorBody)))]
#[get("/tasks")]
pub async fn list_tasks(
    state: web::Data<Core>,
    principal: Principal,
    query: web::Query<TaskQuery>,
) -> Result<HttpResponse> {
    principal.require(Role::Viewer)?;
    let q = query.into_inner();
    let (list, more) = crate::tasks::list(&state.db, q.clone()).await?;
    let next = list.last().filter(|_| more).map(|t| TaskQuery {
        before: Some(t.id),
        ..q
    });
    super::paged("/tasks", &list, None, next)
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
    Ok(web::Json(
        crate::tasks::get(&state.db, id.into_inner()).await?,
    ))
}
