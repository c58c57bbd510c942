//! A tenant's default model per type: `POST / GET /api/v1/models/default`.
//!
//! D1 is the truth. Reads come from KV under a versioned key, `defaults:{tenant}:{version}`, where
//! the version is read from D1 with the caller's key on every request (no extra query). A change to
//! the defaults bumps the version in the same D1 batch as the change, so a cached entry is never
//! stale: an entry, once written, never changes, and a changed tenant simply reads a new key. KV
//! failures fall back to D1; the write path does no KV write at all, so KV's one-write-per-second
//! per key limit cannot fail it.

use super::auth::Caller;
use super::error::ApiError;
use super::models::{require_manager, Available};
use super::{body, App, Reply, Result};
use crate::catalog::{self, ModelType};
use crate::providers::printable;
use crate::store::{audit, defaults, Cache, Db, Platform};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// KV keeps an entry this long; entries of retired versions simply expire.
pub const CACHE_TTL_SECONDS: u64 = 24 * 3600;

/// The request fields and the model type each one sets, in response order.
pub const FIELDS: [(&str, ModelType); 6] = [
    ("llm_id", ModelType::Chat),
    ("embd_id", ModelType::Embedding),
    ("asr_id", ModelType::Speech2text),
    ("img2txt_id", ModelType::Image2text),
    ("rerank_id", ModelType::Rerank),
    ("tts_id", ModelType::Tts),
];

/// At least one field. Each non-empty value must name a model of the field's type that the tenant
/// has configured (or an enabled Builtin model): `name@factory`, or a bare `name` when exactly one
/// such model has it. `null` or `""` clears the field; fields not sent stay as they are. One
/// invalid value rejects the whole request and changes nothing.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Serialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "SetDefaultModelsRequest", extend("minProperties" = 1)))]
#[serde(deny_unknown_fields)]
pub struct SetDefaults {
    /// The default `chat` model; null or empty clears it.
    #[serde(default, deserialize_with = "super::body::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_id: Option<Option<String>>,
    /// The default `embedding` model; null or empty clears it.
    #[serde(default, deserialize_with = "super::body::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embd_id: Option<Option<String>>,
    /// The default `speech2text` model; null or empty clears it.
    #[serde(default, deserialize_with = "super::body::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asr_id: Option<Option<String>>,
    /// The default `image2text` model; null or empty clears it.
    #[serde(default, deserialize_with = "super::body::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub img2txt_id: Option<Option<String>>,
    /// The default `rerank` model; null or empty clears it.
    #[serde(default, deserialize_with = "super::body::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_id: Option<Option<String>>,
    /// The default `tts` model; null or empty clears it.
    #[serde(default, deserialize_with = "super::body::present")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tts_id: Option<Option<String>>,
}

impl SetDefaults {
    /// The sent fields in [`FIELDS`] order: (field, type, `None` to clear or the id).
    fn sent(self) -> Vec<(&'static str, ModelType, Option<String>)> {
        let values = [
            self.llm_id,
            self.embd_id,
            self.asr_id,
            self.img2txt_id,
            self.rerank_id,
            self.tts_id,
        ];
        FIELDS
            .iter()
            .zip(values)
            .filter_map(|((f, t), v)| v.map(|v| (*f, *t, v.filter(|s| !s.is_empty()))))
            .collect()
    }
}

/// The tenant's default model per type, as `name@factory` (the factory follows the last `@`,
/// since a name may contain one, e.g. `@cf/meta/llama-3.1-8b-instruct@Builtin`); null when unset.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct DefaultModels {
    /// The default `chat` model.
    pub llm_id: Option<String>,
    /// The default `embedding` model.
    pub embd_id: Option<String>,
    /// The default `speech2text` model.
    pub asr_id: Option<String>,
    /// The default `image2text` model.
    pub img2txt_id: Option<String>,
    /// The default `rerank` model.
    pub rerank_id: Option<String>,
    /// The default `tts` model.
    pub tts_id: Option<String>,
}

impl DefaultModels {
    /// From the cached object [`App::read_defaults`] keeps, one field per [`FIELDS`] entry.
    fn from_map(m: &Map<String, Value>) -> Self {
        let get = |f: &str| m.get(f).and_then(Value::as_str).map(str::to_owned);
        DefaultModels {
            llm_id: get("llm_id"),
            embd_id: get("embd_id"),
            asr_id: get("asr_id"),
            img2txt_id: get("img2txt_id"),
            rerank_id: get("rerank_id"),
            tts_id: get("tts_id"),
        }
    }
}

/// Split an id into its name and, when it ends in `@<a catalog factory>`, that factory. Anything
/// else (a bare name, or a name such as `@cf/...` whose `@` is its own) is a bare name.
pub fn split_id(id: &str) -> (&str, Option<&str>) {
    match id.rsplit_once('@') {
        Some((n, f)) if !n.is_empty() && catalog::factory(f).is_some() => (n, Some(f)),
        _ => (id, None),
    }
}

