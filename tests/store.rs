//! The store's own contracts over real SQLite: batch results read by handle with guards tied to
//! the statement they follow, and rows decoded strictly.
#![cfg(not(target_arch = "wasm32"))]

mod common;
use common::*;
use keyward::store::{audit, users, Batch, Db, DbError, Row, Stmt};

fn seed_user(db: &SqliteDb, name: &str) {
    db.sql(&format!(
        "INSERT INTO tenants (id, name, create_date) VALUES ('t1', 'T', 1);
         INSERT INTO users (username, tenant_id, role, status, create_date, update_date)
         VALUES ('{name}', 't1', 'member', 'active', 1, 1);"
    ));
}

fn delete_user_batch(name: &str) -> (Batch, keyward::store::Handle) {
    let mut batch = Batch::new();
    let deleted = users::delete(&mut batch, name)
        .then_if_changed(audit::record_if_changed(
            5,
            audit::Actor::Admin,
            "user.delete",
            name,
            Some("t1"),
            "",
        ))
        .handle();
    (batch, deleted)
}

#[test]
fn the_user_delete_is_read_by_its_handle_behind_the_key_delete_before_it() {
    let db = SqliteDb::new();
    seed_user(&db, "alice@example.com");
    // The user's keys go first in the same batch; the handle still names the user row's delete.
    let (batch, deleted) = delete_user_batch("alice@example.com");
    assert_eq!(batch.len(), 3);
    let done = block_on(batch.run(&db)).unwrap();
    assert_eq!(done.changed(deleted), 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM users"), 0);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM audit WHERE action = 'user.delete'"),
        1
    );
}

#[test]
fn a_guard_after_a_delete_that_removed_nothing_writes_no_audit_entry() {
    let db = SqliteDb::new();
    seed_user(&db, "alice@example.com");
    let (batch, deleted) = delete_user_batch("bob@example.com");
    let done = block_on(batch.run(&db)).unwrap();
    assert!(!done.did_change(deleted));
    assert_eq!(db.count("SELECT COUNT(*) FROM audit"), 0);
    assert_eq!(db.count("SELECT COUNT(*) FROM users"), 1);
}

/// A database that renames one column in every row it returns, as a SELECT with a misspelled or
/// forgotten column would look to the decoder.
struct RenamedColumn {
    inner: SqliteDb,
    from: &'static str,
    to: &'static str,
}

impl Db for RenamedColumn {
    async fn query(&self, stmt: Stmt) -> Result<Vec<Row>, DbError> {
        let mut rows = self.inner.query(stmt).await?;
        for r in &mut rows {
            if let Some(v) = r.remove(self.from) {
                r.insert(self.to.into(), v);
            }
        }
        Ok(rows)
    }
    async fn execute(&self, stmt: Stmt) -> Result<u64, DbError> {
        self.inner.execute(stmt).await
    }
    async fn batch(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>, DbError> {
        self.inner.batch(stmts).await
    }
}

#[test]
fn a_misspelled_column_is_a_decode_error_not_an_empty_default() {
    let db = RenamedColumn {
        inner: SqliteDb::new(),
        from: "role",
        to: "rol",
    };
    seed_user(&db.inner, "alice@example.com");
    let got = block_on(users::get(&db, "alice@example.com"));
    assert!(
        matches!(&got, Err(DbError::Decode(m)) if m.contains("role")),
        "{got:?}"
    );
    // A missing nullable column is an error too, not a NULL.
    let db = RenamedColumn {
        inner: SqliteDb::new(),
        from: "expires_at",
        to: "expires",
    };
    seed_user(&db.inner, "alice@example.com");
    db.inner.sql(
        "INSERT INTO api_keys (id, access_key, secret_hash, secret_hint, username, tenant_id, \
         description, create_date, update_date) \
         VALUES ('k1', 'kwa_1', 'h', 'x', 'alice@example.com', 't1', '', 1, 1)",
    );
    let got = block_on(keyward::store::keys::get_for_user(
        &db,
        "k1",
        "alice@example.com",
    ));
    assert!(matches!(got, Err(DbError::Decode(_))), "{got:?}");
}

#[test]
fn a_decode_error_is_a_500_not_a_4xx() {
    let e = keyward::api::error::ApiError::from(DbError::Decode("row has no column role".into()));
    assert_eq!(e.status_and_code().0, 500);
}

#[test]
fn a_user_row_with_a_mistyped_date_answers_500_instead_of_date_zero() {
    let t = T::new();
    t.create_user("alice@example.com", None, None);
    // SQLite keeps a value that does not fit the column's affinity as it is; only the decoder
    // can notice. Before strict decoding this row was answered with create_date 0.
    t.db()
        .sql("UPDATE users SET create_date = 'yesterday' WHERE username = 'alice@example.com'");
    let r = t.admin("GET", "/api/v1/admin/users/alice@example.com", None);
    assert_eq!(r.status, 500, "{}", r.json_body());
}
