//! Public keys users log in to the SSH command line with (`sshd.rs`): each user manages their
//! own; an admin can remove anyone's.

use crate::audit::{self, Actor, Change};
use crate::auth::Principal;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::models::now;
use crate::schema::user_ssh_keys;
use actix_web::{delete, get, post, web, HttpResponse};
use diesel::prelude::*;
use serverware_shared::api::{AddSshKeyRequest, SshKeyResponse};
use serverware_shared::{validate, ErrorBody, Role};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = user_ssh_keys)]
pub struct SshKey {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: chrono::NaiveDateTime,
    pub last_used_at: Option<chrono::NaiveDateTime>,
}

impl SshKey {
    fn to_response(&self) -> SshKeyResponse {
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

/// One's own SSH public keys.
#[utoipa::path(tag = "auth", responses((status = 200, body = Vec<SshKeyResponse>)))]
#[get("/ssh-keys")]
pub async fn list_ssh_keys(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<Vec<SshKeyResponse>>> {
    let uid = principal.user_id;
    let rows: Vec<SshKey> = state
        .db
        .run(move |c| {
            Ok(user_ssh_keys::table
                .filter(user_ssh_keys::user_id.eq(uid))
                .order(user_ssh_keys::id)
                .select(SshKey::as_select())
                .load(c)?)
        })
        .await?;
    Ok(web::Json(rows.iter().map(SshKey::to_response).collect()))
}

/// Add a public key to one's own account: it logs in to the SSH command line as this user.
#[utoipa::path(tag = "auth", request_body = AddSshKeyRequest, responses(
    (status = 201, body = SshKeyResponse), (status = 422, body = ErrorBody),
    (status = 409, description = "The key is registered already", body = ErrorBody)))]
#[post("/ssh-keys")]
pub async fn add_ssh_key(
    state: web::Data<Core>,
    principal: Principal,
    body: web::Json<AddSshKeyRequest>,
) -> Result<HttpResponse> {
    let req = body.into_inner();
    let name = validate::label("name", &req.name)?;
    let line = validate::ssh_public_key("public_key", &req.public_key)?;
    let fp = fingerprint(&line).ok_or_else(|| {
        Error::invalid(
            "public_key",
            "the key's data is not a key of its type (was it copied whole?)",
        )
    })?;
    let actor = Actor::from(&principal);
    let uid = principal.user_id;
    let key: SshKey = state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let taken: i64 = user_ssh_keys::table
                    .filter(user_ssh_keys::fingerprint.eq(&fp))
                    .count()
                    .get_result(c)?;
                if taken > 0 {
                    return Err(Error::conflict(
                        Some("public_key"),
                        format!("the key {fp} is registered already (a key logs in as one user)"),
                    ));
                }
                diesel::insert_into(user_ssh_keys::table)
                    .values((
                        user_ssh_keys::user_id.eq(uid),
                        user_ssh_keys::name.eq(&name),
                        user_ssh_keys::public_key.eq(&line),
                        user_ssh_keys::fingerprint.eq(&fp),
                        user_ssh_keys::created_at.eq(now()),
                    ))
                    .execute(c)?;
                let key: SshKey = user_ssh_keys::table
                    .filter(user_ssh_keys::fingerprint.eq(&fp))
                    .select(SshKey::as_select())
                    .first(c)?;
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
        })
        .await?;
    Ok(HttpResponse::Created().json(key.to_response()))
}

/// Remove an SSH key: one's own, or anyone's for an admin.
#[utoipa::path(tag = "auth", params(("id" = i64, Path)), responses(
    (status = 204), (status = 404, body = ErrorBody)))]
#[delete("/ssh-keys/{id}")]
pub async fn delete_ssh_key(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    let actor = Actor::from(&principal);
    let is_admin = principal.role.allows(Role::Admin);
    let uid = principal.user_id;
    state
        .db
        .run(move |c| {
            c.transaction(|c| {
                let key: SshKey = user_ssh_keys::table
                    .find(id)
                    .select(SshKey::as_select())
                    .first(c)
                    .optional()?
                    .filter(|k| is_admin || k.user_id == uid)
                    .ok_or_else(|| Error::NotFound(format!("no SSH key with id {id}")))?;
                diesel::delete(user_ssh_keys::table.find(id)).execute(c)?;
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
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
