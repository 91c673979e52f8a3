//! Templates in the controller's storage area: gzip-compressed tar archives of a root filesystem
//! under `<data dir>/storage/templates/`. The built-in `minimal` template is built offline from
//! this machine's `busybox-static`; a Debian template is built with `debootstrap`; operators can
//! upload their own archive.

pub mod admin;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::models::now;
pub use crate::repo::templates::TemplateRow;
use crate::repo::templates::{self as repo, NewTemplate};
use anyhow::{bail, Context};
use serverware_shared::api::TemplateResponse;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const MINIMAL: &str = "minimal";

impl TemplateRow {
    pub fn to_response(&self) -> TemplateResponse {
        TemplateResponse {
            id: self.id,
            name: self.name.clone(),
            os: self.os.clone(),
            description: self.description.clone(),
            size_bytes: self.size_bytes,
            status: self.status.clone(),
            created_at: self.created_at.and_utc(),
        }
    }
}

/// Where the archive recorded as `rel` (`templates/NAME.tar.gz`) lives: in the templates'
/// directory, by its file name.
pub fn path_of(templates: &Path, rel: &str) -> PathBuf {
    let name = Path::new(rel)
        .file_name()
        .map(Path::new)
        .unwrap_or(Path::new(rel));
    templates.join(name)
}

