//! The route table: every path the service answers, its methods, and the segments it captures.
//! It drives routing, 405 answers and the OpenAPI completeness test.

use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Health,
    OpenApi,
    Tenants,
    Tenant(String),
    Users,
    User(String),
    UserKeys(String),
    UserKey(String, String),
    Settings,
    Audit,
    Me,
    MyLimits,
    MyKeys,
    MyKey(String),
    MyKeyRotate(String),
    Factories,
    Models,
    Defaults,
    AiKeys,
    AiKey(String),
    RelayModels,
    RelayChat,
    RelayEmbeddings,
}

impl Route {
    /// The OpenAI-compatible relay under `/v1`.
    pub fn is_relay(&self) -> bool {
        matches!(
            self,
            Route::RelayModels | Route::RelayChat | Route::RelayEmbeddings
        )
    }

    /// Gateway keys.
    pub fn is_ai_keys(&self) -> bool {
        matches!(self, Route::AiKeys | Route::AiKey(_))
    }

    /// Provider connections and the catalog.
    pub fn is_models(&self) -> bool {
        matches!(self, Route::Factories | Route::Models | Route::Defaults)
    }

    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Route::Tenants
                | Route::Tenant(_)
                | Route::Users
                | Route::User(_)
                | Route::UserKeys(_)
                | Route::UserKey(..)
                | Route::Settings
                | Route::Audit
        )
    }
}

/// Every route template with its methods, as the OpenAPI document names them.
pub const TABLE: &[(&str, &[&str])] = &[
    ("/health", GET),
    ("/openapi.json", GET),
    ("/api/v1/admin/tenants", GET_POST),
    ("/api/v1/admin/tenants/{tenant_id}", GET_DELETE),
    ("/api/v1/admin/users", GET_POST),
    ("/api/v1/admin/users/{username}", GET_PATCH_DELETE),
    ("/api/v1/admin/users/{username}/api_key", GET_POST),
    ("/api/v1/admin/users/{username}/api_key/{id}", DELETE),
    ("/api/v1/admin/users/{username}/keys", GET_POST),
    ("/api/v1/admin/users/{username}/keys/{id}", DELETE),
    ("/api/v1/admin/settings", GET_PUT),
    ("/api/v1/admin/audit", GET),
    ("/api/v1/me", GET),
    ("/api/v1/me/limits", GET),
    ("/api/v1/api_keys", GET_POST),
    ("/api/v1/api_keys/{id}", DELETE),
    ("/api/v1/api_keys/{id}/rotate", POST),
    ("/api/v1/factories", GET),
    ("/api/v1/models", GET_POST_DELETE),
    ("/api/v1/models/default", GET_POST),
    ("/api/v1/ai_keys", GET_POST),
    ("/api/v1/ai_keys/{id}", GET_PUT_DELETE),
    ("/v1/models", GET),
    ("/v1/chat/completions", POST),
    ("/v1/embeddings", POST),
];

const GET: &[&str] = &["GET"];
const POST: &[&str] = &["POST"];
const DELETE: &[&str] = &["DELETE"];
const GET_POST: &[&str] = &["GET", "POST"];
const GET_PUT: &[&str] = &["GET", "PUT"];
const GET_DELETE: &[&str] = &["GET", "DELETE"];
const GET_POST_DELETE: &[&str] = &["GET", "POST", "DELETE"];
const GET_PUT_DELETE: &[&str] = &["GET", "PUT", "DELETE"];
const GET_PATCH_DELETE: &[&str] = &["GET", "PATCH", "DELETE"];

/// Match a raw (percent-encoded) path. Empty segments (`//`, a trailing `/`) and segments that
/// decode to a slash or to invalid UTF-8 match nothing, so `%2F` can never reach another route.
pub fn resolve(raw: &str) -> Option<(Route, &'static [&'static str])> {
    let rest = raw.strip_prefix('/')?;
    let mut segs = Vec::new();
    for s in rest.split('/') {
        let d = percent_decode_str(s).decode_utf8().ok()?;
        if d.is_empty() || d.contains('/') {
            return None;
        }
        segs.push(d.into_owned());
    }
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let own = |x: &str| x.to_owned();
    let found = match s.as_slice() {
        ["health"] => (Route::Health, GET),
        ["openapi.json"] => (Route::OpenApi, GET),
        ["v1", "models"] => (Route::RelayModels, GET),
        ["v1", "chat", "completions"] => (Route::RelayChat, POST),
        ["v1", "embeddings"] => (Route::RelayEmbeddings, POST),
        ["api", "v1", rest @ ..] => match rest {
            ["admin", "tenants"] => (Route::Tenants, GET_POST),
            ["admin", "tenants", id] => (Route::Tenant(own(id)), GET_DELETE),
            ["admin", "users"] => (Route::Users, GET_POST),
            ["admin", "users", u] => (Route::User(own(u)), GET_PATCH_DELETE),
            ["admin", "users", u, "api_key" | "keys"] => (Route::UserKeys(own(u)), GET_POST),
            ["admin", "users", u, "api_key" | "keys", id] => {
                (Route::UserKey(own(u), own(id)), DELETE)
            }
            ["admin", "settings"] => (Route::Settings, GET_PUT),
            ["admin", "audit"] => (Route::Audit, GET),
            ["me"] => (Route::Me, GET),
            ["me", "limits"] => (Route::MyLimits, GET),
            ["api_keys"] => (Route::MyKeys, GET_POST),
            ["api_keys", id] => (Route::MyKey(own(id)), DELETE),
            ["api_keys", id, "rotate"] => (Route::MyKeyRotate(own(id)), POST),
            ["factories"] => (Route::Factories, GET),
            ["models"] => (Route::Models, GET_POST_DELETE),
            ["models", "default"] => (Route::Defaults, GET_POST),
            ["ai_keys"] => (Route::AiKeys, GET_POST),
            ["ai_keys", id] => (Route::AiKey(own(id)), GET_PUT_DELETE),
            _ => return None,
        },
        _ => return None,
    };
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tricks_match_nothing() {
        for p in [
            "/api/v1/me/",
            "//api/v1/me",
            "/api//v1/me",
            "/api/v1/admin/users/a%2Fb",
            "/api/v1/admin/users/%ff",
            "api/v1/me",
            "",
            "/",
        ] {
            assert_eq!(resolve(p), None, "{p}");
        }
    }

    #[test]
    fn encoded_segments_are_decoded_once() {
        assert_eq!(
            resolve("/api/v1/admin/users/a%40b.c").map(|r| r.0),
            Some(Route::User("a@b.c".into()))
        );
        assert_eq!(
            resolve("/api/v1/admin/users/x/keys/1").map(|r| r.0),
            Some(Route::UserKey("x".into(), "1".into()))
        );
    }

    #[test]
    fn every_template_in_the_table_resolves_with_its_methods() {
        for (template, methods) in TABLE {
            let concrete = template
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let (_, allowed) = resolve(&concrete).unwrap_or_else(|| panic!("{template}"));
            assert_eq!(&allowed, methods, "{template}");
        }
    }
}
