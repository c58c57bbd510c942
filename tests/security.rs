//! ../SECURITY.md's bad inputs and attacks, table-driven, against the whole API over real SQLite.
#![cfg(not(target_arch = "wasm32"))]

mod common;
use base64::Engine;
use common::*;
use keyward::api::error::AUTH_FAILED;
use keyward::api::http::Request;
use serde_json::json;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Item 1: every way an Authorization header can be wrong gets the one 401 body.
#[test]
fn authorization_header_variants_are_all_the_same_401() {
    let t = T::new();
    let (_, k) = t.user_with_key("alice");
    let tok = token(&k);
    let cases: Vec<(&str, Request)> = vec![
        ("missing", Request::new("GET", "/api/v1/me")),
        (
            "empty",
            Request::new("GET", "/api/v1/me").header("authorization", ""),
        ),
        (
            "bearer with nothing",
            Request::new("GET", "/api/v1/me").header("authorization", "Bearer "),
        ),
        (
            "bearer without space",
            Request::new("GET", "/api/v1/me").header("authorization", "Bearer"),
        ),
        (
            "wrong scheme",
            Request::new("GET", "/api/v1/me").header("authorization", &format!("Token {tok}")),
        ),
        (
            "no scheme",
            Request::new("GET", "/api/v1/me").header("authorization", &tok),
        ),
        (
            "two authorization headers",
            Request::new("GET", "/api/v1/me")
                .header("authorization", &format!("Bearer {tok}"))
                .header("authorization", &format!("Bearer {tok}")),
        ),
        (
            "two credentials folded into one header",
            Request::new("GET", "/api/v1/me")
                .header("authorization", &format!("Bearer {tok}, Bearer {tok}")),
        ),
        (
            "token in the query string",
            Request::new(
                "GET",
                &format!("/api/v1/me?access_token={tok}&api_key={tok}"),
            ),
        ),
        (
            "basic with bad base64",
            Request::new("GET", "/api/v1/me").header("authorization", "Basic !!!notbase64"),
        ),
        (
            "basic without a colon",
            Request::new("GET", "/api/v1/me").header(
                "authorization",
                &format!("Basic {}", b64(&tok.replace(':', ""))),
            ),
        ),
        (
            "basic with the halves swapped",
            Request::new("GET", "/api/v1/me").header(
                "authorization",
                &format!(
                    "Basic {}",
                    b64(&{
                        let (a, s) = tok.split_once(':').unwrap();
                        format!("{s}:{a}")
                    })
                ),
            ),
        ),
        (
            "admin token as a user key",
            Request::new("GET", "/api/v1/me")
                .header("authorization", &format!("Bearer {ADMIN_TOKEN}")),
        ),
        (
            "double space",
            Request::new("GET", "/api/v1/me").header("authorization", &format!("Bearer  {tok}")),
        ),
    ];
    for (why, req) in cases {
        let r = t.send(req);
        assert_eq!(r.status, 401, "{why}");
        assert_eq!(
            r.json_body(),
            json!({"code": 109, "data": null, "message": AUTH_FAILED}),
            "{why}"
        );
        assert!(r.header("www-authenticate").is_some(), "{why}");
    }
}

