//! The HTTP API: routing, the envelope, and one handler module per resource.

pub mod admin;
pub mod ai_keys;
pub mod auth;
pub mod body;
pub mod defaults;
pub mod egress;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod keys;
pub mod me;
pub mod models;
pub mod page;
pub mod relay;
pub mod routes;

use crate::domain::crypto::Keyring;
use crate::providers::address::{AddressPolicy, PublicHosts};
use crate::store::{Platform, Stmt};
use error::ApiError;
use http::{Request, Response};
use routes::Route;
use serde_json::{json, Value};

/// The OpenAPI document served at `/openapi.json`; a test keeps it in step with the route table.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Deployment configuration, from Worker vars and secrets.
#[derive(Debug, Clone)]
pub struct Config {
    /// The admin bearer token (`ADMIN_TOKEN` secret). `None` disables the admin API.
    pub admin_token: Option<String>,
    /// `auth_token_max_ttl_minutes` until an admin sets it (`AUTH_TOKEN_MAX_TTL_MINUTES` var).
    pub default_max_ttl_minutes: i64,
    /// Master keys for provider credentials (`KEYWARD_ENCRYPTION_KEY*` secrets). `None`: providers
    /// with a credential cannot be connected.
    pub keyring: Option<Keyring>,
    /// Builtin models enabled for this deployment, comma-separated (`BUILTIN_MODELS` var).
    pub builtin_models: String,
    /// Timeout of each provider call (validation, relay), in milliseconds.
    pub provider_timeout_ms: u64,
    /// Seconds a successful key verification may be reused from this isolate's memory (0 = off,
    /// the default: every request reads D1, so a revocation takes effect at once).
    pub verify_cache_seconds: u64,
    /// The longest wait for the next chunk of a streamed answer (`STREAM_IDLE_TIMEOUT_MS` var),
    /// in milliseconds; see [`stream_idle_timeout_ms`].
    pub stream_idle_timeout_ms: u64,
    /// Which non-public address classes (loopback, private, link-local) tenant URLs may name
    /// (`PROVIDER_PRIVATE_ADDRESSES` var); none by default.
    pub address_policy: AddressPolicy,
    /// The deployment's public hostnames (`KEYWARD_PUBLIC_HOSTS` var), refused as provider URLs
    /// beside the host each request was sent to.
    pub public_hosts: PublicHosts,
}

/// Provider calls give up after this long (../API.md: 10 s).
pub const DEFAULT_PROVIDER_TIMEOUT_MS: u64 = 10_000;
/// A stream whose upstream sends nothing for this long is ended. Providers that stream send a
/// token every few hundred milliseconds, and Anthropic sends `ping` events while it thinks;
/// 30 s leaves room for a slow first token of a long prompt.
pub const DEFAULT_STREAM_IDLE_TIMEOUT_MS: u64 = 30_000;
/// The longest idle timeout an operator can set: below the 100 s after which Cloudflare's edge
/// cuts a response that sends nothing (error 524), so the client always gets keyward's error
/// event rather than a dropped connection, and a silent upstream holds a client a minute at most.
pub const MAX_STREAM_IDLE_TIMEOUT_MS: u64 = 60_000;

/// The idle timeout from the `STREAM_IDLE_TIMEOUT_MS` var: its value in milliseconds, at most
/// [`MAX_STREAM_IDLE_TIMEOUT_MS`]; the default when unset, zero or not a number.
pub fn stream_idle_timeout_ms(var: Option<&str>) -> u64 {
    match var.map(str::trim).and_then(|v| v.parse::<u64>().ok()) {
        Some(0) | None => DEFAULT_STREAM_IDLE_TIMEOUT_MS,
        Some(ms) => ms.min(MAX_STREAM_IDLE_TIMEOUT_MS),
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            admin_token: None,
            default_max_ttl_minutes: 129_600,
            keyring: None,
            builtin_models: String::new(),
            provider_timeout_ms: DEFAULT_PROVIDER_TIMEOUT_MS,
            verify_cache_seconds: 0,
            stream_idle_timeout_ms: DEFAULT_STREAM_IDLE_TIMEOUT_MS,
            address_policy: AddressPolicy::default(),
            public_hosts: PublicHosts::default(),
        }
    }
}

/// The whole service over some platform.
pub struct App<P: Platform> {
    pub platform: P,
    pub config: Config,
}

