//! Provider connections over real SQLite, validated live against a real HTTP stand-in on 127.0.0.1.
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;

use common::*;
use keyward::catalog;
use keyward::domain::crypto::{credential_aad, CryptoError, Keyring, MasterKey};
use keyward::store::providers;
use serde_json::{json, Value};
use standin::{StandIn, GOOD_KEY};

const BAD_KEY: &str = "sk-wrong-key-9876543210";

/// A tenant owner's token, and the stand-in.
fn setup(t: &T, name: &str) -> String {
    let (_, k) = t.user_with_key(name);
    token(&k)
}

fn add(t: &T, tok: &str, body: Value) -> keyward::api::http::Response {
    t.user(tok, "POST", "/api/v1/models", Some(body))
}

fn list(t: &T, tok: &str, details: bool) -> Value {
    let q = if details { "?include_details=true" } else { "" };
    let r = t.user(tok, "GET", &format!("/api/v1/models{q}"), None);
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
fn the_catalog_lists_every_factory_with_tags_and_builtin_enablement() {
    let t = T::new();
    let tok = setup(&t, "cat");
    let r = t.user(&tok, "GET", "/api/v1/factories", None).json_body();
    let names: Vec<&str> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for want in [
        "OpenAI",
        "Azure-OpenAI",
        "Gemini",
        "VertexAI",
        "Anthropic",
        "Mistral",
        "DeepSeek",
        "Cohere",
        "Jina",
        "OpenAI-API-Compatible",
        "Ollama",
        "LocalAI",
        "Xinference",
        "Builtin",
    ] {
        assert!(names.contains(&want), "{want} missing");
    }
    let openai = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "OpenAI")
        .unwrap();
    assert_eq!(
        openai["tags"],
        "LLM,TEXT EMBEDDING,TTS,SPEECH2TEXT,IMAGE2TEXT"
    );
    assert!(openai["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "gpt-4o-mini" && m["type"] == "chat"));
    let builtin = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Builtin")
        .unwrap();
    let enabled = |n: &str| {
        builtin["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == n)
            .unwrap()["enabled"]
            .clone()
    };
    assert_eq!(enabled("@cf/meta/llama-3.1-8b-instruct"), true);
    assert_eq!(enabled("@cf/baai/bge-m3"), false);
}

#[test]
fn an_api_service_connects_with_a_good_key_and_lists_its_catalog_models() {
    let t = T::new();
    let s = StandIn::start();
    let tok = setup(&t, "svc");
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": format!("{}/v1", s.base())}),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    assert_eq!(r.json_body()["data"], true);
    let probe = s
        .requests()
        .into_iter()
        .find(|q| q.path == "/v1/models")
        .expect("a live models call");
    assert_eq!(
        probe.header("authorization"),
        Some(format!("Bearer {GOOD_KEY}").as_str())
    );

    let data = list(&t, &tok, false);
    assert_eq!(
        data["OpenAI"]["tags"],
        catalog::factory("OpenAI").unwrap().tags
    );
    let llm = data["OpenAI"]["llm"].as_array().unwrap();
    assert_eq!(llm.len(), catalog::factory("OpenAI").unwrap().models.len());
    assert!(llm
        .iter()
        .any(|m| m == &json!({"type": "chat", "name": "gpt-4o-mini", "used_token": 0})));
    assert!(data["Builtin"].is_object(), "Builtin is always listed");

    let detailed = list(&t, &tok, true);
    let m = detailed["OpenAI"]["llm"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "gpt-4o")
        .unwrap()
        .clone();
    assert_eq!(m["api_base"], format!("{}/v1", s.base()));
    assert_eq!(m["max_tokens"], 128000);
    assert_eq!(m["status"], "valid");
    assert_eq!(m["credential_hint"], "sk...6789");
    for body in t.bodies.borrow().iter() {
        assert!(!body.contains(GOOD_KEY), "credential in a response");
    }
    let stored = t.db().count(&format!("SELECT COUNT(*) FROM provider_connections WHERE credential LIKE '%{GOOD_KEY}%' OR settings LIKE '%{GOOD_KEY}%'"));
    assert_eq!(stored, 0, "credential stored in the clear");
}

#[test]
fn a_bad_key_is_a_422_with_the_providers_reason_and_without_the_key() {
    let t = T::new();
    let s = StandIn::start();
    let tok = setup(&t, "bad");
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI", "api_key": BAD_KEY, "base_url": format!("{}/v1", s.base())}),
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.json_body()["code"], 102);
    assert_eq!(
        message(&r),
        "Fail to access model(OpenAI) using this api key: Incorrect API key provided."
    );
    assert!(!String::from_utf8_lossy(&r.body).contains(BAD_KEY));
    assert_eq!(
        t.db().count("SELECT COUNT(*) FROM provider_connections"),
        0,
        "nothing written"
    );
}

#[test]
fn an_unreachable_slow_huge_or_garbage_provider_is_a_502() {
    let t = T::new();
    let s = StandIn::start();
    let tok = setup(&t, "down");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (why, base) in [
        ("refused", format!("http://127.0.0.1:{closed}/v1")),
        ("timeout", format!("{}/slow/v1", s.base())),
        ("huge", format!("{}/huge/v1", s.base())),
        ("garbage", format!("{}/garbage/v1", s.base())),
    ] {
        let r = add(
            &t,
            &tok,
            json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": base}),
        );
        assert_eq!(r.status, 502, "{why}: {}", message(&r));
        assert_eq!(r.json_body()["code"], 105, "{why}");
        assert!(
            message(&r).starts_with("Fail to access model(OpenAI): "),
            "{why}: {}",
            message(&r)
        );
    }
    assert!(message(&add(&t, &tok, json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": format!("{}/slow/v1", s.base())}))).contains("within 2 s"));
    assert_eq!(t.db().count("SELECT COUNT(*) FROM provider_connections"), 0);
}

#[test]
fn verify_false_skips_the_live_call_and_adding_again_replaces_the_key() {
    let t = T::new();
    let s = StandIn::start();
    let tok = setup(&t, "skip");
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI", "api_key": BAD_KEY, "base_url": format!("{}/v1", s.base()), "verify": false}),
    );
    assert_eq!(r.status, 200);
    assert!(s.requests().is_empty(), "no call made");
    let hint = |t: &T| list(t, &tok, true)["OpenAI"]["llm"][0]["credential_hint"].clone();
    assert_eq!(hint(&t), "s...3210");
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": format!("{}/v1", s.base())}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(hint(&t), "sk...6789");
    assert_eq!(
        t.db().count("SELECT COUNT(*) FROM provider_connections"),
        1,
        "one connection per tenant"
    );
}

#[test]
fn removing_a_connection_and_removing_again() {
    let t = T::new();
    let s = StandIn::start();
    let tok = setup(&t, "rm");
    add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": format!("{}/v1", s.base())}),
    );
    let r = t.user(
        &tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI"})),
    );
    assert_eq!(r.json_body()["data"], true);
    assert!(list(&t, &tok, false).get("OpenAI").is_none());
    let r = t.user(
        &tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI"})),
    );
    assert_eq!(r.status, 404);
    assert!(message(&r).contains("not configured"));
    let r = t.user(
        &tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "Gemini", "llm_name": "gemini-2.5-pro"})),
    );
    assert_eq!(r.status, 404);
    let r = t.user(
        &tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "Builtin"})),
    );
    assert_eq!(r.status, 400);
    let r = t.user(
        &tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "Nope"})),
    );
    assert_eq!(r.status, 400);
    let r = t.user(&tok, "DELETE", "/api/v1/models", Some(json!({})));
    assert_eq!(r.status, 400);
}