#[test]
fn the_scheme_name_is_case_insensitive() {
    let t = T::new();
    let (_, k) = t.user_with_key("bob");
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let r = t.send(
            Request::new("GET", "/api/v1/me")
                .header("Authorization", &format!("{scheme} {}", token(&k))),
        );
        assert_eq!(r.status, 200, "{scheme}");
    }
    let r = t.send(
        Request::new("GET", "/api/v1/admin/tenants")
            .header("authorization", &format!("bearer {ADMIN_TOKEN}")),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn admin_token_variants_are_refused() {
    let t = T::new();
    for (why, v) in [
        (
            "prefix of the token",
            format!("Bearer {}", &ADMIN_TOKEN[..10]),
        ),
        ("token with a suffix", format!("Bearer {ADMIN_TOKEN}x")),
        ("trailing newline", format!("Bearer {ADMIN_TOKEN}\n")),
        (
            "basic",
            format!("Basic {}", b64(&format!("admin:{ADMIN_TOKEN}"))),
        ),
    ] {
        let r = t.send(Request::new("GET", "/api/v1/admin/tenants").header("authorization", &v));
        assert_eq!(r.status, 401, "{why}");
    }
}

/// Item 2: right prefix, broken secret: refused before any storage read.
#[test]
fn broken_secrets_are_rejected_before_any_storage_read() {
    let t = T::new();
    let (_, k) = t.user_with_key("carol");
    let access = k["access_key"].as_str().unwrap();
    let secret = k["secret_key"].as_str().unwrap();
    let flip_last = {
        let last = secret.chars().last().unwrap();
        format!("{}{}", &secret[..41], if last == 'A' { 'B' } else { 'A' })
    };
    let cases: Vec<(&str, String)> = vec![
        ("bad checksum", flip_last),
        ("too short", secret[..41].to_owned()),
        ("too long", format!("{secret}0")),
        (
            "non-base62 character",
            format!("{}-{}", &secret[..10], &secret[11..]),
        ),
        (
            "look-alike unicode",
            format!("{}\u{0430}{}", &secret[..10], &secret[11..]),
        ),
        ("nul byte", format!("{}\0{}", &secret[..10], &secret[11..])),
        ("trailing newline", format!("{secret}\n")),
        ("trailing space", format!("{secret} ")),
        ("wrong prefix", secret.replacen("kws_", "kwx_", 1)),
        ("access key as secret", access.to_owned()),
    ];
    for (why, bad) in cases {
        let before = t.db().calls.get();
        let r = t.send(
            Request::new("GET", "/api/v1/me")
                .header("authorization", &format!("Bearer {access}:{bad}")),
        );
        assert_eq!(r.status, 401, "{why}");
        assert_eq!(t.db().calls.get(), before, "{why}: storage was read");
    }
    // A well-formed but unknown secret is read and refused the same way.
    let r = t.send(Request::new("GET", "/api/v1/me").header(
        "authorization",
        &format!(
            "Bearer {access}:{}",
            keyward::domain::keys::Secret::generate(&|b| getrandom::getrandom(b).unwrap()).expose()
        ),
    ));
    assert_eq!(r.status, 401);
}

/// Item 3: oversized bodies and fields.
#[test]
fn oversized_bodies_and_fields_are_refused() {
    let t = T::new();
    t.create_user("dave", None, None);
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(70 * 1024));
    let r = t.send(
        Request::new("POST", "/api/v1/admin/tenants")
            .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .header("content-type", "application/json"),
    );
    assert_eq!(r.status, 400, "empty JSON body is a 400");
    let mut req = Request::new("POST", "/api/v1/admin/tenants")
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json");
    req.body = big.into_bytes();
    let r = t.send(req);
    assert_eq!(r.status, 413);
    assert_eq!(r.json_body()["code"], 413);

    let mut unread = Request::new("POST", "/api/v1/admin/tenants")
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json");
    unread.unread_len = Some(50 * 1024 * 1024);
    assert_eq!(t.send(unread).status, 413);

    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let long = "y".repeat(10_000);
    let cases = [
        (
            "long tenant name",
            "/api/v1/admin/tenants",
            json!({"name": long}),
        ),
        (
            "long username",
            "/api/v1/admin/users",
            json!({"username": long}),
        ),
        (
            "long description",
            "/api/v1/admin/users/dave/api_key",
            json!({"description": long}),
        ),
        (
            "huge array as name",
            "/api/v1/admin/tenants",
            json!({"name": vec!["a"; 5000]}),
        ),
        (
            "deep nesting",
            "/api/v1/admin/tenants",
            serde_json::from_str::<serde_json::Value>(
                &"[".repeat(100)
                    .chars()
                    .chain("]".repeat(100).chars())
                    .collect::<String>(),
            )
            .unwrap(),
        ),
    ];
    for (why, path, body) in cases {
        let r = t.admin("POST", path, Some(body));
        assert_eq!(r.status, 400, "{why}: {}", String::from_utf8_lossy(&r.body));
    }
    let mut req = Request::new("POST", "/api/v1/admin/tenants")
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json");
    req.body = deep.into_bytes();
    let r = t.send(req);
    assert_eq!(r.status, 400, "nesting past serde's recursion limit");
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenants"), 1);
}

