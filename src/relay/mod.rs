//! The OpenAI-compatible relay's logic, free of I/O: which upstream call a request becomes, the
//! limits a gateway key puts on it, and how the answer (whole or streamed) comes back with its
//! usage counted.
//!
//! Translated: OpenAI-style factories (OpenAI, Mistral, DeepSeek, Jina, OpenAI-API-Compatible,
//! LocalAI, Xinference) are forwarded as they are; Azure-OpenAI is addressed by deployment and API
//! version; Anthropic is translated both ways (requests, responses and streams); Ollama is reached
//! through its OpenAI-compatible `/v1` API; Gemini through Google's OpenAI-compatible surface
//! (`{base}/v1beta/openai/...`, bearer API key); Cohere through its Compatibility API
//! (`{base}/compatibility/v1/...`, which refuses `stream_options`, so its streams are counted from
//! their text); Builtin models through Workers AI's OpenAI-compatible endpoints
//! (`{WORKERS_AI_BASE_URL}/accounts/{id}/ai/v1/...`, see [`WorkersAi`]); Vertex AI through its
//! OpenAI-compatible endpoint with a minted access token (see [`vertex`]).

pub mod anthropic;
pub mod cooldown;
pub mod media;
pub mod multipart;
pub mod sse;
pub mod tokens;
pub mod vertex;

use crate::catalog::{ApiStyle, Auth};
use crate::providers::probe::auth_headers;
use crate::providers::scrub::{Scrubber, StreamScrubber};
use crate::providers::Secrets;
use crate::store::outbound::{ChunkStream, OutboundError, OutboundRequest};
use crate::store::Stmt;
use futures_channel::oneshot;
use futures_util::Stream;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Relay request bodies above this are refused (../API.md: 1 MiB).
pub const MAX_RELAY_BODY: usize = 1024 * 1024;
/// Non-streamed upstream answers above this are refused; each streamed chunk too.
pub const MAX_UPSTREAM_RESPONSE: usize = 16 * 1024 * 1024;
/// Header set when a gateway key's input limit was exceeded under the `use_anyway` policy.
pub const LIMIT_HEADER: &str = "x-keyward-limit-exceeded";
/// Header carrying the input-token estimate the limits were checked with.
pub const ESTIMATE_HEADER: &str = "x-keyward-input-tokens-estimate";

/// The relay's kinds of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Embeddings,
    Rerank,
    Transcription,
    Speech,
}

impl Endpoint {
    /// The route, for messages.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Rerank => "/v1/rerank",
            Endpoint::Transcription => "/v1/audio/transcriptions",
            Endpoint::Speech => "/v1/audio/speech",
        }
    }
}

/// A checked relay request, ready to go with any credential of a pool.
#[derive(Debug, Clone)]
pub enum Call {
    /// Chat completions and embeddings: OpenAI's body.
    Json(Value),
    Rerank(media::Rerank),
    Transcription(media::Transcription),
    Speech(media::Speech),
    /// A chat with a Builtin image-to-text model, on Workers AI's own endpoint.
    ImageChat(media::ImageChat),
}

/// The upstream HTTP request for any relay call. `Err` is a message for a 400.
pub fn call_request(
    up: &Upstream,
    endpoint: Endpoint,
    call: &Call,
    timeout_ms: u64,
) -> Result<OutboundRequest, String> {
    match call {
        Call::Json(body) => upstream_request(up, endpoint, body, timeout_ms),
        Call::Rerank(r) => r.request(up, timeout_ms),
        Call::Transcription(t) => t.request(up, timeout_ms),
        Call::Speech(s) => s.request(up, timeout_ms),
        Call::ImageChat(c) => c.request(up, timeout_ms),
    }
}

/// Tokens of one call as the provider reported them (or as estimated when it did not).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input: Option<u64>,
    pub output: Option<u64>,
}

impl Usage {
    /// From an OpenAI `usage` object.
    pub fn from_openai(v: &Value) -> Option<Usage> {
        let u = v.get("usage").filter(|u| u.is_object())?;
        Some(Usage {
            input: u.get("prompt_tokens").and_then(Value::as_u64),
            output: u.get("completion_tokens").and_then(Value::as_u64),
        })
    }

