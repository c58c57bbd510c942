//! The `Idempotency-Key` request header (draft-ietf-httpapi-idempotency-key-header) on the writes
//! that a retry would otherwise repeat: creating a tenant, issuing a key, rotating a key. D1 can
//! commit a batch and lose its answer; a client that then sends the same request again with the
//! same key is answered from what the first attempt did, instead of getting a second tenant, a
//! second key, or (for a rotation without grace) a 401 on a key whose only valid secret it never
//! received. Every other write is safe to send twice as it is (tests/faults.rs shows each).

use super::error::ApiError;
use super::http::Request;
use crate::domain::keys::sha256_hex;
use crate::store::idempotency::{self, Entry};
use crate::store::{DbError, Stmt};
use serde_json::Value;

/// The header's name.
pub const HEADER: &str = "idempotency-key";
/// Longest key accepted; a UUID is 36 characters.
pub const MAX_LEN: usize = 255;

/// The operations a key may name; part of what a replay must match.
pub const TENANT_CREATE: &str = "tenant.create";
pub const KEY_ISSUE: &str = "api_key.create";
pub const KEY_ROTATE: &str = "api_key.rotate";

/// The scope of the admin's keys.
pub const ADMIN_SCOPE: &str = "admin";

/// The scope of a user's keys: one per user, whichever of their API keys sends the request.
pub fn user_scope(username: &str) -> String {
    format!("user:{username}")
}

/// A keyed request: who sent it, the key, and what it asks for.
#[derive(Debug, Clone)]
pub struct Idem {
    scope: String,
    key_hash: String,
    request: String,
}

/// The header's value, if the request has one. One header of 1 to 255 visible ASCII characters,
/// as a bare token or as the draft's structured-field string (`"..."`); anything else is a 400.
pub fn key_of(req: &Request) -> Result<Option<String>, ApiError> {
    let mut values = req.headers_named(HEADER);
    let Some(raw) = values.next() else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad(
            "Idempotency-Key",
            format!(
                "must be one header of 1 to {MAX_LEN} visible ASCII characters, such as a UUID"
            ),
        )
    };
    if values.next().is_some() {
        return Err(bad());
    }
    let raw = raw.trim();
    let key = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner,
        None => raw,
    };
    let visible = |c: char| c.is_ascii_graphic() && c != '"' && c != '\\';
    if key.is_empty() || key.len() > MAX_LEN || !key.chars().all(visible) {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

impl Idem {
    /// `key` sent by `scope` (`admin`, or `user:` and the caller's username) for `operation` on
    /// `target` (e.g. `api_key.rotate` on a key id) with this body. The body is compared as the
    /// JSON it parses to, so a client re-serialising it differently still matches.
    pub fn new(scope: &str, key: &str, operation: &str, target: &str, body: &[u8]) -> Self {
        let body = if body.is_empty() {
            "{}".to_owned()
        } else {
            serde_json::from_slice::<Value>(body)
                .map(|v| v.to_string())
                .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned())
        };
        Idem {
            scope: scope.to_owned(),
            key_hash: sha256_hex(key.as_bytes()),
            request: sha256_hex(format!("{operation}\n{target}\n{body}").as_bytes()),
        }
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    pub fn key_hash(&self) -> &str {
        &self.key_hash
    }

    /// The earlier request this key names, within the window; a different request under the same
    /// key is a 409 (the key is spent on that request).
    pub async fn earlier(
        &self,
        db: &impl crate::store::Db,
        now: i64,
    ) -> Result<Option<Entry>, ApiError> {
        match idempotency::get(db, &self.scope, &self.key_hash, now).await? {
            Some(e) if e.request != self.request => Err(ApiError::Conflict(
                "Idempotency-Key: this key was sent with another request in the last hour; use a new key for a new request"
                    .into(),
            )),
            found => Ok(found),
        }
    }

    /// The statements remembering this request as having made or changed `target`.
    pub fn record(&self, target: &str, caller_hash: Option<String>, now: i64) -> Vec<Stmt> {
        idempotency::record(
            &self.scope,
            &self.key_hash,
            &Entry {
                request: self.request.clone(),
                target: target.to_owned(),
                caller_hash,
                created_at: now,
            },
        )
    }
}

impl Idem {
    /// After [`Idem::record`] in a batch that may not have created user key `key_id` (refused at
    /// the user's key limit): forget the request again unless the key exists.
    pub fn forget_unless_key(&self, key_id: &str) -> Stmt {
        idempotency::forget_unless_key(&self.scope, &self.key_hash, key_id)
    }
}

/// A failed batch that carried a keyed request: its twin, sent at the same time, got there first.
pub fn twin_or(e: DbError, other: impl FnOnce(DbError) -> ApiError) -> ApiError {
    if idempotency::is_twin(&e) {
        ApiError::Conflict(
            "Idempotency-Key: a request with this key is being carried out; send it again for its answer"
                .into(),
        )
    } else {
        other(e)
    }
}
