//! The relay's endpoints beyond chat and embeddings, free of I/O: `POST /v1/rerank` (the shape
//! Jina and Cohere share), `POST /v1/audio/transcriptions` (OpenAI's multipart form) and
//! `POST /v1/audio/speech` (audio bytes back), and which factory serves which.
//!
//! | endpoint | OpenAI-style (OpenAI, Jina, compatible, LocalAI, Xinference) | Azure-OpenAI | Cohere | Builtin (Workers AI) |
//! |---|---|---|---|---|
//! | rerank | `{base}/rerank` (Jina's API) | - | `{base}/v2/rerank` | `/ai/run/{model}` |
//! | transcriptions | `{base}/audio/transcriptions` | by deployment | - | `/ai/run/{model}` (raw audio) |
//! | speech | `{base}/audio/speech` (streamed back) | by deployment | - | `/ai/run/{model}` (base64 MP3) |
//!
//! Gemini, Vertex AI, Anthropic and Ollama have none of the three; a call to one is a 400 saying so.
//!
//! Image-to-text models are called through chat completions with image content parts; every
//! factory takes OpenAI's parts as they are (Anthropic's are translated with the rest of its
//! messages) except the Builtin ones, whose Workers AI models take `{prompt, image}` on their own
//! endpoint: see [`ImageChat`].

use super::multipart::Form;
use super::{tokens, Endpoint, Upstream, Usage, MAX_UPSTREAM_RESPONSE};
use crate::catalog::ApiStyle;
use crate::providers::probe::auth_headers;
use crate::providers::scrub::StreamScrubber;
use crate::store::outbound::{ChunkStream, OutboundRequest};
use crate::store::Stmt;
use base64::Engine as _;
use futures_channel::oneshot;
use futures_util::Stream;
use serde_json::{json, Map, Value};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Largest audio upload `POST /v1/audio/transcriptions` takes, the whole form (OpenAI's own limit
/// is 25 MB per file).
pub const MAX_AUDIO_UPLOAD: usize = 25 * 1024 * 1024;
/// Most documents one rerank call may rank (Cohere's limit).
pub const MAX_RERANK_DOCUMENTS: usize = 1000;
/// Longest text `POST /v1/audio/speech` speaks, in characters (OpenAI's limit).
pub const MAX_SPEECH_INPUT: usize = 4096;
/// Most audio bytes one speech answer may stream back.
pub const MAX_SPEECH_BYTES: usize = 64 * 1024 * 1024;

/// The transcription formats OpenAI offers.
const TRANSCRIPTION_FORMATS: [&str; 5] = ["json", "text", "srt", "verbose_json", "vtt"];

/// Why a factory of this style cannot serve the endpoint, or `None` when it can.
pub fn refusal(style: ApiStyle, endpoint: Endpoint) -> Option<&'static str> {
    use ApiStyle::*;
    let served = match endpoint {
        Endpoint::Chat => true,
        Endpoint::Embeddings => !matches!(style, Anthropic | Vertex),
        Endpoint::Rerank => matches!(style, Openai | Cohere | WorkersAi),
        Endpoint::Transcription | Endpoint::Speech => matches!(style, Openai | Azure | WorkersAi),
    };
    if served {
        return None;
    }
    Some(match (endpoint, style) {
        (Endpoint::Rerank, _) => {
            "has no rerank API; rerank is served for Jina, Cohere, OpenAI-API-Compatible, LocalAI, Xinference and Builtin models"
        }
        (Endpoint::Transcription | Endpoint::Speech, _) => {
            "has no audio API; audio is served for OpenAI, Azure-OpenAI, OpenAI-API-Compatible, LocalAI, Xinference and Builtin models"
        }
        _ => "does not serve embeddings",
    })
}

/// Workers AI's native endpoint for one model, beside its OpenAI-compatible root
/// (`.../ai/v1` becomes `.../ai/run/{model}`).
fn workers_ai_run(base: &str, model: &str) -> String {
    format!("{}/run/{model}", base.trim_end_matches("/v1"))
}

fn azure_url(up: &Upstream, path: &str) -> String {
    let version = up
        .settings
        .get("api_version")
        .and_then(Value::as_str)
        .unwrap_or(crate::providers::AZURE_DEFAULT_API_VERSION);
    format!(
        "{}/openai/deployments/{}/{path}?api-version={version}",
        up.base, up.model
    )
}

fn post(
    up: &Upstream,
    url: String,
    content_type: &str,
    body: Vec<u8>,
    timeout_ms: u64,
) -> OutboundRequest {
    let mut headers = auth_headers(up.auth, &up.secrets);
    headers.push(("content-type".into(), content_type.into()));
    OutboundRequest {
        method: "POST",
        url,
        headers,
        body: Some(body),
        timeout_ms,
        max_response_bytes: MAX_UPSTREAM_RESPONSE,
        idle_timeout_ms: None,
    }
}

