//! SQL for user API keys: issue, list, verify, rotate, revoke, purge.

use super::{Db, DbError, Fold, Row, RowExt, Stmt};
use crate::domain::states::{Role, UserStatus};
use crate::stmt;

/// A key row as lists show it (never a hash).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub access_key: String,
    pub secret_hint: String,
    pub username: String,
    pub tenant_id: String,
    pub description: String,
    pub create_date: i64,
    pub update_date: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// Until when the secret a rotation replaced still works (None: it does not).
    pub prev_valid_until: Option<i64>,
}

/// Every column of `api_keys` that is read back, in INSERT's order; every SELECT of the table and
/// both INSERTs use it. The secret hashes are not in it: they are written (`secret_hash` after
/// these columns) and read only by [`lookup_for_auth`], never listed.
macro_rules! columns {
    () => {
        "id, access_key, secret_hint, username, tenant_id, description, create_date, update_date, \
         expires_at, last_used_at, prev_valid_until"
    };
}

fn record_from_row(r: &Row) -> Result<KeyRecord, DbError> {
    Ok(KeyRecord {
        id: r.text("id")?,
        access_key: r.text("access_key")?,
        secret_hint: r.text("secret_hint")?,
        username: r.text("username")?,
        tenant_id: r.text("tenant_id")?,
        description: r.text("description")?,
        create_date: r.int("create_date")?,
        update_date: r.int("update_date")?,
        expires_at: r.int_opt("expires_at")?,
        last_used_at: r.int_opt("last_used_at")?,
        prev_valid_until: r.int_opt("prev_valid_until")?,
    })
}

/// A new key: the record plus the hash of its secret.
pub fn insert(k: &KeyRecord, secret_hash: &str) -> Stmt {
    stmt!(
        concat!(
            "INSERT INTO api_keys (",
            columns!(),
            ", secret_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        &k.id,
        &k.access_key,
        &k.secret_hint,
        &k.username,
        &k.tenant_id,
        &k.description,
        k.create_date,
        k.update_date,
        k.expires_at,
        k.last_used_at,
        k.prev_valid_until,
        secret_hash
    )
}

/// A new key, written only while its user holds fewer than `max_keys` unexpired keys at `now`.
/// The count and the insert are one statement, so concurrent creations cannot overshoot: D1 runs a
/// database's statements one at a time. Changes 0 rows when the user is at the limit.
pub fn insert_within_limit(k: &KeyRecord, secret_hash: &str, max_keys: i64, now: i64) -> Stmt {
    stmt!(
        concat!(
            "INSERT INTO api_keys (",
            columns!(),
            ", secret_hash) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12 \
             WHERE (SELECT COUNT(*) FROM api_keys WHERE username = ?4 \
             AND (expires_at IS NULL OR expires_at > ?13)) < ?14"
        ),
        &k.id,
        &k.access_key,
        &k.secret_hint,
        &k.username,
        &k.tenant_id,
        &k.description,
        k.create_date,
        k.update_date,
        k.expires_at,
        k.last_used_at,
        k.prev_valid_until,
        secret_hash,
        now,
        max_keys
    )
}

/// How many unexpired keys `username` holds at `now`.
pub async fn count_active(db: &impl Db, username: &str, now: i64) -> Result<i64, DbError> {
    let rows = db
        .query(stmt!(
            "SELECT COUNT(*) AS n FROM api_keys WHERE username = ?1 \
             AND (expires_at IS NULL OR expires_at > ?2)",
            username,
            now
        ))
        .await?;
    match rows.first() {
        Some(r) => r.int("n"),
        None => Err(DbError::Decode("COUNT(*) returned no row".into())),
    }
}

/// Up to `limit` of a user's keys in creation order, after the one with sort key `after`
/// (`(create_date, id)`).
pub async fn list_for_user(
    db: &impl Db,
    username: &str,
    after: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<KeyRecord>, DbError> {
    let (at, id) = after.unzip();
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                columns!(),
                " FROM api_keys WHERE username = ?1 \
                 AND (?2 IS NULL OR (create_date, id) > (?2, ?3)) ORDER BY create_date, id LIMIT ?4"
            ),
            username,
            at,
            id,
            limit
        ))
        .await?;
    super::decode_all(&rows, record_from_row)
}

/// One key, only if it belongs to `username`.
pub async fn get_for_user(
    db: &impl Db,
    id: &str,
    username: &str,
) -> Result<Option<KeyRecord>, DbError> {
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                columns!(),
                " FROM api_keys WHERE id = ?1 AND username = ?2"
            ),
            id,
            username
        ))
        .await?;
    super::decode_first(&rows, record_from_row)
}

pub fn delete_for_user(id: &str, username: &str) -> Stmt {
    stmt!(
        "DELETE FROM api_keys WHERE id = ?1 AND username = ?2",
        id,
        username
    )
}

