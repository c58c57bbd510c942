//! The admin API over real SQLite: tenants, users, settings, audit.
#![cfg(not(target_arch = "wasm32"))]

mod common;
use common::*;
use serde_json::{json, Value as Json};

#[test]
fn an_admin_creates_lists_gets_and_deletes_a_tenant() {
    let t = T::new();
    let r = t.admin(
        "POST",
        "/api/v1/admin/tenants",
        Some(json!({"name": "Acme"})),
    );
    assert_eq!(r.status, 200);
    let body = r.json_body();
    assert_eq!(body["code"], 0);
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(body["data"]["name"], "Acme");
    assert_eq!(body["data"]["create_date"], "2026-11-24T00:00:00Z");

    let list = t.admin("GET", "/api/v1/admin/tenants", None).json_body();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let got = t.admin("GET", &format!("/api/v1/admin/tenants/{id}"), None);
    assert_eq!(got.json_body()["data"]["name"], "Acme");

    let del = t.admin("DELETE", &format!("/api/v1/admin/tenants/{id}"), None);
    assert_eq!(del.json_body()["data"], true);
    let again = t.admin("DELETE", &format!("/api/v1/admin/tenants/{id}"), None);
    assert_eq!(again.status, 404);
    assert_eq!(again.json_body()["code"], 404);
}

#[test]
fn a_user_created_without_a_tenant_owns_a_new_tenant_named_after_them() {
    let t = T::new();
    let u = t.create_user("alice@example.com", None, None);
    assert_eq!(u["role"], "owner");
    assert_eq!(u["status"], "active");
    let tenant = t.admin(
        "GET",
        &format!("/api/v1/admin/tenants/{}", u["tenant_id"].as_str().unwrap()),
        None,
    );
    assert_eq!(tenant.json_body()["data"]["name"], "alice@example.com");
}

#[test]
fn a_user_joins_an_existing_tenant_as_member_by_default() {
    let t = T::new();
    let owner = t.create_user("owner", None, None);
    let tid = owner["tenant_id"].as_str().unwrap();
    let m = t.create_user("member1", Some(tid), None);
    assert_eq!(m["role"], "member");
    assert_eq!(m["tenant_id"], tid);
    let a = t.create_user("admin1", Some(tid), Some("admin"));
    assert_eq!(a["role"], "admin");
}

#[test]
fn a_duplicate_username_is_a_conflict_and_leaves_no_tenant_behind() {
    let t = T::new();
    t.create_user("bob", None, None);
    let before = t.db().count("SELECT COUNT(*) FROM tenants");
    let r = t.admin(
        "POST",
        "/api/v1/admin/users",
        Some(json!({"username": "bob"})),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json_body()["code"], 409);
    assert!(r.json_body()["message"].as_str().unwrap().contains("bob"));
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenants"), before);
}

#[test]
fn a_user_for_an_unknown_tenant_is_not_found() {
    let t = T::new();
    let r = t.admin(
        "POST",
        "/api/v1/admin/users",
        Some(json!({"username": "x", "tenant_id": "nope"})),
    );
    assert_eq!(r.status, 404);
    assert!(r.json_body()["message"]
        .as_str()
        .unwrap()
        .contains("tenant_id"));
    assert_eq!(t.db().count("SELECT COUNT(*) FROM users"), 0);
}

#[test]
fn patching_a_user_changes_role_and_status_and_needs_a_field() {
    let t = T::new();
    let owner = t.create_user("o", None, None);
    t.create_user("m", owner["tenant_id"].as_str(), None);
    let r = t.admin(
        "PATCH",
        "/api/v1/admin/users/m",
        Some(json!({"role": "admin"})),
    );
    assert_eq!(r.json_body()["data"]["role"], "admin");
    let r = t.admin(
        "PATCH",
        "/api/v1/admin/users/m",
        Some(json!({"status": "disabled"})),
    );
    assert_eq!(r.json_body()["data"]["status"], "disabled");
    assert_eq!(r.json_body()["data"]["role"], "admin");
    let r = t.admin("PATCH", "/api/v1/admin/users/m", Some(json!({})));
    assert_eq!(r.status, 400);
    let r = t.admin(
        "PATCH",
        "/api/v1/admin/users/m",
        Some(json!({"status": "gone"})),
    );
    assert_eq!(r.status, 400);
    assert!(r.json_body()["message"]
        .as_str()
        .unwrap()
        .starts_with("status"));
    let r = t.admin(
        "PATCH",
        "/api/v1/admin/users/ghost",
        Some(json!({"role": "admin"})),
    );
    assert_eq!(r.status, 404);
}