#[test]
fn a_keyless_self_hosted_model_connects_lists_and_is_removed() {
    let t = T::new();
    let s = StandIn::start();
    let tok = setup(&t, "ollama");
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "Ollama", "llm_name": "llama3.2", "base_url": s.base(), "model_type": "chat"}),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    assert!(
        s.requests().is_empty(),
        "self-deployed factories are not probed by default"
    );
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "Ollama", "llm_name": "nomic-embed-text", "base_url": s.base(), "model_type": "embedding", "max_tokens": 8192, "verify": true}),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    assert!(s.requests().iter().any(|q| q.path == "/api/tags"));
    let data = list(&t, &tok, true);
    let llm = data["Ollama"]["llm"].as_array().unwrap();
    assert_eq!(llm.len(), 2);
    let emb = llm
        .iter()
        .find(|m| m["name"] == "nomic-embed-text")
        .unwrap();
    assert_eq!(emb["type"], "embedding");
    assert_eq!(emb["max_tokens"], 8192);
    assert_eq!(emb["api_base"], s.base());
    assert_eq!(emb["credential_hint"], Value::Null);
    assert_eq!(
        data["Ollama"]["tags"],
        catalog::factory("Ollama").unwrap().tags
    );

    let r = t.user(
        &tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "Ollama", "llm_name": "llama3.2"})),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        list(&t, &tok, false)["Ollama"]["llm"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = t.user(
        &tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "Ollama", "llm_name": "llama3.2"})),
    );
    assert_eq!(r.status, 404);
    // Unreachable self-hosted endpoint with verify: a 502.
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "Ollama", "llm_name": "x", "base_url": "http://127.0.0.1:1", "verify": true}),
    );
    assert_eq!(r.status, 502);
}

