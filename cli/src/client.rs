//! The HTTP side: one blocking request at a time, RAGFlow's `{code, message, data}` envelope read
//! off every `/api/v1` answer, OpenAI's `{error}` off the relay's, and every failure sorted into
//! the class that picks the process's exit status.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use std::io::Read;
use std::time::Duration;

/// What went wrong, by the class a script can act on; each class is one exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A flag, a file or the request itself was refused (the API's 400, 405, 413, 415, 422).
    BadInput(String),
    /// No credential, or the one given was refused (401) or may not do this (403).
    Auth(String),
    /// 404: no such thing in the caller's tenant.
    NotFound(String),
    /// 409: it exists already, or changed meanwhile.
    Conflict(String),
    /// 429: wait and try again.
    RateLimited(String),
    /// 5xx, or an answer that is not the API's.
    Server(String),
    /// The server could not be reached (refused, unresolvable, timed out, cut off).
    Network(String),
    /// Something on this machine failed: the config file, the terminal, standard input.
    Local(String),
}

/// The exit statuses, in the order `--help` lists them.
pub const EXIT_STATUSES: [(i32, &str); 9] = [
    (0, "success"),
    (1, "a local failure: the config file, the terminal or standard input"),
    (2, "bad input: a wrong flag or value, or the API refused the request (400, 405, 413, 415, 422)"),
    (3, "authentication: no credential, or it was refused (401) or lacks the role (403)"),
    (4, "not found (404)"),
    (5, "conflict (409)"),
    (6, "rate limited (429); the message says when to try again"),
    (7, "server error (5xx), or an answer that is not the API's"),
    (8, "network: the server could not be reached"),
];

impl Failure {
    /// The process's exit status for this failure (see [`EXIT_STATUSES`]).
    pub fn exit_status(&self) -> i32 {
        match self {
            Failure::BadInput(_) => 2,
            Failure::Auth(_) => 3,
            Failure::NotFound(_) => 4,
            Failure::Conflict(_) => 5,
            Failure::RateLimited(_) => 6,
            Failure::Server(_) => 7,
            Failure::Network(_) => 8,
            Failure::Local(_) => 1,
        }
    }

    /// The class of an HTTP error status, carrying the API's message.
    pub fn from_status(status: u16, message: String) -> Failure {
        match status {
            401 | 403 => Failure::Auth(message),
            404 => Failure::NotFound(message),
            409 => Failure::Conflict(message),
            429 => Failure::RateLimited(message),
            400..=499 => Failure::BadInput(message),
            _ => Failure::Server(message),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::BadInput(m)
            | Failure::Auth(m)
            | Failure::NotFound(m)
            | Failure::Conflict(m)
            | Failure::RateLimited(m)
            | Failure::Server(m)
            | Failure::Network(m)
            | Failure::Local(m) => m,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

/// Characters escaped in one path segment: everything but unreserved ones and `@` (usernames
/// are e-mail addresses), so `/`, `?`, `#`, `%` and spaces can never change the route.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'+')
    .add(b'&')
    .add(b'=')
    .add(b';')
    .add(b':')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']');

/// One path segment, percent-encoded (a username, an id).
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A query string from the pairs whose value is set, each encoded.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", seg(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// The deployment's base URL, checked: http(s) with a host and nothing after the path (no user
/// name or password either: a URL is seen by `ps`). Returns a warning for plain http to a host
/// that is not this machine, since the token would travel unencrypted.
pub fn check_base(raw: &str) -> Result<Option<String>> {
    // Never echoed: it may hold a password.
    let bad = |why: &str| {
        Failure::BadInput(format!(
            "the URL (--url, KEYWARD_URL or the profile's) {why}"
        ))
    };
    let u = url::Url::parse(raw.trim()).map_err(|e| {
        bad(&format!(
            "is not a URL ({e}); e.g. https://keyward.example.com"
        ))
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("must start with https:// (or http://)"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("must not carry a user name or password"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(bad("must not have a query or a fragment"));
    }
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(bad("has no host")),
    };
    Ok((u.scheme() == "http" && !loopback).then(|| {
        format!(
            "warning: {} is plain http: the token travels unencrypted; use https",
            crate::table::clean(raw)
        )
    }))
}

/// A successful `/api/v1` answer: its `data` exactly as sent, and the next page's cursor (its
/// message is always `success` or a fixed sentence, so it is not kept).
#[derive(Debug)]
pub struct Answer {
    pub data: Box<RawValue>,
    pub next_cursor: Option<String>,
}

impl Answer {
    /// `data` as one of the contract's types.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(self.data.get()).map_err(|e| {
            Failure::Server(format!(
                "the answer's data is not what the API documents: {e}"
            ))
        })
    }
}

#[derive(Deserialize)]
struct EnvelopeIn {
    code: i64,
    #[serde(default)]
    message: String,
    data: Box<RawValue>,
}

/// The API, reached at one base URL with one credential.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// How long a request may take: validation of a provider key calls the provider (10 s on the
/// worker's side), and a relayed chat can take a while.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer read (the management API's pages are far smaller).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(TIMEOUT)
            .redirects(0)
            .user_agent(concat!("keyward-cli/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent,
        }
    }