/// Item 4 (for the routes that exist): metacharacters are data, never SQL.
#[test]
fn sql_metacharacters_in_names_are_stored_verbatim() {
    let t = T::new();
    for name in [
        "Robert'); DROP TABLE tenants;--",
        "100% _real_ tenant",
        "\"quoted\" \\ back",
    ] {
        let r = t.admin("POST", "/api/v1/admin/tenants", Some(json!({"name": name})));
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.json_body()["data"]["name"], name);
    }
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenants"), 3);
    for u in ["a'--", "a%", "a_b'"] {
        let r = t.admin(
            "GET",
            &format!("/api/v1/admin/users/{}", u.replace('%', "%25")),
            None,
        );
        assert_eq!(r.status, 404, "{u}");
    }
}

/// Item 5: cross-tenant access to every id-bearing route of a user key answers 404.
#[test]
fn another_tenants_key_ids_are_not_found() {
    let t = T::new();
    let (_, ka) = t.user_with_key("tenant-a-user");
    let (_, kb) = t.user_with_key("tenant-b-user");
    let id = ka["id"].as_str().unwrap();
    for (m, p) in [
        ("DELETE", format!("/api/v1/api_keys/{id}")),
        ("POST", format!("/api/v1/api_keys/{id}/rotate")),
    ] {
        let r = t.user(&token(&kb), m, &p, None);
        assert_eq!(r.status, 404, "{m} {p}");
        assert_eq!(r.json_body()["code"], 404);
    }
    let listed = t
        .user(&token(&kb), "GET", "/api/v1/api_keys", None)
        .json_body();
    assert!(!listed.to_string().contains(id));
    assert_eq!(t.me_status(&token(&ka)), 200);
}

/// Item 7: replays of deleted, expired and rotated-out keys.
#[test]
fn replayed_keys_fail_right_after_they_end() {
    let t = T::new();
    let (_, k) = t.user_with_key("eve");
    let id = k["id"].as_str().unwrap();
    t.user(
        &token(&k),
        "DELETE",
        &format!("/api/v1/api_keys/{id}"),
        None,
    );
    for _ in 0..3 {
        assert_eq!(t.me_status(&token(&k)), 401, "deleted");
    }
    let k = t.issue_key("eve", json!({"ttl_minutes": 1}));
    t.advance_minutes(1);
    assert_eq!(t.me_status(&token(&k)), 401, "expired");
    let k = t.issue_key("eve", json!({}));
    let id = k["id"].as_str().unwrap();
    t.user(
        &token(&k),
        "POST",
        &format!("/api/v1/api_keys/{id}/rotate"),
        Some(json!({"grace_minutes": 1})),
    );
    t.advance_minutes(1);
    assert_eq!(t.me_status(&token(&k)), 401, "rotated out");
    // A rotated-out secret cannot rotate the key back.
    let r = t.user(
        &token(&k),
        "POST",
        &format!("/api/v1/api_keys/{id}/rotate"),
        None,
    );
    assert_eq!(r.status, 401);
}

