//! A stand-in for the model providers keyward talks to: a real HTTP/1.1 server on
//! 127.0.0.1 that answers like OpenAI (and the OpenAI-compatible family), Azure
//! OpenAI, Gemini, Vertex AI (token endpoint and generateContent), Anthropic, Cohere
//! and Ollama, for the one key it accepts ([`GOOD_KEY`]).
//!
//! Self-contained (std, tiny_http, serde_json, base64, rsa) so that tests can include it
//! with `#[path = "../examples/provider_standin/server.rs"] mod standin;`, and
//! `cargo run --example provider_standin -- --port 0` serves it for end-to-end runs.
//!
//! Routing (the query string is ignored for routing; every path may carry a prefix):
//! - `/slow/<rest>`: waits 15 s, then answers `<rest>`; `/huge/<rest>`: 200 with a 5 MiB
//!   JSON body (Content-Length); `/huge-chunked/<rest>`: the same body, chunked;
//!   `/garbage/<rest>`: 200 `text/html` `<html>oops</html>`.
//! - `/open/<rest>`: `<rest>` as an OpenAI-compatible endpoint that needs no key.
//! - `/status/<code>/<rest>`: `<code>` with an OpenAI-shaped error body, for any method.
//! - `/cut/<rest>`: 200 `text/event-stream` with two chat chunks, then a clean end of the body
//!   without `[DONE]` (an answer cut short).
//! - `/ratelimited/<retry-after>/<rest>`: 429 in OpenAI's error shape with `Retry-After:
//!   <retry-after>` (percent-decoded, so an HTTP date fits), for any method and `<rest>`.
//! - `/redirect/<status>/<target>/<rest>`: answers `<status>` (a 3xx) with
//!   `Location: <target>/<rest>` (query kept), `<target>` being a percent-encoded URL (say
//!   another stand-in's base); a client that followed it would arrive there with its headers.
//! - `/openai/deployments/{d}[/chat/completions]?api-version=`: Azure OpenAI (`api-key`).
//! - `…/v1beta/models[/{m}[:generateContent|:streamGenerateContent]]`: Gemini
//!   (`x-goog-api-key` header or `?key=`).
//! - `POST …/token`: Google OAuth token endpoint for a service-account JWT (Vertex); each grant
//!   is a new token `ya29.standin.<n>`. `…/ttl/<secs>/token` grants tokens with that
//!   `expires_in` (default 3599); `…/refused/token` grants tokens `ya29.refused.<n>`, which the
//!   Vertex routes refuse with Google's 401 `UNAUTHENTICATED`.
//! - `…/publishers/google/models[/{m}[:generateContent]]`: Vertex AI, `Bearer ya29.standin…`.
//! - `…/v1/projects/{p}/locations/{l}/endpoints/openapi/chat/completions`: Vertex AI's
//!   OpenAI-compatible Chat Completions (streamed too), for `Bearer ya29.standin…` and models
//!   named `google/<model>` (others: Google's 400 `INVALID_ARGUMENT`).
//! - `POST …/v1/messages`, and `GET …/models` carrying `x-api-key` or
//!   `anthropic-version`: Anthropic. Offered tools (and no `tool_result` to answer), it calls
//!   the first tool or the one `tool_choice` names, every string property set to the user's
//!   text (`stop_reason: tool_use`, streamed as `input_json_delta` fragments); given tool
//!   results, it answers `echo: tool result: <results>`; it refuses, as Anthropic does, tools
//!   without `input_schema`, malformed image sources and a `tool_result` answering no `tool_use`.
//! - `/cohere/…/models`: Cohere's model list; `POST …/check-api-key`: Cohere's key check.
//! - `…/v1beta/openai/{chat/completions,embeddings,models}`: Gemini's OpenAI-compatible
//!   surface (`Authorization: Bearer <key>`; a wrong key is Google's 400 `API_KEY_INVALID`,
//!   wrapped in a one-element array as that surface sends its errors).
//! - `/cohere/…/compatibility/v1/{chat/completions,embeddings}`: Cohere's Compatibility API
//!   (Bearer; `stream_options` refused with a 400; streams carry no usage).
//! - `…/accounts/{id}/ai/v1/{chat/completions,embeddings,models}`: Workers AI's
//!   OpenAI-compatible endpoints, for [`WORKERS_AI_ACCOUNT`] and [`WORKERS_AI_TOKEN`] only, errors
//!   in Cloudflare's `{"errors": [...], "success": false}` shape.
//! - `…/accounts/{id}/ai/run/{model}`: Workers AI's own API for the Builtin reranker
//!   (`{query, contexts}`), whisper (the audio as the body), MeloTTS (`{prompt}`, base64 MP3) and
//!   LLaVA (`{prompt, image}`, the image as an array of bytes).
//! - `POST …/rerank` (Jina's shape, Bearer), `POST /cohere/…/v2/rerank` (Cohere's),
//!   `POST …/audio/transcriptions` (OpenAI's form; the transcript names the bytes heard) and
//!   `POST …/audio/speech` (chunked `audio/mpeg`), the last two also under Azure deployments.
//! - `GET …/api/tags`: Ollama (no key).
//! - `GET …/models`, `POST …/chat/completions`, `POST …/embeddings`: OpenAI (Bearer). Keys made
//!   to fail, for the relay's key pools: [`rate_limited_key`] (`sk-standin-429-<secs>-…`) answers
//!   429 with `Retry-After: <secs>`, [`FAILING_KEY`] (`sk-standin-500-…`) answers 500, and
//!   [`CUT_KEY`] (`sk-standin-cut-…`) answers whole calls as the good key but cuts a stream after
//!   its first content chunk (no `[DONE]`).
//! - anything else: 404 JSON.
//!
//! Hostile upstreams, for the relay's defences (each streamed one ends with a line
//! `standin: hostile <mode>: client gone|finished after <n> bytes, <ms> ms` on stderr, and a
//! [`HostileRecord`] in [`StandIn::hostile`]; a failed write is how it sees the client close):
//! - `/noboundary/<MiB>/<rest>`: 200 `text/event-stream`, `data: ` and then `<MiB>` mebibytes
//!   of `x` in 64 KiB chunks, never a blank line, for any method.
//! - `/idle/<secs>/<rest>`: 200 `text/event-stream`, one chat chunk, then silence for `<secs>`
//!   seconds, then a chunk every 20 ms for at most 5 s (the first writes after the silence
//!   fail when the client has closed the connection meanwhile).
//! - `/endless/<rest>`: 200 `text/event-stream`, a chat chunk every 5 ms until the client goes
//!   (or 10 minutes pass, or the stand-in stops).
//! - `/echo/<rest>` and `/echo-error/<rest>`: echo the request's credential (Bearer token,
//!   `x-api-key` or `api-key`) verbatim, upper-cased, base64 (alone and inside a `Basic`
//!   `user:key` at each of the three byte alignments), URL-safe base64 and percent-encoded,
//!   in the body and in an `x-echo-credential` header. `/echo/`: 200 for `GET …/models`,
//!   `POST …/chat/completions` (streamed too, every event written a few bytes at a time) and
//!   `POST …/embeddings`; `/echo-error/`: 401 with the forms in the error message.
#![cfg(not(target_arch = "wasm32"))]
#![allow(dead_code)]

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::{Digest, Sha256};
use rsa::signature::Verifier;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use tiny_http::{Header, Server};

/// The only API key the stand-in accepts (OpenAI, Azure, Gemini, Anthropic, Cohere).
pub const GOOD_KEY: &str = "sk-standin-good-0123456789";

/// An OpenAI key the stand-in answers 500 for, every time.
pub const FAILING_KEY: &str = "sk-standin-500-0123456789";

/// An OpenAI key whose streams stop after their first content chunk, without `[DONE]`.
pub const CUT_KEY: &str = "sk-standin-cut-0123456789";

/// An OpenAI key the stand-in answers 429 with `Retry-After: <seconds>` for, every time.
pub fn rate_limited_key(seconds: u64) -> String {
    format!("sk-standin-429-{seconds}-0123456789")
}

/// The Workers AI account the `/accounts/{id}/ai/v1/...` routes serve.
pub const WORKERS_AI_ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

/// The only Cloudflare API token the Workers AI routes accept (the deployment's, not a tenant's).
pub const WORKERS_AI_TOKEN: &str = "cf-standin-token-0123456789abcdef";

/// The prefix of every access token the Vertex token endpoint hands out (then `.<n>`), the
/// tokens the Vertex routes accept.
pub const VERTEX_ACCESS_TOKEN: &str = "ya29.standin";

/// The `expires_in` of a granted token unless the token URI says `…/ttl/<secs>/token`.
pub const VERTEX_TOKEN_LIFETIME_S: u64 = 3599;

/// Numbers the granted tokens, so each grant is told apart from the last.
static TOKENS_GRANTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether a bearer token is one the Vertex routes accept.
fn vertex_token_ok(rq: &Incoming) -> bool {
    rq.bearer().is_some_and(|t| {
        t == VERTEX_ACCESS_TOKEN
            || t.strip_prefix(VERTEX_ACCESS_TOKEN)
                .is_some_and(|n| n.starts_with('.'))
    })
}

/// How long `/slow/…` waits before answering.
pub const SLOW_DELAY: Duration = Duration::from_secs(15);

/// The size of the `/huge/…` body.
pub const HUGE_BODY_BYTES: usize = 5 * 1024 * 1024;

/// The pause between two events of a streamed (SSE) answer.
pub const STREAM_EVENT_DELAY: Duration = Duration::from_millis(20);

