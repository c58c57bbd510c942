//! Gateway keys (`/api/v1/ai_keys`) over real SQLite: validation of every field, the happy paths,
//! sealing, search and pagination, roles, tenants, races, and the relay's and cron's statements.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use keyward::api::http::{Request, Response};
use keyward::api::App;
use keyward::domain::time::rfc3339;
use keyward::store::ai_keys::{self as store, AiKey};
use keyward::store::{Db, DbError, Platform, Row, Stmt};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The provider keys these tests store; none may ever appear in a response or a log line.
const KEY: &str = "sk-aikey-live-0123456789abcdef";
const KEY2: &str = "sk-aikey-rotated-ZYXWVUT98765";
const KEY3: &str = "sk-aikey-other-tenant-QRSTUV42";
const ALL_KEYS: [&str; 3] = [KEY, KEY2, KEY3];

fn owner(t: &T, name: &str) -> (String, String) {
    let (u, k) = t.user_with_key(name);
    (token(&k), u["tenant_id"].as_str().unwrap().to_owned())
}

fn member_of(t: &T, tenant_id: &str, name: &str) -> String {
    t.create_user(name, Some(tenant_id), Some("member"));
    token(&t.issue_key(name, json!({})))
}

/// Connect a provider without a live call.
fn connect(t: &T, tok: &str, mut body: Value) {
    body["verify"] = json!(false);
    let r = t.user(tok, "POST", "/api/v1/models", Some(body));
    assert_eq!(r.status, 200, "connect: {}", message(&r));
}

/// A valid create body with only the required fields.
fn valid(alias: &str) -> Value {
    json!({"alias": alias, "provider": "OpenAI", "model": "gpt-4o", "api_key": KEY, "input_limit": 1000})
}

fn with(mut body: Value, field: &str, v: Value) -> Value {
    body[field] = v;
    body
}

fn without(mut body: Value, field: &str) -> Value {
    body.as_object_mut().unwrap().remove(field);
    body
}

fn create(t: &T, tok: &str, body: Value) -> Response {
    t.user(tok, "POST", "/api/v1/ai_keys", Some(body))
}

/// Create and return the record.
fn created(t: &T, tok: &str, body: Value) -> Value {
    let r = create(t, tok, body);
    assert_eq!(r.status, 200, "create: {}", message(&r));
    r.json_body()["data"].clone()
}

fn get(t: &T, tok: &str, id: &str) -> Response {
    t.user(tok, "GET", &format!("/api/v1/ai_keys/{id}"), None)
}

fn put(t: &T, tok: &str, id: &str, body: Value) -> Response {
    t.user(tok, "PUT", &format!("/api/v1/ai_keys/{id}"), Some(body))
}

fn delete(t: &T, tok: &str, id: &str) -> Response {
    t.user(tok, "DELETE", &format!("/api/v1/ai_keys/{id}"), None)
}

fn list(t: &T, tok: &str, query: &str) -> Response {
    t.user(tok, "GET", &format!("/api/v1/ai_keys{query}"), None)
}

