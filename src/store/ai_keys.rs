//! SQL for gateway keys (`ai_keys`): create, read, search, update, delete, plus the usage counter
//! the relay bumps and the expiry sweep the cron runs. Every read and write of the API is scoped by
//! tenant; the relay's and cron's statements address rows by id or by time only.

use super::{CallerTenant, Db, DbError, Fold, Row, RowExt, Stmt};
use crate::caller_tenant;
use crate::domain::states::{BudgetPeriod, KeyStatus, UsagePolicy};
use crate::stmt;

/// One gateway key row. `api_key` is sealed (AES-256-GCM, see `domain::crypto`); only
/// `api_key_hint` and `pool_hints` may be shown.
#[derive(Debug, Clone, PartialEq)]
pub struct AiKey {
    pub id: String,
    pub tenant_id: String,
    pub alias: String,
    pub provider: String,
    pub model: String,
    pub status: KeyStatus,
    /// The master key version that sealed `api_key`.
    pub key_version: i64,
    /// Sealed: base64 of nonce || ciphertext || tag.
    pub api_key: String,
    /// The hint of the pool's first key.
    pub api_key_hint: String,
    /// A pool of more than one key: the JSON array of every member's hint, in priority order, and
    /// `api_key` seals the JSON array of their keys. `None`: a pool of one, `api_key` its key.
    pub pool_hints: Option<String>,
    /// The pool index of the key that served the last relay call.
    pub served_by: Option<i64>,
    /// The JSON array of relay calls each pool member served; `None`: none yet.
    pub served_counts: Option<String>,
    /// The provider base URL `api_key` was sealed for (it is in the sealed data's associated
    /// data); the relay sends the key there and nowhere else. `None`: a row stored before keys
    /// were bound, which the relay refuses until its key is set again.
    pub endpoint: Option<String>,
    /// Tokens per request, 0 = unlimited.
    pub input_limit: i64,
    /// Tokens per request, 0 = unlimited.
    pub output_limit: i64,
    pub usage_limit_policy: UsagePolicy,
    /// Limits over time, 0 = none (counted by the key's Durable Object).
    pub rpm_limit: i64,
    pub tpm_limit: i64,
    pub token_budget: i64,
    pub budget_period: BudgetPeriod,
    pub expire_time: Option<i64>,
    pub used_input_tokens: i64,
    pub used_output_tokens: i64,
    pub last_used_at: Option<i64>,
    pub create_date: i64,
    pub update_date: i64,
}

impl AiKey {
    /// The hints of the pool's keys, in priority order (a pool of one: `api_key_hint`). A stored
    /// list that does not read falls back to the first key's hint.
    pub fn hints(&self) -> Vec<String> {
        self.pool_hints
            .as_deref()
            .and_then(|h| serde_json::from_str::<Vec<String>>(h).ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| vec![self.api_key_hint.clone()])
    }

    /// The relay calls each pool member served, by index (missing entries are 0).
    pub fn served_counts(&self) -> Vec<i64> {
        self.served_counts
            .as_deref()
            .and_then(|c| serde_json::from_str::<Vec<i64>>(c).ok())
            .unwrap_or_default()
    }
}

/// Every column of `ai_keys`, in the order INSERT binds them; every SELECT and INSERT uses it, as a literal so it can be `concat!`ed into `&'static str` SQL.
macro_rules! columns {
    () => {
        "id, tenant_id, alias, provider, model, status, key_version, api_key, api_key_hint, \
         input_limit, output_limit, usage_limit_policy, expire_time, used_input_tokens, \
         used_output_tokens, last_used_at, create_date, update_date, endpoint, pool_hints, \
         served_by, served_counts, rpm_limit, tpm_limit, token_budget, budget_period"
    };
}

/// The WHERE clause of a search: tenant, optional substring of alias or provider (ASCII case
/// folded), optional exact provider and status. `instr` matches the term literally, so `%`, `_`
/// and `\` are plain characters, and unlike `LIKE` it has no pattern-length limit (D1 refuses
/// LIKE patterns over 50 bytes).
macro_rules! search_where {
    () => {
        " FROM ai_keys WHERE tenant_id = ?1 \
         AND (?2 IS NULL OR instr(lower(alias), lower(?2)) > 0 OR instr(lower(provider), lower(?2)) > 0) \
         AND (?3 IS NULL OR provider = ?3) AND (?4 IS NULL OR status = ?4)"
    };
}