#[test]
fn an_openai_compatible_endpoint_works_with_and_without_a_key() {
    let t = T::new();
    let s = StandIn::start();
    let tok = setup(&t, "compat");
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "my-model", "base_url": format!("{}/open/v1", s.base())}),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "keyed", "base_url": format!("{}/v1", s.base()), "api_key": GOOD_KEY}),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "keyed2", "base_url": format!("{}/v1", s.base()), "auth_token": GOOD_KEY}),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "bad", "base_url": format!("{}/v1", s.base()), "api_key": BAD_KEY}),
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        list(&t, &tok, false)["OpenAI-API-Compatible"]["llm"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn azure_gemini_anthropic_and_vertex_validate_their_own_way() {
    let t = T::new();
    let s = StandIn::start();
    let tok = setup(&t, "multi");
    let azure = |key: &str, dep: &str| json!({"llm_factory": "Azure-OpenAI", "endpoint": s.base(), "deployment": dep, "api_key": key, "llm_name": "gpt-4o"});
    assert_eq!(add(&t, &tok, azure(GOOD_KEY, "prod-4o")).status, 200);
    let r = add(&t, &tok, azure(BAD_KEY, "prod-4o"));
    assert_eq!(r.status, 422);
    assert!(message(&r).contains("Access denied"), "{}", message(&r));
    let r = add(&t, &tok, azure(GOOD_KEY, "missing"));
    assert_eq!(r.status, 422);
    assert!(message(&r).contains("deployment"), "{}", message(&r));
    let probe = s
        .requests()
        .into_iter()
        .find(|q| q.path.starts_with("/openai/deployments/prod-4o"))
        .unwrap();
    assert_eq!(probe.header("api-key"), Some(GOOD_KEY));
    assert!(probe.path.contains("api-version=2024-10-21"));

    assert_eq!(
        add(
            &t,
            &tok,
            json!({"llm_factory": "Gemini", "api_key": GOOD_KEY, "base_url": s.base()})
        )
        .status,
        200
    );
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "Gemini", "api_key": BAD_KEY, "base_url": s.base()}),
    );
    assert_eq!(r.status, 422);
    assert!(message(&r).contains("API key not valid"));

    assert_eq!(
        add(
            &t,
            &tok,
            json!({"llm_factory": "Anthropic", "api_key": GOOD_KEY, "base_url": s.base()})
        )
        .status,
        200
    );
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "Anthropic", "api_key": BAD_KEY, "base_url": s.base()}),
    );
    assert_eq!(r.status, 422);
    assert!(message(&r).contains("invalid x-api-key"));

    let creds = standin::vertex_credentials_json(
        &format!("{}/token", s.base()),
        "svc@standin-project.iam.gserviceaccount.com",
    );
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "VertexAI", "credentials_json": creds, "location": "europe-west4"}),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let token_call = s
        .requests()
        .into_iter()
        .find(|q| q.path == "/token")
        .expect("token exchange");
    assert!(token_call.body.contains("assertion="));
    // The same key for another audience fails at the stand-in's signature/audience check.
    let wrong_aud =
        standin::vertex_credentials_json(&format!("{}/other/token", s.base()), "svc@x.iam");
    let mut tampered: Value = serde_json::from_str(&wrong_aud).unwrap();
    tampered["private_key"] = json!(tampered["private_key"]
        .as_str()
        .unwrap()
        .replace("MII", "MIJ"));
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "VertexAI", "credentials_json": tampered}),
    );
    assert_eq!(r.status, 422, "{}", message(&r));

    let data = list(&t, &tok, true);
    assert_eq!(data["Azure-OpenAI"]["llm"][0]["name"], "prod-4o");
    assert_eq!(
        data["VertexAI"]["tags"],
        catalog::factory("VertexAI").unwrap().tags
    );
    assert!(!data.to_string().contains("PRIVATE KEY"));
}

