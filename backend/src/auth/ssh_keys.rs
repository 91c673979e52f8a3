//! Public keys users log in to the SSH command line with (`sshd.rs`): each user manages their
//! own; an admin can remove anyone's. A key logs in as one user only.

use super::Principal;
use crate::audit::{self, Actor, Change};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::models::now;
pub use crate::repo::ssh_keys::SshKey;
use crate::repo::ssh_keys::{self as repo, NewSshKey};
use serverware_shared::api::{AddSshKeyRequest, SshKeyResponse};
use serverware_shared::{validate, Role};

impl SshKey {
    pub fn to_response(&self) -> SshKeyResponse {
        SshKeyResponse {
            id: self.id,
            user_id: self.user_id,
            name: self.name.clone(),
            key_type: self
                .public_key
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
            fingerprint: self.fingerprint.clone(),
            created_at: self.created_at.and_utc(),
            last_used_at: self.last_used_at.map(|t| t.and_utc()),
        }
    }
}

/// A key's fingerprint as `ssh-keygen -l` prints it (`SHA256:…`), if `line` is a key.
pub fn fingerprint(line: &str) -> Option<String> {
    let key = russh::keys::PublicKey::from_openssh(line).ok()?;
    Some(key.fingerprint(russh::keys::HashAlg::Sha256).to_string())
}

/// One's own keys.
pub async fn list(db: &Db, p: &Principal) -> Result<Vec<SshKey>> {
    let uid = p.user_id;
    db.run(move |c| repo::of_user(c, uid)).await
}

/// Adds a key to one's own account: it logs in to the SSH command line as this user.
pub async fn add(db: &Db, p: &Principal, req: AddSshKeyRequest) -> Result<SshKey> {
    let name = validate::label("name", &req.name)?;
    let line = validate::ssh_public_key("public_key", &req.public_key)?;
    let fp = fingerprint(&line).ok_or_else(|| {
        Error::invalid(
            "public_key",
            "the key's data is not a key of its type (was it copied whole?)",
        )
    })?;
    let actor = Actor::from(p);
    let uid = p.user_id;
    db.transaction(move |c| {
        let taken = || {
            Error::conflict(
                Some("public_key"),
                format!("the key {fp} is registered already (a key logs in as one user)"),
            )
        };
        if repo::by_fingerprint(c, &fp)?.is_some() {
            return Err(taken());
        }
        repo::insert(
            c,
            NewSshKey {
                user_id: uid,
                name: &name,
                public_key: &line,
                fingerprint: &fp,
                created_at: now(),
            },
        )?;
        let key = repo::by_fingerprint(c, &fp)?.ok_or_else(taken)?;
        audit::record(
            c,
            &actor,
            Change::new(
                "ssh_key.add",
                "ssh_key",
                key.id,
                format!("{} added SSH key '{}' ({fp})", actor.name, key.name),
            ),
        )?;
        Ok(key)
    })
    .await
}

/// Removes a key: one's own, or anyone's for an admin (others' keys are "not found" to others).
pub async fn delete(db: &Db, p: &Principal, id: i64) -> Result<()> {
    let actor = Actor::from(p);
    let is_admin = p.role.allows(Role::Admin);
    let uid = p.user_id;
    db.transaction(move |c| {
        let key = repo::find(c, id)?
            .filter(|k| is_admin || k.user_id == uid)
            .ok_or_else(|| Error::NotFound(format!("no SSH key with id {id}")))?;
        repo::delete(c, id)?;
        audit::record(
            c,
            &actor,
            Change::new(
                "ssh_key.delete",
                "ssh_key",
                id,
                format!(
                    "{} removed SSH key '{}' ({})",
                    actor.name, key.name, key.fingerprint
                ),
            ),
        )?;
        Ok(())
    })
    .await
}
