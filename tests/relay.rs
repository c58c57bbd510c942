//! The OpenAI-compatible relay over real SQLite, calling a real HTTP stand-in (real SSE) on 127.0.0.1.
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;

use common::*;
use keyward::api::http::{Request, Response};
use serde_json::{json, Value};
use standin::{StandIn, GOOD_KEY};

struct Relay {
    t: T,
    s: StandIn,
    tok: String,
}

fn setup() -> Relay {
    let t = T::new();
    let s = StandIn::start();
    let (_, k) = t.user_with_key("owner");
    let tok = token(&k);
    connect_standin_chat(&t, &tok, &s.base(), GOOD_KEY);
    let r = t.user(&tok, "POST", "/api/v1/models", Some(json!({
        "llm_factory": "OpenAI-API-Compatible", "llm_name": "standin-embed", "model_type": "embedding",
        "base_url": format!("{}/v1", s.base()), "api_key": GOOD_KEY
    })));
    assert_eq!(r.status, 200);
    Relay { t, s, tok }
}

impl Relay {
    fn post(&self, path: &str, body: Value) -> Response {
        self.t.user(&self.tok, "POST", path, Some(body))
    }
    fn chat(&self, model: &str, content: &str, extra: Value) -> Response {
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": content}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.post("/v1/chat/completions", body)
    }
    fn gateway_key(&self, alias: &str, extra: Value) {
        let mut body = json!({
            "alias": alias, "provider": "OpenAI-API-Compatible", "model": "standin-chat",
            "api_key": GOOD_KEY, "input_limit": 0, "status": "enabled"
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = self.post("/api/v1/ai_keys", body);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    fn ai_key(&self, alias: &str) -> Value {
        let list = self
            .t
            .user(
                &self.tok,
                "GET",
                &format!("/api/v1/ai_keys?search={alias}"),
                None,
            )
            .json_body();
        list["data"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["alias"] == alias)
            .unwrap()
            .clone()
    }
}

fn error_of(r: &Response) -> Value {
    r.json_body()["error"].clone()
}

#[test]
fn a_chat_completion_goes_through_to_a_configured_model() {
    let r = setup();
    let resp = r.chat(
        "standin-chat@OpenAI-API-Compatible",
        "hello relay",
        json!({}),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body = resp.json_body();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: hello relay"
    );
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let sent =
        r.s.requests()
            .into_iter()
            .find(|q| q.path == "/v1/chat/completions")
            .unwrap();
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {GOOD_KEY}").as_str())
    );
    let forwarded: Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(
        forwarded["model"], "standin-chat",
        "the provider gets its own model name"
    );
    assert!(resp.header("x-keyward-input-tokens-estimate").is_some());
    // The bare name works when unambiguous.
    assert_eq!(r.chat("standin-chat", "x", json!({})).status, 200);
}

#[test]
fn the_models_used_tokens_count_relay_calls() {
    let r = setup();
    let resp = r.chat(
        "standin-chat@OpenAI-API-Compatible",
        "count these words please",
        json!({"max_tokens": 4}),
    );
    let usage = resp.json_body()["usage"].clone();
    let listed = r.t.user(&r.tok, "GET", "/api/v1/models", None).json_body();
    let m = listed["data"]["OpenAI-API-Compatible"]["llm"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "standin-chat")
        .unwrap()
        .clone();
    assert_eq!(m["used_token"], usage["total_tokens"]);
}

#[test]
fn a_stream_arrives_chunk_by_chunk_with_usage_counted_after() {
    let r = setup();
    r.gateway_key("streamer", json!({}));
    let resp = r.chat(
        "streamer",
        "one two three four five six",
        json!({"stream": true}),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let text = String::from_utf8(resp.body.clone()).unwrap();
    assert!(text.contains("chat.completion.chunk"));
    assert!(text.trim_end().ends_with("data: [DONE]"));
    assert!(
        !text.contains("\"prompt_tokens\""),
        "usage chunk not asked for by the client is not shown"
    );
    let chunks = r.t.last_chunks.borrow().clone();
    assert!(chunks.len() >= 3, "{chunks:?}");
    let (first, last) = (chunks[0].0, chunks[chunks.len() - 1].0);
    assert!(
        last - first >= std::time::Duration::from_millis(40),
        "chunks were buffered: {chunks:?}"
    );
    // The relay asked upstream for the usage chunk; the counters have it.
    let sent =
        r.s.requests()
            .into_iter()
            .find(|q| q.path == "/v1/chat/completions")
            .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&sent.body).unwrap()["stream_options"]["include_usage"],
        true
    );
    let k = r.ai_key("streamer");
    assert!(k["used_input_tokens"].as_i64().unwrap() > 0);
    assert!(k["used_output_tokens"].as_i64().unwrap() > 0);
    assert!(k["last_used_at"].is_string());
}

#[test]
fn a_client_asking_for_usage_in_the_stream_gets_it() {
    let r = setup();
    let resp = r.chat(
        "standin-chat",
        "hi there",
        json!({"stream": true, "stream_options": {"include_usage": true}}),
    );
    let text = String::from_utf8(resp.body.clone()).unwrap();
    assert!(text.contains("\"prompt_tokens\""));
}

#[test]
fn embeddings_go_through() {
    let r = setup();
    let resp = r.post(
        "/v1/embeddings",
        json!({"model": "standin-embed", "input": ["a b", "c"]}),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json_body()["data"].as_array().unwrap().len(), 2);
    // A chat model is not an embedding model.
    let resp = r.post(
        "/v1/embeddings",
        json!({"model": "standin-chat", "input": "a"}),
    );
    assert_eq!(resp.status, 404);
    assert_eq!(error_of(&resp)["code"], "model_not_found");
}

#[test]
fn an_empty_or_default_model_uses_the_tenant_default() {
    let r = setup();
    let resp = r.chat("", "x", json!({}));
    assert_eq!(resp.status, 400);
    assert!(error_of(&resp)["message"]
        .as_str()
        .unwrap()
        .contains("No default chat model"));
    r.post(
        "/api/v1/models/default",
        json!({"llm_id": "standin-chat@OpenAI-API-Compatible", "embd_id": "standin-embed"}),
    );
    for model in ["", "default"] {
        let resp = r.chat(model, "via default", json!({}));
        assert_eq!(resp.status, 200, "{model:?}");
        assert_eq!(
            resp.json_body()["choices"][0]["message"]["content"],
            "echo: via default"
        );
    }
    let resp = r.post(
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "no model field"}]}),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(r.post("/v1/embeddings", json!({"input": "x"})).status, 200);
}

