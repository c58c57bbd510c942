//! Vertex AI through its OpenAI-compatible endpoint
//! (`{base}/v1/projects/{project}/locations/{location}/endpoints/openapi/chat/completions`, models
//! named `google/<model>`), with a bearer OAuth2 access token minted from the tenant's
//! service-account key and kept in this isolate's memory until shortly before it expires.
//!
//! The compatible surface has only the Chat Completions API (Google's "Using OpenAI libraries
//! with Vertex AI" lists no embeddings), so embeddings are refused with a 400 saying so.
//!
//! The token cache is a static of the core, not KV or D1: a token is never written anywhere a
//! reader of the stores could take it, and an isolate that is recycled simply mints a new one.
//! Its key is the connection (or gateway key) and a SHA-256 fingerprint of the credential, so a
//! replaced service-account key never reuses the old key's token, and the key itself never holds
//! the credential in clear.

use crate::domain::keys::sha256_hex;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A token is used until this many seconds before Google says it expires, so a call that starts
/// just before expiry is not refused halfway (Google's tokens live 3600 s).
pub const TOKEN_MARGIN_S: u64 = 60;
/// Tokens kept at most; past it the expired ones go, then everything (a token is cheap to mint).
pub const MAX_CACHED_TOKENS: usize = 1024;
/// The longest access token accepted from a token endpoint (Google's are a few hundred bytes).
pub const MAX_TOKEN_LEN: usize = 4096;

/// Why embeddings cannot be called on Vertex AI, for the 400.
pub const EMBEDDINGS_REFUSED: &str = "VertexAI embeddings cannot be called through the relay: \
     Vertex AI's OpenAI-compatible endpoint serves chat completions only; use an embedding model \
     of another factory (Gemini serves text-embedding models through an API key)";

/// The API root of a location: `https://{location}-aiplatform.googleapis.com`. `Err` when the
/// location could change the host (only lowercase letters, digits and `-` are Google's regions).
pub fn default_base(location: &str) -> Result<String, String> {
    if location.is_empty()
        || location.len() > 32
        || !location
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "the VertexAI location {} is not a Google Cloud region",
            crate::providers::printable(location)
        ));
    }
    Ok(format!("https://{location}-aiplatform.googleapis.com"))
}

/// A project or location as a path segment: `Err` for one that would change the path.
fn segment<'a>(settings: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    let v = settings
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("the VertexAI connection has no {name}; connect it again"))?;
    let ok = v != "."
        && v != ".."
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
    if ok {
        Ok(v)
    } else {
        Err(format!(
            "the VertexAI {name} {} cannot be part of a URL",
            crate::providers::printable(v)
        ))
    }
}

/// The compatible endpoint's URL for `path` (`chat/completions`).
pub fn url(base: &str, settings: &Map<String, Value>, path: &str) -> Result<String, String> {
    let project = segment(settings, "project_id")?;
    let location = segment(settings, "location")?;
    Ok(format!(
        "{}/v1/projects/{project}/locations/{location}/endpoints/openapi/{path}",
        base.trim_end_matches('/')
    ))
}

/// The model name the compatible endpoint knows: Google's models are `google/<model>`; a name
/// that already names its publisher (`meta/...`) is kept.
pub fn model_name(model: &str) -> String {
    if model.contains('/') {
        model.to_owned()
    } else {
        format!("google/{model}")
    }
}

/// The cache key of a scope's (connection's or gateway key's) credential.
pub fn cache_key(scope: &str, credential: &str) -> String {
    format!("{scope}:{}", sha256_hex(credential.as_bytes()))
}

/// A cached token. No `Debug`: it is never printed.
struct Cached {
    token: String,
    /// Unix ms after which it is no longer handed out.
    until_ms: i64,
}

static TOKENS: Mutex<BTreeMap<String, Cached>> = Mutex::new(BTreeMap::new());

fn tokens() -> std::sync::MutexGuard<'static, BTreeMap<String, Cached>> {
    // A panic while holding the lock leaves the map whole (each write is one insert/remove).
    TOKENS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The cached token for `key`, if it is still within its life.
pub fn cached(key: &str, now_ms: i64) -> Option<String> {
    let mut map = tokens();
    match map.get(key) {
        Some(c) if now_ms < c.until_ms => Some(c.token.clone()),
        Some(_) => {
            map.remove(key);
            None
        }
        None => None,
    }
}