    fn start(&self, method: &str, path: &str) -> ureq::Request {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        req
    }

    /// Send a request and get the raw response, whatever its status.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, String)],
    ) -> Result<ureq::Response> {
        let mut req = self.start(method, path);
        for (n, v) in headers {
            req = req.set(n, v);
        }
        let sent = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        match sent {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(_, r)) => Ok(r),
            Err(ureq::Error::Transport(t)) => Err(Failure::Network(format!(
                "cannot reach {}: {}",
                self.base,
                transport_reason(&t)
            ))),
        }
    }

    /// A management call: the envelope's `data` on success, the API's message otherwise.
    pub fn api<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, String)],
    ) -> Result<Answer> {
        let body = body
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| Failure::BadInput(format!("cannot write the request: {e}")))?;
        let resp = self.send(method, path, body.as_deref(), headers)?;
        read_envelope(resp)
    }

    pub fn get(&self, path: &str) -> Result<Answer> {
        self.api::<()>("GET", path, None, &[])
    }
}

/// Why a connection failed, without ureq's URL (which carries nothing secret, but says it twice).
fn transport_reason(t: &ureq::Transport) -> String {
    match t.message() {
        Some(m) => format!("{} ({m})", t.kind()),
        None => t.kind().to_string(),
    }
}

/// The body as text, at most [`MAX_ANSWER`] bytes.
pub fn body_text(resp: ureq::Response) -> Result<String> {
    let mut text = String::new();
    resp.into_reader()
        .take(MAX_ANSWER)
        .read_to_string(&mut text)
        .map_err(|e| Failure::Network(format!("the answer was cut off: {e}")))?;
    Ok(text)
}

/// What `Retry-After` asks for, as a sentence to add to a 429's message.
fn retry_hint(resp: &ureq::Response) -> String {
    match resp.header("retry-after") {
        Some(s) => format!(" (retry after {} s)", s.trim()),
        None => String::new(),
    }
}

/// Read an `/api/v1` answer: `data` of a success, the class and message of a failure.
pub fn read_envelope(resp: ureq::Response) -> Result<Answer> {
    let status = resp.status();
    let retry = retry_hint(&resp);
    let next_cursor = resp
        .header("x-next-cursor")
        .map(str::to_owned)
        .filter(|c| !c.is_empty());
    let text = body_text(resp)?;
    match serde_json::from_str::<EnvelopeIn>(&text) {
        Ok(env) if (200..300).contains(&status) && env.code == 0 => Ok(Answer {
            data: env.data,
            next_cursor,
        }),
        Ok(env) => Err(Failure::from_status(
            if (200..300).contains(&status) {
                500
            } else {
                status
            },
            format!("{}{retry}", nonempty(env.message, status)),
        )),
        Err(_) => Err(not_the_api(status, &text, &retry)),
    }
}

/// Read a relay answer: the body of a success, OpenAI's `error.message` of a failure.
pub fn read_relay(resp: ureq::Response) -> Result<String> {
    let status = resp.status();
    let retry = retry_hint(&resp);
    let text = body_text(resp)?;
    if (200..300).contains(&status) {
        return Ok(text);
    }
    Err(relay_failure(status, &text, &retry))
}

/// The class and message of a relay error body (`{"error": {"message": ...}}`).
pub fn relay_failure(status: u16, text: &str, retry: &str) -> Failure {
    #[derive(Deserialize)]
    struct Err {
        error: ErrBody,
    }
    #[derive(Deserialize)]
    struct ErrBody {
        #[serde(default)]
        message: String,
    }
    match serde_json::from_str::<Err>(text) {
        Ok(e) => Failure::from_status(
            status,
            format!("{}{retry}", nonempty(e.error.message, status)),
        ),
        Err(_) => not_the_api(status, text, retry),
    }
}

fn nonempty(message: String, status: u16) -> String {
    if message.trim().is_empty() {
        format!("HTTP {status}")
    } else {
        message
    }
}

/// An answer in neither of the API's shapes (a proxy's page, a wrong URL): its status decides.
fn not_the_api(status: u16, text: &str, retry: &str) -> Failure {
    let what = format!(
        "HTTP {status} with a body that is not the keyward API's{retry} (is the URL right?): {}",
        crate::table::clean(&text.chars().take(200).collect::<String>())
    );
    if (200..300).contains(&status) {
        Failure::Server(what)
    } else {
        Failure::from_status(status, what)
    }
}

