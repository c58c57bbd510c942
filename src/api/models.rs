//! The provider catalog and a tenant's provider connections: `GET /api/v1/factories`,
//! `POST / DELETE / GET /api/v1/models`.

use super::auth::Caller;
use super::error::ApiError;
use super::http::Request;
use super::{App, Reply, Result};
use crate::catalog::{self, Connection as Kind, Factory, ModelType};
use crate::domain::states::ConnectionStatus;
use crate::domain::vault::{Slot, Vault, VaultError};
use crate::providers::probe::{self, ProbeFailure};
use crate::providers::{connection_id, printable, AddModel, Secrets, Spec};
use crate::store::outbound::Outbound;
use crate::store::providers::{self, Connection};
use crate::store::{audit, defaults, Batch, Platform};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Optional fields may also be null, which means the same as leaving them out.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Serialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "RemoveModelRequest"))]
#[serde(deny_unknown_fields)]
pub struct RemoveModel {
    /// The factory (case-sensitive); an unknown factory or `Builtin` is a 400.
    pub llm_factory: String,
    /// Remove only this model's connection (for Azure-OpenAI the deployment name). Absent or empty:
    /// remove every connection the tenant has to the factory. A catalog model of an organization
    /// connection cannot be removed on its own (404); remove the factory instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_name: Option<String>,
}

/// A model a tenant can use: from a connection's catalog, a single-model connection, or Builtin.
#[derive(Debug, Clone, PartialEq)]
pub struct Available {
    pub factory: &'static Factory,
    pub name: String,
    pub model_type: ModelType,
    pub max_tokens: Option<i64>,
    /// The connection providing it; `None` for Builtin.
    pub connection: Option<Connection>,
}

impl Available {
    /// The canonical id, `name@factory`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.factory.name)
    }
}

/// Only owners and admins change a tenant's providers, defaults and gateway keys.
pub fn require_manager(caller: &Caller) -> Result<()> {
    managing(caller).map(|_| ())
}

/// The caller, if their role may change the tenant's providers, defaults and gateway keys.
pub fn managing(caller: &Caller) -> Result<&Caller> {
    if caller.role.can_manage() {
        Ok(caller)
    } else {
        Err(ApiError::Forbidden(format!(
            "Role {} may read but not change this tenant's providers, default models or gateway keys; owners and admins may",
            caller.role.as_str()
        )))
    }
}

// A catalog factory, as `GET /api/v1/factories` lists it.
/// One provider of the catalog.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Factory"))]
pub struct FactoryView<'a> {
    /// The factory's name as RAGFlow spells it (case-sensitive), the `llm_factory` of requests.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minLength" = 1, "examples" = ["OpenAI", "Azure-OpenAI", "OpenAI-API-Compatible", "Builtin"])))]
    pub name: Cow<'a, str>,
    /// RAGFlow's tags for `model_types`, comma-separated in the fixed order `LLM,TEXT
    /// EMBEDDING,TEXT RE-RANK,TTS,SPEECH2TEXT,IMAGE2TEXT`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("examples" = ["LLM,TEXT EMBEDDING,TTS,SPEECH2TEXT,IMAGE2TEXT"])))]
    pub tags: Cow<'a, str>,
    /// The model types the factory offers or, for a per-model factory, can host.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("uniqueItems" = true, "minItems" = 1)))]
    pub model_types: Cow<'a, [ModelType]>,
    pub auth: catalog::Auth,
    pub connection: Kind,
    /// The API root used when the tenant gives no `base_url`; null when the tenant must give one
    /// (Azure-OpenAI's `endpoint`, OpenAI-API-Compatible, Ollama, LocalAI, Xinference), for
    /// VertexAI (built from `location`) and for Builtin (served by the deployment's Workers AI
    /// binding).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("format" = "uri")))]
    pub default_base_url: Option<Cow<'a, str>>,
    /// Whether the tenant runs the server itself: no key, and not verified with a live call on add
    /// unless `verify` is true.
    pub self_deployed: bool,
    /// The catalog models; empty for per-model factories whose models the tenant names.
    pub models: Vec<CatalogModelView<'a>>,
}

