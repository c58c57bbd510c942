//! The relay against upstreams that misbehave, over real SQLite and the real HTTP stand-in's
//! hostile modes on 127.0.0.1: a stream without event boundaries, a stream that goes silent, a
//! stream that never ends, and answers that echo the stored credential in every encoding. Each
//! test checks both ends: what the client got, and what the stand-in saw.
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;
use futures::StreamExt;
use keyward::api::http::{Request, Response};
use serde_json::{json, Value};
use standin::{echo_forms, HostileRecord, StandIn, GOOD_KEY};
use std::time::{Duration, Instant};

/// A key with characters that base64 and percent-encoding both change.
const ECHO_KEY: &str = "sk-echo/Secret+Key=with~odd.chars-0123456789";
const COMPAT: &str = "OpenAI-API-Compatible";

struct Hostile {
    t: T,
    s: StandIn,
    tok: String,
}

fn setup() -> Hostile {
    let t = T::new();
    let s = StandIn::start();
    let (_, k) = t.user_with_key("owner");
    Hostile {
        t,
        s,
        tok: token(&k),
    }
}

impl Hostile {
    fn connect(&self, name: &str, path: &str, extra: Value) -> Response {
        let mut body = json!({
            "llm_factory": COMPAT, "llm_name": name, "base_url": format!("{}{path}", self.s.base()),
            "api_key": GOOD_KEY, "verify": false
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.t.user(&self.tok, "POST", "/api/v1/models", Some(body))
    }

    fn chat_request(&self, model: &str, stream: bool) -> Request {
        Request::new("POST", "/v1/chat/completions")
            .header("authorization", &format!("Bearer {}", self.tok))
            .json(&json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
    }

    fn chat(&self, model: &str, stream: bool) -> Response {
        self.t.send(self.chat_request(model, stream))
    }

    /// The stand-in's record of its first hostile answer in `mode`, waiting up to `wait` for it.
    fn record(&self, mode: &str, wait: Duration) -> HostileRecord {
        let until = Instant::now() + wait;
        loop {
            if let Some(r) = self.s.hostile().into_iter().find(|r| r.mode == mode) {
                return r;
            }
            assert!(
                Instant::now() < until,
                "the stand-in's {mode} answer did not end within {wait:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `error` of the stream's last event.
fn last_error(r: &Response) -> Value {
    let body = text(r);
    let last = body
        .trim_end()
        .rsplit("\n\n")
        .next()
        .and_then(|e| e.strip_prefix("data: "))
        .unwrap_or_default()
        .to_owned();
    serde_json::from_str::<Value>(&last).unwrap_or(Value::Null)["error"].clone()
}

#[test]
fn a_stream_without_boundaries_is_cut_at_the_event_cap_and_its_upstream_connection_closed() {
    let h = setup();
    assert_eq!(
        h.connect("flood", "/noboundary/64/v1", json!({})).status,
        200
    );
    let started = Instant::now();
    let r = h.chat("flood", true);
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    let e = last_error(&r);
    assert_eq!(e["code"], "upstream_event_too_large", "{}", text(&r));
    assert_eq!(e["type"], "upstream_error");
    assert!(e["message"].as_str().unwrap().contains("1048576 bytes"));
    assert!(
        r.body.len() < 1024,
        "the oversized event is never passed on"
    );
    let seen = h.record("noboundary", Duration::from_secs(10));
    assert!(
        seen.client_gone,
        "the stand-in saw the connection closed: {seen:?}"
    );
    assert!(
        seen.bytes_sent < 16 * 1024 * 1024,
        "the upstream stopped being read soon after the 1 MiB cap, not at 64 MiB: {seen:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn an_idle_upstream_ends_the_stream_after_the_idle_timeout_and_its_connection_is_closed() {
    let mut h = setup();
    h.t.app.config.stream_idle_timeout_ms = 400;
    assert_eq!(h.connect("quiet", "/idle/2/v1", json!({})).status, 200);
    let r = h.chat("quiet", true);
    assert_eq!(r.status, 200);
    assert!(text(&r).contains("hello, then nothing"), "{}", text(&r));
    let e = last_error(&r);
    assert_eq!(e["code"], "upstream_idle_timeout", "{}", text(&r));
    assert!(e["message"].as_str().unwrap().contains("0.4 s"), "{e}");
    let chunks = h.t.last_chunks.borrow().clone();
    let (first, last) = (chunks[0].0, chunks[chunks.len() - 1].0);
    assert!(
        last - first >= Duration::from_millis(350) && last - first < Duration::from_millis(1500),
        "the error came with the idle timeout: {chunks:?}"
    );
    // The stand-in is silent for 2 s, then writes again: those writes fail, the relay closed.
    let seen = h.record("idle", Duration::from_secs(10));
    assert!(seen.client_gone, "{seen:?}");
    assert!(
        seen.millis < 3_000,
        "seen as soon as it wrote again: {seen:?}"
    );
}

#[test]
fn a_client_that_leaves_an_endless_stream_closes_the_upstream_connection() {
    let h = setup();
    assert_eq!(h.connect("forever", "/endless/v1", json!({})).status, 200);
    let mut resp = block_on(h.t.app.handle(h.chat_request("forever", true)));
    assert_eq!(resp.status, 200);
    let mut stream = resp.stream.take().expect("a streamed answer");
    let mut got = Vec::new();
    for _ in 0..3 {
        got.extend(block_on(stream.next()).expect("an event"));
    }
    assert!(String::from_utf8_lossy(&got).contains("word0 "));
    let left = Instant::now();
    drop(stream);
    let seen = h.record("endless", Duration::from_secs(5));
    assert!(seen.client_gone, "{seen:?}");
    assert!(
        left.elapsed() < Duration::from_secs(2),
        "{:?}",
        left.elapsed()
    );
}

/// Every way `text` still shows `key`: the forms found, by name.
fn exposures(text: &str, key: &str) -> Vec<String> {
    let mut found = Vec::new();
    let lower = text.to_ascii_lowercase();
    for (name, form) in echo_forms(key) {
        // The Basic forms carry other bytes; only the key's own characters matter there.
        if !name.starts_with("basic") && lower.contains(&form.to_ascii_lowercase()) {
            found.push(name.to_string());
        }
    }
    for prefix in ["", "a", "ab"] {
        let shifted = format!("{prefix}{key}");
        for (alphabet, encoded) in [
            ("base64", STANDARD.encode(&shifted)),
            ("url-safe", URL_SAFE_NO_PAD.encode(&shifted)),
        ] {
            let head = [0, 2, 3][prefix.len()];
            let encoded = encoded.trim_end_matches('=');
            let core = &encoded[head..encoded.len() - usize::from(shifted.len() % 3 != 0)];
            if text.contains(core) {
                found.push(format!("{alphabet} at alignment {}", prefix.len()));
            }
        }
    }
    found
}

fn assert_scrubbed(r: &Response, key: &str, what: &str) {
    assert_eq!(
        exposures(&text(r), key),
        Vec::<String>::new(),
        "{what}: {}",
        text(r)
    );
    for (n, v) in &r.headers {
        assert!(exposures(v, key).is_empty(), "{what}: header {n}: {v}");
        assert_ne!(
            n, "x-echo-credential",
            "{what}: the upstream's headers are not passed on"
        );
    }
}

#[test]
fn the_exposure_check_finds_every_form_the_stand_in_echoes() {
    for (name, form) in echo_forms(ECHO_KEY) {
        assert!(!exposures(&form, ECHO_KEY).is_empty(), "{name}: {form}");
    }
}

#[test]
fn echoed_credentials_never_reach_the_client_in_any_form() {
    let h = setup();
    let labels = [
        "verbatim", "upper", "base64", "basic0", "basic1", "basic2", "urlsafe", "percent",
    ];
    let scrubbed = |text: &str, what: &str| {
        for label in labels {
            assert!(
                text.contains(&format!("{label}=")),
                "{what}: {label} was echoed: {text}"
            );
            let at = text.find(&format!("{label}=")).unwrap();
            let rest: String = text[at..].split_whitespace().next().unwrap().to_owned();
            assert!(rest.contains("***"), "{what}: {label} was scrubbed: {rest}");
        }
    };

    // Validation against an upstream that refuses and echoes: 422, the reason scrubbed.
    let r = h.connect(
        "echo-probe",
        "/echo-error/v1",
        json!({"api_key": ECHO_KEY, "verify": true}),
    );
    assert_eq!(r.status, 422, "{}", text(&r));
    scrubbed(r.json_body()["message"].as_str().unwrap(), "validation");
    assert_scrubbed(&r, ECHO_KEY, "validation");
    // Validation that passes (the 200 echoes too; it is not shown).
    let r = h.connect(
        "echo",
        "/echo/v1",
        json!({"api_key": ECHO_KEY, "verify": true}),
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_scrubbed(&r, ECHO_KEY, "validation passed");
    let r = h.connect(
        "echo-embed",
        "/echo/v1",
        json!({"api_key": ECHO_KEY, "model_type": "embedding"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        h.connect("echo-error", "/echo-error/v1", json!({"api_key": ECHO_KEY}))
            .status,
        200
    );

    // A 200 whole answer: the content and a field the relay knows nothing of.
    let r = h.chat("echo", false);
    assert_eq!(r.status, 200, "{}", text(&r));
    let body = r.json_body();
    scrubbed(
        body["choices"][0]["message"]["content"].as_str().unwrap(),
        "200 content",
    );
    scrubbed(body["echo"].as_str().unwrap(), "200 extra field");
    assert_scrubbed(&r, ECHO_KEY, "200 chat");
    let r = h.t.user(
        &h.tok,
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "echo-embed", "input": "x"})),
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    scrubbed(r.json_body()["echo"].as_str().unwrap(), "embeddings");
    assert_scrubbed(&r, ECHO_KEY, "embeddings");

    // An error answer, whole and streamed.
    for stream in [false, true] {
        let r = h.chat("echo-error", stream);
        assert_eq!(r.status, 502, "{}", text(&r));
        let e = r.json_body()["error"].clone();
        assert_eq!(e["code"], "upstream_auth_failed");
        let message = e["message"].as_str().unwrap();
        // The reason is bounded (300 characters): the first forms are in it.
        assert!(message.contains("verbatim=***"), "{message}");
        assert_scrubbed(&r, ECHO_KEY, "error answer");
    }

    // A stream whose every event arrives a few bytes at a time.
    let r = h.chat("echo", true);
    assert_eq!(r.status, 200);
    assert!(h.t.last_chunks.borrow().len() >= 2);
    let body = text(&r);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let content: String = body
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    scrubbed(&content, "stream content");
    assert!(body.contains("data: not json: verbatim=***"), "{body}");
    assert_scrubbed(&r, ECHO_KEY, "stream");

    // And nothing in the log either.
    let logs = log_lines().lock().unwrap().join("\n");
    assert!(exposures(&logs, ECHO_KEY).is_empty());
}
