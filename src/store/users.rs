//! SQL for users.

use super::{Batch, Db, DbError, Pushed, Row, RowExt, Stmt};
use crate::domain::states::{Role, UserStatus};
use crate::stmt;

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub username: String,
    pub tenant_id: String,
    pub role: Role,
    pub status: UserStatus,
    pub create_date: i64,
    pub update_date: i64,
}

/// Every column of `users`, in the order INSERT binds them; used by every SELECT and INSERT.
macro_rules! columns {
    () => {
        "username, tenant_id, role, status, create_date, update_date"
    };
}

fn from_row(r: &Row) -> Result<User, DbError> {
    Ok(User {
        username: r.text("username")?,
        tenant_id: r.text("tenant_id")?,
        role: r.closed("role")?,
        status: r.closed("status")?,
        create_date: r.int("create_date")?,
        update_date: r.int("update_date")?,
    })
}

pub fn insert(u: &User) -> Stmt {
    stmt!(
        concat!(
            "INSERT INTO users (",
            columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        ),
        &u.username,
        &u.tenant_id,
        u.role.as_str(),
        u.status.as_str(),
        u.create_date,
        u.update_date
    )
}

/// The user whose name equals `username` without regard to letter case, with the spelling the
/// admin gave. Usernames are ASCII (`Username::parse`), so SQLite's ASCII-only `lower()` is the
/// whole fold; the expression is the one `users_username_folded` indexes, so this is an index
/// lookup, and that unique index guarantees at most one row.
pub async fn get(db: &impl Db, username: &str) -> Result<Option<User>, DbError> {
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                columns!(),
                " FROM users \
             WHERE lower(username) = lower(?1)"
            ),
            username
        ))
        .await?;
    super::decode_first(&rows, from_row)
}

/// Up to `limit` users in creation order, after the one with sort key `after`
/// (`(create_date, username)`); the `users_created` index serves it.
pub async fn list(
    db: &impl Db,
    after: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<User>, DbError> {
    let (at, name) = after.unzip();
    // A range the index seeks to on every page (`?1 IS NULL OR ...` would make SQLite walk the
    // index from its start, reading every earlier row again on each later page).
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                columns!(),
                " FROM users \
             WHERE (create_date, username) > (COALESCE(?1, -9223372036854775807), COALESCE(?2, '')) \
             ORDER BY create_date, username LIMIT ?3"
            ),
            at,
            name,
            limit
        ))
        .await?;
    super::decode_all(&rows, from_row)
}

/// Set role and status (both already validated); fails quietly (0 rows) if the user is gone.
/// `u.username` is the stored spelling, as [`get`] returned it.
pub fn update(u: &User) -> Stmt {
    stmt!(
        "UPDATE users SET role = ?2, status = ?3, update_date = ?4 WHERE username = ?1",
        &u.username,
        u.role.as_str(),
        u.status.as_str(),
        u.update_date
    )
}

/// Add to `batch` the statements removing a user and their keys; returns the delete of the user
/// row, to read its count and guard it. `username` is the stored spelling, as [`get`] returned it:
/// `api_keys.username` refers to exactly that spelling (a foreign key).
pub fn delete<'b>(batch: &'b mut Batch, username: &str) -> Pushed<'b> {
    batch.push(stmt!("DELETE FROM api_keys WHERE username = ?1", username));
    batch.push(stmt!("DELETE FROM users WHERE username = ?1", username))
}
