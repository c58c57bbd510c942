//! The store's own contracts over real SQLite: batch results read by handle with guards tied to
//! the statement they follow, and rows decoded strictly.
#![cfg(not(target_arch = "wasm32"))]

mod common;
use common::*;
use keyward::store::{audit, users, Batch};

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
