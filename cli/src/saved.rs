//! The login `sw login` keeps: the controller's URL and an API token, in
//! `$XDG_CONFIG_HOME/serverware/cli.json` (else `~/.config/serverware/cli.json`), mode 0600 in a
//! 0700 directory, written whole or not at all.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Saved {
    pub url: String,
    pub token: String,
    pub token_id: i64,
    pub username: String,
    /// The controller's certificate was accepted unchecked at login (--insecure).
    #[serde(default)]
    pub insecure: bool,
}

pub fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("serverware").join("cli.json"))
}

pub fn load() -> Option<Saved> {
    let raw = std::fs::read(path()?).ok()?;
    serde_json::from_slice(&raw).ok()
}

pub fn store(s: &Saved) -> std::io::Result<PathBuf> {
    let p =
        path().ok_or_else(|| std::io::Error::other("neither XDG_CONFIG_HOME nor HOME is set"))?;
    let dir = p.parent().expect("has a parent");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let tmp = dir.join(format!(".cli.json.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &p)?;
    Ok(p)
}

pub fn forget() -> std::io::Result<()> {
    match path() {
        Some(p) => match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        None => Ok(()),
    }
}
