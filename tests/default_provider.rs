//! The deployment's default provider (`DEFAULT_LLM_*`, RAGFlow's `user_default_llm`): what a new
//! tenant gets, what an invalid configuration does, what a later change leaves alone, and the
//! admin route that applies it to an existing tenant. Over real SQLite, relaying to the real HTTP
//! stand-in on 127.0.0.1.
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;

use common::*;
use keyward::api::seed::DefaultProvider;
use keyward::catalog;
use keyward::store::providers;
use serde_json::{json, Value};
use standin::{StandIn, GOOD_KEY};

/// A second key for the "configuration changed" cases (the stand-in refuses it, which nothing
/// here calls it with).
const OTHER_KEY: &str = "sk-deployment-other-9876543210";

fn configured(base: &str, key: &str, models: &str) -> DefaultProvider {
    DefaultProvider {
        factory: Some("OpenAI".into()),
        base_url: Some(format!("{base}/v1")),
        models: Some(models.into()),
        api_key: Some(key.into()),
    }
}

fn seeded_t(dp: DefaultProvider) -> T {
    let mut t = T::new();
    t.app.config.default_provider = dp;
    t
}

fn message(r: &keyward::api::http::Response) -> String {
    r.json_body()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn models(t: &T, tok: &str) -> Value {
    let r = t.user(tok, "GET", "/api/v1/models?include_details=true", None);
    assert_eq!(r.status, 200, "{}", message(&r));
    r.json_body()["data"].clone()
}

fn defaults(t: &T, tok: &str) -> Value {
    let r = t.user(tok, "GET", "/api/v1/models/default", None);
    assert_eq!(r.status, 200, "{}", message(&r));
    r.json_body()["data"].clone()
}

fn hint_of(data: &Value, factory: &str) -> Value {
    data[factory]["llm"][0]["credential_hint"].clone()
}

fn audit_actions(t: &T, tenant_id: &str) -> Vec<(String, String, String)> {
    let r = t.admin(
        "GET",
        &format!("/api/v1/admin/audit?tenant_id={tenant_id}"),
        None,
    );
    assert_eq!(r.status, 200);
    let mut out: Vec<(String, String, String)> = r.json_body()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor_kind"].as_str().unwrap().to_owned(),
                e["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn without_the_configuration_a_new_tenant_has_no_connection_and_no_defaults() {
    let t = T::new();
    let (u, k) = t.user_with_key("plain@example.com");
    let tok = token(&k);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM provider_connections"), 0);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenant_defaults"), 0);
    let data = models(&t, &tok);
    assert!(data.get("OpenAI").is_none(), "{data}");
    assert_eq!(defaults(&t, &tok)["llm_id"], Value::Null);
    let actions = audit_actions(&t, u["tenant_id"].as_str().unwrap());
    assert!(
        actions.iter().all(|(a, _, _)| a != "model.add"),
        "{actions:?}"
    );
    let r = t.admin("GET", "/api/v1/admin/default_provider", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json_body()["data"]["configured"], false);
}