/// `(total, aliases in order)` of a successful list.
fn listed(t: &T, tok: &str, query: &str) -> (i64, Vec<String>) {
    let r = list(t, tok, query);
    assert_eq!(r.status, 200, "{query}: {}", message(&r));
    let d = r.json_body()["data"].clone();
    let aliases = d["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["alias"].as_str().unwrap().to_owned())
        .collect();
    (d["total"].as_i64().unwrap(), aliases)
}

fn message(r: &Response) -> String {
    r.json_body()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn stored(t: &T, tenant_id: &str, id: &str) -> AiKey {
    block_on(store::get(t.db(), tenant_id, id))
        .unwrap()
        .expect("row")
}

fn run(t: &T, s: Stmt) -> u64 {
    block_on(t.app.platform.db.execute(s)).unwrap()
}

fn audit_count(t: &T, action: &str) -> i64 {
    t.db().count(&format!(
        "SELECT COUNT(*) FROM audit WHERE action = '{action}'"
    ))
}

/// No stored provider key in any response body of `t` or in any log line of this test binary.
fn assert_no_key_leaked(t: &T) {
    for body in t.bodies.borrow().iter() {
        for k in ALL_KEYS {
            assert!(!body.contains(k), "a provider key in a response: {body}");
        }
    }
    let audit = t.db().count(&format!(
        "SELECT COUNT(*) FROM audit WHERE {}",
        ALL_KEYS
            .map(|k| format!("detail LIKE '%{k}%' OR target LIKE '%{k}%'"))
            .join(" OR ")
    ));
    assert_eq!(audit, 0, "a provider key in the audit log");
    for line in log_lines().lock().unwrap().iter() {
        for k in ALL_KEYS {
            assert!(!line.contains(k), "a provider key in a log line: {line}");
        }
    }
}

const RECORD_FIELDS: [&str; 22] = [
    "id",
    "alias",
    "provider",
    "model",
    "status",
    "api_key_hint",
    "pool",
    "last_served_by",
    "endpoint_host",
    "input_limit",
    "output_limit",
    "usage_limit_policy",
    "rpm_limit",
    "tpm_limit",
    "token_budget",
    "budget_period",
    "expire_time",
    "used_input_tokens",
    "used_output_tokens",
    "last_used_at",
    "create_date",
    "update_date",
];

fn assert_record_shape(v: &Value) {
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = RECORD_FIELDS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want, "{v}");
}

#[test]
fn a_key_is_created_with_its_defaults_and_shows_only_a_hint() {
    let t = T::new();
    let (tok, tenant) = owner(&t, "create");
    let k = created(&t, &tok, valid("prod"));
    assert_record_shape(&k);
    assert_eq!(k["id"].as_str().unwrap().len(), 32);
    assert_eq!(k["alias"], "prod");
    assert_eq!(k["provider"], "OpenAI");
    assert_eq!(k["model"], "gpt-4o");
    assert_eq!(k["status"], "disabled", "default status");
    assert_eq!(k["usage_limit_policy"], "reject", "default policy");
    assert_eq!(k["output_limit"], 0, "default output_limit");
    assert_eq!(k["input_limit"], 1000);
    assert_eq!(k["api_key_hint"], "sk-...cdef");
    assert_eq!(k["expire_time"], Value::Null);
    assert_eq!(k["used_input_tokens"], 0);
    assert_eq!(k["used_output_tokens"], 0);
    assert_eq!(k["last_used_at"], Value::Null);
    assert_eq!(k["create_date"], rfc3339(START_MS));
    assert_eq!(k["update_date"], rfc3339(START_MS));

    let r = get(&t, &tok, &id_of(&k));
    assert_eq!(r.status, 200);
    assert_eq!(r.json_body()["data"], k, "GET shows what POST returned");

    let entries = t.db().count(&format!(
        "SELECT COUNT(*) FROM audit WHERE action = 'ai_key.create' AND target = '{}' \
         AND tenant_id = '{tenant}' AND actor = 'create' AND detail LIKE '%alias=prod%'",
        id_of(&k)
    ));
    assert_eq!(entries, 1, "one audit entry for the create");
    assert_no_key_leaked(&t);
}

#[test]
fn every_field_can_be_given_on_create() {
    let t = T::new();
    let (tok, _) = owner(&t, "full");
    let body = json!({
        "alias": "full.key-1_x",
        "provider": "Anthropic",
        "model": "claude-sonnet-4-5",
        "api_key": KEY,
        "input_limit": 0,
        "output_limit": 10_000_000,
        "usage_limit_policy": "use_anyway",
        "status": "enabled",
        "expire_time": "2027-01-01T01:00:00+01:00",
    });
    let k = created(&t, &tok, body);
    assert_eq!(k["alias"], "full.key-1_x");
    assert_eq!(k["provider"], "Anthropic");
    assert_eq!(k["model"], "claude-sonnet-4-5");
    assert_eq!(k["input_limit"], 0);
    assert_eq!(k["output_limit"], 10_000_000);
    assert_eq!(k["usage_limit_policy"], "use_anyway");
    assert_eq!(k["status"], "enabled");
    assert_eq!(
        k["expire_time"], "2027-01-01T00:00:00Z",
        "normalized to UTC"
    );

    let k = created(&t, &tok, with(valid("nulls"), "expire_time", Value::Null));
    assert_eq!(k["expire_time"], Value::Null, "null means no expiry");
    let k = created(
        &t,
        &tok,
        with(
            with(valid("explicit-defaults"), "output_limit", Value::Null),
            "status",
            Value::Null,
        ),
    );
    assert_eq!(k["output_limit"], 0);
    assert_eq!(k["status"], "disabled");
}

#[test]
fn every_invalid_create_is_a_400_naming_the_field_and_writes_nothing() {
    let t = T::new();
    let (tok, _) = owner(&t, "bad-create");
    let long_key = format!("sk-{}", "k".repeat(16 * 1024));
    let cases: Vec<(&str, Value, &str)> = vec![
        ("missing alias", without(valid("a"), "alias"), "alias"),
        (
            "missing provider",
            without(valid("a"), "provider"),
            "provider",
        ),
        ("missing model", without(valid("a"), "model"), "model"),
        ("missing api_key", without(valid("a"), "api_key"), "api_key"),
        (
            "missing input_limit",
            without(valid("a"), "input_limit"),
            "input_limit",
        ),
        (
            "unknown field",
            with(valid("a"), "extra", json!(1)),
            "extra",
        ),
        (
            "alias not a string",
            with(valid("a"), "alias", json!(5)),
            "alias",
        ),
        (
            "alias null",
            with(valid("a"), "alias", Value::Null),
            "alias",
        ),
        (
            "alias empty",
            with(valid("a"), "alias", json!("")),
            "alias: must be 1 to 64",
        ),
        (
            "alias too long",
            valid(&"a".repeat(65)),
            "alias: must be 1 to 64",
        ),
        (
            "alias very long",
            valid(&"a".repeat(10_000)),
            "alias: must be 1 to 64",
        ),
        (
            "alias with a space",
            valid("a b"),
            "alias: may contain only",
        ),
        (
            "alias with a percent",
            valid("a%b"),
            "alias: may contain only",
        ),
        (
            "alias with a quote",
            valid("a'--"),
            "alias: may contain only",
        ),
        (
            "alias with a slash",
            valid("a/b"),
            "alias: may contain only",
        ),
        (
            "alias with a look-alike letter",
            valid("\u{0430}lias"),
            "alias: may contain only",
        ),
        (
            "alias with a NUL",
            valid("a\u{0}b"),
            "alias: may contain only",
        ),
        (
            "provider not a string",
            with(valid("a"), "provider", json!(["OpenAI"])),
            "provider",
        ),
        (
            "provider unknown",
            with(valid("a"), "provider", json!("NoSuchAI")),
            "provider: unknown provider NoSuchAI",
        ),
        (
            "provider in the wrong case",
            with(valid("a"), "provider", json!("openai")),
            "provider: unknown provider",
        ),
        (
            "provider very long",
            with(valid("a"), "provider", json!("P".repeat(5000))),
            "provider: unknown provider",
        ),
        (
            "provider Builtin",
            with(
                with(valid("a"), "provider", json!("Builtin")),
                "model",
                json!("@cf/meta/llama-3.1-8b-instruct"),
            ),
            "provider: Builtin",
        ),
        (
            "model not a string",
            with(valid("a"), "model", json!(4)),
            "model",
        ),
        (
            "model empty",
            with(valid("a"), "model", json!("")),
            "model: must be 1 to 128",
        ),
        (
            "model blank",
            with(valid("a"), "model", json!("   ")),
            "model: must be 1 to 128",
        ),
        (
            "model too long",
            with(valid("a"), "model", json!("m".repeat(129))),
            "model: must be 1 to 128",
        ),
        (
            "model with a newline",
            with(valid("a"), "model", json!("gpt-4o\n")),
            "model: must not contain control",
        ),
        (
            "model unknown",
            with(valid("a"), "model", json!("gpt-9")),
            "model: gpt-9 is not a model of OpenAI",
        ),
        (
            "model of another factory",
            with(valid("a"), "model", json!("claude-sonnet-4-5")),
            "model: claude-sonnet-4-5 is not a model of OpenAI",
        ),
        (
            "model in the wrong case",
            with(valid("a"), "model", json!("GPT-4o")),
            "is not a model of OpenAI",
        ),
        (
            "api_key not a string",
            with(valid("a"), "api_key", json!(12345)),
            "api_key",
        ),
        (
            "api_key null",
            with(valid("a"), "api_key", Value::Null),
            "api_key",
        ),
        (
            "api_key empty",
            with(valid("a"), "api_key", json!("")),
            "api_key: must not be empty",
        ),
        (
            "api_key blank",
            with(valid("a"), "api_key", json!("  ")),
            "api_key: must not be empty",
        ),
        (
            "api_key too long",
            with(valid("a"), "api_key", json!(long_key)),
            "api_key: must be at most 16384 bytes",
        ),
        (
            "api_key too short to be real",
            with(valid("a"), "api_key", json!("sk-1234")),
            "api_key: must be at least 8 characters",
        ),
        (
            "api_key with a newline",
            with(valid("a"), "api_key", json!(format!("{KEY}\n"))),
            "api_key: must not contain control",
        ),
        (
            "api_key with a NUL",
            with(valid("a"), "api_key", json!(format!("{KEY}\u{0}x"))),
            "api_key: must not contain control",
        ),
        (
            "input_limit negative",
            with(valid("a"), "input_limit", json!(-1)),
            "input_limit: must be 0 to 10000000",
        ),
        (
            "input_limit too large",
            with(valid("a"), "input_limit", json!(10_000_001)),
            "input_limit: must be 0 to 10000000",
        ),
        (
            "input_limit i64 max",
            with(valid("a"), "input_limit", json!(i64::MAX)),
            "input_limit: must be 0 to 10000000",
        ),
        (
            "input_limit overflowing i64",
            with(valid("a"), "input_limit", json!(u64::MAX)),
            "input_limit",
        ),
        (
            "input_limit fractional",
            with(valid("a"), "input_limit", json!(1.5)),
            "input_limit",
        ),
        (
            "input_limit a string",
            with(valid("a"), "input_limit", json!("100")),
            "input_limit",
        ),
        (
            "input_limit null",
            with(valid("a"), "input_limit", Value::Null),
            "input_limit",
        ),
        (
            "output_limit negative",
            with(valid("a"), "output_limit", json!(-5)),
            "output_limit: must be 0 to 10000000",
        ),
        (
            "output_limit too large",
            with(valid("a"), "output_limit", json!(20_000_000)),
            "output_limit: must be 0 to 10000000",
        ),
        (
            "output_limit a bool",
            with(valid("a"), "output_limit", json!(true)),
            "output_limit",
        ),
        (
            "policy unknown",
            with(valid("a"), "usage_limit_policy", json!("allow")),
            "usage_limit_policy: must be reject or use_anyway",
        ),
        (
            "policy in the wrong case",
            with(valid("a"), "usage_limit_policy", json!("Reject")),
            "usage_limit_policy: must be",
        ),
        (
            "policy a number",
            with(valid("a"), "usage_limit_policy", json!(1)),
            "usage_limit_policy",
        ),
        (
            "status unknown",
            with(valid("a"), "status", json!("active")),
            "status: must be enabled or disabled",
        ),
        (
            "status in the wrong case",
            with(valid("a"), "status", json!("Enabled")),
            "status: must be enabled or disabled",
        ),
        (
            "status a bool",
            with(valid("a"), "status", json!(true)),
            "status",
        ),
        (
            "expire_time in the past",
            with(valid("a"), "expire_time", json!("2020-01-01T00:00:00Z")),
            "expire_time is in the past",
        ),
        (
            "expire_time now",
            with(valid("a"), "expire_time", json!(rfc3339(START_MS))),
            "expire_time is in the past",
        ),
        (
            "expire_time malformed",
            with(valid("a"), "expire_time", json!("next tuesday")),
            "expire_time: must be an RFC 3339 time",
        ),
        (
            "expire_time without offset",
            with(valid("a"), "expire_time", json!("2030-01-01T00:00:00")),
            "expire_time: must be an RFC 3339 time",
        ),
        (
            "expire_time a date only",
            with(valid("a"), "expire_time", json!("2030-01-01")),
            "expire_time: must be an RFC 3339 time",
        ),
        (
            "expire_time a number",
            with(valid("a"), "expire_time", json!(1_900_000_000)),
            "expire_time",
        ),
    ];
    for (why, body, expected) in cases {
        let r = create(&t, &tok, body);
        assert_eq!(r.status, 400, "{why}: {}", message(&r));
        assert_eq!(r.json_body()["code"], 101, "{why}");
        assert!(
            message(&r).contains(expected),
            "{why}: {:?} does not contain {expected:?}",
            message(&r)
        );
    }
    let r = t.send(
        Request::new("POST", "/api/v1/ai_keys")
            .header("authorization", &format!("Bearer {tok}"))
            .header("content-type", "text/plain")
            .json(&valid("a")),
    );
    assert_eq!(r.status, 415, "the first Content-Type must be JSON");
    let mut req = Request::new("POST", "/api/v1/ai_keys")
        .header("authorization", &format!("Bearer {tok}"))
        .header("content-type", "application/json");
    req.body = br#"{"alias":"a","alias":"b","provider":"OpenAI","model":"gpt-4o","api_key":"sk-long-enough","input_limit":1}"#.to_vec();
    assert_eq!(t.send(req).status, 400, "duplicate keys");
    assert_eq!(
        t.db().count("SELECT COUNT(*) FROM ai_keys"),
        0,
        "nothing written"
    );
    assert_eq!(audit_count(&t, "ai_key.create"), 0, "nothing audited");
    assert_no_key_leaked(&t);
}

#[test]
fn per_model_providers_need_the_tenants_connection_for_the_model() {
    let t = T::new();
    let (tok, _) = owner(&t, "per-model");
    for (provider, model) in [
        ("Azure-OpenAI", "gpt4o-prod"),
        ("OpenAI-API-Compatible", "my-llm"),
        ("Ollama", "qwen"),
        ("LocalAI", "llama"),
        ("Xinference", "glm"),
        ("VertexAI", "gemini-2.5-pro"),
    ] {
        let r = create(
            &t,
            &tok,
            with(
                with(valid("pm"), "provider", json!(provider)),
                "model",
                json!(model),
            ),
        );
        assert_eq!(r.status, 400, "{provider}: {}", message(&r));
        assert!(
            message(&r).starts_with(&format!("model: {model} is not configured for this tenant")),
            "{provider}: {}",
            message(&r)
        );
    }
    connect(
        &t,
        &tok,
        json!({"llm_factory": "Azure-OpenAI", "api_key": "azure-conn-key-000000", "endpoint": "https://x.openai.azure.com", "deployment": "gpt4o-prod"}),
    );
    connect(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "my-llm", "base_url": "http://127.0.0.1:9/v1"}),
    );
    connect(
        &t,
        &tok,
        json!({"llm_factory": "Ollama", "llm_name": "qwen", "base_url": "http://127.0.0.1:9"}),
    );
    for (alias, provider, model) in [
        ("azure", "Azure-OpenAI", "gpt4o-prod"),
        ("compat", "OpenAI-API-Compatible", "my-llm"),
        ("ollama", "Ollama", "qwen"),
    ] {
        let k = created(
            &t,
            &tok,
            with(
                with(valid(alias), "provider", json!(provider)),
                "model",
                json!(model),
            ),
        );
        assert_eq!(k["provider"], provider);
        assert_eq!(k["model"], model);
    }
    let r = create(
        &t,
        &tok,
        with(
            with(valid("other"), "provider", json!("Ollama")),
            "model",
            json!("mistral"),
        ),
    );
    assert_eq!(r.status, 400, "only the configured model of that provider");
    assert!(
        message(&r).contains("model: mistral is not configured"),
        "{}",
        message(&r)
    );
    let r = create(
        &t,
        &tok,
        with(
            with(valid("cross"), "provider", json!("LocalAI")),
            "model",
            json!("qwen"),
        ),
    );
    assert_eq!(
        r.status, 400,
        "a model configured for another provider does not count"
    );
}