#[test]
fn deleting_a_tenant_removes_its_users_and_keys() {
    let t = T::new();
    let (u, k) = t.user_with_key("carol");
    let tid = u["tenant_id"].as_str().unwrap();
    assert_eq!(t.me_status(&token(&k)), 200);
    let r = t.admin("DELETE", &format!("/api/v1/admin/tenants/{tid}"), None);
    assert_eq!(r.status, 200);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM users"), 0);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM api_keys"), 0);
    assert_eq!(t.me_status(&token(&k)), 401);
}

#[test]
fn settings_default_to_ninety_days_and_can_be_changed() {
    let t = T::new();
    let r = t.admin("GET", "/api/v1/admin/settings", None);
    assert_eq!(r.json_body()["data"]["auth_token_max_ttl_minutes"], 129_600);
    let r = t.admin(
        "PUT",
        "/api/v1/admin/settings",
        Some(json!({"auth_token_max_ttl_minutes": 60})),
    );
    assert_eq!(r.json_body()["data"]["auth_token_max_ttl_minutes"], 60);
    for bad in [
        json!({"auth_token_max_ttl_minutes": -1}),
        json!({}),
        json!({"auth_token_max_ttl_minutes": "60"}),
    ] {
        let r = t.admin("PUT", "/api/v1/admin/settings", Some(bad.clone()));
        assert_eq!(r.status, 400, "{bad}");
    }
    let r = t.admin("GET", "/api/v1/admin/settings", None);
    assert_eq!(r.json_body()["data"]["auth_token_max_ttl_minutes"], 60);
}

#[test]
fn every_mutation_is_in_the_audit_log_newest_first_without_secrets() {
    let t = T::new();
    let (u, k) = t.user_with_key("dave");
    let tid = u["tenant_id"].as_str().unwrap().to_owned();
    let id = k["id"].as_str().unwrap();
    t.advance_minutes(1);
    t.user(
        &token(&k),
        "POST",
        &format!("/api/v1/api_keys/{id}/rotate"),
        None,
    );
    t.advance_minutes(1);
    t.admin(
        "DELETE",
        &format!("/api/v1/admin/users/dave/api_key/{id}"),
        None,
    );
    t.admin(
        "PATCH",
        "/api/v1/admin/users/dave",
        Some(json!({"status": "disabled"})),
    );
    t.admin(
        "PUT",
        "/api/v1/admin/settings",
        Some(json!({"auth_token_max_ttl_minutes": 10})),
    );
    t.admin("DELETE", "/api/v1/admin/users/dave", None);
    t.admin("DELETE", &format!("/api/v1/admin/tenants/{tid}"), None);

    let r = t.admin("GET", "/api/v1/admin/audit", None).json_body();
    let actions: Vec<&str> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "tenant.delete",
            "user.delete",
            "settings.update",
            "user.update",
            "api_key.delete",
            "api_key.rotate",
            "api_key.create",
            "user.create",
            "tenant.create"
        ]
    );
    let text = r.to_string();
    assert!(!text.contains(k["secret_key"].as_str().unwrap()));

    let scoped = t
        .admin(
            "GET",
            &format!("/api/v1/admin/audit?tenant_id={tid}&limit=2"),
            None,
        )
        .json_body();
    assert_eq!(scoped["data"].as_array().unwrap().len(), 2);
    let since = t
        .admin(
            "GET",
            "/api/v1/admin/audit?since=2026-11-24T00:01:30Z",
            None,
        )
        .json_body();
    assert_eq!(since["data"].as_array().unwrap().len(), 5);
    for q in ["limit=0", "limit=1001", "limit=x", "since=yesterday"] {
        let r = t.admin("GET", &format!("/api/v1/admin/audit?{q}"), None);
        assert_eq!(r.status, 400, "{q}");
    }
}

#[test]
fn a_failed_mutation_leaves_no_audit_entry() {
    let t = T::new();
    t.create_user("erin", None, None);
    let before = t.db().count("SELECT COUNT(*) FROM audit");
    t.admin("DELETE", "/api/v1/admin/users/erin/api_key/nope", None);
    t.admin(
        "POST",
        "/api/v1/admin/users",
        Some(json!({"username": "erin"})),
    );
    assert_eq!(t.db().count("SELECT COUNT(*) FROM audit"), before);
}