/// A fixed 2048-bit RSA key (PKCS#8) for Vertex service-account credentials in tests;
/// the token endpoint verifies assertions against its public half.
pub const VERTEX_TEST_PRIVATE_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDV7uoG7J3YcG4e\n\
ERVvaKAV60BN0NXgHjTCWNrZl20k1D7kGnmkft4ylbMvlJMihHqYDki+0XuX+UY7\n\
vDSHNs4CUVSWqki0Sft+YwRxotFT1gdn8BUYCRNVWDn2qqUqbB/mjOzyeTFXrsNm\n\
xUKJRkg9fWD872H+hn28UxnjMNp8p7o/IVxp76u9nYpeYlin8W1DAV4f74kUVA0f\n\
fpl89qH94DaMnxjSN90jmn1vBDsE4/P6Q53q5VV5QUHi89pHWRsxHm5FxXbCdyLH\n\
Gw7LwSuE9H+vdF/jrjNDjndZ5ZUQM7Obu57owKZvjVZMaoDvPswbMjIe/Fhhq2Z7\n\
P7ao+jXjAgMBAAECggEASTNZJ2piLjN2MlqFG5xQnn9i/t1UuT2Mru1JYQezxFTN\n\
ei5m7fatH+DiMYckezyaWBoXIRe7swoL0pe434VMozVh/LWib/IamCnYVOuxtX54\n\
BUP8a797OooYN0M3hZb+qVwSHXuDey2k1a7sb905DbUvcQyV2sn5Du3eX0MRl3IK\n\
ffl+2Q9S5Aq/mcqyLon4v0dh7r6YmY8CvtjyMrRCGoTe+EQf8PcpJyxL3d7Jf4Pw\n\
eHXswhK8ZDlxwQg+rIx5dRXtz/aWP6OJx/U+z/9o0Zc7RAzNbCmFUENHEA6KDH+l\n\
kGITujG7g6a3T7pn43iQsaNQBoq6WVG5ATyMDYFM+QKBgQDzTe3RnmxFn5XrHbEy\n\
e8gmUjPibj97iKAAkvGJCAvFHyA/scxVGLd/0+FlT3RkDJeLQKB4uZG4tJhsiuB0\n\
u2RNqHz2Vprwt49Bk+E49B1mA58lpVgCefQqnbGYpL0qLZ4xRRQLAc2qm7IlFVTp\n\
fKbmROUTj4vna3teUl9YoaDUWQKBgQDhGKTgm+rrpxzPB0+1GWWrr0o8Wbn4NRC9\n\
CxcnGUrc4lLJY37e/yH2qmPg34zVRWupKJ61J74tHRcixh8CmxkWvRmxRF2Rdjmh\n\
lYG2r2DdKkA9QxT9i/ys6pqLY6VXsEJ6rwTqFbRF0/TSYG5Q6i1oHATqnmiVIJYN\n\
wQeIV4JEmwKBgFVfPteS00MK4DwDyy1/qZdouLP3I2dhZWNOLFp87ERay6IN7Tje\n\
12SPIEPAQYLpuDMwlh5GXw+ErwdHI8NSDbwCJvb5JJzai/XiweCOJ9Kn6qv2/I7B\n\
5B8f/jUleQrXvu5i4smJ9HSs9TF17rmO97FM82SNtfWaDUvnc3VSIXDhAoGABwKW\n\
d+xDJ62fpw7qO5Cb6vndjP2aXhGBAPIseWo/O5vMyjrQA6/cZesuix1LLIUp8i2y\n\
q5+eO5dxVgLnilQ8NsoS18NySoptBww56u+RS7H6KC5DpBXM+7GeuIKU7qMtntZ+\n\
h6+/WoFcWYTpSpnQajKdMJVYWnSWV71QN73J78sCgYAKOIQv5HQbI/WuXnYvZ4GE\n\
VkoRjGYB+tZ/au9Fa0DO73oqgPAq5B4UT/Nt9dDZZMm3ikkmnVriu9ukr4m5A1z8\n\
kt+NtaafXfCdNpKbACcu774F0JxHDN7GLXGrEQfvydh5lWk++U6JSiRUp7wFk/ZB\n\
dwzop7mFdg/z0cP9x/LSlQ==\n\
-----END PRIVATE KEY-----\n";

/// A complete service-account JSON for [`VERTEX_TEST_PRIVATE_KEY_PEM`].
pub fn vertex_credentials_json(token_uri: &str, client_email: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "standin-project",
        "private_key_id": "k1",
        "private_key": VERTEX_TEST_PRIVATE_KEY_PEM,
        "client_email": client_email,
        "token_uri": token_uri,
    })
    .to_string()
}

/// One request as the stand-in received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// The request target: path with its query string.
    pub path: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body, decoded as UTF-8 (lossily).
    pub body: String,
}

impl Recorded {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    port: u16,
    stopping: AtomicBool,
    log: AtomicBool,
    /// Whether answers keep the connection open (see [`respond`]); off by default.
    keep_alive: AtomicBool,
    requests: Mutex<Vec<Recorded>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    hostile: Mutex<Vec<HostileRecord>>,
}