fn post_json(up: &Upstream, url: String, body: &Value, timeout_ms: u64) -> OutboundRequest {
    post(
        up,
        url,
        "application/json",
        body.to_string().into_bytes(),
        timeout_ms,
    )
}

/// A checked rerank request: its query, the documents' texts, `top_n` and `return_documents`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rerank {
    pub query: String,
    pub documents: Vec<String>,
    pub top_n: Option<u64>,
    pub return_documents: bool,
}

impl Rerank {
    /// From the client's body; `Err` is a message for a 400. Documents are strings or Jina's
    /// `{"text": ...}` objects.
    pub fn parse(body: &Value) -> Result<Rerank, String> {
        let query = match body.get("query") {
            Some(Value::String(q)) if !q.trim().is_empty() => q.clone(),
            _ => return Err("query: must be a non-empty string".into()),
        };
        let docs = body
            .get("documents")
            .and_then(Value::as_array)
            .filter(|d| !d.is_empty())
            .ok_or("documents: must be a non-empty array of strings")?;
        if docs.len() > MAX_RERANK_DOCUMENTS {
            return Err(format!(
                "documents: at most {MAX_RERANK_DOCUMENTS} documents per call, got {}",
                docs.len()
            ));
        }
        let documents = docs
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Value::String(s) => Ok(s.clone()),
                Value::Object(o) => o
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or(format!(
                        "documents[{i}]: an object must have a string `text`"
                    )),
                _ => Err(format!("documents[{i}]: must be a string")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let top_n = match body.get("top_n") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| *n >= 1)
                    .ok_or("top_n: must be a positive integer")?,
            ),
        };
        let return_documents = match body.get("return_documents") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("return_documents: must be a boolean".into()),
        };
        Ok(Rerank {
            query,
            documents,
            top_n,
            return_documents,
        })
    }

    /// The input-token estimate: the query once per document, as a cross-encoder reads them.
    pub fn estimate(&self) -> u64 {
        let q = tokens::text(&self.query);
        self.documents.iter().map(|d| q + tokens::text(d)).sum()
    }

    /// The upstream request.
    pub fn request(&self, up: &Upstream, timeout_ms: u64) -> Result<OutboundRequest, String> {
        let mut body = json!({"model": up.model, "query": self.query, "documents": self.documents});
        if let Some(n) = self.top_n {
            body["top_n"] = json!(n);
        }
        let url = match up.style {
            ApiStyle::Openai => format!("{}/rerank", up.base),
            ApiStyle::Cohere => format!("{}/v2/rerank", up.base),
            ApiStyle::WorkersAi => {
                let contexts: Vec<Value> =
                    self.documents.iter().map(|d| json!({"text": d})).collect();
                body = json!({"query": self.query, "contexts": contexts});
                if let Some(n) = self.top_n {
                    body["top_k"] = json!(n);
                }
                workers_ai_run(&up.base, &up.model)
            }
            other => return Err(unserved(other, Endpoint::Rerank)),
        };
        Ok(post_json(up, url, &body, timeout_ms))
    }

    /// The client's answer from the provider's: results by falling relevance (at most `top_n`),
    /// each `{index, relevance_score}` plus `document: {text}` when asked, with the usage. `Err`
    /// says what the provider's answer lacks, for a 502.
    pub fn answer(
        &self,
        style: ApiStyle,
        v: &Value,
        model: &str,
    ) -> Result<(Value, Usage), String> {
        let (list, index_key, score_key) = match style {
            ApiStyle::WorkersAi => (v.pointer("/result/response"), "id", "score"),
            _ => (v.get("results"), "index", "relevance_score"),
        };
        let list = list
            .and_then(Value::as_array)
            .ok_or("the answer has no list of results")?;
        let mut results = Vec::with_capacity(list.len());
        for r in list {
            let index = r.get(index_key).and_then(Value::as_u64).map(|i| i as usize);
            let score = r.get(score_key).and_then(Value::as_f64);
            let (Some(index), Some(score)) = (index, score) else {
                return Err("a result has no index or score".into());
            };
            let Some(text) = self.documents.get(index) else {
                return Err(format!(
                    "a result names document {index}, which was not sent"
                ));
            };
            let mut out = json!({"index": index, "relevance_score": score});
            if self.return_documents {
                out["document"] = json!({"text": text});
            }
            results.push(out);
        }
        results.sort_by(|a, b| {
            let s = |x: &Value| x["relevance_score"].as_f64().unwrap_or(0.0);
            s(b).total_cmp(&s(a))
        });
        if let Some(n) = self.top_n {
            results.truncate(n as usize);
        }
        let reported = v
            .pointer("/usage/total_tokens")
            .or_else(|| v.pointer("/usage/prompt_tokens"))
            .and_then(Value::as_u64);
        let usage = Usage {
            input: Some(reported.unwrap_or_else(|| self.estimate())),
            output: Some(0),
        };
        let answer = json!({
            "object": "list", "model": model, "results": results,
            "usage": {"prompt_tokens": usage.input, "total_tokens": usage.input},
        });
        Ok((answer, usage))
    }
}