#[test]
fn a_user_key_on_an_admin_route_is_forbidden() {
    let t = T::new();
    let (_, k) = t.user_with_key("frank");
    let r = t.user(&token(&k), "GET", "/api/v1/admin/tenants", None);
    assert_eq!(r.status, 403);
    assert_eq!(r.json_body()["code"], 108);
}

#[test]
fn without_an_admin_token_configured_the_admin_api_is_closed() {
    let mut t = T::new();
    t.app.config.admin_token = None;
    let r = t.admin("GET", "/api/v1/admin/tenants", None);
    assert_eq!(r.status, 401);
}

#[test]
fn a_user_named_admin_is_a_user_in_the_audit_log_never_the_admin_token() {
    let t = T::new();
    // `admin` is a valid username; before the actor's kind was recorded, its key's entries read
    // `actor=admin`, exactly like the admin token's.
    let (_, k) = t.user_with_key("admin");
    t.advance_minutes(1);
    let r = t.user(
        &token(&k),
        "POST",
        "/api/v1/api_keys",
        Some(json!({"description": "made by the user named admin"})),
    );
    assert_eq!(r.status, 200, "{}", r.json_body());
    t.advance_minutes(1);
    t.admin(
        "PUT",
        "/api/v1/admin/settings",
        Some(json!({"auth_token_max_ttl_minutes": 10})),
    );

    let entries = t.admin("GET", "/api/v1/admin/audit", None).json_body()["data"].clone();
    let by_action = |a: &str| -> Vec<Json> {
        entries
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == a)
            .cloned()
            .collect()
    };
    let settings = &by_action("settings.update")[0];
    assert_eq!(settings["actor_kind"], "admin", "{settings}");
    assert_eq!(settings["actor"], Json::Null, "the admin token has no name");
    let created = by_action("api_key.create");
    assert_eq!(created.len(), 2, "{entries}");
    // Newest first: the user's own creation, then the admin's issuing of the first key.
    assert_eq!(created[0]["actor_kind"], "user", "{}", created[0]);
    assert_eq!(
        created[0]["actor"], "admin",
        "the user's name, shown as a user"
    );
    assert_eq!(created[1]["actor_kind"], "admin", "{}", created[1]);
    assert_eq!(created[1]["actor"], Json::Null);
    // The stored rows say the same: the kind is a column, not a reserved name.
    assert_eq!(
        t.db().count(
            "SELECT COUNT(*) FROM audit WHERE actor_kind = 'admin' AND action = 'api_key.create'"
        ),
        1
    );
}

// Usernames are compared without regard to letter case; the spelling the admin gave is kept.

#[test]
fn a_username_differing_only_in_case_is_the_same_user_and_creating_it_again_is_a_409() {
    let t = T::new();
    let first = t.create_user("Alice@Example.com", None, None);
    let tenants = t.db().count("SELECT COUNT(*) FROM tenants");
    for (again, tenant) in [
        ("alice@example.com", None),
        ("ALICE@EXAMPLE.COM", None),
        ("alice@Example.COM", first["tenant_id"].as_str()),
    ] {
        let mut body = json!({ "username": again });
        if let Some(tid) = tenant {
            body["tenant_id"] = json!(tid);
        }
        let r = t.admin("POST", "/api/v1/admin/users", Some(body));
        assert_eq!(r.status, 409, "{again}");
        assert_eq!(r.json_body()["code"], 409);
        let msg = r.json_body()["message"].as_str().unwrap().to_owned();
        assert!(
            msg.contains(again) && msg.contains("Alice@Example.com") && msg.contains("letter case"),
            "names both spellings and the rule: {msg}"
        );
    }
    assert_eq!(t.db().count("SELECT COUNT(*) FROM users"), 1);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenants"), tenants);
}

