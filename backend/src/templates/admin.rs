//! What operators do with templates: list, add an uploaded archive, build a Debian one (a task),
//! delete. The built-in template stays; one a VPS is being made from stays until it is made.

use super::{accept_archive, file, pack, path_of, TemplateRow, MINIMAL};
use crate::audit::{self, Actor, Change};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::models::now;
use crate::repo::templates::{self as repo, NewTemplate};
use crate::tasks::Task;
use serverware_shared::api::{BuildDebianTemplateRequest, TaskResponse, UploadTemplateQuery};
use serverware_shared::validate;
use std::path::Path;
use std::sync::Arc;

pub async fn list(db: &Db) -> Result<Vec<TemplateRow>> {
    db.run(repo::list).await
}

/// What an upload is to be called, checked before its body is read.
pub struct Upload {
    pub name: String,
    pub os: String,
    pub description: String,
}

/// Checks an upload's fields, and that its name is free, before its body is read.
pub async fn check_upload(db: &Db, q: &UploadTemplateQuery) -> Result<Upload> {
    let u = Upload {
        name: validate::resource_name("name", &q.name)?,
        os: validate::label("os", &q.os)?,
        description: validate::description("description", &q.description)?,
    };
    let n = u.name.clone();
    db.run(move |c| repo::free(c, &n)).await?;
    Ok(u)
}

/// Where an upload's body is written while it arrives (in the templates' directory, so the
/// accepted archive is renamed, not copied).
pub fn upload_file(templates: &Path) -> Result<tempfile::NamedTempFile> {
    std::fs::create_dir_all(templates).map_err(|e| Error::Internal(e.into()))?;
    tempfile::NamedTempFile::new_in(templates).map_err(|e| Error::Internal(e.into()))
}

/// Adds the uploaded archive (a tar, plain or gzip, of a root filesystem with an init) as a
/// template. Nothing is left behind when it is refused.
pub async fn add_uploaded(
    db: &Db,
    templates: &Path,
    actor: Actor,
    u: Upload,
    upload: tempfile::NamedTempFile,
) -> Result<TemplateRow> {
    let rel = format!("templates/{}.tar.gz", u.name);
    let out = path_of(templates, &rel);
    let path = upload.path().to_path_buf();
    let stored = tokio::task::spawn_blocking(move || {
        let r = accept_archive(&path, &out);
        drop(upload);
        r
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("{e}")))??;
    db.transaction(move |c| {
        let row = repo::insert(
            c,
            NewTemplate {
                name: &u.name,
                os: &u.os,
                description: &u.description,
                size_bytes: stored as i64,
                storage_path: &rel,
                status: "ready",
                created_at: now(),
            },
        )?;
        audit::record(
            c,
            &actor,
            Change::new(
                "template.create",
                "template",
                row.id,
                format!("uploaded template {} ({}, {stored} bytes)", u.name, u.os),
            ),
        )?;
        Ok(row)
    })
    .await
}

/// Builds a Debian template with debootstrap (needs a reachable Debian mirror), as a task.
pub async fn build_debian(
    db: &Db,
    hub: &Arc<Hub>,
    templates: &Path,
    actor: Actor,
    r: BuildDebianTemplateRequest,
) -> Result<TaskResponse> {
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
    let rel = format!("templates/{name}.tar.gz");
    let (a, n, s, rl) = (actor.clone(), name.clone(), suite.clone(), rel.clone());
    let (row, task_row) = db
        .transaction(move |c| {
            let row = repo::insert(
                c,
                NewTemplate {
                    name: &n,
                    os: &format!("debian {s}"),
                    description: &description,
                    size_bytes: 0,
                    storage_path: &rl,
                    status: "building",
                    created_at: now(),
                },
            )?;
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
        .await?;
    let task = Task::new(db.clone(), hub.clone(), actor, &task_row);
    let out = task.response();
    let (db, out_path, storage) = (
        db.clone(),
        path_of(templates, &rel),
        templates.to_path_buf(),
    );
    tokio::spawn(async move {
        task.log(format!("debootstrap {suite} from {mirror}")).await;
        task.progress(5, 0, None).await;
        let built =
            tokio::task::spawn_blocking(move || debootstrap(&suite, &mirror, &storage, &out_path))
                .await;
        let id = row.id;
        let r: Result<String, Error> = match built {
            Ok(Ok(size)) => db
                .run(move |c| repo::set_ready(c, id, size))
                .await
                .map(|_| format!("template {} ready ({size} bytes)", row.name)),
            Ok(Err(e)) => Err(Error::HostUnavailable(format!("{e:#}"))),
            Err(e) => Err(Error::Internal(e.into())),
        };
        if r.is_err() {
            let _ = db.run(move |c| repo::delete(c, id)).await;
        }
        task.finish(&r).await;
    });
    Ok(out)
}

/// debootstrap of `suite` from `mirror` in a scratch directory under `storage`, packed to `out`:
/// the archive's size.
fn debootstrap(suite: &str, mirror: &str, storage: &Path, out: &Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(storage)?;
    let tmp = tempfile::tempdir_in(storage)?;
    let root = tmp.path().join("rootfs");
    let o = std::process::Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=systemd-sysv,iproute2,ifupdown",
        ])
        .arg(suite)
        .arg(&root)
        .arg(mirror)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run debootstrap (apt install debootstrap): {e}"))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let out = String::from_utf8_lossy(&o.stdout);
        let tail: Vec<&str> = out.lines().chain(err.lines()).rev().take(5).collect();
        anyhow::bail!(
            "debootstrap failed: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    pack(&root, out)
}

/// Deletes a template (VPSes made from it keep their own files), and its archive.
pub async fn delete(db: &Db, templates: &Path, actor: Actor, id: i64) -> Result<()> {
    let row = db
        .transaction(move |c| {
            let row = repo::find(c, id)?;
            if row.name == MINIMAL {
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
            if repo::creating_from(c, id)? > 0 {
                return Err(Error::conflict(
                    None,
                    format!("template {} is in use by a VPS being created", row.name),
                ));
            }
            repo::delete(c, id)?;
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
        .await?;
    let _ = std::fs::remove_file(file(templates, &row));
    Ok(())
}