/// Where a template's archive lives.
pub fn file(templates: &Path, row: &TemplateRow) -> PathBuf {
    path_of(templates, &row.storage_path)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

const INITTAB: &str = "::sysinit:/etc/init.d/rcS\n\
::respawn:/bin/busybox httpd -f -p 80 -h /var/www\n\
::shutdown:/bin/busybox umount -a -r\n";

const RCS: &str = "#!/bin/sh\n\
hostname -F /etc/hostname 2>/dev/null\n\
hostname > /var/www/index.html\n";

/// A minimal system: busybox as init and shell, and busybox httpd answering on port 80 with the
/// VPS's host name. Built from this machine's `/bin/busybox` (Debian `busybox-static`).
pub fn build_minimal(out: &Path) -> anyhow::Result<u64> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .context("busybox is not installed (apt install busybox-static)")?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("rootfs");
    for d in [
        "bin",
        "sbin",
        "etc/init.d",
        "dev",
        "proc",
        "sys",
        "tmp",
        "root",
        "var/www",
        "run",
        "usr/bin",
        "usr/sbin",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    // The installed binary is asked, not the fresh copy: executing a file just written can fail
    // with "text file busy" while another thread forks.
    let list = Command::new(busybox)
        .arg("--list-full")
        .output()
        .context("cannot list busybox's applets (is it the static build?)")?;
    if !list.status.success() {
        bail!(
            "busybox --list-full failed: {}",
            String::from_utf8_lossy(&list.stderr).trim()
        );
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet.contains("..") {
            continue;
        }
        let link = root.join(applet);
        if !link.exists() {
            if let Some(parent) = link.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::os::unix::fs::symlink("/bin/busybox", &link)?;
        }
    }
    std::fs::write(root.join("etc/inittab"), INITTAB)?;
    std::fs::write(root.join("etc/init.d/rcS"), RCS)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("etc/init.d/rcS"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n")?;
    std::fs::write(root.join("etc/hostname"), "minimal\n")?;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    pack(&root, out)
}

/// Packs a directory into a gzip-compressed tar archive owned by root; returns its size.
pub fn pack(root: &Path, out: &Path) -> anyhow::Result<u64> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let part = out.with_extension("part");
    run(
        "tar",
        &[
            "-c",
            "-z",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "-f",
            &part.to_string_lossy(),
            "-C",
            &root.to_string_lossy(),
            ".",
        ],
    )?;
    std::fs::rename(&part, out)?;
    Ok(std::fs::metadata(out)?.len())
}

/// Makes sure the built-in template exists (at first start, or after its file was lost).
pub async fn ensure_minimal(db: &Db, templates: &Path) -> anyhow::Result<()> {
    let existing = db
        .run(|c| repo::by_name(c, MINIMAL))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(t) = &existing {
        if file(templates, t).is_file() {
            return Ok(());
        }
    }
    let rel = format!("templates/{MINIMAL}.tar.gz");
    let out = path_of(templates, &rel);
    let size = tokio::task::spawn_blocking(move || build_minimal(&out)).await??;
    db.run(move |c| {
        match existing {
            Some(t) => repo::set_ready(c, t.id, size)?,
            None => {
                repo::insert(
                    c,
                    NewTemplate {
                        name: MINIMAL,
                        os: "busybox",
                        description: "Built in: busybox init and shell, httpd on port 80 answering with the host name",
                        size_bytes: size as i64,
                        storage_path: &rel,
                        status: "ready",
                        created_at: now(),
                    },
                )?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!("built the template '{MINIMAL}' ({size} bytes)");
    Ok(())
}

/// Checks an archive is a root filesystem (it has an init) and stores it gzip-compressed at `out`.
/// Nothing is left behind when it is refused.
pub fn accept_archive(upload: &Path, out: &Path) -> Result<u64, Error> {
    let gz = upload.with_extension("gz");
    let r = check_and_store(upload, &gz, out);
    if r.is_err() && gz != upload {
        let _ = std::fs::remove_file(&gz);
    }
    r
}

fn check_and_store(upload: &Path, gz_path: &Path, out: &Path) -> Result<u64, Error> {
    let mut magic = [0u8; 2];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(upload).map_err(|e| Error::Internal(e.into()))?;
        let _ = f.read(&mut magic);
    }
    let gz = if magic == [0x1f, 0x8b] {
        upload.to_path_buf()
    } else {
        let gz = gz_path.to_path_buf();
        let status = Command::new("gzip")
            .args(["-c", "-1"])
            .stdin(std::fs::File::open(upload).map_err(|e| Error::Internal(e.into()))?)
            .stdout(std::fs::File::create(&gz).map_err(|e| Error::Internal(e.into()))?)
            .status()
            .map_err(|e| Error::Internal(e.into()))?;
        if !status.success() {
            return Err(Error::Internal(anyhow::anyhow!("gzip failed")));
        }
        gz
    };
    let list = Command::new("tar")
        .args(["-t", "-z", "-f"])
        .arg(&gz)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Internal(e.into()))?;
    if !list.status.success() {
        return Err(Error::invalid(
            "body",
            "not a tar archive (plain or gzip-compressed)",
        ));
    }
    let names = String::from_utf8_lossy(&list.stdout);
    let has_init = names.lines().any(|l| {
        let l = l.trim_start_matches("./");
        l == "sbin/init" || l == "usr/sbin/init" || l == "lib/systemd/systemd"
    });
    if !has_init {
        return Err(Error::invalid(
            "body",
            "not a root filesystem: the archive has no sbin/init",
        ));
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::Internal(e.into()))?;
    }
    std::fs::rename(&gz, out).map_err(|e| Error::Internal(e.into()))?;
    Ok(std::fs::metadata(out).map(|m| m.len()).unwrap_or(0))
}

pub fn load(c: &mut crate::db::DbConn, id: i64) -> Result<TemplateRow> {
    repo::find(c, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimal_template_is_a_busybox_root_filesystem() {
        if !Path::new("/bin/busybox").exists() {
            eprintln!("busybox-static is not installed; scripts/test.sh installs it");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("t.tar.gz");
        let size = build_minimal(&out).unwrap();
        assert!(size > 100_000, "{size}");
        let list = Command::new("tar")
            .args(["-tzf"])
            .arg(&out)
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&list.stdout);
        for want in ["./sbin/init", "./bin/busybox", "./etc/inittab", "./bin/sh"] {
            assert!(names.lines().any(|l| l == want), "{want} missing");
        }
        // And it is accepted as an upload.
        let up = dir.path().join("upload");
        std::fs::copy(&out, &up).unwrap();
        accept_archive(&up, &dir.path().join("stored.tar.gz")).unwrap();
        std::fs::write(dir.path().join("junk"), b"not a tar").unwrap();
        assert!(accept_archive(&dir.path().join("junk"), &dir.path().join("x.tar.gz")).is_err());
    }
}
