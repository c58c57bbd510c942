//! Who is calling: the admin (deployment secret) or a user (their key, as Bearer or Basic).

use super::error::ApiError;
use super::http::Request;
use super::idempotency::{user_scope, Idem};
use super::App;
use crate::domain::keys::{self, Secret};
use crate::domain::names::{Role, UserStatus};
use crate::store::{keys as key_store, CallerTenant, Db, Limiter, Platform, Row, Stmt};
use base64::Engine;

/// `last_used_at` is written at most this often per key, so verification costs no write.
pub const TOUCH_INTERVAL_MS: i64 = 60_000;

/// An authenticated user, through one of their keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub username: String,
    pub tenant_id: String,
    pub role: Role,
    pub key_id: String,
    pub access_key: String,
    pub expires_at: Option<i64>,
    /// The tenant's defaults version, read with the key (names the KV entry of its defaults).
    pub defaults_version: i64,
    /// The tenant's limits over time, read with the key.
    pub tenant_limits: crate::limits::Limits,
}

/// The client a request comes from, as the edge reports it.
pub fn client_of(req: &Request) -> &str {
    req.first_header("cf-connecting-ip").unwrap_or("unknown")
}

/// The credential in the request, before it is checked against storage.
enum Presented {
    Bearer(String),
    Basic { user: String, pass: String },
}

/// Exactly one `Authorization` header with a Bearer or Basic credential (scheme in any case,
/// RFC 9110 11.1). Anything else, including a token in the query string, is no credential.
fn presented(req: &Request) -> Option<Presented> {
    let mut values = req.headers_named("authorization");
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, rest) = value.split_once(' ')?;
    if rest.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(Presented::Bearer(rest.to_owned()))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, pass) = text.split_once(':')?;
        Some(Presented::Basic {
            user: user.to_owned(),
            pass: pass.to_owned(),
        })
    } else {
        None
    }
}

/// A user token's two halves from whichever scheme carried them.
fn user_token(p: &Presented) -> Option<(String, Secret)> {
    match p {
        Presented::Bearer(t) => keys::parse_token(t),
        Presented::Basic { user, pass } => {
            if !keys::is_access_key(user) {
                return None;
            }
            Some((user.clone(), Secret::parse(pass)?))
        }
    }
}

impl<P: Platform> App<P> {
    /// Whether the request carries the admin token (compared in constant time over digests, so
    /// neither content nor length leaks through timing).
    pub(crate) fn is_admin(&self, req: &Request) -> bool {
        let Some(Presented::Bearer(token)) = presented(req) else {
            return false;
        };
        let Some(expected) = self.config.admin_token.as_deref() else {
            return false;
        };
        keys::ct_eq(
            &keys::sha256_hex(token.as_bytes()),
            &keys::sha256_hex(expected.as_bytes()),
        )
    }