#[test]
fn a_user_created_without_a_tenant_relays_through_the_seeded_connection_with_no_setup() {
    let s = StandIn::start();
    let t = seeded_t(configured(
        &s.base(),
        GOOD_KEY,
        "llm_id=gpt-4o-mini, embd_id=text-embedding-3-small@OpenAI",
    ));
    let (u, k) = t.user_with_key("newcomer@example.com");
    let tenant = u["tenant_id"].as_str().unwrap();
    let tok = token(&k);

    // Listed under the tenant's models like a connection it added: the whole catalog, valid,
    // masked key, the configured endpoint.
    let data = models(&t, &tok);
    let llm = data["OpenAI"]["llm"].as_array().expect("OpenAI is added");
    assert_eq!(llm.len(), catalog::factory("OpenAI").unwrap().models.len());
    let mini = llm.iter().find(|m| m["name"] == "gpt-4o-mini").unwrap();
    assert_eq!(mini["status"], "valid");
    assert_eq!(mini["credential_hint"], "sk...6789");
    assert_eq!(mini["api_base"], format!("{}/v1", s.base()));
    let d = defaults(&t, &tok);
    assert_eq!(d["llm_id"], "gpt-4o-mini@OpenAI");
    assert_eq!(d["embd_id"], "text-embedding-3-small@OpenAI");
    assert_eq!(d["tts_id"], Value::Null);

    // No live call was made to seed it; the relay's call is the first the stand-in sees.
    assert!(s.requests().is_empty(), "seeding called the provider");
    let r = t.user(
        &tok,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "default", "messages": [{"role": "user", "content": "hello"}]})),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let sent = s
        .requests()
        .into_iter()
        .find(|q| q.path == "/v1/chat/completions")
        .expect("the relay reached the stand-in");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {GOOD_KEY}").as_str())
    );
    assert!(sent.body.contains("gpt-4o-mini"));

    // Sealed at rest, bound to its row, and audited as the admin's.
    let stored = t.db().count(&format!(
        "SELECT COUNT(*) FROM provider_connections WHERE credential LIKE '%{GOOD_KEY}%' \
         OR settings LIKE '%{GOOD_KEY}%' OR credential IS NULL"
    ));
    assert_eq!(stored, 0, "credential stored in the clear, or not at all");
    let conns = block_on(providers::list_for_tenant(t.db(), tenant)).unwrap();
    assert_eq!(conns.len(), 1);
    let secrets = t.app.connection_secrets(&conns[0]).unwrap();
    assert_eq!(secrets.get("api_key"), Some(GOOD_KEY));
    let actions = audit_actions(&t, tenant);
    let find = |a: &str| actions.iter().find(|(x, _, _)| x == a).cloned();
    let (_, kind, detail) = find("model.add").expect("the connection is audited");
    assert_eq!(kind, "admin");
    assert_eq!(
        detail,
        format!(
            "seeded=deployment verified=false endpoint={}",
            s.base().trim_start_matches("http://")
        )
    );
    let (_, kind, detail) = find("defaults.set").expect("the defaults are audited");
    assert_eq!(kind, "admin");
    assert_eq!(
        detail,
        "seeded=deployment llm_id=gpt-4o-mini@OpenAI embd_id=text-embedding-3-small@OpenAI"
    );
    for body in t.bodies.borrow().iter() {
        assert!(!body.contains(GOOD_KEY), "credential in a response");
    }
    for line in log_lines().lock().unwrap().iter() {
        assert!(!line.contains(GOOD_KEY), "credential in the log: {line}");
    }
}

#[test]
fn the_seeded_row_is_sealed_exactly_as_the_one_a_tenant_adds_itself() {
    let s = StandIn::start();
    let t = seeded_t(configured(&s.base(), GOOD_KEY, ""));
    let seeded = t.create_user("seeded@example.com", None, None);
    // The same connection added by a tenant itself: drop what seeding gave `own`, then add it
    // through the tenant's own route.
    let own = t.create_user("own@example.com", None, None);
    let own_tenant = own["tenant_id"].as_str().unwrap();
    t.db().sql(&format!(
        "DELETE FROM provider_connections WHERE tenant_id = '{own_tenant}'"
    ));
    let key = t.issue_key("own@example.com", json!({}));
    let r = t.user(
        &token(&key),
        "POST",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY,
                    "base_url": format!("{}/v1", s.base()), "verify": false})),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let a = &block_on(providers::list_for_tenant(
        t.db(),
        seeded["tenant_id"].as_str().unwrap(),
    ))
    .unwrap()[0];
    let b = &block_on(providers::list_for_tenant(t.db(), own_tenant)).unwrap()[0];
    // Everything but what names the row (its id, tenant and dates) and the ciphertext's nonce.
    assert_eq!(
        (
            &a.factory,
            &a.llm_name,
            a.model_type,
            &a.api_base,
            &a.settings,
            a.key_version,
            &a.credential_hint,
            a.max_tokens,
            a.status
        ),
        (
            &b.factory,
            &b.llm_name,
            b.model_type,
            &b.api_base,
            &b.settings,
            b.key_version,
            &b.credential_hint,
            b.max_tokens,
            b.status
        )
    );
    assert_eq!(
        t.app.connection_secrets(a).unwrap(),
        t.app.connection_secrets(b).unwrap()
    );
    // Bound to its own row like any other: copied to the other tenant's row, it does not open.
    let mut moved = b.clone();
    moved.credential = a.credential.clone();
    assert!(t.app.connection_secrets(&moved).is_err());
}

