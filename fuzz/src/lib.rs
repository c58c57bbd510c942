//! The fuzz harness: the whole keyward API (`App::handle`) over the native test platform's real
//! SQLite database, in-memory cache and limiter (reused from `tests/common/mod.rs`), with a fake
//! provider instead of the network and a seeded random source, so an input replays identically.
//!
//! A template database is built once per process through the API (tenants, users, keys, a provider
//! connection, defaults, a gateway key); before every input the live database is restored from it,
//! so each input sees the same state and a crash reproduces from its input alone.
//!
//! Key secrets in the template are fixed (not random) so that seed inputs can carry them:
//! [`LIVE`] credentials work, [`DEAD`] ones (expired, disabled user, rotated out) must not.

#[path = "../../tests/common/mod.rs"]
#[allow(clippy::all)]
pub mod common;

use common::{
    block_on, MemCache, MemLimiter, SqliteDb, ADMIN_TOKEN, BUILTIN_ENABLED, START_MS,
    TEST_MASTER_KEY,
};
use keyward::api::http::{Request, Response};
use keyward::api::{App, Config};
use keyward::domain::crypto::{Keyring, MasterKey};
use keyward::domain::keys::Secret;
use keyward::store::keys::{self as key_store, KeyRecord};
use keyward::store::outbound::{
    Outbound, OutboundError, OutboundRequest, OutboundResponse, StreamingResponse,
};
use keyward::store::{Db, Platform};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::time::Duration;

pub use common::ADMIN_TOKEN as ADMIN;

/// A user key whose secret is fixed, so seeds can use it.
#[derive(Debug, Clone, Copy)]
pub struct Cred {
    pub username: &'static str,
    pub id: &'static str,
    pub access: &'static str,
    pub secret: &'static str,
}

impl Cred {
    /// `<access_key>:<secret>`, what a client sends.
    pub fn token(&self) -> String {
        format!("{}:{}", self.access, self.secret)
    }
}

/// The tenant owner's key.
pub const OWNER: Cred = Cred {
    username: "fuzz-owner",
    id: "fuzz-owner-key",
    access: "kwa_FuzzOwner0000001",
    secret: "kws_FuzzOwnerSecret000000000000000012HXhdb",
};
/// A member's key.
pub const MEMBER: Cred = Cred {
    username: "fuzz-member",
    id: "fuzz-member-key",
    access: "kwa_FuzzMember000001",
    secret: "kws_FuzzMemberSecret00000000000000012N54dA",
};
/// A rotated key's current secret (its previous one is [`ROTATED_OUT`]).
pub const ROTATED: Cred = Cred {
    username: "fuzz-owner",
    id: "fuzz-rotated-key",
    access: "kwa_FuzzRotated00001",
    secret: "kws_FuzzRotatedSecret000000000000001308q5X",
};
/// The secret a rotation replaced; its grace period ended before the clock's start.
pub const ROTATED_OUT: Cred = Cred {
    username: "fuzz-owner",
    id: "fuzz-rotated-key",
    access: "kwa_FuzzRotated00001",
    secret: "kws_FuzzRotatedOldSecret0000000000012D3qug",
};
/// A key past its expiry.
pub const EXPIRED: Cred = Cred {
    username: "fuzz-owner",
    id: "fuzz-expired-key",
    access: "kwa_FuzzExpired00001",
    secret: "kws_FuzzExpiredSecret0000000000000012SsMNq",
};
/// A disabled user's key.
pub const DISABLED: Cred = Cred {
    username: "fuzz-disabled",
    id: "fuzz-disabled-key",
    access: "kwa_FuzzDisabled0001",
    secret: "kws_FuzzDisabledSecret000000000000010venan",
};

/// Credentials that authenticate.
pub const LIVE: [Cred; 3] = [OWNER, MEMBER, ROTATED];
/// Well-formed credentials of real rows that must not authenticate.
pub const DEAD: [Cred; 3] = [ROTATED_OUT, EXPIRED, DISABLED];