#[test]
fn the_spelling_the_admin_gave_is_the_one_shown_everywhere() {
    let t = T::new();
    let u = t.create_user("Alice@Example.com", None, None);
    assert_eq!(u["username"], "Alice@Example.com");
    let list = t.admin("GET", "/api/v1/admin/users", None).json_body();
    assert_eq!(list["data"][0]["username"], "Alice@Example.com");
    let got = t.admin("GET", "/api/v1/admin/users/aLiCe@eXaMpLe.CoM", None);
    assert_eq!(got.status, 200);
    assert_eq!(got.json_body()["data"]["username"], "Alice@Example.com");
    let tenant = t.admin(
        "GET",
        &format!("/api/v1/admin/tenants/{}", u["tenant_id"].as_str().unwrap()),
        None,
    );
    assert_eq!(tenant.json_body()["data"]["name"], "Alice@Example.com");
    let k = t.issue_key("alice@example.com", json!({}));
    let me = t.user(&token(&k), "GET", "/api/v1/me", None).json_body();
    assert_eq!(me["data"]["username"], "Alice@Example.com");
}

#[test]
fn every_admin_route_finds_a_user_by_any_spelling_of_their_name() {
    let t = T::new();
    let owner = t.create_user("Owner@Example.com", None, None);
    t.create_user("Bob@Example.com", owner["tenant_id"].as_str(), None);

    let r = t.admin(
        "PATCH",
        "/api/v1/admin/users/bob@example.com",
        Some(json!({"role": "admin"})),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json_body()["data"]["username"], "Bob@Example.com");
    assert_eq!(r.json_body()["data"]["role"], "admin");

    // Keys issued, listed and revoked through three other spellings are the one user's keys.
    let k = t.issue_key("BOB@EXAMPLE.COM", json!({"description": "upper"}));
    let k2 = t.issue_key("bob@example.com", json!({"description": "lower"}));
    let listed = t
        .admin("GET", "/api/v1/admin/users/bOB@example.com/api_key", None)
        .json_body();
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        t.db()
            .count("SELECT COUNT(*) FROM api_keys WHERE username = 'Bob@Example.com'"),
        2,
        "keys refer to the stored spelling"
    );
    assert_eq!(t.me_status(&token(&k)), 200);
    let revoked = t.admin(
        "DELETE",
        &format!(
            "/api/v1/admin/users/bob@EXAMPLE.com/keys/{}",
            k2["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(revoked.status, 200);
    assert_eq!(t.me_status(&token(&k2)), 401);

    let r = t.admin(
        "PATCH",
        "/api/v1/admin/users/BOB@example.com",
        Some(json!({"status": "disabled"})),
    );
    assert_eq!(r.json_body()["data"]["status"], "disabled");
    assert_eq!(t.me_status(&token(&k)), 401);

    let del = t.admin("DELETE", "/api/v1/admin/users/bob@example.COM", None);
    assert_eq!(del.status, 200, "{}", String::from_utf8_lossy(&del.body));
    assert_eq!(t.db().count("SELECT COUNT(*) FROM users"), 1);
    assert_eq!(
        t.db()
            .count("SELECT COUNT(*) FROM api_keys WHERE username = 'Bob@Example.com'"),
        0
    );
    let audit = t.admin("GET", "/api/v1/admin/audit", None).json_body();
    let targets: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("user."))
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert!(
        targets
            .iter()
            .all(|t| *t == "Owner@Example.com" || *t == "Bob@Example.com"),
        "the audit names the stored spelling: {targets:?}"
    );
    let gone = t.admin("GET", "/api/v1/admin/users/Bob@Example.com", None);
    assert_eq!(gone.status, 404);
}

#[test]
fn the_database_itself_refuses_a_second_spelling_of_a_username() {
    let t = T::new();
    let u = t.create_user("carol@example.com", None, None);
    let conn = t.db().conn.borrow();
    let err = conn
        .execute(
            "INSERT INTO users (username, tenant_id, role, status, create_date, update_date) \
             VALUES ('Carol@Example.com', ?1, 'member', 'active', 0, 0)",
            [u["tenant_id"].as_str().unwrap()],
        )
        .expect_err("the unique index on the folded form");
    assert!(err.to_string().contains("users_username_folded"), "{err}");
}

/// Two creations of one name in different spellings at once: both pass the check, the unique
/// index on the folded form refuses the second insert, and the answer is the same 409.
#[test]
fn a_creation_that_loses_a_race_to_another_spelling_is_a_409_naming_the_username() {
    let t = T::new();
    let db = t.db();
    // The check is the first call, the batch the second; the batch fails as SQLite fails it.
    db.fail_on_call.set(Some((
        db.calls.get() + 2,
        "UNIQUE constraint failed: index 'users_username_folded'",
    )));
    let r = t.admin(
        "POST",
        "/api/v1/admin/users",
        Some(json!({"username": "Dave@Example.com"})),
    );
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json_body()["message"],
        "username Dave@Example.com already exists"
    );
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenants"), 0);
}

