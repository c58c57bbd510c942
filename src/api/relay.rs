//! The OpenAI-compatible relay: `GET /v1/models`, `POST /v1/chat/completions` (streaming
//! included), `POST /v1/embeddings`, `POST /v1/rerank`, `POST /v1/audio/transcriptions` and
//! `POST /v1/audio/speech`, authenticated by a user's keyward key, answering in OpenAI's shapes
//! and errors so OpenAI's SDKs work pointed at `<worker>/v1`.

use super::auth::Caller;
use super::error::ApiError;
use super::http::{Request, Response};
use super::models::Available;
use super::App;
use crate::catalog::{self, ApiStyle, ModelType};
use crate::domain::states::{KeyStatus, UsagePolicy};
use crate::providers::printable;
use crate::providers::probe::{self, base_of, reason};
use crate::providers::scrub::Scrubber;
use crate::relay::{
    self, anthropic, cooldown, media, multipart, tokens, Call, Endpoint, RelayStream, StreamMode,
    Upstream, Usage, ESTIMATE_HEADER, LIMIT_HEADER, MAX_RELAY_BODY,
};
use crate::relay::{ErrorCode, ErrorType};
use crate::store::ai_keys::{self, AiKey};
use crate::store::outbound::{Outbound, OutboundError, OutboundResponse};
use crate::store::{providers, Platform, Stmt};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

mod over_time;
mod plan;

use plan::Found;
pub(crate) use plan::Plan;

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayError {
    pub status: u16,
    pub message: String,
    pub kind: ErrorType,
    pub code: Option<ErrorCode>,
    /// Seconds for `Retry-After` (rate limiting).
    pub retry_after: Option<u64>,
}

impl RelayError {
    fn new(
        status: u16,
        kind: ErrorType,
        code: Option<ErrorCode>,
        message: impl Into<String>,
    ) -> Self {
        RelayError {
            status,
            message: message.into(),
            kind,
            code,
            retry_after: None,
        }
    }
    /// A `/v1` path no route has: 404 as OpenAI answers one (`unknown_url`).
    pub fn not_found_route(method: &str, path: &str) -> Self {
        let method: String = method
            .chars()
            .filter(char::is_ascii_alphabetic)
            .take(16)
            .collect();
        Self::new(
            404,
            ErrorType::InvalidRequest,
            Some(ErrorCode::UnknownUrl),
            format!("Unknown relay URL ({method} {path}); the relay serves GET /v1/models, POST /v1/chat/completions, POST /v1/embeddings, POST /v1/rerank, POST /v1/audio/transcriptions and POST /v1/audio/speech"),
        )
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(400, ErrorType::InvalidRequest, None, message)
    }
    pub fn response(&self) -> Response {
        if self.status >= 500 {
            log::warn!("relay answered {}: {}", self.status, self.message);
        }
        let message = super::error::redact_secrets(&self.message);
        let body = relay::error_body(&message, self.kind, self.code);
        let mut r = Response::json(self.status, &body);
        if self.status == 401 {
            r = r.with_header("www-authenticate", "Bearer realm=\"keyward\"");
        }
        if let Some(s) = self.retry_after {
            r = r.with_header("retry-after", &s.to_string());
        }
        r
    }
}

impl From<ApiError> for RelayError {
    fn from(e: ApiError) -> Self {
        let (status, _) = e.status_and_code();
        let message = e.message();
        let retry_after = if let ApiError::RateLimited(s) = e {
            Some(s)
        } else {
            None
        };
        let (kind, code) = match e {
            ApiError::Unauthorized => (ErrorType::InvalidRequest, Some(ErrorCode::InvalidApiKey)),
            ApiError::Forbidden(_) => (ErrorType::Permission, None),
            ApiError::NotFound(_) => (ErrorType::InvalidRequest, Some(ErrorCode::ModelNotFound)),
            ApiError::RateLimited(_) => (ErrorType::RateLimit, Some(ErrorCode::RateLimitExceeded)),
            ApiError::Internal(ref detail) => {
                log::error!("relay internal error: {detail}");
                (ErrorType::Server, None)
            }
            ApiError::Misconfigured(ref why) => {
                log::error!("the deployment is misconfigured: {why}");
                (ErrorType::Server, None)
            }
            ApiError::BadGateway(_) => (ErrorType::Upstream, None),
            ApiError::LoopDetected => (ErrorType::InvalidRequest, Some(ErrorCode::LoopDetected)),
            ApiError::BadRequest(_)
            | ApiError::MethodNotAllowed(_)
            | ApiError::Conflict(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::UnsupportedMediaType
            | ApiError::DataError(_) => (ErrorType::InvalidRequest, None),
        };
        RelayError {
            status,
            message,
            kind,
            code,
            retry_after,
        }
    }
}

type RResult<T> = std::result::Result<T, RelayError>;

/// The most body bytes the runtime reads for a path before the core sees the request: an audio
/// form's limit for transcriptions, the relay's JSON limit everywhere else (a larger declared body
/// is answered 413 unread). The callers use the length, so one byte over is enough to tell.
pub fn read_limit(path: &str) -> u64 {
    if path == Endpoint::Transcription.path() {
        media::MAX_AUDIO_UPLOAD as u64
    } else {
        MAX_RELAY_BODY as u64
    }
}

/// What a relay call resolved to.
#[derive(Clone)]
struct Target {
    upstream: Upstream,
    /// A gateway key's provider keys in priority order (`upstream` carries the first); empty for
    /// a connection or a Builtin model, whose one credential is in `upstream`.
    pool: Vec<String>,
    /// The gateway key whose limits apply, if the model named one.
    gateway: Option<AiKey>,
    /// The connection whose per-model `used_token` counts this call.
    usage_conn: Option<(String, String)>,
    /// The model id echoed back to the client.
    shown: String,
    /// A Builtin image-to-text model, called on Workers AI's own endpoint.
    builtin_image: bool,
}

/// The model type an endpoint calls, whose tenant default `default` means.
fn wanted_type(endpoint: Endpoint) -> ModelType {
    match endpoint {
        Endpoint::Chat => ModelType::Chat,
        Endpoint::Embeddings => ModelType::Embedding,
        Endpoint::Rerank => ModelType::Rerank,
        Endpoint::Transcription => ModelType::Speech2text,
        Endpoint::Speech => ModelType::Tts,
    }
}

fn type_fits(endpoint: Endpoint, t: ModelType) -> bool {
    match endpoint {
        Endpoint::Chat => matches!(t, ModelType::Chat | ModelType::Image2text),
        other => t == wanted_type(other),
    }
}

// `GET /v1/models`: OpenAI's model list.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct RelayModelList {
    // Always `list`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("const" = "list")))]
    pub object: Cow<'static, str>,
    pub data: Vec<RelayModel>,
}

