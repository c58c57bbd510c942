//! The route table: every route declared once, with its method, path template, the operation it
//! maps to, who may call it, and its OpenAPI name, tag and summary. The matcher, the 405 `Allow`
//! lists, the list the tests read and the exhaustive dispatch in `api/mod.rs` all come from here.
//!
//! A route is one line of [`routes!`]. It adds a variant to [`Operation`] carrying the segments
//! its template captures, so a declared route without a dispatch arm does not compile.

use percent_encoding::percent_decode_str;

/// The HTTP methods the service answers. A request with any other method (`HEAD`, `OPTIONS`,
/// `QUERY`, ...) is told 405 with the path's `Allow` list, like a known method the path lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// Every method, for tests that walk them.
    pub const ALL: [Method; 5] = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
    ];

    /// The raw request method, in any letter case (a runtime may hand over `get`); `None` for a
    /// method the service does not know.
    pub fn parse(raw: &str) -> Option<Method> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(raw))
    }

    /// The method as HTTP writes it (upper case).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// An `Allow` header value: the methods in declaration order, comma-separated.
    pub fn join(methods: &[Method]) -> String {
        methods
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Who may call a route, and in which shape its errors are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No credential (health, this document).
    Public,
    /// The admin token; a user key is told 403.
    Admin,
    /// A user's API key (Bearer or Basic); errors in the `{code, data, message}` envelope.
    Key,
    /// A user's API key on the OpenAI-compatible relay; errors in OpenAI's shape.
    RelayKey,
}

/// One declared route: a method on a path template.
#[derive(Debug)]
pub struct RouteDef {
    pub method: Method,
    /// The template as the OpenAPI document names it, captures in braces.
    pub path: &'static str,
    pub auth: Auth,
    // The OpenAPI names are for the document and its tests; the Worker does not carry them.
    /// The OpenAPI `operationId`.
    #[cfg(not(target_arch = "wasm32"))]
    pub operation_id: &'static str,
    /// The OpenAPI tag (one per route).
    #[cfg(not(target_arch = "wasm32"))]
    pub tag: &'static str,
    /// The OpenAPI summary.
    #[cfg(not(target_arch = "wasm32"))]
    pub summary: &'static str,
    /// The names of the template's captures, in order (a unit test holds them to the template).
    #[cfg(not(target_arch = "wasm32"))]
    pub captures: &'static [&'static str],
    /// Builds the operation from the captured segments, in order.
    build: fn(&mut std::vec::IntoIter<String>) -> Operation,
}

macro_rules! routes {
    ($(
        $op:ident { $($cap:ident),* } = $method:ident $path:literal, $auth:ident,
            $id:literal, $tag:literal, $summary:literal;
    )*) => {
        /// What a request asks for, with the path segments it names (decoded once).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Operation {
            $( $op { $($cap: String),* }, )*
        }

        /// Every route, in the order the document and the `Allow` lists give them.
        pub static ROUTES: &[RouteDef] = &[
            $( RouteDef {
                method: Method::$method,
                path: $path,
                auth: Auth::$auth,
                #[cfg(not(target_arch = "wasm32"))]
                operation_id: $id,
                #[cfg(not(target_arch = "wasm32"))]
                tag: $tag,
                #[cfg(not(target_arch = "wasm32"))]
                summary: $summary,
                #[cfg(not(target_arch = "wasm32"))]
                captures: &[$(stringify!($cap)),*],
                // The matcher hands over exactly one segment per capture (tested below).
                build: |_segments| Operation::$op {
                    $($cap: _segments.next().unwrap_or_default()),*
                },
            }, )*
        ];
    };
}

