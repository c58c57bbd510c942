//! Tenant connections to model providers: what each factory needs from the tenant, how a
//! credential is proved with one cheap live call, and how a provider's answer is read.
//! Pure logic: requests are built here and sent through the `Outbound` port by the caller.

pub mod address;
pub mod probe;
pub mod scrub;

use crate::catalog::{self, Auth, Connection as Kind, Factory, ModelType};
use crate::domain::crypto::mask;
use crate::domain::keys::sha256_hex;
use crate::domain::names::{BaseUrl, ModelName};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Default Azure OpenAI data-plane API version when the tenant gives none.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";
/// Default Vertex AI region when the tenant gives none.
pub const VERTEX_DEFAULT_LOCATION: &str = "us-central1";
/// Largest `max_tokens` a model may be declared with.
pub const MAX_MAX_TOKENS: i64 = 10_000_000;
/// Longest credential accepted (a service-account JSON is about 2.4 KB).
pub const MAX_SECRET_LEN: usize = 16 * 1024;
/// Shortest provider key or token accepted. Hosted providers' keys are 32 characters or more;
/// self-hosted servers take any token, and 8 characters is the least NIST SP 800-63B allows for
/// a secret a person picks. A shorter one is not a real credential, and scrubbing it (and its
/// encodings) from what upstreams answer would cut pieces of ordinary text out of answers.
pub const MIN_SECRET_LEN: usize = 8;