/// Item 9: hostile JSON.
#[test]
fn hostile_json_is_a_400_naming_the_problem_and_writes_nothing() {
    let t = T::new();
    let (_, k) = t.user_with_key("fay");
    let tok = token(&k);
    let keys_before = t.db().count("SELECT COUNT(*) FROM api_keys");
    let raw = |body: &[u8], ct: &str| {
        let mut r = Request::new("POST", "/api/v1/api_keys")
            .header("authorization", &format!("Bearer {tok}"))
            .header("content-type", ct);
        r.body = body.to_vec();
        t.send(r)
    };
    let cases: Vec<(&str, &[u8], &str)> = vec![
        (
            "unknown field",
            br#"{"description":"x","admin":true}"#,
            "admin",
        ),
        ("wrong type", br#"{"ttl_minutes":"60"}"#, "ttl_minutes"),
        ("float ttl", br#"{"ttl_minutes":1.5}"#, "ttl_minutes"),
        (
            "duplicate key",
            br#"{"ttl_minutes":5,"ttl_minutes":6}"#,
            "ttl_minutes",
        ),
        (
            "integer overflow",
            br#"{"ttl_minutes":99999999999999999999999}"#,
            "ttl_minutes",
        ),
        ("negative ttl", br#"{"ttl_minutes":-5}"#, "ttl_minutes"),
        ("zero ttl", br#"{"ttl_minutes":0}"#, "ttl_minutes"),
        ("ttl above max", br#"{"ttl_minutes":200000}"#, "129600"),
        ("not an object", br#"[1,2]"#, "Invalid JSON body"),
        ("truncated", br#"{"ttl_minutes":"#, "EOF"),
        ("invalid utf-8", b"{\"description\":\"\xff\xfe\"}", "UTF-8"),
        (
            "control char in description",
            b"{\"description\":\"a\\u0000b\"}",
            "description",
        ),
    ];
    for (why, body, needle) in cases {
        let r = raw(body, "application/json");
        assert_eq!(r.status, 400, "{why}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json_body()["code"], 101, "{why}");
        let msg = r.json_body()["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(needle), "{why}: {msg}");
    }
    let r = raw(br#"{}"#, "text/plain");
    assert_eq!(r.status, 415);
    let r = raw(br#"{}"#, "application/x-www-form-urlencoded");
    assert_eq!(r.status, 415);
    let r = raw(br#"{}"#, "application/json; charset=utf-8");
    assert_eq!(r.status, 200, "parameters on the media type are fine");
    assert_eq!(
        t.db().count("SELECT COUNT(*) FROM api_keys"),
        keys_before + 1
    );
}

/// Item 12: methods and path tricks.
#[test]
fn unlisted_methods_are_405_with_allow_and_path_tricks_are_404() {
    let t = T::new();
    for (m, p, allow) in [
        ("PUT", "/api/v1/admin/tenants", "GET, POST"),
        ("POST", "/api/v1/me", "GET"),
        ("GET", "/api/v1/api_keys/x/rotate", "POST"),
        ("PATCH", "/health", "GET"),
        ("TRACE", "/api/v1/admin/users/x", "GET, PATCH, DELETE"),
    ] {
        let r = t.admin(m, p, None);
        assert_eq!(r.status, 405, "{m} {p}");
        assert_eq!(r.header("allow"), Some(allow), "{m} {p}");
        assert_eq!(r.json_body()["code"], 405);
    }
    for p in [
        "/api/v1/me/",
        "//api/v1/me",
        "/api/v1//me",
        "/api/v1/admin/users/a%2Fb/api_key",
        "/api/v1/admin/users/..%2Fadmin",
        "/api/v2/me",
        "/API/V1/ME",
        "/api/v1/admin/tenants/%00",
    ] {
        let r = t.admin("GET", p, None);
        assert!(r.status == 404, "{p}: {}", r.status);
        assert_eq!(r.json_body()["code"], 404, "{p}");
    }
}

#[test]
fn health_and_openapi_need_no_credential() {
    let t = T::new();
    let r = t.send(Request::new("GET", "/health"));
    assert_eq!(r.json_body(), json!({"status": "ok"}));
    let r = t.send(Request::new("GET", "/openapi.json"));
    assert_eq!(r.status, 200);
    assert!(r.json_body().is_object());
}

/// Item 10: no secret in any later response body or any log line of this binary's run.
#[test]
fn no_secret_appears_after_its_creation_response() {
    let t = T::new();
    let (_, k) = t.user_with_key("gus");
    let mut secrets = vec![k["secret_key"].as_str().unwrap().to_owned()];
    let id = k["id"].as_str().unwrap().to_owned();
    let r = t.user(
        &token(&k),
        "POST",
        &format!("/api/v1/api_keys/{id}/rotate"),
        Some(json!({"grace_minutes": 3})),
    );
    let rotated = r.json_body()["data"].clone();
    secrets.push(rotated["secret_key"].as_str().unwrap().to_owned());
    let creation_bodies = t.bodies.borrow().len();
    // Use every route with the secrets, including failing calls that might echo input.
    let tok = token(&rotated);
    t.user(&tok, "GET", "/api/v1/me", None);
    t.user(&tok, "GET", "/api/v1/api_keys", None);
    t.user(
        &tok,
        "POST",
        "/api/v1/api_keys",
        Some(json!({"description": 5, "ttl_minutes": tok})),
    );
    t.user(
        &tok,
        "POST",
        "/api/v1/api_keys",
        Some(json!({ "unknown": tok })),
    );
    t.admin("GET", "/api/v1/admin/users/gus/api_key", None);
    t.admin("GET", "/api/v1/admin/audit", None);
    t.admin("GET", &format!("/api/v1/admin/users/{tok}"), None);
    t.user(&format!("{tok}x"), "GET", "/api/v1/me", None);
    block_on(t.app.purge()).unwrap();
    let later = t.bodies.borrow()[creation_bodies..].join("\n");
    let logs = log_lines().lock().unwrap().join("\n");
    assert!(!secrets.is_empty());
    for s in &secrets {
        assert!(
            !later.contains(&s[4..]),
            "a secret leaked into a later response"
        );
        assert!(!logs.contains(&s[4..]), "a secret leaked into the log");
    }
    assert!(!logs.contains(ADMIN_TOKEN));
}

/// Item 6: brute force from one client is throttled; the block covers correct guesses too.
#[test]
fn repeated_bad_credentials_from_one_client_get_429_with_retry_after() {
    let t = T::new();
    t.app.platform.limiter.budget.set(5);
    let (_, k) = t.user_with_key("target");
    let good = token(&k);
    let forged = format!(
        "{}:{}",
        k["access_key"].as_str().unwrap(),
        keyward::domain::keys::Secret::generate(&|b| getrandom::getrandom(b).unwrap()).expose()
    );
    let from = |ip: &str, tok: &str| {
        t.send(
            Request::new("GET", "/api/v1/me")
                .header("authorization", &format!("Bearer {tok}"))
                .header("cf-connecting-ip", ip),
        )
    };
    for i in 0..5 {
        assert_eq!(from("203.0.113.9", &forged).status, 401, "attempt {i}");
    }
    let r = from("203.0.113.9", &forged);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("60"));
    assert_eq!(r.json_body()["code"], 429);
    // While blocked, even the right key is refused, before any storage read.
    let reads = t.db().calls.get();
    assert_eq!(from("203.0.113.9", &good).status, 429);
    assert_eq!(t.db().calls.get(), reads);
    // The relay answers the block in OpenAI's shape, with the same Retry-After.
    let relay = t.send(
        Request::new("GET", "/v1/models")
            .header("authorization", &format!("Bearer {good}"))
            .header("cf-connecting-ip", "203.0.113.9"),
    );
    assert_eq!(relay.status, 429);
    assert_eq!(relay.header("retry-after"), Some("60"));
    assert_eq!(relay.json_body()["error"]["code"], "rate_limit_exceeded");
    // Other clients are unaffected; the block ends after its window.
    assert_eq!(from("198.51.100.7", &good).status, 200);
    t.advance_ms(60_000);
    assert_eq!(from("203.0.113.9", &good).status, 200);
}

/// Item 6: unknown, revoked and expired keys take the same path: one read, one hash, one body.
#[test]
fn unknown_revoked_and_expired_keys_take_the_same_path() {
    let t = T::new();
    t.create_user("paths", None, None);
    let revoked = t.issue_key("paths", json!({}));
    t.admin(
        "DELETE",
        &format!(
            "/api/v1/admin/users/paths/api_key/{}",
            revoked["id"].as_str().unwrap()
        ),
        None,
    );
    let expired = t.issue_key("paths", json!({"ttl_minutes": 1}));
    let unknown = format!(
        "kwa_{}:{}",
        "Z".repeat(16),
        keyward::domain::keys::Secret::generate(&|b| getrandom::getrandom(b).unwrap()).expose()
    );
    t.advance_minutes(2);
    let mut bodies = Vec::new();
    for tok in [unknown, token(&revoked), token(&expired)] {
        let before = t.db().calls.get();
        let r = t.user(&tok, "GET", "/api/v1/me", None);
        assert_eq!(r.status, 401);
        assert_eq!(t.db().calls.get() - before, 1, "exactly one storage read");
        bodies.push(r.body.clone());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
}