/// Replace the secret; the old one stays valid until `prev_valid_until` (NULL: not at all).
/// SQLite evaluates the right-hand sides against the old row, so the old hash moves over atomically.
pub fn rotate(
    id: &str,
    username: &str,
    new_hash: &str,
    new_hint: &str,
    prev_valid_until: Option<i64>,
    now: i64,
) -> Stmt {
    stmt!(
        "UPDATE api_keys SET prev_secret_hash = CASE WHEN ?5 IS NULL THEN NULL ELSE secret_hash END, \
         prev_valid_until = ?5, secret_hash = ?3, secret_hint = ?4, update_date = ?6 \
         WHERE id = ?1 AND username = ?2",
        id,
        username,
        new_hash,
        new_hint,
        prev_valid_until,
        now
    )
}

/// Give a key a new secret and nothing else: the answer of a replayed creation or rotation
/// (Idempotency-Key) carries this one, and the secret of the lost answer stops working. A grace
/// period the rotation granted the secret before it stays as it was.
pub fn resecret(id: &str, username: &str, new_hash: &str, new_hint: &str, now: i64) -> Stmt {
    stmt!(
        "UPDATE api_keys SET secret_hash = ?3, secret_hint = ?4, update_date = ?5 \
         WHERE id = ?1 AND username = ?2",
        id,
        username,
        new_hash,
        new_hint,
        now
    )
}

/// What authentication needs about a key and its owner, in one read.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthRow {
    pub id: String,
    pub access_key: String,
    pub secret_hash: String,
    pub prev_secret_hash: Option<String>,
    pub prev_valid_until: Option<i64>,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub username: String,
    pub tenant_id: String,
    pub role: Role,
    pub user_status: UserStatus,
    pub defaults_version: i64,
    /// The tenant's limits over time, read in the same join.
    pub tenant_limits: crate::limits::Limits,
}

/// The key with this access key, joined to its user (a deleted user or tenant leaves no row).
pub async fn lookup_for_auth(db: &impl Db, access_key: &str) -> Result<Option<AuthRow>, DbError> {
    let rows = db.query(auth_stmt(access_key)).await?;
    decode_auth(&rows)
}

/// The statement of [`lookup_for_auth`], for a batch that reads more beside it.
pub fn auth_stmt(access_key: &str) -> Stmt {
    stmt!(
        "SELECT k.id, k.access_key, k.secret_hash, k.prev_secret_hash, k.prev_valid_until, k.expires_at, \
         k.last_used_at, k.username, k.tenant_id, u.role, u.status, t.defaults_version, \
         t.rpm_limit, t.tpm_limit, t.token_budget, t.budget_period, t.usage_limit_policy \
         FROM api_keys k JOIN users u ON u.username = k.username AND u.tenant_id = k.tenant_id \
         JOIN tenants t ON t.id = k.tenant_id WHERE k.access_key = ?1",
        access_key
    )
}

/// The row [`auth_stmt`] read, if any.
pub fn decode_auth(rows: &[Row]) -> Result<Option<AuthRow>, DbError> {
    super::decode_first(rows, |r| {
        Ok(AuthRow {
            id: r.text("id")?,
            access_key: r.text("access_key")?,
            secret_hash: r.text("secret_hash")?,
            prev_secret_hash: r.text_opt("prev_secret_hash")?,
            prev_valid_until: r.int_opt("prev_valid_until")?,
            expires_at: r.int_opt("expires_at")?,
            last_used_at: r.int_opt("last_used_at")?,
            username: r.text("username")?,
            tenant_id: r.text("tenant_id")?,
            role: r.closed("role")?,
            user_status: r.closed("status")?,
            defaults_version: r.int("defaults_version")?,
            tenant_limits: super::tenants::limits_from_row(r)?,
        })
    })
}

/// Record use, never moving `last_used_at` backwards.
pub fn touch(id: &str, now: i64) -> Stmt {
    stmt!(
        "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
        id,
        now
    )
    .folding(&Fold {
        sum: &[],
        max: &[1],
    })
}

/// Delete up to `chunk` keys expired at `now`. Two overlapping runs may pick the same rows; the second
/// delete of a row is a no-op, so nothing is removed twice and no unexpired row is ever selected.
pub fn purge_expired(now: i64, chunk: i64) -> Stmt {
    stmt!(
        "DELETE FROM api_keys WHERE id IN (SELECT id FROM api_keys WHERE expires_at IS NOT NULL \
         AND expires_at <= ?1 LIMIT ?2)",
        now,
        chunk
    )
}

/// Forget up to `chunk` rotated-out secrets whose grace period has ended.
pub fn purge_ended_grace(now: i64, chunk: i64) -> Stmt {
    stmt!(
        "UPDATE api_keys SET prev_secret_hash = NULL, prev_valid_until = NULL WHERE id IN \
         (SELECT id FROM api_keys WHERE prev_valid_until IS NOT NULL AND prev_valid_until <= ?1 LIMIT ?2)",
        now,
        chunk
    )
}