#[test]
fn every_factory_refuses_missing_and_malformed_fields_by_name() {
    let t = T::new();
    let tok = setup(&t, "params");
    let sa = |patch: Value| {
        let mut c: Value = serde_json::from_str(&standin::vertex_credentials_json(
            "http://127.0.0.1:1/token",
            "a@b.c",
        ))
        .unwrap();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c.to_string()
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no factory",
            json!({"api_key": "sk-long-enough"}),
            "llm_factory",
        ),
        (
            "unknown factory",
            json!({"llm_factory": "OpenAl", "api_key": "sk-long-enough"}),
            "llm_factory",
        ),
        ("builtin", json!({"llm_factory": "Builtin"}), "llm_factory"),
        (
            "factory of wrong type",
            json!({"llm_factory": 5}),
            "llm_factory",
        ),
        (
            "openai without key",
            json!({"llm_factory": "OpenAI"}),
            "api_key",
        ),
        (
            "openai empty key",
            json!({"llm_factory": "OpenAI", "api_key": " "}),
            "api_key",
        ),
        (
            "openai key wrong type",
            json!({"llm_factory": "OpenAI", "api_key": 123}),
            "api_key",
        ),
        (
            "openai key too short to be real",
            json!({"llm_factory": "OpenAI", "api_key": "sk-1234"}),
            "api_key: must be at least 8 characters",
        ),
        (
            "azure key too short to be real",
            json!({"llm_factory": "Azure-OpenAI", "endpoint": "https://x.openai.azure.com", "deployment": "d", "api_key": "abc"}),
            "api_key: must be at least 8 characters",
        ),
        (
            "compatible auth_token too short to be real",
            json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "m", "base_url": "http://x", "auth_token": "tok"}),
            "auth_token: must be at least 8 characters",
        ),
        (
            "openai ftp base",
            json!({"llm_factory": "OpenAI", "api_key": "sk-long-enough", "base_url": "ftp://x"}),
            "base_url",
        ),
        (
            "openai userinfo base",
            json!({"llm_factory": "OpenAI", "api_key": "sk-long-enough", "base_url": "https://u:p@x"}),
            "base_url",
        ),
        (
            "openai foreign field",
            json!({"llm_factory": "OpenAI", "api_key": "sk-long-enough", "deployment": "d"}),
            "deployment",
        ),
        (
            "unknown field",
            json!({"llm_factory": "OpenAI", "api_key": "sk-long-enough", "apikey": "k"}),
            "apikey",
        ),
        (
            "bad model type",
            json!({"llm_factory": "OpenAI", "api_key": "sk-long-enough", "llm_name": "x", "model_type": "vision"}),
            "model_type",
        ),
        (
            "type factory lacks",
            json!({"llm_factory": "DeepSeek", "api_key": "sk-long-enough", "llm_name": "x", "model_type": "embedding"}),
            "model_type",
        ),
        (
            "max_tokens zero",
            json!({"llm_factory": "OpenAI", "api_key": "sk-long-enough", "max_tokens": 0}),
            "max_tokens",
        ),
        (
            "max_tokens huge",
            json!({"llm_factory": "OpenAI", "api_key": "sk-long-enough", "max_tokens": 1u64 << 40}),
            "max_tokens",
        ),
        (
            "gemini without key",
            json!({"llm_factory": "Gemini"}),
            "api_key",
        ),
        (
            "anthropic without key",
            json!({"llm_factory": "Anthropic"}),
            "api_key",
        ),
        (
            "mistral without key",
            json!({"llm_factory": "Mistral"}),
            "api_key",
        ),
        (
            "deepseek without key",
            json!({"llm_factory": "DeepSeek"}),
            "api_key",
        ),
        (
            "cohere without key",
            json!({"llm_factory": "Cohere"}),
            "api_key",
        ),
        (
            "jina without key",
            json!({"llm_factory": "Jina"}),
            "api_key",
        ),
        (
            "azure without endpoint",
            json!({"llm_factory": "Azure-OpenAI", "deployment": "d", "api_key": "sk-long-enough"}),
            "endpoint",
        ),
        (
            "azure without deployment",
            json!({"llm_factory": "Azure-OpenAI", "endpoint": "https://x.openai.azure.com", "api_key": "sk-long-enough"}),
            "deployment",
        ),
        (
            "azure without key",
            json!({"llm_factory": "Azure-OpenAI", "endpoint": "https://x", "deployment": "d"}),
            "api_key",
        ),
        (
            "azure bad deployment",
            json!({"llm_factory": "Azure-OpenAI", "endpoint": "https://x", "deployment": "a/b", "api_key": "sk-long-enough"}),
            "deployment",
        ),
        (
            "azure bad version",
            json!({"llm_factory": "Azure-OpenAI", "endpoint": "https://x", "deployment": "d", "api_key": "sk-long-enough", "api_version": "1 2"}),
            "api_version",
        ),
        (
            "azure base_url",
            json!({"llm_factory": "Azure-OpenAI", "endpoint": "https://x", "deployment": "d", "api_key": "sk-long-enough", "base_url": "https://y"}),
            "base_url",
        ),
        (
            "vertex without creds",
            json!({"llm_factory": "VertexAI"}),
            "credentials_json",
        ),
        (
            "vertex creds not json",
            json!({"llm_factory": "VertexAI", "credentials_json": "{nope"}),
            "credentials_json",
        ),
        (
            "vertex wrong type",
            json!({"llm_factory": "VertexAI", "credentials_json": sa(json!({"type": "user"}))}),
            "credentials_json",
        ),
        (
            "vertex no email",
            json!({"llm_factory": "VertexAI", "credentials_json": sa(json!({"client_email": ""}))}),
            "client_email",
        ),
        (
            "vertex no key",
            json!({"llm_factory": "VertexAI", "credentials_json": sa(json!({"private_key": "x"}))}),
            "private_key",
        ),
        (
            "vertex no token uri",
            json!({"llm_factory": "VertexAI", "credentials_json": sa(json!({"token_uri": null}))}),
            "token_uri",
        ),
        (
            "vertex api_key",
            json!({"llm_factory": "VertexAI", "credentials_json": sa(json!({})), "api_key": "sk-long-enough"}),
            "api_key",
        ),
        (
            "vertex bad location",
            json!({"llm_factory": "VertexAI", "credentials_json": sa(json!({})), "location": "eu west"}),
            "location",
        ),
        (
            "compat without name",
            json!({"llm_factory": "OpenAI-API-Compatible", "base_url": "http://x"}),
            "llm_name",
        ),
        (
            "compat without base",
            json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "m"}),
            "base_url",
        ),
        (
            "ollama without base",
            json!({"llm_factory": "Ollama", "llm_name": "m"}),
            "base_url",
        ),
        (
            "ollama with key",
            json!({"llm_factory": "Ollama", "llm_name": "m", "base_url": "http://x", "api_key": "sk-long-enough"}),
            "api_key",
        ),
        (
            "localai without name",
            json!({"llm_factory": "LocalAI", "base_url": "http://x"}),
            "llm_name",
        ),
        (
            "xinference javascript url",
            json!({"llm_factory": "Xinference", "llm_name": "m", "base_url": "javascript:alert(1)"}),
            "base_url",
        ),
        (
            "long llm_name",
            json!({"llm_factory": "Ollama", "llm_name": "m".repeat(200), "base_url": "http://x"}),
            "llm_name",
        ),
    ];
    for (why, body, needle) in cases {
        let r = add(&t, &tok, body);
        assert_eq!(r.status, 400, "{why}: {}", message(&r));
        assert_eq!(r.json_body()["code"], 101, "{why}");
        assert!(message(&r).contains(needle), "{why}: {}", message(&r));
    }
    assert_eq!(t.db().count("SELECT COUNT(*) FROM provider_connections"), 0);
}