fn from_row(r: &Row) -> Result<AiKey, DbError> {
    Ok(AiKey {
        id: r.text("id")?,
        tenant_id: r.text("tenant_id")?,
        alias: r.text("alias")?,
        provider: r.text("provider")?,
        model: r.text("model")?,
        status: r.closed("status")?,
        key_version: r.int("key_version")?,
        api_key: r.text("api_key")?,
        api_key_hint: r.text("api_key_hint")?,
        endpoint: r.text_opt("endpoint")?,
        pool_hints: r.text_opt("pool_hints")?,
        served_by: r.int_opt("served_by")?,
        served_counts: r.text_opt("served_counts")?,
        input_limit: r.int("input_limit")?,
        output_limit: r.int("output_limit")?,
        usage_limit_policy: r.closed("usage_limit_policy")?,
        rpm_limit: r.int("rpm_limit")?,
        tpm_limit: r.int("tpm_limit")?,
        token_budget: r.int("token_budget")?,
        budget_period: r.closed("budget_period")?,
        expire_time: r.int_opt("expire_time")?,
        used_input_tokens: r.int("used_input_tokens")?,
        used_output_tokens: r.int("used_output_tokens")?,
        last_used_at: r.int_opt("last_used_at")?,
        create_date: r.int("create_date")?,
        update_date: r.int("update_date")?,
    })
}

/// A new key, written only while its tenant holds fewer than `max_keys` gateway keys. The count
/// and the insert are one statement, so concurrent creations cannot overshoot (D1 runs a
/// database's statements one at a time); changes 0 rows at the limit. The `(tenant_id, alias)`
/// UNIQUE constraint is the arbiter of duplicate aliases, so of two concurrent inserts exactly one
/// succeeds.
pub fn insert_within_limit(k: &AiKey, max_keys: i64) -> Stmt {
    stmt!(
        concat!(
            "INSERT INTO ai_keys (",
            columns!(),
            ") SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
             ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26 \
             WHERE (SELECT COUNT(*) FROM ai_keys WHERE tenant_id = ?2) < ?27"
        ),
        &k.id,
        &k.tenant_id,
        &k.alias,
        &k.provider,
        &k.model,
        k.status.as_str(),
        k.key_version,
        &k.api_key,
        &k.api_key_hint,
        k.input_limit,
        k.output_limit,
        k.usage_limit_policy.as_str(),
        k.expire_time,
        k.used_input_tokens,
        k.used_output_tokens,
        k.last_used_at,
        k.create_date,
        k.update_date,
        k.endpoint.as_deref(),
        k.pool_hints.as_deref(),
        k.served_by,
        k.served_counts.as_deref(),
        k.rpm_limit,
        k.tpm_limit,
        k.token_budget,
        k.budget_period.as_str(),
        max_keys
    )
}

/// One key of a tenant by id; another tenant's id is `None`.
pub async fn get(db: &impl Db, tenant_id: &str, id: &str) -> Result<Option<AiKey>, DbError> {
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                columns!(),
                " FROM ai_keys WHERE tenant_id = ?1 AND id = ?2"
            ),
            tenant_id,
            id
        ))
        .await?;
    super::decode_first(&rows, from_row)
}

/// One key of a tenant by its alias (unique within the tenant); the relay resolves `model` with it.
pub async fn get_by_alias(
    db: &impl Db,
    tenant_id: &str,
    alias: &str,
) -> Result<Option<AiKey>, DbError> {
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                columns!(),
                " FROM ai_keys WHERE tenant_id = ?1 AND alias = ?2"
            ),
            tenant_id,
            alias
        ))
        .await?;
    super::decode_first(&rows, from_row)
}

/// [`get_by_alias`] in the caller's tenant, to batch with the caller's verification.
pub fn by_alias_for_caller(t: &CallerTenant, alias: &str) -> Stmt {
    t.stmt(
        concat!(
            "SELECT ",
            columns!(),
            " FROM ai_keys WHERE tenant_id = ",
            caller_tenant!(),
            " AND alias = ?5"
        ),
        [alias.into()],
    )
}