// `POST /api/v1/models` as RAGFlow's clients send it, plus the provider-specific fields.
/// Connect a provider for the caller's tenant. Which optional fields apply depends on the factory;
/// a field that does not apply is a 400 naming it.
///
/// - Key-per-organization factories (auth `bearer`, `google_api_key`, `anthropic`: OpenAI, Gemini,
///   Anthropic, Mistral, DeepSeek, Cohere, Jina): `api_key` (required), `base_url`, `llm_name`,
///   `model_type`, `max_tokens`, `verify`. Without `llm_name` this is the tenant's one connection to
///   the factory and gives every catalog model; adding again replaces the key. With `llm_name` one
///   model is added on its own connection (it overrides the catalog model of that name).
/// - Azure-OpenAI (auth `azure`, one connection per deployment): `endpoint`, `deployment`,
///   `api_key` (all required), `api_version` (default `2024-10-21`), `llm_name` (the deployed model's
///   name, kept as a setting), `model_type`, `max_tokens`, `verify`. The deployment names the model
///   in ids (`<deployment>@Azure-OpenAI`).
/// - VertexAI (auth `service_account`, one connection per tenant): `credentials_json` (required),
///   `project_id` (required when `credentials_json` has none), `location` (default `us-central1`),
///   `base_url`, `llm_name`, `model_type`, `max_tokens`, `verify`.
/// - OpenAI-API-Compatible (auth `optional_bearer`): `llm_name` and `base_url` (both required),
///   `api_key` and `auth_token` (optional; empty strings are ignored; `api_key` is sent when both are
///   given), `model_type`, `max_tokens`, `verify`.
/// - Ollama, LocalAI, Xinference (auth `none`, self-deployed): `llm_name` and `base_url` (both
///   required), `model_type`, `max_tokens`, `verify`; no key.
/// - Builtin cannot be added (400).
///
/// `model_type` must be a type the factory serves; a single model without one takes its catalog
/// model's type, else `chat`. Secrets are encrypted at rest and never returned. Optional fields may
/// also be null, which means the same as leaving them out.
#[derive(Debug, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Serialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "AddModelRequest"))]
#[serde(deny_unknown_fields)]
pub struct AddModel {
    /// The factory, exactly as `GET /api/v1/factories` names it (case-sensitive); an unknown
    /// factory or `Builtin` is a 400.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("examples" = ["OpenAI"])))]
    pub llm_factory: String,
    /// The provider key: required for key-per-organization factories and Azure-OpenAI, optional for
    /// OpenAI-API-Compatible (an empty string is ignored there). Not blank, 8 characters to 16 KiB
    /// (a shorter one is not a real credential: 400), no control characters. Moving a connection
    /// that holds a credential to another endpoint needs the credential again (a 400 on `api_key`
    /// otherwise).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("maxLength" = 16384)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The API root, overriding the factory's default; required for OpenAI-API-Compatible, Ollama,
    /// LocalAI and Xinference; not accepted for Azure-OpenAI (use `endpoint`). An http or https URL
    /// with a host, without user name, password, query or fragment; a trailing `/` is dropped.
    /// Refused when it names this deployment itself (its host, or a host in `KEYWARD_PUBLIC_HOSTS`;
    /// on loopback the same port in any spelling) or an address class the operator does not allow
    /// (loopback, private, link-local: `PROVIDER_PRIVATE_ADDRESSES`, none by default); hosts are
    /// judged by name, without DNS.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("format" = "uri", "maxLength" = 2048, "pattern" = "^[Hh][Tt][Tt][Pp][Ss]?://")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// One model to add on its own connection (required for per-model factories except
    /// Azure-OpenAI, where it is the deployed model's name). 1 to 128 characters, not only
    /// whitespace, no control characters.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minLength" = 1, "maxLength" = 128, "pattern" = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]*$")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_name: Option<String>,
    /// The model's type; must be one of the factory's `model_types`.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<crate::catalog::ModelType>")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    /// The model's context window, overriding the catalog's.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 1, "maximum" = 10000000)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// Whether to prove the credential with one live call to the provider before storing it (e.g.
    /// `GET {base}/models`; VertexAI: a signed token exchange). Default true, except false for
    /// self-deployed factories (Ollama, LocalAI, Xinference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
    /// OpenAI-API-Compatible only: a bearer token, used when no `api_key` is given; an empty string
    /// is ignored, a shorter one than 8 characters is a 400.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("maxLength" = 16384)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// Azure-OpenAI only (required): the deployment's name, 1 to 64 letters, digits and `. _ - :`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("pattern" = "^[A-Za-z0-9._:-]{1,64}$")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Azure-OpenAI only (required): the resource endpoint, e.g.
    /// `https://<resource>.openai.azure.com`; same rules as `base_url`, refusals included.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("format" = "uri", "maxLength" = 2048, "pattern" = "^[Hh][Tt][Tt][Pp][Ss]?://")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Azure-OpenAI only: the data-plane API version.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("pattern" = "^[A-Za-z0-9._:-]{1,32}$", "default" = "2024-10-21")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// VertexAI only (required): a Google service-account key, as a JSON object or a string holding
    /// one (at most 16 KiB). It must have `type: "service_account"`, `client_email`, a PKCS#8 PEM
    /// `private_key` and an http(s) `token_uri`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("type" = ["string", "object", "null"], "maxLength" = 16384)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_json: Option<Value>,
    /// VertexAI only: the Google Cloud project; default the `credentials_json`'s `project_id`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("pattern" = "^[A-Za-z0-9._:-]{1,64}$")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// VertexAI only: the region.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("pattern" = "^[A-Za-z0-9._:-]{1,32}$", "default" = "us-central1")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

/// The secret fields of a connection, sealed together as one JSON object.
#[derive(Clone, Default, PartialEq)]
pub struct Secrets(pub Map<String, Value>);

impl Secrets {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).and_then(Value::as_str)
    }
    /// Every secret value, for scrubbing provider messages.
    pub fn values(&self) -> Vec<&str> {
        self.0.values().filter_map(Value::as_str).collect()
    }
    pub fn to_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }
    pub fn from_json(s: &str) -> Self {
        match serde_json::from_str(s) {
            Ok(Value::Object(m)) => Secrets(m),
            _ => Secrets::default(),
        }
    }
}

/// A validated request to connect: everything needed to probe and store it.
#[derive(Debug, Clone)]
pub struct Spec {
    pub factory: &'static Factory,
    /// `""` for a whole-organization connection.
    pub llm_name: String,
    pub model_type: Option<ModelType>,
    pub api_base: Option<String>,
    pub settings: Map<String, Value>,
    pub secrets: Secrets,
    pub hint: Option<String>,
    pub max_tokens: Option<i64>,
    /// Whether to prove the credential with a live call.
    pub verify: bool,
}

