//! User API keys over real SQLite with a test clock: issue, use, expire, rotate, revoke, purge.
#![cfg(not(target_arch = "wasm32"))]

mod common;
use base64::Engine;
use common::*;
use keyward::api::http::Request;
use serde_json::json;

fn basic(token: &str) -> String {
    let (a, s) = token.split_once(':').unwrap();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{a}:{s}"))
    )
}

#[test]
fn an_issued_key_works_as_bearer_and_as_basic() {
    let t = T::new();
    let (u, k) = t.user_with_key("alice");
    let tok = token(&k);
    assert_eq!(
        tok,
        format!(
            "{}:{}",
            k["access_key"].as_str().unwrap(),
            k["secret_key"].as_str().unwrap()
        )
    );
    let me = t.user(&tok, "GET", "/api/v1/me", None).json_body();
    assert_eq!(me["data"]["username"], "alice");
    assert_eq!(me["data"]["tenant_id"], u["tenant_id"]);
    assert_eq!(me["data"]["role"], "owner");
    assert_eq!(me["data"]["api_key"]["id"], k["id"]);
    assert_eq!(me["data"]["api_key"]["access_key"], k["access_key"]);

    let r = t.send(Request::new("GET", "/api/v1/me").header("Authorization", &basic(&tok)));
    assert_eq!(r.status, 200);
    assert_eq!(r.json_body()["data"]["username"], "alice");
}

#[test]
fn the_creation_response_carries_the_secret_once_and_lists_never_do() {
    let t = T::new();
    let (_, k) = t.user_with_key("bob");
    assert_eq!(k["secret_key"].as_str().unwrap().len(), 42);
    assert!(k["access_key"].as_str().unwrap().starts_with("kwa_"));
    assert!(k["secret_key"].as_str().unwrap().starts_with("kws_"));
    let secret = k["secret_key"].as_str().unwrap();

    let admin_list = t.admin("GET", "/api/v1/admin/users/bob/api_key", None);
    let alias_list = t.admin("GET", "/api/v1/admin/users/bob/keys", None);
    let own_list = t.user(&token(&k), "GET", "/api/v1/api_keys", None);
    for r in [&admin_list, &alias_list, &own_list] {
        let body = r.json_body();
        let item = &body["data"][0];
        assert_eq!(item["access_key"], k["access_key"]);
        assert_eq!(
            item["secret_hint"].as_str().unwrap(),
            format!("kws_...{}", &secret[38..])
        );
        assert!(item.get("token").is_none() && item.get("secret_key").is_none());
        assert!(!String::from_utf8_lossy(&r.body).contains(&secret[4..38]));
    }
    // The database holds a hash, not the secret.
    assert_eq!(
        t.db().count(&format!(
            "SELECT COUNT(*) FROM api_keys WHERE secret_hash LIKE '%{}%'",
            &secret[4..20]
        )),
        0
    );
}

#[test]
fn ttl_defaults_to_the_maximum_and_may_not_exceed_it() {
    let t = T::new();
    t.create_user("carol", None, None);
    let k = t.issue_key("carol", json!({}));
    assert_eq!(k["expires_at"], "2027-02-22T00:00:00Z"); // 90 days
    let k = t.issue_key("carol", json!({"ttl_minutes": 30, "description": "ci"}));
    assert_eq!(k["expires_at"], "2026-11-24T00:30:00Z");
    assert_eq!(k["description"], "ci");

    let r = t.admin(
        "POST",
        "/api/v1/admin/users/carol/api_key",
        Some(json!({"ttl_minutes": 129_601})),
    );
    assert_eq!(r.status, 400);
    assert!(r.json_body()["message"]
        .as_str()
        .unwrap()
        .contains("129600"));

    t.admin(
        "PUT",
        "/api/v1/admin/settings",
        Some(json!({"auth_token_max_ttl_minutes": 0})),
    );
    let k = t.issue_key("carol", json!({}));
    assert_eq!(k["expires_at"], serde_json::Value::Null);
    let k = t.issue_key("carol", json!({"ttl_minutes": 1_000_000}));
    assert!(k["expires_at"].is_string());
}

#[test]
fn a_key_past_its_expiry_is_rejected_before_any_purge() {
    let t = T::new();
    t.create_user("dave", None, None);
    let k = t.issue_key("dave", json!({"ttl_minutes": 10}));
    t.advance_minutes(9);
    assert_eq!(t.me_status(&token(&k)), 200);
    t.advance_ms(60_000 - 1);
    assert_eq!(t.me_status(&token(&k)), 200);
    t.advance_ms(1);
    assert_eq!(t.me_status(&token(&k)), 401);
    assert_eq!(
        t.db().count("SELECT COUNT(*) FROM api_keys"),
        1,
        "still there until the purge"
    );
}

