//! `api_tokens`.

use crate::db::DbConn;
use crate::error::Result;
use crate::models::{now, ApiToken, NewApiToken};
use crate::schema::{api_tokens, users};
use chrono::NaiveDateTime;
use diesel::prelude::*;

/// Tokens with their owner's name, newest first: of one user or of all (`None`); revoked and
/// expired ones only with `include_inactive`.
pub fn list(
    c: &mut DbConn,
    user: Option<i64>,
    include_inactive: bool,
) -> Result<Vec<(ApiToken, String)>> {
    let mut query = api_tokens::table
        .inner_join(users::table)
        .select((ApiToken::as_select(), users::username))
        .order(api_tokens::id.desc())
        .into_boxed();
    if let Some(uid) = user {
        query = query.filter(api_tokens::user_id.eq(uid));
    }
    if !include_inactive {
        query = query.filter(api_tokens::revoked_at.is_null()).filter(
            api_tokens::expires_at
                .is_null()
                .or(api_tokens::expires_at.gt(now())),
        );
    }
    Ok(query.load(c)?)
}

/// Whether the user has a token of that name not revoked.
pub fn name_in_use(c: &mut DbConn, user: i64, name: &str) -> Result<bool> {
    let n: i64 = api_tokens::table
        .filter(api_tokens::user_id.eq(user))
        .filter(api_tokens::name.eq(name))
        .filter(api_tokens::revoked_at.is_null())
        .count()
        .get_result(c)?;
    Ok(n > 0)
}

pub fn insert(c: &mut DbConn, new: NewApiToken<'_>) -> Result<ApiToken> {
    diesel::insert_into(api_tokens::table)
        .values(&new)
        .execute(c)?;
    Ok(api_tokens::table
        .filter(api_tokens::token_hash.eq(new.token_hash))
        .select(ApiToken::as_select())
        .first(c)?)
}

/// The token with its owner's name.
pub fn find(c: &mut DbConn, id: i64) -> Result<Option<(ApiToken, String)>> {
    Ok(api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::id.eq(id))
        .select((ApiToken::as_select(), users::username))
        .first(c)
        .optional()?)
}

/// Revokes the token and every token made with it, and with those, and so on: how many.
pub fn revoke_with_derived(c: &mut DbConn, id: i64, at: NaiveDateTime) -> Result<usize> {
    let mut wave = vec![id];
    let mut revoked = 0usize;
    while !wave.is_empty() {
        diesel::update(api_tokens::table.filter(api_tokens::id.eq_any(&wave)))
            .filter(api_tokens::revoked_at.is_null())
            .set(api_tokens::revoked_at.eq(at))
            .execute(c)?;
        revoked += wave.len();
        wave = api_tokens::table
            .filter(api_tokens::parent_token_id.eq_any(&wave))
            .filter(api_tokens::revoked_at.is_null())
            .select(api_tokens::id)
            .load(c)?;
    }
    Ok(revoked)
}