#[test]
fn a_single_model_can_be_added_to_an_organization_factory() {
    let t = T::new();
    let s = StandIn::start();
    let tok = setup(&t, "single");
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": format!("{}/v1", s.base()), "llm_name": "ft:gpt-4o-mini:acme", "model_type": "chat", "max_tokens": 4096}),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let data = list(&t, &tok, true);
    let llm = data["OpenAI"]["llm"].as_array().unwrap();
    assert_eq!(llm.len(), 1);
    assert_eq!(llm[0]["name"], "ft:gpt-4o-mini:acme");
    assert_eq!(llm[0]["max_tokens"], 4096);
    // A catalog model added alone takes its catalog type.
    add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": format!("{}/v1", s.base()), "llm_name": "text-embedding-3-small"}),
    );
    let data = list(&t, &tok, false);
    assert!(data["OpenAI"]["llm"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "text-embedding-3-small" && m["type"] == "embedding"));
}

#[test]
fn members_list_but_only_owners_and_admins_change_connections() {
    let t = T::new();
    let s = StandIn::start();
    let (owner, ko) = t.user_with_key("own");
    t.create_user("mem", owner["tenant_id"].as_str(), Some("member"));
    let km = t.issue_key("mem", json!({}));
    t.create_user("adm", owner["tenant_id"].as_str(), Some("admin"));
    let ka = t.issue_key("adm", json!({}));
    let body = json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": format!("{}/v1", s.base())});
    let r = add(&t, &token(&km), body.clone());
    assert_eq!(r.status, 403);
    assert_eq!(r.json_body()["code"], 108);
    assert_eq!(add(&t, &token(&ka), body).status, 200);
    assert!(list(&t, &token(&km), false).get("OpenAI").is_some());
    let r = t.user(
        &token(&km),
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI"})),
    );
    assert_eq!(r.status, 403);
    let r = t.user(
        &token(&ko),
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI"})),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn another_tenant_never_sees_or_removes_a_connection() {
    let t = T::new();
    let s = StandIn::start();
    let a = setup(&t, "tenant-a");
    let b = setup(&t, "tenant-b");
    add(
        &t,
        &a,
        json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": format!("{}/v1", s.base())}),
    );
    add(
        &t,
        &a,
        json!({"llm_factory": "Ollama", "llm_name": "m", "base_url": s.base()}),
    );
    let seen = list(&t, &b, true);
    assert!(seen.get("OpenAI").is_none() && seen.get("Ollama").is_none());
    for body in [
        json!({"llm_factory": "OpenAI"}),
        json!({"llm_factory": "Ollama", "llm_name": "m"}),
    ] {
        let r = t.user(&b, "DELETE", "/api/v1/models", Some(body));
        assert_eq!(r.status, 404);
    }
    assert_eq!(
        list(&t, &a, false)["OpenAI"]["llm"]
            .as_array()
            .unwrap()
            .len(),
        catalog::factory("OpenAI").unwrap().models.len()
    );
}

#[test]
fn sealed_credentials_open_only_in_their_own_row_with_their_own_key() {
    let t = T::new();
    let s = StandIn::start();
    let (ua, ka) = t.user_with_key("seal-a");
    let (ub, kb) = t.user_with_key("seal-b");
    for tok in [token(&ka), token(&kb)] {
        add(
            &t,
            &tok,
            json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": format!("{}/v1", s.base())}),
        );
    }
    let rows = |tenant: &str| block_on(providers::list_for_tenant(t.db(), tenant)).unwrap();
    let a = rows(ua["tenant_id"].as_str().unwrap()).remove(0);
    let b = rows(ub["tenant_id"].as_str().unwrap()).remove(0);
    // Round trip.
    assert_eq!(
        t.app.connection_secrets(&a).unwrap().get("api_key"),
        Some(GOOD_KEY)
    );
    // Moved: A's ciphertext in B's row fails.
    let mut moved = b.clone();
    moved.credential = a.credential.clone();
    assert!(t.app.connection_secrets(&moved).is_err());
    // Same tenant, other model: fails.
    let mut other_model = a.clone();
    other_model.llm_name = "gpt-4o".into();
    assert!(t.app.connection_secrets(&other_model).is_err());
    // Tampered: fails.
    let mut tampered = a.clone();
    let mut sealed = tampered.credential.clone().unwrap().into_bytes();
    sealed[20] = if sealed[20] == b'A' { b'B' } else { b'A' };
    tampered.credential = Some(String::from_utf8(sealed).unwrap());
    assert!(t.app.connection_secrets(&tampered).is_err());
    // Wrong key version: fails with UnknownVersion at the keyring.
    let ring = Keyring::new(MasterKey::new(1, TEST_MASTER_KEY), vec![]);
    let aad = credential_aad(&a.tenant_id, &a.factory, &a.llm_name, &a.id);
    assert_eq!(
        ring.open(2, a.credential.as_deref().unwrap(), &aad),
        Err(CryptoError::UnknownVersion(2))
    );
    // After a master-key rotation the old rows still open with the older key.
    let rotated = Keyring::new(
        MasterKey::new(2, [9; 32]),
        vec![MasterKey::new(1, TEST_MASTER_KEY)],
    );
    assert_eq!(
        rotated
            .open(1, a.credential.as_deref().unwrap(), &aad)
            .unwrap(),
        format!("{{\"api_key\":\"{GOOD_KEY}\"}}")
    );
    // A tenant deleted leaves nothing of its connections.
    t.admin(
        "DELETE",
        &format!(
            "/api/v1/admin/tenants/{}",
            ua["tenant_id"].as_str().unwrap()
        ),
        None,
    );
    assert!(rows(ua["tenant_id"].as_str().unwrap()).is_empty());
    assert_eq!(
        t.db().count(&format!(
            "SELECT COUNT(*) FROM provider_connections WHERE credential = '{}'",
            a.credential.unwrap()
        )),
        0
    );
}

#[test]
fn no_provider_credential_reaches_a_response_or_log_line() {
    let t = T::new();
    let s = StandIn::start();
    let tok = setup(&t, "leak");
    let before = t.bodies.borrow().len();
    let creds = standin::vertex_credentials_json(&format!("{}/token", s.base()), "svc@p.iam");
    add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": format!("{}/v1", s.base())}),
    );
    add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI", "api_key": BAD_KEY, "base_url": format!("{}/v1", s.base())}),
    );
    add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI", "api_key": BAD_KEY, "base_url": "http://127.0.0.1:1/v1"}),
    );
    add(
        &t,
        &tok,
        json!({"llm_factory": "VertexAI", "credentials_json": creds}),
    );
    add(
        &t,
        &tok,
        json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": "ftp://x"}),
    );
    list(&t, &tok, true);
    let bodies = t.bodies.borrow()[before..].join("\n");
    let logs = log_lines().lock().unwrap().join("\n");
    for secret in [GOOD_KEY, BAD_KEY, "BEGIN PRIVATE KEY"] {
        assert!(!bodies.contains(secret), "{secret} in a response");
        assert!(!logs.contains(secret), "{secret} in the log");
    }
}