fn unserved(style: ApiStyle, endpoint: Endpoint) -> String {
    format!(
        "This provider {}",
        refusal(style, endpoint).unwrap_or("cannot serve this endpoint")
    )
}

/// A checked transcription form: the form as it goes upstream (model not yet set) and the
/// response format asked for.
#[derive(Debug, Clone)]
pub struct Transcription {
    pub form: Form,
    pub model: String,
    pub response_format: String,
}

impl Transcription {
    /// From the client's form; `Err` is a message for a 400.
    pub fn parse(form: Form) -> Result<Transcription, String> {
        let file = form
            .part("file")
            .ok_or("file: the form has no `file` part")?;
        if file.data.is_empty() {
            return Err("file: the audio file is empty".into());
        }
        let model = match form.part("model") {
            None => String::new(),
            Some(_) => form
                .text("model")
                .map(str::to_owned)
                .ok_or("model: must be text")?,
        };
        if form.text("stream").is_some_and(|s| s.trim() == "true") {
            return Err(
                "stream: streamed transcriptions are not relayed; leave stream unset".into(),
            );
        }
        let response_format = form
            .text("response_format")
            .unwrap_or("json")
            .trim()
            .to_owned();
        if !TRANSCRIPTION_FORMATS.contains(&response_format.as_str()) {
            return Err(format!(
                "response_format: must be one of {}",
                TRANSCRIPTION_FORMATS.join(", ")
            ));
        }
        Ok(Transcription {
            form,
            model,
            response_format,
        })
    }

    /// The upstream request.
    pub fn request(&self, up: &Upstream, timeout_ms: u64) -> Result<OutboundRequest, String> {
        match up.style {
            ApiStyle::Openai | ApiStyle::Azure => {
                let mut form = self.form.clone();
                form.set_text("model", &up.model);
                let (boundary, body) = form.encode();
                let url = match up.style {
                    ApiStyle::Azure => azure_url(up, "audio/transcriptions"),
                    _ => format!("{}/audio/transcriptions", up.base),
                };
                let ct = format!("multipart/form-data; boundary={boundary}");
                Ok(post(up, url, &ct, body, timeout_ms))
            }
            // Workers AI's whisper takes the audio itself as the body and answers JSON with the
            // text (and WebVTT); it has no SubRip.
            ApiStyle::WorkersAi => {
                if self.response_format == "srt" {
                    return Err("response_format: Builtin speech-to-text models give json, text, verbose_json or vtt, not srt".into());
                }
                let audio = self
                    .form
                    .part("file")
                    .map(|p| p.data.clone())
                    .unwrap_or_default();
                let url = workers_ai_run(&up.base, &up.model);
                Ok(post(up, url, "application/octet-stream", audio, timeout_ms))
            }
            other => Err(unserved(other, Endpoint::Transcription)),
        }
    }

