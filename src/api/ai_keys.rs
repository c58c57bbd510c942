//! Gateway keys (`/api/v1/ai_keys`): a tenant's provider key for one provider/model, with
//! per-request token limits the relay enforces. Owners and admins create, change and delete them;
//! members read them. The provider key is sealed at rest and only its masked hint is ever shown.

use super::auth::Caller;
use super::error::ApiError;
use super::http::Request;
use super::models::{endpoint_change, endpoint_host};
use super::{App, Reply, Result};
use crate::catalog::{self, Factory};
use crate::domain::crypto::mask;
use crate::domain::names::{Alias, ModelName};
use crate::domain::new_id;
use crate::domain::states::{BudgetPeriod, KeyStatus, UsagePolicy};
use crate::domain::time::{parse_rfc3339, rfc3339};
use crate::domain::vault::Slot;
use crate::providers::printable;
use crate::providers::probe::{self, base_of};
use crate::store::ai_keys::{self as store, AiKey, Changes, Filter};
use crate::store::{audit, Batch, DbError, Platform};
use serde::{Deserialize, Serialize};

/// Longest alias (API.md "AI API keys").
pub const ALIAS_MAX: usize = Alias::MAX;
/// Longest model name.
pub const MODEL_MAX: usize = ModelName::MAX;
/// Largest per-request token limit; 0 means unlimited.
pub const LIMIT_MAX: i64 = 10_000_000;
/// Largest requests-per-minute limit; 0 means none.
pub const RPM_MAX: i64 = 1_000_000;
/// Largest tokens-per-minute limit; 0 means none.
pub const TPM_MAX: i64 = 1_000_000_000;
/// Largest token budget per period; 0 means none. Far below 2^53, so D1's JavaScript numbers
/// hold every spend exactly.
pub const BUDGET_MAX: i64 = 1_000_000_000_000;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: i64 = 20;
/// Largest page a list returns.
pub const MAX_PAGE_SIZE: i64 = 100;
/// Highest page number accepted: with the largest page size, offsets stay below 10^8, exact as
/// the JavaScript numbers D1 receives parameters as (which hold integers exactly only to 2^53).
pub const MAX_PAGE: i64 = 1_000_000;
/// Longest `search` / `provider` filter accepted.
pub const FILTER_MAX: usize = 128;
/// Most provider keys one gateway key's pool holds.
pub const POOL_MAX: usize = 5;

// `POST /api/v1/ai_keys`.
/// A new gateway key. An unknown field is a 400; optional fields sent as null take their default.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Serialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "CreateAiKeyRequest", extend("oneOf" = [{"required": ["api_key"]}, {"required": ["api_keys"]}])))]
#[serde(deny_unknown_fields)]
pub struct CreateAiKey {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AiKeyAlias")
    )]
    pub alias: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AiKeyProvider")
    )]
    pub provider: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AiKeyModel")
    )]
    pub model: String,
    /// The provider key: 8 characters to 16 KiB (a shorter one is not a real credential: 400), no
    /// control characters. Encrypted at rest (a master key must be configured, else 500); never
    /// returned. A pool of one; send this or `api_keys` (both, or neither, is a 400).
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<crate::api::doc::scalars::ProviderKey>")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// A pool of 1 to 5 provider keys in priority order, each checked as `api_key` and none
    /// repeated: the relay uses the first that is not cooling down and fails over to the next on
    /// a provider 429, 5xx, timeout or refused credential. Sealed like `api_key`; never returned.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<Vec<crate::api::doc::scalars::ProviderKey>>", extend("minItems" = 1, "maxItems" = 5)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys: Option<Vec<String>>,
    /// Most input tokens per request, 0 = unlimited.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::TokenLimit")
    )]
    pub input_limit: i64,
    /// Most output tokens per chat request, 0 = unlimited (default).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0, "maximum" = 10000000, "default" = 0)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_limit: Option<i64>,
    /// See UsageLimitPolicy; default `reject`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("enum" = ["reject", "use_anyway", null], "default" = "reject")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_limit_policy: Option<String>,
    /// Requests per minute over every isolate and location (a sliding 60 s window), 0 = none
    /// (default).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0, "maximum" = 1000000, "default" = 0)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<i64>,
    /// Tokens (input + output) per minute, reserved before forwarding and settled with the
    /// provider's usage, 0 = none (default).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0, "maximum" = 1000000000_i64, "default" = 0)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<i64>,
    /// Tokens per `budget_period`, 0 = none (default).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0, "maximum" = 1000000000000_i64, "default" = 0)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<i64>,
    /// The period `token_budget` counts over (UTC); default `month`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("enum" = ["day", "week", "month", "total", null], "default" = "month")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_period: Option<String>,
    /// Default `disabled`: the key must be enabled before the relay accepts it.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("enum" = ["enabled", "disabled", null], "default" = "disabled")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// When the key stops working: an RFC 3339 time in the future, e.g. `2030-01-01T00:00:00Z` (one
    /// at or before now is a 400). Null or absent: never.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<crate::api::doc::scalars::DateTime>", extend("format" = "date-time")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<String>,
}