#[test]
fn the_purge_removes_expired_keys_and_ended_grace_secrets_only() {
    let t = T::new();
    t.create_user("erin", None, None);
    let short = t.issue_key("erin", json!({"ttl_minutes": 5}));
    let long = t.issue_key("erin", json!({"ttl_minutes": 500}));
    let id = long["id"].as_str().unwrap();
    let rotated = t.user(
        &token(&long),
        "POST",
        &format!("/api/v1/api_keys/{id}/rotate"),
        Some(json!({"grace_minutes": 10})),
    );
    assert_eq!(rotated.status, 200);
    t.advance_minutes(11);

    let report = block_on(t.app.purge()).unwrap();
    assert_eq!(report.expired_keys, 1);
    assert_eq!(report.ended_grace, 1);
    assert!(!report.more);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM api_keys"), 1);
    assert_eq!(
        t.db()
            .count("SELECT COUNT(*) FROM api_keys WHERE prev_secret_hash IS NOT NULL"),
        0
    );
    assert_eq!(t.me_status(&token(&short)), 401);
    assert_eq!(t.me_status(&token(&rotated.json_body()["data"])), 200);
    assert!(log_lines()
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("purge: removed 1 expired keys")));

    // Idempotent: a second run finds nothing.
    let again = block_on(t.app.purge()).unwrap();
    assert_eq!((again.expired_keys, again.ended_grace), (0, 0));
}

#[test]
fn the_purge_is_bounded_per_run_and_finishes_over_several_runs() {
    use keyward::jobs::{PURGE_CHUNK, PURGE_MAX_CHUNKS};
    let t = T::new();
    let u = t.create_user("bulk", None, None);
    let tid = u["tenant_id"].as_str().unwrap();
    let bound = PURGE_CHUNK * PURGE_MAX_CHUNKS as i64;
    let expired = bound + 7;
    t.db().sql(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {total}) \
         INSERT INTO api_keys (id, access_key, secret_hash, secret_hint, username, tenant_id, create_date, update_date, expires_at) \
         SELECT 'k' || i, 'kwa_' || i, 'h', 'kws_...', 'bulk', '{tid}', 0, 0, \
         CASE WHEN i <= {expired} THEN 1 ELSE {future} END FROM n",
        total = expired + 50,
        future = START_MS + 3_600_000,
    ));
    let first = block_on(t.app.purge()).unwrap();
    assert_eq!(first.expired_keys as i64, bound);
    assert!(first.more);
    let second = block_on(t.app.purge()).unwrap();
    assert_eq!(second.expired_keys, 7);
    assert!(!second.more);
    assert_eq!(
        t.db().count("SELECT COUNT(*) FROM api_keys"),
        50,
        "no valid key removed"
    );
}

#[test]
fn two_purges_interleaved_statement_by_statement_remove_each_expired_key_once() {
    use keyward::jobs::PURGE_CHUNK;
    let t = T::new();
    let u = t.create_user("overlap", None, None);
    let tid = u["tenant_id"].as_str().unwrap();
    // 2.4 chunks of expired keys, so each run needs several statements and the runs can meet.
    let expired = PURGE_CHUNK * 2 + 2_000;
    let valid = 200;
    t.db().sql(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {total}) \
         INSERT INTO api_keys (id, access_key, secret_hash, secret_hint, username, tenant_id, create_date, update_date, expires_at) \
         SELECT 'k' || i, 'kwa_' || i, 'h', 'kws_...', 'overlap', '{tid}', 0, 0, \
         CASE WHEN i <= {expired} THEN 1 ELSE {future} END FROM n",
        total = expired + valid,
        future = START_MS + 3_600_000,
    ));
    // Every database call yields first, so the two runs driven together alternate call by call.
    t.db().yield_each_call.set(true);
    *t.db().trace.borrow_mut() = Some(Vec::new());
    let (a, b) = block_on(async { futures::future::join(t.app.purge(), t.app.purge()).await });
    let (a, b) = (a.unwrap(), b.unwrap());
    let trace = t.db().trace.borrow_mut().take().unwrap();

    // They did overlap: the deletes alternate between the runs and both removed rows.
    let deletes: Vec<u64> = trace
        .iter()
        .filter(|(sql, _)| sql.starts_with("DELETE FROM api_keys"))
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(
        deletes,
        [5_000, 5_000, 2_000, 0],
        "run A, run B, run A, run B: {trace:?}"
    );
    assert!(a.expired_keys > 0 && b.expired_keys > 0, "{a:?} {b:?}");
    // Each expired key was removed exactly once, and no valid key was touched.
    assert_eq!((a.expired_keys + b.expired_keys) as i64, expired);
    assert_eq!(
        t.db()
            .count("SELECT COUNT(*) FROM api_keys WHERE username = 'overlap'"),
        valid
    );
    assert_eq!(
        t.db().count(&format!(
            "SELECT COUNT(*) FROM api_keys WHERE username = 'overlap' AND expires_at > {START_MS}"
        )),
        valid
    );
}