routes! {
    GetHealth {} = Get "/health", Public,
        "getHealth", "Operations", "Liveness check";
    GetOpenApi {} = Get "/openapi.json", Public,
        "getOpenApi", "Operations", "This OpenAPI document";

    ListTenants {} = Get "/api/v1/admin/tenants", Admin,
        "listTenants", "Tenants", "List tenants";
    CreateTenant {} = Post "/api/v1/admin/tenants", Admin,
        "createTenant", "Tenants", "Create a tenant";
    GetTenant { tenant_id } = Get "/api/v1/admin/tenants/{tenant_id}", Admin,
        "getTenant", "Tenants", "Get a tenant";
    DeleteTenant { tenant_id } = Delete "/api/v1/admin/tenants/{tenant_id}", Admin,
        "deleteTenant", "Tenants", "Delete a tenant";

    ListUsers {} = Get "/api/v1/admin/users", Admin,
        "listUsers", "Users", "List users";
    CreateUser {} = Post "/api/v1/admin/users", Admin,
        "createUser", "Users", "Create a user";
    GetUser { username } = Get "/api/v1/admin/users/{username}", Admin,
        "getUser", "Users", "Get a user";
    UpdateUser { username } = Patch "/api/v1/admin/users/{username}", Admin,
        "updateUser", "Users", "Change a user's role or status";
    DeleteUser { username } = Delete "/api/v1/admin/users/{username}", Admin,
        "deleteUser", "Users", "Delete a user";

    ListUserApiKeys { username } = Get "/api/v1/admin/users/{username}/api_key", Admin,
        "listUserApiKeys", "User API keys", "List a user's API keys";
    CreateUserApiKey { username } = Post "/api/v1/admin/users/{username}/api_key", Admin,
        "createUserApiKey", "User API keys", "Create an API key for a user";
    DeleteUserApiKey { username, id } = Delete "/api/v1/admin/users/{username}/api_key/{id}", Admin,
        "deleteUserApiKey", "User API keys", "Revoke a user's API key";
    ListUserApiKeysAlias { username } = Get "/api/v1/admin/users/{username}/keys", Admin,
        "listUserApiKeysAlias", "User API keys", "List a user's API keys (alias)";
    CreateUserApiKeyAlias { username } = Post "/api/v1/admin/users/{username}/keys", Admin,
        "createUserApiKeyAlias", "User API keys", "Create an API key for a user (alias)";
    DeleteUserApiKeyAlias { username, id } = Delete "/api/v1/admin/users/{username}/keys/{id}", Admin,
        "deleteUserApiKeyAlias", "User API keys", "Revoke a user's API key (alias)";

    GetSettings {} = Get "/api/v1/admin/settings", Admin,
        "getSettings", "Settings", "Get deployment settings";
    UpdateSettings {} = Put "/api/v1/admin/settings", Admin,
        "updateSettings", "Settings", "Change deployment settings";
    ListAuditEntries {} = Get "/api/v1/admin/audit", Admin,
        "listAuditEntries", "Audit", "Read the audit log";

    GetMe {} = Get "/api/v1/me", Key,
        "getMe", "Self-service", "Who am I";
    GetMyKeyLimits {} = Get "/api/v1/me/limits", Key,
        "getMyKeyLimits", "Self-service", "What keys I may create";
    ListMyApiKeys {} = Get "/api/v1/api_keys", Key,
        "listMyApiKeys", "Self-service", "List my API keys";
    CreateMyApiKey {} = Post "/api/v1/api_keys", Key,
        "createMyApiKey", "Self-service", "Create an API key for myself";
    DeleteMyApiKey { id } = Delete "/api/v1/api_keys/{id}", Key,
        "deleteMyApiKey", "Self-service", "Revoke one of my API keys";
    RotateMyApiKey { id } = Post "/api/v1/api_keys/{id}/rotate", Key,
        "rotateMyApiKey", "Self-service", "Rotate one of my API keys";

    ListFactories {} = Get "/api/v1/factories", Key,
        "listFactories", "Models", "List the provider catalog";
    ListModels {} = Get "/api/v1/models", Key,
        "listModels", "Models", "List the tenant's models";
    AddModel {} = Post "/api/v1/models", Key,
        "addModel", "Models", "Connect a provider or add a model";
    RemoveModel {} = Delete "/api/v1/models", Key,
        "removeModel", "Models", "Remove a provider connection";
    GetDefaultModels {} = Get "/api/v1/models/default", Key,
        "getDefaultModels", "Models", "Get the tenant's default models";
    SetDefaultModels {} = Post "/api/v1/models/default", Key,
        "setDefaultModels", "Models", "Set the tenant's default models";

    ListAiKeys {} = Get "/api/v1/ai_keys", Key,
        "listAiKeys", "AI API keys", "List the tenant's gateway keys";
    CreateAiKey {} = Post "/api/v1/ai_keys", Key,
        "createAiKey", "AI API keys", "Create a gateway key";
    GetAiKey { id } = Get "/api/v1/ai_keys/{id}", Key,
        "getAiKey", "AI API keys", "Get a gateway key";
    UpdateAiKey { id } = Put "/api/v1/ai_keys/{id}", Key,
        "updateAiKey", "AI API keys", "Change a gateway key";
    DeleteAiKey { id } = Delete "/api/v1/ai_keys/{id}", Key,
        "deleteAiKey", "AI API keys", "Delete a gateway key";

    RelayListModels {} = Get "/v1/models", RelayKey,
        "relayListModels", "Relay", "List the models the relay knows (OpenAI)";
    RelayChatCompletions {} = Post "/v1/chat/completions", RelayKey,
        "relayChatCompletions", "Relay", "Create a chat completion (OpenAI)";
    RelayEmbeddings {} = Post "/v1/embeddings", RelayKey,
        "relayEmbeddings", "Relay", "Create embeddings (OpenAI)";
}

