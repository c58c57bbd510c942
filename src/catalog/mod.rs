//! The provider catalog: which factories (providers) a tenant can configure, how each authenticates and is
//! reached, and which models each offers, read from `factories.json`, which is compiled into the Worker.
//!
//! The data file is parsed once, on first use, into the typed view below. The unit tests prove that the
//! embedded file parses and is consistent, so the `expect` in [`factories`] cannot fire in a build whose
//! tests pass.
//!
//! Conventions of the data file:
//! - `default_base_url` is the API root an adapter appends its paths to (`/chat/completions` for the
//!   `openai` style, `/v1beta/models/...` for `gemini`, `/v1/messages` for `anthropic`, `/v2/...` for
//!   `cohere`). It is `null` when the tenant must give one: Azure-OpenAI (the resource endpoint),
//!   OpenAI-API-Compatible, and the self-deployed Ollama / LocalAI / Xinference. VertexAI is `null` too, but
//!   for another reason: its root is `https://{location}-aiplatform.googleapis.com`, built from the
//!   connection's `location`. Builtin is `null` because it is served through the deployment's own Workers AI
//!   account (`WORKERS_AI_*` settings, see `relay::WorkersAi`), not a tenant's URL.
//! - `max_tokens` is the context window in tokens, except, as in RAGFlow's catalog, for `speech2text`
//!   (the largest audio upload in bytes, 25 MiB after OpenAI's limit) and `tts` (the input length).
//! - A model name is unique within its factory, so a model serving two types (a vision-capable chat model)
//!   is listed once, under the type it is offered for.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The embedded catalog, compiled into the Worker.
const SOURCE: &str = include_str!("factories.json");

crate::closed_set! {
    /// What a model does: `chat` (default field `llm_id`), `embedding` (`embd_id`), `rerank`
    /// (`rerank_id`), `speech2text` (speech recognition, `asr_id`), `image2text` (`img2txt_id`),
    /// `tts` (text to speech, `tts_id`).
    pub enum ModelType {
        /// Chat completion (RAGFlow `llm_id`).
        Chat = "chat",
        /// Text embedding (`embd_id`).
        Embedding = "embedding",
        /// Re-ranking of passages against a query (`rerank_id`).
        Rerank = "rerank",
        /// Speech recognition, audio to text (`asr_id`).
        Speech2text = "speech2text",
        /// Image description, image to text (`img2txt_id`).
        Image2text = "image2text",
        /// Speech synthesis, text to speech (`tts_id`).
        Tts = "tts",
    }
}

/// The order of RAGFlow's tags in a factory's `tags` string.
const TAG_ORDER: [ModelType; 6] = [
    ModelType::Chat,
    ModelType::Embedding,
    ModelType::Rerank,
    ModelType::Tts,
    ModelType::Speech2text,
    ModelType::Image2text,
];

impl ModelType {
    /// RAGFlow tag: "LLM", "TEXT EMBEDDING", "TEXT RE-RANK", "TTS", "SPEECH2TEXT", "IMAGE2TEXT".
    pub fn tag(self) -> &'static str {
        match self {
            ModelType::Chat => "LLM",
            ModelType::Embedding => "TEXT EMBEDDING",
            ModelType::Rerank => "TEXT RE-RANK",
            ModelType::Speech2text => "SPEECH2TEXT",
            ModelType::Image2text => "IMAGE2TEXT",
            ModelType::Tts => "TTS",
        }
    }
}

crate::closed_set! {
    /// How the factory's credential is presented: `bearer` (`Authorization: Bearer <api_key>`),
    /// `azure` (`api-key` header), `google_api_key` (`x-goog-api-key` header), `anthropic`
    /// (`x-api-key` plus `anthropic-version`), `service_account` (a Google service-account JSON
    /// exchanged for an OAuth token), `none` (no credential: self-hosted servers and Builtin),
    /// `optional_bearer` (Bearer when the tenant gives a key, nothing otherwise).
    #[schema = "FactoryAuth"]
    pub enum Auth {
        Bearer = "bearer",
        Azure = "azure",
        GoogleApiKey = "google_api_key",
        Anthropic = "anthropic",
        ServiceAccount = "service_account",
        None = "none",
        OptionalBearer = "optional_bearer",
    }
}