#[test]
fn a_model_the_tenant_added_by_name_is_accepted_beside_the_catalog() {
    let t = T::new();
    let (tok, _) = owner(&t, "by-name");
    let custom = with(valid("ft"), "model", json!("ft-gpt-4o-custom"));
    let r = create(&t, &tok, custom.clone());
    assert_eq!(r.status, 400);
    assert!(
        message(&r).contains("is not a model of OpenAI"),
        "{}",
        message(&r)
    );
    connect(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI", "api_key": "sk-conn-0000000000", "llm_name": "ft-gpt-4o-custom", "model_type": "chat"}),
    );
    assert_eq!(created(&t, &tok, custom)["model"], "ft-gpt-4o-custom");
}

#[test]
fn the_stored_key_is_sealed_and_opens_only_for_its_own_row() {
    let t = T::new();
    let (tok, tenant) = owner(&t, "sealed");
    let a = id_of(&created(&t, &tok, valid("a")));
    let b = id_of(&created(&t, &tok, with(valid("b"), "api_key", json!(KEY2))));
    let ka = stored(&t, &tenant, &a);
    let kb = stored(&t, &tenant, &b);
    assert_eq!(
        t.db().count(&format!(
            "SELECT COUNT(*) FROM ai_keys WHERE api_key = '{KEY}' OR api_key LIKE '%{KEY}%' \
             OR api_key_hint LIKE '%{KEY}%' OR api_key LIKE '%{KEY2}%'"
        )),
        0,
        "never stored in the clear"
    );
    assert_eq!(ka.key_version, 1);
    assert_eq!(ka.api_key_hint, "sk-...cdef");
    assert_eq!(t.app.ai_key_secret(&ka).unwrap(), KEY);
    assert_eq!(t.app.ai_key_secret(&kb).unwrap(), KEY2);

    let moved = AiKey {
        api_key: kb.api_key.clone(),
        ..ka.clone()
    };
    let other_tenant = AiKey {
        tenant_id: "another-tenant".into(),
        ..ka.clone()
    };
    let other_id = AiKey {
        id: b.clone(),
        ..ka.clone()
    };
    let tampered = AiKey {
        api_key: format!(
            "{}{}",
            if ka.api_key.starts_with('A') {
                'B'
            } else {
                'A'
            },
            &ka.api_key[1..]
        ),
        ..ka.clone()
    };
    let retired = AiKey {
        key_version: 9,
        ..ka.clone()
    };
    for (why, k) in [
        ("ciphertext moved to another row", moved),
        ("row moved to another tenant", other_tenant),
        ("row id changed", other_id),
        ("ciphertext tampered", tampered),
        ("unknown key version", retired),
    ] {
        let e = t.app.ai_key_secret(&k).expect_err(why);
        let shown = format!("{e:?}");
        assert!(
            matches!(e, keyward::api::error::ApiError::Internal(_)),
            "{why}"
        );
        assert!(
            !shown.contains(KEY) && !shown.contains(KEY2),
            "{why}: {shown}"
        );
        // As the relay would answer it: a generic 500, the detail only in the log.
        let r = keyward::api::error_response(&e);
        assert_eq!(r.status, 500);
        assert_eq!(r.json_body()["message"], "Internal error");
    }
    assert_no_key_leaked(&t);
}

#[test]
fn without_a_master_key_creation_is_an_internal_error_and_writes_nothing() {
    let mut t = T::new();
    let (tok, _) = owner(&t, "no-keyring");
    t.app.config.keyring = None;
    let r = create(&t, &tok, valid("x"));
    assert_eq!(r.status, 500);
    assert_eq!(message(&r), "Internal error");
    assert_eq!(t.db().count("SELECT COUNT(*) FROM ai_keys"), 0);
    assert!(log_lines()
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("KEYWARD_ENCRYPTION_KEY is not configured")));
    assert_no_key_leaked(&t);
}