/// What a path and method resolve to.
#[derive(Debug)]
pub enum Resolved {
    /// A declared route, and the operation with its captured segments.
    Found(&'static RouteDef, Operation),
    /// The path exists, not with this method: the methods it has (its `Allow` list), and one of
    /// its routes (all routes of a path share their auth kind, so the error shape is known).
    WrongMethod(Vec<Method>, &'static RouteDef),
    /// No route has this path.
    NotFound,
}

/// Split a raw (percent-encoded) path into decoded segments. Empty segments (`//`, a trailing
/// `/`) and segments that decode to a slash or to invalid UTF-8 make the path match nothing, so
/// `%2F` can never reach another route. Dot segments (`.`, `..`) match nothing either: no
/// template has one and a capture refuses them.
fn segments(raw: &str) -> Option<Vec<String>> {
    let rest = raw.strip_prefix('/')?;
    let mut segs = Vec::new();
    for s in rest.split('/') {
        let d = percent_decode_str(s).decode_utf8().ok()?;
        if d.is_empty() || d.contains('/') {
            return None;
        }
        segs.push(d.into_owned());
    }
    Some(segs)
}

/// The captured segments if `template` matches `segs`.
fn captures(template: &str, segs: &[String]) -> Option<Vec<String>> {
    let parts = template.strip_prefix('/')?.split('/');
    let mut caught = Vec::new();
    let mut n = 0;
    for (part, seg) in parts.zip(segs) {
        n += 1;
        if part.starts_with('{') {
            if seg == "." || seg == ".." {
                return None;
            }
            caught.push(seg.clone());
        } else if part != seg {
            return None;
        }
    }
    (n == segs.len() && template.split('/').count() == segs.len() + 1).then_some(caught)
}

/// Match a raw path and the request's method (`None`: a method the service does not know).
pub fn resolve(raw: &str, method: Option<Method>) -> Resolved {
    let Some(segs) = segments(raw) else {
        return Resolved::NotFound;
    };
    let mut allowed = Vec::new();
    let mut first = None;
    for def in ROUTES {
        let Some(caught) = captures(def.path, &segs) else {
            continue;
        };
        if Some(def.method) == method {
            return Resolved::Found(def, (def.build)(&mut caught.into_iter()));
        }
        allowed.push(def.method);
        first.get_or_insert(def);
    }
    match first {
        Some(def) => Resolved::WrongMethod(allowed, def),
        None => Resolved::NotFound,
    }
}

/// The declared methods of a path template, in declaration order (an `Allow` list).
pub fn methods_of(template: &str) -> Vec<Method> {
    ROUTES
        .iter()
        .filter(|d| d.path == template)
        .map(|d| d.method)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(path: &str, method: Method) -> Option<Operation> {
        match resolve(path, Some(method)) {
            Resolved::Found(_, op) => Some(op),
            _ => None,
        }
    }

    #[test]
    fn path_tricks_match_nothing() {
        for p in [
            "/api/v1/me/",
            "//api/v1/me",
            "/api//v1/me",
            "/api/v1/admin/users/a%2Fb",
            "/api/v1/admin/users/%ff",
            "/api/v1/admin/users/..",
            "/api/v1/admin/users/%2e%2e",
            "/api/v1/admin/users/./keys",
            "/api/v1/./me",
            "api/v1/me",
            "",
            "/",
        ] {
            for m in Method::ALL {
                assert!(found(p, m).is_none(), "{m:?} {p}");
            }
            assert!(matches!(resolve(p, None), Resolved::NotFound), "{p}");
        }
    }

    #[test]
    fn encoded_segments_are_decoded_once() {
        assert_eq!(
            found("/api/v1/admin/users/a%40b.c", Method::Get),
            Some(Operation::GetUser {
                username: "a@b.c".into()
            })
        );
        assert_eq!(
            found("/api/v1/admin/users/x/keys/1", Method::Delete),
            Some(Operation::DeleteUserApiKeyAlias {
                username: "x".into(),
                id: "1".into()
            })
        );
        assert_eq!(
            found("/api/v1/admin/users/a%2540b", Method::Get),
            Some(Operation::GetUser {
                username: "a%40b".into()
            })
        );
    }

    #[test]
    fn every_declared_route_resolves_to_itself_and_its_path_allows_its_methods() {
        for def in ROUTES {
            let concrete = def
                .path
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            match resolve(&concrete, Some(def.method)) {
                Resolved::Found(d, _) => assert!(std::ptr::eq(d, def), "{}", def.path),
                other => panic!("{:?} {}: {other:?}", def.method, def.path),
            }
            match resolve(&concrete, None) {
                Resolved::WrongMethod(allowed, _) => {
                    assert_eq!(allowed, methods_of(def.path), "{}", def.path)
                }
                other => panic!("{}: {other:?}", def.path),
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn every_capture_list_names_its_templates_braces_in_order() {
        for def in ROUTES {
            let braces: Vec<&str> = def
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(def.captures, braces.as_slice(), "{}", def.path);
        }
    }

    #[test]
    fn no_two_templates_can_match_the_same_path() {
        let overlap = |a: &str, b: &str| {
            let (a, b): (Vec<_>, Vec<_>) = (a.split('/').collect(), b.split('/').collect());
            a.len() == b.len()
                && a.iter()
                    .zip(&b)
                    .all(|(x, y)| x == y || x.starts_with('{') || y.starts_with('{'))
        };
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                if a.path != b.path {
                    assert!(!overlap(a.path, b.path), "{} and {}", a.path, b.path);
                }
                if a.path == b.path {
                    assert_ne!(a.method, b.method, "{} declared twice", a.path);
                    assert_eq!(a.auth, b.auth, "{}: one auth kind per path", a.path);
                }
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn operation_ids_are_unique() {
        let mut ids: Vec<&str> = ROUTES.iter().map(|d| d.operation_id).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len());
    }

    #[test]
    fn methods_parse_in_any_case_and_unknown_ones_are_none() {
        assert_eq!(Method::parse("get"), Some(Method::Get));
        assert_eq!(Method::parse("PaTcH"), Some(Method::Patch));
        for unknown in ["QUERY", "HEAD", "OPTIONS", "TRACE", "CONNECT", "", "GETX"] {
            assert_eq!(Method::parse(unknown), None, "{unknown}");
        }
        assert_eq!(Method::join(&[Method::Get, Method::Post]), "GET, POST");
    }
}
