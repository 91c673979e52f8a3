//! Users: who may log in, with which role. The last active admin always stays; a new password
//! or disabling ends the user's sessions. Every change is audited.

use super::{hash_password_off, verify_password_off, AuthMethod, Principal};
use crate::audit::{self, Actor, Change};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::models::{now, NewUser, User};
use crate::repo::users::{self, UserChanges};
use serverware_shared::api::{CreateUserRequest, UpdateUserRequest};
use serverware_shared::{validate, Role};

pub async fn list(db: &Db) -> Result<Vec<User>> {
    db.run(users::list).await
}

pub async fn get(db: &Db, id: i64) -> Result<User> {
    db.run(move |c| users::find(c, id)).await
}

pub async fn create(db: &Db, actor: Actor, req: CreateUserRequest) -> Result<User> {
    let username = validate::username("username", &req.username)?;
    validate::new_password("password", &req.password)?;
    let hash = hash_password_off(req.password.clone()).await?;
    db.transaction(move |c| {
        let t = now();
        let user = users::insert(
            c,
            NewUser {
                username: &username,
                password_hash: &hash,
                role: req.role.as_str(),
                disabled: false,
                created_at: t,
                updated_at: t,
            },
        )?;
        audit::record(
            c,
            &actor,
            Change::new(
                "user.create",
                "user",
                user.id,
                format!("created user {} ({})", user.username, user.role),
            )
            .details(serde_json::json!({ "username": user.username, "role": user.role })),
        )?;
        Ok(user)
    })
    .await
}