#[test]
fn a_key_is_read_updated_and_deleted_with_an_audit_entry_for_each_change() {
    let t = T::new();
    let (tok, tenant) = owner(&t, "crud");
    let k = created(&t, &tok, valid("crud"));
    let id = id_of(&k);
    let sealed_before = stored(&t, &tenant, &id).api_key;

    t.advance_minutes(1);
    let r = put(
        &t,
        &tok,
        &id,
        json!({
            "alias": "renamed",
            "provider": "Anthropic",
            "model": "claude-sonnet-4-5",
            "api_key": KEY2,
            "input_limit": 0,
            "output_limit": 500,
            "usage_limit_policy": "use_anyway",
            "status": "enabled",
            "expire_time": "2027-01-01T00:00:00Z",
        }),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let u = r.json_body()["data"].clone();
    assert_record_shape(&u);
    assert_eq!(u["id"], id.as_str());
    assert_eq!(u["alias"], "renamed");
    assert_eq!(u["provider"], "Anthropic");
    assert_eq!(u["model"], "claude-sonnet-4-5");
    assert_eq!(u["api_key_hint"], "sk-...8765");
    assert_eq!(u["input_limit"], 0);
    assert_eq!(u["output_limit"], 500);
    assert_eq!(u["usage_limit_policy"], "use_anyway");
    assert_eq!(u["status"], "enabled");
    assert_eq!(u["expire_time"], "2027-01-01T00:00:00Z");
    assert_eq!(u["create_date"], k["create_date"]);
    assert_eq!(u["update_date"], rfc3339(t.now()));
    assert_eq!(get(&t, &tok, &id).json_body()["data"], u);
    let row = stored(&t, &tenant, &id);
    assert_ne!(row.api_key, sealed_before);
    assert_eq!(t.app.ai_key_secret(&row).unwrap(), KEY2);

    // The same key again is sealed again with a fresh nonce.
    assert_eq!(put(&t, &tok, &id, json!({"api_key": KEY2})).status, 200);
    let again = stored(&t, &tenant, &id);
    assert_ne!(again.api_key, row.api_key);
    assert_eq!(t.app.ai_key_secret(&again).unwrap(), KEY2);

    // One field at a time leaves the others alone.
    let r = put(&t, &tok, &id, json!({"status": "disabled"}));
    assert_eq!(r.status, 200);
    let d = r.json_body()["data"].clone();
    assert_eq!(d["status"], "disabled");
    assert_eq!(d["alias"], "renamed");
    assert_eq!(d["output_limit"], 500);
    assert_eq!(d["expire_time"], "2027-01-01T00:00:00Z");
    // Renaming to its own alias is no conflict.
    assert_eq!(put(&t, &tok, &id, json!({"alias": "renamed"})).status, 200);
    assert_eq!(audit_count(&t, "ai_key.update"), 4);
    assert_eq!(
        t.db().count(&format!(
            "SELECT COUNT(*) FROM audit WHERE action = 'ai_key.update' AND target = '{id}' \
             AND detail LIKE '%api_key=replaced%'"
        )),
        2
    );

    let r = delete(&t, &tok, &id);
    assert_eq!(r.status, 200);
    assert_eq!(r.json_body()["data"], true);
    assert_eq!(get(&t, &tok, &id).status, 404);
    assert_eq!(delete(&t, &tok, &id).status, 404, "deleting again");
    assert_eq!(put(&t, &tok, &id, json!({"status": "enabled"})).status, 404);
    assert_eq!(
        audit_count(&t, "ai_key.delete"),
        1,
        "the no-op delete is not audited"
    );
    assert_eq!(t.db().count("SELECT COUNT(*) FROM ai_keys"), 0);
    assert_no_key_leaked(&t);
}

#[test]
fn an_unknown_id_is_a_404_for_get_put_and_delete() {
    let t = T::new();
    let (tok, _) = owner(&t, "unknown");
    for id in [
        "0123456789abcdef0123456789abcdef",
        "nope",
        "x%27%20OR%201%3D1",
    ] {
        assert_eq!(get(&t, &tok, id).status, 404, "{id}");
        assert_eq!(
            put(&t, &tok, id, json!({"status": "enabled"})).status,
            404,
            "{id}"
        );
        assert_eq!(delete(&t, &tok, id).status, 404, "{id}");
    }
    let r = get(&t, &tok, "nope");
    assert_eq!(r.json_body()["code"], 404);
    assert_eq!(message(&r), "No AI key with this id in this tenant");
}

#[test]
fn every_invalid_update_is_a_400_and_changes_nothing() {
    let t = T::new();
    let (tok, _) = owner(&t, "bad-update");
    let id = id_of(&created(&t, &tok, valid("keep")));
    let before = get(&t, &tok, &id).json_body()["data"].clone();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("no field", json!({}), "Send at least one of alias"),
        (
            "unknown field",
            json!({"status": "enabled", "used_input_tokens": 0}),
            "used_input_tokens",
        ),
        ("id is not writable", json!({"id": "x"}), "id"),
        (
            "alias null",
            json!({"alias": null}),
            "alias: must not be null",
        ),
        (
            "alias bad",
            json!({"alias": "a b"}),
            "alias: may contain only",
        ),
        (
            "alias too long",
            json!({"alias": "a".repeat(65)}),
            "alias: must be 1 to 64",
        ),
        (
            "provider null",
            json!({"provider": null}),
            "provider: must not be null",
        ),
        (
            "provider Builtin",
            json!({"provider": "Builtin"}),
            "provider: Builtin",
        ),
        (
            "provider unknown",
            json!({"provider": "Nope"}),
            "provider: unknown provider Nope",
        ),
        (
            "provider whose catalog lacks the stored model",
            json!({"provider": "Anthropic"}),
            "model: gpt-4o is not a model of Anthropic",
        ),
        (
            "model unknown for the stored provider",
            json!({"model": "claude-sonnet-4-5"}),
            "model: claude-sonnet-4-5 is not a model of OpenAI",
        ),
        (
            "model too long",
            json!({"model": "m".repeat(129)}),
            "model: must be 1 to 128",
        ),
        (
            "model null",
            json!({"model": null}),
            "model: must not be null",
        ),
        (
            "per-model provider without a connection",
            json!({"provider": "Ollama", "model": "qwen"}),
            "model: qwen is not configured",
        ),
        (
            "api_key null",
            json!({"api_key": null}),
            "api_key: must not be null",
        ),
        (
            "api_key empty",
            json!({"api_key": ""}),
            "api_key: must not be empty",
        ),
        (
            "api_key too long",
            json!({"api_key": "k".repeat(16 * 1024 + 1)}),
            "api_key: must be at most",
        ),
        (
            "api_key too short to be real",
            json!({"api_key": "sk-1234"}),
            "api_key: must be at least 8 characters",
        ),
        (
            "input_limit null",
            json!({"input_limit": null}),
            "input_limit: must not be null",
        ),
        (
            "input_limit negative",
            json!({"input_limit": -1}),
            "input_limit: must be 0 to",
        ),
        (
            "output_limit too large",
            json!({"output_limit": 10_000_001}),
            "output_limit: must be 0 to",
        ),
        (
            "output_limit a string",
            json!({"output_limit": "5"}),
            "output_limit",
        ),
        (
            "policy null",
            json!({"usage_limit_policy": null}),
            "usage_limit_policy: must not be null",
        ),
        (
            "policy unknown",
            json!({"usage_limit_policy": "maybe"}),
            "usage_limit_policy: must be reject or use_anyway",
        ),
        (
            "status null",
            json!({"status": null}),
            "status: must not be null",
        ),
        (
            "status unknown",
            json!({"status": "on"}),
            "status: must be enabled or disabled",
        ),
        (
            "expire_time past",
            json!({"expire_time": "2001-01-01T00:00:00Z"}),
            "expire_time is in the past",
        ),
        (
            "expire_time malformed",
            json!({"expire_time": "soon"}),
            "expire_time: must be an RFC 3339",
        ),
        (
            "expire_time a number",
            json!({"expire_time": 5}),
            "expire_time",
        ),
        (
            "one bad field among good ones",
            json!({"alias": "fine", "status": "enabled", "input_limit": -3}),
            "input_limit",
        ),
    ];
    for (why, body, expected) in cases {
        let r = put(&t, &tok, &id, body);
        assert_eq!(r.status, 400, "{why}: {}", message(&r));
        assert!(
            message(&r).contains(expected),
            "{why}: {:?} does not contain {expected:?}",
            message(&r)
        );
    }
    assert_eq!(get(&t, &tok, &id).json_body()["data"], before, "unchanged");
    assert_eq!(audit_count(&t, "ai_key.update"), 0);
}