// Idempotency-Key on tenant creation: a retry is answered from the first attempt.

#[test]
fn a_tenant_creation_sent_again_with_its_idempotency_key_answers_the_first_tenant() {
    let t = T::new();
    let first = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "Acme"}),
        "tenant-1",
    );
    assert_eq!(first.status, 200);
    t.advance_minutes(30);
    let again = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "Acme"}),
        "tenant-1",
    );
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(again.json_body()["data"], first.json_body()["data"]);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenants"), 1);
    assert_eq!(
        t.db()
            .count("SELECT COUNT(*) FROM audit WHERE action = 'tenant.create'"),
        1,
        "the replay changed nothing, so it is not in the audit log"
    );
    // The draft's structured-field form ("...") names the same key.
    let quoted = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "Acme"}),
        "\"tenant-1\"",
    );
    assert_eq!(
        quoted.json_body()["data"]["id"],
        first.json_body()["data"]["id"]
    );
    // Another key is another request.
    let other = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "Acme"}),
        "tenant-2",
    );
    assert_ne!(
        other.json_body()["data"]["id"],
        first.json_body()["data"]["id"]
    );
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenants"), 2);
}

#[test]
fn an_idempotency_key_sent_with_another_request_is_a_409_and_changes_nothing() {
    let t = T::new();
    t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "Acme"}),
        "reused",
    );
    let before = t.db().count("SELECT COUNT(*) FROM tenants");
    let r = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "Other"}),
        "reused",
    );
    assert_eq!(r.status, 409);
    assert!(r.json_body()["message"]
        .as_str()
        .unwrap()
        .starts_with("Idempotency-Key: this key was sent with another request"));
    // The same key on another route is another request too.
    t.create_user("erin", None, None);
    let r = t.keyed(
        None,
        "/api/v1/admin/users/erin/api_key",
        json!({}),
        "reused",
    );
    assert_eq!(r.status, 409);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenants"), before + 1);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM api_keys"), 0);
}

#[test]
fn an_idempotency_key_is_remembered_for_an_hour_then_forgotten_and_purged() {
    let t = T::new();
    let first = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "Acme"}),
        "hourly",
    );
    t.advance_minutes(59);
    let again = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "Acme"}),
        "hourly",
    );
    assert_eq!(
        again.json_body()["data"]["id"],
        first.json_body()["data"]["id"]
    );
    t.advance_minutes(1);
    let later = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "Acme"}),
        "hourly",
    );
    assert_eq!(later.status, 200);
    assert_ne!(
        later.json_body()["data"]["id"],
        first.json_body()["data"]["id"],
        "after the hour the key names a new request"
    );
    assert_eq!(t.db().count("SELECT COUNT(*) FROM idempotency_keys"), 1);
    t.advance_minutes(60);
    let report = block_on(t.app.purge()).unwrap();
    assert_eq!(report.forgotten_requests, 1);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM idempotency_keys"), 0);
}

#[test]
fn a_replayed_creation_of_a_tenant_deleted_since_is_a_404_not_a_new_tenant() {
    let t = T::new();
    let first = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "Acme"}),
        "gone",
    );
    let id = first.json_body()["data"]["id"].as_str().unwrap().to_owned();
    t.admin("DELETE", &format!("/api/v1/admin/tenants/{id}"), None);
    let again = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "Acme"}),
        "gone",
    );
    assert_eq!(again.status, 404);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenants"), 0);
}

#[test]
fn a_malformed_idempotency_key_is_a_400_naming_the_header_and_creates_nothing() {
    let t = T::new();
    let long = "k".repeat(256);
    for (why, value) in [
        ("empty", ""),
        ("empty quoted", "\"\""),
        ("space inside", "a b"),
        ("non-ASCII", "clé"),
        ("too long", long.as_str()),
        ("quote inside", "a\"b"),
    ] {
        let r = t.keyed(None, "/api/v1/admin/tenants", json!({"name": "x"}), value);
        assert_eq!(r.status, 400, "{why}: {}", String::from_utf8_lossy(&r.body));
        assert!(
            r.json_body()["message"]
                .as_str()
                .unwrap()
                .starts_with("Idempotency-Key: "),
            "{why}"
        );
    }
    let two = t.send(
        keyward::api::http::Request::new("POST", "/api/v1/admin/tenants")
            .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .header("idempotency-key", "one")
            .header("idempotency-key", "two")
            .json(&json!({"name": "x"})),
    );
    assert_eq!(two.status, 400, "two headers");
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenants"), 0);
    let fine = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "x"}),
        &"k".repeat(255),
    );
    assert_eq!(fine.status, 200);
}