/// The wire protocol a factory's API speaks, which picks the adapter that calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiStyle {
    /// OpenAI's REST API (`/chat/completions`, `/embeddings`, ...), also spoken by many others.
    Openai,
    /// Azure OpenAI: OpenAI's bodies under `/openai/deployments/{deployment}/...?api-version=`.
    Azure,
    /// Google's Generative Language API (`/v1beta/models/{model}:generateContent`).
    Gemini,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google Cloud Vertex AI.
    Vertex,
    /// Cohere's API (chat, embed, rerank).
    Cohere,
    /// Ollama's native API (`/api/chat`, `/api/embed`).
    Ollama,
    /// Cloudflare Workers AI (the Builtin models): OpenAI's bodies under `.../ai/v1/` for chat and
    /// embeddings, its own `.../ai/run/{model}` for rerank, speech and image models.
    WorkersAi,
}

crate::closed_set! {
    /// How a tenant's connections to the factory are organized: `organization` (one key per
    /// tenant gives every catalog model; adding again replaces it), `per_model` (each model is
    /// added on its own, named by `llm_name` or, for Azure-OpenAI, `deployment`), `builtin`
    /// (enabled by the operator for the whole deployment; tenants cannot add or remove it).
    #[schema = "FactoryConnection"]
    pub enum Connection {
        Organization = "organization",
        PerModel = "per_model",
        Builtin = "builtin",
    }
}

/// One model a factory offers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Model {
    /// The provider's model name, unique within its factory.
    pub name: String,
    /// What the model is offered for.
    #[serde(rename = "type")]
    pub model_type: ModelType,
    /// The context window in tokens (see the module doc for speech2text and tts).
    pub max_tokens: u32,
}

/// One provider, as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Factory {
    /// The factory's name, as RAGFlow spells it (`OpenAI`, `Azure-OpenAI`, ...).
    pub name: String,
    /// RAGFlow's tags string, equal to [`tags_for`] of `model_types`.
    pub tags: String,
    /// The model types the factory offers, or for a per-model factory with no catalog models, can host.
    pub model_types: Vec<ModelType>,
    /// How the credential is presented.
    pub auth: Auth,
    /// Which protocol the API speaks.
    pub api_style: ApiStyle,
    /// The API root; `None` when the tenant must give one (see the module doc for VertexAI and Builtin).
    pub default_base_url: Option<String>,
    /// How connections are organized.
    pub connection: Connection,
    /// Whether the tenant runs the server itself (no key; not verified with a live call on add).
    pub self_deployed: bool,
    /// The catalog models; empty for per-model factories whose models the tenant names.
    pub models: Vec<Model>,
}

impl Factory {
    /// The catalog model with this exact name, if any.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Whether this is the deployment's builtin factory.
    pub fn is_builtin(&self) -> bool {
        self.connection == Connection::Builtin
    }
}

/// The name of the factory holding the operator-enabled models of the deployment.
pub const BUILTIN: &str = "Builtin";

/// Parses a catalog, naming the path of the first bad field.
fn parse(source: &str) -> Result<Vec<Factory>, String> {
    let de = &mut serde_json::Deserializer::from_str(source);
    serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

/// All factories, in file order.
pub fn factories() -> &'static [Factory] {
    static CATALOG: OnceLock<Vec<Factory>> = OnceLock::new();
    CATALOG.get_or_init(|| {
        // Cannot fail at request time: `the_embedded_catalog_parses` runs this on the same bytes.
        parse(SOURCE).expect("src/catalog/factories.json is a valid catalog")
    })
}

/// Exact-name lookup (case-sensitive, as RAGFlow's names are).
pub fn factory(name: &str) -> Option<&'static Factory> {
    factories().iter().find(|f| f.name == name)
}