#[test]
fn provider_and_model_are_validated_together_with_the_stored_other_one() {
    let t = T::new();
    let (tok, _) = owner(&t, "pair");
    let id = id_of(&created(&t, &tok, valid("pair")));
    // Another provider is another endpoint: the key goes with the change.
    let r = put(
        &t,
        &tok,
        &id,
        json!({"provider": "Anthropic", "model": "claude-sonnet-4-5", "api_key": KEY}),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let r = put(&t, &tok, &id, json!({"model": "claude-opus-4-1"}));
    assert_eq!(r.status, 200, "checked against the stored Anthropic");
    let r = put(&t, &tok, &id, json!({"provider": "Gemini"}));
    assert_eq!(r.status, 400);
    assert!(
        message(&r).contains("claude-opus-4-1 is not a model of Gemini"),
        "{}",
        message(&r)
    );
    connect(
        &t,
        &tok,
        json!({"llm_factory": "Ollama", "llm_name": "qwen", "base_url": "http://127.0.0.1:9"}),
    );
    let r = put(
        &t,
        &tok,
        &id,
        json!({"provider": "Ollama", "model": "qwen", "api_key": KEY}),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let d = r.json_body()["data"].clone();
    assert_eq!(
        (d["provider"].clone(), d["model"].clone()),
        (json!("Ollama"), json!("qwen"))
    );
}

#[test]
fn a_null_expire_time_clears_it_and_enabling_a_key_past_its_expiry_is_refused() {
    let t = T::new();
    let (tok, _) = owner(&t, "expiry");
    let soon = rfc3339(START_MS + 3_600_000);
    let id = id_of(&created(
        &t,
        &tok,
        with(
            with(valid("exp"), "expire_time", json!(soon)),
            "status",
            json!("enabled"),
        ),
    ));
    assert_eq!(
        get(&t, &tok, &id).json_body()["data"]["expire_time"],
        soon.as_str()
    );
    t.advance_minutes(120);
    assert_eq!(
        put(&t, &tok, &id, json!({"status": "disabled"})).status,
        200
    );
    let r = put(&t, &tok, &id, json!({"status": "enabled"}));
    assert_eq!(r.status, 400);
    assert!(
        message(&r).starts_with("expire_time is in the past"),
        "{}",
        message(&r)
    );
    assert_eq!(
        put(&t, &tok, &id, json!({"alias": "still-fine"})).status,
        200,
        "other fields change"
    );
    let r = put(
        &t,
        &tok,
        &id,
        json!({"status": "enabled", "expire_time": null}),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let d = r.json_body()["data"].clone();
    assert_eq!(d["expire_time"], Value::Null);
    assert_eq!(d["status"], "enabled");
    let later = rfc3339(t.now() + 60_000);
    let r = put(&t, &tok, &id, json!({"expire_time": later}));
    assert_eq!(r.json_body()["data"]["expire_time"], later.as_str());
}

#[test]
fn a_duplicate_alias_is_a_409_on_create_and_on_rename_but_free_in_another_tenant() {
    let t = T::new();
    let (a, _) = owner(&t, "dup-a");
    let (b, _) = owner(&t, "dup-b");
    created(&t, &a, valid("prod"));
    let r = create(&t, &a, with(valid("prod"), "api_key", json!(KEY2)));
    assert_eq!(r.status, 409);
    assert_eq!(r.json_body()["code"], 409);
    assert_eq!(message(&r), "alias prod already exists");
    let other = id_of(&created(&t, &a, valid("staging")));
    let r = put(
        &t,
        &a,
        &other,
        json!({"alias": "prod", "status": "enabled"}),
    );
    assert_eq!(r.status, 409);
    assert_eq!(message(&r), "alias prod already exists");
    assert_eq!(
        get(&t, &a, &other).json_body()["data"]["status"],
        "disabled",
        "nothing changed"
    );
    assert_eq!(
        created(&t, &b, with(valid("prod"), "api_key", json!(KEY3)))["alias"],
        "prod"
    );
    assert_eq!(
        t.db()
            .count("SELECT COUNT(*) FROM ai_keys WHERE alias = 'prod'"),
        2
    );
    assert_eq!(audit_count(&t, "ai_key.create"), 3);
    assert_eq!(audit_count(&t, "ai_key.update"), 0);
    assert_no_key_leaked(&t);
}

#[test]
fn two_creates_of_one_alias_give_one_key_and_one_409() {
    let t = T::new();
    let (tok, _) = owner(&t, "twice");
    let statuses: Vec<u16> = [KEY, KEY2]
        .iter()
        .map(|k| create(&t, &tok, with(valid("same"), "api_key", json!(k))).status)
        .collect();
    assert_eq!(statuses, [200, 409]);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM ai_keys"), 1);
    assert_eq!(
        audit_count(&t, "ai_key.create"),
        1,
        "no audit entry for the loser"
    );
}

// ---- Interleaving: a database that yields before every call, so two requests run side by side.

/// Pending once, then ready: hands control to the other request.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Real SQLite behind a yield, recording the order of calls.
struct YieldingDb {
    inner: SqliteDb,
    trace: RefCell<Vec<&'static str>>,
}

impl Db for YieldingDb {
    async fn query(&self, stmt: Stmt) -> Result<Vec<Row>, DbError> {
        YieldOnce(false).await;
        self.trace.borrow_mut().push("query");
        self.inner.query(stmt).await
    }
    async fn execute(&self, stmt: Stmt) -> Result<u64, DbError> {
        YieldOnce(false).await;
        self.trace.borrow_mut().push("execute");
        self.inner.execute(stmt).await
    }
    async fn batch(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>, DbError> {
        YieldOnce(false).await;
        self.trace.borrow_mut().push("batch");
        self.inner.batch(stmts).await
    }
}

/// The test platform with its database behind a yield; everything else is delegated.
struct RacePlatform {
    inner: TestPlatform,
    db: YieldingDb,
}

impl Platform for RacePlatform {
    type Db = YieldingDb;
    type Cache = <TestPlatform as Platform>::Cache;
    type Outbound = <TestPlatform as Platform>::Outbound;
    type Limiter = <TestPlatform as Platform>::Limiter;
    type Counters = <TestPlatform as Platform>::Counters;
    fn counters(&self) -> &Self::Counters {
        self.inner.counters()
    }
    fn db(&self) -> &YieldingDb {
        &self.db
    }
    fn cache(&self) -> &Self::Cache {
        self.inner.cache()
    }
    fn outbound(&self) -> &Self::Outbound {
        self.inner.outbound()
    }
    fn limiter(&self) -> &Self::Limiter {
        self.inner.limiter()
    }
    fn now_ms(&self) -> i64 {
        self.inner.now_ms()
    }
    fn fill_random(&self, buf: &mut [u8]) {
        self.inner.fill_random(buf)
    }
}

/// The usual test service, with its SQLite moved behind [`YieldingDb`].
fn race_app() -> App<RacePlatform> {
    let App {
        platform: mut inner,
        config,
    } = T::new().app;
    let sqlite = std::mem::replace(&mut inner.db, SqliteDb::new());
    App::new(
        RacePlatform {
            inner,
            db: YieldingDb {
                inner: sqlite,
                trace: RefCell::new(Vec::new()),
            },
        },
        config,
    )
}

fn as_user(tok: &str, method: &str, path: &str, body: Option<Value>) -> Request {
    let r = Request::new(method, path).header("authorization", &format!("Bearer {tok}"));
    match body {
        Some(b) => r.json(&b),
        None => r,
    }
}

/// An owner of a fresh tenant on the racing app; returns the token.
fn race_owner(app: &App<RacePlatform>) -> String {
    let admin = |method: &str, path: &str, body: Value| {
        let r = block_on(app.handle(as_user(ADMIN_TOKEN, method, path, Some(body))));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json_body()["data"].clone()
    };
    admin("POST", "/api/v1/admin/users", json!({"username": "racer"}));
    let k = admin("POST", "/api/v1/admin/users/racer/api_key", json!({}));
    token(&k)
}

/// Run two requests interleaved at every database call; returns both responses and the trace of
/// database calls they made.
fn side_by_side(
    app: &App<RacePlatform>,
    a: Request,
    b: Request,
) -> (Response, Response, Vec<&'static str>) {
    app.platform.db.trace.borrow_mut().clear();
    let (ra, rb) = block_on(futures::future::join(app.handle(a), app.handle(b)));
    let trace = app.platform.db.trace.borrow().clone();
    (ra, rb, trace)
}

#[test]
fn two_concurrent_creates_at_the_tenants_last_free_place_leave_exactly_one_key() {
    let app = race_app();
    let tok = race_owner(&app);
    let put = as_user(
        ADMIN_TOKEN,
        "PUT",
        "/api/v1/admin/settings",
        Some(json!({"max_ai_keys_per_tenant": 1})),
    );
    assert_eq!(block_on(app.handle(put)).status, 200);
    let (ra, rb, trace) = side_by_side(
        &app,
        as_user(&tok, "POST", "/api/v1/ai_keys", Some(valid("left"))),
        as_user(&tok, "POST", "/api/v1/ai_keys", Some(valid("right"))),
    );
    assert_eq!(
        &trace[trace.len() - 2..],
        ["batch", "batch"],
        "both read the limit first"
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "exactly one fits");
    let loser = if ra.status == 409 { &ra } else { &rb };
    assert!(loser.json_body()["message"]
        .as_str()
        .unwrap()
        .contains("max_ai_keys_per_tenant"));
    let n = block_on(
        app.platform
            .db
            .inner
            .query(keyward::stmt!("SELECT COUNT(*) AS n FROM ai_keys")),
    )
    .unwrap();
    assert_eq!(n[0]["n"], 1);
}

#[test]
fn two_concurrent_creates_of_one_alias_leave_exactly_one_key() {
    let app = race_app();
    let tok = race_owner(&app);
    let body = |k: &str| with(valid("racing"), "api_key", json!(k));
    let (ra, rb, trace) = side_by_side(
        &app,
        as_user(&tok, "POST", "/api/v1/ai_keys", Some(body(KEY))),
        as_user(&tok, "POST", "/api/v1/ai_keys", Some(body(KEY2))),
    );
    // Both requests did every read (auth, the tenant's models, the settings) before either wrote.
    assert_eq!(
        trace,
        ["query", "query", "query", "query", "query", "query", "batch", "batch"]
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "exactly one winner");
    let loser = if ra.status == 409 { &ra } else { &rb };
    assert_eq!(loser.json_body()["message"], "alias racing already exists");
    let db = &app.platform.db.inner;
    assert_eq!(db.count("SELECT COUNT(*) FROM ai_keys"), 1, "no duplicate");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM audit WHERE action = 'ai_key.create'"),
        1,
        "no partial write of the loser"
    );
    for r in [&ra, &rb] {
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains(KEY) && !body.contains(KEY2), "{body}");
    }
}

#[test]
fn two_concurrent_updates_cannot_combine_a_provider_and_a_model_that_do_not_match() {
    let app = race_app();
    let tok = race_owner(&app);
    let r = block_on(app.handle(as_user(
        &tok,
        "POST",
        "/api/v1/ai_keys",
        Some(valid("pair")),
    )));
    assert_eq!(r.status, 200);
    let id = id_of(&r.json_body()["data"]);
    let path = format!("/api/v1/ai_keys/{id}");
    // Each change is valid against the row both read (OpenAI, gpt-4o); together they would give
    // Anthropic with an OpenAI model.
    let (ra, rb, trace) = side_by_side(
        &app,
        as_user(
            &tok,
            "PUT",
            &path,
            Some(json!({"provider": "Anthropic", "model": "claude-sonnet-4-5", "api_key": KEY})),
        ),
        as_user(&tok, "PUT", &path, Some(json!({"model": "gpt-4o-mini"}))),
    );
    assert_eq!(
        &trace[..8],
        ["query"; 6]
            .iter()
            .chain(["batch"; 2].iter())
            .copied()
            .collect::<Vec<_>>()
            .as_slice()
    );
    assert_eq!(
        (ra.status, rb.status),
        (200, 409),
        "{}",
        String::from_utf8_lossy(&rb.body)
    );
    assert!(String::from_utf8_lossy(&rb.body).contains("changed by another request"));
    let r = block_on(app.handle(as_user(&tok, "GET", &path, None)));
    let d = r.json_body()["data"].clone();
    assert_eq!(
        (d["provider"].clone(), d["model"].clone()),
        (json!("Anthropic"), json!("claude-sonnet-4-5"))
    );
    let db = &app.platform.db.inner;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM audit WHERE action = 'ai_key.update'"),
        1
    );
}

#[test]
fn two_concurrent_updates_of_different_fields_both_land() {
    let app = race_app();
    let tok = race_owner(&app);
    let r = block_on(app.handle(as_user(
        &tok,
        "POST",
        "/api/v1/ai_keys",
        Some(valid("both")),
    )));
    let id = id_of(&r.json_body()["data"]);
    let path = format!("/api/v1/ai_keys/{id}");
    let (ra, rb, _) = side_by_side(
        &app,
        as_user(&tok, "PUT", &path, Some(json!({"status": "enabled"}))),
        as_user(&tok, "PUT", &path, Some(json!({"output_limit": 77}))),
    );
    assert_eq!((ra.status, rb.status), (200, 200));
    let d = block_on(app.handle(as_user(&tok, "GET", &path, None))).json_body()["data"].clone();
    assert_eq!(
        d["status"], "enabled",
        "not overwritten by the other request's stale row"
    );
    assert_eq!(d["output_limit"], 77);
}

// ---- Roles and tenants.

#[test]
fn members_read_keys_but_cannot_write_them() {
    let t = T::new();
    let (own, tenant) = owner(&t, "boss");
    let mem = member_of(&t, &tenant, "reader");
    let id = id_of(&created(&t, &own, valid("shared")));
    let before = get(&t, &own, &id).json_body()["data"].clone();
    assert_eq!(get(&t, &mem, &id).json_body()["data"], before);
    assert_eq!(listed(&t, &mem, ""), (1, vec!["shared".to_owned()]));
    for r in [
        create(&t, &mem, valid("mine")),
        put(&t, &mem, &id, json!({"status": "enabled"})),
        delete(&t, &mem, &id),
        // The role is checked before the body, so even a bad body is a 403.
        create(&t, &mem, json!({"nonsense": true})),
    ] {
        assert_eq!(r.status, 403, "{}", message(&r));
        assert_eq!(r.json_body()["code"], 108);
    }
    assert_eq!(get(&t, &own, &id).json_body()["data"], before, "unchanged");
    assert_eq!(t.db().count("SELECT COUNT(*) FROM ai_keys"), 1);

    t.create_user("helper", Some(&tenant), Some("admin"));
    let adm = token(&t.issue_key("helper", json!({})));
    assert_eq!(
        put(&t, &adm, &id, json!({"status": "enabled"})).status,
        200,
        "admins write"
    );
    assert_eq!(create(&t, &adm, valid("by-admin")).status, 200);
    assert_eq!(delete(&t, &adm, &id).status, 200);
}

#[test]
fn unauthenticated_requests_are_401() {
    let t = T::new();
    let r = t.send(Request::new("GET", "/api/v1/ai_keys"));
    assert_eq!(r.status, 401);
    let r = t.send(Request::new("POST", "/api/v1/ai_keys").json(&valid("x")));
    assert_eq!(r.status, 401);
    let r = t.user("kwa_nope:kws_nope", "GET", "/api/v1/ai_keys/abc", None);
    assert_eq!(r.status, 401);
}

#[test]
fn another_tenants_keys_are_404_and_never_listed() {
    let t = T::new();
    let (a, tenant_a) = owner(&t, "tenant-a");
    let (b, tenant_b) = owner(&t, "tenant-b");
    let ka = created(&t, &a, valid("secret-project"));
    let id = id_of(&ka);
    created(&t, &b, with(valid("b-own"), "api_key", json!(KEY3)));
    for r in [
        get(&t, &b, &id),
        put(&t, &b, &id, json!({"alias": "stolen"})),
        put(&t, &b, &id, json!({"api_key": KEY3})),
        delete(&t, &b, &id),
    ] {
        assert_eq!(r.status, 404, "{}", message(&r));
        assert!(!String::from_utf8_lossy(&r.body).contains("secret-project"));
    }
    for q in [
        "",
        "?search=secret",
        "?search=project",
        "?provider=OpenAI",
        "?status=disabled",
        "?page_size=100",
    ] {
        let (total, aliases) = listed(&t, &b, q);
        assert!(!aliases.contains(&"secret-project".to_owned()), "{q}");
        assert_eq!(
            total as usize,
            aliases.len(),
            "{q}: the total counts only B's keys"
        );
    }
    assert_eq!(listed(&t, &b, ""), (1, vec!["b-own".to_owned()]));
    assert_eq!(get(&t, &a, &id).json_body()["data"], ka, "untouched");
    assert_eq!(
        t.app.ai_key_secret(&stored(&t, &tenant_a, &id)).unwrap(),
        KEY
    );
    // The store's own reads are scoped the same way.
    assert!(block_on(store::get(t.db(), &tenant_b, &id))
        .unwrap()
        .is_none());
    assert!(
        block_on(store::get_by_alias(t.db(), &tenant_b, "secret-project"))
            .unwrap()
            .is_none()
    );
    let by_alias = block_on(store::get_by_alias(t.db(), &tenant_a, "secret-project"))
        .unwrap()
        .expect("found in its own tenant");
    assert_eq!(by_alias.id, id);
    assert_no_key_leaked(&t);
}

// ---- Search, filters and pages.

#[test]
fn search_matches_percent_and_underscore_literally() {
    let t = T::new();
    let (tok, tenant) = owner(&t, "like");
    for alias in ["a_b", "axb", "a.b", "plain"] {
        created(&t, &tok, valid(alias));
    }
    // The API refuses `%` in aliases, so this row is written as an imported or older row might be.
    t.db().sql(&format!(
        "INSERT INTO ai_keys (id, tenant_id, alias, provider, model, status, key_version, api_key, \
         api_key_hint, input_limit, output_limit, usage_limit_policy, create_date, update_date) \
         VALUES ('pct', '{tenant}', 'a%b', 'OpenAI', 'gpt-4o', 'disabled', 1, 'x', '****', 0, 0, \
         'reject', {START_MS}, {START_MS})"
    ));
    let found = |q: &str| {
        let (total, mut aliases) = listed(&t, &tok, q);
        aliases.sort();
        assert_eq!(total as usize, aliases.len(), "{q}");
        aliases
    };
    assert_eq!(found("?search=%25"), ["a%b"], "% is literal");
    assert_eq!(found("?search=_"), ["a_b"], "_ is literal");
    assert_eq!(found("?search=a_b"), ["a_b"], "not axb");
    assert_eq!(found("?search=a%25b"), ["a%b"]);
    assert_eq!(
        found("?search=%5C"),
        Vec::<String>::new(),
        "a backslash is literal too"
    );
    assert_eq!(
        found("?search=%27%20OR%201%3D1%20--"),
        Vec::<String>::new(),
        "SQL is data"
    );
    assert_eq!(found("?search=A_B"), ["a_b"], "case-insensitive for ASCII");
    assert_eq!(found("?search=").len(), 5, "an empty term is no filter");
    let r = list(&t, &tok, &format!("?search={}", "s".repeat(129)));
    assert_eq!(r.status, 400);
    assert!(message(&r).starts_with("search: "), "{}", message(&r));
}

#[test]
fn search_finds_provider_substrings_and_filters_narrow_by_provider_and_status() {
    let t = T::new();
    let (tok, _) = owner(&t, "filters");
    created(&t, &tok, valid("one"));
    created(&t, &tok, with(valid("two"), "status", json!("enabled")));
    created(
        &t,
        &tok,
        with(
            with(valid("three"), "provider", json!("Anthropic")),
            "model",
            json!("claude-opus-4-1"),
        ),
    );
    created(
        &t,
        &tok,
        with(
            with(
                with(valid("four"), "provider", json!("DeepSeek")),
                "model",
                json!("deepseek-chat"),
            ),
            "status",
            json!("enabled"),
        ),
    );
    let names = |q: &str| {
        let (total, mut aliases) = listed(&t, &tok, q);
        aliases.sort();
        assert_eq!(total as usize, aliases.len(), "{q}");
        aliases
    };
    assert_eq!(
        names("?search=open"),
        ["one", "two"],
        "provider substring, any case"
    );
    assert_eq!(names("?search=Seek"), ["four"]);
    assert_eq!(names("?search=thr"), ["three"], "alias substring");
    assert_eq!(
        names("?search=o"),
        ["four", "one", "three", "two"],
        "alias or provider"
    );
    assert_eq!(names("?provider=OpenAI"), ["one", "two"]);
    assert_eq!(
        names("?provider=openai"),
        Vec::<String>::new(),
        "provider filter is exact"
    );
    assert_eq!(names("?status=enabled"), ["four", "two"]);
    assert_eq!(names("?status=disabled"), ["one", "three"]);
    assert_eq!(names("?provider=OpenAI&status=disabled"), ["one"]);
    assert_eq!(names("?search=deep&status=disabled"), Vec::<String>::new());
    assert_eq!(
        names("?provider=&status="),
        ["four", "one", "three", "two"],
        "empty is no filter"
    );
    for q in ["?status=on", "?status=Enabled"] {
        let r = list(&t, &tok, q);
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(message(&r), "status: must be enabled or disabled");
    }
    let items = list(&t, &tok, "").json_body()["data"]["items"].clone();
    for item in items.as_array().unwrap() {
        assert_record_shape(item);
    }
}

#[test]
fn pages_report_the_total_and_their_parameters_are_bounded() {
    let t = T::new();
    let (tok, _) = owner(&t, "pages");
    for i in 0..25 {
        created(&t, &tok, valid(&format!("k{i:02}")));
        t.advance_ms(1);
    }
    let (total, first) = listed(&t, &tok, "");
    assert_eq!((total, first.len()), (25, 20), "default page size 20");
    assert_eq!(first[0], "k24", "newest first");
    let (total, second) = listed(&t, &tok, "?page=2");
    assert_eq!((total, second.len()), (25, 5), "last page is partial");
    assert_eq!(second.last().unwrap(), "k00");
    let mut all: Vec<String> = (1..=3)
        .flat_map(|p| listed(&t, &tok, &format!("?page={p}&page_size=10")).1)
        .collect();
    assert_eq!(all.len(), 25);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 25, "pages neither overlap nor skip");
    assert_eq!(
        listed(&t, &tok, "?page=4&page_size=10"),
        (25, vec![]),
        "past the end"
    );
    // The highest page accepted is far past the end: empty, not an error.
    assert_eq!(
        listed(&t, &tok, "?page=1000000&page_size=100"),
        (25, vec![])
    );
    assert_eq!(listed(&t, &tok, "?page_size=100").1.len(), 25);
    assert_eq!(listed(&t, &tok, "?page_size=1&page=25").1, ["k00"]);
    assert_eq!(
        listed(&t, &tok, "?page=&page_size=").1.len(),
        20,
        "empty means default"
    );
    for (q, field) in [
        ("?page=0", "page: must be an integer from 1 to 1000000"),
        ("?page=-1", "page: "),
        ("?page=abc", "page: "),
        ("?page=1.5", "page: "),
        ("?page=99999999999999999999", "page: "),
        // Beyond 2^53 / page_size the offset would reach D1 as an inexact float: a 500 before.
        (
            "?page=461168601842738790",
            "page: must be an integer from 1 to 1000000",
        ),
        ("?page=9223372036854775807", "page: "),
        (
            "?page=1000001",
            "page: must be an integer from 1 to 1000000",
        ),
        (
            "?page_size=0",
            "page_size: must be an integer from 1 to 100",
        ),
        (
            "?page_size=101",
            "page_size: must be an integer from 1 to 100",
        ),
        ("?page_size=-5", "page_size: "),
        ("?page_size=ten", "page_size: "),
    ] {
        let r = list(&t, &tok, q);
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(r.json_body()["code"], 101, "{q}");
        assert!(message(&r).starts_with(field), "{q}: {}", message(&r));
    }
}