/// A fresh `Idempotency-Key`: 128 random bits in hex, so a retry after a lost answer is told
/// what the first attempt did instead of doing it again.
pub fn idempotency_key() -> String {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).expect("the operating system's random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_class_has_its_own_exit_status() {
        let cases = [
            (400, 2),
            (405, 2),
            (413, 2),
            (415, 2),
            (422, 2),
            (401, 3),
            (403, 3),
            (404, 4),
            (409, 5),
            (429, 6),
            (500, 7),
            (502, 7),
            (508, 7),
        ];
        for (status, exit) in cases {
            assert_eq!(
                Failure::from_status(status, "m".into()).exit_status(),
                exit,
                "{status}"
            );
        }
        assert_eq!(Failure::Network("x".into()).exit_status(), 8);
        let mut listed: Vec<i32> = EXIT_STATUSES.iter().map(|(n, _)| *n).collect();
        listed.dedup();
        assert_eq!(listed, (0..=8).collect::<Vec<_>>());
    }

    #[test]
    fn a_base_url_is_http_or_https_with_a_host_and_no_credentials() {
        assert_eq!(check_base("https://keyward.example.com").unwrap(), None);
        assert_eq!(check_base("http://127.0.0.1:8787/").unwrap(), None);
        assert_eq!(check_base("http://localhost:8787").unwrap(), None);
        assert_eq!(check_base("http://[::1]:8787").unwrap(), None);
        assert!(check_base("http://keyward.example.com")
            .unwrap()
            .unwrap()
            .contains("unencrypted"));
        for bad in [
            "keyward.example.com",
            "ftp://keyward.example.com",
            "https://admin:hunter2@keyward.example.com",
            "https://keyward.example.com/?x=1",
            "https://keyward.example.com/#top",
        ] {
            let e = check_base(bad).unwrap_err();
            assert_eq!(e.exit_status(), 2, "{bad}");
            assert!(!e.message().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn path_segments_cannot_reach_another_route() {
        assert_eq!(seg("alice@example.com"), "alice@example.com");
        assert_eq!(seg("a/b"), "a%2Fb");
        assert_eq!(seg("../x?y#z"), "..%2Fx%3Fy%23z");
        assert_eq!(seg("a+b c"), "a%2Bb%20c");
        assert_eq!(
            query(&[
                ("limit", Some("5".into())),
                ("cursor", None),
                ("since", Some("2030-01-01T00:00:00+01:00".into()))
            ]),
            "?limit=5&since=2030-01-01T00%3A00%3A00%2B01%3A00"
        );
        assert_eq!(query(&[("cursor", None)]), "");
    }

    #[test]
    fn a_relay_error_keeps_its_message_and_class() {
        let f = relay_failure(
            429,
            r#"{"error":{"message":"slow down","type":"rate_limit"}}"#,
            " (retry after 5 s)",
        );
        assert_eq!(
            f,
            Failure::RateLimited("slow down (retry after 5 s)".into())
        );
        let f = relay_failure(502, "<html>bad gateway</html>", "");
        assert_eq!(f.exit_status(), 7);
        assert!(f.message().contains("not the keyward API's"), "{f}");
    }

    fn response(raw: &str) -> ureq::Response {
        raw.parse().expect("a response")
    }

    #[test]
    fn data_is_kept_exactly_as_sent_with_the_next_cursor() {
        let a = read_envelope(response(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Next-Cursor: abc\r\n\r\n\
             {\"code\":0,\"data\":[{\"b\":1,  \"a\":\"\\u00e9\"}],\"message\":\"success\"}",
        ))
        .unwrap();
        assert_eq!(a.data.get(), "[{\"b\":1,  \"a\":\"\\u00e9\"}]");
        assert_eq!(a.next_cursor.as_deref(), Some("abc"));
    }

    #[test]
    fn an_error_envelope_gives_its_message_class_and_when_to_retry() {
        let f = read_envelope(response(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 42\r\n\r\n\
             {\"code\":429,\"data\":null,\"message\":\"Too many failed attempts\"}",
        ))
        .unwrap_err();
        assert_eq!(
            f,
            Failure::RateLimited("Too many failed attempts (retry after 42 s)".into())
        );
        assert_eq!(f.exit_status(), 6);
        let f = read_envelope(response(
            "HTTP/1.1 404 Not Found\r\n\r\n{\"code\":404,\"data\":null,\"message\":\"User x not found\"}",
        ))
        .unwrap_err();
        assert_eq!(f, Failure::NotFound("User x not found".into()));
        // A proxy's page: the status decides the class.
        let f = read_envelope(response(
            "HTTP/1.1 503 Service Unavailable\r\n\r\n<html>down</html>",
        ))
        .unwrap_err();
        assert_eq!(f.exit_status(), 7);
        // A 200 that is not the envelope is the server's fault, not a success.
        let f =
            read_envelope(response("HTTP/1.1 200 OK\r\n\r\n<html>login page</html>")).unwrap_err();
        assert_eq!(f.exit_status(), 7);
    }

    #[test]
    fn idempotency_keys_are_fresh_visible_ascii() {
        let (a, b) = (idempotency_key(), idempotency_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