    /// Require the admin. A valid user key is told 403, anything else 401.
    pub(crate) async fn require_admin(&self, req: &Request) -> Result<(), ApiError> {
        self.check_not_blocked(req)?;
        if self.is_admin(req) {
            return Ok(());
        }
        match self.authenticate(req).await {
            Ok(_) => Err(ApiError::Forbidden(
                "This route needs the admin token; a user API key may not call it".into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// 429 if this client is blocked after too many failures.
    fn check_not_blocked(&self, req: &Request) -> Result<(), ApiError> {
        let now = self.platform.now_ms();
        match self.platform.limiter().blocked_for(client_of(req), now) {
            Some(s) => Err(ApiError::RateLimited(s)),
            None => Ok(()),
        }
    }

    /// Verify a user key; every failure counts against the client's budget (brute force).
    pub(crate) async fn authenticate(
        &self,
        req: &Request,
    ) -> Result<(Caller, Option<Stmt>), ApiError> {
        let (caller, touch, _) = self.authenticate_with(req, |_| Vec::new()).await?;
        Ok((caller, touch))
    }

    /// [`Self::authenticate`], reading in the same round trip the statements `also` makes for the
    /// caller's tenant (each built on [`crate::caller_tenant!`]); their rows come back in order.
    /// `also` is called only once the credential parses and the client is not blocked, and its
    /// statements read no row unless the presented secret is the key's.
    pub(crate) async fn authenticate_with(
        &self,
        req: &Request,
        also: impl FnOnce(&CallerTenant) -> Vec<Stmt>,
    ) -> Result<(Caller, Option<Stmt>, Vec<Vec<Row>>), ApiError> {
        self.check_not_blocked(req)?;
        match self.verify_key(req, also).await {
            Err(ApiError::Unauthorized) => {
                let now = self.platform.now_ms();
                match self.platform.limiter().failure(client_of(req), now).await {
                    Some(s) => Err(ApiError::RateLimited(s)),
                    None => Err(ApiError::Unauthorized),
                }
            }
            other => other,
        }
    }

    /// Malformed credentials are refused before any read; unknown, expired, revoked, rotated-out
    /// and disabled ones all take one read and one hash and fail alike.
    async fn verify_key(
        &self,
        req: &Request,
        also: impl FnOnce(&CallerTenant) -> Vec<Stmt>,
    ) -> Result<(Caller, Option<Stmt>, Vec<Vec<Row>>), ApiError> {
        let (access_key, secret) = presented(req)
            .as_ref()
            .and_then(user_token)
            .ok_or(ApiError::Unauthorized)?;
        let hash = secret.hash();
        let now = self.platform.now_ms();
        let window_ms = (self.config.verify_cache_seconds as i64).saturating_mul(1000);
        let cache_key = format!("{access_key}:{hash}");
        let db = self.platform.db();
        if window_ms > 0 {
            if let Some((caller, touch)) = verified_cache::get(&cache_key, now, window_ms) {
                let stmts = also(&CallerTenant::Known(&caller.tenant_id));
                let rows = read_all(db, stmts).await?;
                return Ok((caller, touch, rows));
            }
        }
        let stmts = also(&CallerTenant::Presented {
            access_key: &access_key,
            secret_hash: &hash,
            now,
        });
        // One round trip either way: the key alone, or the key and what the route reads beside.
        let (row, rows) = if stmts.is_empty() {
            (
                key_store::lookup_for_auth(db, &access_key).await?,
                Vec::new(),
            )
        } else {
            let mut all = vec![key_store::auth_stmt(&access_key)];
            all.extend(stmts);
            let mut rows = read_all(db, all).await?;
            let key_rows = rows.remove(0);
            (key_store::decode_auth(&key_rows)?, rows)
        };
        let Some(row) = row else {
            // Same work as a found key, so absence is not told apart by timing.
            let _ = keys::ct_eq(&hash, &keys::sha256_hex(b"absent"));
            return Err(ApiError::Unauthorized);
        };
        let current = keys::ct_eq(&hash, &row.secret_hash);
        let in_grace = match (&row.prev_secret_hash, row.prev_valid_until) {
            (Some(prev), Some(until)) => keys::ct_eq(&hash, prev) & (now < until),
            _ => false,
        };
        let unexpired = row.expires_at.is_none_or(|t| now < t);
        let active = match row.user_status {
            UserStatus::Active => true,
            UserStatus::Disabled => false,
        };
        if !(current | in_grace) || !unexpired || !active {
            return Err(ApiError::Unauthorized);
        }
        let touch = row
            .last_used_at
            .is_none_or(|t| now - t >= TOUCH_INTERVAL_MS)
            .then(|| key_store::touch(&row.id, now));
        let caller = Caller {
            username: row.username,
            tenant_id: row.tenant_id,
            role: row.role,
            key_id: row.id,
            access_key: row.access_key,
            expires_at: row.expires_at,
            defaults_version: row.defaults_version,
            tenant_limits: row.tenant_limits,
        };
        if window_ms > 0 {
            // A secret honoured only by its grace period is cached no longer than the grace lasts.
            let valid_until = [
                row.expires_at,
                (!current).then_some(row.prev_valid_until).flatten(),
            ]
            .into_iter()
            .flatten()
            .min();
            verified_cache::put(cache_key, caller.clone(), now, valid_until);
        }
        Ok((caller, touch, rows))
    }
}

/// Every statement's rows in one round trip (none for no statement), exactly one result each.
async fn read_all(db: &impl Db, stmts: Vec<Stmt>) -> Result<Vec<Vec<Row>>, ApiError> {
    if stmts.is_empty() {
        return Ok(Vec::new());
    }
    let n = stmts.len();
    let rows = db.query_batch(stmts).await?;
    if rows.len() != n {
        return Err(ApiError::Internal(format!(
            "a batch of {n} reads answered {} results",
            rows.len()
        )));
    }
    Ok(rows)
}

/// SHA-256 of the user secret the request presents, if it presents one that parses.
pub(crate) fn presented_secret_hash(req: &Request) -> Option<String> {
    presented(req)
        .as_ref()
        .and_then(user_token)
        .map(|(_, secret)| secret.hash())
}

impl<P: Platform> App<P> {
    /// The caller of a replayed rotation whose first attempt ended the very secret presented
    /// (a rotation without grace, whose answer with the new secret was lost). Accepted only when
    /// all of these hold: the presented access key is the key `key_id` being rotated, its user is
    /// active and the key unexpired, and the user's Idempotency-Key `idem_key` names, within the
    /// window, a rotation of that key authenticated by this same secret. The old secret thus
    /// buys one thing, a new secret for its own key, and only with the key of the request the
    /// client sent: someone who learnt the old secret elsewhere does not have that key.
    pub(crate) async fn rotation_replay_caller(
        &self,
        req: &Request,
        key_id: &str,
        idem_key: &str,
    ) -> Result<Option<Caller>, ApiError> {
        let Some((access_key, secret)) = presented(req).as_ref().and_then(user_token) else {
            return Ok(None);
        };
        let db = self.platform.db();
        let Some(row) = key_store::lookup_for_auth(db, &access_key).await? else {
            return Ok(None);
        };
        let now = self.platform.now_ms();
        let role = row.role;
        if row.id != key_id
            || row.user_status != UserStatus::Active
            || row.expires_at.is_some_and(|t| now >= t)
        {
            return Ok(None);
        }
        // The very request of the rotation: its key, its key id, its body.
        let idem = Idem::new(
            &user_scope(&row.username),
            idem_key,
            super::idempotency::KEY_ROTATE,
            key_id,
            &req.body,
        );
        let entry = match idem.earlier(db, now).await {
            Err(ApiError::Conflict(_)) => None,
            other => other?,
        };
        let proven = entry.is_some_and(|e| {
            e.target == row.id
                && e.caller_hash
                    .as_deref()
                    .is_some_and(|h| keys::ct_eq(h, &secret.hash()))
        });
        Ok(proven.then_some(Caller {
            username: row.username,
            tenant_id: row.tenant_id,
            role,
            key_id: row.id,
            access_key: row.access_key,
            expires_at: row.expires_at,
            defaults_version: row.defaults_version,
            tenant_limits: row.tenant_limits,
        }))
    }
}

/// Forget cached verifications after a revocation, rotation, or user or tenant change.
pub(crate) fn forget_verified(key_id: Option<&str>) {
    verified_cache::forget(key_id);
}

/// The optional verification cache (`VERIFY_CACHE_SECONDS`, off by default): successful
/// verifications kept in this isolate's memory for the window, so a hit costs no D1 read. Within
/// the window a revocation, a user disabled or deleted, or a changed role or defaults version may
/// be honoured late on this isolate; expiry (and a grace period's end) is still checked against
/// the clock on every hit. Failures are never cached.
mod verified_cache {
    use super::{Caller, Stmt};
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Most entries kept per isolate; expired ones are dropped first when it is full.
    const MAX_ENTRIES: usize = 10_000;

    struct Entry {
        caller: Caller,
        cached_at: i64,
        /// When the key (or the grace of the secret that matched) ends, if ever.
        valid_until: Option<i64>,
        /// Last `last_used_at` write issued from this isolate.
        touched_at: i64,
    }

    thread_local! {
        static CACHE: RefCell<HashMap<String, Entry>> = RefCell::new(HashMap::new());
    }

    pub fn get(key: &str, now: i64, window_ms: i64) -> Option<(Caller, Option<Stmt>)> {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let e = c.get_mut(key)?;
            if now - e.cached_at >= window_ms || e.valid_until.is_some_and(|t| now >= t) {
                c.remove(key);
                return None;
            }
            let touch = (now - e.touched_at >= super::TOUCH_INTERVAL_MS).then(|| {
                e.touched_at = now;
                crate::store::keys::touch(&e.caller.key_id, now)
            });
            Some((e.caller.clone(), touch))
        })
    }

    /// Drop one key's entries (`Some(key id)`) or all of them, after a change made through this
    /// isolate, so the change is seen here at once; other isolates still have the window.
    pub fn forget(key_id: Option<&str>) {
        CACHE.with(|c| match key_id {
            Some(id) => c.borrow_mut().retain(|_, e| e.caller.key_id != id),
            None => c.borrow_mut().clear(),
        });
    }

    pub fn put(key: String, caller: Caller, now: i64, valid_until: Option<i64>) {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= MAX_ENTRIES {
                c.retain(|_, e| {
                    e.valid_until.is_none_or(|t| now < t) && now - e.cached_at < 3_600_000
                });
                if c.len() >= MAX_ENTRIES {
                    c.clear();
                }
            }
            c.insert(
                key,
                Entry {
                    caller,
                    cached_at: now,
                    valid_until,
                    touched_at: now,
                },
            );
        });
    }
}
