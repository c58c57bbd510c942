//! SQL for run-time settings.

use super::{Db, DbError, RowExt, Stmt};
use crate::stmt;

/// The setting bounding user keys' lifetime, in minutes (0 = no limit).
pub const MAX_TTL: &str = "auth_token_max_ttl_minutes";

pub async fn get_int(db: &impl Db, name: &str) -> Result<Option<i64>, DbError> {
    let rows = db
        .query(stmt!("SELECT value FROM settings WHERE name = ?1", name))
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.text("value"))
        .and_then(|v| v.parse().ok()))
}

pub fn put_int(name: &str, value: i64) -> Stmt {
    stmt!(
        "INSERT INTO settings (name, value) VALUES (?1, ?2) \
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        name,
        value.to_string()
    )
}
