//! SQL for tenant webhooks: where a tenant's budget alerts are posted, with the sealed secret
//! they are signed with.

use super::{Db, DbError, Row, RowExt, Stmt};
use crate::stmt;

/// A tenant's webhook as stored. `secret` is sealed; only the relay of an alert opens it.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub tenant_id: String,
    pub url: String,
    pub key_version: i64,
    pub secret: String,
    pub secret_hint: String,
    pub create_date: i64,
    pub update_date: i64,
}

/// Every column, in INSERT's order.
macro_rules! columns {
    () => {
        "tenant_id, url, key_version, secret, secret_hint, create_date, update_date"
    };
}

fn from_row(r: &Row) -> Result<Webhook, DbError> {
    Ok(Webhook {
        tenant_id: r.text("tenant_id")?,
        url: r.text("url")?,
        key_version: r.int("key_version")?,
        secret: r.text("secret")?,
        secret_hint: r.text("secret_hint")?,
        create_date: r.int("create_date")?,
        update_date: r.int("update_date")?,
    })
}

pub async fn get(db: &impl Db, tenant_id: &str) -> Result<Option<Webhook>, DbError> {
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                columns!(),
                " FROM tenant_webhooks WHERE tenant_id = ?1"
            ),
            tenant_id
        ))
        .await?;
    super::decode_first(&rows, from_row)
}

/// Set the tenant's webhook, keeping its first `create_date`; changes no row when the tenant is
/// gone (deleted meanwhile), so a batch guarded on it writes nothing else.
pub fn upsert(w: &Webhook) -> Stmt {
    stmt!(
        concat!(
            "INSERT INTO tenant_webhooks (",
            columns!(),
            ") SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = ?1) \
             ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url, \
             key_version = excluded.key_version, secret = excluded.secret, \
             secret_hint = excluded.secret_hint, update_date = excluded.update_date"
        ),
        &w.tenant_id,
        &w.url,
        w.key_version,
        &w.secret,
        &w.secret_hint,
        w.create_date,
        w.update_date
    )
}

pub fn delete(tenant_id: &str) -> Stmt {
    stmt!(
        "DELETE FROM tenant_webhooks WHERE tenant_id = ?1",
        tenant_id
    )
}