/// The provider key of the template's OpenAI connection.
pub const PROVIDER_KEY: &str = "sk-fuzz-provider-0123456789";
/// The template's gateway key alias.
pub const GATEWAY_ALIAS: &str = "fuzz-gw";

const SEED: u64 = 0x6675_7a7a_6b65_7977;

// ---------------------------------------------------------------------------------------------
// A provider that answers every call at once, without a network.
// ---------------------------------------------------------------------------------------------

/// Answers like an OpenAI-compatible provider: a model list, a chat completion, an embedding, or a
/// stream of chat chunks. It never signs (Vertex credentials are refused as unsignable).
pub struct FakeProvider;

const CHAT: &str = r#"{"id":"chatcmpl-fuzz","object":"chat.completion","created":0,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
const EMBEDDING: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
const MODELS: &str = r#"{"object":"list","data":[{"id":"gpt-4o","object":"model"}]}"#;
const STREAM: [&str; 3] = [
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n",
    "data: [DONE]\n\n",
];

impl Outbound for FakeProvider {
    async fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let body = if req.url.contains("/embeddings") {
            EMBEDDING
        } else if req.url.contains("/chat/completions") || req.url.contains("/messages") {
            CHAT
        } else {
            MODELS
        };
        Ok(OutboundResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        })
    }

    async fn send_streaming(
        &self,
        _req: OutboundRequest,
    ) -> Result<StreamingResponse, OutboundError> {
        let chunks = STREAM.iter().map(|c| Ok(c.as_bytes().to_vec()));
        Ok(StreamingResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: Box::pin(futures::stream::iter(chunks)),
        })
    }

    async fn sign_rs256(&self, _der: &[u8], _data: &[u8]) -> Result<Vec<u8>, String> {
        Err("the fuzz platform does not sign".into())
    }
}

// ---------------------------------------------------------------------------------------------
// The platform.
// ---------------------------------------------------------------------------------------------

pub struct FuzzPlatform {
    pub db: SqliteDb,
    pub cache: MemCache,
    pub clock: Cell<i64>,
    pub outbound: FakeProvider,
    pub limiter: MemLimiter,
    seed: Cell<u64>,
}

