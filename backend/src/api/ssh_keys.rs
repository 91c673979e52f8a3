//! Public keys users log in to the SSH command line with (`auth::ssh_keys`).

use crate::auth::{ssh_keys, Principal};
use crate::core::Core;
use crate::error::Result;
use actix_web::{delete, get, post, web, HttpResponse};
use serverware_shared::api::{AddSshKeyRequest, SshKeyResponse};
use serverware_shared::ErrorBody;

/// One's own SSH public keys.
#[utoipa::path(tag = "auth", responses((status = 200, body = Vec<SshKeyResponse>)))]
#[get("/ssh-keys")]
pub async fn list_ssh_keys(
    state: web::Data<Core>,
    principal: Principal,
) -> Result<web::Json<Vec<SshKeyResponse>>> {
    let keys = ssh_keys::list(&state.db, &principal).await?;
    Ok(web::Json(
        keys.iter().map(ssh_keys::SshKey::to_response).collect(),
    ))
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
    let key = ssh_keys::add(&state.db, &principal, body.into_inner()).await?;
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
    ssh_keys::delete(&state.db, &principal, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
