//! SQL for requests made with an `Idempotency-Key`: what each did, kept for [`WINDOW_MS`], so that
//! the same request sent again is answered from it instead of being carried out twice.

use super::{Db, DbError, RowExt, Stmt};
use crate::stmt;

/// How long a request is remembered. A client retries seconds or minutes after losing an answer;
/// an hour covers that with room, and bounds the table to an hour of keyed requests.
pub const WINDOW_MS: i64 = 60 * 60 * 1000;

/// One remembered request.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// SHA-256 of what was asked (operation, target, body): the same key with another request
    /// is refused.
    pub request: String,
    /// The id of the tenant or key the request created or rotated.
    pub target: String,
    /// For a rotation: SHA-256 of the secret that authenticated it, which may authenticate its
    /// replay even when the rotation ended that secret's validity.
    pub caller_hash: Option<String>,
    pub created_at: i64,
}

/// The columns of `idempotency_keys` besides its key (`scope`, `key_hash`), in INSERT's order;
/// the read and the insert use this list.
macro_rules! columns {
    () => {
        "request, target, caller_hash, created_at"
    };
}

/// The request `key_hash` names in `scope`, if it was made within the window before `now`.
pub async fn get(
    db: &impl Db,
    scope: &str,
    key_hash: &str,
    now: i64,
) -> Result<Option<Entry>, DbError> {
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                columns!(),
                " FROM idempotency_keys WHERE scope = ?1 AND key_hash = ?2 AND created_at > ?3"
            ),
            scope,
            key_hash,
            now - WINDOW_MS
        ))
        .await?;
    rows.first()
        .map(|r| {
            Ok(Entry {
                request: r.text("request")?,
                target: r.text("target")?,
                caller_hash: r.text_opt("caller_hash")?,
                created_at: r.int("created_at")?,
            })
        })
        .transpose()
}

/// Statements remembering a request, for the batch that carries it out. A remembered request past
/// the window that the purge has not removed yet is replaced; a concurrent twin fails the primary
/// key (`UNIQUE constraint failed: idempotency_keys...`), and with it the whole batch.
pub fn record(scope: &str, key_hash: &str, entry: &Entry) -> Vec<Stmt> {
    vec![
        stmt!(
            "DELETE FROM idempotency_keys WHERE scope = ?1 AND key_hash = ?2 AND created_at <= ?3",
            scope,
            key_hash,
            entry.created_at - WINDOW_MS
        ),
        stmt!(
            concat!(
                "INSERT INTO idempotency_keys (scope, key_hash, ",
                columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ),
            scope,
            key_hash,
            &entry.request,
            &entry.target,
            entry.caller_hash.as_deref(),
            entry.created_at
        ),
    ]
}

/// Forget a request remembered in the same batch unless user key `key_id` exists: a creation
/// refused inside its own insert (the key limit) leaves nothing to replay.
pub fn forget_unless_key(scope: &str, key_hash: &str, key_id: &str) -> Stmt {
    stmt!(
        "DELETE FROM idempotency_keys WHERE scope = ?1 AND key_hash = ?2 \
         AND NOT EXISTS (SELECT 1 FROM api_keys WHERE id = ?3)",
        scope,
        key_hash,
        key_id
    )
}

/// Whether a database error is the primary key of this table (a concurrent twin request).
pub fn is_twin(e: &DbError) -> bool {
    matches!(e, DbError::Unique(m) if m.contains("idempotency_keys."))
}

/// Forget up to `chunk` requests made at or before `until` (the cron, with `now - WINDOW_MS`).
pub fn purge(until: i64, chunk: i64) -> Stmt {
    stmt!(
        "DELETE FROM idempotency_keys WHERE rowid IN \
         (SELECT rowid FROM idempotency_keys WHERE created_at <= ?1 LIMIT ?2)",
        until,
        chunk
    )
}
