//! The deployment's default provider (RAGFlow's `user_default_llm`): a connection and default
//! models an operator configures once (`DEFAULT_LLM_*`) and every new tenant gets when it is
//! created, before anyone signs in.
//!
//! The configuration is applied when a tenant is created, in the same D1 batch as the tenant, and
//! never to tenants that exist already: a later change of the configuration reaches only tenants
//! created after it. The connection is sealed exactly as one the tenant adds itself
//! ([`App::sealed_connection`]), so from then on it is the tenant's own row, to update, remove or
//! choose other defaults over. It is not verified with a live call: creating a tenant does not
//! depend on a provider answering (RAGFlow does not call either).
//!
//! The configuration is checked where it is used: an invalid one (unknown factory, missing
//! secret, a default naming a model the factory does not have) refuses the request that would
//! create a tenant with a 500 saying the deployment is misconfigured, logged too, and nothing is
//! written; a tenant never exists without its connection.

use super::defaults::{DefaultModels, FIELDS};
use super::error::ApiError;
use super::http::Request;
use super::models::endpoint_host;
use super::{App, Reply, Result};
use crate::catalog::{self, Auth, Connection as Kind, ModelType};
use crate::providers::{address, connection_id, printable, AddModel, Spec};
use crate::store::batch::Handle;
use crate::store::{audit, defaults, providers, tenants, Batch, DbError, Platform, Stmt};
use serde::Serialize;
use serde_json::Value;

/// The vars and the secret, as the environment gives them; checked by [`DefaultProvider::check`]
/// when a tenant is created.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DefaultProvider {
    /// `DEFAULT_LLM_FACTORY`: a factory with a catalog of models (an organization connection).
    pub factory: Option<String>,
    /// `DEFAULT_LLM_BASE_URL`: the API root; the factory's default when unset.
    pub base_url: Option<String>,
    /// `DEFAULT_LLM_MODELS`: `field=model` pairs, comma-separated, with the fields of
    /// `POST /api/v1/models/default` (`llm_id=gpt-4o-mini,embd_id=text-embedding-3-small`).
    pub models: Option<String>,
    /// `DEFAULT_LLM_API_KEY` (a secret): the API key, or VertexAI's service-account JSON.
    pub api_key: Option<String>,
}

impl std::fmt::Debug for DefaultProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultProvider")
            .field("factory", &self.factory)
            .field("base_url", &self.base_url)
            .field("models", &self.models)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A checked configuration: the connection to add and the default model per type.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: Spec,
    /// A catalog model name or `None` per type, in [`defaults::SEEDED_TYPES`] order.
    pub defaults: [Option<String>; 6],
}

