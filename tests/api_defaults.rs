//! Default models per tenant over real SQLite, with the KV cache as an in-memory map that can fail.
#![cfg(not(target_arch = "wasm32"))]

mod common;
use common::*;
use keyward::api::defaults::FIELDS;
use serde_json::{json, Value};

/// One enabled Builtin model per type (the test deployment's `BUILTIN_MODELS`).
const BUILTIN_BY_FIELD: [(&str, &str); 6] = [
    ("llm_id", "@cf/meta/llama-3.1-8b-instruct"),
    ("embd_id", "@cf/baai/bge-base-en-v1.5"),
    ("asr_id", "@cf/openai/whisper"),
    ("img2txt_id", "@cf/llava-hf/llava-1.5-7b-hf"),
    ("rerank_id", "@cf/baai/bge-reranker-base"),
    ("tts_id", "@cf/myshell-ai/melotts"),
];

fn owner(t: &T, name: &str) -> String {
    let (_, k) = t.user_with_key(name);
    token(&k)
}

fn connect(t: &T, tok: &str, body: Value) {
    let mut body = body;
    body["verify"] = json!(false);
    let r = t.user(tok, "POST", "/api/v1/models", Some(body));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

fn openai(t: &T, tok: &str) {
    connect(
        t,
        tok,
        json!({"llm_factory": "OpenAI", "api_key": "sk-test-0000000000"}),
    );
}

fn set(t: &T, tok: &str, body: Value) -> keyward::api::http::Response {
    t.user(tok, "POST", "/api/v1/models/default", Some(body))
}

fn get(t: &T, tok: &str) -> Value {
    let r = t.user(tok, "GET", "/api/v1/models/default", None);
    assert_eq!(r.status, 200);
    r.json_body()["data"].clone()
}

fn message(r: &keyward::api::http::Response) -> String {
    r.json_body()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn all_six_fields_start_unset() {
    let t = T::new();
    let tok = owner(&t, "fresh");
    let d = get(&t, &tok);
    assert_eq!(d.as_object().unwrap().len(), 6);
    for (f, _) in FIELDS {
        assert_eq!(d[f], Value::Null, "{f}");
    }
}

#[test]
fn an_enabled_builtin_model_of_each_type_can_be_a_default() {
    let t = T::new();
    let tok = owner(&t, "builtin-ok");
    for (field, model) in BUILTIN_BY_FIELD {
        let r = set(&t, &tok, json!({ field: format!("{model}@Builtin") }));
        assert_eq!(r.status, 200, "{field}: {}", message(&r));
        assert_eq!(get(&t, &tok)[field], format!("{model}@Builtin"));
    }
}

#[test]
fn a_builtin_model_not_enabled_here_is_refused_for_each_type() {
    let mut t = T::new();
    t.app.config.builtin_models = String::new();
    let tok = owner(&t, "builtin-off");
    for (field, model) in BUILTIN_BY_FIELD {
        let r = set(&t, &tok, json!({ field: format!("{model}@Builtin") }));
        assert_eq!(r.status, 400, "{field}");
        assert!(
            message(&r).contains("not enabled for this deployment"),
            "{field}: {}",
            message(&r)
        );
        // Bare names too.
        let r = set(&t, &tok, json!({ field: model }));
        assert!(
            message(&r).contains("not enabled for this deployment"),
            "{field}: {}",
            message(&r)
        );
    }
    let r = set(
        &t,
        &tok,
        json!({"llm_id": "@cf/meta/llama-3.3-70b-instruct-fp8-fast@Builtin"}),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn a_builtin_model_that_does_not_exist_is_refused_for_each_type() {
    let t = T::new();
    let tok = owner(&t, "builtin-none");
    for (field, _) in BUILTIN_BY_FIELD {
        let r = set(&t, &tok, json!({ field: "@cf/nobody/nothing@Builtin" }));
        assert_eq!(r.status, 400, "{field}");
        assert!(
            message(&r).contains("unknown model"),
            "{field}: {}",
            message(&r)
        );
    }
}

#[test]
fn a_configured_model_of_each_type_can_be_a_default() {
    let t = T::new();
    let tok = owner(&t, "own-ok");
    openai(&t, &tok);
    connect(
        &t,
        &tok,
        json!({"llm_factory": "Cohere", "api_key": "co-0000000000"}),
    );
    let ok = [
        ("llm_id", "gpt-4o@OpenAI"),
        ("embd_id", "text-embedding-3-small@OpenAI"),
        ("asr_id", "whisper-1@OpenAI"),
        ("img2txt_id", "gpt-4.1-nano@OpenAI"),
        ("rerank_id", "rerank-english-v3.0@Cohere"),
        ("tts_id", "tts-1@OpenAI"),
    ];
    for (field, id) in ok {
        let r = set(&t, &tok, json!({ field: id }));
        assert_eq!(r.status, 200, "{field}: {}", message(&r));
    }
    let d = get(&t, &tok);
    for (field, id) in ok {
        assert_eq!(d[field], id);
    }
}

#[test]
fn a_catalog_model_of_an_unconnected_factory_is_refused_as_not_configured() {
    let t = T::new();
    let tok = owner(&t, "own-off");
    let r = set(&t, &tok, json!({"llm_id": "gpt-4o@OpenAI"}));
    assert_eq!(r.status, 400);
    assert!(
        message(&r).contains("not configured for this tenant"),
        "{}",
        message(&r)
    );
    let r = set(&t, &tok, json!({"embd_id": "text-embedding-3-small"}));
    assert!(message(&r).contains("not configured"), "{}", message(&r));
}

#[test]
fn a_model_that_exists_nowhere_is_refused_as_unknown() {
    let t = T::new();
    let tok = owner(&t, "own-none");
    openai(&t, &tok);
    let r = set(&t, &tok, json!({"llm_id": "gpt-9-ultra@OpenAI"}));
    assert_eq!(r.status, 400);
    assert!(message(&r).contains("unknown model"), "{}", message(&r));
    let r = set(&t, &tok, json!({"llm_id": "gpt-9-ultra"}));
    assert!(message(&r).contains("unknown model"), "{}", message(&r));
    let r = set(&t, &tok, json!({"llm_id": "gpt-4o@NoSuchFactory"}));
    assert_eq!(r.status, 400);
}

#[test]
fn several_valid_fields_are_set_at_once() {
    let t = T::new();
    let tok = owner(&t, "multi");
    openai(&t, &tok);
    let r = set(
        &t,
        &tok,
        json!({"llm_id": "gpt-4o-mini", "embd_id": "text-embedding-3-large@OpenAI", "tts_id": "@cf/myshell-ai/melotts"}),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let d = get(&t, &tok);
    assert_eq!(
        d["llm_id"], "gpt-4o-mini@OpenAI",
        "bare names come back canonical"
    );
    assert_eq!(d["embd_id"], "text-embedding-3-large@OpenAI");
    assert_eq!(d["tts_id"], "@cf/myshell-ai/melotts@Builtin");
}

#[test]
fn one_invalid_field_rejects_the_whole_request_and_changes_nothing() {
    let t = T::new();
    let tok = owner(&t, "mixed");
    openai(&t, &tok);
    set(&t, &tok, json!({"llm_id": "gpt-4o@OpenAI"}));
    let before = get(&t, &tok);
    let r = set(
        &t,
        &tok,
        json!({"llm_id": "gpt-4o-mini@OpenAI", "embd_id": "nope@OpenAI", "tts_id": null}),
    );
    assert_eq!(r.status, 400);
    assert!(message(&r).contains("embd_id"));
    assert!(message(&r).contains("nothing was changed"));
    assert_eq!(get(&t, &tok), before);
}

#[test]
fn every_invalid_field_is_listed_with_its_reason() {
    let t = T::new();
    let tok = owner(&t, "allbad");
    openai(&t, &tok);
    let r = set(
        &t,
        &tok,
        json!({
            "llm_id": "text-embedding-3-small@OpenAI",
            "embd_id": "ghost",
            "rerank_id": "rerank-english-v3.0@Cohere",
            "tts_id": "@cf/nobody/x@Builtin"
        }),
    );
    assert_eq!(r.status, 400);
    let m = message(&r);
    assert!(
        m.contains("llm_id: text-embedding-3-small@OpenAI is a model of type embedding, not chat"),
        "{m}"
    );
    assert!(m.contains("embd_id: ghost is an unknown model"), "{m}");
    assert!(
        m.contains("rerank_id: rerank-english-v3.0@Cohere is not configured"),
        "{m}"
    );
    assert!(
        m.contains("tts_id: @cf/nobody/x@Builtin is an unknown model"),
        "{m}"
    );
    assert_eq!(get(&t, &tok)["llm_id"], Value::Null);
}

#[test]
fn null_and_empty_string_clear_one_several_or_all_fields() {
    let t = T::new();
    let tok = owner(&t, "clear");
    let all = || {
        json!({
            "llm_id": "@cf/meta/llama-3.1-8b-instruct", "embd_id": "@cf/baai/bge-base-en-v1.5",
            "asr_id": "@cf/openai/whisper", "img2txt_id": "@cf/llava-hf/llava-1.5-7b-hf",
            "rerank_id": "@cf/baai/bge-reranker-base", "tts_id": "@cf/myshell-ai/melotts"
        })
    };
    for clear in [Value::Null, json!("")] {
        assert_eq!(set(&t, &tok, all()).status, 200);
        assert_eq!(set(&t, &tok, json!({"llm_id": clear})).status, 200);
        let d = get(&t, &tok);
        assert_eq!(d["llm_id"], Value::Null);
        assert!(d["embd_id"].is_string(), "fields not sent stay");
        assert_eq!(
            set(&t, &tok, json!({"embd_id": clear, "asr_id": clear})).status,
            200
        );
        let d = get(&t, &tok);
        assert_eq!(
            (d["embd_id"].clone(), d["asr_id"].clone()),
            (Value::Null, Value::Null)
        );
        assert!(d["tts_id"].is_string());
        let everything: serde_json::Map<String, Value> = FIELDS
            .iter()
            .map(|(f, _)| (f.to_string(), clear.clone()))
            .collect();
        assert_eq!(set(&t, &tok, Value::Object(everything)).status, 200);
        assert!(get(&t, &tok)
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_null));
    }
}

#[test]
fn an_empty_request_or_a_wrong_shape_is_refused() {
    let t = T::new();
    let tok = owner(&t, "empty");
    for (why, body, needle) in [
        ("no field", json!({}), "at least one"),
        ("unknown field", json!({"chat_id": "x"}), "chat_id"),
        ("number", json!({"llm_id": 5}), "llm_id"),
        ("array", json!({"llm_id": ["a"]}), "llm_id"),
    ] {
        let r = set(&t, &tok, body);
        assert_eq!(r.status, 400, "{why}");
        assert!(message(&r).contains(needle), "{why}: {}", message(&r));
    }
}

#[test]
fn an_ambiguous_bare_name_is_refused_until_qualified() {
    let t = T::new();
    let tok = owner(&t, "amb");
    connect(
        &t,
        &tok,
        json!({"llm_factory": "Ollama", "llm_name": "llama3", "base_url": "http://127.0.0.1:9"}),
    );
    connect(
        &t,
        &tok,
        json!({"llm_factory": "LocalAI", "llm_name": "llama3", "base_url": "http://127.0.0.1:9"}),
    );
    let r = set(&t, &tok, json!({"llm_id": "llama3"}));
    assert_eq!(r.status, 400);
    assert!(
        message(&r).contains("ambiguous (llama3@LocalAI, llama3@Ollama"),
        "{}",
        message(&r)
    );
    assert_eq!(
        set(&t, &tok, json!({"llm_id": "llama3@LocalAI"})).status,
        200
    );
    assert_eq!(get(&t, &tok)["llm_id"], "llama3@LocalAI");
    // The same name as another type is not ambiguous.
    connect(
        &t,
        &tok,
        json!({"llm_factory": "Xinference", "llm_name": "llama3", "base_url": "http://127.0.0.1:9", "model_type": "embedding"}),
    );
    assert_eq!(set(&t, &tok, json!({"embd_id": "llama3"})).status, 200);
}

#[test]
fn an_embedding_model_is_refused_as_the_chat_default() {
    let t = T::new();
    let tok = owner(&t, "wrongtype");
    openai(&t, &tok);
    let r = set(&t, &tok, json!({"llm_id": "text-embedding-3-small"}));
    assert_eq!(r.status, 400);
    assert!(
        message(&r).contains("is a model of type embedding, not chat"),
        "{}",
        message(&r)
    );
    let r = set(
        &t,
        &tok,
        json!({"embd_id": "@cf/meta/llama-3.1-8b-instruct@Builtin"}),
    );
    assert!(
        message(&r).contains("is a model of type chat, not embedding"),
        "{}",
        message(&r)
    );
}

#[test]
fn only_owners_and_admins_set_defaults_and_members_read_them() {
    let t = T::new();
    let (o, ko) = t.user_with_key("boss");
    t.create_user("reader", o["tenant_id"].as_str(), None);
    let km = t.issue_key("reader", json!({}));
    let r = set(
        &t,
        &token(&km),
        json!({"llm_id": "@cf/meta/llama-3.1-8b-instruct"}),
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        set(
            &t,
            &token(&ko),
            json!({"llm_id": "@cf/meta/llama-3.1-8b-instruct"})
        )
        .status,
        200
    );
    assert_eq!(
        get(&t, &token(&km))["llm_id"],
        "@cf/meta/llama-3.1-8b-instruct@Builtin"
    );
}

#[test]
fn another_tenants_models_and_defaults_stay_invisible() {
    let t = T::new();
    let a = owner(&t, "ta");
    let b = owner(&t, "tb");
    openai(&t, &a);
    assert_eq!(set(&t, &a, json!({"llm_id": "gpt-4o@OpenAI"})).status, 200);
    let r = set(&t, &b, json!({"llm_id": "gpt-4o@OpenAI"}));
    assert_eq!(r.status, 400);
    assert!(message(&r).contains("not configured for this tenant"));
    assert_eq!(get(&t, &b)["llm_id"], Value::Null);
    assert_eq!(get(&t, &a)["llm_id"], "gpt-4o@OpenAI");
}

#[test]
fn removing_a_connection_or_a_model_clears_its_defaults() {
    let t = T::new();
    let tok = owner(&t, "remove");
    openai(&t, &tok);
    connect(
        &t,
        &tok,
        json!({"llm_factory": "Ollama", "llm_name": "qwen", "base_url": "http://127.0.0.1:9"}),
    );
    connect(
        &t,
        &tok,
        json!({"llm_factory": "Ollama", "llm_name": "nomic", "base_url": "http://127.0.0.1:9", "model_type": "embedding"}),
    );
    set(
        &t,
        &tok,
        json!({"llm_id": "qwen@Ollama", "embd_id": "nomic@Ollama", "tts_id": "tts-1@OpenAI", "asr_id": "@cf/openai/whisper"}),
    );
    assert_eq!(get(&t, &tok)["llm_id"], "qwen@Ollama", "cached now");
    t.user(
        &tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "Ollama", "llm_name": "qwen"})),
    );
    let d = get(&t, &tok);
    assert_eq!(d["llm_id"], Value::Null);
    assert_eq!(d["embd_id"], "nomic@Ollama", "other models' defaults stay");
    t.user(
        &tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI"})),
    );
    let d = get(&t, &tok);
    assert_eq!(d["tts_id"], Value::Null);
    assert_eq!(d["asr_id"], "@cf/openai/whisper@Builtin");
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenant_defaults"), 2);
}

#[test]
fn reads_are_served_from_the_cache_after_the_first() {
    let t = T::new();
    let tok = owner(&t, "cache");
    set(
        &t,
        &tok,
        json!({"llm_id": "@cf/meta/llama-3.1-8b-instruct"}),
    );
    get(&t, &tok);
    let cached: Vec<String> = t.app.platform.cache.map.borrow().keys().cloned().collect();
    assert_eq!(cached.len(), 1);
    assert!(cached[0].starts_with("defaults:"));
    // With the D1 table emptied behind its back, the cache still answers this version.
    t.db().sql("DELETE FROM tenant_defaults");
    assert_eq!(
        get(&t, &tok)["llm_id"],
        "@cf/meta/llama-3.1-8b-instruct@Builtin"
    );
}

#[test]
fn a_stale_cache_entry_never_returns_a_cleared_default() {
    let t = T::new();
    let tok = owner(&t, "stale");
    openai(&t, &tok);
    set(&t, &tok, json!({"llm_id": "gpt-4o@OpenAI"}));
    assert_eq!(get(&t, &tok)["llm_id"], "gpt-4o@OpenAI");
    // Writes never touch KV: make every cache write fail so nothing can be refreshed.
    set(&t, &tok, json!({"llm_id": null}));
    assert_eq!(
        get(&t, &tok)["llm_id"],
        Value::Null,
        "old entry still in KV, but never read"
    );
    set(&t, &tok, json!({"llm_id": "gpt-4o@OpenAI"}));
    get(&t, &tok);
    t.user(
        &tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI"})),
    );
    assert_eq!(
        get(&t, &tok)["llm_id"],
        Value::Null,
        "removal retires the cached entry too"
    );
    assert!(
        t.app.platform.cache.map.borrow().len() >= 3,
        "old entries linger until their TTL"
    );
}

#[test]
fn a_failing_cache_never_fails_a_read_or_a_write() {
    let t = T::new();
    let tok = owner(&t, "failing");
    t.app.platform.cache.failing.set(true);
    assert_eq!(
        set(
            &t,
            &tok,
            json!({"llm_id": "@cf/meta/llama-3.1-8b-instruct"})
        )
        .status,
        200
    );
    assert_eq!(
        get(&t, &tok)["llm_id"],
        "@cf/meta/llama-3.1-8b-instruct@Builtin"
    );
    assert_eq!(set(&t, &tok, json!({"llm_id": null})).status, 200);
    assert_eq!(get(&t, &tok)["llm_id"], Value::Null);
    assert!(log_lines()
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("defaults cache read failed")));
    // A garbage entry under the current key is ignored too.
    t.app.platform.cache.failing.set(false);
    get(&t, &tok);
    for (_, v) in t.app.platform.cache.map.borrow_mut().iter_mut() {
        v.0 = "not json".into();
    }
    assert_eq!(get(&t, &tok)["llm_id"], Value::Null);
}

