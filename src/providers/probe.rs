//! Proving a credential with the cheapest live call each provider offers, and reading the answer.
//!
//! | api style | call |
//! |---|---|
//! | openai (OpenAI, Mistral, DeepSeek, Jina, compatible, LocalAI, Xinference) | `GET {base}/models` |
//! | azure | `GET {endpoint}/openai/deployments/{deployment}?api-version=` (a deployment probe) |
//! | gemini | `GET {base}/v1beta/models` with `x-goog-api-key` |
//! | anthropic | `GET {base}/v1/models` with `x-api-key` |
//! | cohere | `GET {base}/v1/models` |
//! | ollama | `GET {base}/api/tags` |
//! | vertex | a service-account JWT (RS256) exchanged at `token_uri` |

use super::scrub::Scrubber;
use super::{Secrets, Spec};
use crate::catalog::{ApiStyle, Auth};
use crate::store::outbound::{OutboundError, OutboundRequest, OutboundResponse};
use base64::Engine;
use serde_json::{json, Value};

/// Provider answers larger than this are refused (a models list is a few KB).
pub const MAX_PROBE_RESPONSE: usize = 1024 * 1024;
/// Longest provider reason passed on to the client.
pub const MAX_REASON: usize = 300;
/// The scope Vertex AI tokens are requested for.
pub const VERTEX_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Anthropic API version header value.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Why a 3xx is refused, after the host: `{status}` is the HTTP status.
pub const REDIRECT_REFUSED: &str = "answered with a redirect (HTTP {status}); keyward does not \
     follow redirects with a credential";
/// What a 508 from a provider URL means.
pub const LOOP_REASON: &str =
    "the URL leads back to a keyward deployment; point it at the provider itself";

/// How a probe ended, when it did not prove the credential.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeFailure {
    /// The provider answered and refused (4xx): the credential or the model is wrong. 422.
    Rejected(String),
    /// The provider could not be reached, timed out, failed (5xx) or answered garbage. 502.
    Unavailable(String),
}

/// The auth headers for a connection's secrets (shared with the relay).
pub fn auth_headers(auth: Auth, secrets: &Secrets) -> Vec<(String, String)> {
    let key = secrets.get("api_key");
    let mut h = Vec::new();
    match auth {
        Auth::Bearer | Auth::OptionalBearer => {
            if let Some(k) = key.or_else(|| secrets.get("auth_token")) {
                h.push(("authorization".into(), format!("Bearer {k}")));
            }
        }
        Auth::Azure => h.extend(key.map(|k| ("api-key".to_owned(), k.to_owned()))),
        Auth::GoogleApiKey => h.extend(key.map(|k| ("x-goog-api-key".to_owned(), k.to_owned()))),
        Auth::Anthropic => {
            h.extend(key.map(|k| ("x-api-key".to_owned(), k.to_owned())));
            h.push(("anthropic-version".into(), ANTHROPIC_VERSION.into()));
        }
        Auth::ServiceAccount | Auth::None => {}
    }
    h
}

/// The base URL a connection talks to: the tenant's, else the factory's default.
pub fn base_of(spec_base: Option<&str>, default: Option<&str>) -> Option<String> {
    spec_base
        .or(default)
        .map(|b| b.trim_end_matches('/').to_owned())
}

