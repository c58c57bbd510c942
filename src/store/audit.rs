//! SQL for the audit log.

use super::{Db, DbError, Guard, Row, RowExt, Stmt};
use crate::stmt;

/// Who made a change. The kind is stored in its own column, so no user name (a user may be called
/// `admin`) can pass for the deployment's admin token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor<'a> {
    /// The holder of the deployment's admin token.
    Admin,
    /// A user, through one of their keys, by name.
    User(&'a str),
    /// keyward itself (a budget alert's webhook delivery).
    System,
}

impl<'a> Actor<'a> {
    /// The `actor_kind` column.
    pub fn kind(self) -> &'static str {
        match self {
            Actor::Admin => ActorKind::Admin.as_str(),
            Actor::User(_) => ActorKind::User.as_str(),
            Actor::System => ActorKind::System.as_str(),
        }
    }
    /// The `actor` column: the user's name, empty for the admin token and keyward itself.
    pub fn name(self) -> &'a str {
        match self {
            Actor::Admin | Actor::System => "",
            Actor::User(name) => name,
        }
    }
}

crate::closed_set! {
    /// Who made a change: the admin token, a user's key, keyward itself (a webhook delivery), or
    /// `unknown` for an entry written before the kind was recorded whose actor cannot be told
    /// apart (the name `admin` on an action both the admin and a user could take).
    pub enum ActorKind {
        Admin = "admin",
        User = "user",
        Unknown = "unknown",
        System = "system",
    }
}

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub at: i64,
    pub actor_kind: ActorKind,
    /// The user's name; empty for the admin token.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub tenant_id: Option<String>,
    pub detail: String,
}

/// The columns of `audit` an entry is written with, in INSERT's order; every SELECT reads these
/// after `id` (which SQLite assigns), and both INSERTs use the list.
macro_rules! columns {
    () => {
        "at, actor_kind, actor, action, target, tenant_id, detail"
    };
}

fn from_row(r: &Row) -> Result<Entry, DbError> {
    Ok(Entry {
        id: r.int("id")?,
        at: r.int("at")?,
        actor_kind: {
            let kind = r.text("actor_kind")?;
            ActorKind::parse(&kind)
                .ok_or_else(|| DbError::Decode(format!("audit.actor_kind {kind:?} is unknown")))?
        },
        actor: r.text("actor")?,
        action: r.text("action")?,
        target: r.text("target")?,
        tenant_id: r.text_opt("tenant_id")?,
        detail: r.text("detail")?,
    })
}

/// The statement recording one mutation; callers put it in the same batch as the change.
pub fn record(
    at: i64,
    actor: Actor<'_>,
    action: &str,
    target: &str,
    tenant_id: Option<&str>,
    detail: &str,
) -> Stmt {
    stmt!(
        concat!(
            "INSERT INTO audit (",
            columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ),
        at,
        actor.kind(),
        actor.name(),
        action,
        target,
        tenant_id,
        detail
    )
}

/// Newest first, optionally for one tenant and since a time, after the entry with sort key
/// `before` (`(at, id)`: the last entry of the previous page).
pub async fn list(
    db: &impl Db,
    tenant_id: Option<&str>,
    since: Option<i64>,
    before: Option<(i64, i64)>,
    limit: i64,
) -> Result<Vec<Entry>, DbError> {
    let (at, id) = before.unzip();
    // A range the index seeks to on every page (`?1 IS NULL OR ...` would make SQLite walk the
    // index from its start, reading every earlier row again on each later page).
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT id, ",
                columns!(),
                " FROM audit WHERE (?1 IS NULL OR tenant_id = ?1) \
                 AND at >= COALESCE(?2, -9223372036854775807) \
                 AND (at, id) < (COALESCE(?3, 9223372036854775807), COALESCE(?4, 9223372036854775807)) \
                 ORDER BY at DESC, id DESC LIMIT ?5"
            ),
            tenant_id,
            since,
            at,
            id,
            limit
        ))
        .await?;
    super::decode_all(&rows, from_row)
}

/// Like [`record`], but writes only if the statement it follows changed a row (SQLite's
/// `changes()`), so a no-op delete or rotate leaves no entry. Added with
/// [`Pushed::then_if_changed`](super::Pushed::then_if_changed), which places it right after that
/// statement.
pub fn record_if_changed(
    at: i64,
    actor: Actor<'_>,
    action: &str,
    target: &str,
    tenant_id: Option<&str>,
    detail: &str,
) -> Guard {
    Guard::new(stmt!(
        concat!(
            "INSERT INTO audit (",
            columns!(),
            ") SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE changes() > 0"
        ),
        at,
        actor.kind(),
        actor.name(),
        action,
        target,
        tenant_id,
        detail
    ))
}