#[test]
fn rotation_with_grace_keeps_the_old_secret_until_the_grace_ends() {
    let t = T::new();
    let (_, k) = t.user_with_key("frank");
    let old = token(&k);
    let id = k["id"].as_str().unwrap();
    let r = t.user(
        &old,
        "POST",
        &format!("/api/v1/api_keys/{id}/rotate"),
        Some(json!({"grace_minutes": 5})),
    );
    assert_eq!(r.status, 200);
    let new = r.json_body()["data"].clone();
    assert_eq!(new["id"], k["id"]);
    assert_eq!(new["access_key"], k["access_key"]);
    assert_ne!(new["secret_key"], k["secret_key"]);
    assert_eq!(new["previous_secret_valid_until"], "2026-11-24T00:05:00Z");
    assert_eq!(new["expires_at"], k["expires_at"]);
    let new = token(&new);
    assert_eq!(t.me_status(&old), 200);
    assert_eq!(t.me_status(&new), 200);
    t.advance_minutes(5);
    assert_eq!(t.me_status(&old), 401);
    assert_eq!(t.me_status(&new), 200);
}

#[test]
fn rotation_without_grace_ends_the_old_secret_at_once() {
    let t = T::new();
    let (_, k) = t.user_with_key("gina");
    let id = k["id"].as_str().unwrap();
    let r = t.user(
        &token(&k),
        "POST",
        &format!("/api/v1/api_keys/{id}/rotate"),
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json_body()["message"], "API key rotated successfully");
    assert_eq!(t.me_status(&token(&k)), 401);
    assert_eq!(t.me_status(&token(&r.json_body()["data"])), 200);
}

#[test]
fn grace_is_bounded_to_a_day() {
    let t = T::new();
    let (_, k) = t.user_with_key("hank");
    let id = k["id"].as_str().unwrap();
    for bad in [
        json!({"grace_minutes": -1}),
        json!({"grace_minutes": 1441}),
        json!({"grace_minutes": "5"}),
    ] {
        let r = t.user(
            &token(&k),
            "POST",
            &format!("/api/v1/api_keys/{id}/rotate"),
            Some(bad.clone()),
        );
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json_body()["message"]
            .as_str()
            .unwrap()
            .contains("grace_minutes"));
    }
    assert_eq!(
        t.me_status(&token(&k)),
        200,
        "a refused rotation changes nothing"
    );
}