/// A running stand-in; dropping it stops the server and joins its threads.
pub struct StandIn {
    pub port: u16,
    server: Arc<Server>,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StandIn {
    /// Starts on 127.0.0.1 with a free port; returns once listening.
    pub fn start() -> StandIn {
        StandIn::start_on(0)
    }

    /// Starts on 127.0.0.1:`port` (0: a free port); returns once listening.
    pub fn start_on(port: u16) -> StandIn {
        let server = Server::http(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("stand-in: cannot listen on 127.0.0.1:{port}: {e}"));
        let port = server
            .server_addr()
            .to_ip()
            .expect("stand-in listens on an IP address")
            .port();
        let server = Arc::new(server);
        let shared = Arc::new(Shared {
            port,
            stopping: AtomicBool::new(false),
            log: AtomicBool::new(false),
            keep_alive: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            workers: Mutex::new(Vec::new()),
            hostile: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let server = Arc::clone(&server);
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("standin-accept".into())
                .spawn(move || accept_loop(&server, &shared))
                .expect("spawn the stand-in's accept thread")
        };
        StandIn {
            port,
            server,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:<port>`
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// How each hostile stream ended so far, oldest first.
    pub fn hostile(&self) -> Vec<HostileRecord> {
        lock(&self.shared.hostile).clone()
    }

    /// Logs one line per request (`standin: METHOD /path -> status`, no query, no
    /// headers) to stderr when on.
    pub fn set_log(&self, on: bool) {
        self.shared.log.store(on, Ordering::SeqCst);
    }

    /// Keeps connections open between answers when on (the benchmark's steady load, where a
    /// burst of new connections does not arrive); off, every answer ends with `Connection: close`.
    pub fn set_keep_alive(&self, on: bool) {
        self.shared.keep_alive.store(on, Ordering::SeqCst);
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let workers = std::mem::take(&mut *lock(&self.shared.workers));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn accept_loop(server: &Server, shared: &Arc<Shared>) {
    loop {
        match server.recv() {
            Ok(request) => {
                if shared.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let worker_shared = Arc::clone(shared);
                let spawned = thread::Builder::new()
                    .name("standin-request".into())
                    .spawn(move || handle(request, &worker_shared));
                if let Ok(handle) = spawned {
                    let mut workers = lock(&shared.workers);
                    workers.retain(|w| !w.is_finished());
                    workers.push(handle);
                }
            }
            Err(_) if shared.stopping.load(Ordering::SeqCst) => break,
            Err(_) => continue,
        }
    }
}

/// A parsed request, as the routes see it.
struct Incoming {
    method: String,
    /// Path without the query string (what routing looks at).
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: String,
    /// The body's bytes (audio forms are not text).
    raw: Vec<u8>,
}

impl Incoming {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?.trim();
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    fn with_path(&self, path: &str) -> Incoming {
        Incoming {
            method: self.method.clone(),
            path: path.to_string(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            raw: self.raw.clone(),
        }
    }
}

enum Reply {
    Json(u16, Value),
    Body {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
        chunked: bool,
    },
    /// Server-sent events, each written and flushed as its own chunk.
    Events(Vec<String>),
    /// A misbehaving answer, written by hand (see [`serve_hostile`]).
    Hostile(Hostile),
    /// A 3xx with this `Location`.
    Redirect(u16, String),
    /// A 429 with this `Retry-After`.
    RateLimited(String),
}

impl Reply {
    fn status(&self) -> u16 {
        match self {
            Reply::Json(status, _) => *status,
            Reply::Body { status, .. } => *status,
            Reply::Events(_) => 200,
            Reply::Hostile(h) => h.status(),
            Reply::Redirect(status, _) => *status,
            Reply::RateLimited(_) => 429,
        }
    }
}

fn handle(mut request: tiny_http::Request, shared: &Shared) {
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let target = request.url().to_string();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let method = request.method().as_str().to_ascii_uppercase();
    let raw = body;
    let body = String::from_utf8_lossy(&raw).into_owned();
    lock(&shared.requests).push(Recorded {
        method: method.clone(),
        path: target.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });

    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), parse_form(q)),
        None => (target.clone(), Vec::new()),
    };
    let incoming = Incoming {
        method,
        path,
        query,
        headers,
        body,
        raw,
    };
    let Some(reply) = route(&incoming, shared) else {
        return; // shutting down in the middle of a slow answer
    };
    if shared.log.load(Ordering::SeqCst) {
        eprintln!(
            "standin: {} {} -> {}",
            incoming.method,
            incoming.path,
            reply.status()
        );
    }
    match reply {
        Reply::Hostile(h) => serve_hostile(request, h, &incoming.path, shared),
        reply => send(request, reply, !shared.keep_alive.load(Ordering::SeqCst)),
    }
}

fn send(request: tiny_http::Request, reply: Reply, close: bool) {
    let http10 = *request.http_version() <= (1, 0);
    let (status, content_type, body, chunked) = match reply {
        Reply::Json(status, value) => (
            status,
            "application/json",
            value.to_string().into_bytes(),
            false,
        ),
        Reply::Body {
            status,
            content_type,
            body,
            chunked,
        } => (status, content_type, body, chunked),
        Reply::Events(events) if http10 => (
            200,
            "text/event-stream",
            events.concat().into_bytes(),
            false,
        ),
        Reply::Events(events) => return stream_events(request, events, close),
        Reply::Hostile(_) => unreachable!("hostile answers are served by serve_hostile"),
        Reply::Redirect(status, location) => {
            return send_redirect(request, status, &location, close)
        }
        Reply::RateLimited(retry_after) => return send_rate_limited(request, &retry_after, close),
    };
    respond(
        request,
        status,
        &[("Content-Type", content_type)],
        &body,
        chunked,
        close,
    );
}

/// Writes a whole answer by hand, with `Connection: close` when `close`.
///
/// tiny_http serves each connection on a pool thread until the client closes it, and its pool
/// can leave a connection that arrives in a burst queued behind idle keep-alive connections for
/// seconds. Closing after every answer keeps the stand-in answering everything at once, as a
/// provider behind a load balancer does. (tiny_http itself refuses a `Connection` header.)
fn respond(
    request: tiny_http::Request,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    chunked: bool,
    close: bool,
) {
    let reason = tiny_http::StatusCode(status).default_reason_phrase();
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let connection = if close { "Connection: close\r\n" } else { "" };
    head.push_str(&format!("{framing}\r\n{connection}\r\n"));
    let mut out = head.into_bytes();
    if chunked {
        if !body.is_empty() {
            out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(body);
    }
    let mut writer = request.into_writer();
    let _ = writer.write_all(&out).and_then(|()| writer.flush());
}

/// Writes the answer by hand so that each event leaves as its own, flushed chunk.
fn stream_events(request: tiny_http::Request, events: Vec<String>, close: bool) {
    let mut writer = request.into_writer();
    let connection = if close { "Connection: close\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
         Transfer-Encoding: chunked\r\n{connection}\r\n"
    );
    let mut write = |bytes: &[u8]| -> std::io::Result<()> {
        writer.write_all(bytes)?;
        writer.flush()
    };
    if write(head.as_bytes()).is_err() {
        return;
    }
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            thread::sleep(STREAM_EVENT_DELAY);
        }
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        if write(chunk.as_bytes()).is_err() {
            return;
        }
    }
    let _ = write(b"0\r\n\r\n");
}

fn json_reply(status: u16, value: Value) -> Option<Reply> {
    Some(Reply::Json(status, value))
}

fn route(rq: &Incoming, shared: &Shared) -> Option<Reply> {
    let path = rq.path.as_str();
    let method = rq.method.as_str();

    // Hostile upstreams: their own block, see hostile_route.
    if let Some(reply) = hostile_route(rq) {
        return Some(reply);
    }
    if let Some(rest) = path.strip_prefix("/slow/") {
        let deadline = Instant::now() + SLOW_DELAY;
        while Instant::now() < deadline {
            if shared.stopping.load(Ordering::SeqCst) {
                return None;
            }
            thread::sleep(Duration::from_millis(25));
        }
        return route(&rq.with_path(&format!("/{rest}")), shared);
    }
    if path.starts_with("/huge/") || path.starts_with("/huge-chunked/") {
        return Some(Reply::Body {
            status: 200,
            content_type: "application/json",
            body: huge_body(),
            chunked: path.starts_with("/huge-chunked/"),
        });
    }
    if path.starts_with("/garbage/") {
        return Some(Reply::Body {
            status: 200,
            content_type: "text/html",
            body: b"<html>oops</html>".to_vec(),
            chunked: false,
        });
    }
    if let Some(rest) = path.strip_prefix("/ratelimited/") {
        let value = rest.split('/').next().unwrap_or("");
        return Some(Reply::RateLimited(percent_decode(value)));
    }
    if let Some(rest) = path.strip_prefix("/redirect/") {
        return redirect(rq, rest).or_else(|| not_found(rq));
    }
    if let Some(rest) = path.strip_prefix("/open/") {
        return openai_routes(&rq.with_path(&format!("/{rest}")), true).or_else(|| not_found(rq));
    }
    if let Some(rest) = path.strip_prefix("/status/") {
        let code = rest.split('/').next().and_then(|c| c.parse::<u16>().ok());
        return match code.filter(|c| (400..600).contains(c)) {
            Some(code) => json_reply(
                code,
                json!({"error": {
                    "message": format!("the stand-in answers {code} here"),
                    "type": "standin_error", "param": null, "code": format!("standin_{code}"),
                }}),
            ),
            None => not_found(rq),
        };
    }
    if path.starts_with("/cut/") {
        let chunk = |content: &str| {
            sse_data(&json!({
                "id": "chatcmpl-cut", "object": "chat.completion.chunk", "created": 1_700_000_000u64,
                "model": "cut", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}],
            }))
        };
        return Some(Reply::Events(vec![chunk("half"), chunk(" an answer")]));
    }
    if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        return azure(rq, rest).or_else(|| not_found(rq));
    }
    if path.contains("/v1beta/openai/") {
        return gemini_openai(rq).or_else(|| not_found(rq));
    }
    if path.starts_with("/cohere/") && path.contains("/compatibility/v1/") {
        return cohere_compat(rq).or_else(|| not_found(rq));
    }
    if path.starts_with("/cohere/") && path.ends_with("/v2/rerank") && method == "POST" {
        return cohere_rerank(rq);
    }
    if let Some(reply) = workers_ai(rq) {
        return Some(reply);
    }
    if path.contains("/endpoints/openapi/") {
        return vertex_openai(rq).or_else(|| not_found(rq));
    }
    if path.contains("/v1beta/models") {
        return gemini(rq).or_else(|| not_found(rq));
    }
    if method == "POST" && path.ends_with("/token") {
        return vertex_token(rq, shared.port);
    }
    if path.contains("/publishers/google/models") {
        return vertex(rq).or_else(|| not_found(rq));
    }
    if path.ends_with("/api/tags") && method == "GET" {
        return json_reply(200, json!({"models": [{"name": "llama3.2:latest"}]}));
    }
    if method == "POST" && path.ends_with("/v1/messages") {
        return anthropic_messages(rq);
    }
    if method == "GET"
        && path.ends_with("/models")
        && (rq.header("x-api-key").is_some() || rq.header("anthropic-version").is_some())
    {
        return anthropic_models(rq);
    }
    if path.starts_with("/cohere/") && path.ends_with("/models") && method == "GET" {
        return cohere_models(rq);
    }
    if method == "POST" && path.ends_with("/check-api-key") {
        return cohere_check_key(rq);
    }
    openai_routes(rq, false).or_else(|| not_found(rq))
}

fn not_found(rq: &Incoming) -> Option<Reply> {
    json_reply(
        404,
        json!({"error": {
            "message": format!("The stand-in has no route for {} {}", rq.method, rq.path),
            "type": "not_found",
            "code": "not_found",
        }}),
    )
}

fn huge_body() -> Vec<u8> {
    let prefix = b"{\"data\":\"";
    let suffix = b"\"}";
    let mut body = Vec::with_capacity(HUGE_BODY_BYTES);
    body.extend_from_slice(prefix);
    body.resize(HUGE_BODY_BYTES - suffix.len(), b'a');
    body.extend_from_slice(suffix);
    body
}

// ---------- OpenAI and the OpenAI-compatible family ----------

fn openai_unauthorized() -> Option<Reply> {
    json_reply(
        401,
        json!({"error": {
            "message": "Incorrect API key provided.",
            "type": "invalid_request_error",
            "param": null,
            "code": "invalid_api_key",
        }}),
    )
}

fn openai_bad_request(message: &str, param: &str) -> Option<Reply> {
    json_reply(
        400,
        json!({"error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": null,
        }}),
    )
}

/// `None` when the path is not an OpenAI route.
fn openai_routes(rq: &Incoming, keyless: bool) -> Option<Reply> {
    let path = rq.path.as_str();
    let kind = match rq.method.as_str() {
        "GET" if path.ends_with("/models") => "models",
        "POST" if path.ends_with("/chat/completions") => "chat",
        "POST" if path.ends_with("/embeddings") => "embeddings",
        "POST" if path.ends_with("/rerank") => "rerank",
        "POST" if path.ends_with("/audio/transcriptions") => "transcriptions",
        "POST" if path.ends_with("/audio/speech") => "speech",
        _ => return None,
    };
    let bearer = rq.bearer().unwrap_or_default();
    if let Some(rest) = bearer.strip_prefix("sk-standin-429-").filter(|_| !keyless) {
        return Some(Reply::RateLimited(
            rest.split('-').next().unwrap_or("1").to_string(),
        ));
    }
    if bearer == FAILING_KEY && !keyless {
        return json_reply(
            500,
            json!({"error": {
                "message": "The server had an error while processing your request.",
                "type": "server_error", "param": null, "code": null,
            }}),
        );
    }
    if bearer == CUT_KEY && !keyless && kind == "chat" {
        let streamed = rq
            .json()
            .and_then(|b| b.get("stream").and_then(Value::as_bool))
            == Some(true);
        if streamed {
            let Some(Reply::Events(events)) = openai_chat(rq, None) else {
                return openai_bad_request(
                    "We could not parse the JSON body of your request.",
                    "body",
                );
            };
            // The role chunk and the first content chunk, then the body ends.
            return Some(Reply::Events(events.into_iter().take(2).collect()));
        }
        return openai_chat(rq, None);
    }
    if !keyless && bearer != GOOD_KEY {
        return openai_unauthorized();
    }
    match kind {
        "models" => json_reply(
            200,
            json!({"object": "list", "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 1_700_000_000, "owned_by": "standin"},
                {"id": "text-embedding-3-small", "object": "model", "created": 1_700_000_000, "owned_by": "standin"},
            ]}),
        ),
        "chat" => openai_chat(rq, None),
        "rerank" => jina_rerank(rq),
        "transcriptions" => openai_transcription(rq),
        "speech" => openai_speech(rq),
        _ => openai_embeddings(rq),
    }
}

/// The text of an OpenAI/Anthropic message `content`: a string or an array of parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Deterministic prompt size: whitespace-separated words of every message plus 3 per message.
fn prompt_tokens(messages: &[Value]) -> u64 {
    messages
        .iter()
        .map(|m| words(&content_text(m.get("content"))) + 3)
        .sum()
}

fn last_user_text(messages: &[Value]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content")))
        .unwrap_or_default()
}

fn completion_tokens(limit: Option<u64>) -> u64 {
    limit.unwrap_or(5).min(5)
}

/// The answer split into stream pieces that concatenate back to it.
fn pieces(text: &str) -> Vec<String> {
    text.split(' ')
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

fn sse_data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

fn openai_chat(rq: &Incoming, deployment: Option<&str>) -> Option<Reply> {
    let Some(body) = rq.json() else {
        return openai_bad_request("We could not parse the JSON body of your request.", "body");
    };
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return openai_bad_request("Missing required parameter: 'messages'.", "messages");
    };
    if messages.is_empty() {
        return openai_bad_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            "messages",
        );
    }
    let model = deployment
        .map(|_| "gpt-4o".to_string())
        .or_else(|| {
            body.get("model")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "gpt-4o-mini".to_string());
    let text = format!("echo: {}", last_user_text(messages));
    let prompt = prompt_tokens(messages);
    let limit = body
        .get("max_tokens")
        .and_then(Value::as_u64)
        .or_else(|| body.get("max_completion_tokens").and_then(Value::as_u64));
    let completion = completion_tokens(limit);
    let usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    let id = "chatcmpl-standin";
    let created = 1_700_000_000u64;

    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return json_reply(
            200,
            json!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }],
                "usage": usage,
            }),
        );
    }

    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        sse_data(&c)
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for piece in pieces(&text) {
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        events.push(sse_data(&json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        })));
    }
    events.push("data: [DONE]\n\n".to_string());
    Some(Reply::Events(events))
}

fn embedding_for(text: &str) -> Vec<f64> {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| (f64::from(*b) / 127.5 - 1.0) * 1000.0)
        .map(|x| x.round() / 1000.0)
        .collect()
}

fn openai_embeddings(rq: &Incoming) -> Option<Reply> {
    let Some(body) = rq.json() else {
        return openai_bad_request("We could not parse the JSON body of your request.", "body");
    };
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => {
            return openai_bad_request("Missing required parameter: 'input'.", "input");
        }
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("text-embedding-3-small");
    let tokens: u64 = inputs.iter().map(|s| words(s)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"object": "embedding", "index": i, "embedding": embedding_for(s)}))
        .collect();
    json_reply(
        200,
        json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }),
    )
}

// ---------- Azure OpenAI ----------

fn azure(rq: &Incoming, rest: &str) -> Option<Reply> {
    let (deployment, tail) = match rest.split_once('/') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let op = match (rq.method.as_str(), tail) {
        ("GET", "") => "get",
        ("POST", "chat/completions") => "chat",
        ("POST", "embeddings") => "embeddings",
        ("POST", "audio/transcriptions") => "transcriptions",
        ("POST", "audio/speech") => "speech",
        _ => return None,
    };
    if rq.query("api-version").is_none_or(str::is_empty) {
        return json_reply(
            404,
            json!({"error": {"code": "404", "message": "Resource not found"}}),
        );
    }
    if rq.header("api-key") != Some(GOOD_KEY) {
        return json_reply(
            401,
            json!({"error": {
                "code": "401",
                "message": "Access denied due to invalid subscription key or wrong API endpoint.",
            }}),
        );
    }
    if deployment.is_empty() || deployment == "missing" {
        return json_reply(
            404,
            json!({"error": {
                "code": "DeploymentNotFound",
                "message": "The API deployment for this resource does not exist.",
            }}),
        );
    }
    match op {
        "get" => json_reply(
            200,
            json!({"id": deployment, "model": "gpt-4o", "status": "succeeded", "object": "deployment"}),
        ),
        "chat" => openai_chat(rq, Some(deployment)),
        "transcriptions" => openai_transcription(rq),
        "speech" => openai_speech(rq),
        _ => openai_embeddings(rq),
    }
}

// ---------- Gemini (and Vertex generateContent) ----------

fn gemini_error(code: u16, status: &str, message: &str) -> Option<Reply> {
    json_reply(
        code,
        json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

fn gemini(rq: &Incoming) -> Option<Reply> {
    let (_, rest) = rq.path.split_once("/v1beta/models")?;
    let op = match (rq.method.as_str(), rest) {
        ("GET", "") | ("GET", "/") => GeminiOp::List,
        ("GET", r) if r.starts_with('/') && !r.contains(':') => GeminiOp::Get(&r[1..]),
        ("POST", r) if r.starts_with('/') => match r[1..].split_once(':') {
            Some((model, "generateContent")) => GeminiOp::Generate(model, false),
            Some((model, "streamGenerateContent")) => GeminiOp::Generate(model, true),
            _ => return None,
        },
        _ => return None,
    };
    let key = rq.header("x-goog-api-key").or_else(|| rq.query("key"));
    match key {
        None | Some("") => {
            return gemini_error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            )
        }
        Some(k) if k != GOOD_KEY => {
            return gemini_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
            )
        }
        Some(_) => {}
    }
    match op {
        GeminiOp::List => json_reply(
            200,
            json!({"models": [{
                "name": "models/gemini-2.5-flash",
                "displayName": "Gemini 2.5 Flash",
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }]}),
        ),
        GeminiOp::Get(model) => json_reply(
            200,
            json!({"name": format!("models/{model}"), "displayName": model}),
        ),
        GeminiOp::Generate(model, stream) => generate_content(rq, model, stream),
    }
}

enum GeminiOp<'a> {
    List,
    Get(&'a str),
    Generate(&'a str, bool),
}

fn gemini_text(content: &Value) -> String {
    content
        .get("parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn generate_content(rq: &Incoming, model: &str, stream: bool) -> Option<Reply> {
    let body = rq.json();
    let contents = body
        .as_ref()
        .and_then(|b| b.get("contents"))
        .and_then(Value::as_array);
    let Some(contents) = contents.filter(|c| !c.is_empty()) else {
        return gemini_error(
            400,
            "INVALID_ARGUMENT",
            "* GenerateContentRequest.contents: contents is not specified\n",
        );
    };
    let last_user = contents
        .iter()
        .rev()
        .find(|c| c.get("role").and_then(Value::as_str).unwrap_or("user") == "user")
        .map(gemini_text)
        .unwrap_or_default();
    let text = format!("echo: {last_user}");
    let prompt: u64 = contents.iter().map(|c| words(&gemini_text(c)) + 3).sum();
    let limit = body
        .as_ref()
        .and_then(|b| b.pointer("/generationConfig/maxOutputTokens"))
        .and_then(Value::as_u64);
    let completion = completion_tokens(limit);
    let usage = json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": completion,
        "totalTokenCount": prompt + completion,
    });
    let candidate = |text: &str, finish: bool| {
        let mut c = json!({
            "content": {"role": "model", "parts": [{"text": text}]},
            "index": 0,
        });
        if finish {
            c["finishReason"] = json!("STOP");
        }
        c
    };
    if !stream {
        return json_reply(
            200,
            json!({
                "candidates": [candidate(&text, true)],
                "usageMetadata": usage,
                "modelVersion": model,
            }),
        );
    }
    let parts = pieces(&text);
    let last = parts.len() - 1;
    let chunks: Vec<Value> = parts
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut c = json!({"candidates": [candidate(piece, i == last)], "modelVersion": model});
            if i == last {
                c["usageMetadata"] = usage.clone();
            }
            c
        })
        .collect();
    if rq.query("alt") == Some("sse") {
        Some(Reply::Events(chunks.iter().map(sse_data).collect()))
    } else {
        json_reply(200, Value::Array(chunks))
    }
}

fn vertex(rq: &Incoming) -> Option<Reply> {
    let (_, rest) = rq.path.split_once("/publishers/google/models")?;
    let op = match (rq.method.as_str(), rest) {
        ("GET", "") | ("GET", "/") => GeminiOp::List,
        ("GET", r) if r.starts_with('/') && !r.contains(':') => GeminiOp::Get(&r[1..]),
        ("POST", r) if r.starts_with('/') => match r[1..].split_once(':') {
            Some((model, "generateContent")) => GeminiOp::Generate(model, false),
            Some((model, "streamGenerateContent")) => GeminiOp::Generate(model, true),
            _ => return None,
        },
        _ => return None,
    };
    if !vertex_token_ok(rq) {
        return gemini_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    match op {
        GeminiOp::List => json_reply(
            200,
            json!({"publisherModels": [{"name": "publishers/google/models/gemini-2.5-flash"}]}),
        ),
        GeminiOp::Get(model) => json_reply(
            200,
            json!({"name": format!("publishers/google/models/{model}")}),
        ),
        GeminiOp::Generate(model, stream) => generate_content(rq, model, stream),
    }
}

/// Vertex AI's OpenAI-compatible endpoint:
/// `/v1/projects/{p}/locations/{l}/endpoints/openapi/chat/completions`. Errors in Google's shape.
fn vertex_openai(rq: &Incoming) -> Option<Reply> {
    let (before, op) = rq.path.split_once("/endpoints/openapi/")?;
    let (_, scope) = before.split_once("/v1/projects/")?;
    let located = matches!(scope.split('/').collect::<Vec<_>>().as_slice(),
        [project, "locations", location] if !project.is_empty() && !location.is_empty());
    if !located || rq.method != "POST" || op != "chat/completions" {
        return None;
    }
    if !vertex_token_ok(rq) {
        return gemini_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    let model = rq
        .json()
        .and_then(|b| b.get("model").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    if !model.starts_with("google/") {
        return gemini_error(
            400,
            "INVALID_ARGUMENT",
            &format!("Publisher model `{model}` is not found or not supported; Google models are named google/<model>."),
        );
    }
    openai_chat(rq, None)
}

// ---------- Vertex token endpoint ----------

fn vertex_public_key() -> &'static RsaPublicKey {
    static KEY: OnceLock<RsaPublicKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let private = RsaPrivateKey::from_pkcs8_pem(VERTEX_TEST_PRIVATE_KEY_PEM)
            .expect("the embedded test key parses");
        RsaPublicKey::from(&private)
    })
}

fn b64url(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}

fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

/// Checks an RS256 service-account assertion; `audiences` are the accepted `aud` values.
fn jwt_ok(assertion: &str, audiences: &[String]) -> bool {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return false;
    };
    let decode_json = |part: &str| -> Option<Value> { serde_json::from_slice(&b64url(part)?).ok() };
    let (Some(head), Some(claims), Some(sig)) =
        (decode_json(header), decode_json(payload), b64url(signature))
    else {
        return false;
    };
    if head.get("alg").and_then(Value::as_str) != Some("RS256") {
        return false;
    }
    let Ok(sig) = Signature::try_from(sig.as_slice()) else {
        return false;
    };
    let verifier = VerifyingKey::<Sha256>::new(vertex_public_key().clone());
    let signed = format!("{header}.{payload}");
    if verifier.verify(signed.as_bytes(), &sig).is_err() {
        return false;
    }
    let non_empty = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    let aud_ok = claims
        .get("aud")
        .and_then(Value::as_str)
        .is_some_and(|aud| audiences.iter().any(|a| a == aud));
    let times_ok = match (number(claims.get("iat")), number(claims.get("exp"))) {
        (Some(iat), Some(exp)) => exp > iat && exp - iat <= 3600.0,
        _ => false,
    };
    non_empty("iss") && non_empty("scope") && aud_ok && times_ok
}

fn vertex_token(rq: &Incoming, port: u16) -> Option<Reply> {
    let form = parse_form(&rq.body);
    let field = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let mut audiences = vec![
        format!("http://127.0.0.1:{port}{}", rq.path),
        format!("http://localhost:{port}{}", rq.path),
    ];
    if let Some(host) = rq.header("host") {
        audiences.push(format!("http://{host}{}", rq.path));
    }
    let ok = field("grant_type") == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        && field("assertion").is_some_and(|a| jwt_ok(a, &audiences));
    if ok {
        let n = TOKENS_GRANTED.fetch_add(1, Ordering::SeqCst) + 1;
        let prefix = if rq.path.ends_with("/refused/token") {
            "ya29.refused"
        } else {
            VERTEX_ACCESS_TOKEN
        };
        let lifetime = rq
            .path
            .split_once("/ttl/")
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|secs| secs.parse::<u64>().ok())
            .unwrap_or(VERTEX_TOKEN_LIFETIME_S);
        json_reply(
            200,
            json!({"access_token": format!("{prefix}.{n}"), "expires_in": lifetime, "token_type": "Bearer"}),
        )
    } else {
        json_reply(
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        )
    }
}

/// `application/x-www-form-urlencoded` (also query strings) into name/value pairs.
fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------- redirects ----------

/// `<status>/<target>/<rest>` of a `/redirect/` path: `<status>` must be a 3xx; the Location is
/// the decoded `<target>` joined with `<rest>` and the request's query.
fn redirect(rq: &Incoming, rest: &str) -> Option<Reply> {
    let (status, rest) = rest.split_once('/')?;
    let status: u16 = status.parse().ok().filter(|s| (300..400).contains(s))?;
    let (target, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let mut location = percent_decode(target).trim_end_matches('/').to_string();
    if !tail.is_empty() {
        location = format!("{location}/{tail}");
    }
    if !rq.query.is_empty() {
        let pairs: Vec<String> = rq.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        location = format!("{location}?{}", pairs.join("&"));
    }
    Some(Reply::Redirect(status, location))
}

fn send_rate_limited(request: tiny_http::Request, retry_after: &str, close: bool) {
    let body = json!({"error": {"message": "Rate limit reached for requests", "type": "requests",
        "code": "rate_limit_exceeded"}});
    let mut headers = vec![("Content-Type", "application/json")];
    if Header::from_bytes("Retry-After", retry_after.as_bytes()).is_ok() {
        headers.push(("Retry-After", retry_after));
    }
    respond(
        request,
        429,
        &headers,
        body.to_string().as_bytes(),
        false,
        close,
    );
}

fn send_redirect(request: tiny_http::Request, status: u16, location: &str, close: bool) {
    let body = json!({"error": {"message": format!("moved to {location}"), "type": "redirect"}});
    let mut headers = vec![("Content-Type", "application/json")];
    if Header::from_bytes("Location", location.as_bytes()).is_ok() {
        headers.push(("Location", location));
    }
    respond(
        request,
        status,
        &headers,
        body.to_string().as_bytes(),
        false,
        close,
    );
}

// ---------- Anthropic ----------

fn anthropic_error(status: u16, kind: &str, message: &str) -> Option<Reply> {
    json_reply(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

/// `Some(error reply)` unless the key is good and `anthropic-version` is present.
fn anthropic_auth(rq: &Incoming) -> Option<Reply> {
    match rq.header("x-api-key") {
        None => anthropic_error(401, "authentication_error", "x-api-key header is required"),
        Some(k) if k != GOOD_KEY => {
            anthropic_error(401, "authentication_error", "invalid x-api-key")
        }
        Some(_) if rq.header("anthropic-version").is_none() => anthropic_error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        ),
        Some(_) => None,
    }
}

fn anthropic_models(rq: &Incoming) -> Option<Reply> {
    if let Some(error) = anthropic_auth(rq) {
        return Some(error);
    }
    json_reply(
        200,
        json!({
            "data": [{
                "id": "claude-sonnet-4-5",
                "type": "model",
                "display_name": "Claude Sonnet 4.5",
                "created_at": "2025-09-29T00:00:00Z",
            }],
            "has_more": false,
            "first_id": "claude-sonnet-4-5",
            "last_id": "claude-sonnet-4-5",
        }),
    )
}

fn anthropic_messages(rq: &Incoming) -> Option<Reply> {
    if let Some(error) = anthropic_auth(rq) {
        return Some(error);
    }
    let Some(body) = rq.json() else {
        return anthropic_error(
            400,
            "invalid_request_error",
            "The request body is not valid JSON.",
        );
    };
    let Some(messages) = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return anthropic_error(400, "invalid_request_error", "messages: Field required");
    };
    if let Some(problem) = anthropic_invalid(&body, messages) {
        return anthropic_error(400, "invalid_request_error", &problem);
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-sonnet-4-5")
        .to_string();
    let input = prompt_tokens(messages) + words(&content_text(body.get("system")));
    let output = completion_tokens(body.get("max_tokens").and_then(Value::as_u64));
    let id = "msg_standin";
    let last = messages.last().unwrap_or(&Value::Null);
    let results = anthropic_tool_results(last);
    let images = anthropic_images(last);
    // With tools on offer and no result to answer, the model calls the first tool (or the one
    // `tool_choice` names), with every string property of its schema set to the user's text.
    let call = match (
        results.is_empty(),
        body.get("tools").and_then(Value::as_array),
    ) {
        (true, Some(tools)) if body.pointer("/tool_choice/type") != Some(&json!("none")) => {
            let named = body.pointer("/tool_choice/name").and_then(Value::as_str);
            tools
                .iter()
                .find(|t| named.is_none() || t.get("name").and_then(Value::as_str) == named)
                .map(|t| {
                    let name = t.get("name").and_then(Value::as_str).unwrap_or("tool");
                    let mut input = serde_json::Map::new();
                    if let Some(props) = t
                        .pointer("/input_schema/properties")
                        .and_then(Value::as_object)
                    {
                        for (k, v) in props {
                            if v.get("type") == Some(&json!("string")) {
                                input.insert(k.clone(), json!(last_user_text(messages)));
                            }
                        }
                    }
                    (name.to_string(), Value::Object(input))
                })
        }
        _ => None,
    };
    let text = match &call {
        Some((name, _)) => format!("calling {name}"),
        None if !results.is_empty() => format!("echo: tool result: {}", results.join(", ")),
        None if images > 0 => format!("echo: {} (+{images} image)", last_user_text(messages)),
        None => format!("echo: {}", last_user_text(messages)),
    };
    let stop_reason = if call.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    let tool_id = "toolu_standin_01";

    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        let mut content = vec![json!({"type": "text", "text": text})];
        if let Some((name, input)) = &call {
            content.push(json!({"type": "tool_use", "id": tool_id, "name": name, "input": input}));
        }
        return json_reply(
            200,
            json!({
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": output},
            }),
        );
    }
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": 1},
            }}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    for piece in pieces(&text) {
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    if let Some((name, input)) = &call {
        // As Anthropic streams a tool_use block: the block with an empty input, then the input's
        // JSON in `input_json_delta` fragments (the first one empty), then the block's end.
        events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block":
                {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}),
        ));
        let json_text = input.to_string();
        let mut fragments = vec![String::new()];
        let chars: Vec<char> = json_text.chars().collect();
        fragments.extend(chars.chunks(7).map(|c| c.iter().collect::<String>()));
        for f in fragments {
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": f}}),
            ));
        }
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ));
    }
    events.push(event(
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": output},
        }),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    Some(Reply::Events(events))
}

/// What Anthropic would refuse with a 400 in the parts the relay translates: tools without a
/// name or an object `input_schema`, an unknown `tool_choice`, malformed image sources, and a
/// `tool_result` that answers no `tool_use` of the assistant turn just before it.
fn anthropic_invalid(body: &Value, messages: &[Value]) -> Option<String> {
    if let Some(tools) = body.get("tools") {
        let Some(tools) = tools.as_array() else {
            return Some("tools: Input should be a valid list".into());
        };
        for (i, t) in tools.iter().enumerate() {
            if t.get("name").and_then(Value::as_str).is_none() {
                return Some(format!("tools.{i}.name: Field required"));
            }
            if !t.get("input_schema").is_some_and(Value::is_object) {
                return Some(format!("tools.{i}.input_schema: Field required"));
            }
        }
    }
    if let Some(c) = body.get("tool_choice") {
        match c.get("type").and_then(Value::as_str) {
            Some("auto" | "any" | "none") => {}
            Some("tool") if c.get("name").and_then(Value::as_str).is_some() => {}
            _ => return Some("tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'".into()),
        }
    }
    for (i, m) in messages.iter().enumerate() {
        let blocks = m
            .get("content")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (j, b) in blocks.iter().enumerate() {
            match b.get("type").and_then(Value::as_str) {
                Some("image") => {
                    let src = b.get("source").unwrap_or(&Value::Null);
                    let ok = match src.get("type").and_then(Value::as_str) {
                        Some("base64") => {
                            src.get("media_type")
                                .and_then(Value::as_str)
                                .is_some_and(|t| t.starts_with("image/"))
                                && src.get("data").and_then(Value::as_str).is_some_and(|d| {
                                    base64::engine::general_purpose::STANDARD.decode(d).is_ok()
                                })
                        }
                        Some("url") => src
                            .get("url")
                            .and_then(Value::as_str)
                            .is_some_and(|u| u.starts_with("http")),
                        _ => false,
                    };
                    if !ok {
                        return Some(format!(
                            "messages.{i}.content.{j}.image.source: invalid image source"
                        ));
                    }
                }
                Some("tool_result") => {
                    let id = b
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let asked = i > 0
                        && messages[i - 1]
                            .get("content")
                            .and_then(Value::as_array)
                            .is_some_and(|prev| {
                                prev.iter().any(|p| {
                                    p.get("type") == Some(&json!("tool_use"))
                                        && p.get("id").and_then(Value::as_str) == Some(id)
                                })
                            });
                    if !asked {
                        return Some(format!(
                            "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    None
}

/// The contents of the `tool_result` blocks of a user turn.
fn anthropic_tool_results(m: &Value) -> Vec<String> {
    m.get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type") == Some(&json!("tool_result")))
                .map(|b| content_text(b.get("content")))
                .collect()
        })
        .unwrap_or_default()
}

/// How many image blocks a turn carries.
fn anthropic_images(m: &Value) -> usize {
    m.get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type") == Some(&json!("image")))
                .count()
        })
        .unwrap_or(0)
}

// ---------- Cohere ----------

fn cohere_unauthorized() -> Option<Reply> {
    json_reply(401, json!({"message": "invalid api token"}))
}

fn cohere_models(rq: &Incoming) -> Option<Reply> {
    if rq.bearer() != Some(GOOD_KEY) {
        return cohere_unauthorized();
    }
    json_reply(
        200,
        json!({"models": [{"name": "command-r", "endpoints": ["chat", "generate"]}]}),
    )
}

/// Cohere's Compatibility API: OpenAI's bodies, Cohere's errors (`{"id", "message"}`).
fn cohere_compat(rq: &Incoming) -> Option<Reply> {
    let path = rq.path.as_str();
    let chat = rq.method == "POST" && path.ends_with("/chat/completions");
    let embeddings = rq.method == "POST" && path.ends_with("/embeddings");
    if !chat && !embeddings {
        return None;
    }
    if rq.bearer() != Some(GOOD_KEY) {
        return cohere_unauthorized();
    }
    if chat && rq.json().is_some_and(|b| b.get("stream_options").is_some()) {
        return json_reply(
            400,
            json!({"id": "standin-cohere-400", "message": "invalid request: stream_options is not supported"}),
        );
    }
    if chat {
        openai_chat(rq, None)
    } else {
        openai_embeddings(rq)
    }
}

/// Gemini's OpenAI-compatible surface. Errors come as Google's error object in a one-element
/// array.
fn gemini_openai(rq: &Incoming) -> Option<Reply> {
    let path = rq.path.as_str();
    let op = match rq.method.as_str() {
        "POST" if path.ends_with("/chat/completions") => "chat",
        "POST" if path.ends_with("/embeddings") => "embeddings",
        "GET" if path.ends_with("/models") => "models",
        _ => return None,
    };
    let google_error = |code: u16, status: &str, message: &str, reason: Option<&str>| {
        let mut e = json!({"code": code, "message": message, "status": status});
        if let Some(reason) = reason {
            e["details"] = json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason, "domain": "googleapis.com"}]);
        }
        json_reply(code, json!([{"error": e}]))
    };
    match rq.bearer() {
        None | Some("") => {
            return google_error(
                401,
                "UNAUTHENTICATED",
                "Request is missing required authentication credential.",
                Some("CREDENTIALS_MISSING"),
            )
        }
        Some(k) if k != GOOD_KEY => {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                Some("API_KEY_INVALID"),
            )
        }
        Some(_) => {}
    }
    match op {
        "chat" => openai_chat(rq, None),
        "embeddings" => openai_embeddings(rq),
        _ => json_reply(
            200,
            json!({"object": "list", "data": [
                {"id": "models/gemini-2.5-flash", "object": "model", "owned_by": "google"},
            ]}),
        ),
    }
}

/// Workers AI's OpenAI-compatible endpoints under `/accounts/{id}/ai/v1/`; `None` for other paths.
fn workers_ai(rq: &Incoming) -> Option<Reply> {
    let (_, rest) = rq.path.split_once("/accounts/")?;
    let (account, tail) = rest.split_once('/')?;
    let run = tail.strip_prefix("ai/run/");
    let tail = match run {
        Some(_) => "",
        None => tail.strip_prefix("ai/v1/")?,
    };
    let cf_error = |status: u16, code: u32, message: &str| {
        json_reply(
            status,
            json!({"errors": [{"code": code, "message": message}], "success": false,
                "result": null, "messages": []}),
        )
    };
    if rq.bearer() != Some(WORKERS_AI_TOKEN) {
        return cf_error(401, 10000, "Authentication error");
    }
    if account != WORKERS_AI_ACCOUNT {
        return cf_error(
            404,
            7003,
            "Could not route to /client/v4/accounts, perhaps your object identifier is invalid?",
        );
    }
    if let Some(model) = run {
        return workers_ai_run(rq, model).or_else(|| cf_error(400, 5007, "No such model or task"));
    }
    let model = rq
        .json()
        .and_then(|b| b.get("model").and_then(Value::as_str).map(str::to_owned));
    match (rq.method.as_str(), tail) {
        ("POST", "chat/completions" | "embeddings")
            if !model.as_deref().is_some_and(|m| m.starts_with("@cf/")) =>
        {
            cf_error(400, 5007, "No such model or task")
        }
        ("POST", "chat/completions") => openai_chat(rq, None),
        ("POST", "embeddings") => openai_embeddings(rq),
        _ => cf_error(404, 7000, "No route for that URI"),
    }
}

/// Workers AI's own `POST /ai/run/{model}` for the Builtin rerank, speech-to-text and
/// text-to-speech models, each answering `{"result": ..., "success": true}`; `None` for a model
/// it does not run.
fn workers_ai_run(rq: &Incoming, model: &str) -> Option<Reply> {
    if rq.method != "POST" {
        return None;
    }
    let ok = |result: Value| {
        json_reply(
            200,
            json!({"result": result, "success": true, "errors": [], "messages": []}),
        )
    };
    match model {
        "@cf/baai/bge-reranker-base" => {
            let body = rq.json()?;
            let query = body.get("query")?.as_str()?;
            let contexts = body.get("contexts")?.as_array()?;
            let mut scored: Vec<Value> = contexts
                .iter()
                .enumerate()
                .map(|(i, c)| json!({"id": i, "score": relevance(query, c.get("text").and_then(Value::as_str).unwrap_or(""))}))
                .collect();
            // Best first, as Workers AI answers `top_k`.
            scored.sort_by(|a, b| {
                b["score"]
                    .as_f64()
                    .unwrap_or(0.0)
                    .total_cmp(&a["score"].as_f64().unwrap_or(0.0))
            });
            if let Some(k) = body.get("top_k").and_then(Value::as_u64) {
                scored.truncate(k as usize);
            }
            ok(json!({"response": scored}))
        }
        "@cf/openai/whisper" => {
            if rq.raw.is_empty() {
                return None;
            }
            let text = transcript_of(&rq.raw);
            ok(json!({"text": text, "word_count": text.split(' ').count(),
                "vtt": format!("WEBVTT\n\n00:00.000 --> 00:01.000\n{text}")}))
        }
        "@cf/llava-hf/llava-1.5-7b-hf" => {
            let body = rq.json()?;
            let prompt = body.get("prompt")?.as_str()?;
            let image = body.get("image")?.as_array()?;
            ok(
                json!({"description": format!("an image of {} bytes, asked: {prompt}", image.len())}),
            )
        }
        "@cf/myshell-ai/melotts" => {
            let prompt = rq.json()?.get("prompt")?.as_str()?.to_owned();
            ok(
                json!({"audio": base64::engine::general_purpose::STANDARD.encode(audio_for(&prompt))}),
            )
        }
        _ => None,
    }
}

// ---------- Rerank and audio (OpenAI's, Jina's and Cohere's shapes) ----------

/// A document's relevance to a query: the share of the query's words it holds.
fn relevance(query: &str, doc: &str) -> f64 {
    let doc = doc.to_lowercase();
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let hits = words.iter().filter(|w| doc.contains(w.as_str())).count();
    (hits as f64 / words.len().max(1) as f64 * 1000.0).round() / 1000.0
}

/// Results `{index, relevance_score}` by falling score, at most `top_n`; `None` for a malformed
/// request.
fn ranked(body: &Value) -> Option<Vec<Value>> {
    let query = body.get("query")?.as_str()?;
    let docs = body.get("documents")?.as_array()?;
    let mut results: Vec<(usize, f64)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (i, relevance(query, d.as_str().unwrap_or(""))))
        .collect();
    results.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(n) = body.get("top_n").and_then(Value::as_u64) {
        results.truncate(n as usize);
    }
    Some(
        results
            .into_iter()
            .map(|(i, s)| json!({"index": i, "relevance_score": s}))
            .collect(),
    )
}

/// Jina's `POST /v1/rerank` (also LocalAI's and Xinference's), with token usage.
fn jina_rerank(rq: &Incoming) -> Option<Reply> {
    let Some(results) = rq.json().as_ref().and_then(ranked) else {
        return openai_bad_request("query and documents are required", "documents");
    };
    let body = rq.json().unwrap_or_default();
    let tokens = words(body["query"].as_str().unwrap_or("")) * results.len() as u64
        + body["documents"].as_array().map_or(0, |d| {
            d.iter().map(|x| words(x.as_str().unwrap_or(""))).sum()
        });
    json_reply(
        200,
        json!({"model": body["model"], "usage": {"total_tokens": tokens}, "results": results}),
    )
}

/// Cohere's `POST /v2/rerank`: no token usage, billed search units instead.
fn cohere_rerank(rq: &Incoming) -> Option<Reply> {
    if rq.bearer() != Some(GOOD_KEY) {
        return cohere_unauthorized();
    }
    let Some(results) = rq.json().as_ref().and_then(ranked) else {
        return json_reply(
            400,
            json!({"id": "standin-cohere-400", "message": "invalid request: query and documents are required"}),
        );
    };
    json_reply(
        200,
        json!({"id": "standin-rerank", "results": results, "meta": {"billed_units": {"search_units": 1}}}),
    )
}

/// What the stand-in "hears" in audio: its length and first bytes, so a test can tell that the
/// file arrived whole.
fn transcript_of(audio: &[u8]) -> String {
    let head: String = audio.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("heard {} bytes starting {head}", audio.len())
}

/// The "audio" spoken for a text: an ID3 header, then the text, repeated to a few KiB.
fn audio_for(text: &str) -> Vec<u8> {
    let mut out = b"ID3\x04\x00".to_vec();
    while out.len() < 4096 {
        out.extend_from_slice(text.as_bytes());
        out.push(0xff);
    }
    out
}

/// The parts of a multipart form as `(name, bytes)`; `None` when it is not one.
fn form_parts(rq: &Incoming) -> Option<Vec<(String, Vec<u8>)>> {
    let ct = rq.header("content-type")?;
    let boundary = ct.split("boundary=").nth(1)?.trim_matches('"');
    let delimiter = format!("--{boundary}");
    let raw = &rq.raw;
    let positions: Vec<usize> = (0..raw.len().saturating_sub(delimiter.len()) + 1)
        .filter(|&i| raw[i..].starts_with(delimiter.as_bytes()))
        .collect();
    let mut parts = Vec::new();
    for w in positions.windows(2) {
        let part = &raw[w[0] + delimiter.len() + 2..w[1] - 2];
        let split = (0..part.len().saturating_sub(3)).find(|&i| &part[i..i + 4] == b"\r\n\r\n")?;
        let headers = String::from_utf8_lossy(&part[..split]);
        let name = headers
            .split("name=\"")
            .nth(1)?
            .split('"')
            .next()?
            .to_owned();
        parts.push((name, part[split + 4..].to_vec()));
    }
    Some(parts)
}

/// OpenAI's `POST /v1/audio/transcriptions`: a form with `file` and `model`.
fn openai_transcription(rq: &Incoming) -> Option<Reply> {
    let Some(parts) = form_parts(rq) else {
        return openai_bad_request("Expected a multipart/form-data body.", "file");
    };
    let field = |n: &str| {
        parts
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, v)| v.clone())
    };
    let (Some(file), Some(model)) = (field("file"), field("model")) else {
        return openai_bad_request("file and model are required.", "file");
    };
    let text = format!(
        "{} ({})",
        transcript_of(&file),
        String::from_utf8_lossy(&model)
    );
    let format = field("response_format").map(|f| String::from_utf8_lossy(&f).into_owned());
    match format.as_deref() {
        None | Some("json") => json_reply(
            200,
            json!({"text": text, "usage": {"type": "duration", "seconds": 1}}),
        ),
        Some("verbose_json") => json_reply(
            200,
            json!({"task": "transcribe", "language": "english", "duration": 1.0, "text": text, "segments": []}),
        ),
        Some("vtt") => Some(Reply::Body {
            status: 200,
            content_type: "text/vtt",
            body: format!("WEBVTT\n\n00:00.000 --> 00:01.000\n{text}\n").into_bytes(),
            chunked: false,
        }),
        Some(_) => Some(Reply::Body {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: format!("{text}\n").into_bytes(),
            chunked: false,
        }),
    }
}

/// OpenAI's `POST /v1/audio/speech`: the audio, chunked as OpenAI streams it.
fn openai_speech(rq: &Incoming) -> Option<Reply> {
    let body = rq.json()?;
    let Some(input) = body.get("input").and_then(Value::as_str) else {
        return openai_bad_request("Missing required parameter: 'input'.", "input");
    };
    if body.get("voice").and_then(Value::as_str).is_none() {
        return openai_bad_request("Missing required parameter: 'voice'.", "voice");
    }
    Some(Reply::Body {
        status: 200,
        content_type: "audio/mpeg",
        body: audio_for(input),
        chunked: true,
    })
}

fn cohere_check_key(rq: &Incoming) -> Option<Reply> {
    if rq.bearer() != Some(GOOD_KEY) {
        return cohere_unauthorized();
    }
    json_reply(
        200,
        json!({"valid": true, "organization_id": "standin-org", "owner_id": "standin-owner"}),
    )
}

// ---------- Hostile upstreams (the relay's stream defences) ----------

/// Size of each `x` chunk a `/noboundary/` answer writes.
const NOBOUNDARY_CHUNK: usize = 64 * 1024;
/// The pause between two chunks of an `/endless/` answer.
const ENDLESS_EVENT_DELAY: Duration = Duration::from_millis(5);
/// How long an `/endless/` answer goes on at most, so a test gone wrong still ends.
const ENDLESS_MAX: Duration = Duration::from_secs(600);
/// How long an `/idle/` answer writes after its silence, at most.
const IDLE_TAIL: Duration = Duration::from_secs(5);
/// The bytes of an echo event written at a time, so every event spans several chunks.
const ECHO_PIECE: usize = 7;

/// How one hostile stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostileRecord {
    /// `noboundary`, `idle`, `endless` or `echo`.
    pub mode: &'static str,
    /// The request path, without the query.
    pub path: String,
    /// Bytes of body written before the end (chunk framing not counted).
    pub bytes_sent: u64,
    /// Whether a write failed: the client closed the connection.
    pub client_gone: bool,
    /// From the first byte of the answer to its end.
    pub millis: u64,
}

/// A misbehaving answer.
pub enum Hostile {
    /// `data: ` then this many bytes of `x`, never a blank line.
    NoBoundary(u64),
    /// One chat chunk, this long a silence, then chunks for at most [`IDLE_TAIL`].
    Idle(Duration),
    /// Chat chunks until the client goes.
    Endless,
    /// These events, each written [`ECHO_PIECE`] bytes at a time.
    EchoEvents(Vec<String>, String),
    /// A whole answer with the `x-echo-credential` header.
    Echo {
        status: u16,
        body: Value,
        header: String,
    },
}

impl Hostile {
    fn status(&self) -> u16 {
        match self {
            Hostile::Echo { status, .. } => *status,
            _ => 200,
        }
    }
}

/// `Some` for the hostile prefixes (a bad size or duration is a 400).
fn hostile_route(rq: &Incoming) -> Option<Reply> {
    let path = rq.path.as_str();
    let number = |rest: &str| -> Option<u64> { rest.split('/').next()?.parse().ok() };
    if let Some(rest) = path.strip_prefix("/noboundary/") {
        return Some(match number(rest) {
            Some(mib) => Reply::Hostile(Hostile::NoBoundary(mib * 1024 * 1024)),
            None => hostile_usage("/noboundary/<MiB>/..."),
        });
    }
    if let Some(rest) = path.strip_prefix("/idle/") {
        return Some(match number(rest) {
            Some(secs) => Reply::Hostile(Hostile::Idle(Duration::from_secs(secs))),
            None => hostile_usage("/idle/<seconds>/..."),
        });
    }
    if path.starts_with("/endless/") {
        return Some(Reply::Hostile(Hostile::Endless));
    }
    let failing = path.starts_with("/echo-error/");
    if failing || path.starts_with("/echo/") {
        return Some(echo(rq, failing));
    }
    None
}

fn hostile_usage(shape: &str) -> Reply {
    Reply::Json(
        400,
        json!({"error": {"message": format!("the stand-in expects {shape}"), "type": "invalid_request_error"}}),
    )
}

/// The credential a request carries, in whichever header its provider uses.
fn credential(rq: &Incoming) -> Option<String> {
    rq.bearer()
        .or_else(|| rq.header("x-api-key"))
        .or_else(|| rq.header("api-key"))
        .filter(|k| !k.is_empty())
        .map(str::to_string)
}

/// Every byte but ASCII letters and digits as `%XX`.
fn percent_all(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The credential in each form an echoing upstream may send it back in, as `(label, form)`.
pub fn echo_forms(key: &str) -> Vec<(&'static str, String)> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        ("verbatim", key.to_string()),
        ("upper", key.to_ascii_uppercase()),
        ("base64", b64(key)),
        // Inside `Basic base64(user:key)`: the key starts at byte 3, 4 and 5 (alignments 0, 1, 2).
        ("basic0", b64(&format!("ab:{key}"))),
        ("basic1", b64(&format!("abc:{key}"))),
        ("basic2", b64(&format!("user:{key}"))),
        (
            "urlsafe",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key),
        ),
        ("percent", percent_all(key)),
    ]
}

/// `label=form` for every form, space-separated.
fn echo_text(key: &str) -> String {
    echo_forms(key)
        .iter()
        .map(|(label, form)| format!("{label}={form}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn echo(rq: &Incoming, failing: bool) -> Reply {
    let Some(key) = credential(rq) else {
        return Reply::Json(
            401,
            json!({"error": {"message": "no credential to echo", "type": "invalid_request_error"}}),
        );
    };
    let text = echo_text(&key);
    let whole = |status: u16, body: Value| {
        Reply::Hostile(Hostile::Echo {
            status,
            body,
            header: text.clone(),
        })
    };
    if failing {
        return whole(
            401,
            json!({"error": {
                "message": format!("Incorrect API key provided: {text}"),
                "type": "invalid_request_error",
                "param": null,
                "code": "invalid_api_key",
            }}),
        );
    }
    let path = rq.path.as_str();
    let body = rq.json().unwrap_or(Value::Null);
    match rq.method.as_str() {
        "GET" if path.ends_with("/models") => whole(
            200,
            json!({"object": "list", "echo": text, "data": [
                {"id": "echo-model", "object": "model", "created": 1_700_000_000, "owned_by": text},
            ]}),
        ),
        "POST" if path.ends_with("/embeddings") => whole(
            200,
            json!({"object": "list", "model": "echo-embed", "echo": text,
                   "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.5]}],
                   "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
        ),
        "POST" if path.ends_with("/chat/completions") => {
            if body.get("stream").and_then(Value::as_bool) == Some(true) {
                let chunk = |delta: Value, finish: Value| {
                    sse_data(&json!({
                        "id": "chatcmpl-echo", "object": "chat.completion.chunk",
                        "created": 1_700_000_000u64, "model": "echo-model",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    }))
                };
                let mut events = vec![chunk(
                    json!({"role": "assistant", "content": ""}),
                    Value::Null,
                )];
                for (label, form) in echo_forms(&key) {
                    events.push(chunk(
                        json!({"content": format!("{label}={form} ")}),
                        Value::Null,
                    ));
                }
                // Passed through as it is, since it is not JSON.
                events.push(format!("data: not json: {text}\n\n"));
                events.push(chunk(json!({}), json!("stop")));
                events.push("data: [DONE]\n\n".to_string());
                return Reply::Hostile(Hostile::EchoEvents(events, text));
            }
            whole(
                200,
                json!({
                    "id": "chatcmpl-echo", "object": "chat.completion", "created": 1_700_000_000u64,
                    "model": "echo-model", "echo": text,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }),
            )
        }
        _ => Reply::Json(
            404,
            json!({"error": {"message": "no echo route", "type": "not_found"}}),
        ),
    }
}

/// Writes one hostile answer by hand and records how it ended.
fn serve_hostile(request: tiny_http::Request, hostile: Hostile, path: &str, shared: &Shared) {
    let mode = match &hostile {
        Hostile::NoBoundary(_) => "noboundary",
        Hostile::Idle(_) => "idle",
        Hostile::Endless => "endless",
        Hostile::EchoEvents(..) | Hostile::Echo { .. } => "echo",
    };
    let started = Instant::now();
    let mut out = HostileWriter {
        writer: request.into_writer(),
        sent: 0,
    };
    let finished = match hostile {
        Hostile::Echo {
            status,
            body,
            header,
        } => out.whole(status, &body.to_string(), &header),
        Hostile::NoBoundary(total) => noboundary(&mut out, total, shared),
        Hostile::Idle(silence) => idle(&mut out, silence, shared),
        Hostile::Endless => endless(&mut out, shared),
        Hostile::EchoEvents(events, header) => echo_events(&mut out, &events, &header),
    };
    let record = HostileRecord {
        mode,
        path: path.to_string(),
        bytes_sent: out.sent,
        client_gone: finished.is_err(),
        millis: started.elapsed().as_millis() as u64,
    };
    if shared.log.load(Ordering::SeqCst) {
        eprintln!(
            "standin: hostile {mode}: {} after {} bytes, {} ms",
            if record.client_gone {
                "client gone"
            } else {
                "finished"
            },
            record.bytes_sent,
            record.millis
        );
    }
    lock(&shared.hostile).push(record);
}

/// A response written by hand: a chunked event stream, or a whole body.
struct HostileWriter {
    writer: Box<dyn Write + Send>,
    sent: u64,
}

impl HostileWriter {
    fn flush_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    fn stream_head(&mut self, extra: &str) -> std::io::Result<()> {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
             Transfer-Encoding: chunked\r\n{extra}\r\n"
        );
        self.flush_bytes(head.as_bytes())
    }

    /// One chunk of the body, flushed.
    fn chunk(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
        framed.extend_from_slice(data);
        framed.extend_from_slice(b"\r\n");
        self.flush_bytes(&framed)?;
        self.sent += data.len() as u64;
        Ok(())
    }

    fn end(&mut self) -> std::io::Result<()> {
        self.flush_bytes(b"0\r\n\r\n")
    }

    fn whole(&mut self, status: u16, body: &str, header: &str) -> std::io::Result<()> {
        let reason = if status == 200 { "OK" } else { "Error" };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nX-Echo-Credential: {header}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        self.flush_bytes(head.as_bytes())?;
        self.flush_bytes(body.as_bytes())?;
        self.sent += body.len() as u64;
        Ok(())
    }
}

/// A chat chunk event carrying `text`.
fn hostile_chunk(text: &str) -> String {
    sse_data(&json!({
        "id": "chatcmpl-hostile", "object": "chat.completion.chunk", "created": 1_700_000_000u64,
        "model": "hostile", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}],
    }))
}

fn stopping(shared: &Shared) -> bool {
    shared.stopping.load(Ordering::SeqCst)
}

fn noboundary(out: &mut HostileWriter, total: u64, shared: &Shared) -> std::io::Result<()> {
    out.stream_head("")?;
    out.chunk(b"data: ")?;
    let block = vec![b'x'; NOBOUNDARY_CHUNK];
    let mut left = total;
    while left > 0 && !stopping(shared) {
        let n = left.min(NOBOUNDARY_CHUNK as u64) as usize;
        out.chunk(&block[..n])?;
        left -= n as u64;
    }
    out.end()
}

fn idle(out: &mut HostileWriter, silence: Duration, shared: &Shared) -> std::io::Result<()> {
    out.stream_head("")?;
    out.chunk(hostile_chunk("hello, then nothing").as_bytes())?;
    let quiet_until = Instant::now() + silence;
    while Instant::now() < quiet_until {
        if stopping(shared) {
            return out.end();
        }
        thread::sleep(Duration::from_millis(25));
    }
    let tail_until = Instant::now() + IDLE_TAIL;
    while Instant::now() < tail_until && !stopping(shared) {
        out.chunk(hostile_chunk("still here").as_bytes())?;
        thread::sleep(STREAM_EVENT_DELAY);
    }
    out.end()
}

fn endless(out: &mut HostileWriter, shared: &Shared) -> std::io::Result<()> {
    out.stream_head("")?;
    let until = Instant::now() + ENDLESS_MAX;
    let mut n = 0u64;
    while Instant::now() < until && !stopping(shared) {
        out.chunk(hostile_chunk(&format!("word{n} ")).as_bytes())?;
        n += 1;
        thread::sleep(ENDLESS_EVENT_DELAY);
    }
    out.end()
}

fn echo_events(out: &mut HostileWriter, events: &[String], header: &str) -> std::io::Result<()> {
    out.stream_head(&format!("X-Echo-Credential: {header}\r\n"))?;
    for event in events {
        for piece in event.as_bytes().chunks(ECHO_PIECE) {
            out.chunk(piece)?;
            thread::sleep(Duration::from_millis(1));
        }
    }
    out.end()
}
