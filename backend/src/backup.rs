//! The controller's own backups: its database and what it cannot be rebuilt without (its SSH
//! key that every host trusts, its SSH command line's host key, the pair's database password,
//! its configuration file). Restore points already live in storage and are not copied.
//!
//! A backup is one file, `serverware-backup-<UTC time>.tar.zst`, mode 0600 (it holds keys):
//! `manifest.json` first (release, database kind, its migrations, each file's size and SHA-256),
//! then `database.sqlite` (a consistent copy taken while the controller runs) or `tables/*.json`
//! (PostgreSQL: every table's rows, read in one snapshot), then `files/…`. It is written beside
//! its final name and renamed when whole: a crash leaves no half backup under a backup's name.
//!
//! `serverware restore FILE` needs the controller stopped (it holds the data directory's lock),
//! checks every file against the manifest and the release against the backup's migrations, then
//! puts the database back (the one it replaces is kept beside it) and the keys (those it
//! replaces kept too). The configuration file is written beside the data directory's, never over
//! the one in use.

use crate::config::Config;
use crate::db::{Db, DbTarget};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The backup file's layout version.
pub const FORMAT: u32 = 1;
const PREFIX: &str = "serverware-backup-";
const SUFFIX: &str = ".tar.zst";
/// Files of the data directory a backup keeps.
const SECRETS: [&str; 3] = [
    crate::keys::KEY_FILE,
    crate::keys::HOST_KEY_FILE,
    "postgres_password",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    /// The release that made it.
    pub version: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// The database's migrations when it was taken.
    pub migrations: Vec<String>,
    pub files: Vec<Entry>,
}

/// A backup as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Listed {
    pub file: PathBuf,
    pub size: u64,
    pub manifest: Manifest,
}

fn sha256_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, hex::encode(h.finalize())))
}

fn kind(config: &Config) -> anyhow::Result<&'static str> {
    Ok(match DbTarget::parse(&config.database_url)? {
        DbTarget::Sqlite(_) => "sqlite",
        DbTarget::Postgres(_) => "postgres",
    })
}

/// The database and files gathered into `work` (a fresh directory); their manifest.
fn gather(config: &Config, db: &Db, work: &Path) -> anyhow::Result<Manifest> {
    let database = kind(config)?;
    let mut c = db.get_blocking()?;
    let migrations = crate::repo::backup::applied_migrations(&mut c)?;
    let mut names = Vec::new();
    if database == "sqlite" {
        crate::repo::backup::sqlite_snapshot(&mut c, &work.join("database.sqlite"))?;
        names.push("database.sqlite".to_string());
    } else {
        std::fs::create_dir(work.join("tables"))?;
        crate::repo::backup::pg_dump(&mut c, |table, rows| {
            let name = format!("tables/{table}.json");
            let mut f = std::io::BufWriter::new(std::fs::File::create(work.join(&name))?);
            serde_json::to_writer(&mut f, &rows)?;
            f.flush()?;
            names.push(name);
            Ok(())
        })?;
    }
    drop(c);
    std::fs::create_dir(work.join("files"))?;
    let mut keep = |from: &Path, as_name: &str| -> anyhow::Result<()> {
        if from.is_file() {
            let name = format!("files/{as_name}");
            std::fs::copy(from, work.join(&name))
                .with_context(|| format!("cannot read {}", from.display()))?;
            names.push(name);
        }
        Ok(())
    };
    for s in SECRETS {
        keep(&config.data_dir.join(s), s)?;
    }
    if let Some(f) = &config.config_file {
        keep(f, "serverware.toml")?;
    }
    let mut files = Vec::new();
    for name in names {
        let (size, sha256) = sha256_file(&work.join(&name))?;
        files.push(Entry { name, size, sha256 });
    }
    Ok(Manifest {
        format: FORMAT,
        version: serverware_shared::BUILD.into(),
        created_at: chrono::Utc::now(),
        database: database.into(),
        migrations,
        files,
    })
}

