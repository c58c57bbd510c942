//! The relay keeps what it decrypted and parsed in the isolate's memory (src/api/opened.rs): a
//! second call does not decrypt again, and a credential that was replaced, rotated or removed is
//! seen on the very next call. The decryptions are counted on the vault's own counter
//! (`vault::opened_on_this_thread`; every native test runs on a thread of its own).
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;

use common::*;
use keyward::api::http::Response;
use keyward::domain::vault::opened_on_this_thread;
use serde_json::{json, Value};
use standin::{StandIn, GOOD_KEY};

const WRONG_KEY: &str = "sk-standin-wrong-0123456789";

struct Rig {
    t: T,
    s: StandIn,
    tok: String,
}

fn setup() -> Rig {
    let t = T::new();
    let s = StandIn::start();
    let (_, k) = t.user_with_key("owner");
    let tok = token(&k);
    connect_standin_chat(&t, &tok, &s.base(), GOOD_KEY);
    Rig { t, s, tok }
}

impl Rig {
    fn chat(&self, model: &str) -> Response {
        self.t.user(
            &self.tok,
            "POST",
            "/v1/chat/completions",
            Some(json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})),
        )
    }
    /// The decryptions one call makes, and its answer.
    fn opens(&self, model: &str) -> (u64, Response) {
        let before = opened_on_this_thread();
        let r = self.chat(model);
        (opened_on_this_thread() - before, r)
    }
    fn post(&self, path: &str, body: Value) -> Response {
        self.t.user(&self.tok, "POST", path, Some(body))
    }
    fn gateway_key(&self, alias: &str) -> String {
        let r = self.post(
            "/api/v1/ai_keys",
            json!({
                "alias": alias, "provider": "OpenAI-API-Compatible", "model": "standin-chat",
                "api_key": GOOD_KEY, "input_limit": 0, "status": "enabled"
            }),
        );
        assert_eq!(r.status, 200, "{}", text(&r));
        r.json_body()["data"]["id"].as_str().unwrap().to_owned()
    }
    fn reconnect(&self, key: &str) {
        let r = self.post(
            "/api/v1/models",
            json!({
                "llm_factory": "OpenAI-API-Compatible", "llm_name": "standin-chat",
                "base_url": format!("{}/v1", self.s.base()), "api_key": key, "verify": false
            }),
        );
        assert_eq!(r.status, 200, "{}", text(&r));
    }
}

const CONN: &str = "standin-chat@OpenAI-API-Compatible";

#[test]
fn a_second_call_through_a_connection_does_not_decrypt_its_credential_again() {
    let r = setup();
    let (first, resp) = r.opens(CONN);
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(first, 1, "the first call opens the credential");
    for _ in 0..3 {
        let (again, resp) = r.opens(CONN);
        assert_eq!(resp.status, 200, "{}", text(&resp));
        assert_eq!(again, 0, "opened again");
    }
    let lines = log_lines().lock().unwrap();
    assert!(
        !lines.iter().any(|l| l.contains(GOOD_KEY)),
        "a secret logged"
    );
}

#[test]
fn a_second_call_through_a_gateway_key_does_not_decrypt_its_pool_again() {
    let r = setup();
    r.gateway_key("team-chat");
    let (first, resp) = r.opens("team-chat");
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(first, 1);
    let (again, resp) = r.opens("team-chat");
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(again, 0);
}

#[test]
fn a_replaced_connection_credential_is_used_on_the_next_call() {
    let r = setup();
    assert_eq!(r.chat(CONN).status, 200);
    r.reconnect(WRONG_KEY);
    let (opens, resp) = r.opens(CONN);
    assert_eq!(
        resp.status,
        502,
        "the old credential was used: {}",
        text(&resp)
    );
    assert_eq!(resp.json_body()["error"]["code"], "upstream_auth_failed");
    assert_eq!(opens, 1, "the new ciphertext is opened");
    r.reconnect(GOOD_KEY);
    assert_eq!(r.chat(CONN).status, 200);
}

#[test]
fn a_rotated_gateway_key_is_used_on_the_next_call_and_a_deleted_one_is_gone() {
    let r = setup();
    let id = r.gateway_key("team-chat");
    assert_eq!(r.chat("team-chat").status, 200);
    let path = format!("/api/v1/ai_keys/{id}");
    let put =
        r.t.user(&r.tok, "PUT", &path, Some(json!({"api_key": WRONG_KEY})));
    assert_eq!(put.status, 200, "{}", text(&put));
    let resp = r.chat("team-chat");
    assert_eq!(resp.status, 502, "the old key was used: {}", text(&resp));
    assert_eq!(resp.json_body()["error"]["code"], "upstream_auth_failed");
    let del = r.t.user(&r.tok, "DELETE", &path, None);
    assert_eq!(del.status, 200, "{}", text(&del));
    let resp = r.chat("team-chat");
    assert_eq!(resp.status, 404, "{}", text(&resp));
    assert_eq!(resp.json_body()["error"]["code"], "model_not_found");
}

#[test]
fn a_removed_connection_is_not_called_from_memory() {
    let r = setup();
    assert_eq!(r.chat(CONN).status, 200);
    let del = r.t.user(
        &r.tok,
        "DELETE",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "standin-chat"})),
    );
    assert_eq!(del.status, 200, "{}", text(&del));
    let resp = r.chat(CONN);
    assert_eq!(resp.status, 404, "{}", text(&resp));
    assert_eq!(resp.json_body()["error"]["code"], "model_not_found");
}

#[test]
fn a_moved_ciphertext_still_does_not_open_even_after_the_original_was_opened() {
    // Two tenants; the second one's row is given the first one's ciphertext (a database edit).
    let r = setup();
    assert_eq!(
        r.chat(CONN).status,
        200,
        "the first tenant's credential opened and was kept"
    );
    let (_, k) = r.t.user_with_key("other");
    let other = token(&k);
    connect_standin_chat(&r.t, &other, &r.s.base(), GOOD_KEY);
    r.t.db().sql(
        "UPDATE provider_connections SET credential = (SELECT credential FROM provider_connections \
         c JOIN users u ON u.tenant_id = c.tenant_id WHERE u.username = 'owner'), key_version = 1 \
         WHERE tenant_id = (SELECT tenant_id FROM users WHERE username = 'other')",
    );
    let resp = r.t.user(
        &other,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": CONN, "messages": [{"role": "user", "content": "hi"}]})),
    );
    assert_eq!(resp.status, 500, "{}", text(&resp));
}