    /// [`Usage::from_openai`] of a whole answer's bytes, read without building the answer's JSON
    /// tree (the relay passes the bytes on as they are); `Err` when they are not JSON.
    pub fn from_openai_bytes(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Top {
            #[serde(default)]
            usage: Option<Value>,
        }
        // serde reads a struct from an array too; only an object is read this way.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Ok(Usage::from_openai(&serde_json::from_slice(body)?));
        }
        match serde_json::from_slice::<Top>(body) {
            Ok(top) => Ok(top.usage.filter(Value::is_object).map(|u| Usage {
                input: u.get("prompt_tokens").and_then(Value::as_u64),
                output: u.get("completion_tokens").and_then(Value::as_u64),
            })),
            // JSON of another shape (not an object, a repeated `usage`): read it as a whole.
            Err(e) if e.is_data() => Ok(Usage::from_openai(&serde_json::from_slice(body)?)),
            Err(e) => Err(e),
        }
    }

    pub fn openai_json(&self) -> Value {
        let (i, o) = (self.input.unwrap_or(0), self.output.unwrap_or(0));
        json!({"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o})
    }
}

/// Workers AI's REST API root, which `/accounts/{account_id}/ai/v1/...` is appended to.
pub const WORKERS_AI_DEFAULT_BASE: &str = "https://api.cloudflare.com/client/v4";

/// The deployment's Workers AI settings, which serve the Builtin models: the account id
/// (`WORKERS_AI_ACCOUNT_ID` var), an API token with Workers AI access (`WORKERS_AI_API_TOKEN`
/// secret) and the API root (`WORKERS_AI_BASE_URL` var, default [`WORKERS_AI_DEFAULT_BASE`],
/// which tests point at a stand-in).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WorkersAi {
    pub account_id: Option<String>,
    pub api_token: Option<String>,
    pub base_url: Option<String>,
}