// `PUT /api/v1/ai_keys/{id}`: any writable field; only `expire_time` may be `null` (it clears).
/// Any writable field; fields not sent stay as they are. At least one field (else a 400 listing
/// them); only `expire_time` may be null (it clears the expiry); an unknown field is a 400. A new
/// `provider` or `model` is checked together with the other (stored or sent) as on create. Setting
/// `status: enabled` while the key's `expire_time` has passed is a 400 unless a later `expire_time`
/// (or null) is sent with it. `api_key` replaces the provider key (and its hint); usage counters
/// are kept. A change of `provider` or `model` that moves the key to another endpoint needs
/// `api_key` with it (else a 400 on `api_key` naming the old and new host); sending `api_key` binds
/// the key to the endpoint its provider/model has now. Each endpoint change is audited with old and
/// new host.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Serialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "UpdateAiKeyRequest", extend("minProperties" = 1)))]
#[serde(deny_unknown_fields)]
pub struct UpdateAiKey {
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AiKeyAlias")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AiKeyProvider")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AiKeyModel")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<Option<String>>,
    /// The provider key: 8 characters to 16 KiB (a shorter one is not a real credential: 400), no
    /// control characters. Encrypted at rest (a master key must be configured, else 500); never
    /// returned. Replaces the whole pool with a pool of one; not together with `api_keys`.
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "String", extend("minLength" = 8, "maxLength" = 16384)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Option<String>>,
    /// Replaces the pool: 1 to 5 provider keys in priority order, as on create. The served
    /// counters start again; the token counters are kept.
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Vec<crate::api::doc::scalars::ProviderKey>", extend("minItems" = 1, "maxItems" = 5)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::TokenLimit")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_limit: Option<Option<i64>>,
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::TokenLimit")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_limit: Option<Option<i64>>,
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::domain::states::UsagePolicy")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_limit_policy: Option<Option<String>>,
    /// Requests per minute, 0 = none; a change applies to the next request.
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "i64", extend("minimum" = 0, "maximum" = 1000000)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm_limit: Option<Option<i64>>,
    /// Tokens per minute, 0 = none.
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "i64", extend("minimum" = 0, "maximum" = 1000000000_i64)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm_limit: Option<Option<i64>>,
    /// Tokens per `budget_period`, 0 = none. A change mid-period keeps the period's spend.
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "i64", extend("minimum" = 0, "maximum" = 1000000000000_i64)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<Option<i64>>,
    /// A new period keeps the spend so far and resets at the new period's next boundary.
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::domain::states::BudgetPeriod")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_period: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::domain::states::KeyStatus")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Option<String>>,
    /// An RFC 3339 time in the future (one at or before now is a 400), or null to clear the expiry.
    #[serde(default, deserialize_with = "super::body::present")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<crate::api::doc::scalars::DateTime>")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<Option<String>>,
}

/// The writable fields, as a PUT with none of them is told.
const WRITABLE: &str = "alias, provider, model, api_key, api_keys, input_limit, output_limit, \
                        usage_limit_policy, rpm_limit, tpm_limit, token_budget, budget_period, \
                        status, expire_time";

/// A field that may be left out but not sent as `null`.
fn not_null<T>(field: &str, v: Option<Option<T>>) -> Result<Option<T>> {
    match v {
        Some(None) => Err(ApiError::bad(field, "must not be null")),
        Some(Some(x)) => Ok(Some(x)),
        None => Ok(None),
    }
}

/// 1..=64 characters of ASCII letters, digits and `._-`.
pub fn check_alias(s: &str) -> Result<String> {
    Alias::parse(s)
        .map(Alias::into_string)
        .map_err(|e| ApiError::bad("alias", e))
}

/// A catalog factory that takes a key: Builtin is served by the deployment and has none.
pub fn check_provider(s: &str) -> Result<&'static Factory> {
    let f = catalog::factory(s).ok_or_else(|| {
        ApiError::bad(
            "provider",
            format!(
                "unknown provider {}; GET /api/v1/factories lists them",
                printable(s)
            ),
        )
    })?;
    if f.is_builtin() {
        return Err(ApiError::bad(
            "provider",
            "Builtin models are served by this deployment and take no API key",
        ));
    }
    Ok(f)
}

/// The shape of a model name, by [`ModelName`]'s rules (the same as a connection's `llm_name`).
pub fn check_model_name(s: &str) -> Result<String> {
    ModelName::parse(s)
        .map(ModelName::into_string)
        .map_err(|e| ApiError::bad("model", e))
}

/// The provider key: not blank, 8 characters to 16 KiB, no control characters. Messages never
/// echo it.
pub fn check_api_key(s: &str) -> Result<&str> {
    crate::providers::secret("api_key", s).map_err(|(f, why)| ApiError::bad(&f, why))?;
    Ok(s)
}

