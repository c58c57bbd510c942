//! The HTTP API: routing, the envelope, and one handler module per resource.

pub mod admin;
pub mod ai_keys;
pub mod auth;
pub mod body;
pub mod defaults;
#[cfg(not(target_arch = "wasm32"))]
pub mod doc;
pub mod egress;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod keys;
pub mod me;
pub mod models;
pub mod opened;
pub mod page;
pub mod relay;
pub mod replicas;
pub mod routes;
pub mod seed;
pub mod usage;
pub mod webhooks;

use crate::domain::crypto::Keyring;
use crate::providers::address::{AddressPolicy, PublicHosts};
use crate::relay::Endpoint;
use crate::store::{Platform, Stmt};
use auth::Caller;
use error::ApiError;
use http::{Request, Response};
use routes::{Auth, Method, Operation, Resolved};
use serde::Serialize;
use serde_json::Value;

/// The OpenAPI document served at `/openapi.json`: the committed `src/api/openapi.json` (generated
/// from the route table and the types) without its whitespace (see build.rs).
pub const OPENAPI: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.min.json"));

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
    /// The Workers AI account serving the Builtin models (`WORKERS_AI_*`); unset, calling a
    /// Builtin model is a 400 naming what is missing.
    pub workers_ai: crate::relay::WorkersAi,
    /// The provider connection and default models every new tenant gets (`DEFAULT_LLM_*`);
    /// unset by default. Checked when a tenant is created, see [`seed`].
    pub default_provider: seed::DefaultProvider,
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
            workers_ai: crate::relay::WorkersAi::default(),
            default_provider: seed::DefaultProvider::default(),
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
    /// The handler's typed answer, serialised once here; an error (a type serde cannot write,
    /// which none of the answer types is) becomes a 500, never a silently empty `data`.
    pub data: std::result::Result<Value, String>,
    pub message: &'static str,
    pub deferred: Vec<Stmt>,
    /// Extra response headers (the next page's `Link`).
    pub headers: Vec<(String, String)>,
}

/// Every `/api/v1` answer: `{"code": 0, "data": ..., "message": ...}` on success, the same three
/// fields with the error's code on failure (error.rs).
#[derive(Serialize)]
pub struct Envelope<'a, T: Serialize> {
    pub code: i64,
    pub data: &'a T,
    pub message: &'a str,
}

impl Reply {
    pub fn ok(data: impl Serialize) -> Self {
        Reply {
            data: serde_json::to_value(data).map_err(|e| e.to_string()),
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
        let method = Method::parse(&req.method);
        let (def, operation) = match routes::resolve(&req.path, method) {
            Resolved::Found(def, operation) => (def, operation),
            Resolved::NotFound => {
                let e = ApiError::NotFound(format!("No route for {}", printable_path(&req.path)));
                // OpenAI's SDKs read every `/v1` answer in OpenAI's error shape.
                return if is_relay_path(&req.path) {
                    relay::RelayError::not_found_route(&req.method, &printable_path(&req.path))
                        .response()
                } else {
                    error_response(&e)
                };
            }
            Resolved::WrongMethod(allowed, def) => {
                let allow = Method::join(&allowed);
                let e = ApiError::MethodNotAllowed(allowed);
                let r = match def.auth {
                    Auth::RelayKey => relay::RelayError::from(e).response(),
                    Auth::Public | Auth::Admin | Auth::Key => error_response(&e),
                };
                return r.with_header("allow", &allow);
            }
        };
        // Who is calling, as the route declares it. A failure here is the route's own error shape.
        let mut plan = relay::Plan::default();
        // The caller (none for a public or admin route), and a key's `last_used_at` write to
        // run after the answer.
        let (caller, touch) = match def.auth {
            Auth::Public => (None, None),
            Auth::Admin => match self.require_admin(&req).await {
                Ok(()) => (None, None),
                Err(e) => return error_response(&e),
            },
            Auth::Key => match self.authenticate(&req).await {
                Ok((caller, touch)) => (Some(caller), touch),
                // The replay of a rotation without grace comes with the secret that rotation
                // ended; it is honoured for that one replay only (auth.rs,
                // rotation_replay_caller). A key that does not parse proves nothing: the request
                // stays unauthenticated.
                Err(ApiError::Unauthorized) => match self.rotation_replay(&operation, &req).await {
                    Ok(caller) => (Some(caller), None),
                    Err(e) => return error_response(&e),
                },
                Err(e) => return error_response(&e),
            },
            // The relay reads what its model needs in the key's own round trip (relay/plan.rs).
            Auth::RelayKey => {
                let also = |tenant: &crate::store::CallerTenant<'_>| {
                    let (p, stmts) = relay::Plan::prepare::<P>(&operation, &req, tenant);
                    plan = p;
                    stmts
                };
                match self.authenticate_with(&req, also).await {
                    Ok((caller, touch, rows)) => {
                        plan = std::mem::take(&mut plan).with_rows(rows);
                        (Some(caller), touch)
                    }
                    Err(e) => return relay::RelayError::from(e).response(),
                }
            }
        };
        let answer = self.dispatch(operation, caller.as_ref(), &req, plan).await;
        let mut r = match answer {
            Ok(Answer::Envelope(reply)) => match reply.data {
                Ok(data) => {
                    let envelope = Envelope {
                        code: 0,
                        data: &data,
                        message: reply.message,
                    };
                    let mut r = Response::json_sorted(200, &envelope);
                    r.deferred = reply.deferred;
                    r.headers.extend(reply.headers);
                    r
                }
                Err(e) => {
                    error_response(&ApiError::Internal(format!("answer not serialised: {e}")))
                }
            },
            Err(e) => error_response(&e),
            Ok(Answer::Raw(r)) => r,
        };
        r.deferred.extend(touch);
        r
    }

