use crate::audit::{self, Actor, Change};
use crate::auth::{self as authn, Principal};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::models::{now, ApiToken, NewApiToken, User};
use crate::schema::{api_tokens, users};
use actix_web::{delete, get, post, web, HttpResponse};
use diesel::prelude::*;
use serverware_shared::api::{
    CreateTokenRequest, CreatedTokenResponse, TokenListQuery, TokenResponse,
};
use serverware_shared::{validate, ErrorBody, Role};

/// Whose tokens a listing shows.
enum Scope {
    User(i64),
    All,
}

/// List API tokens: one's own; admins may pass `user=all` or a user id.
#[utoipa::path(tag = "tokens", params(TokenListQuery), responses((status = 200, body = Vec<TokenResponse>), (status = 403, body = ErrorBody)))]
#[get("/tokens")]
pub async fn list_tokens(
    state: web::Data<Core>,
    principal: Principal,
    query: web::Query<TokenListQuery>,
) -> Result<web::Json<Vec<TokenResponse>>> {
    let q = query.into_inner();
    let scope = match q.user.as_deref() {
        None => Scope::User(principal.user_id),
        Some(other) => {
            principal.require(Role::Admin)?;
            if other == "all" {
                Scope::All
            } else {
                Scope::User(
                    other
                        .parse()
                        .map_err(|_| Error::invalid("user", "user is 'all' or a user id"))?,
                )
            }
        }
    };
    let include_inactive = q.include_inactive.unwrap_or(false);
    let rows: Vec<(ApiToken, String)> = state
        .db
        .run(move |conn| {
            let mut query = api_tokens::table
                .inner_join(users::table)
                .select((ApiToken::as_select(), users::username))
                .order(api_tokens::id.desc())
                .into_boxed();
            if let Scope::User(uid) = scope {
                query = query.filter(api_tokens::user_id.eq(uid));
            }
            if !include_inactive {
                query = query.filter(api_tokens::revoked_at.is_null()).filter(
                    api_tokens::expires_at
                        .is_null()
                        .or(api_tokens::expires_at.gt(now())),
                );
            }
            Ok(query.load(conn)?)
        })
        .await?;
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
    let req = body.into_inner();
    let name = validate::label("name", &req.name)?;
    let role = req.role.unwrap_or(principal.role);
    if role > principal.role {
        return Err(Error::invalid(
            "role",
            format!(
                "a token cannot carry a role above your own ({})",
                principal.role
            ),
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
    let (expires_at, parent_token_id) = match &principal.method {
        authn::AuthMethod::Token {
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
        authn::AuthMethod::Session { .. } => (asked, None),
    };
    let secret = authn::new_token_secret();
    let hash = authn::secret_hash(&secret);
    let prefix: String = secret.chars().take(12).collect();
    let actor = Actor::from(&principal);
    let uid = principal.user_id;
    let (token, username) = state
        .db
        .run(move |conn| {
            conn.transaction(|conn| {
                let dup: i64 = api_tokens::table
                    .filter(api_tokens::user_id.eq(uid))
                    .filter(api_tokens::name.eq(&name))
                    .filter(api_tokens::revoked_at.is_null())
                    .count()
                    .get_result(conn)?;
                if dup > 0 {
                    return Err(Error::conflict(Some("name"), format!("you already have a token named '{name}'")));
                }
                diesel::insert_into(api_tokens::table)
                    .values(NewApiToken {
                        user_id: uid,
                        name: &name,
                        prefix: &prefix,
                        token_hash: &hash,
                        role: role.as_str(),
                        created_at: now(),
                        expires_at,
                        parent_token_id,
                    })
                    .execute(conn)?;
                let token: ApiToken = api_tokens::table
                    .filter(api_tokens::token_hash.eq(&hash))
                    .select(ApiToken::as_select())
                    .first(conn)?;
                let user: User = users::table.find(uid).select(User::as_select()).first(conn)?;
                audit::record(
                    conn,
                    &actor,
                    Change::new("token.create", "token", token.id, format!("{} created API token '{}' ({})", user.username, name, role))
                        .details(serde_json::json!({ "name": name, "role": role, "prefix": prefix, "owner": user.username })),
                )?;
                Ok((token, user.username))
            })
        })
        .await?;
    Ok(HttpResponse::Created().json(CreatedTokenResponse {
        token: token.to_response(&username),
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
    let id = id.into_inner();
    let actor = Actor::from(&principal);
    let is_admin = principal.role.allows(Role::Admin);
    let uid = principal.user_id;
    state
        .db
        .run(move |conn| {
            conn.transaction(|conn| {
                let found: Option<(ApiToken, String)> = api_tokens::table
                    .inner_join(users::table)
                    .filter(api_tokens::id.eq(id))
                    .select((ApiToken::as_select(), users::username))
                    .first(conn)
                    .optional()?;
                // Others' tokens are invisible to non-admins: 404, not 403.
                let (token, owner) = found
                    .filter(|(t, _)| is_admin || t.user_id == uid)
                    .ok_or_else(|| Error::NotFound(format!("no token with id {id}")))?;
                if token.revoked_at.is_some() {
                    return Err(Error::conflict(None, "the token is already revoked"));
                }
                // The token and every token made with it, and with those, and so on.
                let t = now();
                let mut wave = vec![id];
                let mut revoked = 0usize;
                while !wave.is_empty() {
                    diesel::update(api_tokens::table.filter(api_tokens::id.eq_any(&wave)))
                        .filter(api_tokens::revoked_at.is_null())
                        .set(api_tokens::revoked_at.eq(t))
                        .execute(conn)?;
                    revoked += wave.len();
                    wave = api_tokens::table
                        .filter(api_tokens::parent_token_id.eq_any(&wave))
                        .filter(api_tokens::revoked_at.is_null())
                        .select(api_tokens::id)
                        .load(conn)?;
                }
                let derived = revoked - 1;
                audit::record(
                    conn,
                    &actor,
                    Change::new(
                        "token.revoke",
                        "token",
                        id,
                        if derived == 0 {
                            format!("revoked API token '{}' of {}", token.name, owner)
                        } else {
                            format!("revoked API token '{}' of {} and {derived} made with it", token.name, owner)
                        },
                    )
                    .details(serde_json::json!({ "name": token.name, "owner": owner, "derived": derived })),
                )?;
                Ok(())
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