/// The first `limit` keys of the caller's tenant with `status`, in [`search`]'s order: the
/// relay's model list, batched with the caller's verification.
pub fn page_for_caller(t: &CallerTenant, status: KeyStatus, limit: i64) -> Stmt {
    t.stmt(
        concat!(
            "SELECT ",
            columns!(),
            " FROM ai_keys WHERE tenant_id = ",
            caller_tenant!(),
            " AND status = ?5 ORDER BY create_date DESC, alias LIMIT ?6"
        ),
        [status.as_str().into(), limit.into()],
    )
}

/// Decode gateway key rows (of any statement selecting every column of the table).
pub fn decode(rows: &[Row]) -> Result<Vec<AiKey>, DbError> {
    super::decode_all(rows, from_row)
}

/// What a list asks for. `search` is the raw term; it is escaped here, so `%` and `_` match
/// themselves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub search: Option<String>,
    pub provider: Option<String>,
    pub status: Option<KeyStatus>,
    /// Rows to return (the page size).
    pub limit: i64,
    /// Rows to skip.
    pub offset: i64,
}

/// `(total matching, this page)`, newest first (ties by alias, which is unique per tenant, so
/// pages never overlap or skip).
pub async fn search(
    db: &impl Db,
    tenant_id: &str,
    f: &Filter,
) -> Result<(i64, Vec<AiKey>), DbError> {
    let total = count(db, tenant_id, f).await?;
    Ok((total, page(db, tenant_id, f).await?))
}

/// How many keys match `f` (its limit and offset aside).
async fn count(db: &impl Db, tenant_id: &str, f: &Filter) -> Result<i64, DbError> {
    db.query(stmt!(
        concat!("SELECT COUNT(*) AS n", search_where!()),
        tenant_id,
        f.search.as_deref(),
        f.provider.as_deref(),
        f.status.map(KeyStatus::as_str)
    ))
    .await?
    .first()
    .ok_or_else(|| DbError::Decode("COUNT(*) returned no row".into()))?
    .int("n")
}

/// One page of the keys matching `f`, in [`search`]'s order, without counting them (the relay's
/// model list needs no total).
pub async fn page(db: &impl Db, tenant_id: &str, f: &Filter) -> Result<Vec<AiKey>, DbError> {
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                columns!(),
                search_where!(),
                " ORDER BY create_date DESC, alias LIMIT ?5 OFFSET ?6"
            ),
            tenant_id,
            f.search.as_deref(),
            f.provider.as_deref(),
            f.status.map(KeyStatus::as_str),
            f.limit,
            f.offset
        ))
        .await?;
    super::decode_all(&rows, from_row)
}

/// The fields a PUT changes; `None` leaves a column as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub alias: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub status: Option<KeyStatus>,
    /// A new sealed key (or pool) with its version and hint; all three change together, with
    /// `pool_hints`, and the served counters start again.
    pub sealed: Option<(i64, String, String)>,
    /// The new pool's hints (JSON), `None` for a pool of one; used only together with `sealed`.
    pub pool_hints: Option<String>,
    /// The endpoint a new sealed key is bound to; set only together with `sealed`.
    pub endpoint: Option<String>,
    pub input_limit: Option<i64>,
    pub output_limit: Option<i64>,
    pub usage_limit_policy: Option<UsagePolicy>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub token_budget: Option<i64>,
    pub budget_period: Option<BudgetPeriod>,
    /// `Some(None)` clears the expiry.
    pub expire_time: Option<Option<i64>>,
}

impl Changes {
    /// The record as it is once these changes are applied to `k` at `now`.
    pub fn applied_to(&self, k: &AiKey, now: i64) -> AiKey {
        let mut out = k.clone();
        let set = |dst: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                dst.clone_from(v);
            }
        };
        set(&mut out.alias, &self.alias);
        set(&mut out.provider, &self.provider);
        set(&mut out.model, &self.model);
        if let Some(s) = self.status {
            out.status = s;
        }
        if let Some(p) = self.usage_limit_policy {
            out.usage_limit_policy = p;
        }
        if let Some((v, sealed, hint)) = &self.sealed {
            out.key_version = *v;
            out.api_key.clone_from(sealed);
            out.api_key_hint.clone_from(hint);
            out.endpoint.clone_from(&self.endpoint);
            out.pool_hints.clone_from(&self.pool_hints);
            out.served_by = None;
            out.served_counts = None;
        }
        out.input_limit = self.input_limit.unwrap_or(out.input_limit);
        out.output_limit = self.output_limit.unwrap_or(out.output_limit);
        out.rpm_limit = self.rpm_limit.unwrap_or(out.rpm_limit);
        out.tpm_limit = self.tpm_limit.unwrap_or(out.tpm_limit);
        out.token_budget = self.token_budget.unwrap_or(out.token_budget);
        out.budget_period = self.budget_period.unwrap_or(out.budget_period);
        out.expire_time = self.expire_time.unwrap_or(out.expire_time);
        out.update_date = now;
        out
    }
}

