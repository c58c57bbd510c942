//! SQL for provider connections and their per-model usage counters.

use super::{Batch, CallerTenant, Db, DbError, Fold, Pushed, Row, RowExt, Stmt};
use crate::caller_tenant;
use crate::catalog::ModelType;
use crate::domain::states::ConnectionStatus;
use crate::stmt;

/// One provider connection row. `credential` is sealed; it is opened only to call the provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub id: String,
    pub tenant_id: String,
    pub factory: String,
    /// `""` for a whole-organization connection.
    pub llm_name: String,
    pub model_type: Option<ModelType>,
    pub api_base: Option<String>,
    /// Non-secret provider fields as a JSON object (deployment, api_version, project_id, ...).
    pub settings: String,
    pub key_version: Option<i64>,
    pub credential: Option<String>,
    pub credential_hint: Option<String>,
    pub max_tokens: Option<i64>,
    pub status: ConnectionStatus,
    pub create_date: i64,
    pub update_date: i64,
}

/// Every column of `provider_connections`, in the order INSERT binds them; every SELECT and
/// INSERT of the table uses this list (a literal, so it can be `concat!`ed into `&'static str` SQL).
macro_rules! columns {
    () => {
        "id, tenant_id, factory, llm_name, model_type, api_base, settings, key_version, credential, \
         credential_hint, max_tokens, status, create_date, update_date"
    };
}

fn from_row(r: &Row) -> Result<Connection, DbError> {
    Ok(Connection {
        id: r.text("id")?,
        tenant_id: r.text("tenant_id")?,
        factory: r.text("factory")?,
        llm_name: r.text("llm_name")?,
        model_type: r.closed_opt("model_type")?,
        api_base: r.text_opt("api_base")?,
        settings: r.text("settings")?,
        key_version: r.int_opt("key_version")?,
        credential: r.text_opt("credential")?,
        credential_hint: r.text_opt("credential_hint")?,
        max_tokens: r.int_opt("max_tokens")?,
        status: r.closed("status")?,
        create_date: r.int("create_date")?,
        update_date: r.int("update_date")?,
    })
}

/// Insert, or replace the credential and fields of the same (tenant, factory, model), keeping the
/// row (and so the defaults and usage that point at it). `seen` is what the caller read before:
/// `Some(api_base)` of the row it saw (the update applies only while the row still has that base,
/// so the audited old endpoint is the one replaced), `None` when it saw no row (a row inserted
/// meanwhile is left alone). Either way a lost race changes no row. A new row is written only
/// while the tenant holds fewer than `max_new` connections (counted in the same statement, so
/// concurrent adds cannot overshoot); at the limit no row changes either.
pub fn upsert(c: &Connection, seen: Option<Option<&str>>, max_new: i64) -> Stmt {
    stmt!(
        concat!(
            "INSERT INTO provider_connections (",
            columns!(),
            ") SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14 \
         WHERE ?15 = 1 OR (SELECT COUNT(*) FROM provider_connections WHERE tenant_id = ?2) < ?17 \
         ON CONFLICT(tenant_id, factory, llm_name) DO UPDATE SET model_type = excluded.model_type, \
         api_base = excluded.api_base, settings = excluded.settings, key_version = excluded.key_version, \
         credential = excluded.credential, credential_hint = excluded.credential_hint, \
         max_tokens = excluded.max_tokens, status = excluded.status, update_date = excluded.update_date \
         WHERE ?15 = 1 AND provider_connections.api_base IS ?16"
        ),
        &c.id,
        &c.tenant_id,
        &c.factory,
        &c.llm_name,
        c.model_type.map(ModelType::as_str),
        c.api_base.as_deref(),
        &c.settings,
        c.key_version,
        c.credential.as_deref(),
        c.credential_hint.as_deref(),
        c.max_tokens,
        c.status.as_str(),
        c.create_date,
        c.update_date,
        i64::from(seen.is_some()),
        seen.flatten(),
        max_new
    )
}

/// One connection of a tenant by id (a primary-key read).
pub async fn get(db: &impl Db, tenant_id: &str, id: &str) -> Result<Option<Connection>, DbError> {
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                columns!(),
                " FROM provider_connections WHERE id = ?2 AND tenant_id = ?1"
            ),
            tenant_id,
            id
        ))
        .await?;
    super::decode_first(&rows, from_row)
}

/// A tenant's connections.
pub async fn list_for_tenant(db: &impl Db, tenant_id: &str) -> Result<Vec<Connection>, DbError> {
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                columns!(),
                " FROM provider_connections WHERE tenant_id = ?1 ORDER BY factory, llm_name"
            ),
            tenant_id
        ))
        .await?;
    super::decode_all(&rows, from_row)
}

/// The tenant's connections among `ids` (primary-key reads), ordered like [`list_for_tenant`].
pub async fn get_by_ids(
    db: &impl Db,
    tenant_id: &str,
    ids: &[String; 2],
) -> Result<Vec<Connection>, DbError> {
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                columns!(),
                " FROM provider_connections WHERE id IN (?2, ?3) AND tenant_id = ?1 \
             ORDER BY factory, llm_name"
            ),
            tenant_id,
            &ids[0],
            &ids[1]
        ))
        .await?;
    super::decode_all(&rows, from_row)
}

/// Decode connection rows (of any statement selecting every column of the table).
pub fn decode(rows: &[Row]) -> Result<Vec<Connection>, DbError> {
    super::decode_all(rows, from_row)
}

