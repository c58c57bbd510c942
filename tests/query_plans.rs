//! The query plan (`EXPLAIN QUERY PLAN`) of every statement the hot paths run uses an index: key
//! verification, the relay's gateway-key and connection lookups, the model list, the default
//! models, the list pages and the cron purge. The statements are the ones the code really runs,
//! recorded from the requests themselves (tests/common's `SqliteDb::recorded`), so the check follows
//! the store's SQL whenever it changes. With a million keys a full `SCAN` of a table is a read of
//! every row on each request (D1 bills rows read and its per-query limit is 30 s).
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;

use common::*;
use keyward::store::Stmt;
use serde_json::json;
use standin::{StandIn, GOOD_KEY};

/// Tables of schema.sql: a `SCAN` of one of them is a read of the whole table.
fn tables(t: &T) -> Vec<String> {
    let conn = t.db().conn.borrow();
    let mut q = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap();
    let names = q.query_map([], |r| r.get::<_, String>(0)).unwrap();
    names.map(Result::unwrap).collect()
}

/// A plan step that reads a whole table: `SCAN t`, or `SCAN t USING ... INDEX`, a walk of an index
/// from its start (a `LIMIT` stops it early on the first page only: a keyset page further on walks
/// every earlier row again unless the cursor is a range the index seeks to, `SEARCH ... (a>?)`).
fn full_scan(step: &str, tables: &[String]) -> bool {
    let Some(rest) = step.strip_prefix("SCAN ") else {
        return false;
    };
    let name = rest.split_whitespace().next().unwrap_or("");
    if !tables.iter().any(|t| t == name) {
        return false; // a CTE, a subquery's result or a temp b-tree
    }
    true
}

/// Run `f` with statement recording on; the statements it ran, each with its plan.
fn recorded(t: &T, what: &str, f: impl FnOnce()) -> Vec<(Stmt, Vec<String>)> {
    *t.db().recorded.borrow_mut() = Some(Vec::new());
    f();
    let stmts = t.db().recorded.borrow_mut().take().unwrap();
    assert!(!stmts.is_empty(), "{what}: no statement recorded");
    stmts
        .into_iter()
        .map(|s| {
            let plan = t.db().plan(&s);
            (s, plan)
        })
        .collect()
}

fn assert_indexed(t: &T, what: &str, ran: &[(Stmt, Vec<String>)]) {
    let tables = tables(t);
    let scans: Vec<String> = ran
        .iter()
        .filter(|(_, plan)| plan.iter().any(|p| full_scan(p, &tables)))
        .map(|(s, plan)| format!("{}\n    plan: {}", s.sql, plan.join(" | ")))
        .collect();
    assert!(
        scans.is_empty(),
        "{what}: statements that read a whole table:\n  {}",
        scans.join("\n  ")
    );
}

fn touches(ran: &[(Stmt, Vec<String>)], table: &str) -> bool {
    ran.iter().any(|(s, _)| s.sql.contains(table))
}

/// A tenant with a user key, a connection to the stand-in, a gateway key and defaults; a second
/// tenant beside it so that nothing is answered by a table of one row.
fn setup(s: &StandIn) -> (T, String) {
    let t = T::new();
    let (_, k) = t.user_with_key("owner");
    let tok = token(&k);
    let (_, other) = t.user_with_key("neighbour");
    let other = token(&other);
    for who in [&tok, &other] {
        connect_standin_chat(&t, who, &s.base(), GOOD_KEY);
    }
    team_chat_and_default(&t, &tok, GOOD_KEY);
    (t, tok)
}

fn chat(t: &T, tok: &str, model: &str) {
    let r = t.user(
        tok,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})),
    );
    assert_eq!(
        r.status,
        200,
        "{model}: {}",
        String::from_utf8_lossy(&r.body)
    );
}

#[test]
fn key_verification_reads_its_key_user_and_tenant_by_index() {
    let s = StandIn::start();
    let (t, tok) = setup(&s);
    let ran = recorded(&t, "GET /api/v1/me", || {
        assert_eq!(t.me_status(&tok), 200);
    });
    assert!(touches(&ran, "api_keys"), "{ran:?}");
    assert_indexed(&t, "key verification", &ran);
}