impl Spec {
    /// Every URL of this connection that the tenant gave, with the field it came from: the base
    /// URL (`endpoint` for Azure) and a service account's `token_uri`.
    pub fn tenant_urls(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(base) = &self.api_base {
            let field = if self.factory.auth == Auth::Azure {
                "endpoint"
            } else {
                "base_url"
            };
            out.push((field, base.clone()));
        }
        let token_uri = self
            .secrets
            .get("credentials_json")
            .and_then(|c| serde_json::from_str::<Value>(c).ok())
            .and_then(|c| {
                c.get("token_uri")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
        if let Some(uri) = token_uri {
            out.push(("credentials_json.token_uri", uri));
        }
        out
    }

    /// The base URL this connection's calls go to: the tenant's, else the factory's default.
    pub fn endpoint(&self) -> Option<String> {
        probe::base_of(
            self.api_base.as_deref(),
            self.factory.default_base_url.as_deref(),
        )
    }
}

/// A refused field: (field name, why).
pub type FieldError = (String, String);

fn field(name: &str, why: impl Into<String>) -> FieldError {
    (name.to_owned(), why.into())
}

/// The row id of (tenant, factory, model): stable, so adding again updates the same row.
pub fn connection_id(tenant_id: &str, factory: &str, llm_name: &str) -> String {
    sha256_hex(format!("{tenant_id}\0{factory}\0{llm_name}").as_bytes())[..32].to_owned()
}

/// A tenant-given URL in field `name`, by [`BaseUrl`]'s rules (the only URL validation).
pub fn check_url(name: &str, raw: &str) -> Result<String, FieldError> {
    BaseUrl::parse(raw)
        .map(BaseUrl::into_string)
        .map_err(|why| field(name, why))
}

fn token_like(name: &str, s: &str, max: usize) -> Result<String, FieldError> {
    if s.is_empty() || s.len() > max {
        return Err(field(name, format!("must be 1 to {max} characters")));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c))
    {
        return Err(field(name, "may contain only letters, digits and . _ - :"));
    }
    Ok(s.to_owned())
}

/// A provider credential in field `name`: not blank, [`MIN_SECRET_LEN`] characters to
/// [`MAX_SECRET_LEN`] bytes, no control characters. Connections and gateway keys both check
/// theirs here; messages never echo it.
pub fn secret(name: &str, s: &str) -> Result<String, FieldError> {
    if s.trim().is_empty() {
        return Err(field(name, "must not be empty"));
    }
    if s.chars().count() < MIN_SECRET_LEN {
        return Err(field(
            name,
            format!("must be at least {MIN_SECRET_LEN} characters"),
        ));
    }
    if s.len() > MAX_SECRET_LEN {
        return Err(field(
            name,
            format!("must be at most {MAX_SECRET_LEN} bytes"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(field(name, "must not contain control characters"));
    }
    Ok(s.to_owned())
}

/// Which optional fields each kind of factory accepts; anything else is refused by name.
fn allowed_fields(f: &Factory) -> &'static [&'static str] {
    match (f.auth, f.connection) {
        (Auth::Azure, _) => &[
            "api_key",
            "endpoint",
            "deployment",
            "api_version",
            "llm_name",
            "model_type",
            "max_tokens",
            "verify",
        ],
        (Auth::ServiceAccount, _) => &[
            "credentials_json",
            "project_id",
            "location",
            "base_url",
            "llm_name",
            "model_type",
            "max_tokens",
            "verify",
        ],
        (Auth::OptionalBearer, _) => &[
            "llm_name",
            "base_url",
            "api_key",
            "auth_token",
            "model_type",
            "max_tokens",
            "verify",
        ],
        (Auth::None, _) => &["llm_name", "base_url", "model_type", "max_tokens", "verify"],
        (Auth::Bearer | Auth::GoogleApiKey | Auth::Anthropic, _) => &[
            "api_key",
            "base_url",
            "llm_name",
            "model_type",
            "max_tokens",
            "verify",
        ],
    }
}

impl AddModel {
    fn present(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut mark = |name: &'static str, set: bool| {
            if set {
                v.push(name)
            }
        };
        mark("api_key", self.api_key.is_some());
        mark("base_url", self.base_url.is_some());
        mark("llm_name", self.llm_name.is_some());
        mark("model_type", self.model_type.is_some());
        mark("max_tokens", self.max_tokens.is_some());
        mark("verify", self.verify.is_some());
        mark("auth_token", self.auth_token.is_some());
        mark("deployment", self.deployment.is_some());
        mark("endpoint", self.endpoint.is_some());
        mark("api_version", self.api_version.is_some());
        mark("credentials_json", self.credentials_json.is_some());
        mark("project_id", self.project_id.is_some());
        mark("location", self.location.is_some());
        v
    }

    /// Check the request against its factory's needs. Errors name the field.
    pub fn into_spec(self) -> Result<Spec, FieldError> {
        let factory = catalog::factory(&self.llm_factory).ok_or_else(|| {
            field(
                "llm_factory",
                format!(
                    "unknown factory {}; GET /api/v1/factories lists them",
                    printable(&self.llm_factory)
                ),
            )
        })?;
        if factory.is_builtin() {
            return Err(field(
                "llm_factory",
                "Builtin models are enabled by the operator for the whole deployment; they cannot be added or removed",
            ));
        }
        let allowed = allowed_fields(factory);
        if let Some(bad) = self.present().into_iter().find(|f| !allowed.contains(f)) {
            return Err(field(
                bad,
                format!("does not apply to factory {}", factory.name),
            ));
        }
        let max_tokens = match self.max_tokens {
            Some(n) if !(1..=MAX_MAX_TOKENS).contains(&n) => {
                return Err(field(
                    "max_tokens",
                    format!("must be 1 to {MAX_MAX_TOKENS}"),
                ))
            }
            other => other,
        };
        let model_type = match self.model_type.as_deref() {
            Some(t) => {
                let mt = ModelType::parse(t).ok_or_else(|| {
                    field(
                        "model_type",
                        "must be one of chat, embedding, rerank, speech2text, image2text, tts",
                    )
                })?;
                if !factory.model_types.contains(&mt) {
                    return Err(field(
                        "model_type",
                        format!("{t} is not a model type factory {} serves", factory.name),
                    ));
                }
                Some(mt)
            }
            None => None,
        };
        let llm_name = match self.llm_name.as_deref() {
            Some(n) => Some(
                ModelName::parse(n)
                    .map_err(|e| field("llm_name", e))?
                    .into_string(),
            ),
            None => None,
        };
        let base_url = match self.base_url.as_deref() {
            Some(u) => Some(check_url("base_url", u)?),
            None => None,
        };
        let mut secrets = Secrets::default();
        let mut settings = Map::new();
        let mut hint = None;
        let per_model = factory.connection == Kind::PerModel;

        let (llm_name, api_base) = match factory.auth {
            Auth::Azure => {
                let endpoint = check_url(
                    "endpoint",
                    self.endpoint
                        .as_deref()
                        .ok_or_else(|| field("endpoint", "is required for Azure-OpenAI"))?,
                )?;
                let deployment = token_like(
                    "deployment",
                    self.deployment
                        .as_deref()
                        .ok_or_else(|| field("deployment", "is required for Azure-OpenAI"))?,
                    64,
                )?;
                let version = token_like(
                    "api_version",
                    self.api_version
                        .as_deref()
                        .unwrap_or(AZURE_DEFAULT_API_VERSION),
                    32,
                )?;
                let key = secret(
                    "api_key",
                    self.api_key
                        .as_deref()
                        .ok_or_else(|| field("api_key", "is required for Azure-OpenAI"))?,
                )?;
                hint = Some(mask(&key));
                secrets.0.insert("api_key".into(), json!(key));
                settings.insert("api_version".into(), json!(version));
                if let Some(model) = &llm_name {
                    settings.insert("model".into(), json!(model));
                }
                (deployment, Some(endpoint))
            }
            Auth::ServiceAccount => {
                let creds = service_account(self.credentials_json.as_ref())?;
                let project = match self.project_id.as_deref() {
                    Some(p) => token_like("project_id", p, 64)?,
                    None => creds
                        .get("project_id")
                        .and_then(Value::as_str)
                        .map(|p| token_like("credentials_json.project_id", p, 64))
                        .transpose()?
                        .ok_or_else(|| {
                            field("project_id", "is required when credentials_json has none")
                        })?,
                };
                let location = token_like(
                    "location",
                    self.location.as_deref().unwrap_or(VERTEX_DEFAULT_LOCATION),
                    32,
                )?;
                hint = creds.get("client_email").and_then(Value::as_str).map(mask);
                secrets.0.insert(
                    "credentials_json".into(),
                    json!(Value::Object(creds).to_string()),
                );
                settings.insert("project_id".into(), json!(project));
                settings.insert("location".into(), json!(location));
                (llm_name.unwrap_or_default(), base_url)
            }
            Auth::OptionalBearer | Auth::None => {
                let name = llm_name.ok_or_else(|| {
                    field("llm_name", format!("is required for {}", factory.name))
                })?;
                let base = base_url.ok_or_else(|| {
                    field("base_url", format!("is required for {}", factory.name))
                })?;
                for k in ["api_key", "auth_token"] {
                    let v = if k == "api_key" {
                        &self.api_key
                    } else {
                        &self.auth_token
                    };
                    if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                        let v = secret(k, v)?;
                        hint.get_or_insert_with(|| mask(&v));
                        secrets.0.insert(k.into(), json!(v));
                    }
                }
                (name, Some(base))
            }
            Auth::Bearer | Auth::GoogleApiKey | Auth::Anthropic => {
                let key = secret(
                    "api_key",
                    self.api_key.as_deref().ok_or_else(|| {
                        field("api_key", format!("is required for {}", factory.name))
                    })?,
                )?;
                hint = Some(mask(&key));
                secrets.0.insert("api_key".into(), json!(key));
                (llm_name.unwrap_or_default(), base_url)
            }
        };
        // A single model inherits its type from the catalog when it is a catalog model.
        let model_type = match (model_type, llm_name.is_empty()) {
            (Some(t), _) => Some(t),
            (None, true) => None,
            (None, false) => Some(
                factory
                    .model(&llm_name)
                    .map(|m| m.model_type)
                    .unwrap_or(ModelType::Chat),
            ),
        };
        if per_model && llm_name.is_empty() {
            return Err(field(
                "llm_name",
                format!("is required for {}", factory.name),
            ));
        }
        let verify = self.verify.unwrap_or(!factory.self_deployed);
        Ok(Spec {
            factory,
            llm_name,
            model_type,
            api_base,
            settings,
            secrets,
            hint,
            max_tokens,
            verify,
        })
    }
}

/// Structural check of a Google service-account key: the fields the token exchange needs.
fn service_account(v: Option<&Value>) -> Result<Map<String, Value>, FieldError> {
    const F: &str = "credentials_json";
    let v = v.ok_or_else(|| field(F, "is required for VertexAI"))?;
    let parsed = match v {
        Value::String(s) => {
            if s.len() > MAX_SECRET_LEN {
                return Err(field(F, format!("must be at most {MAX_SECRET_LEN} bytes")));
            }
            serde_json::from_str::<Value>(s).map_err(|_| field(F, "is not valid JSON"))?
        }
        other => other.clone(),
    };
    let Value::Object(m) = parsed else {
        return Err(field(F, "must be a service-account JSON object"));
    };
    let s = |k: &str| m.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    if s("type") != Some("service_account") {
        return Err(field(F, "type must be \"service_account\""));
    }
    if s("client_email").is_none_or(|e| !e.contains('@')) {
        return Err(field(F, "client_email is missing or not an e-mail address"));
    }
    if s("private_key").is_none_or(|k| !k.contains("-----BEGIN PRIVATE KEY-----")) {
        return Err(field(F, "private_key is missing or not a PKCS#8 PEM key"));
    }
    let uri = s("token_uri").ok_or_else(|| field(F, "token_uri is missing"))?;
    check_url("credentials_json.token_uri", uri)?;
    Ok(m)
}

/// A name for a message: bounded, printable.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_without_userinfo() {
        assert_eq!(
            check_url("u", "http://127.0.0.1:1/v1/").unwrap(),
            "http://127.0.0.1:1/v1"
        );
        assert!(check_url("u", "https://api.example.com").is_ok());
        for bad in [
            "ftp://x",
            "file:///etc/passwd",
            "http://user:pw@x",
            "http://user@x",
            "javascript:alert(1)",
            "not a url",
            "http://x/?a=b",
            "gopher://x",
        ] {
            assert!(check_url("u", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connection_ids_are_stable_and_distinct() {
        assert_eq!(
            connection_id("t", "OpenAI", ""),
            connection_id("t", "OpenAI", "")
        );
        assert_ne!(
            connection_id("t", "OpenAI", ""),
            connection_id("t", "OpenAI", "x")
        );
        assert_ne!(
            connection_id("t1", "OpenAI", ""),
            connection_id("t", "1OpenAI", "")
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let mut s = Secrets::default();
        s.0.insert("api_key".into(), json!("sk-very-secret"));
        assert!(!format!("{s:?}").contains("sk-very"));
    }
}