    /// The caller of a rotation replayed without its old key's grace, or 401.
    async fn rotation_replay(&self, operation: &Operation, req: &Request) -> Result<Caller> {
        let Operation::RotateMyApiKey { id } = operation else {
            return Err(ApiError::Unauthorized);
        };
        let Ok(Some(key)) = idempotency::key_of(req) else {
            return Err(ApiError::Unauthorized);
        };
        self.rotation_replay_caller(req, id, &key)
            .await?
            .ok_or(ApiError::Unauthorized)
    }

    /// Carry out one operation. The `match` has an arm for every declared route and no other:
    /// a route declared in routes.rs without a handler here does not compile.
    async fn dispatch(
        &self,
        operation: Operation,
        caller: Option<&Caller>,
        req: &Request,
        plan: relay::Plan,
    ) -> Result<Answer> {
        // Routes declared `Key` or `RelayKey` always have a caller (handle authenticates them
        // first); `key` is how their arms reach it.
        let key = || caller.ok_or_else(|| ApiError::Internal("route needs a caller".into()));
        Ok(match operation {
            Operation::GetHealth {} => Answer::Raw(Response::json(200, &Health { status: "ok" })),
            Operation::GetOpenApi {} => {
                let mut r = Response::json(200, &Value::Null);
                r.body = OPENAPI.as_bytes().to_vec();
                Answer::Raw(r)
            }

            Operation::ListTenants {} => Answer::Envelope(self.list_tenants(req).await?),
            Operation::CreateTenant {} => Answer::Envelope(self.create_tenant_request(req).await?),
            Operation::GetTenant { tenant_id } => {
                Answer::Envelope(self.get_tenant(&tenant_id).await?)
            }
            Operation::UpdateTenantLimits { tenant_id } => {
                Answer::Envelope(self.put_tenant_limits_request(&tenant_id, req).await?)
            }
            Operation::ApplyDefaultProvider { tenant_id } => {
                Answer::Envelope(self.apply_default_provider(&tenant_id, req).await?)
            }
            Operation::GetDefaultProvider {} => Answer::Envelope(self.default_provider(req)?),
            Operation::DeleteTenant { tenant_id } => {
                Answer::Envelope(self.delete_tenant(&tenant_id).await?)
            }
            Operation::ListUsers {} => Answer::Envelope(self.list_users(req).await?),
            Operation::CreateUser {} => Answer::Envelope(self.create_user_request(req).await?),
            Operation::GetUser { username } => Answer::Envelope(self.get_user(&username).await?),
            Operation::UpdateUser { username } => {
                Answer::Envelope(self.patch_user_request(&username, req).await?)
            }
            Operation::DeleteUser { username } => {
                Answer::Envelope(self.delete_user(&username).await?)
            }
            Operation::ListUserApiKeys { username }
            | Operation::ListUserApiKeysAlias { username } => {
                Answer::Envelope(self.list_user_keys(&username, req).await?)
            }
            Operation::CreateUserApiKey { username }
            | Operation::CreateUserApiKeyAlias { username } => {
                Answer::Envelope(self.issue_user_key(&username, req).await?)
            }
            Operation::DeleteUserApiKey { username, id }
            | Operation::DeleteUserApiKeyAlias { username, id } => {
                Answer::Envelope(self.revoke_user_key(&username, &id).await?)
            }
            Operation::GetSettings {} => Answer::Envelope(self.settings().await?),
            Operation::UpdateSettings {} => Answer::Envelope(self.put_settings_request(req).await?),
            Operation::ListAuditEntries {} => Answer::Envelope(self.audit(req).await?),

            Operation::GetMe {} => Answer::Envelope(me::me(key()?)),
            Operation::GetMyKeyLimits {} => {
                let c = key()?;
                Answer::Envelope(self.key_limits(&c.username, c.expires_at).await?)
            }
            Operation::ListMyApiKeys {} => {
                let c = key()?;
                Answer::Envelope(self.list_keys(&c.username, req).await?)
            }
            Operation::CreateMyApiKey {} => {
                let c = key()?;
                Answer::Envelope(self.issue_my_key(c, req).await?)
            }
            Operation::DeleteMyApiKey { id } => {
                let c = key()?;
                Answer::Envelope(self.revoke_my_key(c, &id).await?)
            }
            Operation::RotateMyApiKey { id } => {
                let c = key()?;
                Answer::Envelope(self.rotate_my_key(c, &id, req).await?)
            }

            Operation::ListFactories {} => Answer::Envelope(Reply::ok(self.factories_json())),
            Operation::ListModels {} => {
                let c = key()?;
                Answer::Envelope(self.list_models(c, req).await?)
            }
            Operation::AddModel {} => {
                let c = models::managing(key()?)?;
                let b = body::parse(req)?;
                Answer::Envelope(self.add_model(c, req, b).await?)
            }
            Operation::RemoveModel {} => {
                let c = models::managing(key()?)?;
                let b = body::parse(req)?;
                Answer::Envelope(self.remove_model(c, b).await?)
            }
            Operation::GetDefaultModels {} => {
                let c = key()?;
                Answer::Envelope(self.get_defaults(c).await?)
            }
            Operation::SetDefaultModels {} => {
                let c = key()?;
                Answer::Envelope(self.set_defaults(c, req).await?)
            }

            Operation::GetWebhook {} => {
                let c = models::managing(key()?)?;
                Answer::Envelope(self.get_webhook(c).await?)
            }
            Operation::PutWebhook {} => {
                let c = models::managing(key()?)?;
                Answer::Envelope(self.put_webhook(c, req).await?)
            }
            Operation::DeleteWebhook {} => {
                let c = models::managing(key()?)?;
                Answer::Envelope(self.delete_webhook(c).await?)
            }
            Operation::TestWebhook {} => {
                let c = models::managing(key()?)?;
                Answer::Envelope(self.test_webhook(c).await?)
            }

            Operation::GetAiKeyUsage { id } => {
                let c = key()?;
                Answer::Envelope(self.ai_key_usage(c, &id, req).await?)
            }
            Operation::GetUsage {} => {
                let c = key()?;
                Answer::Envelope(self.tenant_usage(c, req).await?)
            }
            Operation::ListAiKeys {} => {
                let c = key()?;
                Answer::Envelope(self.list_ai_keys(c, req).await?)
            }
            Operation::CreateAiKey {} => {
                let c = models::managing(key()?)?;
                let b = body::parse(req)?;
                Answer::Envelope(self.create_ai_key(c, b).await?)
            }
            Operation::GetAiKey { id } => {
                let c = key()?;
                Answer::Envelope(self.get_ai_key(c, &id).await?)
            }
            Operation::UpdateAiKey { id } => {
                let c = models::managing(key()?)?;
                let b = body::parse(req)?;
                Answer::Envelope(self.update_ai_key(c, &id, b).await?)
            }
            Operation::DeleteAiKey { id } => {
                let c = models::managing(key()?)?;
                Answer::Envelope(self.delete_ai_key(c, &id).await?)
            }

            Operation::RelayListModels {} => Answer::Raw(match key() {
                Ok(c) => (self.relay_models(c, plan).await).unwrap_or_else(|e| e.response()),
                Err(e) => relay::RelayError::from(e).response(),
            }),
            Operation::RelayChatCompletions {} => {
                self.relayed(key(), req, Endpoint::Chat, plan).await
            }
            Operation::RelayEmbeddings {} => {
                self.relayed(key(), req, Endpoint::Embeddings, plan).await
            }
            Operation::RelayRerank {} => self.relayed(key(), req, Endpoint::Rerank, plan).await,
            Operation::RelayTranscription {} => {
                self.relayed(key(), req, Endpoint::Transcription, plan)
                    .await
            }
            Operation::RelaySpeech {} => self.relayed(key(), req, Endpoint::Speech, plan).await,
        })
    }
}