/// A handler's success: the `data` of the envelope and its message.
pub struct Reply {
    pub data: Value,
    pub message: &'static str,
    pub deferred: Vec<Stmt>,
    /// Extra response headers (the next page's `Link`).
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn ok(data: Value) -> Self {
        Reply {
            data,
            message: "success",
            deferred: Vec::new(),
            headers: Vec::new(),
        }
    }
    pub fn with_message(mut self, message: &'static str) -> Self {
        self.message = message;
        self
    }
    pub fn after(mut self, deferred: Option<Stmt>) -> Self {
        self.deferred.extend(deferred);
        self
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl<P: Platform> App<P> {
    pub fn new(platform: P, config: Config) -> Self {
        App { platform, config }
    }

    /// The cron's purge over this app's platform; see [`crate::jobs::purge`].
    pub async fn purge(&self) -> Result<crate::jobs::PurgeReport, crate::store::DbError> {
        crate::jobs::purge(&self.platform).await
    }

    /// Answer one request. Never panics on input; every failure is an envelope with its status.
    pub async fn handle(&self, req: Request) -> Response {
        // First of all, before routing, authentication or any storage read: a request from a
        // keyward deployment (ours or another) is a loop in the making.
        if let Some(refused) = egress::refuse_hop(&req) {
            return refused;
        }
        let (route, allowed) = match routes::resolve(&req.path) {
            Some(found) => found,
            None => {
                return error_response(&ApiError::NotFound(format!(
                    "No route for {}",
                    printable_path(&req.path)
                )))
            }
        };
        let method = req.method.to_ascii_uppercase();
        if !allowed.contains(&method.as_str()) {
            let e = ApiError::MethodNotAllowed(allowed);
            let r = if route.is_relay() {
                relay::RelayError::from(e).response()
            } else {
                error_response(&e)
            };
            return r.with_header("allow", &allowed.join(", "));
        }
        match route {
            Route::Health => return Response::json(200, &json!({"status": "ok"})),
            Route::OpenApi => {
                let mut r = Response::json(200, &Value::Null);
                r.body = OPENAPI.as_bytes().to_vec();
                return r;
            }
            _ => {}
        }
        if route.is_relay() {
            return self.relay(&method, route, &req).await;
        }
        let result = if route.is_admin() {
            self.admin(&method, route, &req).await
        } else if route.is_ai_keys() {
            self.ai_keys(&method, route, &req).await
        } else if route.is_models() {
            self.models(&method, route, &req).await
        } else {
            self.self_service(&method, route, &req).await
        };
        match result {
            Ok(reply) => {
                let mut r = Response::json(
                    200,
                    &json!({"code": 0, "data": reply.data, "message": reply.message}),
                );
                r.deferred = reply.deferred;
                r.headers.extend(reply.headers);
                r
            }
            Err(e) => error_response(&e),
        }
    }
}

/// The envelope for an error, logging what must not reach the client.
pub fn error_response(e: &ApiError) -> Response {
    let (status, _) = e.status_and_code();
    if let ApiError::Internal(detail) = e {
        log::error!("internal error: {detail}");
    }
    let mut r = Response::json(status, &e.body());
    match e {
        ApiError::Unauthorized => {
            r = r.with_header(
                "www-authenticate",
                "Bearer realm=\"keyward\", Basic realm=\"keyward\"",
            )
        }
        ApiError::RateLimited(s) => r = r.with_header("retry-after", &s.to_string()),
        _ => {}
    }
    r
}

/// A path for an error message: bounded and without control characters.
fn printable_path(p: &str) -> String {
    p.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_idle_timeout_defaults_to_30_s_and_is_capped_at_60_s() {
        assert_eq!(stream_idle_timeout_ms(None), 30_000);
        assert_eq!(stream_idle_timeout_ms(Some("1500")), 1_500);
        assert_eq!(stream_idle_timeout_ms(Some(" 45000 ")), 45_000);
        assert_eq!(stream_idle_timeout_ms(Some("600000")), 60_000);
        for unusable in ["0", "", "-5", "ten", "1.5"] {
            assert_eq!(stream_idle_timeout_ms(Some(unusable)), 30_000, "{unusable}");
        }
        assert_eq!(Config::default().stream_idle_timeout_ms, 30_000);
    }
}