// ---- The relay's and the cron's statements.

#[test]
fn disable_expired_disables_only_enabled_keys_past_expiry_and_is_idempotent() {
    let t = T::new();
    let (tok, tenant) = owner(&t, "cron");
    let hour = 3_600_000;
    let make = |alias: &str, status: &str, expire: Option<i64>| {
        let mut body = with(valid(alias), "status", json!(status));
        if let Some(e) = expire {
            body["expire_time"] = json!(rfc3339(START_MS + e));
        }
        id_of(&created(&t, &tok, body))
    };
    let expired = make("expired", "enabled", Some(hour));
    let later = make("later", "enabled", Some(3 * hour));
    let off = make("off", "disabled", Some(hour));
    let forever = make("forever", "enabled", None);
    t.advance_minutes(120);
    let now = t.now();
    assert_eq!(run(&t, store::disable_expired(now, 100)), 1);
    let status = |id: &str| stored(&t, &tenant, id).status.as_str();
    assert_eq!(status(&expired), "disabled");
    assert_eq!(stored(&t, &tenant, &expired).update_date, now);
    assert_eq!(status(&later), "enabled");
    assert_eq!(status(&off), "disabled");
    assert_eq!(
        stored(&t, &tenant, &off).update_date,
        START_MS,
        "already disabled: untouched"
    );
    assert_eq!(status(&forever), "enabled");
    assert_eq!(run(&t, store::disable_expired(now, 100)), 0, "idempotent");

    // Exactly at its expire_time a key has expired.
    t.advance_ms(START_MS + 3 * hour - t.now());
    assert_eq!(run(&t, store::disable_expired(t.now(), 100)), 1);
    assert_eq!(status(&later), "disabled");

    // Bounded per run: chunks of 2 over 3 expired keys.
    for i in 0..3 {
        make(&format!("batch{i}"), "enabled", Some(4 * hour + i));
    }
    t.advance_minutes(24 * 60);
    let n: Vec<u64> = (0..4)
        .map(|_| run(&t, store::disable_expired(t.now(), 2)))
        .collect();
    assert_eq!(n, [2, 1, 0, 0]);
    assert_eq!(status(&forever), "enabled");
    assert_eq!(
        t.db()
            .count("SELECT COUNT(*) FROM ai_keys WHERE status = 'enabled'"),
        1
    );
}