#[test]
fn a_user_manages_their_own_keys() {
    let t = T::new();
    let (_, k) = t.user_with_key("ivy");
    let r = t.user(
        &token(&k),
        "POST",
        "/api/v1/api_keys",
        Some(json!({"description": "laptop", "ttl_minutes": 60})),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json_body()["message"], "API key generated successfully");
    let second = r.json_body()["data"].clone();
    assert_eq!(second["expires_at"], "2026-11-24T01:00:00Z");
    let list = t
        .user(&token(&second), "GET", "/api/v1/api_keys", None)
        .json_body();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    let r = t.user(
        &token(&second),
        "DELETE",
        &format!("/api/v1/api_keys/{}", k["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(r.json_body()["data"], true);
    assert_eq!(t.me_status(&token(&k)), 401);
    // Deleting the key one is using works too; it stops working at once.
    let r = t.user(
        &token(&second),
        "DELETE",
        &format!("/api/v1/api_keys/{}", second["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(t.me_status(&token(&second)), 401);
}

#[test]
fn a_user_cannot_touch_another_users_keys_even_in_the_same_tenant() {
    let t = T::new();
    let (a, ka) = t.user_with_key("jack");
    t.create_user("jill", a["tenant_id"].as_str(), Some("admin"));
    let kb = t.issue_key("jill", json!({}));
    let victim = ka["id"].as_str().unwrap();
    for (m, p) in [
        ("DELETE", format!("/api/v1/api_keys/{victim}")),
        ("POST", format!("/api/v1/api_keys/{victim}/rotate")),
    ] {
        let r = t.user(&token(&kb), m, &p, None);
        assert_eq!(r.status, 404, "{m} {p}");
    }
    let list = t
        .user(&token(&kb), "GET", "/api/v1/api_keys", None)
        .json_body();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(t.me_status(&token(&ka)), 200);
    // And the admin route is scoped by username too.
    let r = t.admin(
        "DELETE",
        &format!("/api/v1/admin/users/jill/api_key/{victim}"),
        None,
    );
    assert_eq!(r.status, 404);
}

#[test]
fn a_disabled_or_deleted_user_is_locked_out_at_once() {
    let t = T::new();
    let (_, k) = t.user_with_key("kim");
    t.admin(
        "PATCH",
        "/api/v1/admin/users/kim",
        Some(json!({"status": "disabled"})),
    );
    assert_eq!(t.me_status(&token(&k)), 401);
    t.admin(
        "PATCH",
        "/api/v1/admin/users/kim",
        Some(json!({"status": "active"})),
    );
    assert_eq!(t.me_status(&token(&k)), 200);
    t.admin("DELETE", "/api/v1/admin/users/kim", None);
    assert_eq!(t.me_status(&token(&k)), 401);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM api_keys"), 0);
}

#[test]
fn last_used_is_written_at_most_once_a_minute_after_the_response() {
    let t = T::new();
    let (_, k) = t.user_with_key("lee");
    let first = t.user(&token(&k), "GET", "/api/v1/me", None);
    assert_eq!(first.deferred.len(), 1, "first use records last_used_at");
    t.advance_ms(30_000);
    let second = t.user(&token(&k), "GET", "/api/v1/me", None);
    assert!(second.deferred.is_empty(), "no write within the minute");
    t.advance_ms(30_000);
    let third = t.user(&token(&k), "GET", "/api/v1/me", None);
    assert_eq!(third.deferred.len(), 1);
    let list = t
        .admin("GET", "/api/v1/admin/users/lee/api_key", None)
        .json_body();
    assert_eq!(list["data"][0]["last_used_at"], "2026-11-24T00:01:00Z");
}

#[test]
fn the_admin_revokes_a_users_key_and_unknown_ids_are_not_found() {
    let t = T::new();
    let (_, k) = t.user_with_key("max");
    let id = k["id"].as_str().unwrap();
    let r = t.admin(
        "DELETE",
        &format!("/api/v1/admin/users/max/keys/{id}"),
        None,
    );
    assert_eq!(r.json_body()["data"], true);
    assert_eq!(t.me_status(&token(&k)), 401);
    let r = t.admin(
        "DELETE",
        &format!("/api/v1/admin/users/max/api_key/{id}"),
        None,
    );
    assert_eq!(r.status, 404);
    let r = t.admin("POST", "/api/v1/admin/users/ghost/api_key", None);
    assert_eq!(r.status, 404);
}

#[test]
fn many_keys_for_one_user_are_all_distinct_and_all_listed() {
    let t = T::new();
    t.create_user("nia", None, None);
    let mut tokens = std::collections::HashSet::new();
    for _ in 0..50 {
        tokens.insert(token(&t.issue_key("nia", json!({}))));
    }
    assert_eq!(tokens.len(), 50);
    let list = t
        .admin("GET", "/api/v1/admin/users/nia/api_key", None)
        .json_body();
    assert_eq!(list["data"].as_array().unwrap().len(), 50);
}

#[test]
fn without_the_verification_cache_a_revocation_takes_effect_on_the_next_request() {
    let t = T::new();
    assert_eq!(t.app.config.verify_cache_seconds, 0, "off by default");
    let (_, k) = t.user_with_key("nocache");
    let reads = t.db().calls.get();
    assert_eq!(t.me_status(&token(&k)), 200);
    assert_eq!(t.me_status(&token(&k)), 200);
    assert!(t.db().calls.get() - reads >= 2, "every request reads D1");
    t.admin(
        "DELETE",
        &format!(
            "/api/v1/admin/users/nocache/api_key/{}",
            k["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(t.me_status(&token(&k)), 401);
}

/// SECURITY.md promise 2: the cache's window is stated, and pinned here.
#[test]
fn with_the_verification_cache_a_revocation_is_honoured_late_for_at_most_the_window() {
    let mut t = T::new();
    t.app.config.verify_cache_seconds = 30;
    let (_, k) = t.user_with_key("cached");
    assert_eq!(t.me_status(&token(&k)), 200);
    let reads = t.db().calls.get();
    assert_eq!(t.me_status(&token(&k)), 200);
    assert_eq!(t.db().calls.get(), reads, "a hit costs no D1 read");
    // Revoked through another isolate (straight in D1): this isolate's cache does not know.
    t.db().sql(&format!(
        "DELETE FROM api_keys WHERE id = '{}'",
        k["id"].as_str().unwrap()
    ));
    t.advance_ms(29_999);
    assert_eq!(
        t.me_status(&token(&k)),
        200,
        "still honoured inside the window"
    );
    t.advance_ms(1);
    assert_eq!(
        t.me_status(&token(&k)),
        401,
        "refused once the window has passed"
    );
}

#[test]
fn with_the_verification_cache_expiry_is_still_checked_against_the_clock() {
    let mut t = T::new();
    t.app.config.verify_cache_seconds = 600;
    t.create_user("expiring", None, None);
    let k = t.issue_key("expiring", json!({"ttl_minutes": 1}));
    assert_eq!(t.me_status(&token(&k)), 200);
    t.advance_ms(59_999);
    assert_eq!(t.me_status(&token(&k)), 200);
    t.advance_ms(1);
    assert_eq!(
        t.me_status(&token(&k)),
        401,
        "expired exactly on time despite the cache"
    );
    // A wrong secret never hits the cache.
    let wrong = format!(
        "{}:{}",
        k["access_key"].as_str().unwrap(),
        keyward::domain::keys::Secret::generate(&|b| getrandom::getrandom(b).unwrap()).expose()
    );
    assert_eq!(t.me_status(&wrong), 401);
}

#[test]
fn with_the_verification_cache_a_grace_secret_ends_with_its_grace() {
    let mut t = T::new();
    t.app.config.verify_cache_seconds = 600;
    let (_, k) = t.user_with_key("graceful");
    let old = token(&k);
    let id = k["id"].as_str().unwrap();
    t.user(
        &old,
        "POST",
        &format!("/api/v1/api_keys/{id}/rotate"),
        Some(json!({"grace_minutes": 1})),
    );
    assert_eq!(t.me_status(&old), 200, "cached via its grace");
    t.advance_ms(60_000);
    assert_eq!(t.me_status(&old), 401);
}

#[test]
fn with_the_verification_cache_a_change_made_here_is_seen_here_at_once() {
    let mut t = T::new();
    t.app.config.verify_cache_seconds = 600;
    let (_, k) = t.user_with_key("local");
    assert_eq!(t.me_status(&token(&k)), 200);
    t.admin(
        "PATCH",
        "/api/v1/admin/users/local",
        Some(json!({"status": "disabled"})),
    );
    assert_eq!(t.me_status(&token(&k)), 401);
    t.admin(
        "PATCH",
        "/api/v1/admin/users/local",
        Some(json!({"status": "active"})),
    );
    assert_eq!(t.me_status(&token(&k)), 200);
    let id = k["id"].as_str().unwrap();
    t.user(
        &token(&k),
        "DELETE",
        &format!("/api/v1/api_keys/{id}"),
        None,
    );
    assert_eq!(t.me_status(&token(&k)), 401);
}

// ------------------------------------------------------------------ lifetime escalation and limits

#[test]
fn a_short_lived_key_cannot_mint_itself_a_longer_lived_key() {
    let t = T::new();
    t.create_user("eve", None, None);
    let short = t.issue_key("eve", json!({"ttl_minutes": 5}));
    let own_expiry = short["expires_at"].as_str().unwrap().to_owned();
    let tok = token(&short);

    // Asking for more than the creating key has left is refused, naming the field and the bound.
    let r = t.user(
        &tok,
        "POST",
        "/api/v1/api_keys",
        Some(json!({"ttl_minutes": 129_600})),
    );
    assert_eq!(r.status, 400, "{}", r.json_body());
    let msg = r.json_body()["message"].as_str().unwrap().to_owned();
    assert!(msg.starts_with("ttl_minutes: must be at most 5"), "{msg}");
    assert!(msg.contains(&own_expiry), "{msg}");
    let r = t.user(
        &tok,
        "POST",
        "/api/v1/api_keys",
        Some(json!({"ttl_minutes": 6})),
    );
    assert_eq!(r.status, 400);

    // No lifetime asked for: the admin default (90 days) is cut to the creating key's own expiry.
    let r = t.user(&tok, "POST", "/api/v1/api_keys", Some(json!({})));
    assert_eq!(r.status, 200, "{}", r.json_body());
    assert_eq!(r.json_body()["data"]["expires_at"], own_expiry.as_str());
    // Asking for less is fine.
    let r = t.user(
        &tok,
        "POST",
        "/api/v1/api_keys",
        Some(json!({"ttl_minutes": 3})),
    );
    assert_eq!(r.status, 200, "{}", r.json_body());

    // A child of a child is bounded the same way: nothing in the chain outlives the first key.
    let child = token(&r.json_body()["data"]);
    let r = t.user(&child, "POST", "/api/v1/api_keys", Some(json!({})));
    assert_eq!(r.status, 200);
    let grandchild = r.json_body()["data"]["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(grandchild <= own_expiry, "{grandchild} <= {own_expiry}");

    // Once the first key has expired, it and everything it made are gone together.
    t.advance_minutes(6);
    for tok in [&tok, &child] {
        assert_eq!(t.me_status(tok), 401);
    }
}

#[test]
fn a_key_without_expiry_may_still_create_keys_within_the_admin_maximum() {
    let t = T::new();
    t.admin(
        "PUT",
        "/api/v1/admin/settings",
        Some(json!({"auth_token_max_ttl_minutes": 0})),
    );
    let (_, k) = t.user_with_key("forever");
    assert_eq!(k["expires_at"], serde_json::Value::Null);
    let r = t.user(&token(&k), "POST", "/api/v1/api_keys", Some(json!({})));
    assert_eq!(r.status, 200);
    assert_eq!(r.json_body()["data"]["expires_at"], serde_json::Value::Null);
}

#[test]
fn a_short_lived_key_cannot_rotate_a_longer_lived_key_of_its_user() {
    let t = T::new();
    t.create_user("mallory", None, None);
    let long = t.issue_key("mallory", json!({"ttl_minutes": 129_600}));
    let short = t.issue_key("mallory", json!({"ttl_minutes": 5}));
    let long_id = long["id"].as_str().unwrap();
    let short_id = short["id"].as_str().unwrap();

    // Rotating the long-lived key would hand its new secret (and its 90 days) to the short one.
    let r = t.user(
        &token(&short),
        "POST",
        &format!("/api/v1/api_keys/{long_id}/rotate"),
        Some(json!({})),
    );
    assert_eq!(r.status, 403, "{}", r.json_body());
    assert!(r.json_body()["message"]
        .as_str()
        .unwrap()
        .contains("may rotate only itself or keys that expire no later"));
    assert_eq!(t.me_status(&token(&long)), 200, "the long key is untouched");

    // It may rotate itself; the long key may rotate the short one.
    let r = t.user(
        &token(&short),
        "POST",
        &format!("/api/v1/api_keys/{short_id}/rotate"),
        Some(json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.json_body());
    assert_eq!(r.json_body()["data"]["expires_at"], short["expires_at"]);
    let rotated = token(&r.json_body()["data"]);
    let r = t.user(
        &token(&long),
        "POST",
        &format!("/api/v1/api_keys/{short_id}/rotate"),
        Some(json!({})),
    );
    assert_eq!(r.status, 200);
    assert_eq!(t.me_status(&rotated), 401, "rotated out without grace");
}

#[test]
fn self_service_key_creation_can_be_turned_off_by_the_admin() {
    let t = T::new();
    let (_, k) = t.user_with_key("frank");
    let r = t.admin(
        "PUT",
        "/api/v1/admin/settings",
        Some(json!({"self_service_keys": false})),
    );
    assert_eq!(r.status, 200, "{}", r.json_body());
    assert_eq!(r.json_body()["data"]["self_service_keys"], false);
    assert_eq!(
        r.json_body()["data"]["auth_token_max_ttl_minutes"],
        129_600,
        "settings not sent keep their value"
    );
    let r = t.user(&token(&k), "POST", "/api/v1/api_keys", Some(json!({})));
    assert_eq!(r.status, 403, "{}", r.json_body());
    assert!(r.json_body()["message"]
        .as_str()
        .unwrap()
        .contains("self_service_keys"));
    // The admin still issues keys; the user still lists, rotates and deletes their own.
    let k2 = t.issue_key("frank", json!({}));
    assert_eq!(t.me_status(&token(&k2)), 200);
    assert_eq!(
        t.user(&token(&k), "GET", "/api/v1/api_keys", None).status,
        200
    );
    let limits = t
        .user(&token(&k), "GET", "/api/v1/me/limits", None)
        .json_body();
    assert_eq!(limits["data"]["self_service_keys"], false);
    // And on again.
    t.admin(
        "PUT",
        "/api/v1/admin/settings",
        Some(json!({"self_service_keys": true})),
    );
    let r = t.user(&token(&k), "POST", "/api/v1/api_keys", Some(json!({})));
    assert_eq!(r.status, 200);
}

#[test]
fn a_user_holds_at_most_max_keys_per_user_unexpired_keys() {
    let t = T::new();
    let (_, k) = t.user_with_key("grace");
    let tok = token(&k);
    // The default is 50: 49 more are accepted, the 51st is a 409 naming the setting.
    for i in 0..49 {
        let r = t.user(
            &tok,
            "POST",
            "/api/v1/api_keys",
            Some(json!({"ttl_minutes": 10})),
        );
        assert_eq!(r.status, 200, "key {i}: {}", r.json_body());
    }
    let before = t.db().count("SELECT COUNT(*) FROM audit");
    let r = t.user(&tok, "POST", "/api/v1/api_keys", Some(json!({})));
    assert_eq!(r.status, 409, "{}", r.json_body());
    let msg = r.json_body()["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("50 unexpired keys") && msg.contains("max_keys_per_user"),
        "{msg}"
    );
    assert_eq!(
        t.db().count("SELECT COUNT(*) FROM audit"),
        before,
        "a refused creation leaves no audit entry"
    );
    // The admin API is bound by the same limit.
    let r = t.admin("POST", "/api/v1/admin/users/grace/api_key", Some(json!({})));
    assert_eq!(r.status, 409);
    let limits = t.user(&tok, "GET", "/api/v1/me/limits", None).json_body();
    assert_eq!(limits["data"]["active_keys"], 50);
    assert_eq!(limits["data"]["max_keys_per_user"], 50);
    // Expired keys do not count: once the 49 ten-minute keys expire, there is room again.
    t.advance_minutes(11);
    let r = t.user(&tok, "POST", "/api/v1/api_keys", Some(json!({})));
    assert_eq!(r.status, 200, "{}", r.json_body());
    // The admin can raise or lower the limit; 0 and over 10,000 are refused.
    for bad in [json!(null), json!("x")] {
        let r = t.admin(
            "PUT",
            "/api/v1/admin/settings",
            Some(json!({ "max_keys_per_user": bad })),
        );
        assert_eq!(r.status, 400, "{bad}: a setting sent must be a value");
        let r = t.admin(
            "PUT",
            "/api/v1/admin/settings",
            Some(json!({ "self_service_keys": bad })),
        );
        assert_eq!(r.status, 400, "{bad}");
    }
    for bad in [0, 10_001, -1] {
        let r = t.admin(
            "PUT",
            "/api/v1/admin/settings",
            Some(json!({"max_keys_per_user": bad})),
        );
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json_body()["message"]
            .as_str()
            .unwrap()
            .starts_with("max_keys_per_user: "));
    }
    let r = t.admin(
        "PUT",
        "/api/v1/admin/settings",
        Some(json!({"max_keys_per_user": 2})),
    );
    assert_eq!(r.json_body()["data"]["max_keys_per_user"], 2);
    let r = t.user(&tok, "POST", "/api/v1/api_keys", Some(json!({})));
    assert_eq!(r.status, 409);
    assert_eq!(
        t.admin("PUT", "/api/v1/admin/settings", Some(json!({})))
            .status,
        400,
        "a PUT with no setting is refused"
    );
}

#[test]
fn my_limits_say_how_long_my_next_key_may_live() {
    let t = T::new();
    t.create_user("henry", None, None);
    let k = t.issue_key("henry", json!({"ttl_minutes": 90}));
    let r = t.user(&token(&k), "GET", "/api/v1/me/limits", None);
    assert_eq!(r.status, 200);
    let d = &r.json_body()["data"];
    assert_eq!(
        d["max_ttl_minutes"], 90,
        "bounded by the key's own expiry: {d}"
    );
    assert_eq!(d["admin_max_ttl_minutes"], 129_600);
    assert_eq!(d["self_service_keys"], true);
    assert_eq!(d["active_keys"], 1);
    t.advance_minutes(30);
    let d = t
        .user(&token(&k), "GET", "/api/v1/me/limits", None)
        .json_body()["data"]
        .clone();
    assert_eq!(d["max_ttl_minutes"], 60);
    assert_eq!(t.send(Request::new("GET", "/api/v1/me/limits")).status, 401);
}

// Idempotency-Key on issuing and rotating: a retry after a lost answer makes no second key and
// leaves the client a secret that works.

fn data_of(r: &keyward::api::http::Response) -> serde_json::Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json_body()["data"].clone()
}

#[test]
fn a_key_issue_sent_again_with_its_idempotency_key_hands_over_the_same_key_with_a_new_secret() {
    let t = T::new();
    let (_, own) = t.user_with_key("alice");
    for (who, path, tok) in [
        ("admin", "/api/v1/admin/users/alice/api_key", None),
        ("self-service", "/api/v1/api_keys", Some(token(&own))),
    ] {
        let body = json!({"description": who, "ttl_minutes": 60});
        let first = data_of(&t.keyed(tok.as_deref(), path, body.clone(), "issue-1"));
        t.advance_minutes(1);
        let again = t.keyed(tok.as_deref(), path, body, "issue-1");
        assert_eq!(
            again.json_body()["message"],
            "API key generated successfully"
        );
        let again = data_of(&again);
        assert_eq!(again["id"], first["id"], "{who}: the same key");
        assert_eq!(again["access_key"], first["access_key"], "{who}");
        assert_eq!(
            again["expires_at"], first["expires_at"],
            "{who}: the same lifetime"
        );
        assert_ne!(
            again["secret_key"], first["secret_key"],
            "{who}: a new secret"
        );
        assert_eq!(
            t.me_status(&token(&first)),
            401,
            "{who}: the lost answer's secret"
        );
        assert_eq!(
            t.me_status(&token(&again)),
            200,
            "{who}: the replay's secret"
        );
    }
    assert_eq!(
        t.db().count("SELECT COUNT(*) FROM api_keys"),
        3,
        "one key each, beside the first"
    );
}

#[test]
fn a_rotation_without_grace_sent_again_with_its_idempotency_key_is_accepted_with_the_old_secret() {
    let t = T::new();
    let (_, k) = t.user_with_key("bob");
    let (old, id) = (token(&k), k["id"].as_str().unwrap().to_owned());
    let path = format!("/api/v1/api_keys/{id}/rotate");
    let body = json!({"grace_minutes": 0});
    let lost = data_of(&t.keyed(Some(&old), &path, body.clone(), "rotate-1"));
    assert_eq!(t.me_status(&old), 401, "the rotation ended the old secret");

    // The answer never arrived; the client sends the same request with what it has.
    let again = t.keyed(Some(&old), &path, body.clone(), "rotate-1");
    assert_eq!(again.json_body()["message"], "API key rotated successfully");
    let again = data_of(&again);
    assert_eq!(again["id"], json!(id));
    assert_eq!(
        again["previous_secret_valid_until"],
        serde_json::Value::Null
    );
    assert_eq!(t.me_status(&token(&again)), 200);
    assert_eq!(
        t.me_status(&token(&lost)),
        401,
        "the lost secret works for nobody"
    );
    assert_eq!(
        t.me_status(&old),
        401,
        "the old secret is still ended for everything else"
    );
    let keys = t
        .user(&token(&again), "GET", "/api/v1/api_keys", None)
        .json_body();
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
}

#[test]
fn the_ended_secret_buys_a_replay_only_with_its_own_rotations_idempotency_key_and_within_the_hour()
{
    let t = T::new();
    let (_, k) = t.user_with_key("carol");
    let (old, id) = (token(&k), k["id"].as_str().unwrap().to_owned());
    let path = format!("/api/v1/api_keys/{id}/rotate");
    let body = json!({"grace_minutes": 0});
    data_of(&t.keyed(Some(&old), &path, body.clone(), "rotate-c"));
    let other = t.issue_key("carol", json!({}));
    let other_path = format!("/api/v1/api_keys/{}/rotate", other["id"].as_str().unwrap());
    for (why, r) in [
        (
            "another key",
            t.keyed(Some(&old), &path, body.clone(), "guess"),
        ),
        (
            "another body",
            t.keyed(Some(&old), &path, json!({"grace_minutes": 5}), "rotate-c"),
        ),
        (
            "another route",
            t.keyed(Some(&old), "/api/v1/api_keys", json!({}), "rotate-c"),
        ),
        (
            "another key id",
            t.keyed(Some(&old), &other_path, body.clone(), "rotate-c"),
        ),
    ] {
        assert_eq!(r.status, 401, "{why}: {}", String::from_utf8_lossy(&r.body));
    }
    t.advance_minutes(60);
    let late = t.keyed(Some(&old), &path, body, "rotate-c");
    assert_eq!(late.status, 401, "after the hour");
}

#[test]
fn a_rotation_with_grace_sent_again_keeps_the_grace_the_first_attempt_granted() {
    let t = T::new();
    let (_, k) = t.user_with_key("dave");
    let (old, id) = (token(&k), k["id"].as_str().unwrap().to_owned());
    let path = format!("/api/v1/api_keys/{id}/rotate");
    let body = json!({"grace_minutes": 10});
    let first = data_of(&t.keyed(Some(&old), &path, body.clone(), "rotate-d"));
    t.advance_minutes(3);
    let again = data_of(&t.keyed(Some(&old), &path, body, "rotate-d"));
    assert_eq!(
        again["previous_secret_valid_until"], first["previous_secret_valid_until"],
        "the grace is not restarted"
    );
    assert_eq!(t.me_status(&old), 200, "the old secret keeps its grace");
    assert_eq!(t.me_status(&token(&first)), 401);
    assert_eq!(t.me_status(&token(&again)), 200);
    t.advance_minutes(8);
    assert_eq!(
        t.me_status(&old),
        401,
        "and loses it when the first attempt said"
    );
}

#[test]
fn idempotency_keys_belong_to_the_user_or_admin_who_sent_them() {
    let t = T::new();
    let (_, a) = t.user_with_key("erin");
    let (_, b) = t.user_with_key("frank");
    let body = json!({"description": "same key, other senders"});
    let ka = data_of(&t.keyed(Some(&token(&a)), "/api/v1/api_keys", body.clone(), "shared"));
    let kb = data_of(&t.keyed(Some(&token(&b)), "/api/v1/api_keys", body, "shared"));
    let kadmin = data_of(&t.keyed(
        None,
        "/api/v1/admin/users/erin/api_key",
        json!({}),
        "shared",
    ));
    assert_ne!(ka["id"], kb["id"]);
    assert_ne!(ka["id"], kadmin["id"]);
    assert_eq!(t.me_status(&token(&ka)), 200);
    assert_eq!(t.me_status(&token(&kb)), 200);
    assert_eq!(t.me_status(&token(&kadmin)), 200);
}

#[test]
fn a_replayed_issue_of_a_key_revoked_since_is_a_404_not_a_new_key() {
    let t = T::new();
    t.create_user("gina", None, None);
    let k = data_of(&t.keyed(None, "/api/v1/admin/users/gina/api_key", json!({}), "once"));
    let del = t.admin(
        "DELETE",
        &format!(
            "/api/v1/admin/users/gina/api_key/{}",
            k["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(del.status, 200);
    let again = t.keyed(None, "/api/v1/admin/users/gina/api_key", json!({}), "once");
    assert_eq!(again.status, 404);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM api_keys"), 0);
}
