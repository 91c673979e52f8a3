//! `templates`: the root filesystems VPSes are made from.

use crate::db::DbConn;
use crate::error::{Error, Result};
use crate::schema::{templates, vpses};
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = templates)]
pub struct TemplateRow {
    pub id: i64,
    pub name: String,
    pub os: String,
    pub description: String,
    pub size_bytes: i64,
    pub storage_path: String,
    pub status: String,
    pub created_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = templates)]
pub struct NewTemplate<'a> {
    pub name: &'a str,
    pub os: &'a str,
    pub description: &'a str,
    pub size_bytes: i64,
    pub storage_path: &'a str,
    pub status: &'a str,
    pub created_at: NaiveDateTime,
}

/// Every template, by name.
pub fn list(c: &mut DbConn) -> Result<Vec<TemplateRow>> {
    Ok(templates::table
        .order(templates::name)
        .select(TemplateRow::as_select())
        .load(c)?)
}

/// The template, or "not found".
pub fn find(c: &mut DbConn, id: i64) -> Result<TemplateRow> {
    templates::table
        .find(id)
        .select(TemplateRow::as_select())
        .first(c)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("no template with id {id}")))
}

pub fn by_name(c: &mut DbConn, name: &str) -> Result<Option<TemplateRow>> {
    Ok(templates::table
        .filter(templates::name.eq(name))
        .select(TemplateRow::as_select())
        .first(c)
        .optional()?)
}

/// Adds a template; a name already taken is a conflict on `name`.
pub fn insert(c: &mut DbConn, new: NewTemplate<'_>) -> Result<TemplateRow> {
    free(c, new.name)?;
    diesel::insert_into(templates::table)
        .values(&new)
        .execute(c)?;
    by_name(c, new.name)?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("the template just added is not there")))
}

/// A conflict on `name` when a template of that name exists.
pub fn free(c: &mut DbConn, name: &str) -> Result<()> {
    match by_name(c, name)? {
        Some(_) => Err(Error::conflict(
            Some("name"),
            format!("a template named '{name}' exists"),
        )),
        None => Ok(()),
    }
}

/// The template's archive is in place: its size, and ready to use.
pub fn set_ready(c: &mut DbConn, id: i64, size: u64) -> Result<()> {
    diesel::update(templates::table.find(id))
        .set((
            templates::size_bytes.eq(size as i64),
            templates::status.eq("ready"),
        ))
        .execute(c)?;
    Ok(())
}

pub fn delete(c: &mut DbConn, id: i64) -> Result<()> {
    diesel::delete(templates::table.find(id)).execute(c)?;
    Ok(())
}

/// VPSes being created from the template now.
pub fn creating_from(c: &mut DbConn, id: i64) -> Result<i64> {
    Ok(vpses::table
        .filter(vpses::template_id.eq(id))
        .filter(vpses::status.eq(serverware_shared::state::ObservedState::Creating))
        .count()
        .get_result(c)?)
}
