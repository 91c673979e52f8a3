//! API tokens: made by a user for themselves, never with a role above theirs; a token made with
//! a token never outlives it and is revoked with it. The secret is shown once and kept hashed.

use super::{new_token_secret, secret_hash, AuthMethod, Principal};
use crate::audit::{self, Actor, Change};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::models::{now, ApiToken, NewApiToken};
use crate::repo;
use serverware_shared::api::CreateTokenRequest;
use serverware_shared::{validate, Role};

/// Whose tokens a listing shows.
pub enum Scope {
    User(i64),
    All,
}

impl Scope {
    /// From the listing's `user` parameter: one's own by default; admins may pass `all` or a
    /// user id.
    pub fn asked(p: &Principal, user: Option<&str>) -> Result<Scope> {
        let Some(other) = user else {
            return Ok(Scope::User(p.user_id));
        };
        p.require(Role::Admin)?;
        if other == "all" {
            return Ok(Scope::All);
        }
        other
            .parse()
            .map(Scope::User)
            .map_err(|_| Error::invalid("user", "user is 'all' or a user id"))
    }
}

pub async fn list(
    db: &Db,
    scope: Scope,
    include_inactive: bool,
) -> Result<Vec<(ApiToken, String)>> {
    let user = match scope {
        Scope::User(u) => Some(u),
        Scope::All => None,
    };
    db.run(move |c| repo::tokens::list(c, user, include_inactive))
        .await
}

/// A new token for `p` (with its owner's name) and its secret, which is nowhere else.
pub async fn create(
    db: &Db,
    p: &Principal,
    req: CreateTokenRequest,
) -> Result<(ApiToken, String, String)> {
    let name = validate::label("name", &req.name)?;
    let role = req.role.unwrap_or(p.role);
    if role > p.role {
        return Err(Error::invalid(
            "role",
            format!("a token cannot carry a role above your own ({})", p.role),
        ));
    }
    let asked = match req.expires_in_days {
        Some(days) => {
            validate::token_expiry_days("expires_in_days", days)?;
            Some(now() + chrono::TimeDelta::days(days.into()))
        }
        None => None,
    };
    // A token made with a token never outlives it: its expiry is the earlier of the two, and it
    // is revoked with its parent.
    let (expires_at, parent_token_id) = match &p.method {
        AuthMethod::Token {
            token_id,
            expires_at: parent,
            ..
        } => (
            match (asked, *parent) {
                (Some(a), Some(p)) => Some(a.min(p)),
                (a, p) => a.or(p),
            },
            Some(*token_id),
        ),
        AuthMethod::Session { .. } => (asked, None),
    };
    let secret = new_token_secret();
    let hash = secret_hash(&secret);
    let prefix: String = secret.chars().take(12).collect();
    let actor = Actor::from(p);
    let uid = p.user_id;
    let (token, owner) = db
        .transaction(move |c| {
            if repo::tokens::name_in_use(c, uid, &name)? {
                return Err(Error::conflict(
                    Some("name"),
                    format!("you already have a token named '{name}'"),
                ));
            }
            let token = repo::tokens::insert(
                c,
                NewApiToken {
                    user_id: uid,
                    name: &name,
                    prefix: &prefix,
                    token_hash: &hash,
                    role: role.as_str(),
                    created_at: now(),
                    expires_at,
                    parent_token_id,
                },
            )?;
            let owner = repo::users::find(c, uid)?.username;
            audit::record(
                c,
                &actor,
                Change::new(
                    "token.create",
                    "token",
                    token.id,
                    format!("{owner} created API token '{name}' ({role})"),
                )
                .details(serde_json::json!({
                    "name": name, "role": role, "prefix": prefix, "owner": owner,
                })),
            )?;
            Ok((token, owner))
        })
        .await?;
    Ok((token, owner, secret))
}

/// Revokes a token (one's own, or anyone's for an admin) and every token made with it. Others'
/// tokens are invisible to non-admins: "not found", not "forbidden".
pub async fn revoke(db: &Db, p: &Principal, id: i64) -> Result<()> {
    let actor = Actor::from(p);
    let is_admin = p.role.allows(Role::Admin);
    let uid = p.user_id;
    db.transaction(move |c| {
        let (token, owner) = repo::tokens::find(c, id)?
            .filter(|(t, _)| is_admin || t.user_id == uid)
            .ok_or_else(|| Error::NotFound(format!("no token with id {id}")))?;
        if token.revoked_at.is_some() {
            return Err(Error::conflict(None, "the token is already revoked"));
        }
        let derived = repo::tokens::revoke_with_derived(c, id, now())? - 1;
        let summary = if derived == 0 {
            format!("revoked API token '{}' of {owner}", token.name)
        } else {
            format!(
                "revoked API token '{}' of {owner} and {derived} made with it",
                token.name
            )
        };
        audit::record(
            c,
            &actor,
            Change::new("token.revoke", "token", id, summary).details(serde_json::json!({
                "name": token.name, "owner": owner, "derived": derived,
            })),
        )?;
        Ok(())
    })
    .await
}
