//! SQL for a tenant's default models.

use super::{CallerTenant, Db, DbError, Guard, RowExt, Stmt};
use crate::caller_tenant;
use crate::catalog::ModelType;
use crate::stmt;

/// One default as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Default {
    pub model_type: ModelType,
    pub factory: String,
    pub llm_name: String,
}

/// Every column of `tenant_defaults`, in INSERT's order; a list reads the first four.
macro_rules! columns {
    () => {
        "tenant_id, model_type, factory, llm_name, connection_id, update_date"
    };
}

/// A tenant's defaults.
pub async fn list(db: &impl Db, tenant_id: &str) -> Result<Vec<Default>, DbError> {
    let rows = db
        .query(stmt!(
            concat!(
                "SELECT ",
                columns!(),
                " FROM tenant_defaults WHERE tenant_id = ?1"
            ),
            tenant_id
        ))
        .await?;
    decode(&rows)
}

/// The caller's tenant's default of `model_type` (no row: none is set), to batch with the
/// caller's verification.
pub fn for_caller(t: &CallerTenant, model_type: ModelType) -> Stmt {
    t.stmt(
        concat!(
            "SELECT ",
            columns!(),
            " FROM tenant_defaults WHERE tenant_id = ",
            caller_tenant!(),
            " AND model_type = ?5"
        ),
        [model_type.as_str().into()],
    )
}

/// Decode default rows.
pub fn decode(rows: &[super::Row]) -> Result<Vec<Default>, DbError> {
    super::decode_all(rows, from_row)
}

fn from_row(r: &super::Row) -> Result<Default, DbError> {
    Ok(Default {
        model_type: r.closed("model_type")?,
        factory: r.text("factory")?,
        llm_name: r.text("llm_name")?,
    })
}

/// Set one type's default. `connection_id` is checked by its foreign key: a connection removed in
/// the meantime makes the whole batch fail, so no default ever points at a removed model.
pub fn set(
    tenant_id: &str,
    model_type: ModelType,
    factory: &str,
    llm_name: &str,
    connection_id: Option<&str>,
    now: i64,
) -> Stmt {
    stmt!(
        concat!(
            "INSERT INTO tenant_defaults (",
            columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(tenant_id, model_type) DO UPDATE SET \
             factory = excluded.factory, llm_name = excluded.llm_name, \
             connection_id = excluded.connection_id, update_date = excluded.update_date"
        ),
        tenant_id,
        model_type.as_str(),
        factory,
        llm_name,
        connection_id,
        now
    )
}

pub fn clear(tenant_id: &str, model_type: ModelType) -> Stmt {
    stmt!(
        "DELETE FROM tenant_defaults WHERE tenant_id = ?1 AND model_type = ?2",
        tenant_id,
        model_type.as_str()
    )
}

/// Move the tenant to a new defaults version, retiring its cached defaults.
pub fn bump_version(tenant_id: &str) -> Stmt {
    stmt!(
        "UPDATE tenants SET defaults_version = defaults_version + 1 WHERE id = ?1",
        tenant_id
    )
}

/// Set the given defaults (up to one per type) of a tenant for the types it has no default for,
/// only when the statement it follows changed a row; the deployment's default provider sets a
/// new tenant's defaults this way, in the batch that adds the connection they point at.
/// `models` holds a model name or `None` per type, in [`SEEDED_TYPES`] order.
pub fn seed_if_changed(
    tenant_id: &str,
    factory: &str,
    connection_id: &str,
    models: [Option<&str>; 6],
    now: i64,
) -> Guard {
    let [a, b, c, d, e, f] = models;
    // One statement for all six, so it can follow its guard; `VALUES` names its columns
    // column1, column2. A type that already has a default keeps it.
    Guard::new(stmt!(
        concat!(
            "INSERT INTO tenant_defaults (",
            columns!(),
            ") SELECT ?1, column1, ?2, column2, ?3, ?4 FROM (VALUES ('chat', ?5), \
             ('embedding', ?6), ('speech2text', ?7), ('image2text', ?8), ('rerank', ?9), \
             ('tts', ?10)) WHERE column2 IS NOT NULL AND changes() > 0 \
             ON CONFLICT(tenant_id, model_type) DO NOTHING"
        ),
        tenant_id,
        factory,
        connection_id,
        now,
        a,
        b,
        c,
        d,
        e,
        f
    ))
}

/// The model types of [`seed_if_changed`]'s `models`, in order.
pub const SEEDED_TYPES: [ModelType; 6] = [
    ModelType::Chat,
    ModelType::Embedding,
    ModelType::Speech2text,
    ModelType::Image2text,
    ModelType::Rerank,
    ModelType::Tts,
];

/// Like [`bump_version`], but only when the statement it follows changed a row; added with
/// [`Pushed::then_if_changed`](super::Pushed::then_if_changed).
pub fn bump_version_if_changed(tenant_id: &str) -> Guard {
    Guard::new(stmt!(
        "UPDATE tenants SET defaults_version = defaults_version + 1 WHERE id = ?1 AND changes() > 0",
        tenant_id
    ))
}
