//! The deployment's [`Config`] from its environment (Worker vars and secrets), parsed once per
//! isolate and parsed again only when one of the values it comes from changes.
//!
//! Parsing is the costly part (the keyring's base64 keys, the address policy, the host list).
//! The Worker reads the values again only for an env object it has not seen (the glue keeps what
//! one env object gave, `worker_glue::resolve`), and this cache is keyed on the values
//! themselves, not on "first request": whatever env object brings them, a rotated encryption key
//! or admin token is parsed anew, and unchanged values cost a few string comparisons. The raw
//! values are held no longer than the parsed config that already carries the same secrets.

use crate::api::{stream_idle_timeout_ms, Config};
use crate::domain::crypto::Keyring;
use crate::providers::address::{AddressPolicy, PublicHosts, POLICY_VAR};
use std::cell::{Cell, RefCell};

/// Every var and secret the config is made from, as the env handed them over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvValues {
    pub admin_token: Option<String>,
    pub auth_token_max_ttl_minutes: Option<String>,
    pub provider_timeout_ms: Option<String>,
    pub verify_cache_seconds: Option<String>,
    pub stream_idle_timeout_ms: Option<String>,
    pub builtin_models: Option<String>,
    pub private_addresses: Option<String>,
    pub public_hosts: Option<String>,
    pub encryption_key: Option<String>,
    pub encryption_key_version: Option<String>,
    pub encryption_keys_older: Option<String>,
    pub workers_ai_account_id: Option<String>,
    pub workers_ai_api_token: Option<String>,
    pub workers_ai_base_url: Option<String>,
    pub default_llm_factory: Option<String>,
    pub default_llm_base_url: Option<String>,
    pub default_llm_models: Option<String>,
    pub default_llm_api_key: Option<String>,
}

impl EnvValues {
    /// Read every value through `var` (plain vars) and `secret` (secrets).
    pub fn read(
        var: impl Fn(&str) -> Option<String>,
        secret: impl Fn(&str) -> Option<String>,
    ) -> Self {
        EnvValues {
            admin_token: secret("ADMIN_TOKEN"),
            auth_token_max_ttl_minutes: var("AUTH_TOKEN_MAX_TTL_MINUTES"),
            provider_timeout_ms: var("PROVIDER_TIMEOUT_MS"),
            verify_cache_seconds: var("VERIFY_CACHE_SECONDS"),
            stream_idle_timeout_ms: var("STREAM_IDLE_TIMEOUT_MS"),
            builtin_models: var("BUILTIN_MODELS"),
            private_addresses: var(POLICY_VAR),
            public_hosts: var("KEYWARD_PUBLIC_HOSTS"),
            encryption_key: secret("KEYWARD_ENCRYPTION_KEY"),
            encryption_key_version: var("KEYWARD_ENCRYPTION_KEY_VERSION"),
            encryption_keys_older: secret("KEYWARD_ENCRYPTION_KEYS_OLDER"),
            workers_ai_account_id: var("WORKERS_AI_ACCOUNT_ID"),
            workers_ai_api_token: secret("WORKERS_AI_API_TOKEN"),
            workers_ai_base_url: var("WORKERS_AI_BASE_URL"),
            default_llm_factory: var("DEFAULT_LLM_FACTORY"),
            default_llm_base_url: var("DEFAULT_LLM_BASE_URL"),
            default_llm_models: var("DEFAULT_LLM_MODELS"),
            default_llm_api_key: secret("DEFAULT_LLM_API_KEY"),
        }
    }
}

/// A number from a var; unset or not a number is `None` (the field keeps its default).
fn num<T: std::str::FromStr>(s: &Option<String>) -> Option<T> {
    s.as_deref().and_then(|s| s.parse().ok())
}

/// Parse the config from `v`. A malformed value is logged and falls back as documented per
/// field; it never stops the deployment from answering.
pub fn parse(v: &EnvValues) -> Config {
    let mut c = Config {
        admin_token: v.admin_token.clone().filter(|s| !s.is_empty()),
        ..Config::default()
    };
    if let Some(n) = num(&v.auth_token_max_ttl_minutes) {
        c.default_max_ttl_minutes = n;
    }
    if let Some(n) = num(&v.provider_timeout_ms) {
        c.provider_timeout_ms = n;
    }
    if let Some(n) = num(&v.verify_cache_seconds) {
        c.verify_cache_seconds = n;
    }
    c.stream_idle_timeout_ms = stream_idle_timeout_ms(v.stream_idle_timeout_ms.as_deref());
    c.builtin_models = v.builtin_models.clone().unwrap_or_default();
    c.workers_ai = crate::relay::WorkersAi {
        account_id: v.workers_ai_account_id.clone(),
        api_token: v.workers_ai_api_token.clone(),
        base_url: v.workers_ai_base_url.clone(),
    };
    // Kept as given: it is checked where a tenant is created, which refuses (500) while it is
    // invalid, so a tenant is never created without the connection it should get.
    c.default_provider = crate::api::seed::DefaultProvider {
        factory: v.default_llm_factory.clone(),
        base_url: v.default_llm_base_url.clone(),
        models: v.default_llm_models.clone(),
        api_key: v.default_llm_api_key.clone(),
    };
    if c.default_provider.is_set() {
        if let Err(why) = c.default_provider.check() {
            log::error!("the deployment is misconfigured: {why}; creating a tenant is refused until it is corrected");
        }
    }
    // A malformed list fails closed: no private class allowed, no extra public host (the request's
    // own host is still refused).
    match AddressPolicy::parse(v.private_addresses.as_deref().unwrap_or_default()) {
        Ok(p) => c.address_policy = p,
        Err(e) => log::error!("{e}; no private address class is allowed"),
    }
    match PublicHosts::parse(v.public_hosts.as_deref().unwrap_or_default()) {
        Ok(h) => c.public_hosts = h,
        Err(e) => log::error!("{e}; the list is ignored"),
    }
    if let Some(key) = &v.encryption_key {
        let version = num(&v.encryption_key_version).unwrap_or(1);
        let older = v.encryption_keys_older.as_deref().unwrap_or_default();
        match Keyring::from_config(key, version, older) {
            Ok(k) => c.keyring = Some(k),
            Err(e) => log::error!("provider credential encryption is off: {e}"),
        }
    }
    c
}