#[test]
fn a_gateway_key_is_selected_by_alias_and_its_counters_grow() {
    let r = setup();
    r.gateway_key("team-chat", json!({}));
    let resp = r.chat("team-chat", "hello alias", json!({}));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let usage = resp.json_body()["usage"].clone();
    r.chat("team-chat", "again", json!({}));
    let k = r.ai_key("team-chat");
    assert!(k["used_input_tokens"].as_i64().unwrap() > usage["prompt_tokens"].as_i64().unwrap());
    assert!(
        k["used_output_tokens"].as_i64().unwrap()
            >= 2 * usage["completion_tokens"].as_i64().unwrap()
    );
    let models = r.t.user(&r.tok, "GET", "/v1/models", None).json_body();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"team-chat") && ids.contains(&"standin-chat@OpenAI-API-Compatible"));
}

#[test]
fn over_the_input_limit_is_refused_naming_both_numbers_or_marked_under_use_anyway() {
    let r = setup();
    r.gateway_key("tight", json!({"input_limit": 10}));
    r.gateway_key(
        "loose",
        json!({"input_limit": 10, "usage_limit_policy": "use_anyway"}),
    );
    let long = "word ".repeat(50);
    let resp = r.chat("tight", &long, json!({}));
    assert_eq!(resp.status, 400);
    let e = error_of(&resp);
    assert_eq!(e["code"], "input_limit_exceeded");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("input limit of 10 tokens"), "{msg}");
    let estimate: u64 = msg
        .split("about ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(estimate > 10);
    assert!(
        r.s.requests()
            .iter()
            .all(|q| q.path != "/v1/chat/completions"),
        "nothing forwarded"
    );
    let resp = r.chat("loose", &long, json!({}));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-keyward-limit-exceeded"), Some("input"));
    assert_eq!(r.chat("tight", "short", json!({})).status, 200);
}