#[test]
fn a_burst_of_writes_never_fails_on_the_cache() {
    let t = T::new();
    let tok = owner(&t, "burst");
    for i in 0..20 {
        let id = if i % 2 == 0 {
            json!("@cf/meta/llama-3.1-8b-instruct")
        } else {
            Value::Null
        };
        assert_eq!(set(&t, &tok, json!({"llm_id": id})).status, 200);
    }
    assert_eq!(get(&t, &tok)["llm_id"], Value::Null);
}

#[test]
fn a_default_cannot_be_written_for_a_connection_removed_meanwhile() {
    use keyward::store::{defaults, Db};
    let t = T::new();
    let tok = owner(&t, "race");
    connect(
        &t,
        &tok,
        json!({"llm_factory": "Ollama", "llm_name": "m", "base_url": "http://127.0.0.1:9"}),
    );
    let tenant = t.user(&tok, "GET", "/api/v1/me", None).json_body()["data"]["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let conn = keyward::providers::connection_id(&tenant, "Ollama", "m");
    // The removal wins the race: the later default write, still naming the connection, fails whole.
    t.user(
        &tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "Ollama", "llm_name": "m"})),
    );
    let late = block_on(t.db().batch(vec![
        defaults::set(
            &tenant,
            keyward::catalog::ModelType::Chat,
            "Ollama",
            "m",
            Some(&conn),
            0,
        ),
        defaults::bump_version(&tenant),
    ]));
    assert!(
        matches!(late, Err(keyward::store::DbError::ForeignKey(_))),
        "{late:?}"
    );
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenant_defaults"), 0);
}