impl std::fmt::Debug for WorkersAi {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkersAi")
            .field("account_id", &self.account_id)
            .field("api_token", &self.api_token.as_ref().map(|_| "***"))
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl WorkersAi {
    /// The OpenAI-compatible root (`.../accounts/{id}/ai/v1`) and the token; `Err` names the
    /// missing or unusable settings, for a 400.
    pub fn endpoint(&self) -> Result<(String, String), String> {
        fn set(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        let mut missing = Vec::new();
        let account = set(&self.account_id);
        // The id becomes a path segment: anything but letters, digits, `-` and `_` could
        // change the path (Cloudflare's ids are 32 hex digits).
        let account_ok = account.filter(|a| {
            a.len() <= 64
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if account_ok.is_none() {
            missing.push(if account.is_some() {
                "WORKERS_AI_ACCOUNT_ID (not an account id)"
            } else {
                "WORKERS_AI_ACCOUNT_ID"
            });
        }
        let token = set(&self.api_token);
        if token.is_none() {
            missing.push("WORKERS_AI_API_TOKEN");
        }
        match (account_ok, token) {
            (Some(account), Some(token)) if missing.is_empty() => {
                let root = set(&self.base_url)
                    .unwrap_or(WORKERS_AI_DEFAULT_BASE)
                    .trim_end_matches('/');
                Ok((format!("{root}/accounts/{account}/ai/v1"), token.to_owned()))
            }
            _ => Err(format!(
                "Builtin models are served through this deployment's Workers AI account, which is \
                 not configured: the operator must set {}",
                missing.join(" and ")
            )),
        }
    }
}

/// Whether a provider's stream can be asked for its usage with `stream_options` (Cohere's
/// Compatibility API refuses the field).
pub fn streams_usage_on_request(style: ApiStyle) -> bool {
    style != ApiStyle::Cohere
}

/// Where a relay call goes and with what credential.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub style: ApiStyle,
    pub auth: Auth,
    pub base: String,
    /// The model name the provider knows (an Azure deployment for Azure).
    pub model: String,
    pub secrets: Secrets,
    /// Non-secret connection settings (`api_version`, ...).
    pub settings: Map<String, Value>,
}

/// The upstream HTTP request for a relay call. `Err` is a message for a 400.
pub fn upstream_request(
    up: &Upstream,
    endpoint: Endpoint,
    body: &Value,
    timeout_ms: u64,
) -> Result<OutboundRequest, String> {
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let path = match endpoint {
        Endpoint::Chat => "chat/completions",
        Endpoint::Embeddings => "embeddings",
        Endpoint::Rerank | Endpoint::Transcription | Endpoint::Speech => {
            return Err(format!(
                "{} is not a JSON chat or embeddings call",
                endpoint.path()
            ))
        }
    };
    let mut forwarded = body.clone();
    forwarded["model"] = json!(up.model);
    if !streams_usage_on_request(up.style) {
        // Refused by the provider whatever it says; the relay counts the stream itself.
        if let Some(o) = forwarded.as_object_mut() {
            o.remove("stream_options");
        }
    } else if stream && endpoint == Endpoint::Chat {
        // Ask for the final usage chunk so streamed calls are counted exactly.
        forwarded["stream_options"]["include_usage"] = json!(true);
    }
    // Google's OpenAI-compatible surfaces take the API key (Gemini) or the access token minted
    // from the service account (Vertex, set as `api_key` by the caller) as a bearer token.
    let auth = match up.style {
        ApiStyle::Gemini | ApiStyle::Vertex => Auth::Bearer,
        ApiStyle::Openai
        | ApiStyle::Azure
        | ApiStyle::Anthropic
        | ApiStyle::Cohere
        | ApiStyle::Ollama
        | ApiStyle::WorkersAi => up.auth,
    };
    let (url, payload) = match up.style {
        ApiStyle::Openai | ApiStyle::WorkersAi => (format!("{}/{path}", up.base), forwarded),
        ApiStyle::Gemini => (format!("{}/v1beta/openai/{path}", up.base), forwarded),
        ApiStyle::Cohere => (format!("{}/compatibility/v1/{path}", up.base), forwarded),
        ApiStyle::Ollama => (format!("{}/v1/{path}", up.base), forwarded),
        ApiStyle::Azure => {
            let version = up
                .settings
                .get("api_version")
                .and_then(Value::as_str)
                .unwrap_or(crate::providers::AZURE_DEFAULT_API_VERSION);
            (
                format!(
                    "{}/openai/deployments/{}/{path}?api-version={version}",
                    up.base, up.model
                ),
                forwarded,
            )
        }
        ApiStyle::Anthropic if endpoint == Endpoint::Chat => (
            format!("{}/v1/messages", up.base),
            anthropic::request(body, &up.model)?,
        ),
        ApiStyle::Anthropic => return Err("Anthropic models do not serve embeddings".into()),
        ApiStyle::Vertex if endpoint == Endpoint::Chat => {
            forwarded["model"] = json!(vertex::model_name(&up.model));
            (vertex::url(&up.base, &up.settings, path)?, forwarded)
        }
        ApiStyle::Vertex => return Err(vertex::EMBEDDINGS_REFUSED.into()),
    };
    let mut headers = auth_headers(auth, &up.secrets);
    headers.push(("content-type".into(), "application/json".into()));
    if stream {
        headers.push(("accept".into(), "text/event-stream".into()));
    }
    Ok(OutboundRequest {
        method: "POST",
        url,
        headers,
        body: Some(payload.to_string().into_bytes()),
        timeout_ms,
        max_response_bytes: MAX_UPSTREAM_RESPONSE,
        idle_timeout_ms: None,
    })
}

/// How a streamed answer is turned into what the client reads.
pub enum StreamMode {
    /// OpenAI's own events, passed on as they are; `strip_usage_chunk` drops the usage-only chunk
    /// the relay asked for when the client did not.
    PassThrough {
        strip_usage_chunk: bool,
        /// The client asked for the usage chunk but the provider cannot be asked for one
        /// ([`streams_usage_on_request`]): one is added before `[DONE]`, with the usage the
        /// provider reported in the stream, or else the relay's count.
        add_usage_chunk: bool,
    },
    Anthropic(anthropic::StreamTranslator),
}

/// Writes to make once a call's usage is known.
pub type OnUsage = Box<dyn FnOnce(Usage) -> Vec<Stmt>>;

/// The client's view of an upstream event stream: events forwarded as each completes, with the
/// call's credentials scrubbed out, usage collected on the way, and the usage writes handed over
/// when the stream ends or is dropped. An event or a stream over its limit
/// ([`sse::MAX_EVENT_BYTES`], [`sse::MAX_STREAM_BYTES`]), an idle upstream and a broken one end
/// the stream with an OpenAI-style error event; the upstream body is dropped right then, which
/// aborts the upstream call.
pub struct RelayStream {
    inner: ChunkStream,
    decoder: sse::Decoder,
    mode: StreamMode,
    scrub: StreamScrubber,
    /// For the message of an idle upstream's error event.
    idle_timeout_ms: u64,
    usage: Usage,
    /// Streamed completion text, for estimating output when the provider reports no usage.
    completion_tokens: u64,
    input_estimate: u64,
    done: bool,
    /// The upstream said it was done (`[DONE]`, Anthropic's `message_stop`) or sent its own
    /// error event: a stream that ends without either was cut, and the client is told so.
    complete: bool,
    /// A usage-only chunk was passed on (so none is added).
    usage_chunk_sent: bool,
    /// `id`, `created` and `model` of the last chunk, for a chunk the relay adds.
    last_chunk: Option<(Value, Value, Value)>,
    on_usage: Option<(OnUsage, oneshot::Sender<Vec<Stmt>>)>,
}

/// Seconds for a message: `30`, `1.5`.
fn seconds(ms: u64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

/// The event that ends a stream early, in OpenAI's error shape.
fn error_event(message: &str, code: Option<ErrorCode>) -> Vec<u8> {
    sse::data(&error_body(message, ErrorType::Upstream, code).to_string())
}

impl RelayStream {
    pub fn new(
        inner: ChunkStream,
        mode: StreamMode,
        input_estimate: u64,
        on_usage: OnUsage,
        scrubber: Scrubber,
        idle_timeout_ms: u64,
    ) -> (Self, oneshot::Receiver<Vec<Stmt>>) {
        let (tx, rx) = oneshot::channel();
        let s = RelayStream {
            inner,
            decoder: sse::Decoder::default(),
            mode,
            scrub: scrubber.stream(),
            idle_timeout_ms,
            usage: Usage::default(),
            completion_tokens: 0,
            input_estimate,
            done: false,
            complete: false,
            usage_chunk_sent: false,
            last_chunk: None,
            on_usage: Some((on_usage, tx)),
        };
        (s, rx)
    }

    /// End the stream: stop reading the upstream (dropping its body aborts the call), hand the
    /// usage over, and pass on `pending` and what the scrubber held, then `last`.
    fn end(&mut self, pending: &[u8], last: Option<Vec<u8>>) -> Option<Vec<u8>> {
        self.done = true;
        self.inner = Box::pin(futures_util::stream::empty());
        self.finish();
        let mut out = self.scrub.push(pending);
        out.extend(self.scrub.finish());
        out.extend(last.unwrap_or_default());
        (!out.is_empty()).then_some(out)
    }

    /// The usage as it will be counted: what the provider reported, else the relay's estimate.
    fn counted(&self) -> Usage {
        Usage {
            input: self.usage.input.or(Some(self.input_estimate)),
            output: self.usage.output.or(Some(self.completion_tokens)),
        }
    }

    fn handle(&mut self, ev: &sse::Event) -> Vec<u8> {
        match &mut self.mode {
            StreamMode::Anthropic(t) => {
                let out = t.event(ev);
                self.usage = t.usage;
                if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
                    if matches!(
                        v.get("type").and_then(Value::as_str),
                        Some("message_stop" | "error")
                    ) {
                        self.complete = true;
                    }
                    if let Some(text) = v.pointer("/delta/text").and_then(Value::as_str) {
                        self.completion_tokens += tokens::text(text);
                    }
                }
                out
            }
            StreamMode::PassThrough {
                strip_usage_chunk,
                add_usage_chunk,
            } => {
                let (strip, add) = (*strip_usage_chunk, *add_usage_chunk);
                if ev.data.trim() == "[DONE]" {
                    self.complete = true;
                    if add && !self.usage_chunk_sent {
                        let mut out = self.usage_chunk();
                        out.extend_from_slice(&ev.raw);
                        return out;
                    }
                    return ev.raw.clone();
                }
                let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                    return ev.raw.clone();
                };
                if v.get("error").is_some_and(|e| !e.is_null()) {
                    self.complete = true;
                }
                if let Some(text) = v
                    .pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
                {
                    self.completion_tokens += tokens::text(text);
                }
                if v.get("id").is_some() {
                    let field = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
                    self.last_chunk = Some((field("id"), field("created"), field("model")));
                }
                if let Some(u) = Usage::from_openai(&v) {
                    self.usage = u;
                    let usage_only = v
                        .get("choices")
                        .and_then(Value::as_array)
                        .is_some_and(Vec::is_empty);
                    if usage_only {
                        if strip {
                            return Vec::new();
                        }
                        self.usage_chunk_sent = true;
                    }
                }
                ev.raw.clone()
            }
        }
    }

    /// OpenAI's usage-only chunk, for a client that asked for it from a provider that sends none.
    fn usage_chunk(&mut self) -> Vec<u8> {
        self.usage_chunk_sent = true;
        let (id, created, model) = self.last_chunk.clone().unwrap_or_default();
        let chunk = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": self.counted().openai_json(),
        });
        sse::data(&chunk.to_string())
    }

