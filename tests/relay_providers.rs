//! The relay's providers beyond the OpenAI family (Gemini and Cohere through their
//! OpenAI-compatible APIs, Builtin through Workers AI), and how every provider failure reaches the
//! client: over real SQLite, calling the real HTTP stand-in on 127.0.0.1.
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;

use common::*;
use keyward::api::http::{Request, Response};
use keyward::relay::WorkersAi;
use serde_json::{json, Value};
use standin::{StandIn, GOOD_KEY, WORKERS_AI_ACCOUNT, WORKERS_AI_TOKEN};

struct R {
    t: T,
    s: StandIn,
    tok: String,
}

fn setup() -> R {
    let t = T::new();
    let s = StandIn::start();
    let (_, k) = t.user_with_key("owner");
    R {
        t,
        s,
        tok: token(&k),
    }
}

impl R {
    fn post(&self, path: &str, body: Value) -> Response {
        self.t.user(&self.tok, "POST", path, Some(body))
    }
    fn connect(&self, body: Value) {
        let resp = self.post("/api/v1/models", body.clone());
        assert_eq!(
            resp.status,
            200,
            "{body}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    fn chat(&self, model: &str, content: &str, extra: Value) -> Response {
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": content}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.post("/v1/chat/completions", body)
    }
    /// The body the stand-in received on the last request to `path`.
    fn sent(&self, path: &str) -> (standin::Recorded, Value) {
        let q = self
            .s
            .requests()
            .into_iter()
            .rev()
            .find(|q| q.path == path)
            .unwrap_or_else(|| panic!("nothing sent to {path}: {:?}", self.s.requests()));
        let body = serde_json::from_str(&q.body).unwrap_or(Value::Null);
        (q, body)
    }
}

/// The `data:` payloads of an SSE body, parsed (`[DONE]` as a string).
fn events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| json!(d)))
        .collect()
}

/// An OpenAI-shaped error with exactly `{message, type, param, code}`; returns it.
fn openai_error(r: &Response, what: &str) -> Value {
    let body = r.json_body();
    let keys: Vec<&String> = body.as_object().expect(what).keys().collect();
    assert_eq!(keys, vec!["error"], "{what}: {}", text(r));
    let e = body["error"].clone();
    let mut fields: Vec<&String> = e.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(fields, vec!["code", "message", "param", "type"], "{what}");
    assert!(!e["message"].as_str().unwrap().is_empty(), "{what}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{what}"
    );
    e
}