    /// The client's answer (body and content type) from the provider's, with the usage: as the
    /// provider reports it (OpenAI's newer models report tokens), else the text's tokens as output.
    pub fn answer(
        &self,
        style: ApiStyle,
        body: &[u8],
        content_type: &str,
    ) -> Result<(Vec<u8>, String, Usage), String> {
        let json_answer = content_type.contains("json");
        let parsed: Option<Value> = json_answer
            .then(|| serde_json::from_slice(body).ok())
            .flatten();
        if style == ApiStyle::WorkersAi {
            let result = parsed
                .as_ref()
                .and_then(|v| v.get("result"))
                .filter(|r| r.get("text").is_some_and(Value::is_string))
                .ok_or("the answer has no transcribed text")?;
            let text = result["text"].as_str().unwrap_or_default();
            let usage = Usage {
                input: Some(0),
                output: Some(tokens::text(text)),
            };
            let (out, ct) = match self.response_format.as_str() {
                "text" => (text.as_bytes().to_vec(), "text/plain; charset=utf-8"),
                "vtt" => (
                    result
                        .get("vtt")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .as_bytes()
                        .to_vec(),
                    "text/vtt; charset=utf-8",
                ),
                "verbose_json" => {
                    let mut v = json!({"task": "transcribe", "text": text});
                    if let Some(words) = result.get("words") {
                        v["words"] = words.clone();
                    }
                    (v.to_string().into_bytes(), "application/json")
                }
                _ => (
                    json!({"text": text}).to_string().into_bytes(),
                    "application/json",
                ),
            };
            return Ok((out, ct.into(), usage));
        }
        if json_answer && parsed.is_none() {
            return Err("the answer is not the JSON it says it is".into());
        }
        let text = match &parsed {
            Some(v) => v
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            None => String::from_utf8_lossy(body).into_owned(),
        };
        let reported = parsed
            .as_ref()
            .and_then(|v| v.get("usage"))
            .filter(|u| u.get("input_tokens").is_some());
        let usage = match reported {
            Some(u) => Usage {
                input: u.get("input_tokens").and_then(Value::as_u64),
                output: u.get("output_tokens").and_then(Value::as_u64),
            },
            None => Usage {
                input: Some(0),
                output: Some(tokens::text(&text)),
            },
        };
        let ct = if content_type.is_empty() {
            "application/json"
        } else {
            content_type
        };
        Ok((body.to_vec(), ct.to_owned(), usage))
    }
}

/// A checked speech request.
#[derive(Debug, Clone)]
pub struct Speech {
    pub body: Map<String, Value>,
    pub input: String,
}

impl Speech {
    /// From the client's body; `Err` is a message for a 400.
    pub fn parse(body: &Value) -> Result<Speech, String> {
        let input = match body.get("input") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => return Err("input: must be a non-empty string".into()),
        };
        let n = input.chars().count();
        if n > MAX_SPEECH_INPUT {
            return Err(format!(
                "input: at most {MAX_SPEECH_INPUT} characters, got {n}"
            ));
        }
        if body.get("stream_format").and_then(Value::as_str) == Some("sse") {
            return Err(
                "stream_format: sse is not relayed; the audio itself is streamed back".into(),
            );
        }
        Ok(Speech {
            body: body.as_object().cloned().unwrap_or_default(),
            input,
        })
    }

    pub fn estimate(&self) -> u64 {
        tokens::text(&self.input)
    }

    /// Whether the provider streams the audio itself back (else it answers JSON to translate).
    pub fn streamed(style: ApiStyle) -> bool {
        style != ApiStyle::WorkersAi
    }

    /// The upstream request.
    pub fn request(&self, up: &Upstream, timeout_ms: u64) -> Result<OutboundRequest, String> {
        match up.style {
            ApiStyle::Openai | ApiStyle::Azure => {
                let mut body = self.body.clone();
                body.insert("model".into(), json!(up.model));
                let url = match up.style {
                    ApiStyle::Azure => azure_url(up, "audio/speech"),
                    _ => format!("{}/audio/speech", up.base),
                };
                Ok(post_json(up, url, &Value::Object(body), timeout_ms))
            }
            // Workers AI's MeloTTS takes `prompt` and `lang` and answers base64 MP3 in JSON.
            ApiStyle::WorkersAi => {
                match self.body.get("response_format").and_then(Value::as_str) {
                    None | Some("mp3") => {}
                    Some(_) => {
                        return Err(
                            "response_format: Builtin text-to-speech models give mp3 only".into(),
                        )
                    }
                }
                let mut body = json!({"prompt": self.input});
                if let Some(lang) = self.body.get("language").and_then(Value::as_str) {
                    body["lang"] = json!(lang);
                }
                let url = workers_ai_run(&up.base, &up.model);
                Ok(post_json(up, url, &body, timeout_ms))
            }
            other => Err(unserved(other, Endpoint::Speech)),
        }
    }

    /// The audio of a Workers AI answer (`{"result": {"audio": "<base64 MP3>"}}`).
    pub fn workers_ai_audio(v: &Value) -> Result<Vec<u8>, String> {
        let b64 = v
            .pointer("/result/audio")
            .and_then(Value::as_str)
            .ok_or("the answer has no audio")?;
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| "the answer's audio is not base64".into())
    }
}

/// A chat with a Builtin image-to-text model (Workers AI's LLaVA), which takes one image and a
/// prompt on `/ai/run/{model}` rather than chat messages.
#[derive(Debug, Clone)]
pub struct ImageChat {
    pub prompt: String,
    pub image: Vec<u8>,
    pub max_tokens: Option<u64>,
}