/// Change only the given columns of a tenant's key, so concurrent updates of other fields (and the
/// relay's usage counters) are never overwritten. With `expect = Some((provider, model))` the row
/// changes only if it still has that pair, so a provider/model combination validated against the
/// row just read cannot be combined with a different one written meanwhile.
pub fn update(
    tenant_id: &str,
    id: &str,
    c: &Changes,
    expect: Option<(&str, &str)>,
    now: i64,
) -> Stmt {
    let (version, sealed, hint) = match &c.sealed {
        Some((v, s, h)) => (Some(*v), Some(s.as_str()), Some(h.as_str())),
        None => (None, None, None),
    };
    stmt!(
        "UPDATE ai_keys SET alias = COALESCE(?3, alias), provider = COALESCE(?4, provider), \
         model = COALESCE(?5, model), status = COALESCE(?6, status), \
         key_version = COALESCE(?7, key_version), api_key = COALESCE(?8, api_key), \
         api_key_hint = COALESCE(?9, api_key_hint), input_limit = COALESCE(?10, input_limit), \
         output_limit = COALESCE(?11, output_limit), \
         usage_limit_policy = COALESCE(?12, usage_limit_policy), \
         expire_time = CASE WHEN ?13 = 1 THEN ?14 ELSE expire_time END, update_date = ?15, \
         endpoint = CASE WHEN ?8 IS NULL THEN endpoint ELSE ?18 END, \
         pool_hints = CASE WHEN ?8 IS NULL THEN pool_hints ELSE ?19 END, \
         served_by = CASE WHEN ?8 IS NULL THEN served_by ELSE NULL END, \
         served_counts = CASE WHEN ?8 IS NULL THEN served_counts ELSE NULL END, \
         rpm_limit = COALESCE(?20, rpm_limit), tpm_limit = COALESCE(?21, tpm_limit), \
         token_budget = COALESCE(?22, token_budget), \
         budget_period = COALESCE(?23, budget_period) \
         WHERE tenant_id = ?1 AND id = ?2 AND (?16 IS NULL OR (provider = ?16 AND model = ?17))",
        tenant_id,
        id,
        c.alias.as_deref(),
        c.provider.as_deref(),
        c.model.as_deref(),
        c.status.map(KeyStatus::as_str),
        version,
        sealed,
        hint,
        c.input_limit,
        c.output_limit,
        c.usage_limit_policy.map(UsagePolicy::as_str),
        i64::from(c.expire_time.is_some()),
        c.expire_time.flatten(),
        now,
        expect.map(|e| e.0),
        expect.map(|e| e.1),
        c.endpoint.as_deref(),
        c.pool_hints.as_deref(),
        c.rpm_limit,
        c.tpm_limit,
        c.token_budget,
        c.budget_period.map(BudgetPeriod::as_str)
    )
}

/// Delete a tenant's key; changes no row for another tenant's id.
pub fn delete(tenant_id: &str, id: &str) -> Stmt {
    stmt!(
        "DELETE FROM ai_keys WHERE tenant_id = ?1 AND id = ?2",
        tenant_id,
        id
    )
}

/// Which member of a pool of `size` keys served a call (`index` counts from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedBy {
    pub index: usize,
    pub size: usize,
}

/// Add one call's tokens, stamp last_used_at (never moving it backwards) and count the call for
/// the pool member that served it. Negative counts are taken as 0, so a buggy caller cannot wind
/// a counter back. The member's count is set in place (`json_set` on the stored array, or on
/// `size` zeros when there is none yet), so concurrent calls never lose each other's counts; an
/// index past the stored array (the pool was replaced meanwhile) changes no count. The JSON path
/// is bound as text made here: D1 binds every number as a JavaScript number, so `'$[' || ?5 || ']'`
/// would read `$[1.0]`, which SQLite refuses as a bad path.
pub fn add_usage(
    id: &str,
    input_tokens: i64,
    output_tokens: i64,
    now: i64,
    served: ServedBy,
) -> Stmt {
    add_usage_calls(id, input_tokens, output_tokens, now, served, 1)
}