// One model the relay serves: a connected model (`name@factory`) or a gateway key's alias.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct RelayModel {
    /// A model id `name@factory`, or a gateway key's alias.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("examples" = ["gpt-4o@OpenAI", "prod-gpt4o"])))]
    pub id: String,
    // Always `model`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("const" = "model")))]
    pub object: Cow<'static, str>,
    // Always 0: keyward does not know when a provider made the model.
    /// Always 0.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("const" = 0)))]
    pub created: i64,
    // The factory, or `keyward` for a gateway key.
    /// The factory, or `keyward` for a gateway key alias.
    pub owned_by: String,
}

impl<P: Platform> App<P> {
    pub(crate) async fn relay_models(&self, caller: &Caller, mut plan: Plan) -> RResult<Response> {
        let (connections, keys) = match plan.found()? {
            Some(Found::Models { connections, keys }) => (connections, keys),
            // Not read with the key: read now.
            _ => {
                let db = self.platform.db();
                let connections = providers::list_for_tenant(db, &caller.tenant_id)
                    .await
                    .map_err(ApiError::from)?;
                let keys = ai_keys::page(
                    db,
                    &caller.tenant_id,
                    &ai_keys::Filter {
                        status: Some(KeyStatus::Enabled),
                        limit: plan::LISTED_KEYS,
                        ..Default::default()
                    },
                )
                .await
                .map_err(ApiError::from)?;
                (connections, keys)
            }
        };
        let models = self.expand(connections, true);
        // Builtin models are listed once the deployment's Workers AI account can serve them.
        let builtin_served = self.config.workers_ai.endpoint().is_ok();
        let mut data: Vec<RelayModel> = models
            .iter()
            .filter(|m| m.connection.is_some() || builtin_served)
            .map(|m| RelayModel {
                id: m.id(),
                object: "model".into(),
                created: 0,
                owned_by: m.factory.name.clone(),
            })
            .collect();
        // One page, not counted: the list has no total to show.
        data.extend(keys.iter().map(|k| RelayModel {
            id: k.alias.clone(),
            object: "model".into(),
            created: 0,
            owned_by: "keyward".into(),
        }));
        Ok(Response::json(
            200,
            &RelayModelList {
                object: "list".into(),
                data,
            },
        ))
    }

    /// Parse and check the request body: JSON object, within the relay's size limit.
    fn relay_body(req: &Request) -> RResult<Map<String, Value>> {
        if req.body.len() > MAX_RELAY_BODY || req.unread_len.is_some() {
            return Err(RelayError::new(
                413,
                ErrorType::InvalidRequest,
                Some(ErrorCode::RequestTooLarge),
                format!("Request body is larger than the limit of {MAX_RELAY_BODY} bytes"),
            ));
        }
        if !super::body::is_json(req) {
            return Err(RelayError::new(
                415,
                ErrorType::InvalidRequest,
                None,
                "Request body must be JSON with Content-Type: application/json",
            ));
        }
        match serde_json::from_slice::<Value>(&req.body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(RelayError::bad("Request body must be a JSON object")),
            Err(e) => Err(RelayError::bad(format!(
                "Invalid JSON body: {}",
                super::body::scrub_message(&e.to_string())
            ))),
        }
    }

    /// Resolve the `model` field: a gateway key alias, a model id, or the tenant default. What
    /// `found` holds (read with the caller's key, see [`Plan`]) is used; anything it lacks is read.
    async fn relay_target(
        &self,
        caller: &Caller,
        model: &str,
        endpoint: Endpoint,
        found: Option<Found>,
    ) -> RResult<Target> {
        let want = wanted_type(endpoint);
        // An id naming its factory costs a primary-key read; only a bare name needs the list.
        let available_for = |id: &str| {
            let (name, factory) = super::defaults::split_id(id);
            let (name, factory) = (name.to_owned(), factory.map(str::to_owned));
            async move {
                match factory {
                    Some(f) => self.available_named(&caller.tenant_id, &f, &name).await,
                    None => self.available_models(&caller.tenant_id).await,
                }
            }
        };
        if model.is_empty() || model == "default" {
            let field = super::defaults::FIELDS
                .iter()
                .find(|(_, t)| *t == want)
                .map(|(f, _)| *f)
                .unwrap_or("llm_id");
            let id = match found {
                Some(Found::Default {
                    default,
                    connections,
                }) => default.map(|(f, n)| (format!("{n}@{f}"), Some((f, n, connections)))),
                _ => {
                    let defaults = self.read_defaults(caller).await?;
                    let id = defaults.get(field).and_then(Value::as_str);
                    id.map(|id| (id.to_owned(), None))
                }
            };
            let (id, read) = id.ok_or_else(|| {
                RelayError::bad(format!(
                    "No default {} model is set for this tenant; name a model or set {field} with POST /api/v1/models/default",
                    want.as_str()
                ))
            })?;
            // The connections read with the key are those of the default's factory and name,
            // which is what its id names unless the factory has left the catalog.
            let available = match read {
                Some((f, n, connections))
                    if super::defaults::split_id(&id) == (n.as_str(), Some(f.as_str())) =>
                {
                    self.named_from(connections, &f, &n)
                }
                _ => available_for(&id).await?,
            };
            let id = id.as_str();
            let a = super::defaults::resolve(id, want, &available).map_err(|why| {
                RelayError::new(
                    404,
                    ErrorType::InvalidRequest,
                    Some(ErrorCode::ModelNotFound),
                    why,
                )
            })?;
            return self.connection_target(a);
        }
        let mut bare = None;
        let mut named = None;
        match found {
            Some(Found::AliasOrBare {
                key: Some(key),
                key_connections,
                ..
            }) => {
                let available = self.named_from(key_connections, &key.provider, &key.model);
                return self.gateway_target(*key, &available, endpoint);
            }
            Some(Found::AliasOrBare {
                key: None, bare: b, ..
            })
            | Some(Found::Bare(b)) => bare = Some(b),
            Some(Found::Named(c)) => named = Some(c),
            Some(Found::Models { .. } | Found::Default { .. }) | None => {}
        }
        if !model.contains('@') && bare.is_none() {
            if let Some(key) = ai_keys::get_by_alias(self.platform.db(), &caller.tenant_id, model)
                .await
                .map_err(ApiError::from)?
            {
                let available = self
                    .available_named(&caller.tenant_id, &key.provider, &key.model)
                    .await?;
                return self.gateway_target(key, &available, endpoint);
            }
        }
        let available = match (bare, named, super::defaults::split_id(model)) {
            // The bare name's connections stand in for all of them: only models of that name
            // take part in resolving it.
            (Some(b), _, (_, None)) => self.expand(b, true),
            (_, Some(c), (name, Some(factory))) => self.named_from(c, factory, name),
            _ => available_for(model).await?,
        };
        let a = super::defaults::resolve(model, want, &available).map_err(|why| {
            // Name the endpoint's need when the model exists with another type.
            RelayError::new(
                404,
                ErrorType::InvalidRequest,
                Some(ErrorCode::ModelNotFound),
                format!(
                    "The model `{}` does not exist or cannot be used here: {why}",
                    printable(model)
                ),
            )
        });
        let a = match a {
            Ok(a) => a,
            Err(e) if endpoint == Endpoint::Chat => {
                super::defaults::resolve(model, ModelType::Image2text, &available).map_err(|_| e)?
            }
            Err(e) => return Err(e),
        };
        self.connection_target(a)
    }