#[test]
fn the_output_limit_caps_max_tokens() {
    let r = setup();
    r.gateway_key("cap-reject", json!({"output_limit": 3}));
    r.gateway_key(
        "cap-anyway",
        json!({"output_limit": 3, "usage_limit_policy": "use_anyway"}),
    );
    let resp = r.chat("cap-reject", "x", json!({"max_tokens": 10}));
    assert_eq!(resp.status, 400);
    assert_eq!(error_of(&resp)["code"], "output_limit_exceeded");
    assert!(error_of(&resp)["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens 10"));
    let resp = r.chat("cap-reject", "x", json!({"max_completion_tokens": 2}));
    assert_eq!(resp.status, 200);
    let resp = r.chat("cap-anyway", "x", json!({"max_tokens": 10}));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-keyward-limit-exceeded"), Some("output"));
    assert_eq!(resp.json_body()["usage"]["completion_tokens"], 3);
    let resp = r.chat("cap-reject", "x", json!({}));
    assert_eq!(
        resp.json_body()["usage"]["completion_tokens"],
        3,
        "no max_tokens: the limit is applied"
    );
    let sent: Vec<Value> =
        r.s.requests()
            .into_iter()
            .filter(|q| q.path == "/v1/chat/completions")
            .map(|q| serde_json::from_str(&q.body).unwrap())
            .collect();
    assert!(sent.iter().all(|b| b
        .get("max_tokens")
        .or(b.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap()
        <= 3));
}

#[test]
fn disabled_and_expired_gateway_keys_are_refused() {
    let r = setup();
    r.gateway_key("off", json!({"status": "disabled"}));
    let resp = r.chat("off", "x", json!({}));
    assert_eq!(resp.status, 403);
    assert_eq!(error_of(&resp)["code"], "key_disabled");
    r.gateway_key("soon", json!({"expire_time": "2026-11-24T00:10:00Z"}));
    assert_eq!(r.chat("soon", "x", json!({})).status, 200);
    r.t.advance_minutes(10);
    let resp = r.chat("soon", "x", json!({}));
    assert_eq!(resp.status, 403);
    assert_eq!(error_of(&resp)["code"], "key_expired");
    // The cron then marks it disabled, keeping it and its counters; a second run changes nothing.
    let report = block_on(r.t.app.purge()).unwrap();
    assert_eq!(report.disabled_gateway_keys, 1);
    assert_eq!(r.ai_key("soon")["status"], "disabled");
    assert_eq!(block_on(r.t.app.purge()).unwrap().disabled_gateway_keys, 0);
}

#[test]
fn another_tenants_alias_is_not_found() {
    let r = setup();
    r.gateway_key("private", json!({}));
    let (_, kb) = r.t.user_with_key("other-tenant");
    let resp = r.t.user(
        &token(&kb),
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "private", "messages": [{"role": "user", "content": "x"}]})),
    );
    assert_eq!(resp.status, 404);
    assert_eq!(error_of(&resp)["code"], "model_not_found");
    let resp = r.t.user(
        &token(&kb),
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "standin-chat@OpenAI-API-Compatible", "messages": []})),
    );
    assert_eq!(resp.status, 404);
}

