//! `/api/v1/templates`: list, upload, build (Debian) and delete templates.

use crate::audit::{self, Actor, Change};
use crate::auth::Principal;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::models::now;
use crate::schema::{templates, vpses};
use crate::tasks::Task;
use crate::templates::{self as tpl, TemplateRow};
use actix_web::{delete, get, post, web, HttpResponse};
use diesel::prelude::*;
use futures_util::StreamExt;
use serverware_shared::api::{
    BuildDebianTemplateRequest, TaskResponse, TemplateResponse, UploadTemplateQuery,
};
use serverware_shared::{validate, ErrorBody, Role};
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
    let rows: Vec<TemplateRow> = state
        .db
        .run(|c| {
            Ok(templates::table
                .order(templates::name)
                .select(TemplateRow::as_select())
                .load(c)?)
        })
        .await?;
    Ok(web::Json(
        rows.iter().map(TemplateRow::to_response).collect(),
    ))
}

fn taken(c: &mut crate::db::DbConn, name: &str) -> Result<()> {
    let n: i64 = templates::table
        .filter(templates::name.eq(name))
        .count()
        .get_result(c)?;
    if n > 0 {
        return Err(Error::conflict(
            Some("name"),
            format!("a template named '{name}' exists"),
        ));
    }
    Ok(())
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
    let q = query.into_inner();
    let name = validate::resource_name("name", &q.name)?;
    let os = validate::label("os", &q.os)?;
    let description = validate::description("description", &q.description)?;
    let n = name.clone();
    state.db.run(move |c| taken(c, &n)).await?;
    let dir = tpl::dir(&state.config.data_dir);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    let upload = tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::Internal(e.into()))?;
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
    let rel = format!("templates/{name}.tar.gz");
    let out = state.config.data_dir.join("storage").join(&rel);
    let path = upload.path().to_path_buf();
    let stored = web::block(move || {
        let r = tpl::accept_archive(&path, &out);
        drop(upload);
        r
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("{e}")))??;
    let actor = Actor::from(&principal);
    let row = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                taken(c, &name)?;
                diesel::insert_into(templates::table)
                    .values((
                        templates::name.eq(&name),
                        templates::os.eq(&os),
                        templates::description.eq(&description),
                        templates::size_bytes.eq(stored as i64),
                        templates::storage_path.eq(&rel),
                        templates::status.eq("ready"),
                        templates::created_at.eq(now()),
                    ))
                    .execute(c)?;
                let row: TemplateRow = templates::table
                    .filter(templates::name.eq(&name))
                    .select(TemplateRow::as_select())
                    .first(c)?;
                audit::record(
                    c,
                    &actor,
                    Change::new(
                        "template.create",
                        "template",
                        row.id,
                        format!("uploaded template {name} ({os}, {stored} bytes)"),
                    ),
                )?;
                Ok(row)
            })
        })
        .await?;
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
    let r = body.into_inner();
    let name = validate::resource_name("name", &r.name)?;
    let description = validate::description("description", &r.description)?;
    let suite = r.suite.unwrap_or_else(|| "bookworm".into());
    if !suite.chars().all(|c| c.is_ascii_lowercase()) || suite.is_empty() || suite.len() > 20 {
        return Err(Error::invalid(
            "suite",
            "a Debian suite name such as bookworm",
        ));
    }
    let mirror = r
        .mirror
        .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    if !(mirror.starts_with("http://") || mirror.starts_with("https://"))
        || mirror.chars().any(|c| c.is_whitespace())
    {
        return Err(Error::invalid("mirror", "an http:// or https:// address"));
    }
    let actor = Actor::from(&principal);
    let rel = format!("templates/{name}.tar.gz");
    let (a, n, s, rl) = (actor.clone(), name.clone(), suite.clone(), rel.clone());
    let (tpl_row, task_row) = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                taken(c, &n)?;
                diesel::insert_into(templates::table)
                    .values((
                        templates::name.eq(&n),
                        templates::os.eq(format!("debian {s}")),
                        templates::description.eq(&description),
                        templates::size_bytes.eq(0),
                        templates::storage_path.eq(&rl),
                        templates::status.eq("building"),
                        templates::created_at.eq(now()),
                    ))
                    .execute(c)?;
                let row: TemplateRow = templates::table
                    .filter(templates::name.eq(&n))
                    .select(TemplateRow::as_select())
                    .first(c)?;
                let task =
                    crate::tasks::insert(c, "template.build", "template", &row.id.to_string(), &a)?;
                audit::record(
                    c,
                    &a,
                    Change::new(
                        "template.create",
                        "template",
                        row.id,
                        format!("building template {n} (Debian {s})"),
                    ),
                )?;
                Ok((row, task))
            })
        })
        .await?;
    let task = Task::new(state.db.clone(), state.hub.clone(), actor, &task_row);
    let out = task.response();
    let state = state.into_inner();
    tokio::spawn(async move {
        let out_path = state.config.data_dir.join("storage").join(&rel);
        let storage = tpl::dir(&state.config.data_dir);
        task.log(format!("debootstrap {suite} from {mirror}")).await;
        task.progress(5, 0, None).await;
        let (s2, m2) = (suite.clone(), mirror.clone());
        let built = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
            std::fs::create_dir_all(&storage)?;
            let tmp = tempfile::tempdir_in(&storage)?;
            let root = tmp.path().join("rootfs");
            let o = std::process::Command::new("debootstrap")
                .args([
                    "--variant=minbase",
                    "--include=systemd-sysv,iproute2,ifupdown",
                ])
                .arg(&s2)
                .arg(&root)
                .arg(&m2)
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| {
                    anyhow::anyhow!("cannot run debootstrap (apt install debootstrap): {e}")
                })?;
            if !o.status.success() {
                let err = String::from_utf8_lossy(&o.stderr);
                let out = String::from_utf8_lossy(&o.stdout);
                let tail: Vec<&str> = out.lines().chain(err.lines()).rev().take(5).collect();
                anyhow::bail!(
                    "debootstrap failed: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
            }
            tpl::pack(&root, &out_path)
        })
        .await;
        let id = tpl_row.id;
        let r: Result<String, Error> = match built {
            Ok(Ok(size)) => {
                let res = state
                    .db
                    .run(move |c| {
                        diesel::update(templates::table.find(id))
                            .set((
                                templates::size_bytes.eq(size as i64),
                                templates::status.eq("ready"),
                            ))
                            .execute(c)?;
                        Ok(())
                    })
                    .await;
                res.map(|_| format!("template {} ready ({size} bytes)", tpl_row.name))
            }
            Ok(Err(e)) => Err(Error::HostUnavailable(format!("{e:#}"))),
            Err(e) => Err(Error::Internal(e.into())),
        };
        if r.is_err() {
            let _ = state
                .db
                .run(move |c| {
                    diesel::delete(templates::table.find(id)).execute(c)?;
                    Ok(())
                })
                .await;
        }
        task.finish(&r).await;
    });
    Ok(HttpResponse::Accepted().json(out))
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
    let id = id.into_inner();
    let actor = Actor::from(&principal);
    let row = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let row = tpl::load(c, id)?;
                if row.name == tpl::MINIMAL {
                    return Err(Error::conflict(
                        None,
                        "the built-in template cannot be deleted",
                    ));
                }
                if row.status == "building" {
                    return Err(Error::conflict(
                        None,
                        format!("template {} is still being built", row.name),
                    ));
                }
                let creating: i64 = vpses::table
                    .filter(vpses::template_id.eq(id))
                    .filter(vpses::status.eq("creating"))
                    .count()
                    .get_result(c)?;
                if creating > 0 {
                    return Err(Error::conflict(
                        None,
                        format!("template {} is in use by a VPS being created", row.name),
                    ));
                }
                diesel::delete(templates::table.find(id)).execute(c)?;
                audit::record(
                    c,
                    &actor,
                    Change::new(
                        "template.delete",
                        "template",
                        id,
                        format!("deleted template {}", row.name),
                    ),
                )?;
                Ok(row)
            })
        })
        .await?;
    let _ = std::fs::remove_file(tpl::file(&state.config.data_dir, &row));
    Ok(HttpResponse::NoContent().finish())
}