    fn connection_target(&self, a: &Available) -> RResult<Target> {
        let Some(conn) = &a.connection else {
            return self.builtin_target(a);
        };
        let (secrets, settings) = self.opened_connection(conn)?;
        let base = match base_of(
            conn.api_base.as_deref(),
            a.factory.default_base_url.as_deref(),
        ) {
            Some(b) => b,
            // Vertex AI's root is its location's host.
            None if a.factory.api_style == ApiStyle::Vertex => relay::vertex::default_base(
                settings
                    .get("location")
                    .and_then(Value::as_str)
                    .unwrap_or(crate::providers::VERTEX_DEFAULT_LOCATION),
            )
            .map_err(RelayError::bad)?,
            None => return Err(RelayError::bad(format!("{} has no base URL", a.id()))),
        };
        Ok(Target {
            upstream: Upstream {
                style: a.factory.api_style,
                auth: a.factory.auth,
                base,
                model: a.name.clone(),
                secrets,
                settings,
            },
            pool: Vec::new(),
            gateway: None,
            usage_conn: Some((conn.id.clone(), a.name.clone())),
            shown: a.id(),
            builtin_image: false,
        })
    }

    /// A Builtin model, served through the deployment's Workers AI account.
    fn builtin_target(&self, a: &Available) -> RResult<Target> {
        let (base, token) = self.config.workers_ai.endpoint().map_err(|why| {
            RelayError::new(
                400,
                ErrorType::InvalidRequest,
                Some(ErrorCode::BuiltinNotConfigured),
                format!("{} cannot be called: {why}", a.id()),
            )
        })?;
        let mut secrets = crate::providers::Secrets::default();
        secrets.0.insert("api_key".into(), json!(token));
        Ok(Target {
            upstream: Upstream {
                style: ApiStyle::WorkersAi,
                auth: catalog::Auth::Bearer,
                base,
                model: a.name.clone(),
                secrets,
                settings: Map::new(),
            },
            pool: Vec::new(),
            gateway: None,
            usage_conn: None,
            shown: a.id(),
            builtin_image: a.model_type == ModelType::Image2text,
        })
    }

    fn gateway_target(
        &self,
        key: AiKey,
        available: &[Available],
        endpoint: Endpoint,
    ) -> RResult<Target> {
        let factory = catalog::factory(&key.provider).ok_or_else(|| {
            RelayError::bad(format!(
                "Gateway key {} names an unknown provider",
                key.alias
            ))
        })?;
        let known = available
            .iter()
            .find(|a| a.factory.name == factory.name && a.name == key.model);
        let model_type = known
            .map(|a| a.model_type)
            .or_else(|| factory.model(&key.model).map(|m| m.model_type));
        if let Some(t) = model_type {
            if !type_fits(endpoint, t) {
                return Err(RelayError::bad(format!(
                    "Gateway key {} is for a {} model; this endpoint needs a {} model",
                    key.alias,
                    t.as_str(),
                    wanted_type(endpoint).as_str()
                )));
            }
        }
        let conn = known.and_then(|a| a.connection.as_ref());
        // The key's credential goes only to the endpoint it was sealed for, wherever the
        // connection points now.
        let base = match &key.endpoint {
            Some(bound) => bound.clone(),
            None => {
                let current = base_of(
                    conn.and_then(|c| c.api_base.as_deref()),
                    factory.default_base_url.as_deref(),
                );
                return Err(match current {
                    None => RelayError::bad(format!(
                        "Gateway key {} has no provider base URL",
                        key.alias
                    )),
                    Some(_) => RelayError::new(
                        403,
                        ErrorType::Permission,
                        Some(ErrorCode::EndpointUnbound),
                        format!(
                            "Gateway key {} is not bound to an endpoint (it was stored before \
                             keys were); set its api_key again with PUT /api/v1/ai_keys/{} to \
                             bind it to where it should go",
                            key.alias, key.id
                        ),
                    ),
                });
            }
        };
        let settings = conn
            .map(|c| self.connection_settings(c))
            .unwrap_or_default();
        let pool = self.opened_ai_key(&key)?;
        let mut secrets = crate::providers::Secrets::default();
        secrets.0.insert("api_key".into(), json!(pool[0]));
        Ok(Target {
            pool,
            upstream: Upstream {
                style: factory.api_style,
                auth: factory.auth,
                base,
                model: key.model.clone(),
                secrets,
                settings,
            },
            usage_conn: conn.map(|c| (c.id.clone(), key.model.clone())),
            shown: key.alias.clone(),
            gateway: Some(key),
            builtin_image: false,
        })
    }