#[test]
fn anthropic_is_translated_both_ways_whole_and_streamed() {
    let r = setup();
    let resp = r.post(
        "/api/v1/models",
        json!({"llm_factory": "Anthropic", "api_key": GOOD_KEY, "base_url": r.s.base()}),
    );
    assert_eq!(resp.status, 200);
    let resp = r.post("/v1/chat/completions", json!({
        "model": "claude-sonnet-4-5@Anthropic",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "bonjour"}],
        "max_tokens": 20
    }));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body = resp.json_body();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: bonjour");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let sent =
        r.s.requests()
            .into_iter()
            .find(|q| q.path == "/v1/messages")
            .unwrap();
    assert_eq!(sent.header("x-api-key"), Some(GOOD_KEY));
    let sent: Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["max_tokens"], 20);

    let resp = r.post(
        "/v1/chat/completions",
        json!({
            "model": "claude-sonnet-4-5@Anthropic", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "stream me please"}]
        }),
    );
    assert_eq!(resp.status, 200);
    let text = String::from_utf8(resp.body.clone()).unwrap();
    assert!(text.contains("chat.completion.chunk"), "{text}");
    assert!(text.contains("\"content\":\"echo"), "{text}");
    assert!(text.contains("\"total_tokens\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"));
}

/// The weather tool of the tool tests, in OpenAI's shape.
fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

