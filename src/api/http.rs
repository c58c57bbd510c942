//! The core's own request and response types: plain data, no runtime behind them.

use crate::store::Stmt;
use futures_channel::oneshot;
use futures_util::Stream;
use std::pin::Pin;

/// An HTTP request as the core sees it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// The path as received, still percent-encoded, without the query.
    pub path: String,
    /// The raw query string without `?` (empty if none).
    pub query: String,
    /// Header names in lowercase, in arrival order; repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The `Content-Length` of a body too large to have been read (the glue does not buffer it).
    pub unread_len: Option<u64>,
    /// `scheme://host[:port]` of the URL the runtime received (the glue sets it), so a provider
    /// URL naming this deployment can be recognised beside the `Host` header.
    pub origin: Option<String>,
}

/// The origin, path and query of a URL as the runtime serializes it (`request.url`), read
/// without a URL parser: such a URL is already in the form a parser would give back. `None` for
/// anything that might not be (another scheme, user info, a default port written out, a dot
/// segment, a byte a parser would encode), which the caller then parses in full.
pub fn serialized_url_parts(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let authority_end = rest.find(['/', '?', '#'])?;
    let authority = &rest[..authority_end];
    let host_byte = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-:[]".contains(&b);
    if authority.is_empty()
        || !authority.bytes().all(host_byte)
        || authority.ends_with(default_port)
        || authority.ends_with(':')
    {
        return None;
    }
    let origin = &url[..scheme.len() + 3 + authority_end];
    let after = &rest[authority_end..];
    let (path_query, _fragment) = after.split_once('#').unwrap_or((after, ""));
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    // Bytes the WHATWG serializer would have percent-encoded, or that a parser rewrites.
    let plain = |b: u8| (0x21..=0x7e).contains(&b) && !b"\"<>`{}\\'".contains(&b);
    let dot = |seg: &str| {
        [".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"]
            .iter()
            .any(|d| seg.eq_ignore_ascii_case(d))
    };
    if !path.starts_with('/')
        || !path.bytes().all(plain)
        || path.split('/').any(dot)
        || !query.bytes().all(plain)
    {
        return None;
    }
    Some((origin, path, query))
}

impl Request {
    pub fn new(method: &str, path_and_query: &str) -> Self {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            ..Default::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = body.to_string().into_bytes();
        self.header("content-type", "application/json")
    }

    /// All values of a header (name in any case).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn first_header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers_named(name).next()
    }

    /// The decoded value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| {
                let v = v.replace('+', " ");
                percent_encoding::percent_decode_str(&v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    }
}

/// A response body produced chunk by chunk (the relay's server-sent events).
pub type BodyStream = Pin<Box<dyn Stream<Item = Vec<u8>>>>;

/// An HTTP response, plus the writes to run after it is sent (the glue hands them to `wait_until`).
#[derive(Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When set, the body is this stream instead of `body`.
    pub stream: Option<BodyStream>,
    /// Best-effort writes that must not delay the response (e.g. `last_used_at`), run as one batch.
    pub deferred: Vec<Stmt>,
    /// Writes known only once `stream` has ended (usage of a streamed completion).
    pub deferred_after_stream: Option<oneshot::Receiver<Vec<Stmt>>>,
    /// Ledger operations (settlements) known once the answer is complete, whole or streamed, to
    /// run after it like `deferred`.
    pub limits_after: Option<oneshot::Receiver<crate::limits::Settlements>>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("streamed", &self.stream.is_some())
            .finish()
    }
}

impl Response {
    /// A JSON answer from any serde type. It goes through `Value`, so object keys come out sorted
    /// whatever the type's field order (as every answer has since the first release); the answer
    /// types hold strings, numbers, options and lists only, which always serialise.
    pub fn json(status: u16, body: &impl serde::Serialize) -> Self {
        Self::json_value(
            status,
            &serde_json::to_value(body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The one non-generic body of [`Response::json`], kept out of line so each answer type
    /// adds only its own serialisation to the Worker bundle.
    #[inline(never)]
    fn json_value(status: u16, body: &serde_json::Value) -> Self {
        Self::json_bytes(status, body.to_string().into_bytes())
    }

    /// A JSON answer written straight from `body`, not through a copy of it as `Value`: for a
    /// body whose keys already come out sorted, as the envelope's do (`code`, `data`,
    /// `message`, with `data` already a `Value`), so the bytes are [`Response::json`]'s.
    pub fn json_sorted(status: u16, body: &impl serde::Serialize) -> Self {
        Self::json_bytes(
            status,
            serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec()),
        )
    }

    #[inline(never)]
    fn json_bytes(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
            ..Default::default()
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::serialized_url_parts;

    /// What the glue took from `url::Url` before: (origin, path, query).
    fn parsed(s: &str) -> (String, String, String) {
        let u = url::Url::parse(s).expect("a URL");
        (
            u.origin().ascii_serialization(),
            u.path().to_owned(),
            u.query().unwrap_or("").to_owned(),
        )
    }

    #[test]
    fn a_serialized_url_is_split_as_a_url_parser_reads_it() {
        for s in [
            "https://kw.example/api/v1/me",
            "https://kw.example/api/v1/me?x=1&y=%20z",
            "http://127.0.0.1:8787/v1/chat/completions",
            "http://127.0.0.1:8787/?",
            "https://kw.example/a/b/?q=1#frag",
            "https://kw.example/a#f?not-a-query",
            "http://[::1]:8787/health",
            "https://xn--bcher-kva.example/api/v1/users/%C3%A9",
            "https://kw.example/api/v1/admin/users?limit=50&cursor=a%2Fb",
        ] {
            let (o, p, q) = serialized_url_parts(s).unwrap_or_else(|| panic!("fast path for {s}"));
            assert_eq!((o.into(), p.into(), q.into()), parsed(s), "{s}");
        }
    }

    #[test]
    fn anything_a_parser_might_rewrite_is_left_to_the_parser() {
        for s in [
            "ftp://kw.example/x",
            "https://user:pw@kw.example/x",
            "https://kw.example:443/x",
            "http://kw.example:80/x",
            "https://KW.example/x",
            "https://kw.example/a/../b",
            "https://kw.example/a/./b",
            "https://kw.example/a/%2e%2E/b",
            "https://kw.example/a b",
            "https://kw.example/é",
            "https://kw.example/a\\b",
            "https://kw.example/x?q='1'",
            "https://kw.example/x?q=<1>",
            "https://kw.example",
            "https://kw.example:/x",
            "not a url",
        ] {
            assert_eq!(serialized_url_parts(s), None, "{s}");
        }
        // Each of those the parser takes as it always did (the glue's fallback).
        assert_eq!(parsed("https://kw.example:443/a/../b").1, "/b");
    }
}
