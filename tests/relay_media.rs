//! The relay's rerank and audio endpoints (`POST /v1/rerank`, `/v1/audio/transcriptions`,
//! `/v1/audio/speech`) for every factory whose API has them, over real SQLite, calling the real
//! HTTP stand-in on 127.0.0.1; and the 400 for a factory whose API does not.
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
    let mut t = T::new();
    let s = StandIn::start();
    t.app.config.workers_ai = WorkersAi {
        account_id: Some(WORKERS_AI_ACCOUNT.into()),
        api_token: Some(WORKERS_AI_TOKEN.into()),
        base_url: Some(format!("{}/client/v4", s.base())),
    };
    let (_, k) = t.user_with_key("owner");
    R {
        t,
        s,
        tok: token(&k),
    }
}

/// A multipart form of text fields and one `file` part.
fn form(fields: &[(&str, &str)], file: &[u8]) -> (String, Vec<u8>) {
    let b = "test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    body.extend(format!("--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n").as_bytes());
    body.extend_from_slice(file);
    body.extend(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

/// Audio bytes that are not UTF-8, so a lossy copy anywhere on the way would show.
fn audio() -> Vec<u8> {
    (0..=255u8).cycle().take(3000).collect()
}

impl R {
    fn post(&self, path: &str, body: Value) -> Response {
        self.t.user(&self.tok, "POST", path, Some(body))
    }
    fn connect(&self, body: Value) {
        let resp = self.post("/api/v1/models", body.clone());
        assert_eq!(resp.status, 200, "{body}: {}", text(&resp));
    }
    fn transcribe(&self, fields: &[(&str, &str)], file: &[u8]) -> Response {
        let (ct, body) = form(fields, file);
        let mut req = Request::new("POST", "/v1/audio/transcriptions")
            .header("authorization", &format!("Bearer {}", self.tok))
            .header("content-type", &ct);
        req.body = body;
        self.t.send(req)
    }
    /// The request the stand-in received last on a path ending so.
    fn sent(&self, suffix: &str) -> standin::Recorded {
        self.s
            .requests()
            .into_iter()
            .rev()
            .find(|q| q.path.split('?').next().unwrap().ends_with(suffix))
            .unwrap_or_else(|| panic!("nothing sent to …{suffix}: {:?}", self.s.requests()))
    }
    fn used_token(&self, factory: &str, name: &str) -> i64 {
        let models = self
            .t
            .user(&self.tok, "GET", "/api/v1/models", None)
            .json_body();
        let group = models["data"][factory]["llm"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        group
            .iter()
            .find(|m| m["name"] == name)
            .map_or(0, |m| m["used_token"].as_i64().unwrap())
    }
}

fn openai_error(r: &Response, status: u16, code: Option<&str>, says: &str) {
    assert_eq!(r.status, status, "{}", text(r));
    let e = &r.json_body()["error"];
    assert_eq!(e["code"].as_str(), code, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains(says),
        "{}: wanted {says}",
        e["message"]
    );
}

const DOCS: [&str; 3] = [
    "a guide to baking bread",
    "keys rotate on schedule",
    "rotate api keys often for safety",
];

#[test]
fn a_rerank_is_served_by_jina_cohere_and_workers_ai_in_one_shape() {
    let r = setup();
    r.connect(json!({"llm_factory": "Jina", "api_key": GOOD_KEY, "base_url": r.s.base()}));
    let cohere = format!("{}/cohere", r.s.base());
    r.connect(json!({"llm_factory": "Cohere", "api_key": GOOD_KEY, "base_url": cohere}));
    for (model, path) in [
        ("jina-reranker-v2-base-multilingual@Jina", "/rerank"),
        ("rerank-english-v3.0@Cohere", "/cohere/v2/rerank"),
        (
            "@cf/baai/bge-reranker-base@Builtin",
            "/ai/run/@cf/baai/bge-reranker-base",
        ),
    ] {
        let resp = r.post(
            "/v1/rerank",
            json!({"model": model, "query": "rotate keys", "documents": DOCS, "top_n": 2, "return_documents": true}),
        );
        assert_eq!(resp.status, 200, "{model}: {}", text(&resp));
        let a = resp.json_body();
        assert_eq!(a["model"], model);
        assert_eq!(a["object"], "list");
        let results = a["results"].as_array().unwrap();
        assert_eq!(results.len(), 2, "{model}: top_n {a}");
        let indices: Vec<u64> = results
            .iter()
            .map(|x| x["index"].as_u64().unwrap())
            .collect();
        assert_eq!(indices, [1, 2], "{model}: by falling relevance {a}");
        assert_eq!(results[0]["document"]["text"], DOCS[1]);
        assert!(a["usage"]["total_tokens"].as_u64() > Some(0), "{a}");
        let q = r.sent(path);
        let sent: Value = serde_json::from_str(&q.body).unwrap();
        assert_eq!(sent["query"], "rotate keys", "{model}");
        if path == "/rerank" || path.starts_with("/cohere") {
            assert!(!sent["model"].as_str().unwrap().contains('@'), "{sent}");
            assert_eq!(sent["documents"], json!(DOCS));
        } else {
            assert_eq!(sent["contexts"][2], json!({"text": DOCS[2]}));
            assert_eq!(
                q.header("authorization"),
                Some(format!("Bearer {WORKERS_AI_TOKEN}").as_str())
            );
        }
    }
    assert!(r.used_token("Jina", "jina-reranker-v2-base-multilingual") > 0);
    assert!(r.used_token("Cohere", "rerank-english-v3.0") > 0);
}

#[test]
fn each_new_endpoints_default_is_the_tenants_default_of_its_type() {
    let r = setup();
    let resp = r.post(
        "/api/v1/models/default",
        json!({"rerank_id": "@cf/baai/bge-reranker-base@Builtin", "asr_id": "@cf/openai/whisper@Builtin", "tts_id": "@cf/myshell-ai/melotts@Builtin"}),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let resp = r.post(
        "/v1/rerank",
        json!({"model": "default", "query": "bread", "documents": DOCS}),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(resp.json_body()["results"][0]["index"], 0);
    r.sent("/ai/run/@cf/baai/bge-reranker-base");

    let resp = r.transcribe(&[], &audio());
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(
        resp.json_body()["text"],
        "heard 3000 bytes starting 00010203"
    );
    let q = r.sent("/ai/run/@cf/openai/whisper");
    assert_eq!(q.header("content-type"), Some("application/octet-stream"));

    let resp = r.post("/v1/audio/speech", json!({"input": "say it"}));
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(resp.header("content-type"), Some("audio/mpeg"));
    assert!(
        resp.body.starts_with(b"ID3"),
        "decoded from Workers AI's base64"
    );
    assert!(String::from_utf8_lossy(&resp.body).contains("say it"));

    // With no default of the type set, the 400 names the field to set.
    let fresh = setup();
    let resp = fresh.post("/v1/audio/speech", json!({"input": "x"}));
    openai_error(&resp, 400, None, "tts_id");
    let resp = fresh.transcribe(&[("model", "default")], b"x");
    openai_error(&resp, 400, None, "asr_id");
}

#[test]
fn a_transcription_form_reaches_the_provider_whole_with_the_providers_model_name() {
    let r = setup();
    r.connect(json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": r.s.base()}));
    let resp = r.transcribe(
        &[("model", "whisper-1@OpenAI"), ("language", "en")],
        &audio(),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(
        resp.json_body()["text"],
        "heard 3000 bytes starting 00010203 (whisper-1)",
        "the file arrived byte for byte and the model under its provider's name"
    );
    let q = r.sent("/audio/transcriptions");
    assert!(
        q.body.contains("name=\"language\"\r\n\r\nen\r\n"),
        "{}",
        q.body
    );
    assert_eq!(
        q.header("authorization"),
        Some(format!("Bearer {GOOD_KEY}").as_str())
    );
    assert!(
        r.used_token("OpenAI", "whisper-1") > 0,
        "the transcript's tokens are counted"
    );

    let resp = r.transcribe(
        &[("model", "whisper-1@OpenAI"), ("response_format", "text")],
        b"RIFF",
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(text(&resp), "heard 4 bytes starting 52494646 (whisper-1)\n");
    let resp = r.transcribe(
        &[("model", "whisper-1@OpenAI"), ("response_format", "vtt")],
        b"RIFF",
    );
    assert_eq!(resp.header("content-type"), Some("text/vtt"));
    assert!(text(&resp).starts_with("WEBVTT"));

    // Builtin's whisper gives WebVTT but no SubRip.
    let resp = r.transcribe(
        &[
            ("model", "@cf/openai/whisper@Builtin"),
            ("response_format", "vtt"),
        ],
        b"RIFF",
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert!(text(&resp).starts_with("WEBVTT"), "{}", text(&resp));
    let resp = r.transcribe(
        &[
            ("model", "@cf/openai/whisper@Builtin"),
            ("response_format", "srt"),
        ],
        b"RIFF",
    );
    openai_error(&resp, 400, None, "not srt");
}

#[test]
fn azure_serves_audio_by_deployment() {
    let r = setup();
    for (dep, kind) in [("whisper-prod", "speech2text"), ("tts-prod", "tts")] {
        r.connect(
            json!({"llm_factory": "Azure-OpenAI", "endpoint": r.s.base(), "deployment": dep,
            "api_key": GOOD_KEY, "model_type": kind}),
        );
    }
    let resp = r.transcribe(&[("model", "whisper-prod@Azure-OpenAI")], b"RIFF");
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let q = r.sent("/openai/deployments/whisper-prod/audio/transcriptions");
    assert!(q.path.contains("api-version="), "{}", q.path);
    assert_eq!(q.header("api-key"), Some(GOOD_KEY));
    let resp = r.post(
        "/v1/audio/speech",
        json!({"model": "tts-prod@Azure-OpenAI", "input": "hello", "voice": "alloy"}),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert!(resp.body.starts_with(b"ID3"));
}

#[test]
fn speech_streams_the_providers_audio_back_and_counts_the_input() {
    let r = setup();
    r.connect(json!({"llm_factory": "OpenAI", "api_key": GOOD_KEY, "base_url": r.s.base()}));
    let resp = r.post(
        "/v1/audio/speech",
        json!({"model": "tts-1@OpenAI", "input": "hello there", "voice": "alloy", "speed": 1.25}),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    assert_eq!(resp.header("content-type"), Some("audio/mpeg"));
    assert!(
        resp.body.starts_with(b"ID3") && resp.body.len() >= 4096,
        "{}",
        resp.body.len()
    );
    assert!(
        r.t.last_chunks.borrow().len() > 1,
        "passed on as it arrived, not buffered whole"
    );
    let sent: Value = serde_json::from_str(&r.sent("/audio/speech").body).unwrap();
    assert_eq!(
        sent,
        json!({"model": "tts-1", "input": "hello there", "voice": "alloy", "speed": 1.25})
    );
    assert!(r.used_token("OpenAI", "tts-1") > 0);

    // The provider's own refusal keeps its status and message.
    let resp = r.post(
        "/v1/audio/speech",
        json!({"model": "tts-1@OpenAI", "input": "x"}),
    );
    openai_error(&resp, 400, Some("upstream_bad_request"), "voice");
}

#[test]
fn a_model_of_another_type_is_not_found_on_the_new_endpoints() {
    let r = setup();
    r.connect(json!({"llm_factory": "Gemini", "api_key": GOOD_KEY, "base_url": r.s.base()}));
    let before = r.s.requests().len();
    let resp = r.post(
        "/v1/rerank",
        json!({"model": "gemini-2.5-flash@Gemini", "query": "q", "documents": ["a"]}),
    );
    openai_error(&resp, 404, Some("model_not_found"), "rerank");
    let resp = r.post(
        "/v1/audio/speech",
        json!({"model": "gemini-2.5-flash@Gemini", "input": "x"}),
    );
    openai_error(&resp, 404, Some("model_not_found"), "tts");
    let resp = r.transcribe(&[("model", "gemini-2.5-flash@Gemini")], b"x");
    openai_error(&resp, 404, Some("model_not_found"), "speech2text");
    assert_eq!(r.s.requests().len(), before, "nothing was sent");
}

#[test]
fn bad_rerank_and_audio_requests_are_clear_4xx_errors() {
    let r = setup();
    let resp = r.post(
        "/v1/rerank",
        json!({"model": "@cf/baai/bge-reranker-base@Builtin", "query": "q"}),
    );
    openai_error(&resp, 400, None, "documents");
    let resp = r.post(
        "/v1/audio/speech",
        json!({"model": "@cf/myshell-ai/melotts@Builtin", "input": ""}),
    );
    openai_error(&resp, 400, None, "input");
    let resp = r.post("/v1/audio/transcriptions", json!({"model": "x"}));
    openai_error(&resp, 415, None, "multipart/form-data");
    let resp = r.transcribe(
        &[
            ("model", "@cf/openai/whisper@Builtin"),
            ("response_format", "mp3"),
        ],
        b"x",
    );
    openai_error(&resp, 400, None, "response_format");
    let mut req = Request::new("POST", "/v1/audio/transcriptions")
        .header("authorization", &format!("Bearer {}", r.tok))
        .header("content-type", "multipart/form-data; boundary=b");
    req.unread_len = Some(30 * 1024 * 1024);
    openai_error(&r.t.send(req), 413, Some("request_too_large"), "25");
    let (ct, mut body) = form(&[("model", "@cf/openai/whisper@Builtin")], b"x");
    body.truncate(body.len() - 8);
    let mut req = Request::new("POST", "/v1/audio/transcriptions")
        .header("authorization", &format!("Bearer {}", r.tok))
        .header("content-type", &ct);
    req.body = body;
    openai_error(&r.t.send(req), 400, None, "not closed");

    // A gateway key's input limit holds on rerank as on chat.
    let resp = r.post(
        "/api/v1/ai_keys",
        json!({"alias": "small-rerank", "provider": "Jina", "model": "jina-reranker-v2-base-multilingual", "api_key": GOOD_KEY, "input_limit": 3, "status": "enabled"}),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let resp = r.post(
        "/v1/rerank",
        json!({"model": "small-rerank", "query": "a long query here", "documents": DOCS}),
    );
    openai_error(&resp, 400, Some("input_limit_exceeded"), "input limit");
}

#[test]
fn a_builtin_image_to_text_model_is_called_through_chat_with_an_image_part() {
    let r = setup();
    let resp = r.post(
        "/v1/chat/completions",
        json!({"model": "@cf/llava-hf/llava-1.5-7b-hf@Builtin", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in it?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]}]}),
    );
    assert_eq!(resp.status, 200, "{}", text(&resp));
    let a = resp.json_body();
    assert_eq!(
        a["choices"][0]["message"]["content"],
        "an image of 8 bytes, asked: What is in it?"
    );
    assert_eq!(a["model"], "@cf/llava-hf/llava-1.5-7b-hf@Builtin");
    assert!(
        a["usage"]["prompt_tokens"].as_u64() > Some(85),
        "the image is counted"
    );
    r.sent("/ai/run/@cf/llava-hf/llava-1.5-7b-hf");

    let resp = r.post(
        "/v1/chat/completions",
        json!({"model": "@cf/llava-hf/llava-1.5-7b-hf@Builtin", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://127.0.0.1:1/cat.png"}},
        ]}]}),
    );
    openai_error(&resp, 400, None, "data:image");
}
