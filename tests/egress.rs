//! Where requests and stored credentials may go, over real SQLite and real HTTP stand-ins on
//! 127.0.0.1: the hop marker that stops the relay calling itself, the refusal of provider URLs that
//! name this deployment or an address class the operator forbids (when saved and when used), the
//! binding of each gateway key's credential to its endpoint, and redirects never followed.
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;

use common::*;
use keyward::api::http::{Request, Response};
use keyward::domain::vault::Slot;
use keyward::providers::address::{AddressPolicy, PublicHosts, HOP_HEADER};
use serde_json::{json, Value};
use standin::{StandIn, GOOD_KEY};

const COMPAT: &str = "OpenAI-API-Compatible";
/// The key an admin-role user brings to re-point the owner's connection.
const ADMIN_OWN_KEY: &str = "sk-admin-own-key-00000000";

fn message(r: &Response) -> String {
    let v = r.json_body();
    v["message"]
        .as_str()
        .or_else(|| v["error"]["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn body(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// A tenant owner with a key: (token, tenant id).
fn owner(t: &T, name: &str) -> (String, String) {
    let (u, k) = t.user_with_key(name);
    (token(&k), u["tenant_id"].as_str().unwrap().to_owned())
}

/// A user of `tenant_id` with `role`, and their token.
fn member(t: &T, tenant_id: &str, name: &str, role: &str) -> String {
    t.create_user(name, Some(tenant_id), Some(role));
    token(&t.issue_key(name, json!({})))
}

/// A request as a deployment reached at `host` would receive it (Host header and origin).
fn at_host(host: &str, tok: &str, method: &str, path: &str, body: Option<Value>) -> Request {
    let mut req = Request::new(method, path)
        .header("host", host)
        .header("authorization", &format!("Bearer {tok}"));
    req.origin = Some(format!("http://{host}"));
    match body {
        Some(b) => req.json(&b),
        None => req,
    }
}

fn chat(t: &T, tok: &str, model: &str, stream: bool) -> Response {
    t.user(
        tok,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})),
    )
}

fn add_model(t: &T, tok: &str, b: Value) -> Response {
    t.user(tok, "POST", "/api/v1/models", Some(b))
}

fn audit_details(t: &T, action: &str) -> Vec<String> {
    let conn = t.db().conn.borrow();
    let mut q = conn
        .prepare("SELECT detail FROM audit WHERE action = ?1 ORDER BY id")
        .unwrap();
    let rows = q
        .query_map([action], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows
}

/// What a stand-in received carrying any of `secrets` in a header or the body.
fn carrying(s: &StandIn, secrets: &[&str]) -> Vec<String> {
    s.requests()
        .into_iter()
        .filter(|q| {
            secrets
                .iter()
                .any(|k| q.body.contains(k) || q.headers.iter().any(|(_, v)| v.contains(k)))
        })
        .map(|q| format!("{} {}", q.method, q.path))
        .collect()
}

// ---------------------------------------------------------------- item 1: the hop marker

#[test]
fn a_request_carrying_the_hop_header_is_refused_with_508_before_any_storage_read() {
    let t = T::new();
    let (tok, _) = owner(&t, "hop-owner");
    let cases = [
        ("POST", "/v1/chat/completions", true),
        ("POST", "/v1/embeddings", true),
        ("GET", "/v1/models", true),
        ("GET", "/api/v1/me", false),
        ("GET", "/api/v1/models", false),
        ("POST", "/api/v1/ai_keys", false),
        ("GET", "/api/v1/admin/tenants", false),
        ("GET", "/no/such/route", false),
    ];
    for (method, path, relay) in cases {
        for value in ["1", "", "anything"] {
            let bearer = if path.contains("/admin/") {
                ADMIN_TOKEN.to_owned()
            } else {
                tok.clone()
            };
            let req = Request::new(method, path)
                .header("authorization", &format!("Bearer {bearer}"))
                .header("X-Keyward-Hop", value)
                .json(&json!({"model": "x", "messages": []}));
            let before = t.db().calls.get();
            let r = t.send(req);
            assert_eq!(r.status, 508, "{method} {path}: {}", body(&r));
            assert_eq!(
                t.db().calls.get(),
                before,
                "{method} {path}: storage was read"
            );
            let v = r.json_body();
            if relay {
                assert_eq!(v["error"]["code"], "loop_detected", "{path}: {v}");
                assert_eq!(v["error"]["type"], "invalid_request_error");
                assert!(v.get("code").is_none(), "OpenAI's shape on {path}: {v}");
            } else {
                assert_eq!(v["code"], 508, "{path}: {v}");
                assert_eq!(v["data"], Value::Null);
            }
            assert!(message(&r).contains("Loop detected"), "{path}");
        }
    }
    let lines = log_lines().lock().unwrap().clone();
    let warned: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("[WARN]") && l.contains("refused POST /v1/chat/completions"))
        .collect();
    assert!(!warned.is_empty(), "a warning names the refused request");
    assert!(
        lines.iter().all(|l| !l.contains(&tok)),
        "no token in the log"
    );
}