impl ImageChat {
    /// From an OpenAI chat body: the text of every message as the prompt, and its one image, a
    /// `data:` URL (keyward does not fetch image URLs for a provider that cannot). `Err` is a
    /// message for a 400.
    pub fn from_chat(body: &Value) -> Result<ImageChat, String> {
        if body.get("stream").and_then(Value::as_bool) == Some(true) {
            return Err(
                "stream: Builtin image-to-text models answer whole; leave stream unset".into(),
            );
        }
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .ok_or("messages: must be an array")?;
        let (mut prompt, mut images) = (Vec::new(), Vec::new());
        for m in messages {
            match m.get("content") {
                Some(Value::String(t)) => prompt.push(t.clone()),
                Some(Value::Array(parts)) => {
                    for p in parts {
                        match p.get("type").and_then(Value::as_str) {
                            Some("text") => prompt.extend(p.get("text").and_then(Value::as_str).map(str::to_owned)),
                            Some("image_url") => images.push(
                                p.pointer("/image_url/url").and_then(Value::as_str).unwrap_or_default().to_owned(),
                            ),
                            _ => return Err("messages: Builtin image-to-text models take text and image_url parts only".into()),
                        }
                    }
                }
                _ => {}
            }
        }
        let [url] = images.as_slice() else {
            return Err(format!(
                "messages: Builtin image-to-text models take exactly one image_url part, got {}",
                images.len()
            ));
        };
        let data = url
            .strip_prefix("data:")
            .and_then(|rest| rest.split_once(";base64,"))
            .filter(|(media, _)| media.starts_with("image/"))
            .map(|(_, b64)| b64)
            .ok_or("messages: a Builtin image-to-text model's image must be a data:image/...;base64, URL")?;
        let image = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| "messages: the image's data: URL is not valid base64")?;
        let max_tokens = body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64);
        Ok(ImageChat {
            prompt: prompt.join("\n"),
            image,
            max_tokens,
        })
    }

    pub fn request(&self, up: &Upstream, timeout_ms: u64) -> Result<OutboundRequest, String> {
        if up.style != ApiStyle::WorkersAi {
            return Err(
                "only Builtin image-to-text models are called on their own endpoint".into(),
            );
        }
        let mut body = json!({"prompt": self.prompt, "image": self.image});
        if let Some(n) = self.max_tokens {
            body["max_tokens"] = json!(n);
        }
        let url = workers_ai_run(&up.base, &up.model);
        Ok(post_json(up, url, &body, timeout_ms))
    }

    /// A `chat.completion` from Workers AI's `{"result": {"description": ...}}`.
    pub fn answer(
        &self,
        v: &Value,
        model: &str,
        created: i64,
        estimate: u64,
    ) -> Result<(Value, Usage), String> {
        let text = v
            .pointer("/result/description")
            .and_then(Value::as_str)
            .ok_or("the answer has no description")?;
        let usage = Usage {
            input: Some(estimate),
            output: Some(tokens::text(text)),
        };
        let answer = json!({
            "id": format!("chatcmpl-{created}"), "object": "chat.completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage.openai_json(),
        });
        Ok((answer, usage))
    }
}

/// A provider's audio passed on as it arrives, with the call's credentials scrubbed out, cut at
/// [`MAX_SPEECH_BYTES`], and the usage writes handed over when it ends or the client leaves.
/// Audio has no error event: a failure after the first bytes ends the body early.
pub struct AudioStream {
    inner: ChunkStream,
    scrub: StreamScrubber,
    sent: usize,
    done: bool,
    usage: Usage,
    on_usage: Option<(super::OnUsage, oneshot::Sender<Vec<Stmt>>)>,
}

impl AudioStream {
    pub fn new(
        inner: ChunkStream,
        scrub: StreamScrubber,
        usage: Usage,
        on_usage: super::OnUsage,
    ) -> (Self, oneshot::Receiver<Vec<Stmt>>) {
        let (tx, rx) = oneshot::channel();
        let s = AudioStream {
            inner,
            scrub,
            sent: 0,
            done: false,
            usage,
            on_usage: Some((on_usage, tx)),
        };
        (s, rx)
    }

    fn finish(&mut self) -> Option<Vec<u8>> {
        self.done = true;
        self.inner = Box::pin(futures_util::stream::empty());
        if let Some((on_usage, tx)) = self.on_usage.take() {
            let _ = tx.send(on_usage(self.usage));
        }
        let rest = self.scrub.finish();
        (!rest.is_empty()).then_some(rest)
    }
}