/// A pool of one, served by its only key.
const ONE: store::ServedBy = store::ServedBy { index: 0, size: 1 };

#[test]
fn add_usage_accumulates_and_never_moves_last_used_backwards() {
    let t = T::new();
    let (tok, tenant) = owner(&t, "usage");
    let id = id_of(&created(&t, &tok, valid("metered")));
    let other = id_of(&created(&t, &tok, valid("idle")));
    let t1 = START_MS + 10_000;
    let t2 = START_MS + 20_000;
    assert_eq!(run(&t, store::add_usage(&id, 10, 5, t1, ONE)), 1);
    assert_eq!(run(&t, store::add_usage(&id, 3, 2, t2, ONE)), 1);
    assert_eq!(
        run(&t, store::add_usage(&id, 1, 0, t1, ONE)),
        1,
        "a late report"
    );
    assert_eq!(
        run(&t, store::add_usage(&id, -50, -50, t1, ONE)),
        1,
        "negative counts add nothing"
    );
    let k = stored(&t, &tenant, &id);
    assert_eq!((k.used_input_tokens, k.used_output_tokens), (14, 7));
    assert_eq!(k.last_used_at, Some(t2), "never backwards");
    assert_eq!(
        k.update_date, START_MS,
        "usage is not a configuration change"
    );
    let idle = stored(&t, &tenant, &other);
    assert_eq!((idle.used_input_tokens, idle.last_used_at), (0, None));
    assert_eq!(run(&t, store::add_usage("no-such-id", 1, 1, t2, ONE)), 0);

    let d = get(&t, &tok, &id).json_body()["data"].clone();
    assert_eq!(d["used_input_tokens"], 14);
    assert_eq!(d["used_output_tokens"], 7);
    assert_eq!(d["last_used_at"], rfc3339(t2));
    // A PUT changes configuration, never the counters.
    let d = put(
        &t,
        &tok,
        &id,
        json!({"status": "enabled", "input_limit": 5}),
    )
    .json_body()["data"]
        .clone();
    assert_eq!(
        (
            d["used_input_tokens"].clone(),
            d["used_output_tokens"].clone()
        ),
        (json!(14), json!(7))
    );
    assert_eq!(d["last_used_at"], rfc3339(t2));
}

