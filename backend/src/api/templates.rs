//! `/api/v1/templates`: list, upload, build (Debian) and delete templates (`templates::admin`).

use crate::audit::Actor;
use crate::auth::Principal;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::templates::{admin, TemplateRow};
use actix_web::{delete, get, post, web, HttpResponse};
use futures_util::StreamExt;
use serverware_shared::api::{
    BuildDebianTemplateRequest, TaskResponse, TemplateResponse, UploadTemplateQuery,
};
use serverware_shared::{ErrorBody, Role};
use tokio::io::AsyncWriteExt;

/// Largest upload accepted.
const MAX_UPLOAD: u64 = 16 << 30;

#[utoipa::path(tag = "templates", responses((status = 200, body = Vec<TemplateResponse>)))]
#[get("/templates")]
pub async fn list_templates(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<Vec<TemplateResponse>>> {
    principal.require(Role::Viewer)?;
    let rows = admin::list(&state.db).await?;
    Ok(web::Json(
        rows.iter().map(TemplateRow::to_response).collect(),
    ))
}

/// Upload a root filesystem as a tar archive (plain or gzip) in the request body.
#[utoipa::path(tag = "templates", params(UploadTemplateQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses(
    (status = 201, body = TemplateResponse), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/templates")]
pub async fn upload_template(
    state: web::Data<Core>,
    principal: Principal,
    query: web::Query<UploadTemplateQuery>,
    mut body: web::Payload,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let u = admin::check_upload(&state.db, &query.into_inner()).await?;
    let upload = admin::upload_file(&state.config.templates_dir)?;
    // Written on tokio's blocking pool, a chunk at a time: the server's threads never wait on
    // the disk, and a slow upload holds nothing but its own file.
    let mut file = tokio::fs::File::from_std(
        upload
            .as_file()
            .try_clone()
            .map_err(|e| Error::Internal(e.into()))?,
    );
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("upload interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > MAX_UPLOAD {
            return Err(Error::TooLarge(format!(
                "a template archive is at most {} GiB",
                MAX_UPLOAD >> 30
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::Internal(e.into()))?;
    }
    file.flush().await.map_err(|e| Error::Internal(e.into()))?;
    drop(file);
    if size == 0 {
        return Err(Error::invalid(
            "body",
            "send the archive as the request body",
        ));
    }
    let actor = Actor::from(&principal);
    let row = admin::add_uploaded(&state.db, &state.config.templates_dir, actor, u, upload).await?;
    Ok(HttpResponse::Created().json(row.to_response()))
}

/// Build a Debian template with debootstrap (needs a reachable Debian mirror); a task.
#[utoipa::path(tag = "templates", request_body = BuildDebianTemplateRequest, responses(
    (status = 202, body = TaskResponse), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/templates/debian")]
pub async fn build_debian(
    state: web::Data<Core>,
    principal: Principal,
    body: web::Json<BuildDebianTemplateRequest>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let task: TaskResponse = admin::build_debian(
        &state.db,
        &state.hub,
        &state.config.templates_dir,
        Actor::from(&principal),
        body.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Accepted().json(task))
}

/// Delete a template (VPSes made from it keep their own files).
#[utoipa::path(tag = "templates", params(("id" = i64, Path)), responses(
    (status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/templates/{id}")]
pub async fn delete_template(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> Result<HttpResponse> {
    principal.require(Role::Operator)?;
    let actor = Actor::from(&principal);
    admin::delete(
        &state.db,
        &state.config.templates_dir,
        actor,
        id.into_inner(),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