// `GET /health`.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(inline))]
pub struct Health {
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("const" = "ok")))]
    pub status: &'static str,
}

impl<P: Platform> App<P> {
    /// A relay call's answer, its errors (a missing caller included) in OpenAI's shape.
    async fn relayed(
        &self,
        caller: Result<&Caller, ApiError>,
        req: &Request,
        endpoint: Endpoint,
        plan: relay::Plan,
    ) -> Answer {
        Answer::Raw(match caller {
            Ok(c) => {
                (self.relay_call(c, req, endpoint, plan).await).unwrap_or_else(|e| e.response())
            }
            Err(e) => relay::RelayError::from(e).response(),
        })
    }
}

/// A handler's success: the envelope's data, or a response of its own (health, the document, the
/// relay, which answers its errors in OpenAI's shape itself).
enum Answer {
    Envelope(Reply),
    Raw(Response),
}

/// The envelope for an error, logging what must not reach the client.
pub fn error_response(e: &ApiError) -> Response {
    let (status, _) = e.status_and_code();
    match e {
        ApiError::Internal(detail) => log::error!("internal error: {detail}"),
        ApiError::Misconfigured(why) => log::error!("the deployment is misconfigured: {why}"),
        _ => {}
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
        ApiError::BadRequest(_)
        | ApiError::Forbidden(_)
        | ApiError::NotFound(_)
        | ApiError::MethodNotAllowed(_)
        | ApiError::Conflict(_)
        | ApiError::PayloadTooLarge(_)
        | ApiError::UnsupportedMediaType
        | ApiError::DataError(_)
        | ApiError::Internal(_)
        | ApiError::Misconfigured(_)
        | ApiError::BadGateway(_)
        | ApiError::LoopDetected => {}
    }
    r
}

/// Whether a path is under the relay's `/v1`, whose answers are all in OpenAI's shape.
fn is_relay_path(p: &str) -> bool {
    p == "/v1" || p.starts_with("/v1/")
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

    #[test]
    fn an_envelope_written_straight_is_the_bytes_of_one_written_through_value() {
        #[derive(Serialize)]
        struct Unsorted {
            zeta: u8,
            alpha: Option<&'static str>,
            mid: Vec<u8>,
        }
        let reply = Reply::ok(Unsorted {
            zeta: 1,
            alpha: Some("a\"b"),
            mid: vec![2, 3],
        })
        .with_message("done");
        let data = reply.data.expect("serialised");
        let envelope = Envelope {
            code: 0,
            data: &data,
            message: reply.message,
        };
        let straight = Response::json_sorted(200, &envelope);
        assert_eq!(straight.body, Response::json(200, &envelope).body);
        assert_eq!(
            straight.json_body(),
            serde_json::json!({"code": 0, "data": {"alpha": "a\"b", "mid": [2, 3], "zeta": 1}, "message": "done"})
        );
    }
}