#[test]
fn an_anthropic_tool_call_round_trips_through_the_relay_whole_and_streamed() {
    let r = setup();
    let resp = r.post(
        "/api/v1/models",
        json!({"llm_factory": "Anthropic", "api_key": GOOD_KEY, "base_url": r.s.base()}),
    );
    assert_eq!(resp.status, 200);
    let claude = "claude-sonnet-4-5@Anthropic";
    let ask = json!({"role": "user", "content": "Paris"});
    let resp = r.post(
        "/v1/chat/completions",
        json!({"model": claude, "messages": [ask], "tools": weather_tool(), "tool_choice": "required"}),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body = resp.json_body();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    let sent: Value = serde_json::from_str(
        &r.s.requests()
            .into_iter()
            .rfind(|q| q.path == "/v1/messages")
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(sent["tool_choice"], json!({"type": "any"}));
    assert_eq!(
        sent["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );

    // The result goes back as a tool message; the stand-in refuses a result whose id it did not
    // hand out, so this passing shows the id and the turns survived the round trip.
    let history = json!([ask, choice["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "18 C, sunny"}]);
    let resp = r.post(
        "/v1/chat/completions",
        json!({"model": claude, "messages": history, "tools": weather_tool()}),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body = resp.json_body();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: tool result: 18 C, sunny"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    // Streamed: the call arrives as tool_calls deltas whose fragments join to the arguments.
    let resp = r.post(
        "/v1/chat/completions",
        json!({"model": claude, "messages": [ask], "tools": weather_tool(), "stream": true}),
    );
    assert_eq!(resp.status, 200);
    let text = String::from_utf8(resp.body.clone()).unwrap();
    let mut id = None;
    let mut arguments = String::new();
    let mut finish = None;
    for data in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        if let Some(d) = chunk.pointer("/choices/0/delta/tool_calls/0") {
            assert_eq!(d["index"], 0, "{d}");
            if let Some(i) = d.get("id") {
                id = Some(i.clone());
                assert_eq!(d["function"]["name"], "get_weather");
            }
            arguments.push_str(d["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = chunk
            .pointer("/choices/0/finish_reason")
            .filter(|f| !f.is_null())
        {
            finish = Some(f.clone());
        }
    }
    assert_eq!(id, Some(json!("toolu_standin_01")), "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(finish, Some(json!("tool_calls")));
    assert!(text.trim_end().ends_with("data: [DONE]"));
}

#[test]
fn a_request_anthropic_cannot_serve_is_a_400_saying_why_and_never_reaches_it() {
    let r = setup();
    r.post(
        "/api/v1/models",
        json!({"llm_factory": "Anthropic", "api_key": GOOD_KEY, "base_url": r.s.base()}),
    );
    r.s.clear_requests();
    for (extra, says) in [
        (
            json!({"n": 2}),
            "n: Anthropic models return one choice per request",
        ),
        (
            json!({"logprobs": true}),
            "logprobs: Anthropic models do not return log probabilities",
        ),
        (
            json!({"tools": [{"type": "custom", "custom": {"name": "grep"}}]}),
            "tools[0].type: only function tools",
        ),
    ] {
        let resp = r.chat("claude-sonnet-4-5@Anthropic", "x", extra.clone());
        assert_eq!(resp.status, 400, "{extra}");
        let e = error_of(&resp);
        assert_eq!(e["type"], "invalid_request_error");
        assert!(e["message"].as_str().unwrap().contains(says), "{e}");
    }
    assert!(
        r.s.requests().iter().all(|q| q.path != "/v1/messages"),
        "nothing was sent to the provider"
    );
}

#[test]
fn upstream_failures_become_openai_errors_without_the_credential() {
    let r = setup();
    r.post("/api/v1/models", json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "badkey", "base_url": format!("{}/v1", r.s.base()), "api_key": "sk-bad-credential-123", "verify": false}));
    let resp = r.chat("badkey", "x", json!({}));
    assert_eq!(resp.status, 502);
    assert_eq!(error_of(&resp)["code"], "upstream_auth_failed");
    assert!(!String::from_utf8_lossy(&resp.body).contains("sk-bad-credential-123"));
    r.post("/api/v1/models", json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "slow", "base_url": format!("{}/slow/v1", r.s.base()), "verify": false}));
    let resp = r.chat("slow", "x", json!({}));
    assert_eq!(resp.status, 504);
    r.post("/api/v1/models", json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "down", "base_url": "http://127.0.0.1:1/v1", "verify": false}));
    assert_eq!(r.chat("down", "x", json!({})).status, 502);
    r.post("/api/v1/models", json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "junk", "base_url": format!("{}/garbage/v1", r.s.base()), "verify": false}));
    assert_eq!(r.chat("junk", "x", json!({})).status, 502);
}

#[test]
fn bad_relay_requests_get_openai_shaped_errors() {
    let r = setup();
    let resp = r
        .t
        .send(Request::new("POST", "/v1/chat/completions").json(&json!({"model": "standin-chat"})));
    assert_eq!(resp.status, 401);
    assert_eq!(error_of(&resp)["code"], "invalid_api_key");
    let mut big = Request::new("POST", "/v1/chat/completions")
        .header("authorization", &format!("Bearer {}", r.tok))
        .header("content-type", "application/json");
    big.body = vec![b' '; 1024 * 1024 + 1];
    assert_eq!(r.t.send(big).status, 413);
    let mut text = Request::new("POST", "/v1/chat/completions")
        .header("authorization", &format!("Bearer {}", r.tok))
        .header("content-type", "text/plain");
    text.body = b"{}".to_vec();
    assert_eq!(r.t.send(text).status, 415);
    let mut broken = Request::new("POST", "/v1/chat/completions")
        .header("authorization", &format!("Bearer {}", r.tok))
        .header("content-type", "application/json");
    broken.body = b"{\"model\":".to_vec();
    let resp = r.t.send(broken);
    assert_eq!(resp.status, 400);
    assert_eq!(error_of(&resp)["type"], "invalid_request_error");
    assert_eq!(r.chat("no-such-model", "x", json!({})).status, 404);
    assert_eq!(
        r.post("/v1/chat/completions", json!({"model": 7})).status,
        400
    );
    for bad in [json!(-3), json!(0), json!(1.5), json!("10")] {
        let resp = r.chat("standin-chat", "x", json!({ "max_tokens": bad }));
        assert_eq!(resp.status, 400, "max_tokens {bad}");
        assert!(error_of(&resp)["message"]
            .as_str()
            .unwrap()
            .starts_with("max_tokens"));
    }
    let resp = r.chat("@cf/meta/llama-3.1-8b-instruct@Builtin", "x", json!({}));
    assert_eq!(resp.status, 400);
    assert_eq!(
        r.t.user(&r.tok, "GET", "/v1/chat/completions", None).status,
        405
    );
}

#[test]
fn an_ollama_model_is_reached_through_its_openai_api() {
    let r = setup();
    r.post("/api/v1/models", json!({"llm_factory": "Ollama", "llm_name": "llama3.2", "base_url": format!("{}/open", r.s.base())}));
    let resp = r.chat("llama3.2@Ollama", "hi", json!({}));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert!(r
        .s
        .requests()
        .iter()
        .any(|q| q.path == "/open/v1/chat/completions"));
}

#[test]
fn no_credential_or_user_secret_leaks_through_the_relay() {
    let r = setup();
    r.gateway_key("leakcheck", json!({}));
    let before = r.t.bodies.borrow().len();
    r.chat("leakcheck", "x", json!({}));
    r.chat("leakcheck", "x", json!({"stream": true}));
    r.post(
        "/v1/embeddings",
        json!({"model": "standin-embed", "input": "x"}),
    );
    r.t.user(&r.tok, "GET", "/v1/models", None);
    let bodies = r.t.bodies.borrow()[before..].join("\n");
    let logs = log_lines().lock().unwrap().join("\n");
    let secret = r.tok.split(':').nth(1).unwrap();
    for s in [GOOD_KEY, secret] {
        assert!(!bodies.contains(s));
        assert!(!logs.contains(s));
    }
}

#[test]
fn a_providers_retry_after_on_429_reaches_the_client_whole_and_streamed() {
    let r = setup();
    let base = format!("{}/ratelimited/17/v1", r.s.base());
    let resp = r.post("/api/v1/models", json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "limited", "base_url": base, "api_key": GOOD_KEY, "verify": false}));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    for extra in [json!({}), json!({"stream": true})] {
        let resp = r.chat("limited", "x", extra.clone());
        assert_eq!(resp.status, 429, "{extra}");
        assert_eq!(error_of(&resp)["code"], "upstream_rate_limited", "{extra}");
        assert_eq!(resp.header("retry-after"), Some("17"), "{extra}");
    }
    // An HTTP date becomes seconds from now; a wait beyond a day is capped at a day.
    let base = format!(
        "{}/ratelimited/Fri%2C%2001%20Jan%202100%2000%3A00%3A00%20GMT/v1",
        r.s.base()
    );
    r.post("/api/v1/models", json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "far", "base_url": base, "api_key": GOOD_KEY, "verify": false}));
    assert_eq!(
        r.chat("far", "x", json!({})).header("retry-after"),
        Some("86400")
    );
    // Unreadable: nothing is passed on rather than a guess.
    let base = format!("{}/ratelimited/soon/v1", r.s.base());
    r.post("/api/v1/models", json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "vague", "base_url": base, "api_key": GOOD_KEY, "verify": false}));
    let resp = r.chat("vague", "x", json!({}));
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), None);
}

#[test]
fn the_model_list_lists_gateway_keys_without_counting_them() {
    let r = setup();
    r.gateway_key("listed", json!({}));
    r.t.db().queried.borrow_mut().clear();
    let models = r.t.user(&r.tok, "GET", "/v1/models", None).json_body();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "listed"),
        "{models}"
    );
    let queried = r.t.db().queried.borrow().clone();
    assert!(
        queried.iter().any(|q| q.contains("FROM ai_keys")),
        "{queried:?}"
    );
    assert!(
        !queried.iter().any(|q| q.contains("COUNT(")),
        "a count nobody shows: {queried:?}"
    );
}