/// The probe request for every style but Vertex (which needs a signature first).
pub fn request(spec: &Spec, timeout_ms: u64) -> Option<OutboundRequest> {
    let base = base_of(
        spec.api_base.as_deref(),
        spec.factory.default_base_url.as_deref(),
    )?;
    let url = match spec.factory.api_style {
        ApiStyle::Openai | ApiStyle::WorkersAi => format!("{base}/models"),
        ApiStyle::Azure => format!(
            "{base}/openai/deployments/{}?api-version={}",
            spec.llm_name,
            spec.settings
                .get("api_version")
                .and_then(Value::as_str)
                .unwrap_or_default()
        ),
        ApiStyle::Gemini => format!("{base}/v1beta/models"),
        ApiStyle::Anthropic | ApiStyle::Cohere => format!("{base}/v1/models"),
        ApiStyle::Ollama => format!("{base}/api/tags"),
        ApiStyle::Vertex => return None,
    };
    Some(OutboundRequest {
        method: "GET",
        url,
        headers: auth_headers(spec.factory.auth, &spec.secrets),
        body: None,
        timeout_ms,
        max_response_bytes: MAX_PROBE_RESPONSE,
        idle_timeout_ms: None,
    })
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The unsigned JWT (`header.claims`) a service account presents at `token_uri`, and that URI.
pub fn vertex_assertion(creds: &Value, now_s: i64) -> Option<(String, String)> {
    let email = creds.get("client_email")?.as_str()?;
    let token_uri = creds.get("token_uri")?.as_str()?;
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = creds.get("private_key_id").and_then(Value::as_str) {
        header["kid"] = json!(kid);
    }
    let claims = json!({
        "iss": email,
        "scope": VERTEX_SCOPE,
        "aud": token_uri,
        "iat": now_s,
        "exp": now_s + 3600,
    });
    Some((
        format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        ),
        token_uri.to_owned(),
    ))
}

/// The DER bytes inside a PEM block.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// The token request carrying a signed assertion.
pub fn vertex_token_request(
    token_uri: &str,
    unsigned: &str,
    signature: &[u8],
    timeout_ms: u64,
) -> OutboundRequest {
    let assertion = format!("{unsigned}.{}", b64url(signature));
    OutboundRequest {
        method: "POST",
        url: token_uri.to_owned(),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: Some(
            format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
            )
            .into_bytes(),
        ),
        timeout_ms,
        max_response_bytes: MAX_PROBE_RESPONSE,
        idle_timeout_ms: None,
    }
}

/// Cut every form of every secret out of a provider's text (see [`super::scrub`]), bound its
/// length, drop control characters.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    clean(text, &Scrubber::new(secrets))
}

/// [`scrub`] with the call's scrubber already built.
pub fn clean(text: &str, scrubber: &Scrubber) -> String {
    crate::domain::keys::redact_secrets(&scrubber.text(text))
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON)
        .collect()
}

/// The human reason in a provider's error body, whatever its dialect.
pub fn reason(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    // Google's OpenAI-compatible surface wraps its error in a one-element array.
    let v = match v {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        v => v,
    };
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    s(v.pointer("/error/message"))
        // Cloudflare's API (Workers AI): `{"errors": [{"code", "message"}], "success": false}`.
        .or_else(|| s(v.pointer("/errors/0/message")))
        .or_else(|| s(v.pointer("/error_description")))
        .or_else(|| s(v.get("error")))
        .or_else(|| s(v.get("message")))
        .or_else(|| s(v.get("detail")))
}

/// Read a probe's outcome. A 2xx must carry JSON to count as proof.
pub fn judge(
    outcome: Result<OutboundResponse, OutboundError>,
    host: &str,
    timeout_ms: u64,
    secrets: &[&str],
) -> Result<(), ProbeFailure> {
    let resp = match outcome {
        Ok(r) => r,
        Err(OutboundError::Timeout) => {
            return Err(ProbeFailure::Unavailable(format!(
                "no answer from {host} within {} s",
                timeout_ms / 1000
            )))
        }
        Err(OutboundError::TooLarge) => {
            return Err(ProbeFailure::Unavailable(format!(
                "{host} answered with more than {MAX_PROBE_RESPONSE} bytes"
            )))
        }
        Err(OutboundError::Unreachable(why)) => {
            log::warn!("provider {host} unreachable: {}", scrub(&why, secrets));
            return Err(ProbeFailure::Unavailable(format!(
                "cannot connect to {host}"
            )));
        }
    };
    let why = || {
        reason(&resp.body)
            .map(|r| scrub(&r, secrets))
            .unwrap_or_else(|| format!("HTTP {}", resp.status))
    };
    match resp.status {
        300..=399 => Err(ProbeFailure::Unavailable(format!(
            "{host} {}",
            REDIRECT_REFUSED.replace("{status}", &resp.status.to_string())
        ))),
        508 => Err(ProbeFailure::Unavailable(format!(
            "{host} answered 508 Loop Detected: {LOOP_REASON}"
        ))),
        200..=299 if serde_json::from_slice::<Value>(&resp.body).is_ok() => Ok(()),
        200..=299 => Err(ProbeFailure::Unavailable(format!(
            "{host} answered with something that is not JSON"
        ))),
        400..=499 => Err(ProbeFailure::Rejected(why())),
        _ => Err(ProbeFailure::Unavailable(format!(
            "{host} failed: {}",
            why()
        ))),
    }
}