    /// Hand the usage writes over, once.
    fn finish(&mut self) {
        if let Some((on_usage, tx)) = self.on_usage.take() {
            let usage = self.counted();
            let _ = tx.send(on_usage(usage));
        }
    }
}

impl Stream for RelayStream {
    type Item = Vec<u8>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            match self.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    let events = self.decoder.push(&chunk);
                    let out: Vec<u8> = events.iter().flat_map(|e| self.handle(e)).collect();
                    if let Some(over) = self.decoder.overflow() {
                        let last = match over {
                            sse::Overflow::Event(n) => error_event(
                                &format!("The provider sent an event of more than {n} bytes without an event boundary; the stream was ended"),
                                Some(ErrorCode::UpstreamEventTooLarge),
                            ),
                            sse::Overflow::Stream(n) => error_event(
                                &format!("The provider's stream passed {n} bytes; the stream was ended"),
                                Some(ErrorCode::UpstreamStreamTooLarge),
                            ),
                        };
                        return Poll::Ready(self.end(&out, Some(last)));
                    }
                    let out = self.scrub.push(&out);
                    if !out.is_empty() {
                        return Poll::Ready(Some(out));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    // The wait for the headers is over, so a timeout here is the idle timeout.
                    let last = match e {
                        OutboundError::Timeout => error_event(
                            &format!(
                                "The provider sent nothing for {} s; the stream was ended",
                                seconds(self.idle_timeout_ms)
                            ),
                            Some(ErrorCode::UpstreamIdleTimeout),
                        ),
                        OutboundError::TooLarge => {
                            error_event("the provider sent an oversized event", None)
                        }
                        OutboundError::Unreachable(_) => {
                            error_event("the provider closed the connection", None)
                        }
                    };
                    return Poll::Ready(self.end(&[], Some(last)));
                }
                Poll::Ready(None) => {
                    let tail = self
                        .decoder
                        .finish()
                        .map(|e| self.handle(&e))
                        .unwrap_or_default();
                    // A body that ends before the provider said it was done is a cut answer,
                    // however cleanly the connection closed: the client must not take it whole.
                    let last = (!self.complete).then(|| {
                        error_event(
                            "The provider ended the stream before the answer was complete",
                            Some(ErrorCode::UpstreamStreamIncomplete),
                        )
                    });
                    return Poll::Ready(self.end(&tail, last));
                }
            }
        }
    }
}