    /// The checked call and the model it names, from a JSON body or (transcriptions) a form.
    fn relay_request(req: &Request, endpoint: Endpoint) -> RResult<(Call, String)> {
        if endpoint == Endpoint::Transcription {
            let t = Self::relay_form(req)?;
            let model = t.model.clone();
            return Ok((Call::Transcription(t), model));
        }
        let body = Value::Object(Self::relay_body(req)?);
        let model = match body.get("model") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(RelayError::bad("model: must be a string")),
        };
        let call = match endpoint {
            Endpoint::Chat | Endpoint::Embeddings => {
                for field in ["max_tokens", "max_completion_tokens"] {
                    match body.get(field) {
                        None | Some(Value::Null) => {}
                        Some(v) if v.as_u64().is_some_and(|n| n >= 1) => {}
                        Some(_) => {
                            return Err(RelayError::bad(format!(
                                "{field}: must be a positive integer"
                            )))
                        }
                    }
                }
                Call::Json(body)
            }
            Endpoint::Rerank => Call::Rerank(media::Rerank::parse(&body).map_err(RelayError::bad)?),
            Endpoint::Speech => Call::Speech(media::Speech::parse(&body).map_err(RelayError::bad)?),
            Endpoint::Transcription => unreachable!("read as a form above"),
        };
        Ok((call, model))
    }

    /// A transcription's form: multipart, within [`media::MAX_AUDIO_UPLOAD`].
    fn relay_form(req: &Request) -> RResult<media::Transcription> {
        if req.body.len() > media::MAX_AUDIO_UPLOAD || req.unread_len.is_some() {
            return Err(RelayError::new(
                413,
                ErrorType::InvalidRequest,
                Some(ErrorCode::RequestTooLarge),
                format!(
                    "The audio form is larger than the limit of 25 MiB ({} bytes)",
                    media::MAX_AUDIO_UPLOAD
                ),
            ));
        }
        let content_type = req
            .headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        let boundary = multipart::boundary(content_type).map_err(|why| {
            RelayError::new(
                415,
                ErrorType::InvalidRequest,
                None,
                format!("{why} (Content-Type: multipart/form-data with a boundary)"),
            )
        })?;
        let form = multipart::parse(&req.body, &boundary).map_err(RelayError::bad)?;
        media::Transcription::parse(form).map_err(RelayError::bad)
    }

    /// A relay call, with the reservations of limits over time it made released when it fails.
    pub(crate) async fn relay_call(
        &self,
        caller: &Caller,
        req: &Request,
        endpoint: Endpoint,
        plan: Plan,
    ) -> RResult<Response> {
        let mut held = over_time::Held::default();
        let answer = self
            .relay_call_held(caller, req, endpoint, plan, &mut held)
            .await;
        if answer.is_err() {
            self.release_held(held).await;
        }
        answer
    }

    async fn relay_call_held(
        &self,
        caller: &Caller,
        req: &Request,
        endpoint: Endpoint,
        mut plan: Plan,
        held: &mut over_time::Held,
    ) -> RResult<Response> {
        let (mut call, model) = match plan.take_request() {
            Some(parsed) => parsed?,
            None => Self::relay_request(req, endpoint)?,
        };
        let found = plan.found()?;
        let target = self.relay_target(caller, &model, endpoint, found).await?;
        if let Some(why) = self.stored_url_refusal(&target.upstream.base) {
            return Err(RelayError::new(
                403,
                ErrorType::Permission,
                Some(ErrorCode::ProviderAddressForbidden),
                format!("The provider URL of {} is not allowed: {why}", target.shown),
            ));
        }
        if target.builtin_image {
            if let Call::Json(body) = &call {
                call = Call::ImageChat(media::ImageChat::from_chat(body).map_err(RelayError::bad)?);
            }
        }
        let stream = match &call {
            Call::Json(body) => {
                endpoint == Endpoint::Chat
                    && body.get("stream").and_then(Value::as_bool) == Some(true)
            }
            Call::Speech(_) => media::Speech::streamed(target.upstream.style),
            Call::Rerank(_) | Call::Transcription(_) | Call::ImageChat(_) => false,
        };
        let estimate = match &call {
            Call::Json(body) if endpoint == Endpoint::Chat => tokens::chat(body),
            Call::ImageChat(c) => tokens::text(&c.prompt) + tokens::PER_IMAGE,
            Call::Json(body) => tokens::embeddings(body),
            Call::Rerank(r) => r.estimate(),
            Call::Speech(s) => s.estimate(),
            Call::Transcription(_) => 0,
        };
        let mut extra_headers = vec![(ESTIMATE_HEADER.to_owned(), estimate.to_string())];
        if let Some(key) = &target.gateway {
            let mut none = Value::Null;
            let body = match &mut call {
                Call::Json(body) => body,
                _ => &mut none,
            };
            self.enforce_limits(key, endpoint, body, estimate, &mut extra_headers)?;
        }
        let idle = self.config.stream_idle_timeout_ms;
        // Vertex AI: refused before any token is minted when the endpoint cannot be served.
        let vertex = target.upstream.style == ApiStyle::Vertex;
        if vertex && endpoint == Endpoint::Embeddings {
            return Err(RelayError::bad(relay::vertex::EMBEDDINGS_REFUSED));
        }
        if let Some(why) = media::refusal(target.upstream.style, endpoint) {
            return Err(RelayError::new(
                400,
                ErrorType::InvalidRequest,
                Some(ErrorCode::EndpointNotServed),
                format!(
                    "{} cannot be called on POST {}: its provider {why}",
                    target.shown,
                    endpoint.path()
                ),
            ));
        }
        let no_body = Value::Null;
        let json_body = match &call {
            Call::Json(b) => b,
            _ => &no_body,
        };
        *held = self
            .reserve_over_time(
                caller,
                &target,
                json_body,
                endpoint,
                estimate,
                &mut extra_headers,
            )
            .await?;
        // A gateway key's pool is tried in priority order, skipping members cooling down; a member
        // that fails in a way another key may not (429, 5xx, timeout, refused credential) is
        // cooled down and the next one tried, all before anything reaches the client. The
        // client gets the last failure when every member fails.
        let key_id = target.gateway.as_ref().map(|k| k.id.clone());
        let size = target.pool.len().max(1);
        let order = match &key_id {
            Some(id) => cooldown::order(id, size, self.platform.now_ms()),
            None => vec![0],
        };
        let mut last: Option<RelayError> = None;
        let mut served = None;
        for index in order {
            let mut member = target.clone();
            if let Some(secret) = target.pool.get(index) {
                member
                    .upstream
                    .secrets
                    .0
                    .insert("api_key".into(), json!(secret));
            }
            match self.send_member(&member, endpoint, &call, stream).await {
                Ok(sent) => {
                    served = Some((index, sent));
                    break;
                }
                Err(Failure {
                    error,
                    cool_for: Some(seconds),
                }) => {
                    if let (Some(id), Some(k)) = (&key_id, &target.gateway) {
                        cooldown::cool(id, index, seconds, self.platform.now_ms());
                        if size > 1 {
                            log::info!(
                                "relay: gateway key {} pool member {index} failed with {} ({}); \
                                 cooling it down for {seconds} s",
                                k.alias,
                                error.status,
                                error.code.map_or("-", ErrorCode::as_str)
                            );
                        }
                    }
                    last = Some(error);
                }
                Err(Failure { error, .. }) => return Err(error),
            }
        }
        let Some((index, (sent, scrubber, host))) = served else {
            return Err(last.unwrap_or_else(|| {
                RelayError::from(ApiError::Internal("a pool with no member to try".into()))
            }));
        };
        if let Some(id) = &key_id {
            cooldown::clear(id, index);
        }
        let served = ai_keys::ServedBy { index, size };
        let on_usage = usage_writes(&target, self.platform.now_ms(), served);
        let (on_usage, settled) =
            over_time::settle_on(held.clone(), served, self.platform.now_ms(), on_usage);
        let created = self.platform.now_ms() / 1000;
        let mut resp = match sent {
            Sent::Stream(up) if endpoint == Endpoint::Speech => {
                let usage = Usage {
                    input: Some(estimate),
                    output: Some(0),
                };
                let content_type = header_of(&up.headers, "content-type")
                    .unwrap_or("audio/mpeg")
                    .to_owned();
                let (s, rx) = media::AudioStream::new(up.body, scrubber.stream(), usage, on_usage);
                let mut r = Response::json(200, &Value::Null);
                r.body.clear();
                r.headers = vec![("content-type".into(), content_type)];
                r.stream = Some(Box::pin(s));
                r.deferred_after_stream = Some(rx);
                r
            }
            Sent::Stream(up) => {
                let Call::Json(body) = &call else {
                    unreachable!("only chat and speech are streamed")
                };
                let include_usage = body
                    .pointer("/stream_options/include_usage")
                    .and_then(Value::as_bool)
                    == Some(true);
                // Anything but an event stream would reach the client as a stream of garbage.
                let content_type = up
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                    .map(|(_, v)| v.to_ascii_lowercase());
                if let Some(ct) = content_type.filter(|ct| !ct.contains("text/event-stream")) {
                    return Err(RelayError::new(
                        502,
                        ErrorType::Upstream,
                        Some(ErrorCode::UpstreamNotEventStream),
                        format!(
                            "{host} answered a streamed call with {} instead of an event stream",
                            printable(&ct)
                        ),
                    ));
                }
                let mode = match target.upstream.style {
                    ApiStyle::Anthropic => StreamMode::Anthropic(anthropic::StreamTranslator {
                        id: "chatcmpl".into(),
                        model: target.shown.clone(),
                        created,
                        include_usage,
                        usage: Usage::default(),
                        ..Default::default()
                    }),
                    style @ (ApiStyle::Openai
                    | ApiStyle::Azure
                    | ApiStyle::Gemini
                    | ApiStyle::Vertex
                    | ApiStyle::Cohere
                    | ApiStyle::Ollama
                    | ApiStyle::WorkersAi) => StreamMode::PassThrough {
                        strip_usage_chunk: !include_usage,
                        add_usage_chunk: include_usage && !relay::streams_usage_on_request(style),
                    },
                };
                let (s, rx) = RelayStream::new(up.body, mode, estimate, on_usage, scrubber, idle);
                let mut r = Response::json(200, &Value::Null);
                r.body.clear();
                r.headers = vec![
                    ("content-type".into(), "text/event-stream".into()),
                    ("cache-control".into(), "no-cache".into()),
                ];
                r.stream = Some(Box::pin(s));
                r.deferred_after_stream = Some(rx);
                r
            }
            Sent::Whole(up) => self.whole_answer(
                up, &target, &call, estimate, created, &host, &scrubber, on_usage,
            )?,
        };
        resp.headers.extend(extra_headers);
        resp.limits_after = settled;
        held.clear();
        Ok(resp)
    }

    /// Send the call with one credential (a pool member's, or the target's only one): the
    /// upstream's answer when it succeeded (a stream not yet read), else the client's error and
    /// whether another member may do better. A Vertex token the provider refuses (401) is
    /// forgotten and minted again once; a second refusal is the stored credential's fault.
    async fn send_member(
        &self,
        target: &Target,
        endpoint: Endpoint,
        call: &Call,
        stream: bool,
    ) -> std::result::Result<(Sent, Scrubber, String), Failure> {
        let vertex = target.upstream.style == ApiStyle::Vertex;
        let timeout = self.config.provider_timeout_ms;
        let idle = self.config.stream_idle_timeout_ms;
        let mut attempt = 0;
        let (sent, scrubber, host) = loop {
            let mut upstream = target.upstream.clone();
            let mut extra_secrets: Vec<String> = Vec::new();
            if vertex {
                let token = self
                    .vertex_token(target)
                    .await
                    .map_err(|e| Failure::classify(e, None, None))?;
                extra_secrets.extend(vertex_private_key(&target.upstream.secrets));
                upstream.secrets.0.insert("api_key".into(), json!(token));
            }
            let mut upstream_req = relay::call_request(&upstream, endpoint, call, timeout)
                .map_err(|why| Failure::final_error(RelayError::bad(why)))?;
            // Whatever the upstream sends back is passed on without the call's credentials,
            // nor any other key of the pool.
            let mut secrets: Vec<&str> = upstream.secrets.values();
            secrets.extend(extra_secrets.iter().map(String::as_str));
            secrets.extend(target.pool.iter().map(String::as_str));
            let ring = self.config.keyring.as_ref().map_or(0, |r| r.instance());
            let scrubber = super::opened::scrubber(ring, &secrets);
            let host = probe::host_of(&upstream_req.url);
            let sent = if stream {
                upstream_req.idle_timeout_ms = Some(idle);
                self.stream_out(upstream_req).await.map(Sent::Stream)
            } else {
                self.send_out(upstream_req).await.map(Sent::Whole)
            };
            let sent = match sent {
                Ok(sent) => sent,
                Err(e) => {
                    let timed_out = matches!(e, OutboundError::Timeout);
                    let error = transport_error(e, &host, timeout, &scrubber);
                    return Err(if timed_out {
                        Failure::classify(error, None, None)
                    } else {
                        Failure::final_error(error)
                    });
                }
            };
            if vertex && sent.status() == 401 {
                relay::vertex::forget(&vertex_cache_key(target));
                attempt += 1;
                if attempt < 2 {
                    // Dropping the refused answer (a stream's body too) ends that call.
                    continue;
                }
            }
            break (sent, scrubber, host);
        };
        let status = sent.status();
        if (200..300).contains(&status) {
            return Ok((sent, scrubber, host));
        }
        let (headers, bytes) = match sent {
            Sent::Whole(up) => (up.headers, up.body),
            Sent::Stream(up) => {
                let mut bytes = Vec::new();
                let mut body_stream = up.body;
                use futures_util::StreamExt;
                while let Some(Ok(chunk)) = body_stream.next().await {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > 64 * 1024 {
                        break;
                    }
                }
                (up.headers, bytes)
            }
        };
        let retry_after = upstream_retry_after(&headers, self.platform.now_ms());
        let error = upstream_status_error(status, &bytes, &host, &scrubber, retry_after);
        Err(Failure::classify(error, Some(status), retry_after))
    }

    /// Apply a gateway key's status, expiry and limits; may rewrite the output cap in `body`.
    fn enforce_limits(
        &self,
        key: &AiKey,
        endpoint: Endpoint,
        body: &mut Value,
        estimate: u64,
        headers: &mut Vec<(String, String)>,
    ) -> RResult<()> {
        match key.status {
            KeyStatus::Enabled => {}
            KeyStatus::Disabled => {
                return Err(RelayError::new(
                    403,
                    ErrorType::Permission,
                    Some(ErrorCode::KeyDisabled),
                    format!("Gateway key {} is disabled", key.alias),
                ))
            }
        }
        if key.expire_time.is_some_and(|t| t <= self.platform.now_ms()) {
            return Err(RelayError::new(
                403,
                ErrorType::Permission,
                Some(ErrorCode::KeyExpired),
                format!("Gateway key {} has expired", key.alias),
            ));
        }
        let reject = match key.usage_limit_policy {
            UsagePolicy::UseAnyway => false,
            UsagePolicy::Reject => true,
        };
        if key.input_limit > 0 && estimate > key.input_limit as u64 {
            if reject {
                return Err(RelayError::new(
                    400,
                    ErrorType::InvalidRequest,
                    Some(ErrorCode::InputLimitExceeded),
                    format!(
                        "The input is about {estimate} tokens, over gateway key {}'s input limit of {} tokens per request",
                        key.alias, key.input_limit
                    ),
                ));
            }
            headers.push((LIMIT_HEADER.into(), "input".into()));
        }
        if endpoint == Endpoint::Chat && key.output_limit > 0 {
            let limit = key.output_limit as u64;
            let field = if body.get("max_completion_tokens").is_some() {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            match body.get(field).and_then(Value::as_u64) {
                Some(asked) if asked > limit && reject => {
                    return Err(RelayError::new(
                        400,
                        ErrorType::InvalidRequest,
                        Some(ErrorCode::OutputLimitExceeded),
                        format!(
                        "{field} {asked} is over gateway key {}'s output limit of {limit} tokens",
                        key.alias
                    ),
                    ))
                }
                Some(asked) if asked <= limit => {}
                Some(_) => {
                    body[field] = json!(limit);
                    headers.push((LIMIT_HEADER.into(), "output".into()));
                }
                None => body[field] = json!(limit),
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn whole_answer(
        &self,
        up: OutboundResponse,
        target: &Target,
        call: &Call,
        estimate: u64,
        created: i64,
        host: &str,
        scrubber: &Scrubber,
        on_usage: relay::OnUsage,
    ) -> RResult<Response> {
        if !(200..300).contains(&up.status) {
            let retry_after = upstream_retry_after(&up.headers, self.platform.now_ms());
            return Err(upstream_status_error(
                up.status,
                &up.body,
                host,
                scrubber,
                retry_after,
            ));
        }
        let style = target.upstream.style;
        let unusable = |why: String| {
            RelayError::new(
                502,
                ErrorType::Upstream,
                Some(ErrorCode::UpstreamFailed),
                format!("{host} answered in a shape keyward cannot read: {why}"),
            )
        };
        // A transcription may be plain text, SubRip or WebVTT, not JSON.
        if let Call::Transcription(t) = call {
            let content_type = header_of(&up.headers, "content-type").unwrap_or_default();
            let (body, content_type, usage) = t
                .answer(style, &up.body, &content_type.to_ascii_lowercase())
                .map_err(unusable)?;
            let mut r = Response::json(200, &Value::Null);
            r.body = scrubber.bytes(&body);
            r.headers = vec![("content-type".into(), content_type)];
            r.deferred = on_usage(usage);
            return Ok(r);
        }
        let not_json = |_| {
            RelayError::new(
                502,
                ErrorType::Upstream,
                Some(ErrorCode::UpstreamNotJson),
                format!("{host} answered with something that is not JSON"),
            )
        };
        // OpenAI's shape is passed on as it came: only its usage is read.
        let passed_on = !matches!(
            (call, style),
            (Call::ImageChat(_) | Call::Rerank(_) | Call::Speech(_), _) | (_, ApiStyle::Anthropic)
        );
        if passed_on {
            let usage = Usage::from_openai_bytes(&up.body).map_err(not_json)?;
            return Ok(self.passed_on(
                up.body,
                usage.unwrap_or_default(),
                estimate,
                scrubber,
                on_usage,
            ));
        }
        let v: Value = serde_json::from_slice(&up.body).map_err(not_json)?;
        let (body, usage) = match (call, style) {
            (Call::ImageChat(c), _) => {
                let (b, u) = c
                    .answer(&v, &target.shown, created, estimate)
                    .map_err(unusable)?;
                (b.to_string().into_bytes(), u)
            }
            (Call::Rerank(rr), _) => {
                let (b, u) = rr.answer(style, &v, &target.shown).map_err(unusable)?;
                (b.to_string().into_bytes(), u)
            }
            // Workers AI's speech answer is JSON holding the MP3 (streamed calls went elsewhere).
            (Call::Speech(_), _) => {
                let audio = media::Speech::workers_ai_audio(&v).map_err(unusable)?;
                let mut r = Response::json(200, &Value::Null);
                r.body = audio;
                r.headers = vec![("content-type".into(), "audio/mpeg".into())];
                r.deferred = on_usage(Usage {
                    input: Some(estimate),
                    output: Some(0),
                });
                return Ok(r);
            }
            (_, ApiStyle::Anthropic) => {
                let (b, u) = anthropic::response(&v, &target.shown, created);
                (b.to_string().into_bytes(), u)
            }
            (
                _,
                ApiStyle::Openai
                | ApiStyle::Azure
                | ApiStyle::Gemini
                | ApiStyle::Vertex
                | ApiStyle::Cohere
                | ApiStyle::Ollama
                | ApiStyle::WorkersAi,
            ) => (up.body, Usage::from_openai(&v).unwrap_or_default()),
        };
        Ok(self.passed_on(body, usage, estimate, scrubber, on_usage))
    }

    /// A whole answer's body, scrubbed, with its usage (the estimate where it gives none).
    fn passed_on(
        &self,
        body: Vec<u8>,
        usage: Usage,
        estimate: u64,
        scrubber: &Scrubber,
        on_usage: relay::OnUsage,
    ) -> Response {
        let usage = Usage {
            input: usage.input.or(Some(estimate)),
            output: usage.output.or(Some(0)),
        };
        let mut r = Response::json(200, &Value::Null);
        r.body = scrubber.bytes(&body);
        r.deferred = on_usage(usage);
        r
    }
}

/// A header's first value, by lowercase name.
fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A call one credential could not make: the client's error, and for how many seconds to keep
/// that pool member out when another member may do better (`None`: the request itself failed,
/// or the provider cannot be reached, which no other key changes).
struct Failure {
    error: RelayError,
    cool_for: Option<u64>,
}

impl Failure {
    fn final_error(error: RelayError) -> Self {
        Failure {
            error,
            cool_for: None,
        }
    }

    /// A provider's 429 (for its `Retry-After`), 5xx (508 aside: a loop is no key's fault), a
    /// timeout and a refused credential are worth the next key; anything else (the request is
    /// wrong) would fail with every key and is answered at once.
    fn classify(error: RelayError, status: Option<u16>, retry_after: Option<u64>) -> Self {
        let default = cooldown::DEFAULT_COOLDOWN_S;
        let cool_for = match (error.code, status) {
            (Some(ErrorCode::UpstreamRateLimited), _) => Some(retry_after.unwrap_or(default)),
            (Some(ErrorCode::UpstreamAuthFailed | ErrorCode::UpstreamTimeout), _) => Some(default),
            (_, Some(s)) if (500..=599).contains(&s) && s != 508 => {
                Some(retry_after.unwrap_or(default))
            }
            _ => None,
        };
        Failure { error, cool_for }
    }
}

/// An upstream answer as it was asked for: whole, or read as it arrives.
enum Sent {
    Whole(OutboundResponse),
    Stream(crate::store::outbound::StreamingResponse),
}

impl Sent {
    fn status(&self) -> u16 {
        match self {
            Sent::Whole(r) => r.status,
            Sent::Stream(r) => r.status,
        }
    }
}

/// The service-account JSON of a Vertex call: a connection's `credentials_json`, or a gateway
/// key's `api_key`.
fn vertex_credential(secrets: &crate::providers::Secrets) -> Option<&str> {
    secrets
        .get("credentials_json")
        .or_else(|| secrets.get("api_key"))
}

/// The PEM private key inside a Vertex credential, scrubbed from answers on its own too (the
/// scrubber knows the whole JSON, where the key is escaped).
fn vertex_private_key(secrets: &crate::providers::Secrets) -> Option<String> {
    let creds: Value = serde_json::from_str(vertex_credential(secrets)?).ok()?;
    creds
        .get("private_key")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Where a Vertex call's access token is cached: its gateway key or its connection, with the
/// credential's fingerprint.
fn vertex_cache_key(target: &Target) -> String {
    let scope = match (&target.gateway, &target.usage_conn) {
        (Some(k), _) => format!("key:{}", k.id),
        (None, Some((conn, _))) => format!("conn:{conn}"),
        (None, None) => format!("model:{}", target.shown),
    };
    relay::vertex::cache_key(
        &scope,
        vertex_credential(&target.upstream.secrets).unwrap_or_default(),
    )
}

/// The stored service-account key cannot be used at all: the tenant's credential, not the
/// caller's, so a 502 like a refused one.
fn vertex_credential_unusable(target: &Target, why: &str) -> RelayError {
    RelayError::new(
        502,
        ErrorType::Upstream,
        Some(ErrorCode::UpstreamAuthFailed),
        format!(
            "The service-account credential this tenant stored for {} cannot be used ({why}); a \
             tenant owner must replace it",
            target.shown
        ),
    )
}

impl<P: Platform> App<P> {
    /// An access token for a Vertex call: the cached one while it lives, else one minted from the
    /// service account (an RS256 assertion exchanged at its `token_uri`) and cached. Neither the
    /// token nor the key is ever logged or passed on; the token endpoint's refusal (400
    /// `invalid_grant`, 401, 403) is the stored credential refused.
    async fn vertex_token(&self, target: &Target) -> RResult<String> {
        let key = vertex_cache_key(target);
        let now = self.platform.now_ms();
        if let Some(token) = relay::vertex::cached(&key, now) {
            return Ok(token);
        }
        let creds: Value = vertex_credential(&target.upstream.secrets)
            .and_then(|c| serde_json::from_str(c).ok())
            .ok_or_else(|| {
                vertex_credential_unusable(target, "it is not a service-account JSON")
            })?;
        let (unsigned, token_uri) =
            probe::vertex_assertion(&creds, now / 1000).ok_or_else(|| {
                vertex_credential_unusable(target, "client_email or token_uri is missing")
            })?;
        if let Some(why) = self.stored_url_refusal(&token_uri) {
            return Err(RelayError::new(
                403,
                ErrorType::Permission,
                Some(ErrorCode::ProviderAddressForbidden),
                format!(
                    "The token_uri of {}'s service account is not allowed: {why}",
                    target.shown
                ),
            ));
        }
        let private_key = creds.get("private_key").and_then(Value::as_str);
        let der = private_key
            .and_then(probe::pem_to_der)
            .ok_or_else(|| vertex_credential_unusable(target, "private_key is not a PEM key"))?;
        let signature = self
            .platform
            .outbound()
            .sign_rs256(&der, unsigned.as_bytes())
            .await
            .map_err(|_| {
                vertex_credential_unusable(target, "private_key is not an RSA PKCS#8 key")
            })?;
        let timeout = self.config.provider_timeout_ms;
        let req = probe::vertex_token_request(&token_uri, &unsigned, &signature, timeout);
        // The signed assertion buys tokens for an hour: as secret as the key.
        let form = String::from_utf8_lossy(req.body.as_deref().unwrap_or_default()).into_owned();
        let assertion = form.split("assertion=").nth(1).unwrap_or_default();
        let mut secrets = target.upstream.secrets.values();
        secrets.extend(private_key);
        secrets.push(assertion);
        let scrubber = Scrubber::new(&secrets);
        let host = probe::host_of(&token_uri);
        let resp = self
            .send_out(req)
            .await
            .map_err(|e| transport_error(e, &host, timeout, &scrubber))?;
        match resp.status {
            200..=299 => {}
            400 | 401 | 403 => {
                return Err(upstream_status_error(
                    401, &resp.body, &host, &scrubber, None,
                ))
            }
            status => {
                let retry_after = upstream_retry_after(&resp.headers, now);
                return Err(upstream_status_error(
                    status,
                    &resp.body,
                    &host,
                    &scrubber,
                    retry_after,
                ));
            }
        }
        let (token, expires_in) = relay::vertex::token_answer(&resp.body).map_err(|why| {
            RelayError::new(
                502,
                ErrorType::Upstream,
                Some(ErrorCode::UpstreamNotJson),
                format!("{host}: {why}"),
            )
        })?;
        relay::vertex::store(&key, &token, expires_in, now);
        Ok(token)
    }
}

/// The counter updates for one call: the gateway key's (with the pool member that served it) and
/// the model's `used_token`.
fn usage_writes(target: &Target, now: i64, served: ai_keys::ServedBy) -> relay::OnUsage {
    let key_id = target.gateway.as_ref().map(|k| k.id.clone());
    let conn = target.usage_conn.clone();
    Box::new(move |u: Usage| {
        let (i, o) = (u.input.unwrap_or(0) as i64, u.output.unwrap_or(0) as i64);
        let mut out: Vec<Stmt> = Vec::new();
        if let Some(id) = key_id {
            out.push(ai_keys::add_usage(&id, i, o, now, served));
        }
        if let Some((cid, name)) = conn {
            out.push(providers::add_usage(&cid, &name, i + o));
        }
        out
    })
}

fn transport_error(
    e: OutboundError,
    host: &str,
    timeout_ms: u64,
    scrubber: &Scrubber,
) -> RelayError {
    match e {
        OutboundError::Timeout => RelayError::new(
            504,
            ErrorType::Upstream,
            Some(ErrorCode::UpstreamTimeout),
            format!("No answer from {host} within {} s", timeout_ms / 1000),
        ),
        OutboundError::TooLarge => RelayError::new(
            502,
            ErrorType::Upstream,
            Some(ErrorCode::UpstreamTooLarge),
            format!("{host} answered with too much data"),
        ),
        OutboundError::Unreachable(why) => {
            log::warn!(
                "relay: {host} unreachable: {}",
                probe::clean(&why, scrubber)
            );
            RelayError::new(
                502,
                ErrorType::Upstream,
                Some(ErrorCode::UpstreamUnreachable),
                format!("Cannot connect to {host}"),
            )
        }
    }
}

/// The longest wait a provider's `Retry-After` is passed on with (a day); a longer one is capped,
/// so a client is never told to stay away for longer than that.
pub const MAX_RETRY_AFTER: u64 = 86_400;

/// A provider's `Retry-After` as seconds from `now_ms`: delta-seconds or an HTTP date (RFC 9110
/// section 10.2.3), capped at [`MAX_RETRY_AFTER`]; `None` if absent or unreadable (then nothing is
/// passed on rather than a guess).
fn upstream_retry_after(headers: &[(String, String)], now_ms: i64) -> Option<u64> {
    let value = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))?
        .1
        .trim();
    let seconds = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse::<u64>().unwrap_or(u64::MAX)
    } else {
        let at = crate::domain::time::parse_http_date(value)?;
        // Round up: a client that waits the whole seconds told is not early.
        u64::try_from((at - now_ms).max(0)).ok()?.div_ceil(1000)
    };
    Some(seconds.min(MAX_RETRY_AFTER))
}

/// A provider's refusal, passed on without the credential, in OpenAI's error shape with the
/// status the official SDKs turn into the matching exception:
///
/// | provider | client |
/// |---|---|
/// | 400, 404, 409, 413, 422 (the request is wrong) | the same status, the provider's message |
/// | 401, 403 (the tenant's stored credential is refused) | 502 `upstream_auth_failed` |
/// | 429 | 429 `upstream_rate_limited`, with its `Retry-After` |
/// | 408 | 504 `upstream_timeout` |
/// | 508 | 508 `loop_detected` |
/// | 3xx, any other 4xx, 5xx | 502 |
///
/// A 401/403 is about the tenant's provider key, not the caller's keyward key, so it is never
/// passed on as one: an SDK would tell the user their own key is wrong. Gemini refuses a bad key
/// with a 400 (`API_KEY_INVALID`), which is treated as the refused credential it is.
fn upstream_status_error(
    status: u16,
    body: &[u8],
    host: &str,
    scrubber: &Scrubber,
    retry_after: Option<u64>,
) -> RelayError {
    let why = reason(body)
        .map(|r| probe::clean(&r, scrubber))
        .unwrap_or_else(|| format!("HTTP {status}"));
    let credential_refused = matches!(status, 401 | 403) || (status == 400 && key_invalid(body));
    if credential_refused {
        return RelayError::new(
            502,
            ErrorType::Upstream,
            Some(ErrorCode::UpstreamAuthFailed),
            format!(
                "{host} refused the credential this tenant stored for it (the provider key in \
                 keyward, not the key this request was sent with); a tenant owner must replace \
                 it: {why}"
            ),
        );
    }
    match status {
        300..=399 => RelayError::new(
            502,
            ErrorType::Upstream,
            Some(ErrorCode::UpstreamRedirect),
            format!(
                "{host} {}",
                probe::REDIRECT_REFUSED.replace("{status}", &status.to_string())
            ),
        ),
        508 => RelayError::new(
            508,
            ErrorType::Upstream,
            Some(ErrorCode::LoopDetected),
            format!("{host} answered 508 Loop Detected: {}", probe::LOOP_REASON),
        ),
        429 => RelayError {
            retry_after,
            ..RelayError::new(
                429,
                ErrorType::RateLimit,
                Some(ErrorCode::UpstreamRateLimited),
                format!("{host} is rate limiting: {why}"),
            )
        },
        400 | 404 | 409 | 413 | 422 => RelayError::new(
            status,
            ErrorType::InvalidRequest,
            Some(match status {
                400 => ErrorCode::UpstreamBadRequest,
                404 => ErrorCode::UpstreamNotFound,
                409 => ErrorCode::UpstreamConflict,
                413 => ErrorCode::UpstreamRequestTooLarge,
                _ => ErrorCode::UpstreamUnprocessable,
            }),
            format!("{host}: {why}"),
        ),
        408 => RelayError::new(
            504,
            ErrorType::Upstream,
            Some(ErrorCode::UpstreamTimeout),
            format!("{host} timed out: {why}"),
        ),
        _ => RelayError::new(
            502,
            ErrorType::Upstream,
            Some(ErrorCode::UpstreamFailed),
            match reason(body) {
                Some(_) => format!("{host} failed with HTTP {status}: {why}"),
                None => format!("{host} failed with HTTP {status}"),
            },
        ),
    }
}

/// Whether an error body says the API key itself is invalid (Google's `API_KEY_INVALID`,
/// in its own error shape or wrapped in the array its OpenAI-compatible surface sends).
fn key_invalid(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let err = v
        .get(0)
        .unwrap_or(&v)
        .get("error")
        .cloned()
        .unwrap_or_default();
    err.get("details")
        .and_then(Value::as_array)
        .is_some_and(|d| {
            d.iter()
                .any(|x| x.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(status: u16, body: &str) -> RelayError {
        upstream_status_error(
            status,
            body.as_bytes(),
            "p.example",
            &Scrubber::new(&["sk-secret-1234"]),
            Some(3),
        )
    }

    #[test]
    fn each_provider_status_maps_to_the_status_and_code_the_sdks_expect() {
        let body = r#"{"error": {"message": "nope sk-secret-1234"}}"#;
        for (from, to, code) in [
            (400, 400, "upstream_bad_request"),
            (404, 404, "upstream_not_found"),
            (409, 409, "upstream_conflict"),
            (413, 413, "upstream_request_too_large"),
            (422, 422, "upstream_unprocessable"),
            (401, 502, "upstream_auth_failed"),
            (403, 502, "upstream_auth_failed"),
            (429, 429, "upstream_rate_limited"),
            (408, 504, "upstream_timeout"),
            (402, 502, "upstream_failed"),
            (500, 502, "upstream_failed"),
            (503, 502, "upstream_failed"),
            (302, 502, "upstream_redirect"),
            (508, 508, "loop_detected"),
        ] {
            let e = mapped(from, body);
            assert_eq!(
                (e.status, e.code.map(ErrorCode::as_str)),
                (to, Some(code)),
                "{from}"
            );
            assert!(
                !e.message.contains("sk-secret-1234"),
                "{from}: {}",
                e.message
            );
            assert_eq!(e.retry_after.is_some(), from == 429, "{from}");
        }
        assert!(mapped(422, body).message.contains("nope ***"));
        assert_eq!(
            mapped(500, "<html>").message,
            "p.example failed with HTTP 500"
        );
    }

    #[test]
    fn googles_api_key_invalid_is_the_stored_credential_refused_in_either_shape() {
        let inner = r#"{"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT",
            "details": [{"reason": "API_KEY_INVALID"}]}}"#;
        for body in [inner.to_owned(), format!("[{inner}]")] {
            let e = mapped(400, &body);
            assert_eq!(
                (e.status, e.code),
                (502, Some(ErrorCode::UpstreamAuthFailed)),
                "{body}"
            );
            assert!(e.message.contains("API key not valid."), "{}", e.message);
        }
        let other = r#"[{"error": {"code": 400, "message": "bad field", "details": [{"reason": "OTHER"}]}}]"#;
        let e = mapped(400, other);
        assert_eq!(e.status, 400);
        assert!(
            e.message.contains("bad field"),
            "the array's message is read"
        );
    }
}