/// The host of a URL, for messages.
pub fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| u.port().map_or(h.to_owned(), |p| format!("{h}:{p}")))
        })
        .unwrap_or_else(|| "the provider".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> Result<OutboundResponse, OutboundError> {
        Ok(OutboundResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn googles_array_wrapped_errors_and_cloudflares_error_lists_give_their_reason() {
        assert_eq!(
            reason(br#"[{"error": {"code": 400, "message": "API key not valid."}}]"#).as_deref(),
            Some("API key not valid.")
        );
        assert_eq!(
            reason(br#"{"errors": [{"code": 10000, "message": "Authentication error"}], "success": false}"#)
                .as_deref(),
            Some("Authentication error")
        );
        assert_eq!(reason(b"[]"), None);
    }

    #[test]
    fn provider_reasons_are_read_in_every_dialect_and_scrubbed() {
        let secret = "sk-abcdefgh";
        let cases = [
            (
                r#"{"error":{"message":"Incorrect API key provided: sk-abcdefgh."}}"#,
                "Incorrect API key provided: ***.",
            ),
            (
                r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
                "Invalid JWT Signature.",
            ),
            (
                r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
                "invalid x-api-key",
            ),
            (r#"{"message":"bad"}"#, "bad"),
            ("<html>", "HTTP 401"),
        ];
        for (body, want) in cases {
            assert_eq!(
                judge(resp(401, body), "h", 10_000, &[secret]),
                Err(ProbeFailure::Rejected(want.into())),
                "{body}"
            );
        }
    }

    #[test]
    fn success_needs_json_and_server_errors_are_unavailable() {
        assert_eq!(judge(resp(200, "{}"), "h", 10_000, &[]), Ok(()));
        assert!(matches!(
            judge(resp(200, "<html>oops</html>"), "h", 10_000, &[]),
            Err(ProbeFailure::Unavailable(_))
        ));
        assert!(matches!(
            judge(resp(503, "{}"), "h", 10_000, &[]),
            Err(ProbeFailure::Unavailable(_))
        ));
        assert!(
            matches!(judge(Err(OutboundError::Timeout), "h", 10_000, &[]), Err(ProbeFailure::Unavailable(m)) if m.contains("10 s"))
        );
    }

    #[test]
    fn long_reasons_are_bounded() {
        let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(5000));
        let Err(ProbeFailure::Rejected(r)) = judge(resp(400, &long), "h", 1, &[]) else {
            panic!("expected a rejection")
        };
        assert_eq!(r.chars().count(), MAX_REASON);
    }

    #[test]
    fn the_vertex_assertion_names_issuer_scope_and_audience() {
        let creds = json!({"client_email": "a@b.iam", "token_uri": "http://127.0.0.1:9/token", "private_key_id": "k1"});
        let (unsigned, uri) = vertex_assertion(&creds, 1000).unwrap();
        assert_eq!(uri, "http://127.0.0.1:9/token");
        let (h, c) = unsigned.split_once('.').unwrap();
        let dec = |s: &str| -> Value {
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(s)
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(dec(h)["alg"], "RS256");
        assert_eq!(dec(h)["kid"], "k1");
        let claims = dec(c);
        assert_eq!(claims["iss"], "a@b.iam");
        assert_eq!(claims["aud"], "http://127.0.0.1:9/token");
        assert_eq!(claims["exp"], 4600);
    }
}