/// [`list_for_tenant`] of the caller's tenant, to batch with the caller's verification.
pub fn list_for_caller(t: &CallerTenant) -> Stmt {
    t.stmt(
        concat!(
            "SELECT ",
            columns!(),
            " FROM provider_connections WHERE tenant_id = ",
            caller_tenant!(),
            " ORDER BY factory, llm_name"
        ),
        [],
    )
}

/// The caller's connections that can provide `name` of `factory`: its own row and the factory's
/// organization row (the rows [`get_by_ids`] reads for their ids), ordered like it.
pub fn named_for_caller(t: &CallerTenant, factory: &str, name: &str) -> Stmt {
    t.stmt(
        concat!(
            "SELECT ",
            columns!(),
            " FROM provider_connections WHERE tenant_id = ",
            caller_tenant!(),
            " AND factory = ?5 AND llm_name IN (?6, '') ORDER BY factory, llm_name"
        ),
        [factory.into(), name.into()],
    )
}

/// The caller's connections that can provide a model called `name` of any factory (every
/// organization row, and the single-model rows of that name), ordered like [`list_for_tenant`];
/// none when the tenant has a gateway key with `name` as its alias (the relay calls that instead).
pub fn bare_for_caller(t: &CallerTenant, name: &str) -> Stmt {
    t.stmt(
        concat!(
            "SELECT ",
            columns!(),
            " FROM provider_connections WHERE tenant_id = ",
            caller_tenant!(),
            " AND llm_name IN ('', ?5) AND NOT EXISTS (SELECT 1 FROM ai_keys a WHERE a.tenant_id = ",
            caller_tenant!(),
            " AND a.alias = ?5) ORDER BY factory, llm_name"
        ),
        [name.into()],
    )
}

/// The connections that can provide the model of the caller's gateway key `alias` (its
/// provider's organization row and the model's own row), ordered like [`get_by_ids`].
pub fn for_alias_of_caller(t: &CallerTenant, alias: &str) -> Stmt {
    t.stmt(
        concat!(
            "SELECT c.* FROM ai_keys a JOIN provider_connections c ON c.tenant_id = a.tenant_id \
             AND c.factory = a.provider AND c.llm_name IN (a.model, '') WHERE a.tenant_id = ",
            caller_tenant!(),
            " AND a.alias = ?5 ORDER BY c.factory, c.llm_name"
        ),
        [alias.into()],
    )
}

/// The connections that can provide the caller's tenant's default model of `model_type`,
/// ordered like [`get_by_ids`].
pub fn for_default_of_caller(t: &CallerTenant, model_type: ModelType) -> Stmt {
    t.stmt(
        concat!(
            "SELECT c.* FROM tenant_defaults d JOIN provider_connections c \
             ON c.tenant_id = d.tenant_id AND c.factory = d.factory AND c.llm_name IN (d.llm_name, '') \
             WHERE d.tenant_id = ",
            caller_tenant!(),
            " AND d.model_type = ?5 ORDER BY c.factory, c.llm_name"
        ),
        [model_type.as_str().into()],
    )
}

/// Tokens used per (connection, model) for one tenant.
pub async fn usage_for_tenant(
    db: &impl Db,
    tenant_id: &str,
) -> Result<Vec<(String, String, i64)>, DbError> {
    let rows = db
        .query(stmt!(
            "SELECT u.connection_id, u.llm_name, u.used_token FROM model_usage u \
             JOIN provider_connections c ON c.id = u.connection_id WHERE c.tenant_id = ?1",
            tenant_id
        ))
        .await?;
    super::decode_all(&rows, |r| {
        Ok((
            r.text("connection_id")?,
            r.text("llm_name")?,
            r.int("used_token")?,
        ))
    })
}

/// Add tokens to a model's counter.
/// How many connections a tenant holds.
pub async fn count(db: &impl Db, tenant_id: &str) -> Result<i64, DbError> {
    let rows = db
        .query(stmt!(
            "SELECT COUNT(*) AS n FROM provider_connections WHERE tenant_id = ?1",
            tenant_id
        ))
        .await?;
    rows.first().map_or(Ok(0), |r| r.int("n"))
}

pub fn add_usage(connection_id: &str, llm_name: &str, tokens: i64) -> Stmt {
    stmt!(
        "INSERT INTO model_usage (connection_id, llm_name, used_token) VALUES (?1, ?2, ?3) \
         ON CONFLICT(connection_id, llm_name) DO UPDATE SET used_token = used_token + excluded.used_token",
        connection_id,
        llm_name,
        tokens
    )
    .folding(&Fold {
        sum: &[2],
        max: &[],
    })
}

/// Remove connections of a factory (all of them when `llm_name` is `None`, else that model's row)
/// with the defaults and usage that hang off them, into `batch`; returns the connections delete.
pub fn delete<'b>(
    batch: &'b mut Batch,
    tenant_id: &str,
    factory: &str,
    llm_name: Option<&str>,
) -> Pushed<'b> {
    batch.extend([
        stmt!(
            "DELETE FROM tenant_defaults WHERE connection_id IN (SELECT id FROM provider_connections \
             WHERE tenant_id = ?1 AND factory = ?2 AND (?3 IS NULL OR llm_name = ?3))",
            tenant_id,
            factory,
            llm_name
        ),
        stmt!(
            "DELETE FROM model_usage WHERE connection_id IN (SELECT id FROM provider_connections \
             WHERE tenant_id = ?1 AND factory = ?2 AND (?3 IS NULL OR llm_name = ?3))",
            tenant_id,
            factory,
            llm_name
        ),
    ]);
    batch.push(stmt!(
        "DELETE FROM provider_connections WHERE tenant_id = ?1 AND factory = ?2 \
         AND (?3 IS NULL OR llm_name = ?3)",
        tenant_id,
        factory,
        llm_name
    ))
}