/// Find the model an id names for a type, or say why it names none. Ids are `name@factory`; a bare
/// name is accepted when exactly one usable model of that type has it.
pub fn resolve<'a>(
    id: &str,
    want: ModelType,
    available: &'a [Available],
) -> std::result::Result<&'a Available, String> {
    let shown = printable(id);
    let (name, factory) = split_id(id);
    let builtin_has = |n: &str| {
        catalog::factory(catalog::BUILTIN)
            .and_then(|b| b.model(n))
            .is_some()
    };
    let wrong_type = |a: &Available| {
        format!(
            "{shown} is a model of type {}, not {}",
            a.model_type.as_str(),
            want.as_str()
        )
    };
    match factory {
        Some(f) => match available
            .iter()
            .find(|a| a.factory.name == f && a.name == name)
        {
            Some(a) if a.model_type == want => Ok(a),
            Some(a) => Err(wrong_type(a)),
            None if f == catalog::BUILTIN && builtin_has(name) => {
                Err(format!("{shown} is not enabled for this deployment"))
            }
            None if catalog::factory(f).and_then(|fa| fa.model(name)).is_some() => Err(format!(
                "{shown} is not configured for this tenant (connect {f} first)"
            )),
            None => Err(format!(
                "{shown} is an unknown model: {f} has no model {} and none was added",
                printable(name)
            )),
        },
        None => {
            let matches: Vec<&Available> = available
                .iter()
                .filter(|a| a.name == name && a.model_type == want)
                .collect();
            match matches.as_slice() {
                [one] => Ok(one),
                [] => match available.iter().find(|a| a.name == name) {
                    Some(a) => Err(wrong_type(a)),
                    None if builtin_has(name) => {
                        Err(format!("{shown} is not enabled for this deployment"))
                    }
                    None => Err(format!(
                        "{shown} is an unknown model or not configured for this tenant"
                    )),
                },
                many => Err(format!(
                    "{shown} is ambiguous ({}); use name@factory",
                    many.iter().map(|a| a.id()).collect::<Vec<_>>().join(", ")
                )),
            }
        }
    }
}

impl<P: Platform> App<P> {
    fn defaults_key(caller: &Caller) -> String {
        format!("defaults:{}:{}", caller.tenant_id, caller.defaults_version)
    }

    /// The six defaults: from this isolate's memory, else KV, else D1 (then cached in both). An
    /// entry under a version never changes, so every layer is exact for the version it is asked.
    pub(crate) async fn read_defaults(&self, caller: &Caller) -> Result<Map<String, Value>> {
        let key = Self::defaults_key(caller);
        if let Some(m) = memo::get(&key) {
            return Ok(m);
        }
        match self.platform.cache().get(&key).await {
            Ok(Some(text)) => {
                if let Ok(Value::Object(m)) = serde_json::from_str(&text) {
                    memo::put(key, m.clone());
                    return Ok(m);
                }
                log::warn!("defaults cache entry {key} is not an object; reading D1");
            }
            Ok(None) => {}
            Err(e) => log::warn!("defaults cache read failed, reading D1: {}", e.0),
        }
        let rows = defaults::list(self.platform.db(), &caller.tenant_id).await?;
        let mut out = Map::new();
        for (field, t) in FIELDS {
            let v = rows
                .iter()
                .find(|r| r.model_type == t)
                .map(|r| format!("{}@{}", r.llm_name, r.factory));
            out.insert(field.into(), json!(v));
        }
        let text = Value::Object(out.clone()).to_string();
        if let Err(e) = self
            .platform
            .cache()
            .put(&key, &text, CACHE_TTL_SECONDS)
            .await
        {
            log::warn!("defaults cache write failed: {}", e.0);
        }
        Ok(out)
    }

    pub(crate) async fn get_defaults(&self, caller: &Caller) -> Result<Reply> {
        Ok(Reply::ok(DefaultModels::from_map(
            &self.read_defaults(caller).await?,
        )))
    }

    pub(crate) async fn set_defaults(
        &self,
        caller: &Caller,
        req: &super::http::Request,
    ) -> Result<Reply> {
        require_manager(caller)?;
        let sent = body::parse::<SetDefaults>(req)?.sent();
        if sent.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "Send at least one of {}",
                FIELDS.map(|f| f.0).join(", ")
            )));
        }
        let available = self.available_models(&caller.tenant_id).await?;
        let mut errors = Vec::new();
        let mut batch = Vec::new();
        let now = self.platform.now_ms();
        let mut detail = Vec::new();
        for (field, t, value) in &sent {
            match value {
                None => {
                    batch.push(defaults::clear(&caller.tenant_id, *t));
                    detail.push(format!("{field}=null"));
                }
                Some(id) => match resolve(id, *t, &available) {
                    Ok(a) => {
                        batch.push(defaults::set(
                            &caller.tenant_id,
                            *t,
                            &a.factory.name,
                            &a.name,
                            a.connection.as_ref().map(|c| c.id.as_str()),
                            now,
                        ));
                        detail.push(format!("{field}={}", a.id()));
                    }
                    Err(why) => errors.push(format!("{field}: {why}")),
                },
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "Invalid default models (nothing was changed): {}",
                errors.join("; ")
            )));
        }
        batch.push(defaults::bump_version(&caller.tenant_id));
        batch.push(audit::record(
            now,
            audit::Actor::User(&caller.username),
            "defaults.set",
            &caller.tenant_id,
            Some(&caller.tenant_id),
            &detail.join(" "),
        ));
        self.platform.db().batch(batch).await.map_err(|e| match e {
            crate::store::DbError::ForeignKey(_) => ApiError::Conflict(
                "A model was removed while its default was being set; nothing was changed, try again".into(),
            ),
            other => other.into(),
        })?;
        Ok(Reply::ok(true))
    }
}

/// Defaults already read by this isolate, by versioned key. Bounded; cleared when full.
mod memo {
    use serde_json::{Map, Value};
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Most tenants' defaults kept per isolate.
    const MAX_ENTRIES: usize = 1_000;

    thread_local! {
        static MEMO: RefCell<HashMap<String, Map<String, Value>>> = RefCell::new(HashMap::new());
    }

    pub fn get(key: &str) -> Option<Map<String, Value>> {
        MEMO.with(|m| m.borrow().get(key).cloned())
    }

    pub fn put(key: String, value: Map<String, Value>) {
        MEMO.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(key, value);
        });
    }
}