/// Builtin models enabled for this deployment, from a comma-separated config string (the
/// `BUILTIN_MODELS` var): names not in the Builtin catalog are ignored; returns them in catalog order.
///
/// Surrounding whitespace and empty items are ignored; a name listed twice is returned once.
pub fn enabled_builtin(config: &str) -> Vec<&'static Model> {
    let wanted: Vec<&str> = config
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    factory(BUILTIN)
        .map(|f| {
            f.models
                .iter()
                .filter(|m| wanted.contains(&m.name.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

/// The tags string computed from a set of model types, in the fixed order
/// `LLM,TEXT EMBEDDING,TEXT RE-RANK,TTS,SPEECH2TEXT,IMAGE2TEXT` (used to check each factory's tags agree
/// with its model_types). Duplicates and input order do not matter.
pub fn tags_for(types: &[ModelType]) -> String {
    TAG_ORDER
        .iter()
        .filter(|t| types.contains(t))
        .map(|t| t.tag())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The factories the product promises (API.md "Models").
    const REQUIRED: [&str; 14] = [
        "OpenAI",
        "Azure-OpenAI",
        "Gemini",
        "VertexAI",
        "Anthropic",
        "Mistral",
        "DeepSeek",
        "Cohere",
        "Jina",
        "OpenAI-API-Compatible",
        "Ollama",
        "LocalAI",
        "Xinference",
        BUILTIN,
    ];

    fn type_set(types: &[ModelType]) -> HashSet<ModelType> {
        types.iter().copied().collect()
    }

    #[test]
    fn the_embedded_catalog_parses() {
        let parsed = parse(SOURCE).unwrap_or_else(|e| panic!("factories.json: {e}"));
        assert!(!parsed.is_empty());
        assert_eq!(factories(), parsed.as_slice());
    }

    #[test]
    fn every_promised_factory_exists() {
        for name in REQUIRED {
            assert!(
                factory(name).is_some(),
                "{name} is missing from the catalog"
            );
        }
    }

    #[test]
    fn factory_lookup_is_exact_and_case_sensitive() {
        assert_eq!(factory("OpenAI").map(|f| f.name.as_str()), Some("OpenAI"));
        assert!(factory("openai").is_none());
        assert!(factory(" OpenAI").is_none());
        assert!(factory("").is_none());
    }

    #[test]
    fn factory_names_are_unique() {
        let mut seen = HashSet::new();
        for f in factories() {
            assert!(seen.insert(f.name.as_str()), "{} appears twice", f.name);
        }
    }

    #[test]
    fn model_names_are_unique_within_a_factory() {
        for f in factories() {
            let mut seen = HashSet::new();
            for m in &f.models {
                assert!(
                    seen.insert(m.name.as_str()),
                    "{} lists {} twice",
                    f.name,
                    m.name
                );
            }
        }
    }

    #[test]
    fn every_model_has_a_name_and_a_positive_size() {
        for f in factories() {
            for m in &f.models {
                assert!(
                    !m.name.trim().is_empty(),
                    "{} has a blank model name",
                    f.name
                );
                assert_eq!(m.name.trim(), m.name, "{}: {:?} has spaces", f.name, m.name);
                assert!(m.max_tokens > 0, "{}/{} has max_tokens 0", f.name, m.name);
            }
        }
    }

    #[test]
    fn models_in_the_file_have_exactly_name_type_and_max_tokens() {
        // `Model` tolerates unknown fields (it may be read from elsewhere); the data file may not.
        let raw: serde_json::Value = serde_json::from_str(SOURCE).expect("valid JSON");
        for f in raw.as_array().expect("an array") {
            for m in f["models"].as_array().expect("models is an array") {
                let mut keys: Vec<&str> = m
                    .as_object()
                    .expect("a model is an object")
                    .keys()
                    .map(String::as_str)
                    .collect();
                keys.sort_unstable();
                assert_eq!(keys, ["max_tokens", "name", "type"], "in {}", f["name"]);
            }
        }
    }

    #[test]
    fn each_factorys_tags_agree_with_its_model_types() {
        for f in factories() {
            assert_eq!(f.tags, tags_for(&f.model_types), "{}", f.name);
            assert!(!f.model_types.is_empty(), "{} offers no model type", f.name);
            assert_eq!(
                type_set(&f.model_types).len(),
                f.model_types.len(),
                "{} repeats a model type",
                f.name
            );
        }
    }

    #[test]
    fn each_factorys_model_types_are_exactly_those_of_its_models() {
        for f in factories() {
            if f.models.is_empty() {
                // Only a per-model factory may list no models; its types are what it can host.
                assert_eq!(
                    f.connection,
                    Connection::PerModel,
                    "{} lists no models",
                    f.name
                );
                continue;
            }
            let offered: Vec<ModelType> = f.models.iter().map(|m| m.model_type).collect();
            assert_eq!(
                type_set(&offered),
                type_set(&f.model_types),
                "{}: model_types differ from its models' types",
                f.name
            );
        }
    }

    #[test]
    fn per_model_factories_need_a_base_url_from_the_tenant() {
        for f in factories() {
            if f.connection == Connection::PerModel {
                assert_eq!(f.default_base_url, None, "{}", f.name);
            }
            // A missing base URL is either the tenant's to give (per model), derived from the
            // connection's location (Vertex), or not a URL at all (the Workers AI binding).
            if f.default_base_url.is_none() {
                assert!(
                    f.connection == Connection::PerModel
                        || f.api_style == ApiStyle::Vertex
                        || f.is_builtin(),
                    "{} has no base URL and no way to get one",
                    f.name
                );
            }
        }
        for name in [
            "Azure-OpenAI",
            "OpenAI-API-Compatible",
            "Ollama",
            "LocalAI",
            "Xinference",
        ] {
            let f = factory(name).expect("exists");
            assert_eq!(f.connection, Connection::PerModel, "{name}");
            assert!(f.models.is_empty(), "{name}");
        }
    }

    #[test]
    fn default_base_urls_are_https_roots_without_a_trailing_slash() {
        for f in factories() {
            if let Some(url) = &f.default_base_url {
                assert!(url.starts_with("https://"), "{}: {url}", f.name);
                assert!(!url.ends_with('/'), "{}: {url}", f.name);
            }
        }
    }

    #[test]
    fn self_deployed_factories_take_no_key_and_the_rest_take_one() {
        for f in factories() {
            if f.self_deployed {
                assert_eq!(f.auth, Auth::None, "{}", f.name);
                assert_eq!(f.connection, Connection::PerModel, "{}", f.name);
            } else if !f.is_builtin() {
                assert_ne!(f.auth, Auth::None, "{}", f.name);
            }
        }
        for name in ["Ollama", "LocalAI", "Xinference"] {
            assert!(factory(name).expect("exists").self_deployed, "{name}");
        }
    }

    #[test]
    fn provider_specific_auth_goes_with_its_api_style() {
        for f in factories() {
            let pair_ok = match f.auth {
                Auth::Azure => f.api_style == ApiStyle::Azure,
                Auth::GoogleApiKey => f.api_style == ApiStyle::Gemini,
                Auth::Anthropic => f.api_style == ApiStyle::Anthropic,
                Auth::ServiceAccount => f.api_style == ApiStyle::Vertex,
                Auth::Bearer | Auth::None | Auth::OptionalBearer => matches!(
                    f.api_style,
                    ApiStyle::Openai | ApiStyle::Cohere | ApiStyle::Ollama | ApiStyle::WorkersAi
                ),
            };
            assert!(pair_ok, "{}: {:?} with {:?}", f.name, f.auth, f.api_style);
        }
    }

    #[test]
    fn only_the_builtin_factory_is_builtin() {
        for f in factories() {
            assert_eq!(f.is_builtin(), f.name == BUILTIN, "{}", f.name);
        }
        let builtin = factory(BUILTIN).expect("exists");
        assert_eq!(builtin.auth, Auth::None);
        assert!(!builtin.self_deployed);
    }

    #[test]
    fn builtin_covers_all_six_model_types() {
        let builtin = factory(BUILTIN).expect("exists");
        let offered: Vec<ModelType> = builtin.models.iter().map(|m| m.model_type).collect();
        assert_eq!(type_set(&offered), type_set(&ModelType::ALL));
    }

    #[test]
    fn factory_model_finds_by_exact_name() {
        let openai = factory("OpenAI").expect("exists");
        let whisper = openai.model("whisper-1").expect("listed");
        assert_eq!(whisper.model_type, ModelType::Speech2text);
        assert!(openai.model("WHISPER-1").is_none());
        assert!(openai.model("gemini-2.5-pro").is_none());
    }

    #[test]
    fn enabled_builtin_ignores_unknown_names_and_whitespace() {
        let got: Vec<&str> = enabled_builtin(
            " @cf/baai/bge-m3 ,nope, ,@cf/meta/llama-3.1-8b-instruct,,gpt-4o,@CF/BAAI/BGE-M3",
        )
        .iter()
        .map(|m| m.name.as_str())
        .collect();
        // Catalog order, not config order.
        assert_eq!(got, ["@cf/meta/llama-3.1-8b-instruct", "@cf/baai/bge-m3"]);
    }

    #[test]
    fn enabled_builtin_of_an_empty_config_is_empty() {
        assert!(enabled_builtin("").is_empty());
        assert!(enabled_builtin(" , ,").is_empty());
    }

    #[test]
    fn enabled_builtin_lists_a_repeated_name_once() {
        let got = enabled_builtin("@cf/openai/whisper,@cf/openai/whisper");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].model_type, ModelType::Speech2text);
    }

    #[test]
    fn enabled_builtin_with_every_name_is_the_whole_builtin_catalog() {
        let builtin = factory(BUILTIN).expect("exists");
        let all: Vec<&str> = builtin.models.iter().map(|m| m.name.as_str()).collect();
        let got = enabled_builtin(&all.join(","));
        assert_eq!(got, builtin.models.iter().collect::<Vec<_>>());
    }

    #[test]
    fn tags_for_uses_ragflows_fixed_order_whatever_the_input_order() {
        assert_eq!(
            tags_for(&ModelType::ALL),
            "LLM,TEXT EMBEDDING,TEXT RE-RANK,TTS,SPEECH2TEXT,IMAGE2TEXT"
        );
        assert_eq!(
            tags_for(&[ModelType::Image2text, ModelType::Chat, ModelType::Chat]),
            "LLM,IMAGE2TEXT"
        );
        assert_eq!(
            tags_for(&[ModelType::Speech2text, ModelType::Tts]),
            "TTS,SPEECH2TEXT"
        );
        assert_eq!(tags_for(&[]), "");
    }

    #[test]
    fn model_type_round_trips_via_as_str_parse_and_serde() {
        for t in ModelType::ALL {
            assert_eq!(ModelType::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).expect("serializes");
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            let back: ModelType = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, t);
        }
        assert_eq!(ModelType::ALL.len(), type_set(&ModelType::ALL).len());
    }

    #[test]
    fn model_type_parse_rejects_other_spellings() {
        for bad in ["", "Chat", "CHAT", "llm", "asr", "speech_2_text", " tts"] {
            assert_eq!(ModelType::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn wire_names_of_the_enums_are_pinned() {
        let names = |v: serde_json::Value| v.to_string();
        assert_eq!(
            names(serde_json::json!(Auth::GoogleApiKey)),
            "\"google_api_key\""
        );
        assert_eq!(
            names(serde_json::json!(Auth::OptionalBearer)),
            "\"optional_bearer\""
        );
        assert_eq!(
            names(serde_json::json!(Auth::ServiceAccount)),
            "\"service_account\""
        );
        assert_eq!(names(serde_json::json!(ApiStyle::Openai)), "\"openai\"");
        assert_eq!(
            names(serde_json::json!(Connection::PerModel)),
            "\"per_model\""
        );
        let m = Model {
            name: "x".into(),
            model_type: ModelType::Image2text,
            max_tokens: 1,
        };
        assert_eq!(
            serde_json::to_value(&m).expect("serializes"),
            serde_json::json!({"name": "x", "type": "image2text", "max_tokens": 1})
        );
    }

    #[test]
    fn an_unknown_factory_field_is_rejected() {
        let bad = r#"[{"name":"X","tags":"LLM","model_types":["chat"],"auth":"bearer",
            "api_style":"openai","default_base_url":null,"connection":"per_model",
            "self_deployed":false,"models":[],"extra":1}]"#;
        let err = parse(bad).expect_err("deny_unknown_fields");
        assert!(err.contains("extra"), "{err}");
    }
}