#[test]
fn the_relays_connection_and_gateway_key_lookups_use_an_index() {
    let s = StandIn::start();
    let (t, tok) = setup(&s);
    let by_connection = recorded(&t, "relay by connection", || {
        chat(&t, &tok, "standin-chat@OpenAI-API-Compatible")
    });
    assert!(
        touches(&by_connection, "provider_connections"),
        "{by_connection:?}"
    );
    assert_indexed(&t, "the relay, naming a connection", &by_connection);
    let by_alias = recorded(&t, "relay by gateway key", || chat(&t, &tok, "team-chat"));
    assert!(touches(&by_alias, "ai_keys"), "{by_alias:?}");
    assert_indexed(&t, "the relay, naming a gateway key", &by_alias);
    let models = recorded(&t, "GET /v1/models", || {
        assert_eq!(t.user(&tok, "GET", "/v1/models", None).status, 200);
    });
    assert_indexed(&t, "the relay's model list", &models);
}

#[test]
fn the_reads_batched_with_the_relays_key_verification_use_an_index() {
    let s = StandIn::start();
    let (t, tok) = setup(&s);
    // Each way a model resolves has its own statements beside the key's (relay/plan.rs).
    for (what, model) in [
        ("the tenant's default", "default"),
        ("a bare model name", "standin-chat"),
        ("a gateway key", "team-chat"),
        ("name@factory", "standin-chat@OpenAI-API-Compatible"),
    ] {
        let ran = recorded(&t, what, || chat(&t, &tok, model));
        assert!(
            ran.iter().any(|(s, _)| s.sql.contains("COALESCE(?1")),
            "{what}: nothing read beside the key: {ran:?}"
        );
        assert_indexed(&t, what, &ran);
    }
    let ran = recorded(&t, "an unknown factory", || {
        let r = t.user(
            &tok,
            "POST",
            "/v1/chat/completions",
            Some(json!({"model": "x@NoSuchFactory", "messages": [{"role": "user", "content": "hi"}]})),
        );
        assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    });
    assert_indexed(&t, "a model naming no factory", &ran);
}

#[test]
fn the_default_models_are_read_by_index() {
    let s = StandIn::start();
    let (t, tok) = setup(&s);
    // From D1, not from the cache or the isolate's memory: the store's own read.
    let ran = recorded(&t, "defaults", || {
        futures::executor::block_on(keyward::store::defaults::list(t.db(), "none")).unwrap();
        assert_eq!(
            t.user(&tok, "GET", "/api/v1/models/default", None).status,
            200
        );
    });
    assert!(touches(&ran, "tenant_defaults"), "{ran:?}");
    assert_indexed(&t, "the default models", &ran);
}

#[test]
fn every_list_page_reads_by_index() {
    let s = StandIn::start();
    let (t, tok) = setup(&s);
    let user_pages = [
        "/api/v1/api_keys?limit=2",
        "/api/v1/ai_keys?page=1&page_size=2",
        "/api/v1/ai_keys?search=team",
        "/api/v1/models",
    ];
    for path in user_pages {
        let ran = recorded(&t, path, || {
            let r = t.user(&tok, "GET", path, None);
            assert_eq!(
                r.status,
                200,
                "{path}: {}",
                String::from_utf8_lossy(&r.body)
            );
        });
        assert_indexed(&t, path, &ran);
    }
    let admin_pages = [
        "/api/v1/admin/users?limit=1",
        "/api/v1/admin/tenants?limit=1",
        "/api/v1/admin/audit?limit=2",
        "/api/v1/admin/users/owner/keys?limit=1",
    ];
    for path in admin_pages {
        let ran = recorded(&t, path, || {
            let r = t.admin("GET", path, None);
            assert_eq!(
                r.status,
                200,
                "{path}: {}",
                String::from_utf8_lossy(&r.body)
            );
        });
        assert_indexed(&t, path, &ran);
    }
}

#[test]
fn the_cron_purge_finds_what_is_due_by_index() {
    let s = StandIn::start();
    let (t, tok) = setup(&s);
    let r = t.user(
        &tok,
        "POST",
        "/api/v1/api_keys",
        Some(json!({"ttl_minutes": 1})),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    t.advance_minutes(120);
    let ran = recorded(&t, "purge", || {
        let report = block_on(t.app.purge()).unwrap();
        assert_eq!(report.expired_keys, 1);
    });
    assert!(touches(&ran, "api_keys"), "{ran:?}");
    assert_indexed(&t, "the cron purge", &ran);
}

#[test]
fn a_full_scan_is_told_from_an_index_search() {
    let tables = vec!["api_keys".to_string()];
    assert!(full_scan("SCAN api_keys", &tables));
    assert!(full_scan(
        "SCAN api_keys USING INDEX api_keys_user",
        &tables
    ));
    assert!(!full_scan(
        "SEARCH api_keys USING INDEX sqlite_autoindex_api_keys_2 (access_key=?)",
        &tables
    ));
    assert!(!full_scan("SCAN n", &tables));
}
