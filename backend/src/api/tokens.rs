use crate::auth::tokens::{self, Scope};
use crate::auth::Principal;
use crate::core::Core;
use crate::error::Result;
use actix_web::{delete, get, post, web, HttpResponse};
use serverware_shared::api::{
    CreateTokenRequest, CreatedTokenResponse, TokenListQuery, TokenResponse,
};
use serverware_shared::ErrorBody;

/// List API tokens: one's own; admins may pass `user=all` or a user id.
#[utoipa::path(tag = "tokens", params(TokenListQuery), responses((status = 200, body = Vec<TokenResponse>), (status = 403, body = ErrorBody)))]
#[get("/tokens")]
pub async fn list_tokens(
    state: web::Data<Core>,
    principal: Principal,
    query: web::Query<TokenListQuery>,
) -> Result<web::Json<Vec<TokenResponse>>> {
    let q = query.into_inner();
    let scope = Scope::asked(&principal, q.user.as_deref())?;
    let rows = tokens::list(&state.db, scope, q.include_inactive.unwrap_or(false)).await?;
    Ok(web::Json(
        rows.iter().map(|(t, u)| t.to_response(u)).collect(),
    ))
}

/// Create an API token for oneself. The secret is in this answer only; it is stored hashed.
/// The token carries the caller's role or a lower one.
#[utoipa::path(tag = "tokens", request_body = CreateTokenRequest, responses(
    (status = 201, body = CreatedTokenResponse), (status = 409, description = "A token of that name exists", body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/tokens")]
pub async fn create_token(
    state: web::Data<Core>,
    principal: Principal,
    body: web::Json<CreateTokenRequest>,
) -> Result<HttpResponse> {
    let (token, owner, secret) = tokens::create(&state.db, &principal, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(CreatedTokenResponse {
        token: token.to_response(&owner),
        secret,
    }))
}

/// Revoke a token: one's own, or anyone's for an admin. It stops working at once.
#[utoipa::path(tag = "tokens", params(("id" = i64, Path)), responses(
    (status = 204), (status = 404, body = ErrorBody), (status = 409, description = "Already revoked", body = ErrorBody)))]
#[delete("/tokens/{id}")]
pub async fn revoke_token(
    state: web::Data<Core>,
    principal: Principal,
    id: web::Path<i64>,
) -> Result<HttpResponse> {
    tokens::revoke(&state.db, &principal, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