/// The pool a request sends: `api_key` (a pool of one) or `api_keys` (1 to [`POOL_MAX`] keys,
/// each checked as `api_key`, none repeated); both is a 400, and so is neither when `required`.
/// Messages name the field and position, never a key.
pub fn check_pool(
    api_key: Option<String>,
    api_keys: Option<Vec<String>>,
    required: bool,
) -> Result<Option<Vec<String>>> {
    match (api_key, api_keys) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "Send api_key or api_keys, not both".into(),
        )),
        (None, None) if required => Err(ApiError::bad(
            "api_key",
            "is required (or api_keys, a pool of 1 to 5 keys)",
        )),
        (None, None) => Ok(None),
        (Some(k), None) => Ok(Some(vec![check_api_key(&k)?.to_owned()])),
        (None, Some(keys)) => {
            if keys.is_empty() || keys.len() > POOL_MAX {
                return Err(ApiError::bad(
                    "api_keys",
                    format!("must hold 1 to {POOL_MAX} keys, got {}", keys.len()),
                ));
            }
            for (i, k) in keys.iter().enumerate() {
                let field = format!("api_keys[{i}]");
                crate::providers::secret(&field, k).map_err(|(f, why)| ApiError::bad(&f, why))?;
                if let Some(j) = keys[..i].iter().position(|o| o == k) {
                    return Err(ApiError::bad(&field, format!("repeats api_keys[{j}]")));
                }
            }
            Ok(Some(keys))
        }
    }
}

/// A per-request token limit: 0 (unlimited) to [`LIMIT_MAX`].
pub fn check_limit(field: &str, n: i64) -> Result<i64> {
    if (0..=LIMIT_MAX).contains(&n) {
        Ok(n)
    } else {
        Err(ApiError::bad(
            field,
            format!("must be 0 to {LIMIT_MAX} (0 = unlimited)"),
        ))
    }
}

/// What the relay does when a request exceeds a limit: `reject` or `use_anyway`.
pub fn check_policy(s: &str) -> Result<UsagePolicy> {
    UsagePolicy::parse(s)
        .ok_or_else(|| ApiError::bad("usage_limit_policy", "must be reject or use_anyway"))
}

/// A limit over time: 0 (none) to `max`.
pub fn check_over_time(field: &str, n: i64, max: i64) -> Result<i64> {
    if (0..=max).contains(&n) {
        Ok(n)
    } else {
        Err(ApiError::bad(
            field,
            format!("must be 0 to {max} (0 = none)"),
        ))
    }
}

/// The period of a token budget: `day`, `week`, `month` (UTC) or `total`.
pub fn check_period(s: &str) -> Result<BudgetPeriod> {
    BudgetPeriod::parse(s)
        .ok_or_else(|| ApiError::bad("budget_period", "must be day, week, month or total"))
}

/// `enabled` or `disabled`; `field` names where it came from (body or query).
pub fn check_status(field: &str, s: &str) -> Result<KeyStatus> {
    KeyStatus::parse(s).ok_or_else(|| ApiError::bad(field, "must be enabled or disabled"))
}

/// An RFC 3339 time strictly after `now` (a key expires at its `expire_time`).
pub fn check_expire_time(s: &str, now: i64) -> Result<i64> {
    let t = parse_rfc3339(s).ok_or_else(|| {
        ApiError::bad(
            "expire_time",
            "must be an RFC 3339 time such as 2030-01-01T00:00:00Z, or null",
        )
    })?;
    if t <= now {
        return Err(ApiError::BadRequest("expire_time is in the past".into()));
    }
    Ok(t)
}

// How a gateway key is shown: the masked hint, never the key or its ciphertext.
/// A gateway key as shown: the provider key only as a masked hint, never the key or its ciphertext.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "AiKey"))]
pub struct AiKeyView {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AiKeyId")
    )]
    pub id: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AiKeyAlias")
    )]
    pub alias: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AiKeyProvider")
    )]
    pub provider: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AiKeyModel")
    )]
    pub model: String,
    pub status: KeyStatus,
    /// A masked hint of the provider key: the first 3 and last 4 characters around `...`, `****`
    /// for a key shorter than 12 characters.
    /// Of a pool, its first key's.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("examples" = ["sk-...wxyz"])))]
    pub api_key_hint: String,
    /// The provider keys of the key's pool, in priority order, each by its hint only, with the
    /// relay calls it served since the pool was set.
    pub pool: Vec<PoolMemberView>,
    /// The pool member that served the last relay call; null if none has since the pool was set.
    pub last_served_by: Option<PoolMemberView>,
    // The host the key is bound to; `null` for a key stored before keys were bound.
    /// The host (and port, if not the default) of the endpoint the provider key is bound to: the
    /// relay sends the key there and nowhere else, whatever the tenant's connection says later. Set
    /// from the connection's base URL (else the factory's default) whenever the key is set. Null
    /// for a key stored before keys were bound, which the relay refuses until its `api_key` is set
    /// again.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("examples" = ["api.openai.com"])))]
    pub endpoint_host: Option<String>,
    /// Most input tokens per request (the relay's estimate), 0 = unlimited.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::TokenLimit")
    )]
    pub input_limit: i64,
    /// Most output tokens per chat request, 0 = unlimited.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::TokenLimit")
    )]
    pub output_limit: i64,
    pub usage_limit_policy: UsagePolicy,
    /// Requests per minute over every isolate and location, 0 = none.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0, "maximum" = 1000000)))]
    pub rpm_limit: i64,
    /// Tokens (input + output) per minute, 0 = none.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0, "maximum" = 1000000000_i64)))]
    pub tpm_limit: i64,
    /// Tokens per `budget_period`, 0 = none.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0, "maximum" = 1000000000000_i64)))]
    pub token_budget: i64,
    pub budget_period: BudgetPeriod,
    /// When the key stops working; null when it never expires.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<crate::api::doc::scalars::DateTime>", extend("format" = "date-time")))]
    pub expire_time: Option<String>,
    /// Input tokens of every relay call made with the key (as the provider reported them, else
    /// estimated).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0)))]
    pub used_input_tokens: i64,
    /// Output tokens of every relay call made with the key.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0)))]
    pub used_output_tokens: i64,
    /// When the relay last used the key; null if never.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<crate::api::doc::scalars::DateTime>", extend("format" = "date-time")))]
    pub last_used_at: Option<String>,
    /// When the key was created.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub create_date: String,
    /// When the key was last changed (also when the cron disabled it).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub update_date: String,
}

