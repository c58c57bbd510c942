//! Vertex AI through the relay: its OpenAI-compatible endpoint with an access token minted from
//! the tenant's service account, cached per isolate until shortly before it expires, dropped and
//! minted again once when refused; over real SQLite, calling the real HTTP stand-in on 127.0.0.1.
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;

use common::*;
use keyward::api::http::Response;
use keyward::relay::vertex::TOKEN_MARGIN_S;
use serde_json::{json, Value};
use standin::StandIn;

const MODEL: &str = "gemini-2.5-flash@VertexAI";
const CHAT_PATH: &str =
    "/v1/projects/standin-project/locations/us-central1/endpoints/openapi/chat/completions";

struct R {
    t: T,
    s: StandIn,
    tok: String,
}

/// A tenant with a VertexAI connection whose service account's `token_uri` is `token_path` on
/// the stand-in, and whose API root is the stand-in.
fn setup(token_path: &str) -> R {
    let t = T::new();
    let s = StandIn::start();
    let (_, k) = t.user_with_key("owner");
    let r = R {
        t,
        tok: token(&k),
        s,
    };
    let creds = standin::vertex_credentials_json(
        &format!("{}{token_path}", r.s.base()),
        "relay@standin.iam.gserviceaccount.com",
    );
    let resp = r.post(
        "/api/v1/models",
        json!({"llm_factory": "VertexAI", "credentials_json": creds, "base_url": r.s.base()}),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    // The connection's own validation minted a token; the relay's are counted from here.
    r.s.clear_requests();
    r
}

impl R {
    fn post(&self, path: &str, body: Value) -> Response {
        self.t.user(&self.tok, "POST", path, Some(body))
    }
    fn chat(&self, extra: Value) -> Response {
        let mut body =
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hello vertex"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.post("/v1/chat/completions", body)
    }
    fn token_grants(&self) -> usize {
        self.s
            .requests()
            .iter()
            .filter(|q| q.method == "POST" && q.path.ends_with("/token"))
            .count()
    }
    /// The bearer tokens of the chat calls the stand-in received, oldest first.
    fn chat_tokens(&self) -> Vec<String> {
        self.s
            .requests()
            .iter()
            .filter(|q| q.path == CHAT_PATH)
            .map(|q| {
                q.header("authorization")
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
}

#[test]
fn two_vertex_calls_within_the_tokens_life_mint_one_token_and_a_call_after_expiry_mints_another() {
    let r = setup("/ttl/600/token");
    let first = r.chat(json!({}));
    assert_eq!(first.status, 200, "{}", text(&first));
    assert_eq!(
        first.json_body()["choices"][0]["message"]["content"],
        "echo: hello vertex"
    );
    let (q, sent) = {
        let q =
            r.s.requests()
                .into_iter()
                .find(|q| q.path == CHAT_PATH)
                .expect("the compatible endpoint was called");
        let sent: Value = serde_json::from_str(&q.body).unwrap();
        (q, sent)
    };
    assert_eq!(sent["model"], "google/gemini-2.5-flash");
    assert!(q
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer ya29.standin.")));
    let second = r.chat(json!({"stream": true}));
    assert_eq!(second.status, 200, "{}", text(&second));
    let body = text(&second);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    assert!(body.contains("\"content\""), "{body}");
    assert_eq!(r.token_grants(), 1, "two calls within the token's life");
    let tokens = r.chat_tokens();
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        tokens[0], tokens[1],
        "the cached token served the second call"
    );

    // Just before the margin the cached token is still used; past it a new one is minted.
    r.t.advance_ms((600 - TOKEN_MARGIN_S as i64) * 1000 - 1_000);
    assert_eq!(r.chat(json!({})).status, 200);
    assert_eq!(r.token_grants(), 1);
    r.t.advance_ms(1_000);
    let after = r.chat(json!({}));
    assert_eq!(after.status, 200, "{}", text(&after));
    assert_eq!(r.token_grants(), 2, "a call after expiry mints a new token");
    let tokens = r.chat_tokens();
    assert_ne!(tokens[3], tokens[0], "and uses it");
}

#[test]
fn a_refused_vertex_token_is_minted_again_once_then_the_call_fails_with_the_stored_credential_502()
{
    let r = setup("/refused/token");
    for stream in [false, true] {
        r.s.clear_requests();
        let resp = r.chat(json!({"stream": stream}));
        assert_eq!(resp.status, 502, "stream={stream}: {}", text(&resp));
        let e = resp.json_body()["error"].clone();
        assert_eq!(e["code"], "upstream_auth_failed", "{e}");
        assert_eq!(e["type"], "upstream_error");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("refused the credential this tenant stored"),
            "{e}"
        );
        assert_eq!(r.token_grants(), 2, "stream={stream}: minted again once");
        let tokens = r.chat_tokens();
        assert_eq!(tokens.len(), 2, "stream={stream}: one retry, no more");
        assert_ne!(tokens[0], tokens[1], "the retry carries the new token");
    }
}

#[test]
fn a_token_endpoint_refusing_the_service_account_is_the_stored_credential_502() {
    let t = T::new();
    let s = StandIn::start();
    let (_, k) = t.user_with_key("owner");
    let tok = token(&k);
    for (status, code) in [(400, "upstream_auth_failed"), (503, "upstream_failed")] {
        // Not verified: the token endpoint answers `status` to every assertion.
        let creds = standin::vertex_credentials_json(
            &format!("{}/status/{status}/token", s.base()),
            "relay@standin.iam.gserviceaccount.com",
        );
        let resp = t.user(
            &tok,
            "POST",
            "/api/v1/models",
            Some(json!({"llm_factory": "VertexAI", "credentials_json": creds,
                "base_url": s.base(), "verify": false})),
        );
        assert_eq!(resp.status, 200, "{}", text(&resp));
        let resp = t.user(
            &tok,
            "POST",
            "/v1/chat/completions",
            Some(json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})),
        );
        assert_eq!(resp.status, 502, "{status}: {}", text(&resp));
        assert_eq!(resp.json_body()["error"]["code"], code, "{status}");
        assert!(
            !s.requests().iter().any(|q| q.path == CHAT_PATH),
            "no chat call without a token"
        );
    }
}

#[test]
fn vertex_embeddings_are_refused_with_a_400_before_any_token_is_minted() {
    let r = setup("/ttl/600/token");
    let resp = r.post(
        "/v1/embeddings",
        json!({"model": "text-embedding-005@VertexAI", "input": "x"}),
    );
    assert_eq!(resp.status, 400, "{}", text(&resp));
    let e = resp.json_body()["error"].clone();
    assert_eq!(e["type"], "invalid_request_error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("chat completions only"),
        "{e}"
    );
    assert_eq!(r.token_grants(), 0);
}

#[test]
fn no_vertex_token_or_private_key_reaches_a_log_line_or_a_response() {
    let ok = setup("/ttl/600/token");
    assert_eq!(ok.chat(json!({})).status, 200);
    assert_eq!(ok.chat(json!({"stream": true})).status, 200);
    let refused = setup("/refused/token");
    assert_eq!(refused.chat(json!({})).status, 502);
    assert_eq!(refused.chat(json!({"stream": true})).status, 502);
    let mut tokens = ok.chat_tokens();
    tokens.extend(refused.chat_tokens());
    assert!(tokens.len() >= 4 && tokens.iter().all(|t| t.starts_with("ya29.")));
    // A fragment of the key's body, as it would appear in clear or JSON-escaped.
    let key_part = standin::VERTEX_TEST_PRIVATE_KEY_PEM.lines().nth(3).unwrap();
    let logs = log_lines().lock().unwrap().join("\n");
    assert!(
        logs.contains("relay answered 502"),
        "the refusals were logged: {logs}"
    );
    for (what, t) in [(&ok.t, "ok"), (&refused.t, "refused")]
        .iter()
        .flat_map(|(t, name)| {
            t.bodies
                .borrow()
                .clone()
                .into_iter()
                .map(move |b| (b, *name))
        })
        .chain(std::iter::once((logs, "logs")))
    {
        for token in &tokens {
            assert!(
                !what.contains(token.as_str()),
                "{t}: a token leaked: {what}"
            );
        }
        assert!(!what.contains("ya29."), "{t}: {what}");
        assert!(!what.contains(key_part), "{t}: the private key leaked");
        assert!(!what.contains("PRIVATE KEY"), "{t}: {what}");
    }
}
