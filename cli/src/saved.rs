//! The logins `sw login` keeps, one per site (a controller or pair), each with a name: the
//! controller's URL and an API token, in `$XDG_CONFIG_HOME/serverware/cli.json` (else
//! `~/.config/serverware/cli.json`), mode 0600 in a 0700 directory, written whole or not at all.
//! One of them is the current site; `--site NAME` picks another for one command. A file from
//! before sites (one login) reads as the site `default`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

/// The name a login gets when none is given.
pub const DEFAULT_SITE: &str = "default";

/// Every site logged in to, and which is current.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Sites {
    pub current: Option<String>,
    pub sites: BTreeMap<String, Saved>,
}

impl Sites {
    /// The site `name` (else the current one), with its name.
    pub fn pick(&self, name: Option<&str>) -> Option<(String, &Saved)> {
        let n = name.map(str::to_string).or_else(|| self.current.clone())?;
        self.sites.get(&n).map(|s| (n, s))
    }
}

/// A site's name: letters, digits, `-`, `_` and `.`, 1–63 characters (as the dashboard's).
pub fn check_name(name: &str) -> Result<(), String> {
    serverware_shared::sites::site_name("site", name)
        .map(|_| ())
        .map_err(|e| e.message)
}

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

/// The kept logins (none: an empty set).
pub fn load() -> Sites {
    path().map(|p| load_from(&p)).unwrap_or_default()
}

fn load_from(p: &std::path::Path) -> Sites {
    let Ok(raw) = std::fs::read(p) else {
        return Sites::default();
    };
    if let Ok(s) = serde_json::from_slice::<Sites>(&raw) {
        return s;
    }
    match serde_json::from_slice::<Saved>(&raw) {
        Ok(one) => Sites {
            current: Some(DEFAULT_SITE.to_string()),
            sites: BTreeMap::from([(DEFAULT_SITE.to_string(), one)]),
        },
        Err(_) => Sites::default(),
    }
}

/// Keeps `s` in place of what was kept; with no site left, the file goes.
pub fn store(s: &Sites) -> std::io::Result<PathBuf> {
    let p =
        path().ok_or_else(|| std::io::Error::other("neither XDG_CONFIG_HOME nor HOME is set"))?;
    if s.sites.is_empty() {
        return match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(p),
        };
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_from_before_sites_reads_as_the_default_site() {
        let one = Saved {
            url: "http://c:8080".into(),
            token: "swt_x".into(),
            token_id: 3,
            username: "admin".into(),
            insecure: false,
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cli.json");
        std::fs::write(&p, serde_json::to_vec(&one).unwrap()).unwrap();
        let s = load_from(&p);
        assert_eq!(s.current.as_deref(), Some(DEFAULT_SITE));
        assert_eq!(s.pick(None).unwrap().1, &one);
        assert!(s.pick(Some("other")).is_none());
        assert!(check_name("lon-1.dc_2").is_ok());
        assert!(
            check_name("").is_err() && check_name("a b").is_err() && check_name("../x").is_err()
        );
    }
}