// One provider key of a gateway key's pool, by its hint.
/// One provider key of a pool: its position, its masked hint (never the key) and the relay calls
/// it served.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct PoolMemberView {
    /// The position in the pool, from 0 (the first tried).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0, "maximum" = 4)))]
    pub index: i64,
    /// The key's masked hint, as `api_key_hint`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("examples" = ["sk-...wxyz"])))]
    pub api_key_hint: String,
    /// Relay calls this key served since the pool was set.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0)))]
    pub requests: i64,
}

// One page of gateway keys and how many match in all.
/// One page of the tenant's gateway keys that match the filters.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct AiKeyPage {
    /// How many keys match the filters, over all pages.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0)))]
    pub total: i64,
    /// This page, newest first (ties by alias); empty past the last page.
    pub items: Vec<AiKeyView>,
}

pub fn ai_key_json(k: &AiKey) -> AiKeyView {
    let counts = k.served_counts();
    let pool: Vec<PoolMemberView> = k
        .hints()
        .into_iter()
        .enumerate()
        .map(|(i, hint)| PoolMemberView {
            index: i as i64,
            api_key_hint: hint,
            requests: counts.get(i).copied().unwrap_or(0),
        })
        .collect();
    let last_served_by = k
        .served_by
        .and_then(|i| usize::try_from(i).ok())
        .and_then(|i| pool.get(i).cloned());
    AiKeyView {
        pool,
        last_served_by,
        id: k.id.clone(),
        alias: k.alias.clone(),
        provider: k.provider.clone(),
        model: k.model.clone(),
        status: k.status,
        api_key_hint: k.api_key_hint.clone(),
        endpoint_host: k.endpoint.as_deref().map(probe::host_of),
        input_limit: k.input_limit,
        output_limit: k.output_limit,
        usage_limit_policy: k.usage_limit_policy,
        rpm_limit: k.rpm_limit,
        tpm_limit: k.tpm_limit,
        token_budget: k.token_budget,
        budget_period: k.budget_period,
        expire_time: k.expire_time.map(rfc3339),
        used_input_tokens: k.used_input_tokens,
        used_output_tokens: k.used_output_tokens,
        last_used_at: k.last_used_at.map(rfc3339),
        create_date: rfc3339(k.create_date),
        update_date: rfc3339(k.update_date),
    }
}

/// The id is not echoed: a path segment is whatever the client typed, possibly a pasted secret.
fn not_found() -> ApiError {
    ApiError::NotFound("No AI key with this id in this tenant".into())
}

/// The `(tenant_id, alias)` UNIQUE constraint decides duplicate aliases, also between concurrent
/// requests; its violation names the alias.
fn alias_conflict(e: DbError, alias: Option<&str>) -> ApiError {
    match (e, alias) {
        (DbError::Unique(m), Some(a)) if m.contains("ai_keys.alias") => {
            ApiError::Conflict(format!("alias {a} already exists"))
        }
        (other, _) => other.into(),
    }
}

/// A query parameter, `None` when absent or empty.
fn param(req: &Request, name: &str) -> Option<String> {
    req.query_param(name).filter(|v| !v.is_empty())
}

fn int_param(req: &Request, name: &str, default: i64, max: i64) -> Result<i64> {
    let why = || ApiError::bad(name, format!("must be an integer from 1 to {max}"));
    let Some(raw) = param(req, name) else {
        return Ok(default);
    };
    let n: i64 = raw.trim().parse().map_err(|_| why())?;
    if !(1..=max).contains(&n) {
        return Err(why());
    }
    Ok(n)
}

impl<P: Platform> App<P> {
    pub(crate) async fn get_ai_key(&self, caller: &Caller, id: &str) -> Result<Reply> {
        let k = store::get(self.platform.db(), &caller.tenant_id, id)
            .await?
            .ok_or_else(not_found)?;
        Ok(Reply::ok(ai_key_json(&k)))
    }