#[test]
fn deleting_the_tenant_removes_its_keys() {
    let t = T::new();
    let (tok, tenant) = owner(&t, "gone");
    created(&t, &tok, valid("doomed"));
    let r = t.admin("DELETE", &format!("/api/v1/admin/tenants/{tenant}"), None);
    assert_eq!(r.status, 200, "{}", message(&r));
    assert_eq!(t.db().count("SELECT COUNT(*) FROM ai_keys"), 0);
}

#[test]
fn no_provider_key_appears_in_any_response_or_log_line() {
    let t = T::new();
    let (tok, tenant) = owner(&t, "leaks");
    let id = id_of(&created(&t, &tok, valid("leak")));
    // Errors of every kind with the key in the request.
    create(&t, &tok, with(valid("leak"), "api_key", json!(KEY)));
    create(&t, &tok, with(valid("bad alias"), "api_key", json!(KEY)));
    create(
        &t,
        &tok,
        with(valid("x"), "api_key", json!(format!("{KEY}\u{7}"))),
    );
    create(&t, &tok, with(valid("x"), "bogus", json!(KEY)));
    create(&t, &tok, with(valid("x"), "input_limit", json!(KEY)));
    put(&t, &tok, &id, json!({"api_key": KEY2, "status": "nope"}));
    put(&t, &tok, &id, json!({"api_key": KEY2}));
    list(&t, &tok, &format!("?search={KEY}"));
    get(&t, &tok, KEY);
    put(&t, &tok, KEY, json!({"api_key": KEY2}));
    let mut k = stored(&t, &tenant, &id);
    k.key_version = 7;
    let e = t.app.ai_key_secret(&k).expect_err("unknown version");
    keyward::api::error_response(&e);
    assert!(t.bodies.borrow().len() >= 11);
    assert_no_key_leaked(&t);
}

#[test]
fn a_long_search_term_is_matched_literally_and_never_fails() {
    let t = T::new();
    let (_, k) = t.user_with_key("long-search");
    let tok = token(&k);
    let r = t.user(
        &tok,
        "POST",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI", "api_key": "sk-test-0000000000", "verify": false})),
    );
    assert_eq!(r.status, 200);
    let r = t.user(&tok, "POST", "/api/v1/ai_keys", Some(json!({"alias": "findme", "provider": "OpenAI", "model": "gpt-4o", "api_key": "sk-test-1111111111", "input_limit": 0})));
    assert_eq!(r.status, 200);
    for term in ["0".repeat(128), "%".repeat(128), "_\\%".repeat(40)] {
        let r = t.user(
            &tok,
            "GET",
            &format!("/api/v1/ai_keys?search={}", term.replace('%', "%25")),
            None,
        );
        assert_eq!(r.status, 200, "{term}");
        assert_eq!(r.json_body()["data"]["total"], 0, "{term}");
    }
    let r = t.user(&tok, "GET", "/api/v1/ai_keys?search=FINDM", None);
    assert_eq!(
        r.json_body()["data"]["total"],
        1,
        "substring, ASCII case folded"
    );
}

#[test]
fn a_tenant_at_its_gateway_key_maximum_gets_a_409_naming_the_limit() {
    let t = T::new();
    let (tok, _) = owner(&t, "bounded");
    let (other, _) = owner(&t, "unbounded");
    let r = t.admin(
        "PUT",
        "/api/v1/admin/settings",
        Some(json!({"max_ai_keys_per_tenant": 2})),
    );
    assert_eq!(r.json_body()["data"]["max_ai_keys_per_tenant"], 2);
    let first = created(&t, &tok, valid("one"));
    created(&t, &tok, valid("two"));
    let r = create(&t, &tok, valid("three"));
    assert_eq!(r.status, 409, "{}", message(&r));
    assert!(
        message(&r).contains("2 gateway keys") && message(&r).contains("max_ai_keys_per_tenant")
    );
    let audited = |alias: &str| {
        t.db().count(&format!(
            "SELECT COUNT(*) FROM audit WHERE action = 'ai_key.create' AND detail LIKE 'alias={alias} %'"
        ))
    };
    assert_eq!(
        audited("three"),
        0,
        "a refused create is not in the audit log"
    );
    // Counted per tenant: another tenant is not affected.
    created(&t, &other, valid("three"));
    // Deleting one makes room again.
    assert_eq!(delete(&t, &tok, &id_of(&first)).status, 200);
    created(&t, &tok, valid("three"));
    assert_eq!(audited("three"), 2);
}

#[test]
fn a_key_holds_limits_over_time_none_by_default_and_a_put_changes_only_those_sent() {
    let t = T::new();
    let (tok, tenant) = owner(&t, "overtime");
    let plain = created(&t, &tok, valid("plain"));
    assert_eq!(
        (
            &plain["rpm_limit"],
            &plain["tpm_limit"],
            &plain["token_budget"],
            &plain["budget_period"]
        ),
        (&json!(0), &json!(0), &json!(0), &json!("month"))
    );
    let mut body = valid("limited");
    body["rpm_limit"] = json!(5);
    body["tpm_limit"] = json!(10_000);
    body["token_budget"] = json!(1_000_000);
    body["budget_period"] = json!("week");
    let k = created(&t, &tok, body);
    assert_eq!(
        (
            &k["rpm_limit"],
            &k["tpm_limit"],
            &k["token_budget"],
            &k["budget_period"]
        ),
        (&json!(5), &json!(10_000), &json!(1_000_000), &json!("week"))
    );
    let r = put(
        &t,
        &tok,
        &id_of(&k),
        json!({"token_budget": 0, "budget_period": "total"}),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let d = r.json_body()["data"].clone();
    assert_eq!(
        (&d["rpm_limit"], &d["token_budget"], &d["budget_period"]),
        (&json!(5), &json!(0), &json!("total"))
    );
    let row = stored(&t, &tenant, &id_of(&k));
    assert_eq!(
        (row.rpm_limit, row.tpm_limit, row.token_budget),
        (5, 10_000, 0)
    );
    assert_eq!(get(&t, &tok, &id_of(&k)).json_body()["data"], d);
    let audit = t.db().count(
        "SELECT COUNT(*) FROM audit WHERE action = 'ai_key.update' \
         AND detail = 'token_budget=0 budget_period=total'",
    );
    assert_eq!(audit, 1);
}

#[test]
fn a_bad_limit_over_time_is_a_400_naming_the_field_and_stores_nothing() {
    let t = T::new();
    let (tok, _) = owner(&t, "overtime-bad");
    for (why, field, value, want) in [
        (
            "negative rpm",
            "rpm_limit",
            json!(-1),
            "rpm_limit: must be 0 to 1000000 (0 = none)",
        ),
        (
            "rpm too large",
            "rpm_limit",
            json!(1_000_001),
            "rpm_limit: must be 0 to 1000000 (0 = none)",
        ),
        (
            "tpm too large",
            "tpm_limit",
            json!(1_000_000_001_i64),
            "tpm_limit: must be 0 to 1000000000 (0 = none)",
        ),
        (
            "budget too large",
            "token_budget",
            json!(1_000_000_000_001_i64),
            "token_budget: must be 0 to 1000000000000 (0 = none)",
        ),
        (
            "budget a string",
            "token_budget",
            json!("10"),
            "token_budget",
        ),
        (
            "period unknown",
            "budget_period",
            json!("year"),
            "budget_period: must be day, week, month or total",
        ),
        (
            "period in the wrong case",
            "budget_period",
            json!("Day"),
            "budget_period: must be",
        ),
    ] {
        let r = create(&t, &tok, with(valid("bad"), field, value.clone()));
        assert_eq!(r.status, 400, "{why}");
        assert!(message(&r).contains(want), "{why}: {}", message(&r));
        let k = created(&t, &tok, valid(&format!("ok-{}", field.len() + why.len())));
        let r = put(&t, &tok, &id_of(&k), json!({ field: value }));
        assert_eq!(r.status, 400, "{why} (PUT)");
        assert!(message(&r).contains(field), "{why}: {}", message(&r));
        let r = put(&t, &tok, &id_of(&k), json!({ field: null }));
        assert_eq!(message(&r), format!("{field}: must not be null"), "{why}");
        delete(&t, &tok, &id_of(&k));
    }
    assert_eq!(
        t.db()
            .count("SELECT COUNT(*) FROM ai_keys WHERE alias = 'bad'"),
        0
    );
}