#[test]
fn a_connections_model_name_is_refused_in_the_words_a_gateway_keys_model_is() {
    // One rule for a model name wherever it is given: the connection's llm_name used to say
    // "must not be empty" / "must be at most 128 characters" where a gateway key's model said
    // "must be 1 to 128 characters" for the same limits.
    let t = T::new();
    let tok = setup(&t, "owner");
    for name in ["m".repeat(129), "   ".to_owned()] {
        let r = add(
            &t,
            &tok,
            json!({"llm_factory": "Ollama", "llm_name": name, "base_url": "http://x"}),
        );
        assert_eq!(r.status, 400);
        assert_eq!(message(&r), "llm_name: must be 1 to 128 characters");
    }
    let r = add(
        &t,
        &tok,
        json!({"llm_factory": "Ollama", "llm_name": "a\u{7}b", "base_url": "http://x"}),
    );
    assert_eq!(message(&r), "llm_name: must not contain control characters");
}

#[test]
fn a_tenant_at_its_connection_maximum_gets_a_409_but_may_still_replace_a_key() {
    let t = T::new();
    let tok = setup(&t, "bounded");
    let r = t.admin(
        "PUT",
        "/api/v1/admin/settings",
        Some(json!({"max_connections_per_tenant": 2})),
    );
    assert_eq!(r.json_body()["data"]["max_connections_per_tenant"], 2);
    let model = |name: &str, key: &str| {
        json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": name, "base_url": "http://127.0.0.1:9/v1",
            "api_key": key, "verify": false})
    };
    for name in ["a", "b"] {
        let r = add(&t, &tok, model(name, "sk-first-key-000000"));
        assert_eq!(r.status, 200, "{}", message(&r));
    }
    let r = add(&t, &tok, model("c", "sk-first-key-000000"));
    assert_eq!(r.status, 409, "{}", message(&r));
    assert!(
        message(&r).contains("2 provider connections")
            && message(&r).contains("max_connections_per_tenant")
    );
    assert_eq!(
        t.db().count("SELECT COUNT(*) FROM provider_connections"),
        2,
        "nothing was written"
    );
    // Replacing an existing connection's key adds no connection, so it is never refused.
    let r = add(&t, &tok, model("a", "sk-second-key-00000"));
    assert_eq!(r.status, 200, "{}", message(&r));
    // Out of range is a 400 naming the setting.
    for bad in [
        json!({"max_connections_per_tenant": 0}),
        json!({"max_ai_keys_per_tenant": 100_001}),
    ] {
        let r = t.admin("PUT", "/api/v1/admin/settings", Some(bad.clone()));
        assert_eq!(r.status, 400, "{bad}");
        let name = bad.as_object().unwrap().keys().next().unwrap().clone();
        assert!(message(&r).contains(&name), "{}", message(&r));
    }
}