/// The var names, for messages.
const FACTORY_VAR: &str = "DEFAULT_LLM_FACTORY";
const BASE_URL_VAR: &str = "DEFAULT_LLM_BASE_URL";
const MODELS_VAR: &str = "DEFAULT_LLM_MODELS";
const SECRET_VAR: &str = "DEFAULT_LLM_API_KEY";

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl DefaultProvider {
    /// Whether any of the settings is given (then all of it must be valid).
    pub fn is_set(&self) -> bool {
        set(&self.factory).is_some()
            || set(&self.base_url).is_some()
            || set(&self.models).is_some()
            || set(&self.api_key).is_some()
    }

    /// The plan, or why the configuration cannot be used (naming the setting, never the secret).
    pub fn check(&self) -> std::result::Result<Plan, String> {
        let Some(name) = set(&self.factory) else {
            return Err(format!(
                "{FACTORY_VAR} is not set, but other DEFAULT_LLM_* settings are"
            ));
        };
        let factory = catalog::factory(name).ok_or_else(|| {
            format!(
                "{FACTORY_VAR}: unknown factory {}; GET /api/v1/factories lists them",
                printable(name)
            )
        })?;
        if factory.connection != Kind::Organization {
            return Err(format!(
                "{FACTORY_VAR}: {} cannot be the default provider; it must be a factory with a \
                 catalog of models (one connection for all of them): {}",
                factory.name,
                catalog::factories()
                    .iter()
                    .filter(|f| f.connection == Kind::Organization)
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let secret = set(&self.api_key);
        let vertex = factory.auth == Auth::ServiceAccount;
        let Some(secret) = secret else {
            let what = if vertex {
                "service-account JSON"
            } else {
                "API key"
            };
            return Err(format!(
                "{SECRET_VAR} is not set; it is the secret holding {}'s {what}",
                factory.name
            ));
        };
        let body = AddModel {
            llm_factory: factory.name.clone(),
            api_key: (!vertex).then(|| secret.to_owned()),
            base_url: set(&self.base_url).map(str::to_owned),
            llm_name: None,
            model_type: None,
            max_tokens: None,
            verify: Some(false),
            auth_token: None,
            deployment: None,
            endpoint: None,
            api_version: None,
            credentials_json: vertex.then(|| Value::String(secret.to_owned())),
            project_id: None,
            location: None,
        };
        let spec = body.into_spec().map_err(|(field, why)| {
            let var = match field.as_str() {
                "base_url" => BASE_URL_VAR,
                "api_key" | "credentials_json" | "project_id" => SECRET_VAR,
                _ => FACTORY_VAR,
            };
            // A reason never quotes the value, but a secret is cut out all the same.
            format!("{var}: {}", why.replace(secret, "***"))
        })?;
        let mut defaults: [Option<String>; 6] = Default::default();
        for pair in set(&self.models)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (field, model) = pair
                .split_once('=')
                .map(|(f, m)| (f.trim(), m.trim()))
                .ok_or_else(|| {
                    format!(
                        "{MODELS_VAR}: {} is not field=model (fields: {})",
                        printable(pair),
                        FIELDS.map(|f| f.0).join(", ")
                    )
                })?;
            let Some((_, want)) = FIELDS.iter().find(|(f, _)| *f == field) else {
                return Err(format!(
                    "{MODELS_VAR}: unknown field {} (fields: {})",
                    printable(field),
                    FIELDS.map(|f| f.0).join(", ")
                ));
            };
            // `name@Factory` is accepted for the configured factory only.
            let model = match model.rsplit_once('@') {
                Some((n, f)) if f == factory.name => n,
                _ => model,
            };
            let m = factory.model(model).ok_or_else(|| {
                format!(
                    "{MODELS_VAR}: {field}: {} has no model {}",
                    factory.name,
                    printable(model)
                )
            })?;
            if m.model_type != *want {
                return Err(format!(
                    "{MODELS_VAR}: {field}: {} is a model of type {}, not {}",
                    printable(model),
                    m.model_type.as_str(),
                    want.as_str()
                ));
            }
            let slot = slot_of(*want);
            if defaults[slot].is_some() {
                return Err(format!("{MODELS_VAR}: {field} is given twice"));
            }
            defaults[slot] = Some(m.name.clone());
        }
        Ok(Plan { spec, defaults })
    }
}

/// Where a type sits in [`defaults::SEEDED_TYPES`].
fn slot_of(t: ModelType) -> usize {
    defaults::SEEDED_TYPES
        .iter()
        .position(|s| *s == t)
        .unwrap_or_default()
}

// What `GET /api/v1/admin/default_provider` and the apply route answer.
/// The deployment's default provider: what every new tenant gets. Never holds the secret.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "DefaultProvider"))]
pub struct DefaultProviderView {
    /// Whether any `DEFAULT_LLM_*` setting is given.
    pub configured: bool,
    /// Why the configuration cannot be used, naming the setting; null when it is usable or not
    /// configured. While it is set, creating a tenant is refused with a 500 saying so.
    pub problem: Option<String>,
    /// The factory new tenants are connected to; null when not configured or unusable.
    pub factory: Option<String>,
    /// The endpoint the connection calls (`DEFAULT_LLM_BASE_URL`, else the factory's default);
    /// null when there is none.
    pub base_url: Option<String>,
    /// A masked hint of the configured credential, as the tenant's model list shows it.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("examples" = ["sk-...wxyz"])))]
    pub credential_hint: Option<String>,
    /// The default models new tenants get, as `name@factory`; a type the tenant has a default
    /// for already keeps it when the provider is applied to an existing tenant.
    pub defaults: DefaultModels,
}

fn no_defaults() -> DefaultModels {
    DefaultModels {
        llm_id: None,
        embd_id: None,
        asr_id: None,
        img2txt_id: None,
        rerank_id: None,
        tts_id: None,
    }
}

fn view(plan: &Plan) -> DefaultProviderView {
    let id = |t: ModelType| {
        plan.defaults[slot_of(t)]
            .as_ref()
            .map(|n| format!("{n}@{}", plan.spec.factory.name))
    };
    DefaultProviderView {
        configured: true,
        problem: None,
        factory: Some(plan.spec.factory.name.clone()),
        base_url: plan.spec.endpoint(),
        credential_hint: plan.spec.hint.clone(),
        defaults: DefaultModels {
            llm_id: id(ModelType::Chat),
            embd_id: id(ModelType::Embedding),
            asr_id: id(ModelType::Speech2text),
            img2txt_id: id(ModelType::Image2text),
            rerank_id: id(ModelType::Rerank),
            tts_id: id(ModelType::Tts),
        },
    }
}

impl<P: Platform> App<P> {
    /// The checked default provider for a request that creates a tenant: `None` when none is
    /// configured, a [`ApiError::Misconfigured`] when it cannot be used. Its URLs pass the same
    /// checks as a tenant's (never this deployment, only address classes the operator allows).
    pub(crate) fn default_provider_plan(&self, req: &Request) -> Result<Option<Plan>> {
        let dp = &self.config.default_provider;
        if !dp.is_set() {
            return Ok(None);
        }
        let plan = dp.check().map_err(ApiError::Misconfigured)?;
        if self.config.keyring.is_none() {
            return Err(ApiError::Misconfigured(
                "KEYWARD_ENCRYPTION_KEY is not set, so the default provider's key cannot be sealed"
                    .into(),
            ));
        }
        for (_, url) in plan.spec.tenant_urls() {
            address::check_destination(&url, &self.config.address_policy, &self.own_hosts(req))
                .map_err(|why| ApiError::Misconfigured(format!("{BASE_URL_VAR}: {why}")))?;
        }
        Ok(Some(plan))
    }

    /// Add to `batch` the default provider's connection for `tenant_id`, its defaults for the
    /// types without one, the version bump retiring cached defaults, and their audit entries;
    /// returns the handle of the connection's insert, which changes no row when the tenant has
    /// that connection already (then nothing after it acts either).
    fn seed_into(
        &self,
        batch: &mut Batch,
        plan: &Plan,
        tenant_id: &str,
        now: i64,
        max_connections: i64,
    ) -> Result<Handle> {
        let factory = &plan.spec.factory.name;
        let id = connection_id(tenant_id, factory, "");
        let conn = self.sealed_connection(tenant_id, id, &plan.spec, now)?;
        let detail = FIELDS
            .iter()
            .filter_map(|(f, t)| {
                plan.defaults[slot_of(*t)]
                    .as_ref()
                    .map(|n| format!("{f}={n}@{factory}"))
            })
            .collect::<Vec<_>>()
            .join(" ");
        let models = plan.defaults.each_ref().map(Option::as_deref);
        Ok(batch
            .push(providers::upsert(&conn, None, max_connections))
            .then_if_changed(audit::record_if_changed(
                now,
                audit::Actor::Admin,
                "model.add",
                &format!("{factory}/"),
                Some(tenant_id),
                &format!(
                    "seeded=deployment verified=false endpoint={}",
                    endpoint_host(plan.spec.endpoint().as_deref())
                ),
            ))
            .then_if_changed(defaults::seed_if_changed(
                tenant_id, factory, &conn.id, models, now,
            ))
            .then_if_changed(defaults::bump_version_if_changed(tenant_id))
            .then_if_changed(audit::record_if_changed(
                now,
                audit::Actor::Admin,
                "defaults.set",
                tenant_id,
                Some(tenant_id),
                &format!("seeded=deployment {detail}"),
            ))
            .handle())
    }

    /// The statements that give a tenant being created (by the admin API, or with a user created
    /// without a tenant) the deployment's default provider, to run in the batch that inserts the
    /// tenant, after its insert; none when no default provider is configured.
    pub(crate) fn seed_new_tenant(
        &self,
        req: &Request,
        tenant_id: &str,
        now: i64,
    ) -> Result<Vec<Stmt>> {
        let Some(plan) = self.default_provider_plan(req)? else {
            return Ok(Vec::new());
        };
        let mut batch = Batch::new();
        // A tenant being created holds no connection, so no maximum (at least 1) can refuse it.
        self.seed_into(&mut batch, &plan, tenant_id, now, i64::MAX)?;
        Ok(batch.into_stmts())
    }

    /// `GET /api/v1/admin/default_provider`: what new tenants get, or why they cannot be created.
    pub(crate) fn default_provider(&self, req: &Request) -> Result<Reply> {
        Ok(Reply::ok(match self.default_provider_plan(req) {
            Ok(Some(plan)) => view(&plan),
            Ok(None) => DefaultProviderView {
                configured: false,
                problem: None,
                factory: None,
                base_url: None,
                credential_hint: None,
                defaults: no_defaults(),
            },
            Err(ApiError::Misconfigured(why)) => DefaultProviderView {
                configured: true,
                problem: Some(why),
                factory: None,
                base_url: None,
                credential_hint: None,
                defaults: no_defaults(),
            },
            Err(e) => return Err(e),
        }))
    }

    /// `POST /api/v1/admin/tenants/{tenant_id}/default_provider`: give one existing tenant the
    /// default provider on purpose; 409 when it has a connection to that factory already.
    pub(crate) async fn apply_default_provider(
        &self,
        tenant_id: &str,
        req: &Request,
    ) -> Result<Reply> {
        let db = self.platform.db();
        let tenant = tenants::get(db, tenant_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("No tenant with id {tenant_id}")))?;
        let plan = self.default_provider_plan(req)?.ok_or_else(|| {
            ApiError::Conflict(format!(
                "This deployment has no default provider to apply ({FACTORY_VAR} is not set)"
            ))
        })?;
        let factory = &plan.spec.factory.name;
        let taken = || {
            ApiError::Conflict(format!(
                "Tenant {} already has a connection to {factory}; nothing was changed (the \
                 tenant's own connection is kept; remove it first to apply the default provider)",
                tenant.id
            ))
        };
        let conns = providers::list_for_tenant(db, &tenant.id).await?;
        if conns.iter().any(|c| &c.factory == factory) {
            return Err(taken());
        }
        let most = self.key_policy().await?.max_connections_per_tenant;
        let full = || {
            ApiError::Conflict(format!(
                "Tenant {} already holds {most} provider connections, the most allowed \
                 (max_connections_per_tenant); nothing was changed",
                tenant.id
            ))
        };
        if conns.len() as i64 >= most {
            return Err(full());
        }
        let now = self.platform.now_ms();
        let mut batch = Batch::new();
        let added = self.seed_into(&mut batch, &plan, &tenant.id, now, most)?;
        let outcome = batch.run(db).await.map_err(|e| match e {
            // The tenant was deleted meanwhile.
            DbError::ForeignKey(_) => ApiError::NotFound(format!("No tenant with id {tenant_id}")),
            other => other.into(),
        })?;
        if !outcome.did_change(added) {
            // Another request added its connection, or filled the tenant's last place, meanwhile.
            let held = providers::count(db, &tenant.id).await?;
            return Err(if held >= most { full() } else { taken() });
        }
        Ok(Reply::ok(view(&plan)))
    }
}