impl Drop for RelayStream {
    /// A client that hangs up early still has what it used counted.
    fn drop(&mut self) {
        self.finish();
    }
}

crate::closed_set! {
    /// The error's class.
    #[schema = "RelayErrorType"]
    pub enum ErrorType {
        InvalidRequest = "invalid_request_error",
        Permission = "permission_error",
        RateLimit = "rate_limit_error",
        Server = "server_error",
        Upstream = "upstream_error",
    }
}

crate::closed_set! {
    /// A machine-readable code, null when the type says it all. `upstream_*` codes describe what the
    /// provider did; the others, what keyward refused.
    #[schema = "RelayErrorCode"]
    pub enum ErrorCode {
        BudgetExceeded = "budget_exceeded",
        BuiltinNotConfigured = "builtin_not_configured",
        EndpointNotServed = "endpoint_not_served",
        EndpointUnbound = "endpoint_unbound",
        InputLimitExceeded = "input_limit_exceeded",
        InvalidApiKey = "invalid_api_key",
        KeyDisabled = "key_disabled",
        KeyExpired = "key_expired",
        LimitsUnavailable = "limits_unavailable",
        LoopDetected = "loop_detected",
        ModelNotFound = "model_not_found",
        OutputLimitExceeded = "output_limit_exceeded",
        ProviderAddressForbidden = "provider_address_forbidden",
        RateLimitExceeded = "rate_limit_exceeded",
        RequestOverLimit = "request_over_limit",
        RequestTooLarge = "request_too_large",
        UnknownUrl = "unknown_url",
        UpstreamAuthFailed = "upstream_auth_failed",
        UpstreamBadRequest = "upstream_bad_request",
        UpstreamConflict = "upstream_conflict",
        UpstreamEventTooLarge = "upstream_event_too_large",
        UpstreamFailed = "upstream_failed",
        UpstreamIdleTimeout = "upstream_idle_timeout",
        UpstreamNotEventStream = "upstream_not_event_stream",
        UpstreamNotFound = "upstream_not_found",
        UpstreamNotJson = "upstream_not_json",
        UpstreamRateLimited = "upstream_rate_limited",
        UpstreamRedirect = "upstream_redirect",
        UpstreamRequestTooLarge = "upstream_request_too_large",
        UpstreamStreamIncomplete = "upstream_stream_incomplete",
        UpstreamStreamTooLarge = "upstream_stream_too_large",
        UpstreamTimeout = "upstream_timeout",
        UpstreamTooLarge = "upstream_too_large",
        UpstreamUnprocessable = "upstream_unprocessable",
        UpstreamUnreachable = "upstream_unreachable",
    }
}

/// OpenAI's error shape, which every relay error uses instead of the envelope.
#[derive(Debug, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "RelayError"))]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

// The inside of [`ErrorBody`]. `param` is always `null`: no message names a request field
// that way (the message itself says which). The document lists the `type` and `code` values
// the relay sends.
#[derive(Debug, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(inline))]
pub struct ErrorDetail<'a> {
    /// A specific human-readable message; never a credential.
    pub message: &'a str,
    /// The error's class.
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// Always null; the message names the field.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "()"))]
    pub param: Option<&'a str>,
    pub code: Option<ErrorCode>,
}

impl std::fmt::Display for ErrorBody<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        write!(f, "{text}")
    }
}

