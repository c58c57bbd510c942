//! SQL for tenants.

use super::{Batch, Db, DbError, Pushed, Row, RowExt, Stmt};
use crate::limits::Limits;
use crate::stmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub create_date: i64,
    /// Limits over the whole tenant (counted by the tenant's Durable Object); a new tenant has
    /// none.
    pub limits: Limits,
}

/// Every column of `tenants` the code reads and inserts, in INSERT's order (`defaults_version`
/// is the database's own: it starts at its default and only `defaults::bump_version` moves it).
/// The limits columns start at their defaults (none) and only [`set_limits`] moves them.
macro_rules! columns {
    () => {
        "id, name, create_date"
    };
}

/// What a read selects: [`columns`] and the limits.
macro_rules! read_columns {
    () => {
        "id, name, create_date, rpm_limit, tpm_limit, token_budget, budget_period, \
         usage_limit_policy"
    };
}

/// The limits columns of a row (of `tenants`, or of a join that selects them under these names).
pub fn limits_from_row(r: &Row) -> Result<Limits, DbError> {
    let n = |c: &str| r.int(c).map(|v| u64::try_from(v).unwrap_or(0));
    Ok(Limits {
        rpm: n("rpm_limit")?,
        tpm: n("tpm_limit")?,
        budget: n("token_budget")?,
        period: r.closed("budget_period")?,
        policy: r.closed("usage_limit_policy")?,
    })
}

fn from_row(r: &Row) -> Result<Tenant, DbError> {
    Ok(Tenant {
        id: r.text("id")?,
        name: r.text("name")?,
        create_date: r.int("create_date")?,
        limits: limits_from_row(r)?,
    })
}

/// Set a tenant's limits over time; changes no row for an unknown id.
pub fn set_limits(id: &str, l: &Limits) -> Stmt {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    stmt!(
        "UPDATE tenants SET rpm_limit = ?2, tpm_limit = ?3, token_budget = ?4, \
         budget_period = ?5, usage_limit_policy = ?6 WHERE id = ?1",
        id,
        n(l.rpm),
        n(l.tpm),
        n(l.budget),
        l.period.as_str(),
        l.policy.as_str()
    )
}

pub fn insert(t: &Tenant) -> Stmt {
    stmt!(
        concat!("INSERT INTO tenants (", columns!(), ") VALUES (?1, ?2, ?3)"),
        &t.id,
        &t.name,
        t.create_date
    )
}

pub async fn get(db: &impl Db, id: &str) -> Result<Option<Tenant>, DbError> {
    let rows = db
        .query(stmt!(
            concat!("SELECT ", read_columns!(), " FROM tenants WHERE id = ?1"),
            id
        ))
        .await?;
    super::decode_first(&rows, from_row)
}

/// Up to `limit` tenants in creation order, after the one with sort key `after`
/// (`(create_date, id)`); the `tenants_created` index serves it.
pub async fn list(
    db: &impl Db,
    after: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<Tenant>, DbError> {
    let (at, id) = after.unzip();
    // A range the index seeks to on every page (`?1 IS NULL OR ...` would make SQLite walk the
    // index from its start, reading every earlier row again on each later page).
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                read_columns!(),
                " FROM tenants \
             WHERE (create_date, id) > (COALESCE(?1, -9223372036854775807), COALESCE(?2, '')) \
             ORDER BY create_date, id LIMIT ?3"
            ),
            at,
            id,
            limit
        ))
        .await?;
    super::decode_all(&rows, from_row)
}

/// Add to `batch` the statements removing a tenant and everything it owns, children first;
/// returns the delete of the tenant row. Sealed credentials go with their rows, so nothing of the
/// tenant stays decryptable.
pub fn delete<'b>(batch: &'b mut Batch, id: &str) -> Pushed<'b> {
    batch.extend([
        stmt!("DELETE FROM tenant_defaults WHERE tenant_id = ?1", id),
        stmt!("DELETE FROM tenant_webhooks WHERE tenant_id = ?1", id),
        stmt!("DELETE FROM usage_buckets WHERE tenant_id = ?1", id),
        stmt!(
            "DELETE FROM model_usage WHERE connection_id IN \
             (SELECT id FROM provider_connections WHERE tenant_id = ?1)",
            id
        ),
        stmt!("DELETE FROM provider_connections WHERE tenant_id = ?1", id),
        stmt!("DELETE FROM ai_keys WHERE tenant_id = ?1", id),
        stmt!("DELETE FROM api_keys WHERE tenant_id = ?1", id),
        stmt!("DELETE FROM users WHERE tenant_id = ?1", id),
    ]);
    batch.push(stmt!("DELETE FROM tenants WHERE id = ?1", id))
}