#[test]
fn a_tenant_created_by_the_admin_api_gets_it_once_even_when_its_creation_is_replayed() {
    let s = StandIn::start();
    let t = seeded_t(configured(&s.base(), GOOD_KEY, "llm_id=gpt-4o"));
    let r = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "acme"}),
        "k-1",
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let id = r.json_body()["data"]["id"].as_str().unwrap().to_owned();
    let again = t.keyed(
        None,
        "/api/v1/admin/tenants",
        json!({"name": "acme"}),
        "k-1",
    );
    assert_eq!(again.status, 200);
    assert_eq!(again.json_body()["data"]["id"], id.as_str());
    assert_eq!(
        t.db().count(&format!(
            "SELECT COUNT(*) FROM provider_connections WHERE tenant_id = '{id}'"
        )),
        1
    );
    assert_eq!(
        t.db().count(&format!(
            "SELECT COUNT(*) FROM tenant_defaults WHERE tenant_id = '{id}' \
             AND model_type = 'chat' AND llm_name = 'gpt-4o'"
        )),
        1
    );
    // A user added to that tenant later finds it there too.
    t.create_user("member@acme.example", Some(&id), Some("admin"));
    let k = t.issue_key("member@acme.example", json!({}));
    assert_eq!(defaults(&t, &token(&k))["llm_id"], "gpt-4o@OpenAI");
    // A user created into an existing tenant seeds nothing more.
    assert_eq!(t.db().count("SELECT COUNT(*) FROM provider_connections"), 1);
}