impl Stream for AudioStream {
    type Item = Vec<u8>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            match self.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    self.sent += chunk.len();
                    if self.sent > MAX_SPEECH_BYTES {
                        log::warn!("relay: audio answer passed {MAX_SPEECH_BYTES} bytes; cut");
                        return Poll::Ready(self.finish());
                    }
                    let out = self.scrub.push(&chunk);
                    if !out.is_empty() {
                        return Poll::Ready(Some(out));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    // The kind only: an unreachable upstream's text is not scrubbed here.
                    let why = match e {
                        crate::store::outbound::OutboundError::Timeout => "idle timeout",
                        crate::store::outbound::OutboundError::TooLarge => "chunk too large",
                        crate::store::outbound::OutboundError::Unreachable(_) => "connection lost",
                    };
                    log::warn!("relay: audio answer ended early ({why})");
                    return Poll::Ready(self.finish());
                }
                Poll::Ready(None) => return Poll::Ready(self.finish()),
            }
        }
    }
}

impl Drop for AudioStream {
    /// A client that hangs up early still has the call counted.
    fn drop(&mut self) {
        if let Some((on_usage, tx)) = self.on_usage.take() {
            let _ = tx.send(on_usage(self.usage));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Auth;
    use crate::providers::Secrets;

    fn upstream(style: ApiStyle, base: &str, model: &str) -> Upstream {
        let mut secrets = Secrets::default();
        secrets.0.insert("api_key".into(), json!("sk-1"));
        Upstream {
            style,
            auth: Auth::Bearer,
            base: base.into(),
            model: model.into(),
            secrets,
            settings: Map::new(),
        }
    }

    fn rerank(body: Value) -> Rerank {
        Rerank::parse(&body).unwrap()
    }

    #[test]
    fn each_factory_style_serves_the_endpoints_its_api_has_and_names_the_rest() {
        use ApiStyle::*;
        for style in [Openai, Cohere, WorkersAi] {
            assert_eq!(refusal(style, Endpoint::Rerank), None, "{style:?}");
        }
        for style in [Openai, Azure, WorkersAi] {
            assert_eq!(refusal(style, Endpoint::Transcription), None, "{style:?}");
            assert_eq!(refusal(style, Endpoint::Speech), None, "{style:?}");
        }
        for style in [Azure, Gemini, Vertex, Anthropic, Ollama] {
            assert!(refusal(style, Endpoint::Rerank)
                .unwrap()
                .contains("no rerank API"));
        }
        for style in [Gemini, Vertex, Anthropic, Cohere, Ollama] {
            assert!(refusal(style, Endpoint::Speech)
                .unwrap()
                .contains("no audio API"));
        }
    }

    #[test]
    fn every_model_type_a_factory_lists_is_served_by_its_api_or_refused_by_name() {
        use crate::catalog::{factories, ModelType};
        for f in factories() {
            for t in &f.model_types {
                let endpoint = match t {
                    ModelType::Chat | ModelType::Image2text => Endpoint::Chat,
                    ModelType::Embedding => Endpoint::Embeddings,
                    ModelType::Rerank => Endpoint::Rerank,
                    ModelType::Speech2text => Endpoint::Transcription,
                    ModelType::Tts => Endpoint::Speech,
                };
                match refusal(f.api_style, endpoint) {
                    None => {}
                    // Vertex's OpenAI-compatible surface has no embeddings: a 400 says so.
                    Some(_)
                        if f.api_style == ApiStyle::Vertex && endpoint == Endpoint::Embeddings => {}
                    Some(why) => panic!("{} lists {t:?} models but its API {why}", f.name),
                }
            }
        }
    }

    #[test]
    fn a_rerank_goes_to_each_factorys_own_api_and_comes_back_in_one_shape() {
        let r = rerank(
            json!({"query": "q", "documents": ["a", {"text": "b"}, "c"], "top_n": 2, "return_documents": true}),
        );
        let jina = r
            .request(&upstream(ApiStyle::Openai, "https://j/v1", "jr"), 1)
            .unwrap();
        assert_eq!(jina.url, "https://j/v1/rerank");
        let sent: Value = serde_json::from_slice(jina.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            sent,
            json!({"model": "jr", "query": "q", "documents": ["a", "b", "c"], "top_n": 2})
        );
        let cohere = r
            .request(&upstream(ApiStyle::Cohere, "https://c", "rr"), 1)
            .unwrap();
        assert_eq!(cohere.url, "https://c/v2/rerank");
        let cf = r
            .request(
                &upstream(
                    ApiStyle::WorkersAi,
                    "https://cf/accounts/a/ai/v1",
                    "@cf/baai/r",
                ),
                1,
            )
            .unwrap();
        assert_eq!(cf.url, "https://cf/accounts/a/ai/run/@cf/baai/r");
        let sent: Value = serde_json::from_slice(cf.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            sent,
            json!({"query": "q", "contexts": [{"text": "a"}, {"text": "b"}, {"text": "c"}], "top_k": 2})
        );

        let from_cohere = json!({"id": "x", "results": [{"index": 2, "relevance_score": 0.1}, {"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.5}]});
        let (a, u) = r
            .answer(ApiStyle::Cohere, &from_cohere, "rr@Cohere")
            .unwrap();
        assert_eq!(
            a["results"],
            json!([
                {"index": 1, "relevance_score": 0.9, "document": {"text": "b"}},
                {"index": 0, "relevance_score": 0.5, "document": {"text": "a"}},
            ])
        );
        assert_eq!(a["model"], "rr@Cohere");
        assert_eq!(
            u.input,
            Some(r.estimate()),
            "Cohere reports no tokens: estimated"
        );
        let from_cf = json!({"result": {"response": [{"id": 0, "score": 0.7}, {"id": 2, "score": 0.8}]}, "success": true});
        let (a, _) = r.answer(ApiStyle::WorkersAi, &from_cf, "m").unwrap();
        assert_eq!(a["results"][0]["index"], 2);
        let from_jina = json!({"results": [{"index": 0, "relevance_score": 0.3}], "usage": {"total_tokens": 42}});
        assert_eq!(
            r.answer(ApiStyle::Openai, &from_jina, "m").unwrap().1.input,
            Some(42)
        );
        let bad = json!({"results": [{"index": 7, "relevance_score": 0.3}]});
        assert!(r
            .answer(ApiStyle::Openai, &bad, "m")
            .unwrap_err()
            .contains("document 7"));
    }

    #[test]
    fn bad_rerank_requests_are_refused_with_the_field_named() {
        for (body, field) in [
            (json!({"documents": ["a"]}), "query"),
            (json!({"query": " ", "documents": ["a"]}), "query"),
            (json!({"query": "q"}), "documents"),
            (json!({"query": "q", "documents": []}), "documents"),
            (json!({"query": "q", "documents": [1]}), "documents[0]"),
            (
                json!({"query": "q", "documents": [{"t": "x"}]}),
                "documents[0]",
            ),
            (
                json!({"query": "q", "documents": ["a"], "top_n": 0}),
                "top_n",
            ),
            (
                json!({"query": "q", "documents": ["a"], "return_documents": "yes"}),
                "return_documents",
            ),
            (
                json!({"query": "q", "documents": vec!["a"; MAX_RERANK_DOCUMENTS + 1]}),
                "at most",
            ),
        ] {
            let e = Rerank::parse(&body).unwrap_err();
            assert!(e.contains(field), "{body}: {e}");
        }
    }

    fn form(fields: &[(&str, &[u8])]) -> Form {
        let mut f = Form::default();
        for (name, data) in fields {
            f.parts.push(super::super::multipart::Part {
                name: (*name).into(),
                filename: (*name == "file").then(|| "a.wav".into()),
                content_type: None,
                data: data.to_vec(),
            });
        }
        f
    }

    #[test]
    fn a_transcription_goes_upstream_as_a_form_or_as_raw_audio_for_workers_ai() {
        let t = Transcription::parse(form(&[
            ("file", b"RIFF\x00"),
            ("model", b"default"),
            ("language", b"en"),
        ]))
        .unwrap();
        assert_eq!(t.model, "default");
        let up = upstream(ApiStyle::Openai, "https://o/v1", "whisper-1");
        let r = t.request(&up, 1).unwrap();
        assert_eq!(r.url, "https://o/v1/audio/transcriptions");
        let ct = &r
            .headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .unwrap()
            .1;
        let b = super::super::multipart::boundary(ct).unwrap();
        let sent = super::super::multipart::parse(r.body.as_ref().unwrap(), &b).unwrap();
        assert_eq!(sent.text("model"), Some("whisper-1"));
        assert_eq!(sent.text("language"), Some("en"));
        assert_eq!(sent.part("file").unwrap().data, b"RIFF\x00");

        let cf = upstream(
            ApiStyle::WorkersAi,
            "https://cf/accounts/a/ai/v1",
            "@cf/openai/whisper",
        );
        let r = t.request(&cf, 1).unwrap();
        assert_eq!(r.url, "https://cf/accounts/a/ai/run/@cf/openai/whisper");
        assert_eq!(r.body.as_deref(), Some(&b"RIFF\x00"[..]));
        let answer = json!({"result": {"text": "hello there", "vtt": "WEBVTT\n\nhello there"}});
        let (out, ct, u) = t
            .answer(
                ApiStyle::WorkersAi,
                answer.to_string().as_bytes(),
                "application/json",
            )
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"text": "hello there"})
        );
        assert_eq!(ct, "application/json");
        assert_eq!(u.output, Some(tokens::text("hello there")));
        let vtt = Transcription {
            response_format: "vtt".into(),
            ..t.clone()
        };
        let (out, ct, _) = vtt
            .answer(
                ApiStyle::WorkersAi,
                answer.to_string().as_bytes(),
                "application/json",
            )
            .unwrap();
        assert!(out.starts_with(b"WEBVTT") && ct.starts_with("text/vtt"));
        let srt = Transcription {
            response_format: "srt".into(),
            ..t
        };
        assert!(srt.request(&cf, 1).unwrap_err().contains("not srt"));
    }

    #[test]
    fn bad_transcription_forms_are_refused_with_the_field_named() {
        for (f, field) in [
            (form(&[("model", b"m")]), "file"),
            (form(&[("file", b""), ("model", b"m")]), "empty"),
            (
                form(&[("file", b"x"), ("response_format", b"mp3")]),
                "response_format",
            ),
            (form(&[("file", b"x"), ("stream", b"true")]), "stream"),
            (form(&[("file", b"x"), ("model", b"\xff")]), "model"),
        ] {
            let e = Transcription::parse(f).unwrap_err();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn a_builtin_image_chat_becomes_a_prompt_and_the_images_bytes() {
        let body = json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}}]},
        ], "max_tokens": 20});
        let c = ImageChat::from_chat(&body).unwrap();
        assert_eq!(c.prompt, "Be brief.\nWhat is this?");
        assert_eq!(c.image, [0x89, b'P', b'N', b'G']);
        let r = c
            .request(
                &upstream(
                    ApiStyle::WorkersAi,
                    "https://cf/accounts/a/ai/v1",
                    "@cf/llava",
                ),
                1,
            )
            .unwrap();
        assert_eq!(r.url, "https://cf/accounts/a/ai/run/@cf/llava");
        let sent: Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            sent,
            json!({"prompt": "Be brief.\nWhat is this?", "image": [137, 80, 78, 71], "max_tokens": 20})
        );
        let (a, u) = c
            .answer(
                &json!({"result": {"description": "A cat."}}),
                "m@Builtin",
                5,
                9,
            )
            .unwrap();
        assert_eq!(a["choices"][0]["message"]["content"], "A cat.");
        assert_eq!(
            (u.input, a["object"].clone()),
            (Some(9), json!("chat.completion"))
        );

        let part = |url: &str| json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]});
        for (body, why) in [
            (part("https://example.com/cat.png"), "data:image"),
            (part("data:image/png;base64,@@@"), "base64"),
            (
                json!({"messages": [{"role": "user", "content": "no image"}]}),
                "exactly one",
            ),
            (json!({"messages": [], "stream": true}), "stream"),
        ] {
            assert!(
                ImageChat::from_chat(&body).unwrap_err().contains(why),
                "{body}"
            );
        }
    }

    #[test]
    fn speech_is_forwarded_as_openais_body_or_translated_for_workers_ai() {
        let s = Speech::parse(&json!({"model": "tts-1@OpenAI", "input": "hi", "voice": "alloy"}))
            .unwrap();
        let r = s
            .request(&upstream(ApiStyle::Openai, "https://o/v1", "tts-1"), 1)
            .unwrap();
        let sent: Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            sent,
            json!({"model": "tts-1", "input": "hi", "voice": "alloy"})
        );
        let r = s
            .request(
                &upstream(
                    ApiStyle::WorkersAi,
                    "https://cf/accounts/a/ai/v1",
                    "@cf/myshell-ai/melotts",
                ),
                1,
            )
            .unwrap();
        let sent: Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent, json!({"prompt": "hi"}));
        assert_eq!(
            Speech::workers_ai_audio(&json!({"result": {"audio": "SUQzAw=="}})).unwrap(),
            b"ID3\x03"
        );
        assert!(Speech::workers_ai_audio(&json!({"result": {}})).is_err());
        for (body, field) in [
            (json!({"voice": "a"}), "input"),
            (
                json!({"input": "x".repeat(MAX_SPEECH_INPUT + 1)}),
                "at most",
            ),
            (
                json!({"input": "x", "stream_format": "sse"}),
                "stream_format",
            ),
        ] {
            assert!(Speech::parse(&body).unwrap_err().contains(field), "{body}");
        }
        let wav = Speech::parse(&json!({"input": "x", "response_format": "wav"})).unwrap();
        assert!(wav
            .request(&upstream(ApiStyle::WorkersAi, "https://cf/ai/v1", "m"), 1)
            .unwrap_err()
            .contains("mp3 only"));
    }
}