#[test]
fn gemini_is_called_through_its_openai_compatible_surface_with_a_bearer_key() {
    let r = setup();
    r.connect(json!({"llm_factory": "Gemini", "api_key": GOOD_KEY, "base_url": r.s.base()}));
    let resp = r.chat("gemini-2.5-flash@Gemini", "hello gemini", json!({}));
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let body = resp.json_body();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: hello gemini"
    );
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let (q, sent) = r.sent("/v1beta/openai/chat/completions");
    assert_eq!(
        q.header("authorization"),
        Some(format!("Bearer {GOOD_KEY}").as_str())
    );
    assert_eq!(
        q.header("x-goog-api-key"),
        None,
        "the compatible surface takes the bearer form"
    );
    assert_eq!(sent["model"], "gemini-2.5-flash");

    // Streamed, with the usage the relay asked for hidden from a client that did not ask.
    let resp = r.chat(
        "gemini-2.5-flash@Gemini",
        "one two",
        json!({"stream": true}),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let evs = events(&text(&resp));
    assert_eq!(evs.last(), Some(&json!("[DONE]")));
    let content: String = evs
        .iter()
        .filter_map(|e| {
            e.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(content, "echo: one two");
    assert!(!text(&resp).contains("prompt_tokens"));
    let (_, sent) = r.sent("/v1beta/openai/chat/completions");
    assert_eq!(sent["stream_options"]["include_usage"], true);

    let resp = r.post(
        "/v1/embeddings",
        json!({"model": "text-embedding-004@Gemini", "input": ["a b", "c"]}),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(resp.json_body()["data"].as_array().unwrap().len(), 2);
    let (_, sent) = r.sent("/v1beta/openai/embeddings");
    assert_eq!(sent["model"], "text-embedding-004");
}

#[test]
fn geminis_refusal_of_the_stored_key_is_a_502_about_the_stored_credential() {
    let r = setup();
    let bad = "AIzaSy-stored-but-refused-0123456789";
    r.connect(
        json!({"llm_factory": "Gemini", "api_key": bad, "base_url": r.s.base(), "verify": false}),
    );
    for extra in [json!({}), json!({"stream": true})] {
        let resp = r.chat("gemini-2.5-flash@Gemini", "x", extra.clone());
        assert_eq!(
            resp.status,
            502,
            "Google's 400 API_KEY_INVALID is not the client's fault: {}",
            text(&resp)
        );
        let e = openai_error(&resp, "gemini bad key");
        assert_eq!(e["code"], "upstream_auth_failed", "{extra}");
        let m = e["message"].as_str().unwrap();
        assert!(
            m.contains("refused the credential this tenant stored"),
            "{m}"
        );
        assert!(
            m.contains("API key not valid"),
            "the provider's own reason: {m}"
        );
        assert!(!text(&resp).contains(bad));
    }
}

#[test]
fn cohere_is_called_through_its_compatibility_api_and_its_streams_are_counted_without_stream_options(
) {
    let r = setup();
    let base = format!("{}/cohere", r.s.base());
    r.connect(json!({"llm_factory": "Cohere", "api_key": GOOD_KEY, "base_url": base}));
    let resp = r.chat("command-r@Cohere", "hello cohere", json!({}));
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(
        resp.json_body()["choices"][0]["message"]["content"],
        "echo: hello cohere"
    );
    let (q, sent) = r.sent("/cohere/compatibility/v1/chat/completions");
    assert_eq!(
        q.header("authorization"),
        Some(format!("Bearer {GOOD_KEY}").as_str())
    );
    assert_eq!(sent["model"], "command-r");

    // A stream whose client asks for usage: the field is not forwarded (Cohere refuses it), and
    // the client still gets a usage chunk before [DONE], counted by the relay.
    let resp = r.chat(
        "command-r@Cohere",
        "one two three",
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let (_, sent) = r.sent("/cohere/compatibility/v1/chat/completions");
    assert!(sent.get("stream_options").is_none(), "{sent}");
    let evs = events(&text(&resp));
    assert_eq!(evs.last(), Some(&json!("[DONE]")));
    let usage_chunk = &evs[evs.len() - 2];
    assert_eq!(usage_chunk["choices"], json!([]), "{usage_chunk}");
    assert_eq!(usage_chunk["object"], "chat.completion.chunk");
    assert_eq!(usage_chunk["id"], "chatcmpl-standin", "the stream's own id");
    let u = &usage_chunk["usage"];
    let (i, o) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    assert!(i > 0 && o > 0, "{u}");
    assert_eq!(u["total_tokens"].as_u64(), Some(i + o));
    let content: String = evs
        .iter()
        .filter_map(|e| {
            e.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(content, "echo: one two three");
    // Counted on the model as shown to the client.
    let models = r.t.user(&r.tok, "GET", "/api/v1/models", None).json_body();
    let used = models["data"]["Cohere"]["llm"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "command-r")
        .unwrap()["used_token"]
        .as_i64()
        .unwrap();
    assert!(
        used >= (i + o) as i64,
        "used_token {used} counts the stream"
    );

    // A stream whose client did not ask gets no usage chunk.
    let resp = r.chat("command-r@Cohere", "quiet", json!({"stream": true}));
    assert!(!text(&resp).contains("prompt_tokens"), "{}", text(&resp));
    assert_eq!(events(&text(&resp)).last(), Some(&json!("[DONE]")));

    let resp = r.post(
        "/v1/embeddings",
        json!({"model": "embed-english-v3.0@Cohere", "input": "x y"}),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let (_, sent) = r.sent("/cohere/compatibility/v1/embeddings");
    assert_eq!(sent["model"], "embed-english-v3.0");
}

fn workers_ai(r: &mut R) {
    r.t.app.config.workers_ai = WorkersAi {
        account_id: Some(WORKERS_AI_ACCOUNT.into()),
        api_token: Some(WORKERS_AI_TOKEN.into()),
        base_url: Some(format!("{}/client/v4", r.s.base())),
    };
}

#[test]
fn builtin_models_are_served_through_workers_ai_with_the_deployments_token() {
    let mut r = setup();
    workers_ai(&mut r);
    let model = "@cf/meta/llama-3.1-8b-instruct@Builtin";
    let resp = r.chat(model, "hello builtin", json!({}));
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(
        resp.json_body()["choices"][0]["message"]["content"],
        "echo: hello builtin"
    );
    let path = format!("/client/v4/accounts/{WORKERS_AI_ACCOUNT}/ai/v1/chat/completions");
    let (q, sent) = r.sent(&path);
    assert_eq!(
        q.header("authorization"),
        Some(format!("Bearer {WORKERS_AI_TOKEN}").as_str())
    );
    assert_eq!(sent["model"], "@cf/meta/llama-3.1-8b-instruct");

    let resp = r.chat(
        model,
        "streamed",
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let evs = events(&text(&resp));
    assert_eq!(evs.last(), Some(&json!("[DONE]")));
    assert!(evs
        .iter()
        .any(|e| e["usage"]["prompt_tokens"].as_u64() > Some(0)));

    let resp = r.post(
        "/v1/embeddings",
        json!({"model": "@cf/baai/bge-base-en-v1.5@Builtin", "input": ["a"]}),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    r.sent(&format!(
        "/client/v4/accounts/{WORKERS_AI_ACCOUNT}/ai/v1/embeddings"
    ));

    // Served, so listed.
    let list = r.t.user(&r.tok, "GET", "/v1/models", None).json_body();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&model), "{ids:?}");
}

#[test]
fn an_unconfigured_builtin_model_is_a_400_naming_the_missing_settings() {
    let mut r = setup();
    let model = "@cf/meta/llama-3.1-8b-instruct@Builtin";
    let resp = r.chat(model, "x", json!({}));
    assert_eq!(resp.status, 400);
    let e = openai_error(&resp, "unconfigured");
    assert_eq!(e["code"], "builtin_not_configured");
    let m = e["message"].as_str().unwrap();
    assert!(
        m.contains("WORKERS_AI_ACCOUNT_ID") && m.contains("WORKERS_AI_API_TOKEN"),
        "{m}"
    );
    let list = r.t.user(&r.tok, "GET", "/v1/models", None).json_body();
    assert!(
        !list.to_string().contains("@Builtin"),
        "not listed while it cannot be served"
    );
    // Half configured: the message names only what is missing.
    r.t.app.config.workers_ai.account_id = Some(WORKERS_AI_ACCOUNT.into());
    let m = openai_error(&r.chat(model, "x", json!({})), "half")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        m.contains("WORKERS_AI_API_TOKEN") && !m.contains("WORKERS_AI_ACCOUNT_ID"),
        "{m}"
    );
    // An id that would change the path is refused, not sent.
    r.t.app.config.workers_ai = WorkersAi {
        account_id: Some("../../evil".into()),
        api_token: Some(WORKERS_AI_TOKEN.into()),
        base_url: Some(r.s.base()),
    };
    let resp = r.chat(model, "x", json!({}));
    assert_eq!(resp.status, 400);
    assert!(text(&resp).contains("not an account id"), "{}", text(&resp));
    assert!(r.s.requests().iter().all(|q| !q.path.contains("evil")));
}

#[test]
fn each_provider_status_reaches_the_client_as_its_documented_status_in_openai_shape() {
    let r = setup();
    // (stand-in path prefix, client status, type, code)
    let table: &[(&str, u16, &str, &str)] = &[
        (
            "/status/400",
            400,
            "invalid_request_error",
            "upstream_bad_request",
        ),
        (
            "/status/404",
            404,
            "invalid_request_error",
            "upstream_not_found",
        ),
        (
            "/status/409",
            409,
            "invalid_request_error",
            "upstream_conflict",
        ),
        (
            "/status/413",
            413,
            "invalid_request_error",
            "upstream_request_too_large",
        ),
        (
            "/status/422",
            422,
            "invalid_request_error",
            "upstream_unprocessable",
        ),
        ("/status/401", 502, "upstream_error", "upstream_auth_failed"),
        ("/status/403", 502, "upstream_error", "upstream_auth_failed"),
        (
            "/ratelimited/9",
            429,
            "rate_limit_error",
            "upstream_rate_limited",
        ),
        ("/status/408", 504, "upstream_error", "upstream_timeout"),
        ("/status/402", 502, "upstream_error", "upstream_failed"),
        ("/status/500", 502, "upstream_error", "upstream_failed"),
        ("/status/503", 502, "upstream_error", "upstream_failed"),
        ("/garbage", 502, "upstream_error", "upstream_not_json"),
        ("/slow", 504, "upstream_error", "upstream_timeout"),
    ];
    for (i, (prefix, status, kind, code)) in table.iter().enumerate() {
        let name = format!("m{i}");
        r.connect(json!({
            "llm_factory": "OpenAI-API-Compatible", "llm_name": name,
            "base_url": format!("{}{prefix}/v1", r.s.base()), "api_key": GOOD_KEY, "verify": false
        }));
        let streams: &[bool] = if *prefix == "/slow" {
            &[false]
        } else {
            &[false, true]
        };
        for &stream in streams {
            let what = format!("{prefix} stream={stream}");
            let resp = r.chat(&name, "x", json!({ "stream": stream }));
            assert_eq!(resp.status, *status, "{what}: {}", text(&resp));
            let e = openai_error(&resp, &what);
            assert_eq!(e["type"], *kind, "{what}");
            // A 200 that is not an event stream is refused before anything is streamed.
            let code = match (*prefix, stream) {
                ("/garbage", true) => "upstream_not_event_stream",
                _ => code,
            };
            assert_eq!(e["code"], code, "{what}");
            if *status < 500 && *status != 429 {
                assert!(
                    e["message"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("the stand-in answers {status} here")),
                    "the provider's message is passed on: {what}: {e}"
                );
            }
            if *status == 429 {
                assert_eq!(resp.header("retry-after"), Some("9"), "{what}");
            } else {
                assert_eq!(resp.header("retry-after"), None, "{what}");
            }
            assert!(!text(&resp).contains(GOOD_KEY), "{what}");
        }
    }
}

#[test]
fn a_stream_the_provider_ends_without_done_ends_with_an_error_event() {
    let r = setup();
    r.connect(json!({
        "llm_factory": "OpenAI-API-Compatible", "llm_name": "cut",
        "base_url": format!("{}/cut/v1", r.s.base()), "api_key": GOOD_KEY, "verify": false
    }));
    let resp = r.chat("cut", "x", json!({"stream": true}));
    assert_eq!(resp.status, 200);
    let evs = events(&text(&resp));
    assert_eq!(
        evs[0]["choices"][0]["delta"]["content"], "half",
        "what came is passed on"
    );
    let last = evs.last().unwrap();
    assert_eq!(
        last["error"]["code"], "upstream_stream_incomplete",
        "{last}"
    );
    assert_eq!(last["error"]["type"], "upstream_error");
    assert!(!text(&resp).contains("[DONE]"));
}

#[test]
fn an_unknown_v1_path_is_a_404_in_openai_shape() {
    let r = setup();
    for (method, path) in [
        ("GET", "/v1/nothing"),
        ("POST", "/v1/chat/completion"),
        ("GET", "/v1"),
    ] {
        let resp = r.t.user(&r.tok, method, path, None);
        assert_eq!(resp.status, 404, "{path}");
        let e = openai_error(&resp, path);
        assert_eq!(e["code"], "unknown_url", "{path}");
        assert_eq!(e["type"], "invalid_request_error");
        assert!(e["message"].as_str().unwrap().contains(path), "{e}");
    }
    // Without any credential too: the path is judged first.
    let resp = r.t.send(Request::new("GET", "/v1/nothing"));
    assert_eq!(openai_error(&resp, "anonymous")["code"], "unknown_url");
    // Elsewhere the envelope stays.
    let resp = r.t.user(&r.tok, "GET", "/api/v1/nothing", None);
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json_body()["code"], 404);
}