/// Keep `token` for `key` until [`TOKEN_MARGIN_S`] before its `expires_in`; a token that lives no
/// longer than the margin is used once and not kept.
pub fn store(key: &str, token: &str, expires_in_s: u64, now_ms: i64) {
    let Some(life_s) = expires_in_s.checked_sub(TOKEN_MARGIN_S).filter(|s| *s > 0) else {
        return;
    };
    let until_ms =
        now_ms.saturating_add(i64::try_from(life_s.saturating_mul(1000)).unwrap_or(i64::MAX));
    let mut map = tokens();
    if map.len() >= MAX_CACHED_TOKENS && !map.contains_key(key) {
        map.retain(|_, c| now_ms < c.until_ms);
        if map.len() >= MAX_CACHED_TOKENS {
            map.clear();
        }
    }
    map.insert(
        key.to_owned(),
        Cached {
            token: token.to_owned(),
            until_ms,
        },
    );
}

/// Drop `key`'s token (the provider refused it).
pub fn forget(key: &str) {
    tokens().remove(key);
}

/// The access token and its `expires_in` from a token endpoint's JSON answer. `Err` names what is
/// wrong, never the token. A token that could not be a header value is refused.
pub fn token_answer(body: &[u8]) -> Result<(String, u64), String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| "the token endpoint answered with something that is not JSON".to_owned())?;
    let token = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| {
            !t.is_empty() && t.len() <= MAX_TOKEN_LEN && t.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| "the token endpoint's answer has no usable access_token".to_owned())?;
    // Absent or unreadable: used for this call only.
    let expires_in = v.get("expires_in").and_then(Value::as_u64).unwrap_or(0);
    Ok((token.to_owned(), expires_in))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_token_is_kept_until_the_margin_before_expiry_and_forgotten_when_refused() {
        let key = cache_key("conn:unit-a", "{\"private_key\":\"k\"}");
        assert!(
            !key.contains("private_key"),
            "the credential is not in the key"
        );
        store(&key, "ya29.one", 3600, 1_000);
        assert_eq!(cached(&key, 1_000).as_deref(), Some("ya29.one"));
        let last_ms = 1_000 + (3600 - TOKEN_MARGIN_S as i64) * 1000 - 1;
        assert_eq!(cached(&key, last_ms).as_deref(), Some("ya29.one"));
        assert_eq!(cached(&key, last_ms + 1), None, "expired within the margin");
        store(&key, "ya29.two", 3600, 1_000);
        forget(&key);
        assert_eq!(cached(&key, 1_000), None);
        store(&key, "ya29.short", TOKEN_MARGIN_S, 1_000);
        assert_eq!(
            cached(&key, 1_000),
            None,
            "a token shorter than the margin is not kept"
        );
        assert_ne!(
            key,
            cache_key("conn:unit-a", "{\"private_key\":\"other\"}"),
            "a replaced credential has its own entry"
        );
    }

    #[test]
    fn the_url_and_model_follow_googles_compatible_endpoint_and_refuse_path_changes() {
        let mut s = Map::new();
        s.insert("project_id".into(), json!("my-proj"));
        s.insert("location".into(), json!("europe-west4"));
        let base = default_base("europe-west4").unwrap();
        assert_eq!(
            url(&base, &s, "chat/completions").unwrap(),
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-proj/locations/europe-west4/endpoints/openapi/chat/completions"
        );
        assert!(default_base("evil.example:443").is_err());
        s.insert("project_id".into(), json!(".."));
        assert!(url(&base, &s, "chat/completions").is_err());
        assert_eq!(model_name("gemini-2.5-flash"), "google/gemini-2.5-flash");
        assert_eq!(model_name("meta/llama"), "meta/llama");
    }

    #[test]
    fn a_token_answer_needs_a_header_safe_token() {
        let (t, e) = token_answer(br#"{"access_token":"ya29.x","expires_in":3599}"#).unwrap();
        assert_eq!((t.as_str(), e), ("ya29.x", 3599));
        assert!(token_answer(b"{\"access_token\":\"a\\r\\nx: y\"}").is_err());
        assert!(token_answer(b"<html>").is_err());
        assert_eq!(token_answer(br#"{"access_token":"t"}"#).unwrap().1, 0);
    }
}