#[test]
fn the_tenant_owns_the_seeded_connection_and_updates_removes_or_overrides_it() {
    let s = StandIn::start();
    let t = seeded_t(configured(&s.base(), GOOD_KEY, "llm_id=gpt-4o-mini"));
    let (_, k) = t.user_with_key("owner@example.com");
    let tok = token(&k);
    // Its own key replaces the deployment's.
    let r = t.user(
        &tok,
        "POST",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI", "api_key": OTHER_KEY,
                    "base_url": format!("{}/v1", s.base()), "verify": false})),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    assert_eq!(hint_of(&models(&t, &tok), "OpenAI"), "sk-...3210");
    // Other defaults.
    let r = t.user(
        &tok,
        "POST",
        "/api/v1/models/default",
        Some(json!({"llm_id": "gpt-4o@OpenAI"})),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    assert_eq!(defaults(&t, &tok)["llm_id"], "gpt-4o@OpenAI");
    // And removes it, with the defaults that pointed at it.
    let r = t.user(
        &tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI"})),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    assert!(models(&t, &tok).get("OpenAI").is_none());
    assert_eq!(defaults(&t, &tok)["llm_id"], Value::Null);
}

#[test]
fn a_later_change_of_the_configuration_leaves_existing_tenants_alone() {
    let s = StandIn::start();
    let mut t = seeded_t(configured(&s.base(), GOOD_KEY, "llm_id=gpt-4o-mini"));
    let (_, early) = t.user_with_key("early@example.com");
    // The operator changes the key, the endpoint and the defaults.
    t.app.config.default_provider = DefaultProvider {
        base_url: Some("http://127.0.0.1:9/other".into()),
        ..configured(
            &s.base(),
            OTHER_KEY,
            "llm_id=gpt-4o,embd_id=text-embedding-3-large",
        )
    };
    let (_, late) = t.user_with_key("late@example.com");

    let e = models(&t, &token(&early));
    assert_eq!(hint_of(&e, "OpenAI"), "sk...6789");
    assert_eq!(
        e["OpenAI"]["llm"][0]["api_base"],
        format!("{}/v1", s.base())
    );
    let ed = defaults(&t, &token(&early));
    assert_eq!(ed["llm_id"], "gpt-4o-mini@OpenAI");
    assert_eq!(ed["embd_id"], Value::Null);

    let l = models(&t, &token(&late));
    assert_eq!(hint_of(&l, "OpenAI"), "sk-...3210");
    assert_eq!(
        l["OpenAI"]["llm"][0]["api_base"],
        "http://127.0.0.1:9/other"
    );
    let ld = defaults(&t, &token(&late));
    assert_eq!(ld["llm_id"], "gpt-4o@OpenAI");
    assert_eq!(ld["embd_id"], "text-embedding-3-large@OpenAI");

    // Removing the configuration leaves both as they are, and new tenants get nothing.
    t.app.config.default_provider = DefaultProvider::default();
    let (_, none) = t.user_with_key("none@example.com");
    assert!(models(&t, &token(&none)).get("OpenAI").is_none());
    assert_eq!(hint_of(&models(&t, &token(&early)), "OpenAI"), "sk...6789");
    assert_eq!(t.db().count("SELECT COUNT(*) FROM provider_connections"), 2);
}

#[test]
fn an_invalid_configuration_refuses_tenant_creation_with_a_500_naming_it_and_writes_nothing() {
    let ok = configured("http://127.0.0.1:9", GOOD_KEY, "llm_id=gpt-4o-mini");
    let cases: Vec<(&str, DefaultProvider, &str)> = vec![
        (
            "unknown factory",
            DefaultProvider {
                factory: Some("OpenAl".into()),
                ..ok.clone()
            },
            "DEFAULT_LLM_FACTORY: unknown factory OpenAl",
        ),
        (
            "missing secret",
            DefaultProvider {
                api_key: None,
                ..ok.clone()
            },
            "DEFAULT_LLM_API_KEY is not set",
        ),
        (
            "a secret too short to be a key",
            DefaultProvider {
                api_key: Some("sk-1".into()),
                ..ok.clone()
            },
            "DEFAULT_LLM_API_KEY:",
        ),
        (
            "a default naming a model the factory does not have",
            DefaultProvider {
                models: Some("llm_id=gpt-9".into()),
                ..ok.clone()
            },
            "DEFAULT_LLM_MODELS: llm_id: OpenAI has no model gpt-9",
        ),
        (
            "a default of the wrong type",
            DefaultProvider {
                models: Some("embd_id=gpt-4o".into()),
                ..ok.clone()
            },
            "gpt-4o is a model of type chat, not embedding",
        ),
        (
            "a default of another factory",
            DefaultProvider {
                models: Some("llm_id=claude-3-5-sonnet-20241022@Anthropic".into()),
                ..ok.clone()
            },
            "OpenAI has no model claude-3-5-sonnet-20241022@Anthropic",
        ),
        (
            "an unknown field",
            DefaultProvider {
                models: Some("chat=gpt-4o".into()),
                ..ok.clone()
            },
            "DEFAULT_LLM_MODELS: unknown field chat",
        ),
        (
            "not field=model",
            DefaultProvider {
                models: Some("gpt-4o".into()),
                ..ok.clone()
            },
            "DEFAULT_LLM_MODELS: gpt-4o is not field=model",
        ),
        (
            "a field twice",
            DefaultProvider {
                models: Some("llm_id=gpt-4o,llm_id=gpt-4o-mini".into()),
                ..ok.clone()
            },
            "llm_id is given twice",
        ),
        (
            "a factory connected one model at a time",
            DefaultProvider {
                factory: Some("Ollama".into()),
                ..ok.clone()
            },
            "DEFAULT_LLM_FACTORY: Ollama cannot be the default provider",
        ),
        (
            "Builtin",
            DefaultProvider {
                factory: Some("Builtin".into()),
                ..ok.clone()
            },
            "DEFAULT_LLM_FACTORY: Builtin cannot be the default provider",
        ),
        (
            "a base URL that is not one",
            DefaultProvider {
                base_url: Some("ftp://models.example.com".into()),
                ..ok.clone()
            },
            "DEFAULT_LLM_BASE_URL:",
        ),
        (
            "a base URL of an address class the operator does not allow",
            DefaultProvider {
                base_url: Some("http://10.0.0.5/v1".into()),
                ..ok.clone()
            },
            "DEFAULT_LLM_BASE_URL:",
        ),
        (
            "settings without a factory",
            DefaultProvider {
                factory: None,
                ..ok.clone()
            },
            "DEFAULT_LLM_FACTORY is not set",
        ),
    ];
    for (what, dp, says) in cases {
        let t = T::new();
        // A tenant made before the configuration, to add a member to.
        let existing = t.create_user("before@example.com", None, None);
        let before = t.db().count("SELECT COUNT(*) FROM audit");
        let mut t = t;
        t.app.config.default_provider = dp;
        let lines_before = log_lines().lock().unwrap().len();
        for r in [
            t.admin(
                "POST",
                "/api/v1/admin/users",
                Some(json!({"username": "newcomer"})),
            ),
            t.admin(
                "POST",
                "/api/v1/admin/tenants",
                Some(json!({"name": "acme"})),
            ),
        ] {
            assert_eq!(r.status, 500, "{what}: {}", message(&r));
            let m = message(&r);
            assert!(
                m.starts_with("The deployment is misconfigured, so nothing was changed: "),
                "{what}: {m}"
            );
            assert!(m.contains(says), "{what}: {m}");
            assert!(!m.contains(GOOD_KEY), "{what}: the secret in {m}");
        }
        assert_eq!(t.db().count("SELECT COUNT(*) FROM tenants"), 1, "{what}");
        assert_eq!(t.db().count("SELECT COUNT(*) FROM users"), 1, "{what}");
        assert_eq!(
            t.db().count("SELECT COUNT(*) FROM provider_connections"),
            0,
            "{what}"
        );
        assert_eq!(t.db().count("SELECT COUNT(*) FROM audit"), before, "{what}");
        // The log says so too (other tests log concurrently: look for this case's line).
        let logged = log_lines().lock().unwrap()[lines_before..]
            .iter()
            .any(|l| l.contains("the deployment is misconfigured") && l.contains(says));
        assert!(logged, "{what}: no log line");
        // What creates no tenant still works.
        t.create_user("member", existing["tenant_id"].as_str(), None);
        // The status route reports it without failing.
        let r = t.admin("GET", "/api/v1/admin/default_provider", None);
        assert_eq!(r.status, 200, "{what}");
        let d = r.json_body()["data"].clone();
        assert_eq!(d["configured"], true, "{what}");
        assert!(
            d["problem"].as_str().unwrap_or_default().contains(says),
            "{what}: {d}"
        );
    }
    // A usable configuration on a deployment that cannot seal credentials.
    let mut t = seeded_t(ok);
    t.app.config.keyring = None;
    let r = t.admin(
        "POST",
        "/api/v1/admin/users",
        Some(json!({"username": "newcomer"})),
    );
    assert_eq!(r.status, 500);
    assert!(
        message(&r).contains("KEYWARD_ENCRYPTION_KEY is not set"),
        "{}",
        message(&r)
    );
    assert_eq!(t.db().count("SELECT COUNT(*) FROM tenants"), 0);
    for line in log_lines().lock().unwrap().iter() {
        assert!(!line.contains(GOOD_KEY), "credential in the log: {line}");
    }
}

#[test]
fn the_apply_route_gives_one_existing_tenant_the_provider_and_refuses_a_second_time_with_409() {
    let s = StandIn::start();
    let mut t = T::new();
    // Three tenants from before the configuration: one bare, one with its own OpenAI key, one
    // with a chat default of its own.
    let (bare, bare_key) = t.user_with_key("bare@example.com");
    let (own, own_key) = t.user_with_key("own@example.com");
    let (chose, chose_key) = t.user_with_key("chose@example.com");
    let r = t.user(
        &token(&own_key),
        "POST",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI", "api_key": OTHER_KEY,
                    "base_url": format!("{}/v1", s.base()), "verify": false})),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let r = t.user(
        &token(&chose_key),
        "POST",
        "/api/v1/models",
        Some(json!({"llm_factory": "Ollama", "llm_name": "llama3.2", "base_url": s.base()})),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let r = t.user(
        &token(&chose_key),
        "POST",
        "/api/v1/models/default",
        Some(json!({"llm_id": "llama3.2@Ollama"})),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let apply = |t: &T, tenant: &Value| {
        t.admin(
            "POST",
            &format!(
                "/api/v1/admin/tenants/{}/default_provider",
                tenant["tenant_id"].as_str().unwrap()
            ),
            None,
        )
    };

    // Not configured: nothing to apply.
    let r = apply(&t, &bare);
    assert_eq!(r.status, 409, "{}", message(&r));
    assert!(
        message(&r).contains("no default provider"),
        "{}",
        message(&r)
    );
    // Creating the configuration reached none of them.
    t.app.config.default_provider = configured(
        &s.base(),
        GOOD_KEY,
        "llm_id=gpt-4o-mini,embd_id=text-embedding-3-small",
    );
    assert!(models(&t, &token(&bare_key)).get("OpenAI").is_none());

    let r = apply(&t, &bare);
    assert_eq!(r.status, 200, "{}", message(&r));
    let v = r.json_body()["data"].clone();
    assert_eq!(v["factory"], "OpenAI");
    assert_eq!(v["credential_hint"], "sk...6789");
    assert_eq!(v["defaults"]["llm_id"], "gpt-4o-mini@OpenAI");
    assert!(!r.json_body().to_string().contains(GOOD_KEY));
    assert_eq!(
        hint_of(&models(&t, &token(&bare_key)), "OpenAI"),
        "sk...6789"
    );
    assert_eq!(
        defaults(&t, &token(&bare_key))["llm_id"],
        "gpt-4o-mini@OpenAI"
    );
    let actions = audit_actions(&t, bare["tenant_id"].as_str().unwrap());
    assert!(actions
        .iter()
        .any(|(a, k, _)| a == "model.add" && k == "admin"));

    // A second time, and a tenant with its own connection to the factory: 409, nothing changed.
    let audit_before = t.db().count("SELECT COUNT(*) FROM audit");
    for who in [&bare, &own] {
        let r = apply(&t, who);
        assert_eq!(r.status, 409, "{}", message(&r));
        assert!(
            message(&r).contains("already has a connection to OpenAI"),
            "{}",
            message(&r)
        );
    }
    assert_eq!(t.db().count("SELECT COUNT(*) FROM audit"), audit_before);
    assert_eq!(
        hint_of(&models(&t, &token(&own_key)), "OpenAI"),
        "sk-...3210"
    );

    // A tenant's own default stays; the types it had none for get the configured ones.
    let r = apply(&t, &chose);
    assert_eq!(r.status, 200, "{}", message(&r));
    let d = defaults(&t, &token(&chose_key));
    assert_eq!(d["llm_id"], "llama3.2@Ollama");
    assert_eq!(d["embd_id"], "text-embedding-3-small@OpenAI");

    // An unknown tenant is a 404; an invalid configuration the misconfigured 500.
    let r = t.admin("POST", "/api/v1/admin/tenants/nope/default_provider", None);
    assert_eq!(r.status, 404);
    t.app.config.default_provider.models = Some("llm_id=gpt-9".into());
    let invalid = std::mem::take(&mut t.app.config.default_provider);
    let fresh = t.create_user("fresh@example.com", None, None);
    t.app.config.default_provider = invalid;
    let r = apply(&t, &fresh);
    assert_eq!(r.status, 500);
    assert!(message(&r).contains("misconfigured"), "{}", message(&r));
    // A user key may not call it.
    let r = t.user(
        &token(&bare_key),
        "POST",
        &format!(
            "/api/v1/admin/tenants/{}/default_provider",
            fresh["tenant_id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(r.status, 403);
}

#[test]
fn the_status_route_shows_what_new_tenants_get_without_the_secret() {
    let t = seeded_t(configured(
        "http://127.0.0.1:9",
        GOOD_KEY,
        "llm_id=gpt-4o-mini",
    ));
    let r = t.admin("GET", "/api/v1/admin/default_provider", None);
    assert_eq!(r.status, 200);
    let d = r.json_body()["data"].clone();
    assert_eq!(
        d,
        json!({
            "configured": true,
            "problem": null,
            "factory": "OpenAI",
            "base_url": "http://127.0.0.1:9/v1",
            "credential_hint": "sk...6789",
            "defaults": {"llm_id": "gpt-4o-mini@OpenAI", "embd_id": null, "asr_id": null,
                         "img2txt_id": null, "rerank_id": null, "tts_id": null}
        })
    );
    assert!(!format!("{:?}", t.app.config).contains(GOOD_KEY));
}

#[test]
fn the_apply_route_respects_the_tenants_connection_maximum() {
    let s = StandIn::start();
    let mut t = T::new();
    let (full, full_key) = t.user_with_key("full@example.com");
    let r = t.user(
        &token(&full_key),
        "POST",
        "/api/v1/models",
        Some(json!({"llm_factory": "Ollama", "llm_name": "llama3.2", "base_url": s.base()})),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    let r = t.admin(
        "PUT",
        "/api/v1/admin/settings",
        Some(json!({"max_connections_per_tenant": 1})),
    );
    assert_eq!(r.status, 200, "{}", message(&r));
    t.app.config.default_provider = configured(&s.base(), GOOD_KEY, "llm_id=gpt-4o-mini");
    let path = format!(
        "/api/v1/admin/tenants/{}/default_provider",
        full["tenant_id"].as_str().unwrap()
    );
    let r = t.admin("POST", &path, None);
    assert_eq!(r.status, 409, "{}", message(&r));
    assert!(
        message(&r).contains("max_connections_per_tenant"),
        "{}",
        message(&r)
    );
    assert!(models(&t, &token(&full_key)).get("OpenAI").is_none());
    // A new tenant is seeded whatever the maximum: it holds nothing yet.
    let (_, fresh_key) = t.user_with_key("fresh@example.com");
    assert_eq!(
        hint_of(&models(&t, &token(&fresh_key)), "OpenAI"),
        "sk...6789"
    );
}