    /// Seal a gateway key's provider key to its tenant, row and endpoint: `(key_version, sealed)`.
    fn seal_ai_key(
        &self,
        tenant_id: &str,
        id: &str,
        endpoint: Option<&str>,
        api_key: &str,
    ) -> Result<(i64, String)> {
        let slot = Slot::GatewayKey {
            tenant_id,
            id,
            endpoint,
        };
        self.vault()
            .seal(slot, api_key, &|b| self.platform.fill_random(b))
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Seal a pool for its row and endpoint: `(key_version, sealed, first hint, pool_hints)`. A
    /// pool of one is sealed as a single key always was; a larger one as the JSON array of its
    /// keys, in one ciphertext, so no member can be moved, dropped or reordered on its own.
    fn seal_pool(
        &self,
        tenant_id: &str,
        id: &str,
        endpoint: Option<&str>,
        keys: &[String],
    ) -> Result<(i64, String, String, Option<String>)> {
        let first = keys
            .first()
            .ok_or_else(|| ApiError::Internal("an empty pool".into()))?;
        if keys.len() == 1 {
            let (v, sealed) = self.seal_ai_key(tenant_id, id, endpoint, first)?;
            return Ok((v, sealed, mask(first), None));
        }
        let plain = serde_json::to_string(keys).map_err(|e| ApiError::Internal(e.to_string()))?;
        let (v, sealed) = self.seal_ai_key(tenant_id, id, endpoint, &plain)?;
        let hints: Vec<String> = keys.iter().map(|k| mask(k)).collect();
        let hints = serde_json::to_string(&hints).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((v, sealed, mask(first), Some(hints)))
    }

    /// Open every provider key of a gateway key's pool, in priority order, for the relay.
    pub fn ai_key_secrets(&self, k: &AiKey) -> Result<Vec<String>> {
        let opened = self.ai_key_secret(k)?;
        if k.pool_hints.is_none() {
            return Ok(vec![opened]);
        }
        match serde_json::from_str::<Vec<String>>(&opened) {
            Ok(keys) if !keys.is_empty() => Ok(keys),
            _ => Err(ApiError::Internal(format!(
                "the pool of AI key {} does not open to a list of keys",
                k.id
            ))),
        }
    }

    /// [`Self::ai_key_secrets`], from this isolate's memory when the same sealed pool was opened
    /// before (api/opened.rs).
    pub(crate) fn opened_ai_key(&self, k: &AiKey) -> Result<Vec<String>> {
        let Some(ring) = self.config.keyring.as_ref() else {
            return self.ai_key_secrets(k);
        };
        let aad = Slot::GatewayKey {
            tenant_id: &k.tenant_id,
            id: &k.id,
            endpoint: k.endpoint.as_deref(),
        }
        .aad();
        let pooled = k.pool_hints.is_some();
        super::opened::pool(
            ring.instance(),
            &aad,
            k.key_version,
            &k.api_key,
            pooled,
            || self.ai_key_secrets(k),
        )
    }

    /// Open a gateway key's sealed provider key (of a pool, the JSON array of its keys). Any
    /// failure (no master key, a retired key version, a tampered or moved row) is an internal
    /// error that names the row only.
    pub fn ai_key_secret(&self, k: &AiKey) -> Result<String> {
        let slot = Slot::GatewayKey {
            tenant_id: &k.tenant_id,
            id: &k.id,
            endpoint: k.endpoint.as_deref(),
        };
        self.vault()
            .open(slot, k.key_version, &k.api_key)
            .map_err(|e| super::models::opening_failed(e, || format!("api_key of AI key {}", k.id)))
    }

    /// The model must be one the relay can reach with this key: a catalog model of the factory,
    /// or one the tenant configured for it. Factories without a default base URL (Azure-OpenAI,
    /// OpenAI-API-Compatible, the self-deployed ones, VertexAI) are reached through the tenant's
    /// connection, so there the model must be configured. Returns the endpoint the key would be
    /// bound to now: the connection's base URL, else the factory's default (`None` when there is
    /// neither, as for a Vertex AI connection without `base_url`).
    async fn check_model(
        &self,
        tenant_id: &str,
        factory: &Factory,
        model: &str,
    ) -> Result<Option<String>> {
        let available = self.available_models(tenant_id).await?;
        if let Some(a) = available
            .iter()
            .find(|a| a.factory.name == factory.name && a.name == model)
        {
            return Ok(base_of(
                a.connection.as_ref().and_then(|c| c.api_base.as_deref()),
                factory.default_base_url.as_deref(),
            ));
        }
        let shown = printable(model);
        if factory.default_base_url.is_none() {
            return Err(ApiError::bad(
                "model",
                format!(
                    "{shown} is not configured for this tenant; {} models are reached through the \
                     tenant's connection, so add it first with POST /api/v1/models",
                    factory.name
                ),
            ));
        }
        if factory.model(model).is_none() {
            return Err(ApiError::bad(
                "model",
                format!(
                    "{shown} is not a model of {} (GET /api/v1/factories lists them) and none was \
                     added for this tenant",
                    factory.name
                ),
            ));
        }
        Ok(base_of(None, factory.default_base_url.as_deref()))
    }

    pub(crate) async fn create_ai_key(&self, caller: &Caller, body: CreateAiKey) -> Result<Reply> {
        let alias = check_alias(&body.alias)?;
        let factory = check_provider(&body.provider)?;
        let model = check_model_name(&body.model)?;
        let pool = check_pool(body.api_key, body.api_keys, true)?.unwrap_or_default();
        let input_limit = check_limit("input_limit", body.input_limit)?;
        let output_limit = check_limit("output_limit", body.output_limit.unwrap_or(0))?;
        let policy = match body.usage_limit_policy.as_deref() {
            Some(p) => check_policy(p)?,
            None => UsagePolicy::Reject,
        };
        let rpm_limit = check_over_time("rpm_limit", body.rpm_limit.unwrap_or(0), RPM_MAX)?;
        let tpm_limit = check_over_time("tpm_limit", body.tpm_limit.unwrap_or(0), TPM_MAX)?;
        let token_budget =
            check_over_time("token_budget", body.token_budget.unwrap_or(0), BUDGET_MAX)?;
        let budget_period = match body.budget_period.as_deref() {
            Some(p) => check_period(p)?,
            None => BudgetPeriod::Month,
        };
        let status = match body.status.as_deref() {
            Some(s) => check_status("status", s)?,
            None => KeyStatus::Disabled,
        };
        let now = self.platform.now_ms();
        let expire_time = body
            .expire_time
            .as_deref()
            .map(|s| check_expire_time(s, now))
            .transpose()?;
        let endpoint = self.check_model(&caller.tenant_id, factory, &model).await?;
        let id = new_id(|b| self.platform.fill_random(b));
        let (key_version, sealed, api_key_hint, pool_hints) =
            self.seal_pool(&caller.tenant_id, &id, endpoint.as_deref(), &pool)?;
        let key = AiKey {
            id,
            tenant_id: caller.tenant_id.clone(),
            alias,
            provider: factory.name.clone(),
            model,
            status,
            key_version,
            api_key: sealed,
            api_key_hint,
            pool_hints,
            served_by: None,
            served_counts: None,
            endpoint,
            input_limit,
            output_limit,
            usage_limit_policy: policy,
            rpm_limit,
            tpm_limit,
            token_budget,
            budget_period,
            expire_time,
            used_input_tokens: 0,
            used_output_tokens: 0,
            last_used_at: None,
            create_date: now,
            update_date: now,
        };
        let most = self.key_policy().await?.max_ai_keys_per_tenant;
        let mut batch = Batch::new();
        let created = batch
            .push(store::insert_within_limit(&key, most))
            .then_if_changed(audit::record_if_changed(
                now,
                audit::Actor::User(&caller.username),
                "ai_key.create",
                &key.id,
                Some(&caller.tenant_id),
                &format!(
                    "alias={} provider={} model={} status={} endpoint={}",
                    key.alias,
                    key.provider,
                    key.model,
                    key.status.as_str(),
                    endpoint_host(key.endpoint.as_deref())
                ),
            ))
            .handle();
        let done = batch
            .run(self.platform.db())
            .await
            .map_err(|e| alias_conflict(e, Some(&key.alias)))?;
        if !done.did_change(created) {
            return Err(ApiError::Conflict(format!(
                "This tenant already holds {most} gateway keys, the most allowed \
                 (max_ai_keys_per_tenant); delete one first"
            )));
        }
        Ok(Reply::ok(ai_key_json(&key)))
    }

    pub(crate) async fn list_ai_keys(&self, caller: &Caller, req: &Request) -> Result<Reply> {
        let page = int_param(req, "page", 1, MAX_PAGE)?;
        let page_size = int_param(req, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let search = param(req, "search");
        let provider = param(req, "provider");
        for (name, v) in [("search", &search), ("provider", &provider)] {
            if v.as_ref().is_some_and(|s| s.chars().count() > FILTER_MAX) {
                return Err(ApiError::bad(
                    name,
                    format!("must be at most {FILTER_MAX} characters"),
                ));
            }
        }
        let status = param(req, "status")
            .map(|s| check_status("status", &s))
            .transpose()?;
        let filter = Filter {
            search,
            provider,
            status,
            limit: page_size,
            // Both bounded above, so the offset is at most 10^8: a page past the end is empty.
            offset: (page - 1)
                .checked_mul(page_size)
                .ok_or_else(|| ApiError::bad("page", "is too large"))?,
        };
        let (total, items) = store::search(self.platform.db(), &caller.tenant_id, &filter).await?;
        Ok(Reply::ok(AiKeyPage {
            total,
            items: items.iter().map(ai_key_json).collect(),
        }))
    }

    pub(crate) async fn update_ai_key(
        &self,
        caller: &Caller,
        id: &str,
        body: UpdateAiKey,
    ) -> Result<Reply> {
        let alias = not_null("alias", body.alias)?;
        let provider = not_null("provider", body.provider)?;
        let model = not_null("model", body.model)?;
        let api_key = not_null("api_key", body.api_key)?;
        let api_keys = not_null("api_keys", body.api_keys)?;
        let input_limit = not_null("input_limit", body.input_limit)?;
        let output_limit = not_null("output_limit", body.output_limit)?;
        let policy = not_null("usage_limit_policy", body.usage_limit_policy)?;
        let status = not_null("status", body.status)?;
        let rpm_limit = not_null("rpm_limit", body.rpm_limit)?;
        let tpm_limit = not_null("tpm_limit", body.tpm_limit)?;
        let token_budget = not_null("token_budget", body.token_budget)?;
        let budget_period = not_null("budget_period", body.budget_period)?;
        let nothing_sent = alias.is_none()
            && provider.is_none()
            && model.is_none()
            && api_key.is_none()
            && api_keys.is_none()
            && input_limit.is_none()
            && output_limit.is_none()
            && policy.is_none()
            && status.is_none()
            && rpm_limit.is_none()
            && tpm_limit.is_none()
            && token_budget.is_none()
            && budget_period.is_none()
            && body.expire_time.is_none();
        if nothing_sent {
            return Err(ApiError::BadRequest(format!(
                "Send at least one of {WRITABLE}"
            )));
        }
        let now = self.platform.now_ms();
        let new_status: Option<KeyStatus>;
        let mut changes = Changes {
            alias: alias.as_deref().map(check_alias).transpose()?,
            provider: provider
                .as_deref()
                .map(check_provider)
                .transpose()?
                .map(|f| f.name.clone()),
            model: model.as_deref().map(check_model_name).transpose()?,
            sealed: None,
            pool_hints: None,
            endpoint: None,
            input_limit: input_limit
                .map(|n| check_limit("input_limit", n))
                .transpose()?,
            output_limit: output_limit
                .map(|n| check_limit("output_limit", n))
                .transpose()?,
            usage_limit_policy: policy.as_deref().map(check_policy).transpose()?,
            rpm_limit: rpm_limit
                .map(|n| check_over_time("rpm_limit", n, RPM_MAX))
                .transpose()?,
            tpm_limit: tpm_limit
                .map(|n| check_over_time("tpm_limit", n, TPM_MAX))
                .transpose()?,
            token_budget: token_budget
                .map(|n| check_over_time("token_budget", n, BUDGET_MAX))
                .transpose()?,
            budget_period: budget_period.as_deref().map(check_period).transpose()?,
            // Checked here, in the order of the fields, and kept typed for the expiry rule below.
            status: {
                new_status = status
                    .as_deref()
                    .map(|s| check_status("status", s))
                    .transpose()?;
                new_status
            },
            expire_time: match body.expire_time {
                None => None,
                Some(None) => Some(None),
                Some(Some(s)) => Some(Some(check_expire_time(&s, now)?)),
            },
        };
        let api_key = check_pool(api_key, api_keys, false)?;

        let db = self.platform.db();
        let stored = store::get(db, &caller.tenant_id, id)
            .await?
            .ok_or_else(not_found)?;
        let moves = changes.provider.is_some() || changes.model.is_some();
        let expect = moves.then_some((stored.provider.as_str(), stored.model.as_str()));
        // Where the key would be bound now; resolved when the key is set or its model changes.
        let endpoint = if moves || api_key.is_some() {
            let p = changes.provider.as_deref().unwrap_or(&stored.provider);
            let factory = check_provider(p)?;
            let m = changes.model.as_deref().unwrap_or(&stored.model);
            Some(self.check_model(&caller.tenant_id, factory, m).await?)
        } else {
            None
        };
        let expires = changes.expire_time.unwrap_or(stored.expire_time);
        if new_status == Some(KeyStatus::Enabled) && expires.is_some_and(|t| t <= now) {
            return Err(ApiError::BadRequest(
                "expire_time is in the past: send a later expire_time (or null) to enable this key"
                    .into(),
            ));
        }
        let endpoint_note = match (&endpoint, &api_key) {
            // The stored key never follows a new provider or model to another endpoint.
            (Some(new), None) if *new != stored.endpoint => {
                return Err(ApiError::bad(
                    "api_key",
                    format!(
                        "this change moves the key from {} to {}; send its api_key again to \
                         bind it there",
                        endpoint_host(stored.endpoint.as_deref()),
                        endpoint_host(new.as_deref())
                    ),
                ))
            }
            (Some(new), Some(keys)) => {
                let (v, sealed, hint, hints) =
                    self.seal_pool(&caller.tenant_id, &stored.id, new.as_deref(), keys)?;
                changes.sealed = Some((v, sealed, hint));
                changes.pool_hints = hints;
                changes.endpoint.clone_from(new);
                (*new != stored.endpoint)
                    .then(|| endpoint_change(stored.endpoint.as_deref(), new.as_deref()))
            }
            _ => None,
        };

        let mut detail: Vec<String> = Vec::new();
        let mut note = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                detail.push(format!("{name}={v}"));
            }
        };
        note("alias", changes.alias.clone());
        note("provider", changes.provider.clone());
        note("model", changes.model.clone());
        note(
            "api_key",
            api_key.as_ref().map(|keys| match keys.len() {
                1 => "replaced".into(),
                n => format!("replaced pool_size={n}"),
            }),
        );
        note("endpoint", endpoint_note);
        note("input_limit", changes.input_limit.map(|n| n.to_string()));
        note("output_limit", changes.output_limit.map(|n| n.to_string()));
        note(
            "usage_limit_policy",
            changes.usage_limit_policy.map(|p| p.as_str().to_owned()),
        );
        note("rpm_limit", changes.rpm_limit.map(|n| n.to_string()));
        note("tpm_limit", changes.tpm_limit.map(|n| n.to_string()));
        note("token_budget", changes.token_budget.map(|n| n.to_string()));
        note(
            "budget_period",
            changes.budget_period.map(|p| p.as_str().to_owned()),
        );
        note("status", changes.status.map(|s| s.as_str().to_owned()));
        note(
            "expire_time",
            changes
                .expire_time
                .map(|t| t.map_or_else(|| "null".into(), rfc3339)),
        );

        let mut batch = Batch::new();
        let updated = batch
            .push(store::update(
                &caller.tenant_id,
                &stored.id,
                &changes,
                expect,
                now,
            ))
            .then_if_changed(audit::record_if_changed(
                now,
                audit::Actor::User(&caller.username),
                "ai_key.update",
                &stored.id,
                Some(&caller.tenant_id),
                &detail.join(" "),
            ))
            .handle();
        let done = batch
            .run(db)
            .await
            .map_err(|e| alias_conflict(e, changes.alias.as_deref()))?;
        if done.did_change(updated) {
            // Answer from what was read and changed: nothing may fail after the commit.
            return Ok(Reply::ok(ai_key_json(&changes.applied_to(&stored, now))));
        }
        // Nothing changed: the key is gone, or its provider/model moved under us.
        match store::get(db, &caller.tenant_id, &stored.id).await? {
            None => Err(not_found()),
            Some(_) => Err(ApiError::Conflict(
                "The key's provider or model was changed by another request meanwhile; nothing \
                 was changed, try again"
                    .into(),
            )),
        }
    }

