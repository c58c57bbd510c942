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
    /// The OpenAPI description: the route's doc comment, one line per entry.
    #[cfg(not(target_arch = "wasm32"))]
    pub description: &'static [&'static str],
    /// The rest of the operation's document: its body and answer types, parameters, errors.
    #[cfg(not(target_arch = "wasm32"))]
    pub doc: fn() -> super::doc::OpDoc,
    /// Builds the operation from the captured segments, in order.
    build: fn(&mut std::vec::IntoIter<String>) -> Operation,
}

macro_rules! routes {
    ($(
        $(#[doc = $desc:literal])*
        $op:ident { $($cap:ident),* } = $method:ident $path:literal, $auth:ident,
            $id:literal, $tag:literal, $summary:literal,
            $doc:expr;
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
                #[cfg(not(target_arch = "wasm32"))]
                description: &[$($desc),*],
                #[cfg(not(target_arch = "wasm32"))]
                doc: || {
                    #[allow(unused_imports)]
                    use super::{admin, ai_keys, defaults, keys, me, models, relay, seed, usage, webhooks};
                    #[allow(unused_imports)]
                    use super::doc::{Fail::*, *};
                    $doc
                },
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
        "getHealth", "Operations", "Liveness check",
        plain::<super::Health>("The service is up.");
    GetOpenApi {} = Get "/openapi.json", Public,
        "getOpenApi", "Operations", "This OpenAPI document",
        any_object("The OpenAPI 3.1 document of every route.");

    ListTenants {} = Get "/api/v1/admin/tenants", Admin,
        "listTenants", "Tenants", "List tenants",
        list::<admin::TenantView>("One page of tenants, oldest first.")
            .paged();
    /// Send an `Idempotency-Key` to make a retry safe: a second attempt then returns what the first did
    /// instead of making another tenant.
    CreateTenant {} = Post "/api/v1/admin/tenants", Admin,
        "createTenant", "Tenants", "Create a tenant",
        answer::<admin::TenantView>("The new tenant.")
            .body::<admin::CreateTenant>("The tenant's name.")
            .idempotent()
            .fails(&[NotFound]);
    GetTenant { tenant_id } = Get "/api/v1/admin/tenants/{tenant_id}", Admin,
        "getTenant", "Tenants", "Get a tenant",
        answer::<admin::TenantView>("The tenant.");
    /// Sets the tenant's limits over time (requests and tokens per minute, a token budget per
    /// period), which hold over all of its relay calls together, on top of each gateway key's own.
    /// Fields not sent keep their value. A change mid-period keeps the spend of the current period.
    UpdateTenantLimits { tenant_id } = Put "/api/v1/admin/tenants/{tenant_id}/limits", Admin,
        "updateTenantLimits", "Tenants", "Set a tenant's limits over time",
        answer::<admin::TenantView>("The tenant with its limits as now stored.")
            .body::<admin::PutTenantLimits>("The limits to change.");
    /// Removes the tenant with its users and their API keys.
    DeleteTenant { tenant_id } = Delete "/api/v1/admin/tenants/{tenant_id}", Admin,
        "deleteTenant", "Tenants", "Delete a tenant",
        done("`true`: the tenant is gone.");
    /// Gives one existing tenant the deployment's default provider (`DEFAULT_LLM_*`), which
    /// otherwise only tenants created after it was configured get: its connection, sealed as one
    /// the tenant adds, and its default models for the types the tenant has no default for, with
    /// their audit entries. A 409 when the tenant has a connection to that factory already, or the
    /// deployment has no default provider; a 500 saying the deployment is misconfigured when the
    /// configuration cannot be used.
    ApplyDefaultProvider { tenant_id } = Post "/api/v1/admin/tenants/{tenant_id}/default_provider", Admin,
        "applyDefaultProvider", "Tenants", "Give a tenant the default provider",
        answer::<seed::DefaultProviderView>("What the tenant was given.")
            .fails(&[Conflict]);
    /// The provider connection and default models every new tenant gets, configured with the
    /// `DEFAULT_LLM_*` vars and the `DEFAULT_LLM_API_KEY` secret; never the secret itself. When the
    /// configuration is given but cannot be used, `problem` says why (and creating a tenant is a
    /// 500 until it is corrected).
    GetDefaultProvider {} = Get "/api/v1/admin/default_provider", Admin,
        "getDefaultProvider", "Settings", "The default provider of new tenants",
        answer::<seed::DefaultProviderView>("The configured default provider.");

    ListUsers {} = Get "/api/v1/admin/users", Admin,
        "listUsers", "Users", "List users",
        list::<admin::UserView>("One page of users, oldest first.")
            .paged();
    /// Without `tenant_id` a new tenant named after the user is created and the user is its `owner`. An
    /// unknown `tenant_id` is a 404; a taken username, in any letter case, is a 409.
    CreateUser {} = Post "/api/v1/admin/users", Admin,
        "createUser", "Users", "Create a user",
        answer::<admin::UserView>("The new user.")
            .body::<admin::CreateUser>("The user to create.")
            .fails(&[NotFound, Conflict]);
    GetUser { username } = Get "/api/v1/admin/users/{username}", Admin,
        "getUser", "Users", "Get a user",
        answer::<admin::UserView>("The user.");
    /// A disabled user's keys stop working at once.
    UpdateUser { username } = Patch "/api/v1/admin/users/{username}", Admin,
        "updateUser", "Users", "Change a user's role or status",
        answer::<admin::UserView>("The updated user.")
            .body::<admin::PatchUser>("At least one of role, status.");
    /// The user's keys stop working at once.
    DeleteUser { username } = Delete "/api/v1/admin/users/{username}", Admin,
        "deleteUser", "Users", "Delete a user",
        done("`true`: the user and their keys are gone.");

    /// Unknown user: 404.
    ListUserApiKeys { username } = Get "/api/v1/admin/users/{username}/api_key", Admin,
        "listUserApiKeys", "User API keys", "List a user's API keys",
        list::<keys::KeyView>("The user's keys; never a secret or a token (one page; the next in `Link`).")
            .paged();
    /// The body may be empty (no Content-Type) to take every default. Unknown user: 404. Send an
    /// `Idempotency-Key` to make a retry safe: a second attempt then returns what the first did instead
    /// of making another key.
    CreateUserApiKey { username } = Post "/api/v1/admin/users/{username}/api_key", Admin,
        "createUserApiKey", "User API keys", "Create an API key for a user",
        answer::<keys::CreatedKey>("The new key with its token, shown this once; message `API key generated successfully`.")
            .message("API key generated successfully")
            .optional_body::<keys::CreateKey>("Description and lifetime; both optional.")
            .idempotent();
    /// Unknown user or key id: 404.
    DeleteUserApiKey { username, id } = Delete "/api/v1/admin/users/{username}/api_key/{id}", Admin,
        "deleteUserApiKey", "User API keys", "Revoke a user's API key",
        done("`true`: the key stops working at once.");
    /// Unknown user: 404. `/keys` is an alias of `/api_key` (RAGFlow's name).
    ListUserApiKeysAlias { username } = Get "/api/v1/admin/users/{username}/keys", Admin,
        "listUserApiKeysAlias", "User API keys", "List a user's API keys (alias)",
        list::<keys::KeyView>("The user's keys; never a secret or a token (one page; the next in `Link`).")
            .paged();
    /// The body may be empty (no Content-Type) to take every default. Unknown user: 404. `/keys` is an
    /// alias of `/api_key` (RAGFlow's name). Send an `Idempotency-Key` to make a retry safe: a second
    /// attempt then returns what the first did instead of making another key.
    CreateUserApiKeyAlias { username } = Post "/api/v1/admin/users/{username}/keys", Admin,
        "createUserApiKeyAlias", "User API keys", "Create an API key for a user (alias)",
        answer::<keys::CreatedKey>("The new key with its token, shown this once; message `API key generated successfully`.")
            .message("API key generated successfully")
            .optional_body::<keys::CreateKey>("Description and lifetime; both optional.")
            .idempotent();
    /// Unknown user or key id: 404. `/keys` is an alias of `/api_key` (RAGFlow's name).
    DeleteUserApiKeyAlias { username, id } = Delete "/api/v1/admin/users/{username}/keys/{id}", Admin,
        "deleteUserApiKeyAlias", "User API keys", "Revoke a user's API key (alias)",
        done("`true`: the key stops working at once.");

    GetSettings {} = Get "/api/v1/admin/settings", Admin,
        "getSettings", "Settings", "Get deployment settings",
        answer::<admin::SettingsView>("The current settings.");
    UpdateSettings {} = Put "/api/v1/admin/settings", Admin,
        "updateSettings", "Settings", "Change deployment settings",
        answer::<admin::SettingsView>("The settings as now stored.")
            .body::<admin::PutSettings>("The new settings.");
    ListAuditEntries {} = Get "/api/v1/admin/audit", Admin,
        "listAuditEntries", "Audit", "Read the audit log",
        list_of::<admin::AuditEntryView<'static>>("Audit entries, newest first (one page; the next in `Link`).", "Newest first.")
            .paged()
            .params(&["AuditTenantId", "AuditSince"]);

    GetMe {} = Get "/api/v1/me", Key,
        "getMe", "Self-service", "Who am I",
        answer::<me::MeView<'static>>("The caller and the key it authenticated with.");
    /// How long a key created now by the calling key may live and how many more keys the caller may
    /// hold, so a client can offer only what will be accepted.
    GetMyKeyLimits {} = Get "/api/v1/me/limits", Key,
        "getMyKeyLimits", "Self-service", "What keys I may create",
        answer::<keys::KeyLimits>("The limits that apply to the caller's next key.");
    ListMyApiKeys {} = Get "/api/v1/api_keys", Key,
        "listMyApiKeys", "Self-service", "List my API keys",
        list::<keys::KeyView>("The caller's own keys; never a secret or a token (one page; the next in `Link`).")
            .paged();
    /// The body may be empty (no Content-Type) to take every default. Send an `Idempotency-Key` to make
    /// a retry safe: a second attempt then returns what the first did instead of making another key.
    CreateMyApiKey {} = Post "/api/v1/api_keys", Key,
        "createMyApiKey", "Self-service", "Create an API key for myself",
        answer::<keys::CreatedKey>("The new key with its token, shown this once; message `API key generated successfully`.")
            .message("API key generated successfully")
            .optional_body::<keys::CreateKey>("Description and lifetime; both optional.")
            .idempotent()
            .fails(&[NotFound, Forbidden]);
    /// A key id that is not the caller's is a 404.
    DeleteMyApiKey { id } = Delete "/api/v1/api_keys/{id}", Key,
        "deleteMyApiKey", "Self-service", "Revoke one of my API keys",
        done("`true`: the key stops working at once.");
    /// Gives the key a new secret; `id` and `access_key` stay. The old secret works until the grace
    /// period ends. The body may be empty (no Content-Type) for no grace period. A key id that is not
    /// the caller's is a 404. Send an `Idempotency-Key` to make a retry safe: the retry of a rotation
    /// whose answer was lost gets the same key with a new secret, even when that rotation ended the
    /// secret the retry is sent with.
    RotateMyApiKey { id } = Post "/api/v1/api_keys/{id}/rotate", Key,
        "rotateMyApiKey", "Self-service", "Rotate one of my API keys",
        answer::<keys::RotatedKey>("The key with its new token, shown this once; message `API key rotated successfully`.")
            .message("API key rotated successfully")
            .optional_body::<keys::Rotate>("The grace period; optional.")
            .idempotent()
            .fails(&[Forbidden]);

    /// Every factory a tenant can configure, how it authenticates and is reached, and its catalog
    /// models. Builtin models carry `enabled` for this deployment.
    ListFactories {} = Get "/api/v1/factories", Key,
        "listFactories", "Models", "List the provider catalog",
        list_of::<models::FactoryView<'static>>("The catalog.", "Every factory of the catalog, in catalog order, Builtin included.");
    /// The models the caller's tenant can use, grouped by factory (RAGFlow's shape).
    ListModels {} = Get "/api/v1/models", Key,
        "listModels", "Models", "List the tenant's models",
        map_of::<models::FactoryModels<'static>>("ModelListEnvelope", "The tenant's models by factory.", "The tenant's usable models grouped by factory name. `Builtin` is always present; other factories appear when the tenant has a connection to them.")
            .params(&["IncludeDetails"])
            .fails(&[BadRequest]);
    /// Owners and admins only. Validates the fields for the factory (400 naming the field), then,
    /// unless `verify` is false (the default for self-deployed factories), proves the credential with
    /// one live call: a refusal is a 422 (code 102), an unreachable or failing provider a 502 (code
    /// 105). Adding the same (factory, model) again replaces the connection. Storing a credential
    /// without a configured encryption key is a 500.
    AddModel {} = Post "/api/v1/models", Key,
        "addModel", "Models", "Connect a provider or add a model",
        done("`true`: the connection is stored.")
            .body::<crate::providers::AddModel>("The factory and its connection fields.")
            .fails(&[Conflict, RoleForbidden, ProviderRejected, ProviderUnavailable]);
    /// Owners and admins only. Removes the tenant's connection(s) to the factory (or only
    /// `llm_name`'s), with their usage and the defaults that pointed at them. An unknown factory or
    /// `Builtin` is a 400; a factory or model the tenant has not configured is a 404.
    RemoveModel {} = Delete "/api/v1/models", Key,
        "removeModel", "Models", "Remove a provider connection",
        done("`true`: the connection(s) are gone.")
            .body::<models::RemoveModel>("The factory and optionally one model.")
            .fails(&[NotFound, RoleForbidden]);
    GetDefaultModels {} = Get "/api/v1/models/default", Key,
        "getDefaultModels", "Models", "Get the tenant's default models",
        answer::<defaults::DefaultModels>("All six defaults, null when unset.");
    /// Owners and admins only. Sets, clears or keeps each default; all or nothing. A body with no
    /// field, an unknown field or a non-string value is a 400; so is any invalid id, and the message
    /// lists every invalid id (`Invalid default models (nothing was changed): <field>: <why>; ...`). A
    /// model removed while its default is being set is a 409; nothing was changed, retry.
    SetDefaultModels {} = Post "/api/v1/models/default", Key,
        "setDefaultModels", "Models", "Set the tenant's default models",
        done("`true`: the defaults are stored.")
            .body::<defaults::SetDefaults>("The defaults to set or clear.")
            .fails(&[Conflict, RoleForbidden]);

    /// One page of the caller's tenant's gateway keys, newest first, with the total that match. Empty
    /// parameters count as absent.
    ListAiKeys {} = Get "/api/v1/ai_keys", Key,
        "listAiKeys", "AI API keys", "List the tenant's gateway keys",
        answer::<ai_keys::AiKeyPage>("`{total, items}`.")
            .params(&["AiKeySearch", "AiKeyProviderFilter", "AiKeyStatusFilter", "PageNumber", "PageSize"])
            .fails(&[BadRequest]);
    /// A gateway key's usage per hour or per day (UTC) over a range, oldest first, paged: requests
    /// answered, input and output tokens, requests refused by a limit over time. Calls counted by
    /// a Durable Object show within `USAGE_FLUSH_SECONDS`; others at once.
    GetAiKeyUsage { id } = Get "/api/v1/ai_keys/{id}/usage", Key,
        "getAiKeyUsage", "Usage", "A gateway key's usage over time",
        answer::<usage::UsagePage>("`{granularity, from, to, total, items}`.")
            .params(&["UsageGranularity", "UsageFrom", "UsageTo", "PageNumber", "UsagePageSize"])
            .fails(&[BadRequest]);
    /// The tenant's usage per hour or per day (UTC) over a range, of every call or of one model
    /// (`model`, as `name@factory`), oldest first, paged.
    GetUsage {} = Get "/api/v1/usage", Key,
        "getUsage", "Usage", "The tenant's or a model's usage over time",
        answer::<usage::UsagePage>("`{granularity, from, to, total, items}`.")
            .params(&["UsageGranularity", "UsageFrom", "UsageTo", "UsageModel", "PageNumber", "UsagePageSize"])
            .fails(&[BadRequest]);
    /// Owners and admins only. Where budget alerts go. A tenant without a webhook is a 404.
    GetWebhook {} = Get "/api/v1/tenant/webhook", Key,
        "getWebhook", "Alerts", "Get the tenant's webhook",
        answer::<webhooks::WebhookView>("The webhook, with a hint of its secret.")
            .fails(&[NotFound, RoleForbidden]);
    /// Owners and admins only. Sets where the tenant's budget alerts are posted: one signed
    /// `budget.threshold_reached` event when a gateway key's or the tenant's budget reaches 80% and
    /// 100% in a period (see `webhooks` in this document), retried on failure, each outcome in the
    /// audit log. The URL is checked like a provider's (never this deployment; only allowed address
    /// classes). Without `secret`, the current secret is kept; a new webhook, or `new_secret:
    /// true`, gets a generated one, answered this once.
    PutWebhook {} = Put "/api/v1/tenant/webhook", Key,
        "putWebhook", "Alerts", "Set the tenant's webhook",
        answer::<webhooks::WebhookView>("The webhook; `secret` only when keyward generated it.")
            .body::<webhooks::PutWebhook>("The URL, and optionally the secret.")
            .fails(&[NotFound, RoleForbidden]);
    /// Owners and admins only. Alerts raised afterwards are not posted anywhere.
    DeleteWebhook {} = Delete "/api/v1/tenant/webhook", Key,
        "deleteWebhook", "Alerts", "Remove the tenant's webhook",
        done("`true`: the webhook is gone.")
            .fails(&[NotFound, RoleForbidden]);
    /// Owners and admins only. Posts one signed `webhook.test` event now and answers how the
    /// receiver took it; not retried.
    TestWebhook {} = Post "/api/v1/tenant/webhook/test", Key,
        "testWebhook", "Alerts", "Send the tenant's webhook a test event",
        answer::<webhooks::TestDelivery>("Whether the receiver answered 2xx, with its status.")
            .fails(&[NotFound, RoleForbidden]);

    /// Stores a provider key for one provider and model, with per-request token limits, under a
    /// tenant-unique alias. Owners and admins only (a member gets 403). A duplicate alias is a 409
    /// (`alias <alias> already exists`).
    CreateAiKey {} = Post "/api/v1/ai_keys", Key,
        "createAiKey", "AI API keys", "Create a gateway key",
        answer::<ai_keys::AiKeyView>("The key record.")
            .body::<ai_keys::CreateAiKey>("The new key.")
            .fails(&[Conflict, RoleForbidden]);
    GetAiKey { id } = Get "/api/v1/ai_keys/{id}", Key,
        "getAiKey", "AI API keys", "Get a gateway key",
        answer::<ai_keys::AiKeyView>("The key record.");
    /// Changes only the fields sent. Owners and admins only (a member gets 403). A duplicate alias is a
    /// 409; so is a provider or model changed by another request meanwhile (nothing was changed,
    /// retry).
    UpdateAiKey { id } = Put "/api/v1/ai_keys/{id}", Key,
        "updateAiKey", "AI API keys", "Change a gateway key",
        answer::<ai_keys::AiKeyView>("The key record after the change.")
            .body::<ai_keys::UpdateAiKey>("The fields to change.")
            .fails(&[Conflict, RoleForbidden]);
    /// The relay refuses the alias at once. Owners and admins only (a member gets 403).
    DeleteAiKey { id } = Delete "/api/v1/ai_keys/{id}", Key,
        "deleteAiKey", "AI API keys", "Delete a gateway key",
        done("`true`: the key is deleted.")
            .fails(&[RoleForbidden]);

    /// Every model the caller's tenant can use, as `name@factory` (all types; the deployment's enabled
    /// Builtin models once its Workers AI account is configured), then the aliases of its enabled
    /// gateway keys (at most 100, newest first).
    RelayListModels {} = Get "/v1/models", RelayKey,
        "relayListModels", "Relay", "List the models the relay knows (OpenAI)",
        plain::<relay::RelayModelList>("OpenAI's model list.");
    /// OpenAI's chat completions, relayed to the provider `model` resolves to (OpenAI-style factories,
    /// Azure-OpenAI, Ollama, Gemini, Cohere, Vertex AI and Builtin through their OpenAI-compatible
    /// APIs, Anthropic translated both ways); image-to-text models take `image_url` parts. With a gateway key its
    /// status, expiry and limits are checked first. Tokens used (as the provider reports them, else
    /// estimated) are added to the gateway key's counters and the model's `used_token`, also when a
    /// streaming client hangs up early. A provider failure in the middle of a stream arrives as a last
    /// event `data: {"error": {"message", "type": "upstream_error"}}`.
    RelayChatCompletions {} = Post "/v1/chat/completions", RelayKey,
        "relayChatCompletions", "Relay", "Create a chat completion (OpenAI)",
        wire_answer("ChatCompletion", "A `chat.completion`; with `stream: true` a `text/event-stream` of `chat.completion.chunk` events (ChatCompletionChunk), each as `data: <json>` followed by a blank line, ending with `data: [DONE]`. A stream the upstream breaks ends instead with one OpenAI-style error event, `data: {\"error\": {\"message\", \"type\": \"upstream_error\", \"param\", \"code\"}}`: code `upstream_event_too_large` (an event over 1 MiB), `upstream_stream_too_large` (over 64 MiB in all), `upstream_idle_timeout` (nothing for `STREAM_IDLE_TIMEOUT_MS`), or null (the upstream failed). Every form of the call's stored credential is replaced by `***` in what the upstream sends back.")
            .wire_body("ChatCompletionRequest", "OpenAI's chat completion request (`Content-Type: application/json`, at most 1 MiB).")
            .headers(&["InputTokensEstimate", "LimitExceeded"])
            .stream("Server-sent events: `data: <ChatCompletionChunk JSON>` per event, then `data: [DONE]` (or one error event, see above).");
    /// OpenAI's embeddings, relayed to the provider `model` resolves to (OpenAI-style factories,
    /// Azure-OpenAI, Ollama, Gemini, Cohere and Builtin; Anthropic and Vertex AI have none: 400). With a gateway key its status, expiry and `input_limit` are checked
    /// first (`output_limit` does not apply). Tokens used are added to the gateway key's counters and
    /// the model's `used_token`.
    RelayEmbeddings {} = Post "/v1/embeddings", RelayKey,
        "relayEmbeddings", "Relay", "Create embeddings (OpenAI)",
        wire_answer("EmbeddingList", "The embeddings.")
            .wire_body("EmbeddingsRequest", "OpenAI's embeddings request (`Content-Type: application/json`, at most 1 MiB).")
            .headers(&["InputTokensEstimate", "LimitExceeded"]);
    /// Ranks documents against a query with the rerank model `model` resolves to (Jina, Cohere,
    /// OpenAI-API-Compatible, LocalAI, Xinference and Builtin models, each through its own API), in
    /// the request and answer shape Jina and Cohere share. With a gateway key its status, expiry and
    /// `input_limit` are checked first. Tokens used (as the provider reports them, else estimated)
    /// are counted like a chat's.
    RelayRerank {} = Post "/v1/rerank", RelayKey,
        "relayRerank", "Relay", "Rerank documents",
        wire_answer("RerankResult", "The documents by falling relevance.")
            .wire_body("RerankRequest", "The query and the documents (`Content-Type: application/json`, at most 1 MiB).")
            .headers(&["InputTokensEstimate", "LimitExceeded"]);
    /// OpenAI's audio transcription, relayed to the speech-to-text model `model` resolves to (OpenAI,
    /// Azure-OpenAI, OpenAI-API-Compatible, LocalAI, Xinference, and Builtin models through Workers
    /// AI's whisper). The form may be at most 25 MiB. With a gateway key its status and expiry are
    /// checked first. The transcript's tokens (as the provider reports them, else estimated) are
    /// counted as output.
    RelayTranscription {} = Post "/v1/audio/transcriptions", RelayKey,
        "relayTranscription", "Relay", "Transcribe audio (OpenAI)",
        wire_answer("Transcription", "The transcript.")
            .form_body("TranscriptionRequest", "The audio file and the model (`multipart/form-data`, at most 25 MiB).")
            .also("text/plain", "The transcript with `response_format` `text` or `srt`.")
            .also("text/vtt", "The transcript with `response_format` `vtt`.")
            .headers(&["InputTokensEstimate", "LimitExceeded"]);
    /// OpenAI's text to speech, relayed to the text-to-speech model `model` resolves to (OpenAI,
    /// Azure-OpenAI, OpenAI-API-Compatible, LocalAI, Xinference, and Builtin models through Workers
    /// AI's MeloTTS). The audio is streamed back as the provider sends it (at most 64 MiB). With a
    /// gateway key its status, expiry and `input_limit` are checked first; the input's tokens are
    /// counted.
    RelaySpeech {} = Post "/v1/audio/speech", RelayKey,
        "relaySpeech", "Relay", "Turn text into speech (OpenAI)",
        media_answer("The audio, in the provider's media type for `response_format`.")
            .wire_body("SpeechRequest", "The text and the voice (`Content-Type: application/json`, at most 1 MiB).")
            .also("audio/mpeg", "MP3 audio (`response_format` `mp3`, the default).")
            .also("audio/*", "Audio in another `response_format` (`opus`, `aac`, `flac`, `wav`, `pcm`).")
            .headers(&["InputTokensEstimate", "LimitExceeded"]);
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
