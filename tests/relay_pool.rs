//! Gateway key pools over real SQLite and the real stand-in on 127.0.0.1: the relay fails over
//! from a rate-limited, failing or refused provider key to the next, keeps the failed one out for
//! its cool-down, never retries a stream that has started, and no answer or log line ever holds a
//! pool's keys.
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;

use common::*;
use keyward::api::http::Response;
use keyward::domain::crypto::mask;
use serde_json::{json, Value};
use standin::{rate_limited_key, StandIn, CUT_KEY, FAILING_KEY, GOOD_KEY};

struct Pool {
    t: T,
    s: StandIn,
    tok: String,
}

fn setup() -> Pool {
    let t = T::new();
    let s = StandIn::start();
    let (_, k) = t.user_with_key("owner");
    let tok = token(&k);
    connect_standin_chat(&t, &tok, &s.base(), GOOD_KEY);
    Pool { t, s, tok }
}

/// The `data:` payloads of an SSE body, parsed (`[DONE]` as a string).
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| json!(d)))
        .collect()
}

impl Pool {
    fn create(&self, alias: &str, pool: Value) -> Response {
        let mut body = json!({
            "alias": alias, "provider": "OpenAI-API-Compatible", "model": "standin-chat",
            "input_limit": 0, "status": "enabled"
        });
        for (k, v) in pool.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.t
            .user(&self.tok, "POST", "/api/v1/ai_keys", Some(body))
    }
    /// A pool key of these provider keys; its id.
    fn pool_key(&self, alias: &str, keys: &[&str]) -> String {
        let r = self.create(alias, json!({ "api_keys": keys }));
        assert_eq!(r.status, 200, "{}", text(&r));
        r.json_body()["data"]["id"].as_str().unwrap().to_owned()
    }
    fn details(&self, id: &str) -> Value {
        let r = self
            .t
            .user(&self.tok, "GET", &format!("/api/v1/ai_keys/{id}"), None);
        assert_eq!(r.status, 200, "{}", text(&r));
        r.json_body()["data"].clone()
    }
    fn chat(&self, model: &str, extra: Value) -> Response {
        let mut body =
            json!({"model": model, "messages": [{"role": "user", "content": "hello pool"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.t
            .user(&self.tok, "POST", "/v1/chat/completions", Some(body))
    }
    /// The bearer keys of the chat calls the stand-in received since the last clear, in order.
    fn chat_keys(&self) -> Vec<String> {
        self.s
            .requests()
            .into_iter()
            .filter(|q| q.path.ends_with("/chat/completions"))
            .map(|q| {
                q.header("authorization")
                    .unwrap_or_default()
                    .trim_start_matches("Bearer ")
                    .to_owned()
            })
            .collect()
    }
}

/// `(index, hint, requests)` of each pool member as the details show them.
fn members(details: &Value) -> Vec<(i64, String, i64)> {
    details["pool"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["index"].as_i64().unwrap(),
                m["api_key_hint"].as_str().unwrap().to_owned(),
                m["requests"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_pool_fails_over_past_a_rate_limited_and_a_failing_key_and_skips_them_while_they_cool_down() {
    let p = setup();
    let limited = rate_limited_key(5);
    let id = p.pool_key("failover", &[&limited, FAILING_KEY, GOOD_KEY]);

    // One request: the 429 (Retry-After: 5) and the 500 are passed over, the third key serves.
    let r = p.chat("failover", json!({}));
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(
        r.json_body()["choices"][0]["message"]["content"],
        "echo: hello pool"
    );
    assert_eq!(
        p.chat_keys(),
        vec![limited.clone(), FAILING_KEY.into(), GOOD_KEY.into()]
    );
    let d = p.details(&id);
    assert_eq!(
        members(&d),
        vec![
            (0, mask(&limited), 0),
            (1, mask(FAILING_KEY), 0),
            (2, mask(GOOD_KEY), 1)
        ]
    );
    assert_eq!(d["last_served_by"]["index"], 2);
    assert_eq!(d["last_served_by"]["api_key_hint"], mask(GOOD_KEY));

    // Within the 5 s the first key is not called at all, nor the failed second (30 s default).
    p.s.clear_requests();
    p.t.advance_ms(4_000);
    assert_eq!(p.chat("failover", json!({})).status, 200);
    assert_eq!(p.chat_keys(), vec![GOOD_KEY.to_owned()]);

    // After its 5 s the first key is tried again; the second still cools down.
    p.s.clear_requests();
    p.t.advance_ms(1_500);
    assert_eq!(p.chat("failover", json!({})).status, 200);
    assert_eq!(p.chat_keys(), vec![limited.clone(), GOOD_KEY.into()]);
    assert_eq!(members(&p.details(&id))[2].2, 3);
}

#[test]
fn a_refused_credential_fails_over_and_stays_out_for_the_default_thirty_seconds() {
    let p = setup();
    let refused = "sk-standin-refused-0123456789";
    p.pool_key("refused", &[refused, GOOD_KEY]);
    assert_eq!(p.chat("refused", json!({})).status, 200);
    assert_eq!(p.chat_keys(), vec![refused.to_owned(), GOOD_KEY.into()]);
    p.s.clear_requests();
    p.t.advance_ms(29_000);
    assert_eq!(p.chat("refused", json!({})).status, 200);
    assert_eq!(p.chat_keys(), vec![GOOD_KEY.to_owned()]);
    p.s.clear_requests();
    p.t.advance_ms(1_500);
    assert_eq!(p.chat("refused", json!({})).status, 200);
    assert_eq!(p.chat_keys(), vec![refused.to_owned(), GOOD_KEY.into()]);
}

#[test]
fn when_every_key_of_a_pool_fails_the_client_gets_the_last_failure() {
    let p = setup();
    let limited = rate_limited_key(7);
    p.pool_key("all-fail", &[FAILING_KEY, &limited]);
    let r = p.chat("all-fail", json!({}));
    assert_eq!(r.status, 429, "{}", text(&r));
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.json_body()["error"]["code"], "upstream_rate_limited");
    assert_eq!(p.chat_keys(), vec![FAILING_KEY.to_owned(), limited]);

    // Both cool down now: the one whose cool-down ends first (the 429's 7 s) is tried alone.
    p.s.clear_requests();
    let r = p.chat("all-fail", json!({}));
    assert_eq!(r.status, 429);
    assert_eq!(p.chat_keys(), vec![rate_limited_key(7)]);
}

#[test]
fn a_request_the_provider_finds_wrong_is_not_tried_with_the_next_key() {
    let p = setup();
    p.pool_key("wrong", &[GOOD_KEY, "sk-standin-second-0123456789"]);
    let r = p.t.user(
        &p.tok,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "wrong", "messages": []})),
    );
    assert_eq!(r.status, 400, "{}", text(&r));
    assert_eq!(p.chat_keys(), vec![GOOD_KEY.to_owned()]);
}

#[test]
fn a_stream_that_fails_after_its_first_chunk_is_not_retried_and_ends_with_an_error_event() {
    let p = setup();
    p.pool_key("cut-stream", &[CUT_KEY, GOOD_KEY]);
    let r = p.chat("cut-stream", json!({"stream": true}));
    assert_eq!(r.status, 200);
    let body = text(&r);
    let evs = events(&body);
    assert!(
        evs.iter()
            .any(|e| e["choices"][0]["delta"]["content"] == "echo:"),
        "the first chunk is passed on: {body}"
    );
    assert_eq!(
        evs.last().unwrap()["error"]["code"],
        "upstream_stream_incomplete",
        "{body}"
    );
    assert!(!body.contains("[DONE]"));
    assert_eq!(p.chat_keys(), vec![CUT_KEY.to_owned()], "never retried");
}

#[test]
fn a_stream_refused_before_its_first_byte_fails_over_to_the_next_key() {
    let p = setup();
    let limited = rate_limited_key(5);
    p.pool_key("stream-over", &[&limited, GOOD_KEY]);
    let r = p.chat("stream-over", json!({"stream": true}));
    assert_eq!(r.status, 200, "{}", text(&r));
    let body = text(&r);
    assert!(body.contains("[DONE]"), "{body}");
    assert!(
        events(&body).iter().all(|e| e.get("error").is_none()),
        "{body}"
    );
    assert_eq!(p.chat_keys(), vec![limited, GOOD_KEY.into()]);
}

#[test]
fn a_single_api_key_is_a_pool_of_one_and_a_put_of_api_keys_replaces_it() {
    let p = setup();
    let r = p.create("single", json!({ "api_key": GOOD_KEY }));
    assert_eq!(r.status, 200, "{}", text(&r));
    let d = r.json_body()["data"].clone();
    let id = d["id"].as_str().unwrap().to_owned();
    assert_eq!(members(&d), vec![(0, mask(GOOD_KEY), 0)]);
    assert_eq!(d["last_served_by"], Value::Null);
    assert_eq!(p.chat("single", json!({})).status, 200);
    assert_eq!(members(&p.details(&id)), vec![(0, mask(GOOD_KEY), 1)]);

    let second = "sk-standin-second-0123456789";
    let r = p.t.user(
        &p.tok,
        "PUT",
        &format!("/api/v1/ai_keys/{id}"),
        Some(json!({ "api_keys": [second, GOOD_KEY] })),
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    let want = vec![(0, mask(second), 0), (1, mask(GOOD_KEY), 0)];
    assert_eq!(
        members(&r.json_body()["data"]),
        want,
        "the counts start again"
    );
    let d = p.details(&id);
    assert_eq!(members(&d), want);
    assert_eq!(d["api_key_hint"], mask(second));
    assert_eq!(d["last_served_by"], Value::Null);
    assert_eq!(p.chat("single", json!({})).status, 200);
    assert_eq!(p.details(&id)["last_served_by"]["index"], 1);
}

#[test]
fn bad_pools_are_400s_naming_the_problem_and_write_nothing() {
    let p = setup();
    let six: Vec<String> = (0..6)
        .map(|i| format!("sk-standin-pool-{i}-0123456789"))
        .collect();
    for (pool, want) in [
        (
            json!({"api_key": GOOD_KEY, "api_keys": [GOOD_KEY]}),
            "Send api_key or api_keys, not both",
        ),
        (
            json!({}),
            "api_key: is required (or api_keys, a pool of 1 to 5 keys)",
        ),
        (
            json!({"api_keys": []}),
            "api_keys: must hold 1 to 5 keys, got 0",
        ),
        (
            json!({"api_keys": six.clone()}),
            "api_keys: must hold 1 to 5 keys, got 6",
        ),
        (
            json!({"api_keys": [GOOD_KEY, "short"]}),
            "api_keys[1]: must be at least 8 characters",
        ),
        (
            json!({"api_keys": [GOOD_KEY, "sk-has\nnewline-0123"]}),
            "api_keys[1]: must not contain control characters",
        ),
        (
            json!({"api_keys": [GOOD_KEY, FAILING_KEY, GOOD_KEY]}),
            "api_keys[2]: repeats api_keys[0]",
        ),
    ] {
        let r = p.create("bad", pool.clone());
        assert_eq!(r.status, 400, "{pool}: {}", text(&r));
        let msg = r.json_body()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(msg.contains(want), "{pool}: {msg}");
        assert!(
            !msg.contains(GOOD_KEY) && !msg.contains("sk-standin-pool"),
            "{msg}"
        );
    }
    let r = p.create("bad", json!({"api_keys": [1, 2]}));
    assert_eq!(r.status, 400, "{}", text(&r));
    assert_eq!(p.t.db().count("SELECT COUNT(*) FROM ai_keys"), 0);

    let id = p.pool_key("good", &[GOOD_KEY]);
    for (body, want) in [
        (json!({"api_keys": null}), "api_keys: must not be null"),
        (
            json!({"api_key": GOOD_KEY, "api_keys": [GOOD_KEY]}),
            "Send api_key or api_keys, not both",
        ),
        (json!({"api_keys": six}), "api_keys: must hold 1 to 5 keys"),
    ] {
        let r = p.t.user(
            &p.tok,
            "PUT",
            &format!("/api/v1/ai_keys/{id}"),
            Some(body.clone()),
        );
        assert_eq!(r.status, 400, "{body}: {}", text(&r));
        let msg = r.json_body()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(msg.contains(want), "{body}: {msg}");
    }
    assert_eq!(members(&p.details(&id)), vec![(0, mask(GOOD_KEY), 0)]);
}

#[test]
fn a_pool_never_shows_a_key_in_any_answer_or_log_line() {
    let p = setup();
    let limited = rate_limited_key(3);
    let refused = "sk-standin-refused-leakcheck-0123456789";
    let id = p.pool_key("leak", &[&limited, refused, FAILING_KEY, GOOD_KEY]);
    assert_eq!(p.chat("leak", json!({})).status, 200);
    assert_eq!(p.chat("leak", json!({"stream": true})).status, 200);
    p.t.advance_ms(60_000);
    p.pool_key("leak-all-fail", &[FAILING_KEY, refused]);
    assert_eq!(p.chat("leak-all-fail", json!({})).status, 502);
    p.details(&id);
    p.t.user(&p.tok, "GET", "/api/v1/ai_keys", None);
    p.t.user(
        &p.tok,
        "PUT",
        &format!("/api/v1/ai_keys/{id}"),
        Some(json!({"api_keys": [refused, GOOD_KEY]})),
    );
    let stored: String =
        p.t.db()
            .conn
            .borrow()
            .query_row("SELECT api_key FROM ai_keys WHERE id = ?1", [&id], |r| {
                r.get(0)
            })
            .unwrap();
    let bodies = p.t.bodies.borrow().join("\n");
    let logs = log_lines().lock().unwrap().join("\n");
    assert!(logs.contains("pool member"), "the failovers are logged");
    for secret in [
        limited.as_str(),
        refused,
        FAILING_KEY,
        GOOD_KEY,
        stored.as_str(),
    ] {
        assert!(!bodies.contains(secret), "an answer holds {secret}");
        assert!(!logs.contains(secret), "a log line holds {secret}");
    }
}