    pub(crate) async fn delete_ai_key(&self, caller: &Caller, id: &str) -> Result<Reply> {
        let now = self.platform.now_ms();
        let mut batch = Batch::new();
        let deleted = batch
            .push(store::delete(&caller.tenant_id, id))
            .then_if_changed(audit::record_if_changed(
                now,
                audit::Actor::User(&caller.username),
                "ai_key.delete",
                id,
                Some(&caller.tenant_id),
                "",
            ))
            .handle();
        if !batch.run(self.platform.db()).await?.did_change(deleted) {
            return Err(not_found());
        }
        Ok(Reply::ok(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::MAX_SECRET_LEN;

    fn rejected<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn aliases_are_short_and_plain() {
        for ok in ["a", "prod-gpt4o", "A.b_c-9", &"x".repeat(ALIAS_MAX)] {
            assert_eq!(check_alias(ok).as_deref(), Ok(ok));
        }
        for (why, bad) in [
            ("empty", String::new()),
            ("too long", "x".repeat(ALIAS_MAX + 1)),
            ("space", "a b".into()),
            ("percent", "a%b".into()),
            ("quote", "a'b".into()),
            ("slash", "a/b".into()),
            ("non-ascii letter", "\u{0430}lias".into()),
            ("newline", "a\n".into()),
        ] {
            assert!(rejected(check_alias(&bad)).starts_with("alias: "), "{why}");
        }
    }

    #[test]
    fn providers_must_be_catalog_factories_that_take_a_key() {
        assert_eq!(
            check_provider("OpenAI").map(|f| f.name.as_str()),
            Ok("OpenAI")
        );
        assert!(rejected(check_provider("Builtin")).contains("take no API key"));
        assert!(rejected(check_provider("openai")).contains("unknown provider openai"));
        assert!(rejected(check_provider("")).starts_with("provider: "));
    }

    #[test]
    fn limits_are_bounded_and_zero_means_unlimited() {
        assert_eq!(check_limit("input_limit", 0), Ok(0));
        assert_eq!(check_limit("input_limit", LIMIT_MAX), Ok(LIMIT_MAX));
        for bad in [-1, LIMIT_MAX + 1, i64::MIN, i64::MAX] {
            assert!(rejected(check_limit("output_limit", bad)).starts_with("output_limit: "));
        }
    }

    #[test]
    fn limits_over_time_are_bounded_zero_means_none_and_periods_are_a_closed_set() {
        assert_eq!(check_over_time("rpm_limit", 0, RPM_MAX), Ok(0));
        assert_eq!(
            check_over_time("token_budget", BUDGET_MAX, BUDGET_MAX),
            Ok(BUDGET_MAX)
        );
        for bad in [-1, TPM_MAX + 1, i64::MIN] {
            assert_eq!(
                rejected(check_over_time("tpm_limit", bad, TPM_MAX)),
                "tpm_limit: must be 0 to 1000000000 (0 = none)"
            );
        }
        assert_eq!(check_period("week"), Ok(BudgetPeriod::Week));
        for bad in ["", "Month", "year", "monthly"] {
            assert_eq!(
                rejected(check_period(bad)),
                "budget_period: must be day, week, month or total"
            );
        }
    }

    #[test]
    fn api_key_errors_never_echo_the_key() {
        let long = "k".repeat(MAX_SECRET_LEN + 1);
        for bad in ["", "   ", "sk-abc\ndef", &long] {
            let m = rejected(check_api_key(bad));
            assert!(m.starts_with("api_key: "), "{m}");
            assert!(bad.trim().is_empty() || !m.contains(bad.trim()), "{m}");
        }
        assert_eq!(check_api_key("sk-okay1"), Ok("sk-okay1"));
        assert_eq!(
            rejected(check_api_key("sk-shor")),
            "api_key: must be at least 8 characters"
        );
    }

    #[test]
    fn expire_time_must_parse_and_lie_in_the_future() {
        let now = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            check_expire_time("2026-01-01T00:00:01Z", now),
            Ok(now + 1000)
        );
        assert_eq!(
            rejected(check_expire_time("2026-01-01T00:00:00Z", now)),
            "expire_time is in the past"
        );
        assert!(rejected(check_expire_time("tomorrow", now)).starts_with("expire_time: "));
    }
}