// A catalog model; `enabled` only on Builtin's, whether this deployment enables it.
/// A catalog model of a factory.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "FactoryModel"))]
pub struct CatalogModelView<'a> {
    /// The provider's model name, unique within its factory.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minLength" = 1)))]
    pub name: Cow<'a, str>,
    #[serde(rename = "type")]
    pub model_type: ModelType,
    /// The context window in tokens; for `speech2text` the largest audio upload in bytes, for `tts`
    /// the input length (as RAGFlow's catalog).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 1, "maximum" = 4294967295u32)))]
    pub max_tokens: u32,
    /// Only on models of the `Builtin` factory: whether the operator enabled this model for the
    /// deployment (only enabled Builtin models can be used or made defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "bool"))]
    pub enabled: Option<bool>,
}

// One factory's entry in `GET /api/v1/models`: RAGFlow's `{tags, llm}`.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ConfiguredFactory"))]
pub struct FactoryModels<'a> {
    /// The factory's RAGFlow tags, as in `GET /api/v1/factories`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("examples" = ["LLM,TEXT EMBEDDING,TTS,SPEECH2TEXT,IMAGE2TEXT"])))]
    pub tags: Cow<'a, str>,
    /// The tenant's usable models of this factory: every catalog model of an organization
    /// connection, each single-model connection, and for `Builtin` the models the operator enabled
    /// (possibly none).
    pub llm: Vec<TenantModelView<'a>>,
}

// A model the tenant has, with `include_details` what its connection says: the outer `None`
// leaves a detail out, `Some(None)` writes `null` (no serde flatten: it costs the Worker bundle).
/// A model the tenant can use. `api_base`, `max_tokens`, `status` and `credential_hint` are present
/// only with `include_details=true`.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ConfiguredModel"))]
pub struct TenantModelView<'a> {
    #[serde(rename = "type")]
    pub model_type: ModelType,
    /// The model's name (an Azure-OpenAI deployment's name); with the factory it forms the id
    /// `name@factory`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minLength" = 1)))]
    pub name: Cow<'a, str>,
    /// Tokens used through this tenant's connection for this model.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0)))]
    pub used_token: i64,
    /// With details: the URL the model is reached at, the connection's `base_url` / `endpoint` or
    /// else the factory's default; null when there is none (Builtin, VertexAI without `base_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base: Option<Option<String>>,
    /// With details: the connection's `max_tokens`, else the catalog's; null when neither gives
    /// one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 1)))]
    pub max_tokens: Option<Option<i64>>,
    /// With details: the connection's status (`valid` once added; Builtin models are always
    /// `valid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "ConnectionStatus"))]
    pub status: Option<ConnectionStatus>,
    /// With details: a masked hint of the credential (the first 3 and last 4 characters around
    /// `...`, `****` for a secret shorter than 12 characters; for VertexAI the masked
    /// service-account e-mail); null when there is no credential (Builtin, self-deployed servers,
    /// OpenAI-API-Compatible without a key). Never a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("examples" = ["sk-...wxyz"])))]
    pub credential_hint: Option<Option<Cow<'a, str>>>,
}

