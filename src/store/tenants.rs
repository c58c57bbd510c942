//! SQL for tenants.

use super::{Batch, Db, DbError, Pushed, Row, RowExt, Stmt};
use crate::stmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub create_date: i64,
}

fn from_row(r: &Row) -> Tenant {
    Tenant {
        id: r.text("id").unwrap_or_default(),
        name: r.text("name").unwrap_or_default(),
        create_date: r.int("create_date").unwrap_or_default(),
    }
}

pub fn insert(t: &Tenant) -> Stmt {
    stmt!(
        "INSERT INTO tenants (id, name, create_date) VALUES (?1, ?2, ?3)",
        &t.id,
        &t.name,
        t.create_date
    )
}

pub async fn get(db: &impl Db, id: &str) -> Result<Option<Tenant>, DbError> {
    let rows = db
        .query(stmt!(
            "SELECT id, name, create_date FROM tenants WHERE id = ?1",
            id
        ))
        .await?;
    Ok(rows.first().map(from_row))
}

/// Up to `limit` tenants in creation order, after the one with sort key `after`
/// (`(create_date, id)`); the `tenants_created` index serves it.
pub async fn list(
    db: &impl Db,
    after: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<Tenant>, DbError> {
    let (at, id) = after.unzip();
    let rows = db
        .query(stmt!(
            "SELECT id, name, create_date FROM tenants \
             WHERE ?1 IS NULL OR (create_date, id) > (?1, ?2) ORDER BY create_date, id LIMIT ?3",
            at,
            id,
            limit
        ))
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Add to `batch` the statements removing a tenant and everything it owns, children first;
/// returns the delete of the tenant row. Sealed credentials go with their rows, so nothing of the
/// tenant stays decryptable.
pub fn delete<'b>(batch: &'b mut Batch, id: &str) -> Pushed<'b> {
    batch.extend([
        stmt!("DELETE FROM tenant_defaults WHERE tenant_id = ?1", id),
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