/// [`add_usage`] for `calls` calls at once (a flush of gathered usage), the last at `now`. The
/// count is cast: D1 binds it as a JavaScript number, which `json_set` would store as `40.0`.
pub fn add_usage_calls(
    id: &str,
    input_tokens: i64,
    output_tokens: i64,
    now: i64,
    served: ServedBy,
    calls: i64,
) -> Stmt {
    let zeros = format!("[{}]", vec!["0"; served.size.max(1)].join(","));
    let path = format!("$[{}]", served.index);
    stmt!(
        "UPDATE ai_keys SET used_input_tokens = used_input_tokens + MAX(?2, 0), \
         used_output_tokens = used_output_tokens + MAX(?3, 0), \
         last_used_at = MAX(COALESCE(last_used_at, ?4), ?4), served_by = ?5, \
         served_counts = json_set(COALESCE(served_counts, ?6), ?7, \
           COALESCE(json_extract(COALESCE(served_counts, ?6), ?7), 0) + CAST(MAX(?8, 0) AS INTEGER)) \
         WHERE id = ?1",
        id,
        input_tokens,
        output_tokens,
        now,
        served.index as i64,
        zeros,
        path,
        calls
    )
    // Tokens and calls add up, the last use is the latest; the same key and member.
    .folding(&Fold {
        sum: &[1, 2, 7],
        max: &[3],
    })
}

/// Disable up to `chunk` enabled keys whose expire_time has passed (the cron calls it; idempotent).
/// A key expires at its `expire_time` (the API refuses an `expire_time` at or before now), so
/// `expire_time <= now` has passed. Oldest expiries go first; the partial index `ai_keys_expire`
/// serves the inner query.
/// The key's limits over time, as its ledger applies them (a key's follow its policy).
impl AiKey {
    pub fn limits(&self) -> crate::limits::Limits {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        crate::limits::Limits {
            rpm: n(self.rpm_limit),
            tpm: n(self.tpm_limit),
            budget: n(self.token_budget),
            period: self.budget_period,
            policy: self.usage_limit_policy,
        }
    }
}

pub fn disable_expired(now: i64, chunk: i64) -> Stmt {
    stmt!(
        "UPDATE ai_keys SET status = 'disabled', update_date = ?1 WHERE id IN (SELECT id FROM ai_keys \
         WHERE expire_time IS NOT NULL AND expire_time <= ?1 AND status = 'enabled' \
         ORDER BY expire_time LIMIT ?2)",
        now,
        chunk
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_matches_by_substring_without_like_patterns() {
        // LIKE would give `%` and `_` meaning and hit D1's 50-byte pattern limit.
        assert!(!search_where!().contains("LIKE"));
        assert!(search_where!().contains("instr(lower(alias), lower(?2))"));
    }

    #[test]
    fn add_usage_binds_the_members_json_path_as_text_never_as_a_number() {
        let s = add_usage("i", 1, 2, 3, ServedBy { index: 2, size: 3 });
        assert!(!s.sql.contains("'$['"), "no path built from a bound number");
        assert_eq!(s.params[5], super::super::Value::Text("[0,0,0]".into()));
        assert_eq!(s.params[6], super::super::Value::Text("$[2]".into()));
    }

    #[test]
    fn a_flush_adds_its_calls_to_the_served_counts_as_an_integer_even_from_a_float() {
        let s = add_usage_calls("i", 1, 2, 3, ServedBy { index: 0, size: 1 }, 40);
        assert!(s.sql.contains("CAST(MAX(?8, 0) AS INTEGER)"), "{}", s.sql);
        assert_eq!(s.params[7], super::super::Value::Int(40));
    }

    #[test]
    fn update_binds_every_value_and_splices_none() {
        let c = Changes {
            alias: Some("a'; DROP TABLE ai_keys; --".into()),
            expire_time: Some(None),
            ..Changes::default()
        };
        let s = update("t", "i", &c, None, 5);
        assert!(!s.sql.contains("DROP"));
        assert_eq!(s.params.len(), 23);
        assert_eq!(s.params[12], super::super::Value::Int(1));
        assert_eq!(s.params[13], super::super::Value::Null);
    }
}