/// A body for the relay's OpenAI-style error.
pub fn error_body(message: &str, kind: ErrorType, code: Option<ErrorCode>) -> ErrorBody<'_> {
    ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            param: None,
            code,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_read_from_the_bytes_is_what_the_whole_json_gives() {
        for body in [
            r#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
            r#"{"id":"x"}"#,
            r#"{"usage":null}"#,
            r#"{"usage":{"prompt_tokens":"3"}}"#,
            r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
            r#"[{"usage":{"prompt_tokens":1}}]"#,
            r#""text""#,
        ] {
            let whole: Value = serde_json::from_str(body).unwrap();
            assert_eq!(
                Usage::from_openai_bytes(body.as_bytes()).unwrap(),
                Usage::from_openai(&whole),
                "{body}"
            );
        }
        for not_json in ["", "<html>", r#"{"usage":{"prompt_tokens":3}"#] {
            assert!(
                Usage::from_openai_bytes(not_json.as_bytes()).is_err(),
                "{not_json}"
            );
        }
    }
    use futures_util::{FutureExt, StreamExt};

    fn upstream(style: ApiStyle) -> Upstream {
        let mut secrets = Secrets::default();
        secrets.0.insert("api_key".into(), json!("sk-x"));
        Upstream {
            style,
            auth: if style == ApiStyle::Azure {
                Auth::Azure
            } else {
                Auth::Bearer
            },
            base: "http://p/v1".into(),
            model: "m1".into(),
            secrets,
            settings: Map::new(),
        }
    }

    #[test]
    fn openai_requests_are_forwarded_with_the_upstream_model_and_usage_asked_for() {
        let body = json!({"model": "alias", "messages": [], "stream": true});
        let r = upstream_request(&upstream(ApiStyle::Openai), Endpoint::Chat, &body, 1000).unwrap();
        assert_eq!(r.url, "http://p/v1/chat/completions");
        let sent: Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["model"], "m1");
        assert_eq!(sent["stream_options"]["include_usage"], true);
        assert!(r
            .headers
            .contains(&("authorization".into(), "Bearer sk-x".into())));
        let e = upstream_request(
            &upstream(ApiStyle::Azure),
            Endpoint::Embeddings,
            &json!({"input": "x"}),
            1,
        )
        .unwrap();
        assert_eq!(
            e.url,
            "http://p/v1/openai/deployments/m1/embeddings?api-version=2024-10-21"
        );
    }

    #[test]
    fn vertex_chat_goes_to_the_compatible_endpoint_as_a_google_model_and_embeddings_are_refused() {
        let mut up = upstream(ApiStyle::Vertex);
        up.auth = Auth::ServiceAccount;
        up.settings.insert("project_id".into(), json!("p1"));
        up.settings.insert("location".into(), json!("us-central1"));
        let body = json!({"model": "alias", "messages": []});
        let r = upstream_request(&up, Endpoint::Chat, &body, 1).unwrap();
        assert_eq!(
            r.url,
            "http://p/v1/v1/projects/p1/locations/us-central1/endpoints/openapi/chat/completions"
        );
        let sent: Value = serde_json::from_slice(r.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["model"], "google/m1");
        assert!(r
            .headers
            .contains(&("authorization".into(), "Bearer sk-x".into())));
        let e = upstream_request(&up, Endpoint::Embeddings, &json!({"input": "x"}), 1).unwrap_err();
        assert!(e.contains("chat completions only"), "{e}");
    }

    fn counting(u: Usage) -> Vec<Stmt> {
        vec![crate::stmt!(
            "SELECT ?1, ?2",
            u.input.unwrap_or(0) as i64,
            u.output.unwrap_or(0) as i64
        )]
    }

    fn pass_through() -> StreamMode {
        StreamMode::PassThrough {
            strip_usage_chunk: false,
            add_usage_chunk: false,
        }
    }

    /// Sets its flag when dropped: tells whether the upstream body is still held.
    struct DropFlag(std::rc::Rc<std::cell::Cell<bool>>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }

    /// An upstream body of these items, and a flag set once it is dropped.
    fn upstream_body(
        items: Vec<Result<Vec<u8>, OutboundError>>,
    ) -> (ChunkStream, std::rc::Rc<std::cell::Cell<bool>>) {
        let dropped = std::rc::Rc::new(std::cell::Cell::new(false));
        let guard = DropFlag(dropped.clone());
        // Never ends by itself, like an upstream that keeps the connection open.
        let body = futures_util::stream::iter(items)
            .chain(futures_util::stream::pending())
            .map(move |c| {
                let _held = &guard;
                c
            });
        (Box::pin(body), dropped)
    }

    fn last_error(out: &[u8]) -> Value {
        let text = String::from_utf8_lossy(out);
        let last = text
            .trim_end()
            .rsplit("\n\n")
            .next()
            .and_then(|e| e.strip_prefix("data: "))
            .unwrap_or_default();
        serde_json::from_str::<Value>(last).unwrap_or(Value::Null)["error"].clone()
    }

    #[test]
    fn an_event_over_the_cap_ends_the_stream_with_an_error_event_and_drops_the_upstream_at_once() {
        let mut items = vec![Ok(b"data: {\"choices\":[]}\n\ndata: ".to_vec())];
        items.extend((0..1100).map(|_| Ok(vec![b'x'; 1024])));
        let (inner, dropped) = upstream_body(items);
        let (mut s, _rx) = RelayStream::new(
            inner,
            pass_through(),
            1,
            Box::new(counting),
            Scrubber::new(&["sk-unused-key"]),
            30_000,
        );
        let mut out = Vec::new();
        while let Some(Some(chunk)) = s.next().now_or_never() {
            out.extend(chunk);
        }
        assert!(
            dropped.get(),
            "the upstream body is dropped (the call aborted) before the stream itself is"
        );
        let e = last_error(&out);
        assert_eq!(e["code"], "upstream_event_too_large", "{e}");
        assert_eq!(e["type"], "upstream_error");
        assert!(e["message"].as_str().unwrap().contains("1048576 bytes"));
        assert!(
            out.starts_with(b"data: {\"choices\":[]}\n\n"),
            "earlier events pass"
        );
        assert!(out.len() < 1024, "the oversized event is never passed on");
        assert_eq!(
            s.next().now_or_never(),
            Some(None),
            "and the stream has ended"
        );
    }

    #[test]
    fn an_idle_upstream_ends_the_stream_with_an_error_event_naming_the_timeout() {
        let (inner, dropped) = upstream_body(vec![
            Ok(b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n".to_vec()),
            Err(OutboundError::Timeout),
        ]);
        let (s, mut rx) = RelayStream::new(
            inner,
            pass_through(),
            7,
            Box::new(counting),
            Scrubber::new(&["sk-unused-key"]),
            1_500,
        );
        let out: Vec<u8> = s.collect::<Vec<_>>().now_or_never().expect("ends").concat();
        assert!(dropped.get());
        let e = last_error(&out);
        assert_eq!(e["code"], "upstream_idle_timeout", "{e}");
        assert!(e["message"].as_str().unwrap().contains("1.5 s"), "{e}");
        let stmts = rx.try_recv().unwrap().unwrap();
        assert_eq!(
            stmts[0].params,
            vec![7.into(), 1.into()],
            "usage still counted"
        );
    }

    #[test]
    fn a_credential_split_across_upstream_chunks_is_scrubbed_from_the_stream() {
        let key = "sk-split-across-chunks-0123";
        let event = format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{key}\"}}}}]}}\n\ndata: [DONE]\n\n"
        );
        for cut in 1..event.len() {
            let (a, b) = event.as_bytes().split_at(cut);
            let inner: ChunkStream = Box::pin(futures_util::stream::iter(vec![
                Ok(a.to_vec()),
                Ok(b.to_vec()),
            ]));
            let (s, _rx) = RelayStream::new(
                inner,
                pass_through(),
                1,
                Box::new(counting),
                Scrubber::new(&[key]),
                30_000,
            );
            let out =
                String::from_utf8(s.collect::<Vec<_>>().now_or_never().unwrap().concat()).unwrap();
            assert_eq!(out, event.replace(key, "***"), "cut at {cut}");
        }
    }

    #[test]
    fn a_stream_passes_events_through_and_reports_usage_at_the_end() {
        let chunks: Vec<Result<Vec<u8>, OutboundError>> = vec![
            Ok(b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\ndata: {\"choi".to_vec()),
            Ok(b"ces\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n".to_vec()),
        ];
        let inner: ChunkStream = Box::pin(futures_util::stream::iter(chunks));
        let (s, mut rx) = RelayStream::new(
            inner,
            StreamMode::PassThrough {
                strip_usage_chunk: true,
                add_usage_chunk: false,
            },
            100,
            Box::new(counting),
            Scrubber::new(&["sk-unused-key"]),
            30_000,
        );
        let out: Vec<Vec<u8>> = s.collect::<Vec<_>>().now_or_never().expect("ready");
        let text = String::from_utf8(out.concat()).unwrap();
        assert!(text.contains("\"content\":\"hi\""));
        assert!(
            !text.contains("prompt_tokens"),
            "the injected usage chunk is stripped"
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
        let stmts = rx.try_recv().unwrap().unwrap();
        assert_eq!(stmts[0].params, vec![9.into(), 2.into()]);
    }

    #[test]
    fn a_dropped_stream_still_reports_estimated_usage() {
        let inner: ChunkStream = Box::pin(futures_util::stream::iter(vec![Ok(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"hello there\"}}]}\n\n".to_vec(),
        )]));
        let (mut s, mut rx) = RelayStream::new(
            inner,
            StreamMode::PassThrough {
                strip_usage_chunk: false,
                add_usage_chunk: false,
            },
            42,
            Box::new(counting),
            Scrubber::new(&["sk-unused-key"]),
            30_000,
        );
        let first = s.next().now_or_never().expect("ready");
        assert!(first.is_some());
        drop(s);
        let stmts = rx.try_recv().unwrap().unwrap();
        assert_eq!(stmts[0].params, vec![42.into(), 2.into()]);
    }
    fn collect(s: RelayStream) -> String {
        String::from_utf8(s.collect::<Vec<_>>().now_or_never().expect("ends").concat()).unwrap()
    }

    #[test]
    fn a_stream_that_ends_before_done_ends_with_an_error_event() {
        let inner: ChunkStream = Box::pin(futures_util::stream::iter(vec![Ok(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"half\"}}]}\n\n".to_vec(),
        )]));
        let (s, _rx) = RelayStream::new(
            inner,
            pass_through(),
            1,
            Box::new(counting),
            Scrubber::new(&["sk-unused-key"]),
            30_000,
        );
        let out = collect(s);
        assert!(out.contains("\"half\""), "what came is passed on: {out}");
        assert_eq!(
            last_error(out.as_bytes())["code"],
            "upstream_stream_incomplete"
        );
    }

    #[test]
    fn an_anthropic_stream_cut_before_message_stop_ends_with_an_error_event() {
        let inner: ChunkStream = Box::pin(futures_util::stream::iter(vec![Ok(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":3}}}\n\n".to_vec(),
        )]));
        let mode = StreamMode::Anthropic(anthropic::StreamTranslator {
            id: "chatcmpl".into(),
            model: "claude".into(),
            created: 0,
            include_usage: false,
            usage: Usage::default(),
            ..Default::default()
        });
        let (s, _rx) = RelayStream::new(
            inner,
            mode,
            1,
            Box::new(counting),
            Scrubber::new(&["sk-unused-key"]),
            30_000,
        );
        assert_eq!(
            last_error(collect(s).as_bytes())["code"],
            "upstream_stream_incomplete"
        );
    }

    #[test]
    fn a_client_asking_for_usage_from_a_provider_that_sends_none_gets_one_counted_chunk() {
        let inner: ChunkStream = Box::pin(futures_util::stream::iter(vec![Ok(
            b"data: {\"id\":\"c1\",\"created\":5,\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\"hello there\"}}]}\n\ndata: [DONE]\n\n".to_vec(),
        )]));
        let (s, mut rx) = RelayStream::new(
            inner,
            StreamMode::PassThrough {
                strip_usage_chunk: false,
                add_usage_chunk: true,
            },
            42,
            Box::new(counting),
            Scrubber::new(&["sk-unused-key"]),
            30_000,
        );
        let out = collect(s);
        let events: Vec<&str> = out.trim_end().split("\n\n").collect();
        assert_eq!(events.len(), 3, "{out}");
        assert_eq!(events[2], "data: [DONE]");
        let chunk: Value = serde_json::from_str(events[1].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(chunk["id"], "c1");
        assert_eq!(chunk["choices"], json!([]));
        assert_eq!(
            chunk["usage"],
            json!({"prompt_tokens": 42, "completion_tokens": 2, "total_tokens": 44})
        );
        let stmts = rx.try_recv().unwrap().unwrap();
        assert_eq!(
            stmts[0].params,
            vec![42.into(), 2.into()],
            "the same count is recorded"
        );
    }

    #[test]
    fn gemini_and_cohere_go_to_their_compatible_paths_and_cohere_never_gets_stream_options() {
        let body = json!({"model": "x", "messages": [], "stream": true,
            "stream_options": {"include_usage": true}});
        let g = upstream_request(&upstream(ApiStyle::Gemini), Endpoint::Chat, &body, 1).unwrap();
        assert_eq!(g.url, "http://p/v1/v1beta/openai/chat/completions");
        assert!(g
            .headers
            .contains(&("authorization".into(), "Bearer sk-x".into())));
        let c =
            upstream_request(&upstream(ApiStyle::Cohere), Endpoint::Embeddings, &body, 1).unwrap();
        assert_eq!(c.url, "http://p/v1/compatibility/v1/embeddings");
        let c = upstream_request(&upstream(ApiStyle::Cohere), Endpoint::Chat, &body, 1).unwrap();
        let sent: Value = serde_json::from_slice(c.body.as_ref().unwrap()).unwrap();
        assert!(sent.get("stream_options").is_none(), "{sent}");
    }

    #[test]
    fn workers_ai_settings_name_what_is_missing_and_refuse_an_id_that_would_change_the_path() {
        let mut w = WorkersAi::default();
        let e = w.endpoint().unwrap_err();
        assert!(
            e.contains("WORKERS_AI_ACCOUNT_ID and WORKERS_AI_API_TOKEN"),
            "{e}"
        );
        w.api_token = Some("t0ken".into());
        w.account_id = Some("abc/../x".into());
        assert!(w.endpoint().unwrap_err().contains("not an account id"));
        w.account_id = Some(" 0123abc ".into());
        assert_eq!(
            w.endpoint().unwrap(),
            (
                "https://api.cloudflare.com/client/v4/accounts/0123abc/ai/v1".to_owned(),
                "t0ken".to_owned()
            )
        );
        w.base_url = Some("http://127.0.0.1:9/cf/".into());
        assert_eq!(
            w.endpoint().unwrap().0,
            "http://127.0.0.1:9/cf/accounts/0123abc/ai/v1"
        );
        assert!(!format!("{w:?}").contains("t0ken"), "Debug hides the token");
    }
}