#[test]
fn a_keyed_request_racing_its_twin_is_a_409_asking_to_send_it_again() {
    let t = T::new();
    let db = t.db();
    // The lookup is the first call, the batch the second; the twin's row is there by then.
    db.fail_on_call.set(Some((
        db.calls.get() + 2,
        "UNIQUE constraint failed: idempotency_keys.scope, idempotency_keys.key_hash",
    )));
    let r = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "Acme"}),
        "twin",
    );
    assert_eq!(r.status, 409);
    assert!(r.json_body()["message"]
        .as_str()
        .unwrap()
        .contains("send it again for its answer"));
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenants"), 0);
}

#[test]
fn an_admin_sets_a_tenants_limits_over_time_and_only_the_fields_sent_change() {
    let t = T::new();
    let id = t
        .admin(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"name": "Lim"})),
        )
        .json_body()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = t
        .admin("GET", &format!("/api/v1/admin/tenants/{id}"), None)
        .json_body();
    assert_eq!(
        (
            &got["data"]["rpm_limit"],
            &got["data"]["token_budget"],
            &got["data"]["budget_period"],
            &got["data"]["usage_limit_policy"]
        ),
        (&json!(0), &json!(0), &json!("month"), &json!("reject"))
    );
    let path = format!("/api/v1/admin/tenants/{id}/limits");
    let r = t.admin(
        "PUT",
        &path,
        Some(json!({"token_budget": 5000, "budget_period": "day"})),
    );
    assert_eq!(r.status, 200);
    let r = t.admin(
        "PUT",
        &path,
        Some(json!({"rpm_limit": 60, "usage_limit_policy": "use_anyway"})),
    );
    let d = r.json_body()["data"].clone();
    assert_eq!(
        (
            &d["rpm_limit"],
            &d["tpm_limit"],
            &d["token_budget"],
            &d["budget_period"],
            &d["usage_limit_policy"]
        ),
        (
            &json!(60),
            &json!(0),
            &json!(5000),
            &json!("day"),
            &json!("use_anyway")
        )
    );
    let listed = t.admin("GET", "/api/v1/admin/tenants", None).json_body();
    assert_eq!(listed["data"][0], d);
    assert_eq!(
        t.db().count(&format!(
            "SELECT COUNT(*) FROM audit WHERE action = 'tenant.limits' AND target = '{id}'"
        )),
        2
    );
}

#[test]
fn bad_tenant_limits_are_a_400_naming_the_field_and_an_unknown_tenant_a_404() {
    let t = T::new();
    let id = t
        .admin(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"name": "Lim"})),
        )
        .json_body()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/admin/tenants/{id}/limits");
    for (body, want) in [
        (json!({}), "Send at least one of rpm_limit"),
        (
            json!({"rpm_limit": -5}),
            "rpm_limit: must be 0 to 1000000 (0 = none)",
        ),
        (json!({"tpm_limit": null}), "tpm_limit"),
        (
            json!({"budget_period": "fortnight"}),
            "budget_period: must be day, week, month or total",
        ),
        (
            json!({"usage_limit_policy": "warn"}),
            "usage_limit_policy: must be reject or use_anyway",
        ),
        (json!({"token_budget": 10, "colour": "red"}), "colour"),
    ] {
        let r = t.admin("PUT", &path, Some(body.clone()));
        assert_eq!(r.status, 400, "{body}");
        let m = r.json_body()["message"].as_str().unwrap().to_owned();
        assert!(m.contains(want), "{body}: {m}");
    }
    assert_eq!(
        t.db()
            .count("SELECT COUNT(*) FROM audit WHERE action = 'tenant.limits'"),
        0
    );
    let r = t.admin(
        "PUT",
        "/api/v1/admin/tenants/nope/limits",
        Some(json!({"rpm_limit": 1})),
    );
    assert_eq!(r.status, 404);
}