/// Changes a user's role, password or disabled flag. The last active admin cannot be demoted
/// or disabled.
pub async fn update(db: &Db, actor: Actor, id: i64, req: UpdateUserRequest) -> Result<User> {
    if let Some(p) = &req.password {
        validate::new_password("password", p)?;
    }
    let hash = match req.password.clone() {
        Some(p) => Some(hash_password_off(p).await?),
        None => None,
    };
    db.transaction(move |c| {
        let user = users::find(c, id)?;
        let loses_admin = user.role() == Role::Admin
            && !user.disabled
            && (req.role.is_some_and(|r| r != Role::Admin) || req.disabled == Some(true));
        if loses_admin && users::other_active_admins(c, id)? == 0 {
            let field = if req.disabled == Some(true) {
                "disabled"
            } else {
                "role"
            };
            return Err(Error::conflict(
                Some(field),
                "this is the last active admin: make another user admin first",
            ));
        }
        let changes = UserChanges {
            role: req.role.map(|r| r.as_str()),
            disabled: req.disabled,
            password_hash: hash.as_deref(),
            updated_at: Some(now()),
            last_login_at: None,
        };
        let changed: Vec<&str> = [
            ("role", changes.role.is_some()),
            ("disabled", changes.disabled.is_some()),
            ("password", changes.password_hash.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        users::update(c, id, &changes)?;
        if hash.is_some() || req.disabled == Some(true) {
            users::end_sessions(c, id)?;
        }
        let updated = users::find(c, id)?;
        audit::record(
            c,
            &actor,
            Change::new(
                "user.update",
                "user",
                id,
                format!("updated user {} ({})", updated.username, changed.join(", ")),
            )
            .details(serde_json::json!({
                "changed": changed,
                "role": updated.role,
                "disabled": updated.disabled,
            })),
        )?;
        Ok(updated)
    })
    .await
}

/// Deletes a user with their sessions and tokens. Nobody can delete themselves, and the last
/// active admin stays.
pub async fn delete(db: &Db, by: &Principal, id: i64) -> Result<()> {
    if id == by.user_id {
        return Err(Error::conflict(None, "you cannot delete your own account"));
    }
    let actor = Actor::from(by);
    db.transaction(move |c| {
        let user = users::find(c, id)?;
        if user.role() == Role::Admin && !user.disabled && users::other_active_admins(c, id)? == 0 {
            return Err(Error::conflict(None, "this is the last active admin"));
        }
        users::delete(c, id)?;
        audit::record(
            c,
            &actor,
            Change::new(
                "user.delete",
                "user",
                id,
                format!("deleted user {}", user.username),
            )
            .details(serde_json::json!({ "username": user.username })),
        )?;
        Ok(())
    })
    .await
}

/// Ends the session the principal came with (a token has none to end).
pub async fn logout(db: &Db, p: &Principal) -> Result<()> {
    let AuthMethod::Session { session_id, .. } = p.method else {
        return Ok(());
    };
    let actor = Actor::from(p);
    let uid = p.user_id;
    db.run(move |c| {
        users::end_session(c, session_id)?;
        audit::record(
            c,
            &actor,
            Change::new(
                "auth.logout",
                "user",
                uid,
                format!("{} logged out", actor.name),
            ),
        )?;
        Ok(())
    })
    .await
}

/// Changes one's own password, after checking the current one. The session that changed it
/// stays; every other one of the user ends.
pub async fn change_password(db: &Db, p: &Principal, current: String, new: String) -> Result<()> {
    validate::new_password("new_password", &new)?;
    let actor = Actor::from(p);
    let keep = match p.method {
        AuthMethod::Session { session_id, .. } => Some(session_id),
        AuthMethod::Token { .. } => None,
    };
    let uid = p.user_id;
    let user = get(db, uid).await?;
    if !verify_password_off(current, user.password_hash.clone()).await? {
        return Err(Error::Forbidden("the current password is wrong".into()));
    }
    let hash = hash_password_off(new).await?;
    db.transaction(move |c| {
        let changes = UserChanges {
            password_hash: Some(&hash),
            updated_at: Some(now()),
            ..Default::default()
        };
        users::update(c, uid, &changes)?;
        match keep {
            Some(k) => users::end_other_sessions(c, uid, k)?,
            None => users::end_sessions(c, uid)?,
        };
        audit::record(
            c,
            &actor,
            Change::new(
                "user.password",
                "user",
                uid,
                format!("{} changed their password", actor.name),
            ),
        )?;
        Ok(())
    })
    .await
}

/// Where the first admin password generated at the first start is kept for the installer
/// (`DATA_DIR/initial-admin-password`, readable by the controller's user only) until `admin`
/// changes it or it is reset.
pub const FIRST_PASSWORD_FILE: &str = "initial-admin-password";

/// Keeps the generated first password where the package's notes say to read it.
pub fn keep_first_password(data_dir: &std::path::Path, password: &str) -> anyhow::Result<()> {
    crate::files::write_secret(
        &data_dir.join(FIRST_PASSWORD_FILE),
        format!("{password}\n").as_bytes(),
    )
}

/// Removes the kept first password once `username`'s password is no longer it.
pub fn forget_first_password(data_dir: &std::path::Path, username: &str) {
    if username.trim().eq_ignore_ascii_case("admin") {
        let _ = std::fs::remove_file(data_dir.join(FIRST_PASSWORD_FILE));
    }
}

/// Result of making sure an admin exists.
pub struct Bootstrap {
    pub created: bool,
    pub generated_password: Option<String>,
}

/// On first start with an empty database, creates `admin` with `password` or a random one
/// (blocking: called once at start).
pub fn bootstrap_admin(db: &Db, password: Option<&str>) -> anyhow::Result<Bootstrap> {
    let mut conn = db.get_blocking().map_err(|e| anyhow::anyhow!("{e}"))?;
    if users::count(&mut conn)? > 0 {
        return Ok(Bootstrap {
            created: false,
            generated_password: None,
        });
    }
    let (password, generated) = match password {
        Some(p) => {
            validate::new_password("SERVERWARE_ADMIN_PASSWORD", p)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            (p.to_string(), None)
        }
        None => {
            let p = super::random_password();
            (p.clone(), Some(p))
        }
    };
    let hash = super::hash_password(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
    let t = now();
    crate::db::atomic(&mut conn, |c| {
        let user = users::insert(
            c,
            NewUser {
                username: "admin",
                password_hash: &hash,
                role: Role::Admin.as_str(),
                disabled: false,
                created_at: t,
                updated_at: t,
            },
        )?;
        audit::record(
            c,
            &Actor::system("bootstrap"),
            Change::new(
                "user.create",
                "user",
                user.id,
                "created the first admin user 'admin'".into(),
            )
            .details(serde_json::json!({ "username": "admin", "role": "admin" })),
        )?;
        Ok(())
    })
    .map_err(|e| anyhow::anyhow!("cannot create the admin user: {e}"))?;
    Ok(Bootstrap {
        created: true,
        generated_password: generated,
    })
}

/// `serverware admin reset-password USER`: sets a new password (random unless given), enables
/// the account and ends its sessions (blocking: the controller's command line). The password
/// set.
pub fn reset_password(db: &Db, username: &str, password: Option<String>) -> anyhow::Result<String> {
    let mut conn = db.get_blocking().map_err(|e| anyhow::anyhow!("{e}"))?;
    let password = match password {
        Some(p) => {
            validate::new_password("password", &p).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            p
        }
        None => super::random_password(),
    };
    let hash = super::hash_password(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
    let name = username.trim().to_lowercase();
    crate::db::atomic(&mut conn, |c| {
        let Some(user) = users::by_name(c, &name)? else {
            return Err(Error::NotFound(format!("there is no user '{name}'")));
        };
        let changes = UserChanges {
            password_hash: Some(&hash),
            disabled: Some(false),
            updated_at: Some(now()),
            ..Default::default()
        };
        users::update(c, user.id, &changes)?;
        users::end_sessions(c, user.id)?;
        audit::record(
            c,
            &Actor::system("cli"),
            Change::new(
                "user.password_reset",
                "user",
                user.id,
                format!("password of {name} reset on the controller's command line"),
            ),
        )?;
        Ok(())
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(password)
}