impl<P: Platform> App<P> {
    pub(crate) fn factories_json(&self) -> Vec<FactoryView<'static>> {
        let enabled: Vec<&str> = catalog::enabled_builtin(&self.config.builtin_models)
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        catalog::factories()
            .iter()
            .map(|f| FactoryView {
                name: (&f.name).into(),
                tags: (&f.tags).into(),
                model_types: (&f.model_types).into(),
                auth: f.auth,
                connection: f.connection,
                default_base_url: f.default_base_url.as_deref().map(Cow::Borrowed),
                self_deployed: f.self_deployed,
                models: f
                    .models
                    .iter()
                    .map(|m| CatalogModelView {
                        name: (&m.name).into(),
                        model_type: m.model_type,
                        max_tokens: m.max_tokens,
                        enabled: f.is_builtin().then(|| enabled.contains(&m.name.as_str())),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Every model the tenant can use right now, in factory order.
    pub(crate) async fn available_models(&self, tenant_id: &str) -> Result<Vec<Available>> {
        let conns = providers::list_for_tenant(self.platform.db(), tenant_id).await?;
        Ok(self.expand(conns, true))
    }

    /// The models named `name` of `factory` the tenant can use: a primary-key read of the at most
    /// two connections that can provide it (its own row and the factory's organization row).
    pub(crate) async fn available_named(
        &self,
        tenant_id: &str,
        factory: &str,
        name: &str,
    ) -> Result<Vec<Available>> {
        let conns = if factory == catalog::BUILTIN {
            Vec::new()
        } else {
            let ids = [
                connection_id(tenant_id, factory, name),
                connection_id(tenant_id, factory, ""),
            ];
            providers::get_by_ids(self.platform.db(), tenant_id, &ids).await?
        };
        Ok(self.named_from(conns, factory, name))
    }

    /// The models named `name` of `factory` among what `conns` (the rows [`Self::available_named`]
    /// reads) provide.
    pub(crate) fn named_from(
        &self,
        conns: Vec<Connection>,
        factory: &str,
        name: &str,
    ) -> Vec<Available> {
        let mut out = self.expand(conns, factory == catalog::BUILTIN);
        out.retain(|a| a.factory.name == factory && a.name == name);
        out
    }

    /// Connection rows as usable models: an organization row gives its factory's catalog, a
    /// single-model row itself (overriding the same catalog model); then the enabled Builtins.
    pub(crate) fn expand(&self, conns: Vec<Connection>, with_builtin: bool) -> Vec<Available> {
        let mut out: Vec<Available> = Vec::new();
        for c in conns {
            let Some(f) = catalog::factory(&c.factory) else {
                continue;
            };
            if c.llm_name.is_empty() {
                for m in &f.models {
                    // Rows come ordered by llm_name, so '' comes first: later single rows win.
                    out.push(Available {
                        factory: f,
                        name: m.name.clone(),
                        model_type: m.model_type,
                        max_tokens: Some(m.max_tokens.into()),
                        connection: Some(c.clone()),
                    });
                }
            } else {
                let mt = c.model_type.unwrap_or(ModelType::Chat);
                let max_tokens = c
                    .max_tokens
                    .or_else(|| f.model(&c.llm_name).map(|m| m.max_tokens.into()));
                // A single-model row overrides the same model from an organization connection.
                out.retain(|a| !(a.factory.name == f.name && a.name == c.llm_name));
                out.push(Available {
                    factory: f,
                    name: c.llm_name.clone(),
                    model_type: mt,
                    max_tokens,
                    connection: Some(c),
                });
            }
        }
        if let Some(builtin) = catalog::factory(catalog::BUILTIN).filter(|_| with_builtin) {
            for m in catalog::enabled_builtin(&self.config.builtin_models) {
                out.push(Available {
                    factory: builtin,
                    name: m.name.clone(),
                    model_type: m.model_type,
                    max_tokens: Some(m.max_tokens.into()),
                    connection: None,
                });
            }
        }
        out
    }

    pub(crate) async fn list_models(&self, caller: &Caller, req: &Request) -> Result<Reply> {
        let details = match req.query_param("include_details").as_deref() {
            None | Some("") | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => return Err(ApiError::bad("include_details", "must be true or false")),
        };
        let models = self.available_models(&caller.tenant_id).await?;
        let usage = providers::usage_for_tenant(self.platform.db(), &caller.tenant_id).await?;
        let mut out = BTreeMap::new();
        if let Some(b) = catalog::factory(catalog::BUILTIN) {
            out.insert(
                b.name.as_str(),
                FactoryModels {
                    tags: (&b.tags).into(),
                    llm: Vec::new(),
                },
            );
        }
        for m in &models {
            let used: i64 = usage
                .iter()
                .filter(|(cid, name, _)| {
                    Some(cid.as_str()) == m.connection.as_ref().map(|c| c.id.as_str())
                        && *name == m.name
                })
                .map(|(_, _, n)| n)
                .sum();
            let conn = m.connection.as_ref();
            let item = TenantModelView {
                model_type: m.model_type,
                name: (&m.name).into(),
                used_token: used,
                api_base: details.then(|| {
                    probe::base_of(
                        conn.and_then(|c| c.api_base.as_deref()),
                        m.factory.default_base_url.as_deref(),
                    )
                }),
                max_tokens: details.then_some(m.max_tokens),
                status: details.then(|| conn.map_or(ConnectionStatus::Valid, |c| c.status)),
                credential_hint: details
                    .then(|| conn.and_then(|c| c.credential_hint.as_deref().map(Cow::Borrowed))),
            };
            out.entry(m.factory.name.as_str())
                .or_insert_with(|| FactoryModels {
                    tags: (&m.factory.tags).into(),
                    llm: Vec::new(),
                })
                .llm
                .push(item);
        }
        Ok(Reply::ok(out))
    }

    pub(crate) async fn add_model(
        &self,
        caller: &Caller,
        req: &Request,
        body: AddModel,
    ) -> Result<Reply> {
        let spec = body
            .into_spec()
            .map_err(|(f, why)| ApiError::bad(&f, why))?;
        // Before any call: never this deployment, never an address class the operator forbids.
        for (field, url) in spec.tenant_urls() {
            self.check_saved_url(req, field, &url)?;
        }
        let shown = if spec.llm_name.is_empty() {
            spec.factory.name.clone()
        } else {
            spec.llm_name.clone()
        };
        let id = connection_id(&caller.tenant_id, &spec.factory.name, &spec.llm_name);
        let before = providers::get(self.platform.db(), &caller.tenant_id, &id).await?;
        let default_base = spec.factory.default_base_url.as_deref();
        let old_endpoint = before
            .as_ref()
            .map(|c| probe::base_of(c.api_base.as_deref(), default_base));
        let new_endpoint = spec.endpoint();
        let moved = old_endpoint
            .as_ref()
            .is_some_and(|old| *old != new_endpoint);
        // A stored credential never follows its connection to another endpoint: moving needs it
        // again (factories whose key is optional could otherwise be re-pointed keyless).
        let had_credential = before.as_ref().is_some_and(|c| c.credential.is_some());
        if moved && had_credential && spec.secrets.0.is_empty() {
            return Err(ApiError::bad(
                "api_key",
                format!(
                    "this connection holds a credential for {}; moving it to {} needs the \
                     credential again (send api_key, or remove the connection first)",
                    endpoint_host(old_endpoint.as_ref().and_then(Option::as_deref)),
                    endpoint_host(new_endpoint.as_deref())
                ),
            ));
        }
        if spec.verify {
            self.verify_connection(&spec).await.map_err(|f| match f {
                ProbeFailure::Rejected(why) => ApiError::DataError(format!(
                    "Fail to access model({}) using this api key: {why}",
                    printable(&shown)
                )),
                ProbeFailure::Unavailable(why) => ApiError::BadGateway(format!(
                    "Fail to access model({}): {why}",
                    printable(&shown)
                )),
            })?;
        }
        let now = self.platform.now_ms();
        let conn = self.sealed_connection(&caller.tenant_id, id, &spec, now)?;
        let endpoint = match &old_endpoint {
            Some(old) => endpoint_change(old.as_deref(), new_endpoint.as_deref()),
            None => endpoint_host(new_endpoint.as_deref()),
        };
        let seen = before.as_ref().map(|c| c.api_base.as_deref());
        let most = self.key_policy().await?.max_connections_per_tenant;
        let mut batch = Batch::new();
        let upserted = batch
            .push(providers::upsert(&conn, seen, most))
            .then_if_changed(audit::record_if_changed(
                now,
                audit::Actor::User(&caller.username),
                "model.add",
                &format!("{}/{}", conn.factory, conn.llm_name),
                Some(&caller.tenant_id),
                &format!("verified={} endpoint={endpoint}", spec.verify),
            ))
            .handle();
        if !batch.run(self.platform.db()).await?.did_change(upserted) {
            // No row changed: a new connection at the tenant's limit, or a lost race.
            let held = providers::count(self.platform.db(), &caller.tenant_id).await?;
            if before.is_none() && held >= most {
                return Err(ApiError::Conflict(format!(
                    "This tenant already holds {held} provider connections, the most allowed \
                     (max_connections_per_tenant); remove one first"
                )));
            }
            return Err(ApiError::Conflict(
                "The connection was changed by another request meanwhile; nothing was changed, \
                 try again"
                    .into(),
            ));
        }
        Ok(Reply::ok(true))
    }

    /// The row for `spec` on the tenant's connection `id`, its secrets sealed for that row: how
    /// every connection is made, whether a tenant adds it or the deployment's default provider
    /// does (api/seed.rs).
    pub(crate) fn sealed_connection(
        &self,
        tenant_id: &str,
        id: String,
        spec: &Spec,
        now: i64,
    ) -> Result<Connection> {
        let (key_version, credential) = if spec.secrets.0.is_empty() {
            (None, None)
        } else {
            let slot = Slot::Connection {
                tenant_id,
                factory: &spec.factory.name,
                llm_name: &spec.llm_name,
                id: &id,
            };
            let (v, sealed) = self
                .vault()
                .seal(slot, &spec.secrets.to_json(), &|b| {
                    self.platform.fill_random(b)
                })
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            (Some(v), Some(sealed))
        };
        Ok(Connection {
            id,
            tenant_id: tenant_id.to_owned(),
            factory: spec.factory.name.clone(),
            llm_name: spec.llm_name.clone(),
            model_type: spec.model_type,
            api_base: spec.api_base.clone(),
            settings: Value::Object(spec.settings.clone()).to_string(),
            key_version,
            credential,
            credential_hint: spec.hint.clone(),
            max_tokens: spec.max_tokens,
            status: ConnectionStatus::Valid,
            create_date: now,
            update_date: now,
        })
    }

    /// One live call that proves the credential (Vertex: a signed token exchange).
    async fn verify_connection(&self, spec: &Spec) -> std::result::Result<(), ProbeFailure> {
        let timeout = self.config.provider_timeout_ms;
        let secrets = spec.secrets.values();
        let outbound = self.platform.outbound();
        let req = match probe::request(spec, timeout) {
            Some(r) => r,
            None => {
                let creds: Value = spec
                    .secrets
                    .get("credentials_json")
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or(Value::Null);
                let now_s = self.platform.now_ms() / 1000;
                let (unsigned, token_uri) =
                    probe::vertex_assertion(&creds, now_s).ok_or_else(|| {
                        ProbeFailure::Rejected("credentials_json is incomplete".into())
                    })?;
                let der = creds
                    .get("private_key")
                    .and_then(Value::as_str)
                    .and_then(probe::pem_to_der)
                    .ok_or_else(|| {
                        ProbeFailure::Rejected("private_key is not a valid PEM key".into())
                    })?;
                let sig = outbound
                    .sign_rs256(&der, unsigned.as_bytes())
                    .await
                    .map_err(|_| {
                        ProbeFailure::Rejected(
                            "private_key could not sign (not an RSA PKCS#8 key)".into(),
                        )
                    })?;
                probe::vertex_token_request(&token_uri, &unsigned, &sig, timeout)
            }
        };
        let host = probe::host_of(&req.url);
        let outcome = self.send_out(req).await;
        probe::judge(outcome, &host, timeout, &secrets)
    }

    /// Open a connection's sealed credential. Fails if the row was tampered with, moved to another
    /// tenant, factory, model or id, or sealed with a master key this deployment no longer has.
    pub fn connection_secrets(&self, c: &Connection) -> Result<Secrets> {
        let (Some(version), Some(sealed)) = (c.key_version, c.credential.as_deref()) else {
            return Ok(Secrets::default());
        };
        let slot = Slot::Connection {
            tenant_id: &c.tenant_id,
            factory: &c.factory,
            llm_name: &c.llm_name,
            id: &c.id,
        };
        let plain = self
            .vault()
            .open(slot, version, sealed)
            .map_err(|e| opening_failed(e, || format!("credential of connection {}", c.id)))?;
        Ok(Secrets::from_json(&plain))
    }

    /// [`Self::connection_secrets`], from this isolate's memory when the same sealed credential
    /// was opened before (api/opened.rs), with the connection's parsed settings.
    pub(crate) fn opened_connection(
        &self,
        c: &Connection,
    ) -> Result<(Secrets, Map<String, Value>)> {
        let Some(ring) = self.config.keyring.as_ref() else {
            // Nothing can be opened, nor kept: the uncached path says why.
            let secrets = self.connection_secrets(c)?;
            return Ok((secrets, super::opened::settings(0, &c.settings)));
        };
        let settings = super::opened::settings(ring.instance(), &c.settings);
        let (Some(version), Some(sealed)) = (c.key_version, c.credential.as_deref()) else {
            return Ok((Secrets::default(), settings));
        };
        let aad = Slot::Connection {
            tenant_id: &c.tenant_id,
            factory: &c.factory,
            llm_name: &c.llm_name,
            id: &c.id,
        }
        .aad();
        let secrets = super::opened::secrets(ring.instance(), &aad, version, sealed, || {
            self.connection_secrets(c)
        })?;
        Ok((secrets, settings))
    }

    /// A connection's parsed settings, from this isolate's memory when seen before.
    pub(crate) fn connection_settings(&self, c: &Connection) -> Map<String, Value> {
        let ring = self.config.keyring.as_ref().map_or(0, |r| r.instance());
        super::opened::settings(ring, &c.settings)
    }

    /// The deployment's vault: the one way credentials of any row are sealed and opened.
    pub(crate) fn vault(&self) -> Vault<'_> {
        Vault::new(self.config.keyring.as_ref())
    }

    pub(crate) async fn remove_model(&self, caller: &Caller, body: RemoveModel) -> Result<Reply> {
        let factory = catalog::factory(&body.llm_factory).ok_or_else(|| {
            ApiError::bad(
                "llm_factory",
                format!("unknown factory {}", printable(&body.llm_factory)),
            )
        })?;
        if factory.is_builtin() {
            return Err(ApiError::bad(
                "llm_factory",
                "Builtin models are enabled by the operator; they cannot be removed",
            ));
        }
        let name = body.llm_name.as_deref().filter(|n| !n.is_empty());
        let now = self.platform.now_ms();
        let mut batch = Batch::new();
        let removed = providers::delete(&mut batch, &caller.tenant_id, &factory.name, name)
            .then_if_changed(audit::record_if_changed(
                now,
                audit::Actor::User(&caller.username),
                "model.remove",
                &format!("{}/{}", factory.name, name.unwrap_or("")),
                Some(&caller.tenant_id),
                "",
            ))
            // Retire the cached defaults only if the audit entry (so the removal) happened.
            .then_if_changed(defaults::bump_version_if_changed(&caller.tenant_id))
            .handle();
        if !batch.run(self.platform.db()).await?.did_change(removed) {
            let what = match name {
                Some(n) => format!("Model {} of factory {}", printable(n), factory.name),
                None => format!("Factory {}", factory.name),
            };
            let hint = if name.is_some() && factory.connection == Kind::Organization {
                "; catalog models of a connected factory go with the factory (remove it without llm_name)"
            } else {
                ""
            };
            return Err(ApiError::NotFound(format!(
                "{what} is not configured for this tenant{hint}"
            )));
        }
        Ok(Reply::ok(true))
    }
}

/// The host an endpoint names, for audit entries and messages (never its path, which a proxy may
/// use for a token); `none` when there is no endpoint.
pub fn endpoint_host(endpoint: Option<&str>) -> String {
    endpoint.map_or_else(|| "none".into(), probe::host_of)
}

/// `host` when an endpoint stays, `old->new` when it moves (`(path changed)` when only the path
/// moves, as the hosts alone would not show it).
pub fn endpoint_change(old: Option<&str>, new: Option<&str>) -> String {
    let (o, n) = (endpoint_host(old), endpoint_host(new));
    if old == new {
        n
    } else if o == n {
        format!("{o}->{n} (path changed)")
    } else {
        format!("{o}->{n}")
    }
}

/// A sealed credential that did not open: a missing keyring says so alone; anything else names
/// the row (`what`), never the credential.
pub(crate) fn opening_failed(e: VaultError, what: impl FnOnce() -> String) -> ApiError {
    match e {
        VaultError::NotConfigured => ApiError::Internal(e.to_string()),
        VaultError::BadVersion(_) | VaultError::Open(_) => {
            ApiError::Internal(format!("{} cannot be opened: {e}", what()))
        }
    }
}
