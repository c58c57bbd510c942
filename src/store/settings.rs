//! SQL for run-time settings: name/value rows an admin changes with `PUT /api/v1/admin/settings`.
//! A setting without a row has its default (from a Worker var, or the constant beside it).

use super::{Db, DbError, RowExt, Stmt};
use crate::stmt;

/// The setting bounding user keys' lifetime, in minutes (0 = no limit).
pub const MAX_TTL: &str = "auth_token_max_ttl_minutes";
/// Whether users may create keys for themselves (`POST /api/v1/api_keys`); `true` or `false`.
pub const SELF_SERVICE_KEYS: &str = "self_service_keys";
/// The most unexpired keys one user may hold, however they were issued.
pub const MAX_KEYS_PER_USER: &str = "max_keys_per_user";

/// `max_keys_per_user` until an admin sets it: room for a key per device and per deploy, far below
/// what a runaway script would create.
pub const DEFAULT_MAX_KEYS_PER_USER: i64 = 50;
/// The largest `max_keys_per_user` an admin may set.
pub const MAX_KEYS_PER_USER_LIMIT: i64 = 10_000;

/// The most gateway keys one tenant may hold.
pub const MAX_AI_KEYS_PER_TENANT: &str = "max_ai_keys_per_tenant";
/// `max_ai_keys_per_tenant` until an admin sets it: a key per team, service and environment of a
/// large organization, with room to spare.
pub const DEFAULT_MAX_AI_KEYS_PER_TENANT: i64 = 1_000;
/// The largest `max_ai_keys_per_tenant` an admin may set.
pub const MAX_AI_KEYS_PER_TENANT_LIMIT: i64 = 100_000;
/// The most provider connections (connected models) one tenant may hold.
pub const MAX_CONNECTIONS_PER_TENANT: &str = "max_connections_per_tenant";
/// `max_connections_per_tenant` until an admin sets it: every catalog factory, and dozens of
/// self-hosted models each added on its own.
pub const DEFAULT_MAX_CONNECTIONS_PER_TENANT: i64 = 200;
/// The largest `max_connections_per_tenant` an admin may set.
pub const MAX_CONNECTIONS_PER_TENANT_LIMIT: i64 = 10_000;

/// The settings that bound what may be created, read together in one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Longest lifetime of a new key in minutes; 0 = no limit.
    pub max_ttl_minutes: i64,
    pub self_service_keys: bool,
    pub max_keys_per_user: i64,
    pub max_ai_keys_per_tenant: i64,
    pub max_connections_per_tenant: i64,
}

/// The key policy, each setting falling back to its default; `default_max_ttl` comes from the
/// deployment's `AUTH_TOKEN_MAX_TTL_MINUTES` var.
pub async fn key_policy(db: &impl Db, default_max_ttl: i64) -> Result<KeyPolicy, DbError> {
    let rows = db
        .query(stmt!(
            "SELECT name, value FROM settings WHERE name IN (?1, ?2, ?3, ?4, ?5)",
            MAX_TTL,
            SELF_SERVICE_KEYS,
            MAX_KEYS_PER_USER,
            MAX_AI_KEYS_PER_TENANT,
            MAX_CONNECTIONS_PER_TENANT
        ))
        .await?;
    let mut policy = KeyPolicy {
        max_ttl_minutes: default_max_ttl,
        self_service_keys: true,
        max_keys_per_user: DEFAULT_MAX_KEYS_PER_USER,
        max_ai_keys_per_tenant: DEFAULT_MAX_AI_KEYS_PER_TENANT,
        max_connections_per_tenant: DEFAULT_MAX_CONNECTIONS_PER_TENANT,
    };
    for r in &rows {
        let (name, value) = (r.text("name")?, r.text("value")?);
        // Values are written only by put_int/put_bool below; anything else keeps the default.
        match name.as_str() {
            MAX_TTL => policy.max_ttl_minutes = value.parse().unwrap_or(policy.max_ttl_minutes),
            SELF_SERVICE_KEYS => policy.self_service_keys = value != "false",
            MAX_KEYS_PER_USER => {
                policy.max_keys_per_user = value.parse().unwrap_or(policy.max_keys_per_user)
            }
            MAX_AI_KEYS_PER_TENANT => {
                policy.max_ai_keys_per_tenant =
                    value.parse().unwrap_or(policy.max_ai_keys_per_tenant)
            }
            MAX_CONNECTIONS_PER_TENANT => {
                policy.max_connections_per_tenant =
                    value.parse().unwrap_or(policy.max_connections_per_tenant)
            }
            _ => {}
        }
    }
    Ok(policy)
}

pub fn put_int(name: &str, value: i64) -> Stmt {
    put(name, value.to_string())
}

pub fn put_bool(name: &str, value: bool) -> Stmt {
    put(name, value.to_string())
}

fn put(name: &str, value: String) -> Stmt {
    stmt!(
        "INSERT INTO settings (name, value) VALUES (?1, ?2) \
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        name,
        value
    )
}