/// The last config parsed and the values it came from. One per isolate (a `thread_local`: an
/// isolate runs one thread, and requests in it share this).
#[derive(Default)]
pub struct ConfigCache {
    last: RefCell<Option<(EnvValues, Config)>>,
    parses: Cell<u64>,
}

impl ConfigCache {
    /// The config for `values`: the one parsed before if the values are the same, else parsed now.
    pub fn get(&self, values: EnvValues) -> Config {
        let mut last = self.last.borrow_mut();
        if let Some((seen, config)) = last.as_ref() {
            if *seen == values {
                return config.clone();
            }
        }
        let config = parse(&values);
        self.parses.set(self.parses.get() + 1);
        *last = Some((values, config.clone()));
        config
    }

    /// How many times this cache parsed a config (for tests and figures).
    pub fn parses(&self) -> u64 {
        self.parses.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn values() -> EnvValues {
        EnvValues {
            admin_token: Some("admin-1".into()),
            encryption_key: Some(KEY.into()),
            provider_timeout_ms: Some("2500".into()),
            ..EnvValues::default()
        }
    }

    #[test]
    fn the_config_is_parsed_once_while_the_env_stays_the_same() {
        let cache = ConfigCache::default();
        for _ in 0..5 {
            let c = cache.get(values());
            assert_eq!(c.admin_token.as_deref(), Some("admin-1"));
            assert_eq!(c.provider_timeout_ms, 2500);
            assert!(c.keyring.is_some());
        }
        assert_eq!(cache.parses(), 1);
    }

    #[test]
    fn a_changed_secret_is_parsed_again_on_the_next_request() {
        let cache = ConfigCache::default();
        cache.get(values());
        let mut rotated = values();
        rotated.admin_token = Some("admin-2".into());
        assert_eq!(
            cache.get(rotated.clone()).admin_token.as_deref(),
            Some("admin-2")
        );
        assert_eq!(cache.parses(), 2);
        // A removed encryption key turns encryption off at once, not at the next cold start.
        rotated.encryption_key = None;
        assert!(cache.get(rotated).keyring.is_none());
        assert_eq!(cache.parses(), 3);
    }

    #[test]
    fn the_default_provider_comes_from_its_vars_and_its_key_from_a_secret_only() {
        let vars = |n: &str| match n {
            "DEFAULT_LLM_FACTORY" => Some("OpenAI".to_owned()),
            "DEFAULT_LLM_BASE_URL" => Some("https://llm.example.com/v1".to_owned()),
            "DEFAULT_LLM_MODELS" => Some("llm_id=gpt-4o-mini".to_owned()),
            // A key left among the plain vars (visible in wrangler.toml) is not taken.
            "DEFAULT_LLM_API_KEY" => Some("sk-in-a-plain-var-0123456789".to_owned()),
            _ => None,
        };
        let secrets =
            |n: &str| (n == "DEFAULT_LLM_API_KEY").then(|| "sk-secret-0123456789".to_owned());
        let c = parse(&EnvValues::read(vars, secrets));
        let dp = &c.default_provider;
        assert_eq!(dp.factory.as_deref(), Some("OpenAI"));
        assert_eq!(dp.base_url.as_deref(), Some("https://llm.example.com/v1"));
        assert_eq!(dp.models.as_deref(), Some("llm_id=gpt-4o-mini"));
        assert_eq!(dp.api_key.as_deref(), Some("sk-secret-0123456789"));
        let plan = dp.check().expect("a usable configuration");
        assert_eq!(plan.spec.factory.name, "OpenAI");
        assert_eq!(plan.defaults[0].as_deref(), Some("gpt-4o-mini"));
        // The config's Debug (a log line away) never shows the key.
        assert!(!format!("{c:?}").contains("sk-secret"));
        assert!(!parse(&EnvValues::default()).default_provider.is_set());
    }

    #[test]
    fn values_parse_as_the_worker_read_them_before() {
        let c = parse(&EnvValues {
            admin_token: Some(String::new()),
            auth_token_max_ttl_minutes: Some("90".into()),
            verify_cache_seconds: Some("not a number".into()),
            encryption_key: Some(KEY.into()),
            encryption_key_version: Some("3".into()),
            ..EnvValues::default()
        });
        assert_eq!(
            c.admin_token, None,
            "an empty admin token disables the admin API"
        );
        assert_eq!(c.default_max_ttl_minutes, 90);
        assert_eq!(
            c.verify_cache_seconds,
            Config::default().verify_cache_seconds
        );
        assert!(c.keyring.is_some());
    }
}