#[test]
fn every_provider_call_carries_the_hop_header() {
    let t = T::new();
    let s = StandIn::start();
    let (tok, _) = owner(&t, "marked");
    let r = add_model(
        &t,
        &tok,
        json!({"llm_factory": COMPAT, "llm_name": "m", "base_url": format!("{}/v1", s.base()), "api_key": GOOD_KEY}),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    let r = add_model(
        &t,
        &tok,
        json!({"llm_factory": "Anthropic", "base_url": s.base(), "api_key": GOOD_KEY}),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(chat(&t, &tok, "m", false).status, 200);
    assert_eq!(chat(&t, &tok, "m", true).status, 200);
    assert_eq!(
        chat(&t, &tok, "claude-sonnet-4-5@Anthropic", true).status,
        200
    );
    let seen = s.requests();
    assert_eq!(seen.len(), 5, "two validations and three relay calls");
    for q in &seen {
        assert_eq!(q.header(HOP_HEADER), Some("1"), "{} {}", q.method, q.path);
    }
}

// ---------------------------------------------------------------- item 1: self-reference

#[test]
fn a_base_url_naming_the_deployment_itself_is_refused_in_every_spelling() {
    let mut t = T::new();
    // The deployment answers where this stand-in listens: were any spelling let through, the
    // stand-in would see the validation call.
    let s = StandIn::start();
    let port = s.port;
    let host = format!("127.0.0.1:{port}");
    t.app.config.public_hosts =
        PublicHosts::parse("ai.example.com, *.gw.example.net").expect("hosts");
    t.app.config.address_policy = AddressPolicy::ALL;
    let (tok, _) = owner(&t, "selfish");
    let spellings = [
        format!("http://127.0.0.1:{port}/v1"),
        format!("http://localhost:{port}/v1"),
        format!("http://LOCALHOST.:{port}/v1/"),
        format!("http://api.localhost:{port}/v1"),
        format!("http://[::1]:{port}/v1"),
        format!("http://[::ffff:127.0.0.1]:{port}/v1"),
        format!("http://[::ffff:7f00:1]:{port}/v1"),
        format!("http://2130706433:{port}/v1"),
        format!("http://0x7f.0.0.1:{port}/v1"),
        format!("http://0177.0.0.1:{port}/v1"),
        format!("http://127.1:{port}/v1"),
        format!("http://127.0.0.1.:{port}/v1"),
        format!("http://0.0.0.0:{port}/v1"),
        format!("http://%6c%6fcalhost:{port}/v1"),
        format!("https://127.0.0.1:{port}/v1"),
        "https://ai.example.com/v1".into(),
        "http://AI.Example.COM.:8443/v1".into(),
        "https://eu.gw.example.net/v1".into(),
    ];
    for url in &spellings {
        let r = t.send(at_host(
            &host,
            &tok,
            "POST",
            "/api/v1/models",
            Some(json!({"llm_factory": COMPAT, "llm_name": "loop", "base_url": url, "api_key": GOOD_KEY})),
        ));
        assert_eq!(r.status, 400, "{url}: {}", body(&r));
        assert_eq!(r.json_body()["code"], 101);
        assert!(
            message(&r).starts_with("base_url: "),
            "{url}: {}",
            message(&r)
        );
        assert!(
            message(&r).contains("this keyward deployment itself"),
            "{url}: {}",
            message(&r)
        );
    }
    // Azure's endpoint and a service account's token_uri are tenant URLs too.
    let r = t.send(at_host(
        &host,
        &tok,
        "POST",
        "/api/v1/models",
        Some(json!({"llm_factory": "Azure-OpenAI", "endpoint": format!("http://localhost:{port}"), "deployment": "d", "api_key": GOOD_KEY})),
    ));
    assert!(message(&r).starts_with("endpoint: "), "{}", message(&r));
    let creds = standin::vertex_credentials_json(
        &format!("http://[::1]:{port}/token"),
        "sa@standin.iam.gserviceaccount.com",
    );
    let r = t.send(at_host(
        &host,
        &tok,
        "POST",
        "/api/v1/models",
        Some(json!({"llm_factory": "VertexAI", "credentials_json": creds})),
    ));
    assert_eq!(r.status, 400, "{}", body(&r));
    assert!(
        message(&r).starts_with("credentials_json.token_uri: "),
        "{}",
        message(&r)
    );
    // A deployment on a public name is that name on every port.
    let r = t.send(at_host(
        "keyward.example.org",
        &tok,
        "POST",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI", "base_url": "http://Keyward.Example.Org:8080/v1", "api_key": GOOD_KEY})),
    ));
    assert_eq!(r.status, 400, "{}", body(&r));
    assert!(message(&r).contains("itself"), "{}", message(&r));

    assert!(
        s.requests().is_empty(),
        "no spelling reached the deployment"
    );
    assert_eq!(t.db().count("SELECT COUNT(*) FROM provider_connections"), 0);
    assert_eq!(
        t.db()
            .count("SELECT COUNT(*) FROM audit WHERE action = 'model.add'"),
        0
    );
    // Another port of the same loopback host is another service, and is accepted.
    let r = t.send(at_host(
        &format!("127.0.0.1:{}", port.checked_add(1).unwrap_or(1)),
        &tok,
        "POST",
        "/api/v1/models",
        Some(json!({"llm_factory": COMPAT, "llm_name": "ok", "base_url": format!("http://localhost:{port}/v1"), "api_key": GOOD_KEY})),
    ));
    assert_eq!(r.status, 200, "{}", body(&r));
}

// ---------------------------------------------------------------- item 1: the address policy

/// Each class with addresses of it: denied by default, allowed when listed.
const CLASSES: &[(&str, &[&str])] = &[
    (
        "loopback",
        &[
            "http://127.0.0.1:9/v1",
            "http://localhost:9",
            "http://app.localhost/v1",
            "http://[::1]:9",
            "http://2130706433:9",
            "http://0x7f000001:9",
            "http://[::ffff:127.0.0.1]:9",
        ],
    ),
    (
        "private",
        &[
            "http://10.1.2.3/v1",
            "http://172.20.0.5:11434",
            "http://192.168.1.10:8080/v1",
            "http://100.64.0.1/v1",
            "http://[fd00::5]/v1",
            "http://[::ffff:10.0.0.1]/v1",
            "http://0xa000001/v1",
            "http://ollama:11434",
            "http://gpu.local:8000/v1",
        ],
    ),
    (
        "link-local",
        &[
            "http://169.254.169.254/latest",
            "http://[fe80::1]/v1",
            "http://metadata.google.internal/v1",
            "http://[::ffff:169.254.169.254]/",
        ],
    ),
];

#[test]
fn each_private_address_class_is_denied_by_default_and_allowed_when_configured() {
    for (class, urls) in CLASSES {
        let mut t = T::new();
        t.app.config.address_policy = AddressPolicy::default();
        let (tok, _) = owner(&t, "policy");
        for url in *urls {
            let r = add_model(
                &t,
                &tok,
                json!({"llm_factory": COMPAT, "llm_name": "m", "base_url": url, "verify": false}),
            );
            assert_eq!(r.status, 400, "{class} {url}: {}", body(&r));
            let m = message(&r);
            assert!(m.starts_with("base_url: "), "{m}");
            assert!(m.contains(&format!("is a {class} address")), "{url}: {m}");
            assert!(m.contains("PROVIDER_PRIVATE_ADDRESSES"), "{m}");
        }
        assert_eq!(t.db().count("SELECT COUNT(*) FROM provider_connections"), 0);
        // Allowing the other classes does not allow this one.
        t.app.config.address_policy = AddressPolicy::parse(match *class {
            "loopback" => "private,link-local",
            "private" => "loopback,link-local",
            _ => "loopback,private",
        })
        .unwrap();
        for url in *urls {
            let r = add_model(
                &t,
                &tok,
                json!({"llm_factory": COMPAT, "llm_name": "m", "base_url": url, "verify": false}),
            );
            assert_eq!(r.status, 400, "{class} {url} with the others allowed");
        }
        t.app.config.address_policy = AddressPolicy::parse(class).unwrap();
        for url in *urls {
            let r = add_model(
                &t,
                &tok,
                json!({"llm_factory": COMPAT, "llm_name": "m", "base_url": url, "verify": false}),
            );
            assert_eq!(r.status, 200, "{class} {url} allowed: {}", body(&r));
        }
    }
    // Public names pass under the strictest policy; reserved ranges never do.
    let mut t = T::new();
    t.app.config.address_policy = AddressPolicy::default();
    let (tok, _) = owner(&t, "public");
    let r = add_model(
        &t,
        &tok,
        json!({"llm_factory": COMPAT, "llm_name": "m", "base_url": "https://llm.example.com/v1", "verify": false}),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    t.app.config.address_policy = AddressPolicy::ALL;
    let r = add_model(
        &t,
        &tok,
        json!({"llm_factory": COMPAT, "llm_name": "m", "base_url": "http://224.0.0.1/v1", "verify": false}),
    );
    assert_eq!(r.status, 400, "{}", body(&r));
    assert!(message(&r).contains("reserved"), "{}", message(&r));
}

#[test]
fn a_row_saved_before_the_policy_changed_is_not_called() {
    let mut t = T::new();
    let s = StandIn::start();
    let (tok, _) = owner(&t, "then-now");
    let base = format!("{}/v1", s.base());
    let r = add_model(
        &t,
        &tok,
        json!({"llm_factory": COMPAT, "llm_name": "m", "base_url": base, "api_key": GOOD_KEY}),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    let r = t.user(
        &tok,
        "POST",
        "/api/v1/ai_keys",
        Some(json!({"alias": "gk", "provider": COMPAT, "model": "m", "api_key": GOOD_KEY, "input_limit": 0, "status": "enabled"})),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(chat(&t, &tok, "m", false).status, 200);
    s.clear_requests();
    // The operator stops allowing loopback: stored rows pointing there are no longer called.
    t.app.config.address_policy = AddressPolicy::default();
    for (model, stream) in [("m", false), ("m", true), ("gk", false), ("gk", true)] {
        let r = chat(&t, &tok, model, stream);
        assert_eq!(r.status, 403, "{model}: {}", body(&r));
        let e = r.json_body()["error"].clone();
        assert_eq!(e["code"], "provider_address_forbidden", "{e}");
        assert_eq!(e["type"], "permission_error");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains("is a loopback address"), "{m}");
        assert!(m.contains(&format!("127.0.0.1:{}", s.port)), "{m}");
    }
    assert!(s.requests().is_empty(), "nothing was called");
}

// ---------------------------------------------------------------- item 4: endpoint binding

/// The attack as reported: the owner stores a gateway key for OpenAI; an admin of the tenant
/// re-adds the OpenAI connection with a base URL of their own; the next relay call through the
/// owner's key must not take the owner's secret there.
#[test]
fn an_admin_re_pointing_the_connection_does_not_receive_the_owners_gateway_key() {
    let t = T::new();
    let provider = StandIn::start();
    let attacker = StandIn::start();
    let (owner_tok, tenant) = owner(&t, "victim-owner");
    let admin_tok = member(&t, &tenant, "tenant-admin", "admin");
    let r = add_model(
        &t,
        &owner_tok,
        json!({"llm_factory": "OpenAI", "base_url": format!("{}/v1", provider.base()), "api_key": GOOD_KEY}),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    let r = t.user(
        &owner_tok,
        "POST",
        "/api/v1/ai_keys",
        Some(json!({"alias": "owners-key", "provider": "OpenAI", "model": "gpt-4o", "api_key": GOOD_KEY, "input_limit": 0, "status": "enabled"})),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(
        r.json_body()["data"]["endpoint_host"],
        format!("127.0.0.1:{}", provider.port)
    );
    // The admin re-adds OpenAI, pointing it at their own server with their own key.
    let r = add_model(
        &t,
        &admin_tok,
        json!({"llm_factory": "OpenAI", "base_url": format!("{}/v1", attacker.base()), "api_key": ADMIN_OWN_KEY, "verify": false}),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    provider.clear_requests();
    for stream in [false, true] {
        let r = chat(&t, &admin_tok, "owners-key", stream);
        assert_eq!(r.status, 200, "{}", body(&r));
    }
    assert_eq!(
        carrying(&attacker, &[GOOD_KEY]),
        Vec::<String>::new(),
        "the owner's secret reached the admin's server"
    );
    assert!(
        attacker.requests().is_empty(),
        "nothing went to the re-pointed URL"
    );
    let sent = provider.requests();
    assert_eq!(
        sent.len(),
        2,
        "both calls went where the key was stored for"
    );
    for q in &sent {
        assert_eq!(
            q.header("authorization"),
            Some(format!("Bearer {GOOD_KEY}").as_str())
        );
    }
    // The connection's own calls do go where the admin pointed it, with the admin's key.
    let r = chat(&t, &admin_tok, "gpt-4o@OpenAI", false);
    assert_eq!(
        r.status,
        502,
        "the stand-in refuses the admin's key: {}",
        body(&r)
    );
    assert_eq!(carrying(&attacker, &[ADMIN_OWN_KEY]).len(), 1);
    assert_eq!(carrying(&attacker, &[GOOD_KEY]), Vec::<String>::new());
}

#[test]
fn moving_a_gateway_key_to_another_endpoint_needs_its_api_key_again() {
    let t = T::new();
    let a = StandIn::start();
    let b = StandIn::start();
    let (tok, _) = owner(&t, "mover");
    for (name, s) in [("on-a", &a), ("on-b", &b)] {
        let r = add_model(
            &t,
            &tok,
            json!({"llm_factory": COMPAT, "llm_name": name, "base_url": format!("{}/v1", s.base()), "api_key": GOOD_KEY}),
        );
        assert_eq!(r.status, 200, "{}", body(&r));
    }
    let r = t.user(
        &tok,
        "POST",
        "/api/v1/ai_keys",
        Some(json!({"alias": "k", "provider": COMPAT, "model": "on-a", "api_key": GOOD_KEY, "input_limit": 0, "status": "enabled"})),
    );
    assert_eq!(r.status, 200);
    let id = r.json_body()["data"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/ai_keys/{id}");
    let before = t.db().count("SELECT COUNT(*) FROM audit");
    let r = t.user(&tok, "PUT", &path, Some(json!({"model": "on-b"})));
    assert_eq!(r.status, 400, "{}", body(&r));
    let m = message(&r);
    assert!(m.starts_with("api_key: "), "{m}");
    assert!(m.contains(&format!("127.0.0.1:{}", a.port)), "{m}");
    assert!(m.contains(&format!("127.0.0.1:{}", b.port)), "{m}");
    assert_eq!(
        t.db().count("SELECT COUNT(*) FROM audit"),
        before,
        "nothing written"
    );
    assert_eq!(
        t.db().count(&format!(
            "SELECT COUNT(*) FROM ai_keys WHERE model = 'on-a' AND id = '{id}'"
        )),
        1
    );
    // Other fields change freely: the endpoint stays.
    let r = t.user(&tok, "PUT", &path, Some(json!({"input_limit": 5000})));
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(chat(&t, &tok, "k", false).status, 200);
    assert_eq!(a.requests().len(), 2, "validation and the call");
    // With the key again, it moves.
    let r = t.user(
        &tok,
        "PUT",
        &path,
        Some(json!({"model": "on-b", "api_key": GOOD_KEY})),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(
        r.json_body()["data"]["endpoint_host"],
        format!("127.0.0.1:{}", b.port)
    );
    a.clear_requests();
    b.clear_requests();
    assert_eq!(chat(&t, &tok, "k", false).status, 200);
    assert!(a.requests().is_empty());
    assert_eq!(b.requests().len(), 1);
}

#[test]
fn re_pointing_a_connection_that_holds_a_credential_needs_the_credential_again() {
    let t = T::new();
    let a = StandIn::start();
    let b = StandIn::start();
    let (tok, _) = owner(&t, "conn-mover");
    let r = add_model(
        &t,
        &tok,
        json!({"llm_factory": COMPAT, "llm_name": "m", "base_url": format!("{}/v1", a.base()), "api_key": GOOD_KEY}),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    // OpenAI-API-Compatible takes its key optionally: re-pointed keyless, the stored key must
    // neither follow nor be dropped silently.
    let r = add_model(
        &t,
        &tok,
        json!({"llm_factory": COMPAT, "llm_name": "m", "base_url": format!("{}/v1", b.base()), "verify": false}),
    );
    assert_eq!(r.status, 400, "{}", body(&r));
    assert!(message(&r).starts_with("api_key: "), "{}", message(&r));
    assert_eq!(
        t.db().count(&format!(
            "SELECT COUNT(*) FROM provider_connections WHERE api_base = '{}/v1' AND credential IS NOT NULL",
            a.base()
        )),
        1,
        "the row is unchanged"
    );
    // Same endpoint without a key: allowed (the row simply has no key any more).
    let r = add_model(
        &t,
        &tok,
        json!({"llm_factory": COMPAT, "llm_name": "m", "base_url": format!("{}/v1/", a.base()), "verify": false}),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    let r = add_model(
        &t,
        &tok,
        json!({"llm_factory": COMPAT, "llm_name": "m", "base_url": format!("{}/v1", b.base()), "api_key": GOOD_KEY}),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert!(b
        .requests()
        .iter()
        .all(|q| q.header("authorization").is_some()));
}

#[test]
fn every_endpoint_change_is_audited_with_old_and_new_host_and_no_secret() {
    let t = T::new();
    let a = StandIn::start();
    let b = StandIn::start();
    let (tok, _) = owner(&t, "audited");
    let (ha, hb) = (
        format!("127.0.0.1:{}", a.port),
        format!("127.0.0.1:{}", b.port),
    );
    let add = |s: &StandIn, path: &str| {
        let r = add_model(
            &t,
            &tok,
            json!({"llm_factory": "OpenAI", "base_url": format!("{}{path}", s.base()), "api_key": GOOD_KEY}),
        );
        assert_eq!(r.status, 200, "{}", body(&r));
    };
    add(&a, "/v1");
    add(&b, "/v1");
    add(&b, "/v1");
    add(&b, "/open/v1");
    assert_eq!(
        audit_details(&t, "model.add"),
        vec![
            format!("verified=true endpoint={ha}"),
            format!("verified=true endpoint={ha}->{hb}"),
            format!("verified=true endpoint={hb}"),
            format!("verified=true endpoint={hb}->{hb} (path changed)"),
        ]
    );
    // A gateway key: created on the connection's endpoint, moved with its key to OpenAI's own.
    add(&a, "/v1");
    let r = t.user(
        &tok,
        "POST",
        "/api/v1/ai_keys",
        Some(json!({"alias": "gk", "provider": "OpenAI", "model": "gpt-4o", "api_key": GOOD_KEY, "input_limit": 0})),
    );
    let id = r.json_body()["data"]["id"].as_str().unwrap().to_owned();
    let r = t.user(
        &tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI"})),
    );
    assert_eq!(r.status, 200);
    let r = t.user(
        &tok,
        "PUT",
        &format!("/api/v1/ai_keys/{id}"),
        Some(json!({"api_key": GOOD_KEY})),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(r.json_body()["data"]["endpoint_host"], "api.openai.com");
    let created = audit_details(&t, "ai_key.create");
    assert_eq!(created.len(), 1);
    assert!(
        created[0].ends_with(&format!(" endpoint={ha}")),
        "{created:?}"
    );
    assert_eq!(
        audit_details(&t, "ai_key.update"),
        vec![format!("api_key=replaced endpoint={ha}->api.openai.com")]
    );
    let all = t.db().count(&format!(
        "SELECT COUNT(*) FROM audit WHERE detail LIKE '%{GOOD_KEY}%' OR target LIKE '%{GOOD_KEY}%'"
    ));
    assert_eq!(all, 0, "no secret in the audit log");
}

#[test]
fn a_gateway_key_opens_only_for_the_endpoint_it_was_sealed_for() {
    let t = T::new();
    let s = StandIn::start();
    let (tok, tenant) = owner(&t, "sealed-endpoint");
    let r = add_model(
        &t,
        &tok,
        json!({"llm_factory": COMPAT, "llm_name": "m", "base_url": format!("{}/v1", s.base()), "api_key": GOOD_KEY}),
    );
    assert_eq!(r.status, 200);
    let r = t.user(
        &tok,
        "POST",
        "/api/v1/ai_keys",
        Some(json!({"alias": "gk", "provider": COMPAT, "model": "m", "api_key": GOOD_KEY, "input_limit": 0, "status": "enabled"})),
    );
    let id = r.json_body()["data"]["id"].as_str().unwrap().to_owned();
    let k = block_on(keyward::store::ai_keys::get(t.db(), &tenant, &id))
        .unwrap()
        .unwrap();
    assert_eq!(
        k.endpoint.as_deref(),
        Some(format!("{}/v1", s.base()).as_str())
    );
    assert_eq!(t.app.ai_key_secret(&k).unwrap(), GOOD_KEY);
    // The endpoint is part of the associated data: the same ciphertext does not open for
    // another endpoint, nor for none.
    for other in [Some("http://127.0.0.1:1/v1".to_owned()), None] {
        let moved = keyward::store::ai_keys::AiKey {
            endpoint: other.clone(),
            ..k.clone()
        };
        assert!(t.app.ai_key_secret(&moved).is_err(), "{other:?}");
    }
    // A row whose endpoint column is changed in storage is not called anywhere.
    t.db().sql(&format!(
        "UPDATE ai_keys SET endpoint = 'http://127.0.0.1:1/v1' WHERE id = '{id}'"
    ));
    s.clear_requests();
    let r = chat(&t, &tok, "gk", false);
    assert_eq!(r.status, 500, "{}", body(&r));
    assert!(s.requests().is_empty());
}

#[test]
fn a_gateway_key_stored_before_endpoints_were_bound_opens_and_is_refused_until_its_key_is_set() {
    let t = T::new();
    let s = StandIn::start();
    let (tok, tenant) = owner(&t, "legacy");
    let r = add_model(
        &t,
        &tok,
        json!({"llm_factory": COMPAT, "llm_name": "m", "base_url": format!("{}/v1", s.base()), "api_key": GOOD_KEY}),
    );
    assert_eq!(r.status, 200);
    // A row as the previous version wrote it: no endpoint, sealed with an empty one.
    let keyring = t.app.config.keyring.clone().unwrap();
    let id = "legacy-row-0001";
    let legacy = Slot::GatewayKey {
        tenant_id: &tenant,
        id,
        endpoint: None,
    };
    let (v, sealed) = keyring.seal(GOOD_KEY, &legacy.aad(), &|b| {
        getrandom::getrandom(b).unwrap()
    });
    t.db().sql(&format!(
        "INSERT INTO ai_keys (id, tenant_id, alias, provider, model, status, key_version, api_key, \
         api_key_hint, input_limit, output_limit, usage_limit_policy, create_date, update_date) \
         VALUES ('{id}', '{tenant}', 'old', '{COMPAT}', 'm', 'enabled', {v}, '{sealed}', '****', 0, 0, \
         'reject', {now}, {now})",
        now = t.now()
    ));
    let k = block_on(keyward::store::ai_keys::get(t.db(), &tenant, id))
        .unwrap()
        .unwrap();
    assert_eq!(k.endpoint, None);
    assert_eq!(
        t.app.ai_key_secret(&k).unwrap(),
        GOOD_KEY,
        "old rows still open"
    );
    let r = t.user(&tok, "GET", &format!("/api/v1/ai_keys/{id}"), None);
    assert_eq!(r.json_body()["data"]["endpoint_host"], Value::Null);
    s.clear_requests();
    let r = chat(&t, &tok, "old", false);
    assert_eq!(r.status, 403, "{}", body(&r));
    let e = r.json_body()["error"].clone();
    assert_eq!(e["code"], "endpoint_unbound");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("set its api_key again"),
        "{e}"
    );
    assert!(s.requests().is_empty());
    let r = t.user(
        &tok,
        "PUT",
        &format!("/api/v1/ai_keys/{id}"),
        Some(json!({"api_key": GOOD_KEY})),
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(chat(&t, &tok, "old", false).status, 200);
    assert_eq!(
        audit_details(&t, "ai_key.update"),
        vec![format!(
            "api_key=replaced endpoint=none->127.0.0.1:{}",
            s.port
        )]
    );
}

// ---------------------------------------------------------------- item 6: redirects

/// A base URL on `first` that answers `status` pointing at `second`'s `path`.
fn redirecting(first: &StandIn, status: u16, second: &StandIn, path: &str) -> String {
    let target: String = format!("{}{path}", second.base())
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{}/redirect/{status}/{target}", first.base())
}

#[test]
fn a_redirect_answering_validation_is_a_502_naming_it_and_the_target_receives_nothing() {
    let t = T::new();
    let first = StandIn::start();
    let second = StandIn::start();
    let (tok, _) = owner(&t, "redirected");
    for status in [307, 302, 301, 308] {
        let cases = [
            json!({"llm_factory": "OpenAI", "base_url": redirecting(&first, status, &second, "/v1"), "api_key": GOOD_KEY}),
            json!({"llm_factory": "Anthropic", "base_url": redirecting(&first, status, &second, ""), "api_key": GOOD_KEY}),
            json!({"llm_factory": "Azure-OpenAI", "endpoint": redirecting(&first, status, &second, ""), "deployment": "gpt4o", "api_key": GOOD_KEY}),
        ];
        for case in cases {
            let r = add_model(&t, &tok, case.clone());
            assert_eq!(r.status, 502, "{status} {case}: {}", body(&r));
            assert_eq!(r.json_body()["code"], 105);
            let m = message(&r);
            assert!(
                m.contains(&format!(
                    "answered with a redirect (HTTP {status}); keyward does not follow redirects with a credential"
                )),
                "{m}"
            );
        }
    }
    assert_eq!(
        first.requests().len(),
        12,
        "every probe reached the first server"
    );
    assert!(
        second.requests().is_empty(),
        "the redirect target received: {:?}",
        second.requests()
    );
    assert_eq!(t.db().count("SELECT COUNT(*) FROM provider_connections"), 0);
}

#[test]
fn a_redirect_answering_the_relay_is_a_502_naming_it_whole_and_streamed() {
    let t = T::new();
    let first = StandIn::start();
    let second = StandIn::start();
    let (tok, _) = owner(&t, "relay-redirected");
    for status in [307, 302] {
        let name = format!("r{status}");
        let r = add_model(
            &t,
            &tok,
            json!({"llm_factory": COMPAT, "llm_name": name, "base_url": redirecting(&first, status, &second, "/v1"), "api_key": GOOD_KEY, "verify": false}),
        );
        assert_eq!(r.status, 200, "{}", body(&r));
        let r = add_model(
            &t,
            &tok,
            json!({"llm_factory": "Anthropic", "llm_name": format!("claude-{status}"), "base_url": redirecting(&first, status, &second, ""), "api_key": GOOD_KEY, "verify": false}),
        );
        assert_eq!(r.status, 200, "{}", body(&r));
        for (model, stream) in [
            (name.clone(), false),
            (name.clone(), true),
            (format!("claude-{status}@Anthropic"), false),
            (format!("claude-{status}@Anthropic"), true),
        ] {
            let r = chat(&t, &tok, &model, stream);
            assert_eq!(r.status, 502, "{model} stream={stream}: {}", body(&r));
            let e = r.json_body()["error"].clone();
            assert_eq!(e["code"], "upstream_redirect", "{e}");
            assert!(
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("answered with a redirect (HTTP {status})")),
                "{e}"
            );
        }
    }
    assert_eq!(first.requests().len(), 8);
    assert!(
        second.requests().is_empty(),
        "the redirect target received: {:?}",
        second.requests()
    );
}