impl Platform for FuzzPlatform {
    type Db = SqliteDb;
    type Cache = MemCache;
    type Outbound = FakeProvider;
    type Limiter = MemLimiter;
    fn limiter(&self) -> &MemLimiter {
        &self.limiter
    }
    fn db(&self) -> &SqliteDb {
        &self.db
    }
    fn cache(&self) -> &MemCache {
        self.cache.now.set(self.clock.get());
        &self.cache
    }
    fn outbound(&self) -> &FakeProvider {
        &self.outbound
    }
    fn now_ms(&self) -> i64 {
        self.clock.get()
    }
    /// SplitMix64 from a fixed seed: replayable, which is all a fuzz run needs.
    fn fill_random(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut z = self.seed.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            self.seed.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// The service plus the template database every input starts from.
pub struct Harness {
    pub app: App<FuzzPlatform>,
    template: rusqlite::Connection,
    /// The template tenant's id.
    pub tenant_id: String,
    /// The template gateway key's id.
    pub ai_key_id: String,
    /// Where the random source stood when the template was done: every input continues from
    /// there, so it draws the same values and never one the template already used.
    seed_after_template: u64,
}

fn copy_db(from: &rusqlite::Connection) -> rusqlite::Connection {
    let mut to = rusqlite::Connection::open_in_memory().expect("sqlite");
    {
        let backup = rusqlite::backup::Backup::new(from, &mut to).expect("backup");
        backup
            .run_to_completion(1 << 20, Duration::ZERO, None)
            .expect("backup runs");
    }
    // Per connection, not stored in the file: D1 has foreign keys on.
    to.execute_batch("PRAGMA foreign_keys = ON;")
        .expect("foreign keys");
    to
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        let platform = FuzzPlatform {
            db: SqliteDb::new(),
            cache: MemCache::default(),
            clock: Cell::new(START_MS),
            outbound: FakeProvider,
            limiter: MemLimiter::default(),
            seed: Cell::new(SEED),
        };
        let config = Config {
            admin_token: Some(ADMIN_TOKEN.into()),
            keyring: Some(Keyring::new(MasterKey::new(1, TEST_MASTER_KEY), vec![])),
            builtin_models: BUILTIN_ENABLED.into(),
            provider_timeout_ms: 2_000,
            ..Config::default()
        };
        let mut h = Harness {
            app: App::new(platform, config),
            template: rusqlite::Connection::open_in_memory().expect("sqlite"),
            tenant_id: String::new(),
            ai_key_id: String::new(),
            seed_after_template: SEED,
        };
        h.build_template();
        h.seed_after_template = h.app.platform.seed.get();
        h.template = copy_db(&h.app.platform.db.conn.borrow());
        h
    }

    /// Restore the template state: database, cache, limiter, clock and random source.
    pub fn reset(&mut self) {
        let p = &mut self.app.platform;
        *p.db.conn.borrow_mut() = copy_db(&self.template);
        p.db.fail_on_call.set(None);
        p.db.calls.set(0);
        p.cache.map.borrow_mut().clear();
        p.cache.failing.set(false);
        p.limiter = MemLimiter::default();
        p.clock.set(START_MS);
        p.seed.set(self.seed_after_template);
    }

    /// Handle one request as the glue would: read a streamed body to its end, then run the
    /// deferred writes, which must succeed (they are statements the core built itself).
    pub fn send(&self, req: Request) -> Response {
        let mut resp = block_on(self.app.handle(req));
        if let Some(mut stream) = resp.stream.take() {
            use futures::StreamExt;
            while let Some(chunk) = block_on(stream.next()) {
                resp.body.extend_from_slice(&chunk);
            }
        }
        let mut stmts = resp.deferred.clone();
        if let Some(rx) = resp.deferred_after_stream.take() {
            stmts.extend(block_on(rx).unwrap_or_default());
        }
        if !stmts.is_empty() {
            if let Err(e) = block_on(self.app.platform.db.batch(stmts)) {
                panic!("a deferred write failed: {e}");
            }
        }
        resp
    }

    fn call(&self, auth: &str, method: &str, path: &str, body: Value) -> Value {
        let req = Request::new(method, path)
            .header("authorization", &format!("Bearer {auth}"))
            .json(&body);
        let r = self.send(req);
        assert_eq!(
            r.status,
            200,
            "template {method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json_body()["data"].clone()
    }

    fn insert_key(&self, c: &Cred, tenant_id: &str, expires_at: Option<i64>) {
        let secret = Secret::parse(c.secret).expect("fixed secrets are well formed");
        let record = KeyRecord {
            id: c.id.into(),
            access_key: c.access.into(),
            secret_hint: secret.hint(),
            username: c.username.into(),
            tenant_id: tenant_id.into(),
            description: "fuzz".into(),
            create_date: START_MS - 3_600_000,
            update_date: START_MS - 3_600_000,
            expires_at,
            last_used_at: None,
        };
        block_on(
            self.app
                .platform
                .db
                .batch(vec![key_store::insert(&record, &secret.hash())]),
        )
        .expect("insert key");
    }

    fn build_template(&mut self) {
        let admin = ADMIN_TOKEN;
        let owner = self.call(
            admin,
            "POST",
            "/api/v1/admin/users",
            json!({"username": OWNER.username}),
        );
        let tenant = owner["tenant_id"].as_str().expect("tenant").to_owned();
        self.call(
            admin,
            "POST",
            "/api/v1/admin/users",
            json!({"username": MEMBER.username, "tenant_id": tenant, "role": "member"}),
        );
        self.call(
            admin,
            "POST",
            "/api/v1/admin/users",
            json!({"username": DISABLED.username, "tenant_id": tenant, "role": "admin"}),
        );
        self.call(
            admin,
            "PATCH",
            &format!("/api/v1/admin/users/{}", DISABLED.username),
            json!({"status": "disabled"}),
        );
        self.insert_key(&OWNER, &tenant, None);
        self.insert_key(&MEMBER, &tenant, None);
        self.insert_key(&DISABLED, &tenant, None);
        self.insert_key(&EXPIRED, &tenant, Some(START_MS - 60_000));
        self.insert_key(&ROTATED_OUT, &tenant, None);
        let new = Secret::parse(ROTATED.secret).expect("fixed secret");
        block_on(self.app.platform.db.batch(vec![key_store::rotate(
            ROTATED.id,
            ROTATED.username,
            &new.hash(),
            &new.hint(),
            Some(START_MS - 1),
            START_MS - 60_000,
        )]))
        .expect("rotate");

        // A second tenant, so cross-tenant reads and writes have something to miss.
        self.call(
            admin,
            "POST",
            "/api/v1/admin/users",
            json!({"username": "fuzz-other"}),
        );

        let tok = OWNER.token();
        self.call(
            &tok,
            "POST",
            "/api/v1/models",
            json!({"llm_factory": "OpenAI", "api_key": PROVIDER_KEY, "verify": false}),
        );
        self.call(
            &tok,
            "POST",
            "/api/v1/models",
            json!({"llm_factory": "OpenAI-API-Compatible", "llm_name": "local-chat",
                   "base_url": "https://provider.invalid/v1", "api_key": PROVIDER_KEY,
                   "model_type": "chat", "max_tokens": 4096, "verify": false}),
        );
        self.call(
            &tok,
            "POST",
            "/api/v1/models/default",
            json!({"llm_id": "gpt-4o@OpenAI", "embd_id": "text-embedding-3-small@OpenAI"}),
        );
        let gw = self.call(
            &tok,
            "POST",
            "/api/v1/ai_keys",
            json!({"alias": GATEWAY_ALIAS, "provider": "OpenAI", "model": "gpt-4o",
                   "api_key": "sk-fuzz-gateway-987654321", "input_limit": 100000,
                   "output_limit": 1000, "status": "enabled"}),
        );
        self.ai_key_id = gw["id"].as_str().expect("ai key id").to_owned();
        self.tenant_id = tenant;

        // The live credentials work and the dead ones do not, or the oracles mean nothing.
        for c in LIVE {
            let r = self.send(
                Request::new("GET", "/api/v1/me")
                    .header("authorization", &format!("Bearer {}", c.token())),
            );
            assert_eq!(r.status, 200, "{} should work", c.access);
        }
        for c in DEAD {
            let r = self.send(
                Request::new("GET", "/api/v1/me")
                    .header("authorization", &format!("Bearer {}", c.token())),
            );
            assert_eq!(r.status, 401, "{} should fail", c.access);
        }
    }
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

/// Run `f` on this thread's harness, reset to the template state first.
pub fn with_harness<R>(f: impl FnOnce(&Harness) -> R) -> R {
    HARNESS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let h = slot.get_or_insert_with(Harness::new);
        h.reset();
        f(h)
    })
}

/// Whether a response body is what its content type promises: JSON, or server-sent events whose
/// every `data:` line is JSON or `[DONE]`. `Err` says what is wrong.
pub fn check_body(r: &Response) -> Result<(), String> {
    let ct = r.header("content-type").unwrap_or_default();
    if ct.starts_with("text/event-stream") {
        let text = std::str::from_utf8(&r.body).map_err(|_| "SSE body is not UTF-8")?;
        for line in text.lines() {
            if let Some(data) = line.strip_prefix("data:") {
                let data = data.trim();
                if data != "[DONE]" && serde_json::from_str::<Value>(data).is_err() {
                    return Err(format!("SSE data line is not JSON: {data}"));
                }
            }
        }
        return Ok(());
    }
    if !ct.starts_with("application/json") {
        return Err(format!("unexpected content type {ct:?}"));
    }
    serde_json::from_slice::<Value>(&r.body)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&r.body)
            )
        })
}