/// Makes a backup in the configured directory; the file.
pub fn create(config: &Config, db: &Db) -> anyhow::Result<PathBuf> {
    let dir = &config.backup_dir;
    crate::files::private_dir(dir)?;
    let work = tempfile::Builder::new()
        .prefix(".backup-work-")
        .tempdir_in(dir)?;
    let manifest = gather(config, db, work.path())?;
    let name = format!(
        "{PREFIX}{}{SUFFIX}",
        manifest.created_at.format("%Y%m%dT%H%M%S%.3fZ")
    );
    let target = dir.join(&name);
    let partial = dir.join(format!(".{name}.partial"));
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(&partial)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        let mut z = zstd::Encoder::new(f, 3)?;
        // The frame's checksum of everything in it (tar headers and padding too), checked on
        // restore: a damaged byte anywhere is refused, not only one in a listed file.
        z.include_checksum(true)?;
        let mut tar = tar::Builder::new(z);
        let text = serde_json::to_vec_pretty(&manifest)?;
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(manifest.created_at.timestamp().max(0) as u64);
        h.set_cksum();
        tar.append_data(&mut h, "manifest.json", text.as_slice())?;
        for e in &manifest.files {
            let mut f = std::fs::File::open(work.path().join(&e.name))?;
            tar.append_file(&e.name, &mut f)?;
        }
        let z = tar.into_inner()?;
        let f = z.finish()?;
        f.sync_all()?;
    }
    std::fs::rename(&partial, &target)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(target)
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// Reads the manifest at the start of a backup file.
pub fn manifest(file: &Path) -> anyhow::Result<Manifest> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut tar = tar::Archive::new(zstd::Decoder::new(f)?);
    let mut entries = tar.entries()?;
    let mut first = entries
        .next()
        .context("an empty file, not a backup")?
        .context("not a backup file")?;
    if first.path()?.to_str() != Some("manifest.json") {
        bail!(
            "{} is not a SERVERware backup (no manifest first)",
            file.display()
        );
    }
    let mut text = String::new();
    first.read_to_string(&mut text)?;
    serde_json::from_str(&text).context("the backup's manifest is unreadable")
}

/// The backups in `dir`, newest first (a file that is not one is skipped with a warning).
pub fn list(dir: &Path) -> Vec<Listed> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with(PREFIX) || !name.ends_with(SUFFIX) {
            continue;
        }
        let file = e.path();
        match manifest(&file) {
            Ok(manifest) => out.push(Listed {
                size: e.metadata().map(|m| m.len()).unwrap_or(0),
                file,
                manifest,
            }),
            Err(err) => tracing::warn!("{} is not a readable backup: {err:#}", file.display()),
        }
    }
    out.sort_by_key(|b| std::cmp::Reverse(b.manifest.created_at));
    out
}

/// Removes all but the newest `keep` backups; the files removed.
pub fn prune(dir: &Path, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut gone = Vec::new();
    for b in list(dir).into_iter().skip(keep.max(1)) {
        std::fs::remove_file(&b.file)?;
        gone.push(b.file);
    }
    Ok(gone)
}

/// Whether a scheduled backup is due: none yet, or the newest older than `every_hours`.
pub fn due(
    newest: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
    every_hours: u32,
) -> bool {
    every_hours > 0
        && newest.is_none_or(|t| now - t >= chrono::TimeDelta::hours(i64::from(every_hours)))
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    /// What was there before, kept (the old database, replaced keys).
    pub kept: Vec<PathBuf>,
    /// The backup's configuration file, written beside (never over) the one in use.
    pub config_copy: Option<PathBuf>,
}

/// Unpacks `file` into `work`, checking every file against the manifest.
fn unpack(file: &Path, work: &Path) -> anyhow::Result<Manifest> {
    let m = manifest(file)?;
    if m.format != FORMAT {
        bail!(
            "this backup's format is {} (this release reads {FORMAT}): restore it with the release that made it ({})",
            m.format,
            m.version
        );
    }
    let f = std::fs::File::open(file)?;
    let mut tar = tar::Archive::new(zstd::Decoder::new(f)?);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_path_buf();
        let name = path
            .to_str()
            .context("a name that is not UTF-8")?
            .to_string();
        if name == "manifest.json" {
            continue;
        }
        // Only the names the manifest lists, each a plain relative path.
        if !m.files.iter().any(|e| e.name == name)
            || path
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            bail!("the backup holds {name}, which its manifest does not list");
        }
        let out = work.join(&name);
        if let Some(p) = out.parent() {
            std::fs::create_dir_all(p)?;
        }
        let mut w = std::fs::File::create(&out)?;
        std::io::copy(&mut entry, &mut w)?;
    }
    // Read to the frame's end, where its checksum is checked (tar stops at its end marker).
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink())
        .context("the backup is damaged (it does not decompress whole): nothing was restored")?;
    for e in &m.files {
        let (size, sha) = sha256_file(&work.join(&e.name))
            .with_context(|| format!("the backup lacks {}", e.name))?;
        if size != e.size || sha != e.sha256 {
            bail!(
                "{} in the backup is damaged (its checksum does not match): nothing was restored",
                e.name
            );
        }
    }
    Ok(m)
}

