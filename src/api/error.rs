//! The one error type of the HTTP layer, and its mapping to status, code and body (../API.md).

use crate::store::DbError;
use serde::Serialize;

/// The single body every authentication failure gets, whatever the cause: unknown, malformed,
/// expired, revoked and disabled credentials are indistinguishable to the caller.
pub const AUTH_FAILED: &str =
    "Authentication failed: the credential is missing, malformed, unknown, expired or revoked";

#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 400, code 101: malformed or invalid input; the message names the field.
    BadRequest(String),
    /// 401, code 109: any credential problem, one body for all.
    Unauthorized,
    /// 403, code 108: authenticated, but the role may not do this.
    Forbidden(String),
    /// 404, code 404: no such resource within the caller's tenant.
    NotFound(String),
    /// 405: the path exists, the method does not; carries the `Allow` list.
    MethodNotAllowed(Vec<super::routes::Method>),
    /// 409: a uniqueness rule was violated.
    Conflict(String),
    /// 413: the body is larger than the limit (bytes).
    PayloadTooLarge(usize),
    /// 415: the body must be `application/json`.
    UnsupportedMediaType,
    /// 422, code 102: well-formed but rejected by the provider.
    DataError(String),
    /// 429: too many attempts; retry after this many seconds.
    RateLimited(u64),
    /// 500, code 100: unexpected; the detail goes to the log, never to the client.
    Internal(String),
    /// 500, code 100: the deployment's configuration is unusable for this request (the default
    /// provider, api/seed.rs); the detail names the setting and is logged as well as answered,
    /// since it never holds a secret and only the operator can fix it.
    Misconfigured(String),
    /// 502, code 105: a provider was unreachable or answered garbage.
    BadGateway(String),
    /// 508, code 508: the request came from a keyward deployment (it carries the hop header), so
    /// a provider URL somewhere leads back to keyward; answered before any other work.
    LoopDetected,
}

/// What a request carrying the hop header is told.
pub const LOOP_DETECTED: &str = "Loop detected: this request came from a keyward deployment \
     (it carries x-keyward-hop), so a provider URL leads back to keyward; point that connection \
     at the provider itself";

impl ApiError {
    pub fn bad(field: &str, why: impl std::fmt::Display) -> Self {
        ApiError::BadRequest(format!("{field}: {why}"))
    }

    /// HTTP status and envelope code.
    pub fn status_and_code(&self) -> (u16, i64) {
        match self {
            ApiError::BadRequest(_) => (400, 101),
            ApiError::Unauthorized => (401, 109),
            ApiError::Forbidden(_) => (403, 108),
            ApiError::NotFound(_) => (404, 404),
            ApiError::MethodNotAllowed(_) => (405, 405),
            ApiError::Conflict(_) => (409, 409),
            ApiError::PayloadTooLarge(_) => (413, 413),
            ApiError::UnsupportedMediaType => (415, 415),
            ApiError::DataError(_) => (422, 102),
            ApiError::RateLimited(_) => (429, 429),
            ApiError::Internal(_) | ApiError::Misconfigured(_) => (500, 100),
            ApiError::BadGateway(_) => (502, 105),
            ApiError::LoopDetected => (508, 508),
        }
    }

    /// What the client reads.
    pub fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::DataError(m)
            | ApiError::BadGateway(m) => m.clone(),
            ApiError::Unauthorized => AUTH_FAILED.into(),
            ApiError::MethodNotAllowed(allow) => {
                format!(
                    "Method not allowed; this path accepts {}",
                    super::routes::Method::join(allow)
                )
            }
            ApiError::PayloadTooLarge(limit) => {
                format!("Request body is larger than the limit of {limit} bytes")
            }
            ApiError::UnsupportedMediaType => {
                "Request body must be JSON with Content-Type: application/json".into()
            }
            ApiError::RateLimited(s) => {
                format!("Too many failed attempts; retry after {s} seconds")
            }
            ApiError::Internal(_) => "Internal error".into(),
            ApiError::Misconfigured(why) => format!(
                "The deployment is misconfigured, so nothing was changed: {why}. The operator \
                 must correct it (see the README, \"Configure a provider before anyone signs in\")"
            ),
            ApiError::LoopDetected => LOOP_DETECTED.into(),
        }
    }

    /// The envelope body `{code, data: null, message}`. Anything shaped like a key secret that a
    /// message would echo from the request (a path segment, a name) is cut out first.
    pub fn body(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            code: self.status_and_code().1,
            data: (),
            message: redact_secrets(&self.message()),
        }
    }
}

// The envelope of an error: the same three fields as a success, `data` always `null`.
/// The envelope of every error.
#[derive(Debug, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Error"))]
pub struct ErrorEnvelope {
    /// Error code: 101 argument error, 109 authentication error, 108 permission error, 404 not
    /// found, 405 method not allowed, 409 conflict, 413 body too large, 415 unsupported media type,
    /// 429 too many failed authentications, 102 data error (a provider refused the credential), 105
    /// connection error (a provider was unreachable or answered garbage), 100 internal error.
    pub code: i64,
    // Serialised as `null`.
    pub data: (),
    /// A specific human-readable message naming the field and what is wrong.
    pub message: String,
}

impl From<DbError> for ApiError {
    /// Unique violations are conflicts; everything else is unexpected and stays in the log.
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unique(m) => ApiError::Conflict(conflict_message(&m)),
            DbError::ForeignKey(_) => {
                ApiError::NotFound("A resource this request refers to no longer exists".into())
            }
            DbError::Decode(m) => ApiError::Internal(format!("row decoding: {m}")),
            DbError::Other(m) => ApiError::Internal(m),
        }
    }
}

pub use crate::domain::keys::redact_secrets;

/// Turn SQLite's `UNIQUE constraint failed: users.username` into `username already exists`.
fn conflict_message(sqlite: &str) -> String {
    let column = sqlite
        .rsplit(':')
        .next()
        .and_then(|cols| cols.split(',').next())
        .and_then(|c| c.trim().split('.').nth(1))
        .unwrap_or("value");
    format!("{column} already exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_violations_become_conflicts_naming_the_column() {
        let e: ApiError =
            DbError::from_message("D1_ERROR: UNIQUE constraint failed: users.username").into();
        assert_eq!(e, ApiError::Conflict("username already exists".into()));
    }

    #[test]
    fn echoed_secrets_are_redacted_from_messages() {
        let e = ApiError::NotFound("No user named kwa_x:kws_abcDEF123 here".into());
        assert_eq!(
            serde_json::to_value(e.body()).unwrap()["message"],
            "No user named kwa_x:kws_[redacted] here"
        );
    }

    #[test]
    fn internal_errors_show_nothing_of_their_cause() {
        let e = ApiError::Internal("no such table: secrets_xyz".into());
        assert_eq!(e.status_and_code(), (500, 100));
        assert!(!serde_json::to_value(e.body())
            .unwrap()
            .to_string()
            .contains("secrets_xyz"));
    }
}