/// Moves `path` aside as `path.before-restore-<stamp>`, if it exists; the new name.
fn set_aside(path: &Path, stamp: &str) -> anyhow::Result<Option<PathBuf>> {
    if !path.exists() {
        return Ok(None);
    }
    let mut to = path.as_os_str().to_owned();
    to.push(format!(".before-restore-{stamp}"));
    let to = PathBuf::from(to);
    std::fs::rename(path, &to)?;
    Ok(Some(to))
}

/// Puts `file` back. The controller must be stopped (the caller holds the data directory's
/// lock). Refused, with nothing changed, when the backup is damaged, from a newer release, or
/// of another kind of database than the one configured.
pub fn restore(config: &Config, file: &Path) -> anyhow::Result<Restored> {
    if config.pair.as_ref().is_some_and(|p| p.postgres.is_some()) {
        bail!(
            "a pair keeps its own replicated database: restore onto a single controller (no \
             [pair] in its configuration), then make the pair again with `serverware pair init`"
        );
    }
    crate::files::private_dir(&config.data_dir)?;
    let work = tempfile::Builder::new()
        .prefix(".restore-work-")
        .tempdir_in(&config.data_dir)?;
    let m = unpack(file, work.path())?;
    let here = kind(config)?;
    if m.database != here {
        bail!(
            "this backup is of a {} database and this controller is configured for {here}: configure the same kind (database_url) to restore it",
            m.database
        );
    }
    let known = crate::db::known_migrations(here)?;
    let unknown: Vec<&String> = m.migrations.iter().filter(|v| !known.contains(v)).collect();
    if !unknown.is_empty() {
        bail!(
            "this backup was made by a newer release ({}; migrations {} are unknown here): restore it with that release or a newer one",
            m.version,
            unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut kept = Vec::new();
    match DbTarget::parse(&config.database_url)? {
        DbTarget::Sqlite(path) => {
            // The copy is made complete beside the database, then takes its place.
            let next = path.with_extension("db.restoring");
            std::fs::copy(work.path().join("database.sqlite"), &next)?;
            std::fs::File::open(&next)?.sync_all()?;
            for suffix in ["-wal", "-shm", "-journal"] {
                let mut f = path.clone().into_os_string();
                f.push(suffix);
                kept.extend(set_aside(Path::new(&f), &stamp)?);
            }
            kept.extend(set_aside(&path, &stamp)?);
            std::fs::rename(&next, &path)?;
            crate::files::private_file(&path)?;
            // Opened once: the migrations this release adds are applied now.
            drop(Db::open(&config.database_url)?);
        }
        DbTarget::Postgres(_) => {
            let db = Db::open(&config.database_url)?;
            let mut c = db.get_blocking()?;
            let now = crate::repo::backup::applied_migrations(&mut c)?;
            if now != m.migrations {
                bail!(
                    "this backup was made at another migration ({} migrations) than this release's database ({}): restore it with the release that made it ({}), then upgrade",
                    m.migrations.len(),
                    now.len(),
                    m.version
                );
            }
            let mut tables = Vec::new();
            for e in m.files.iter().filter(|e| e.name.starts_with("tables/")) {
                let t = e
                    .name
                    .trim_start_matches("tables/")
                    .trim_end_matches(".json")
                    .to_string();
                let rows: Vec<String> = serde_json::from_reader(std::io::BufReader::new(
                    std::fs::File::open(work.path().join(&e.name))?,
                ))?;
                tables.push((t, rows));
            }
            crate::repo::backup::pg_load(&mut c, &tables)?;
        }
    }
    for s in SECRETS {
        let from = work.path().join("files").join(s);
        if !from.is_file() {
            continue;
        }
        let to = config.data_dir.join(s);
        let same = std::fs::read(&to).ok() == std::fs::read(&from).ok();
        if !same {
            kept.extend(set_aside(&to, &stamp)?);
            crate::files::write_secret(&to, &std::fs::read(&from)?)?;
        }
    }
    let from = work.path().join("files/serverware.toml");
    let config_copy = if from.is_file() {
        let to = config
            .data_dir
            .join(format!("serverware.toml.from-backup-{stamp}"));
        crate::files::write_secret(&to, &std::fs::read(&from)?)?;
        Some(to)
    } else {
        None
    };
    Ok(Restored {
        manifest: m,
        kept,
        config_copy,
    })
}

/// The data directory's lock: one controller (or restore) at a time on a data directory.
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Takes the data directory's lock, or says who holds it.
pub fn lock(data_dir: &Path) -> anyhow::Result<DataDirLock> {
    use std::os::fd::AsRawFd;
    crate::files::private_dir(data_dir)?;
    let path = data_dir.join("serverware.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode_0600()
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        bail!(
            "a SERVERware controller (or a restore) is using {} (pid {}): stop it first",
            data_dir.display(),
            holder.trim()
        );
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(DataDirLock { _file: file })
}

/// The scheduled backup: one when due (the schedule counts from the newest backup, or from
/// `started` when there is none), then the oldest past `keep` removed. The file made, if one was.
pub async fn scheduled(
    config: &Config,
    db: &Db,
    started: chrono::DateTime<chrono::Utc>,
) -> Result<Option<PathBuf>, String> {
    let (config, db) = (config.clone(), db.clone());
    tokio::task::spawn_blocking(move || {
        let newest = list(&config.backup_dir)
            .first()
            .map(|b| b.manifest.created_at)
            .or(Some(started));
        if !due(newest, chrono::Utc::now(), config.backup.every_hours) {
            return Ok(None);
        }
        let made = create(&config, &db).map_err(|e| format!("{e:#}"))?;
        prune(&config.backup_dir, config.backup.keep as usize).map_err(|e| format!("{e:#}"))?;
        Ok(Some(made))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A backup as the API shows it.
pub fn info(b: &Listed) -> serverware_shared::api::BackupInfo {
    serverware_shared::api::BackupInfo {
        name: b
            .file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        size_bytes: b.size,
        created_at: b.manifest.created_at,
        version: b.manifest.version.clone(),
        database: b.manifest.database.clone(),
        files: b.manifest.files.len() as u64,
    }
}

/// The backups and their schedule.
pub async fn listing(config: &Config) -> serverware_shared::api::BackupList {
    let dir = config.backup_dir.clone();
    let list = tokio::task::spawn_blocking(move || list(&dir))
        .await
        .unwrap_or_default();
    serverware_shared::api::BackupList {
        backups: list.iter().map(info).collect(),
        dir: config.backup_dir.display().to_string(),
        every_hours: config.backup.every_hours,
        keep: config.backup.keep,
    }
}

/// A backup made now (asked by `actor`), the oldest past `keep` removed; audited.
pub async fn now(
    config: &Config,
    db: &Db,
    actor: crate::audit::Actor,
) -> crate::error::Result<serverware_shared::api::BackupInfo> {
    let (c, d) = (config.clone(), db.clone());
    let made = tokio::task::spawn_blocking(move || -> anyhow::Result<Listed> {
        let file = create(&c, &d)?;
        prune(&c.backup_dir, c.backup.keep as usize)?;
        Ok(Listed {
            size: std::fs::metadata(&file)?.len(),
            manifest: manifest(&file)?,
            file,
        })
    })
    .await
    .map_err(|e| crate::error::Error::Internal(anyhow::anyhow!("{e}")))?
    .map_err(|e| crate::error::Error::Internal(e.context("the backup failed")))?;
    let i = info(&made);
    let name = i.name.clone();
    db.run(move |c| {
        crate::audit::record(
            c,
            &actor,
            crate::audit::Change::new(
                "controller.backup",
                "controller",
                "backup",
                format!("the controller was backed up to {name}"),
            ),
        )?;
        Ok(())
    })
    .await?;
    Ok(i)
}

/// A scheduled backup, recorded as a system event.
pub async fn record(db: &Db, file: &Path) -> crate::error::Result<()> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    db.run(move |c| {
        crate::audit::record_system(
            c,
            &crate::audit::Actor::system("backup"),
            crate::audit::Change::new(
                "controller.backup",
                "controller",
                "backup",
                format!("the controller was backed up to {name} (scheduled)"),
            ),
        )?;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_backup_is_due_when_none_is_or_the_newest_is_old_enough() {
        let now = chrono::Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap();
        assert!(due(None, now, 24));
        assert!(!due(None, now, 0), "0: only when asked");
        assert!(!due(Some(now - chrono::TimeDelta::hours(23)), now, 24));
        assert!(due(Some(now - chrono::TimeDelta::hours(24)), now, 24));
        // A clock that went back: the newest is "in the future", not due until it is old.
        assert!(!due(Some(now + chrono::TimeDelta::hours(1)), now, 24));
    }

    #[test]
    fn the_data_directory_is_locked_while_held() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        let err = format!("{:#}", lock(dir.path()).err().unwrap());
        assert!(err.contains("stop it first"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(held);
        lock(dir.path()).unwrap();
    }
}
