//! Fault injection over real SQLite: every multi-step write is run once to count its database
//! calls, then once per call index with that call failing, on a fresh instance each time, in two
//! ways: before the call runs, and after it ran and committed with its answer lost (D1 can commit
//! a batch and fail to return). The answer must be a clean 5xx (500, code 100, a generic message,
//! no SQL or driver text) or, for a constraint failure only, a 4xx; an unexpected database failure
//! answered with a 4xx fails the suite, and so does a 500 after a change the server knew it had
//! committed. The database must afterwards hold either the whole change or none of it
//! (SECURITY.md promises 4 and 5: multi-row writes are one atomic D1 batch). After a lost answer
//! the client sends the same request again, and the retry must make nothing twice and leave the
//! client a key that works: writes that a retry would repeat are also run with an
//! Idempotency-Key, which makes their retry safe. The cron purge is a sequence of single atomic
//! statements, so a failure leaves a prefix of them applied and the next run completes it. Every
//! read answers a database failure with a 500, never a 404 or an empty list. A failing cache
//! never fails setting or reading the default models.
//!
//! Each instance draws its randomness from a fixed seed, so the ids, secrets and audit rows of the
//! fault-free run and of every faulty run are identical, and "the whole change" is compared
//! byte for byte, every table and every row.
//!
//! `cargo test --test faults -- --nocapture` prints how many faults each write took.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{block_on, test_config, token, SqliteDb, TestPlatform, ADMIN_TOKEN, T};
use keyward::api::http::{Request, Response};
use keyward::api::App;
use keyward::jobs::{PurgeReport, PURGE_CHUNK};
use keyward::store::{ai_keys, idempotency, keys as key_store, providers, Db, DbError, Platform};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a failing database call says. Each is injected at every call index of every write:
/// two unexpected failures (SQLite's and D1's wording, carrying SQL text that must not reach the
/// client) and two constraint failures, which the core maps to 4xx answers.
const FAULTS: [&str; 4] = [
    "D1_ERROR: disk I/O error while running SELECT secret_hash FROM api_keys: SQLITE_IOERR",
    "D1_ERROR: Network connection lost.",
    "UNIQUE constraint failed: users.username",
    "FOREIGN KEY constraint failed",
];

/// What a call whose answer is lost after it committed says: only the unexpected failures, since a
/// batch that committed broke no constraint.
const LOST: [&str; 2] = [FAULTS[0], FAULTS[1]];

/// Fragments of the injected messages that a response body must never contain.
const LEAKS: [&str; 9] = [
    "D1_ERROR",
    "SQLITE",
    "SELECT",
    "secret_hash",
    "disk I/O",
    "Network connection lost",
    "constraint failed",
    "FOREIGN KEY",
    "api_keys:",
];

/// The provider keys stored by the setups (sealed at rest).
const PROVIDER_KEY: &str = "sk-faults-provider-0123456789";
const GATEWAY_KEY: &str = "sk-faults-gateway-abcdef012345";

/// One fresh service instance over a fresh in-memory SQLite database.
struct Rig {
    app: App<TestPlatform>,
}

/// Every table's rows, rendered and sorted: what "the database" is for the comparisons.
type Snapshot = BTreeMap<String, Vec<String>>;

impl Rig {
    fn new() -> Self {
        // Seeded randomness, so every fresh instance has the same ids, secrets and audit rows.
        let platform = TestPlatform::new();
        platform.seed.set(Some(0x6b65_7977_6172_6421));
        let config = test_config();
        Rig {
            app: App::new(platform, config),
        }
    }

    /// A fresh instance configured as `w` needs: the writes that create a tenant under a
    /// default provider run with one configured (api/seed.rs).
    fn for_write(w: &Write) -> Self {
        let mut rig = Rig::new();
        if SEEDED.iter().any(|s| s.name == w.name) {
            rig.app.config.default_provider = keyward::api::seed::DefaultProvider {
                factory: Some("OpenAI".into()),
                base_url: Some("http://127.0.0.1:9/v1".into()),
                models: Some("llm_id=gpt-4o-mini,embd_id=text-embedding-3-small".into()),
                api_key: Some(PROVIDER_KEY.into()),
            };
        }
        rig
    }

    fn db(&self) -> &SqliteDb {
        &self.app.platform.db
    }

    fn advance_minutes(&self, m: i64) {
        let c = &self.app.platform.clock;
        c.set(c.get() + m * 60_000);
    }

    /// Send a request and run its deferred writes as the glue's `wait_until` would.
    fn send(&self, req: Request) -> Response {
        let resp = block_on(self.app.handle(req));
        assert!(resp.stream.is_none(), "no write streams its answer");
        if !resp.deferred.is_empty() {
            block_on(self.db().batch(resp.deferred.clone())).expect("deferred write");
        }
        resp
    }

    fn admin(&self, method: &str, path: &str, body: Option<Json>) -> Response {
        let mut req =
            Request::new(method, path).header("authorization", &format!("Bearer {ADMIN_TOKEN}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req)
    }

    /// A request with an `Idempotency-Key`, as the admin (`tok` None) or with a user token.
    fn keyed(&self, tok: Option<&str>, path: &str, body: Json, key: &str) -> Response {
        let bearer = tok.map_or_else(|| ADMIN_TOKEN.to_owned(), str::to_owned);
        self.send(
            Request::new("POST", path)
                .header("authorization", &format!("Bearer {bearer}"))
                .header("idempotency-key", key)
                .json(&body),
        )
    }

    fn user(&self, tok: &str, method: &str, path: &str, body: Option<Json>) -> Response {
        let mut req = Request::new(method, path).header("authorization", &format!("Bearer {tok}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req)
    }

    /// Create a user (and, without `tenant_id`, their tenant); returns the user's JSON.
    fn create_user(&self, username: &str, tenant_id: Option<&str>, role: Option<&str>) -> Json {
        let mut body = json!({ "username": username });
        if let Some(t) = tenant_id {
            body["tenant_id"] = json!(t);
        }
        if let Some(r) = role {
            body["role"] = json!(r);
        }
        data(self.admin("POST", "/api/v1/admin/users", Some(body)))
    }

    /// Issue a key and use it once, so that a request made with it at the same instant defers no
    /// `last_used_at` write (which would be a best-effort write outside the operation under test).
    fn issue_key(&self, username: &str, body: Json) -> Json {
        let k = data(self.admin(
            "POST",
            &format!("/api/v1/admin/users/{username}/api_key"),
            Some(body),
        ));
        let me = self.user(&token(&k), "GET", "/api/v1/me", None);
        assert_eq!(me.status, 200);
        k
    }

    /// An owner with a fresh key in a new tenant.
    fn owner(&self, username: &str) -> Owner {
        let u = self.create_user(username, None, None);
        let k = self.issue_key(username, json!({}));
        Owner {
            token: token(&k),
            key_id: str_of(&k["id"]),
            tenant_id: str_of(&u["tenant_id"]),
        }
    }

    fn connect_openai(&self, tok: &str) {
        data(self.user(
            tok,
            "POST",
            "/api/v1/models",
            Some(json!({"llm_factory": "OpenAI", "api_key": PROVIDER_KEY, "verify": false})),
        ));
    }

    fn create_ai_key(&self, tok: &str, alias: &str, extra: Json) -> String {
        let mut body = json!({"alias": alias, "provider": "OpenAI", "model": "gpt-4o",
                              "api_key": GATEWAY_KEY, "input_limit": 1000});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        str_of(&data(self.user(tok, "POST", "/api/v1/ai_keys", Some(body)))["id"])
    }

    /// Every table's rows (all columns, sorted), including SQLite's AUTOINCREMENT counters.
    fn snapshot(&self) -> Snapshot {
        let conn = self.db().conn.borrow();
        let mut names = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .expect("list tables");
        let tables: Vec<String> = names
            .query_map([], |r| r.get(0))
            .expect("list tables")
            .collect::<Result<_, _>>()
            .expect("table names");
        let mut out = Snapshot::new();
        for t in tables {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM \"{t}\""))
                .expect("select table");
            let cols = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    Ok((0..cols)
                        .map(|i| format!("{:?}", r.get_ref(i).expect("column")))
                        .collect::<Vec<_>>()
                        .join(" | "))
                })
                .expect("rows")
                .collect::<Result<_, _>>()
                .expect("row");
            rows.sort();
            out.insert(t, rows);
        }
        out
    }

    fn calls(&self) -> usize {
        self.db().calls.get()
    }

    /// Make the `i`th database call from now on fail, once, with `msg`.
    fn fail_at(&self, i: usize, msg: &'static str) {
        self.db().fail_on_call.set(Some((self.calls() + i, msg)));
    }

    /// Let the `i`th database call from now on run and commit, then fail it with `msg`, once.
    fn lose_answer_at(&self, i: usize, msg: &'static str) {
        self.db()
            .lose_answer_on_call
            .set(Some((self.calls() + i, msg)));
    }

    fn fault_pending(&self) -> bool {
        self.db().fail_on_call.get().is_some() || self.db().lose_answer_on_call.get().is_some()
    }

    /// Every table's primary keys (the rowid where a table declares none), sorted, without the
    /// audit log (each successful write adds to it) and SQLite's AUTOINCREMENT counters.
    fn keys(&self) -> Snapshot {
        let conn = self.db().conn.borrow();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .expect("list tables")
            .query_map([], |r| r.get(0))
            .expect("list tables")
            .collect::<Result<_, _>>()
            .expect("table names");
        let mut out = Snapshot::new();
        for t in tables
            .into_iter()
            .filter(|t| t != "audit" && t != "sqlite_sequence")
        {
            let mut pk: Vec<(i64, String)> = conn
                .prepare(&format!("PRAGMA table_info(\"{t}\")"))
                .expect("table info")
                .query_map([], |r| Ok((r.get::<_, i64>(5)?, r.get::<_, String>(1)?)))
                .expect("columns")
                .collect::<Result<_, _>>()
                .expect("columns");
            pk.retain(|(n, _)| *n > 0);
            pk.sort();
            let cols = if pk.is_empty() {
                "rowid".to_owned()
            } else {
                pk.iter()
                    .map(|(_, c)| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut stmt = conn
                .prepare(&format!("SELECT {cols} FROM \"{t}\""))
                .expect("select keys");
            let n = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    Ok((0..n)
                        .map(|i| format!("{:?}", r.get_ref(i).expect("column")))
                        .collect::<Vec<_>>()
                        .join(" | "))
                })
                .expect("rows")
                .collect::<Result<_, _>>()
                .expect("row");
            rows.sort();
            out.insert(t, rows);
        }
        out
    }

    /// Row counts per table, the audit log included.
    fn counts(&self) -> BTreeMap<String, usize> {
        self.snapshot()
            .into_iter()
            .filter(|(t, _)| t != "sqlite_sequence")
            .map(|(t, rows)| (t, rows.len()))
            .collect()
    }
}

struct Owner {
    token: String,
    key_id: String,
    tenant_id: String,
}

fn str_of(v: &Json) -> String {
    v.as_str().expect("a string").to_owned()
}

/// The `data` of a 200 answer.
fn data(r: Response) -> Json {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json_body()["data"].clone()
}

/// Tables whose rows differ between two snapshots, with their row counts.
fn changed_tables(a: &Snapshot, b: &Snapshot) -> String {
    a.iter()
        .filter(|(t, rows)| b.get(*t) != Some(rows))
        .map(|(t, rows)| format!("{t} {}->{}", rows.len(), b[t].len()))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// The writes under test.
// ---------------------------------------------------------------------------------------------

/// What a setup hands the operation: whatever tokens and ids it needs.
#[derive(Default)]
struct Ctx {
    token: String,
    key_id: String,
    tenant_id: String,
    ai_key_id: String,
}

struct Write {
    name: &'static str,
    setup: fn(&Rig) -> Ctx,
    op: fn(&Rig, &Ctx) -> Response,
    /// What the client gets when it sends the same request again after losing the answer to one
    /// that committed.
    retry: Retry,
    /// Whose key must work once the retry is answered.
    holder: Holder,
}

/// The answer to a retry of a write whose first attempt committed but whose answer was lost.
#[derive(Clone, Copy, Debug)]
enum Retry {
    /// 200, and every table but the audit log holds the same rows (by primary key) as after one
    /// run: nothing was made twice.
    Repeats,
    /// Refused with this status (the change is there already), and nothing at all changed.
    Refused(u16),
    /// Without an Idempotency-Key the server cannot tell the retry from a new request and does
    /// it again: a second tenant or key, or for a rotation without grace a 401 (the rotation
    /// ended the only secret the client has). Checked only to be a clean answer on a consistent
    /// database; each such write has a keyed twin (`KEYED`) whose retry is checked in full.
    Unsafe,
}

/// The user key the client holds after the retry, which must work.
#[derive(Clone, Copy, Debug)]
enum Holder {
    /// The caller's own key, which the write leaves alone.
    Caller,
    /// The token in the retry's answer (issuing or rotating a key).
    Answer,
    /// None to check: the write disables or removes the caller, or the caller is the admin.
    Nobody,
}

/// A bystander tenant with a user, key, connection, default and gateway key: none of it may
/// change when another tenant's write fails or succeeds.
fn bystander(rig: &Rig) {
    let o = rig.owner("bystander");
    rig.connect_openai(&o.token);
    data(rig.user(
        &o.token,
        "POST",
        "/api/v1/models/default",
        Some(json!({"llm_id": "gpt-4o@OpenAI"})),
    ));
    rig.create_ai_key(&o.token, "bystander-gw", json!({}));
}

/// The owner `alice` (new tenant) with a key, beside a bystander tenant.
fn alice(rig: &Rig) -> Ctx {
    bystander(rig);
    let o = rig.owner("alice");
    Ctx {
        token: o.token,
        key_id: o.key_id,
        tenant_id: o.tenant_id,
        ..Ctx::default()
    }
}

/// `alice` with OpenAI connected and a gateway key.
fn alice_connected(rig: &Rig) -> Ctx {
    let mut c = alice(rig);
    rig.connect_openai(&c.token);
    c.ai_key_id = rig.create_ai_key(&c.token, "alice-gw", json!({}));
    c
}

const CREATE_USER: Write = Write {
    name: "create a user without a tenant (tenant + user + two audit rows)",
    setup: |rig| {
        bystander(rig);
        Ctx::default()
    },
    op: |rig, _| {
        rig.admin(
            "POST",
            "/api/v1/admin/users",
            Some(json!({"username": "newcomer"})),
        )
    },
    retry: Retry::Refused(409),
    holder: Holder::Nobody,
};

const CREATE_MEMBER: Write = Write {
    name: "create a user in an existing tenant",
    setup: alice,
    op: |rig, c| {
        rig.admin(
            "POST",
            "/api/v1/admin/users",
            Some(json!({"username": "bob", "tenant_id": c.tenant_id, "role": "member"})),
        )
    },
    retry: Retry::Refused(409),
    holder: Holder::Caller,
};

const CREATE_TENANT: Write = Write {
    name: "create a tenant",
    setup: |rig| {
        bystander(rig);
        Ctx::default()
    },
    op: |rig, _| {
        rig.admin(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"name": "acme"})),
        )
    },
    retry: Retry::Unsafe,
    holder: Holder::Nobody,
};

const PATCH_USER: Write = Write {
    name: "disable a user",
    setup: alice,
    op: |rig, _| {
        rig.admin(
            "PATCH",
            "/api/v1/admin/users/alice",
            Some(json!({"status": "disabled", "role": "admin"})),
        )
    },
    retry: Retry::Repeats,
    holder: Holder::Nobody,
};

const PUT_SETTINGS: Write = Write {
    name: "change the maximum key lifetime",
    setup: alice,
    op: |rig, _| {
        rig.admin(
            "PUT",
            "/api/v1/admin/settings",
            Some(json!({"auth_token_max_ttl_minutes": 600})),
        )
    },
    retry: Retry::Repeats,
    holder: Holder::Caller,
};

const ISSUE_KEY: Write = Write {
    name: "issue a key (admin)",
    setup: alice,
    op: |rig, _| {
        rig.admin(
            "POST",
            "/api/v1/admin/users/alice/api_key",
            Some(json!({"description": "ci", "ttl_minutes": 60})),
        )
    },
    retry: Retry::Unsafe,
    holder: Holder::Answer,
};

const ISSUE_OWN_KEY: Write = Write {
    name: "issue a key (self-service)",
    setup: alice,
    op: |rig, c| {
        rig.user(
            &c.token,
            "POST",
            "/api/v1/api_keys",
            Some(json!({"description": "laptop"})),
        )
    },
    retry: Retry::Unsafe,
    holder: Holder::Answer,
};

const ROTATE_KEY: Write = Write {
    name: "rotate a key with a grace period",
    setup: alice,
    op: |rig, c| {
        rig.user(
            &c.token,
            "POST",
            &format!("/api/v1/api_keys/{}/rotate", c.key_id),
            Some(json!({"grace_minutes": 10})),
        )
    },
    retry: Retry::Repeats,
    holder: Holder::Answer,
};

const ROTATE_KEY_NO_GRACE: Write = Write {
    name: "rotate a key without a grace period",
    setup: alice,
    op: |rig, c| {
        rig.user(
            &c.token,
            "POST",
            &format!("/api/v1/api_keys/{}/rotate", c.key_id),
            Some(json!({"grace_minutes": 0})),
        )
    },
    retry: Retry::Unsafe,
    holder: Holder::Nobody,
};

// The same writes as a careful client sends them, with an Idempotency-Key: the retry after a lost
// answer is answered from what the first attempt did.

const KEYED_CREATE_TENANT: Write = Write {
    name: "create a tenant, with an Idempotency-Key",
    setup: CREATE_TENANT.setup,
    op: |rig, _| {
        rig.keyed(
            None,
            "/api/v1/admin/tenants",
            json!({"name": "acme"}),
            "k-tenant",
        )
    },
    retry: Retry::Repeats,
    holder: Holder::Nobody,
};

const KEYED_ISSUE_KEY: Write = Write {
    name: "issue a key (admin), with an Idempotency-Key",
    setup: alice,
    op: |rig, _| {
        rig.keyed(
            None,
            "/api/v1/admin/users/alice/api_key",
            json!({"description": "ci", "ttl_minutes": 60}),
            "k-issue",
        )
    },
    retry: Retry::Repeats,
    holder: Holder::Answer,
};

const KEYED_ISSUE_OWN_KEY: Write = Write {
    name: "issue a key (self-service), with an Idempotency-Key",
    setup: alice,
    op: |rig, c| {
        rig.keyed(
            Some(&c.token),
            "/api/v1/api_keys",
            json!({"description": "laptop"}),
            "k-own",
        )
    },
    retry: Retry::Repeats,
    holder: Holder::Answer,
};

const KEYED_ROTATE_KEY: Write = Write {
    name: "rotate a key with a grace period, with an Idempotency-Key",
    setup: alice,
    op: |rig, c| {
        rig.keyed(
            Some(&c.token),
            &format!("/api/v1/api_keys/{}/rotate", c.key_id),
            json!({"grace_minutes": 10}),
            "k-rotate",
        )
    },
    retry: Retry::Repeats,
    holder: Holder::Answer,
};

const KEYED_ROTATE_KEY_NO_GRACE: Write = Write {
    name: "rotate a key without a grace period, with an Idempotency-Key",
    setup: alice,
    op: |rig, c| {
        rig.keyed(
            Some(&c.token),
            &format!("/api/v1/api_keys/{}/rotate", c.key_id),
            json!({"grace_minutes": 0}),
            "k-rotate-now",
        )
    },
    retry: Retry::Repeats,
    holder: Holder::Answer,
};

/// The writes a retry would repeat, each with an Idempotency-Key.
const KEYED: &[&Write] = &[
    &KEYED_CREATE_TENANT,
    &KEYED_ISSUE_KEY,
    &KEYED_ISSUE_OWN_KEY,
    &KEYED_ROTATE_KEY,
    &KEYED_ROTATE_KEY_NO_GRACE,
];

const REVOKE_KEY: Write = Write {
    name: "revoke a key (admin)",
    setup: |rig| {
        let c = alice(rig);
        rig.issue_key("alice", json!({"description": "second"}));
        c
    },
    op: |rig, c| {
        rig.admin(
            "DELETE",
            &format!("/api/v1/admin/users/alice/api_key/{}", c.key_id),
            None,
        )
    },
    retry: Retry::Refused(404),
    holder: Holder::Nobody,
};

const REVOKE_OWN_KEY: Write = Write {
    name: "revoke a key (self-service)",
    setup: |rig| {
        let mut c = alice(rig);
        let other = rig.issue_key("alice", json!({"description": "second"}));
        c.key_id = str_of(&other["id"]);
        c
    },
    op: |rig, c| {
        rig.user(
            &c.token,
            "DELETE",
            &format!("/api/v1/api_keys/{}", c.key_id),
            None,
        )
    },
    retry: Retry::Refused(404),
    holder: Holder::Caller,
};

const DELETE_USER: Write = Write {
    name: "delete a user (their keys + user + audit)",
    setup: |rig| {
        let c = alice(rig);
        rig.create_user("bob", Some(&c.tenant_id), Some("member"));
        rig.issue_key("bob", json!({}));
        rig.issue_key("bob", json!({"ttl_minutes": 5}));
        c
    },
    op: |rig, _| rig.admin("DELETE", "/api/v1/admin/users/bob", None),
    retry: Retry::Refused(404),
    holder: Holder::Caller,
};

const DELETE_TENANT: Write = Write {
    name:
        "delete a tenant (defaults, usage, connections, gateway keys, keys, users, tenant, audit)",
    setup: |rig| {
        let c = alice_connected(rig);
        rig.create_user("bob", Some(&c.tenant_id), Some("member"));
        rig.issue_key("bob", json!({}));
        data(rig.user(
            &c.token,
            "POST",
            "/api/v1/models/default",
            Some(json!({"llm_id": "gpt-4o@OpenAI", "tts_id": "@cf/myshell-ai/melotts@Builtin"})),
        ));
        let conn = keyward::providers::connection_id(&c.tenant_id, "OpenAI", "");
        block_on(
            rig.db()
                .batch(vec![providers::add_usage(&conn, "gpt-4o", 1234)]),
        )
        .expect("usage row");
        c
    },
    op: |rig, c| {
        rig.admin(
            "DELETE",
            &format!("/api/v1/admin/tenants/{}", c.tenant_id),
            None,
        )
    },
    retry: Retry::Refused(404),
    holder: Holder::Nobody,
};

const ADD_CONNECTION: Write = Write {
    name: "add a provider connection (verify: false)",
    setup: alice,
    op: |rig, c| {
        rig.user(
            &c.token,
            "POST",
            "/api/v1/models",
            Some(json!({"llm_factory": "OpenAI", "api_key": PROVIDER_KEY, "verify": false})),
        )
    },
    retry: Retry::Repeats,
    holder: Holder::Caller,
};

const REPLACE_CONNECTION: Write = Write {
    name: "replace a provider connection's key (verify: false)",
    setup: alice_connected,
    op: |rig, c| {
        rig.user(
            &c.token,
            "POST",
            "/api/v1/models",
            Some(json!({"llm_factory": "OpenAI", "api_key": "sk-faults-replaced-999", "verify": false})),
        )
    },
    retry: Retry::Repeats,
    holder: Holder::Caller,
};

const REMOVE_CONNECTION: Write = Write {
    name: "remove a provider connection (its defaults, usage, row, audit, defaults version)",
    setup: |rig| {
        let c = alice_connected(rig);
        data(rig.user(
            &c.token,
            "POST",
            "/api/v1/models/default",
            Some(
                json!({"llm_id": "gpt-4o@OpenAI", "embd_id": "@cf/baai/bge-base-en-v1.5@Builtin"}),
            ),
        ));
        let conn = keyward::providers::connection_id(&c.tenant_id, "OpenAI", "");
        block_on(
            rig.db()
                .batch(vec![providers::add_usage(&conn, "gpt-4o", 99)]),
        )
        .expect("usage row");
        c
    },
    op: |rig, c| {
        rig.user(
            &c.token,
            "DELETE",
            "/api/v1/models",
            Some(json!({"llm_factory": "OpenAI"})),
        )
    },
    retry: Retry::Refused(404),
    holder: Holder::Caller,
};

const SET_DEFAULTS: Write = Write {
    name: "set default models (defaults + version + audit)",
    setup: |rig| {
        let c = alice_connected(rig);
        data(rig.user(
            &c.token,
            "POST",
            "/api/v1/models/default",
            Some(json!({"tts_id": "@cf/myshell-ai/melotts@Builtin"})),
        ));
        c
    },
    op: |rig, c| {
        rig.user(
            &c.token,
            "POST",
            "/api/v1/models/default",
            Some(json!({
                "llm_id": "gpt-4o@OpenAI",
                "embd_id": "@cf/baai/bge-base-en-v1.5@Builtin",
                "tts_id": null
            })),
        )
    },
    retry: Retry::Repeats,
    holder: Holder::Caller,
};

const CREATE_AI_KEY: Write = Write {
    name: "create a gateway key",
    setup: alice_connected,
    op: |rig, c| {
        rig.user(
            &c.token,
            "POST",
            "/api/v1/ai_keys",
            Some(
                json!({"alias": "prod", "provider": "OpenAI", "model": "gpt-4o",
                        "api_key": GATEWAY_KEY, "input_limit": 500, "status": "enabled",
                        "expire_time": "2030-01-01T00:00:00Z"}),
            ),
        )
    },
    retry: Retry::Refused(409),
    holder: Holder::Caller,
};

const UPDATE_AI_KEY: Write = Write {
    name: "update a gateway key",
    setup: alice_connected,
    op: |rig, c| {
        rig.user(
            &c.token,
            "PUT",
            &format!("/api/v1/ai_keys/{}", c.ai_key_id),
            Some(
                json!({"alias": "renamed", "model": "gpt-4o-mini", "api_key": "sk-faults-new-77777",
                        "status": "enabled", "input_limit": 5, "expire_time": null}),
            ),
        )
    },
    retry: Retry::Repeats,
    holder: Holder::Caller,
};

const DELETE_AI_KEY: Write = Write {
    name: "delete a gateway key",
    setup: alice_connected,
    op: |rig, c| {
        rig.user(
            &c.token,
            "DELETE",
            &format!("/api/v1/ai_keys/{}", c.ai_key_id),
            None,
        )
    },
    retry: Retry::Refused(404),
    holder: Holder::Caller,
};

const SET_WEBHOOK: Write = Write {
    name: "set the tenant's webhook (sealed secret + audit)",
    setup: alice_connected,
    op: |rig, c| {
        rig.user(
            &c.token,
            "PUT",
            "/api/v1/tenant/webhook",
            Some(json!({"url": "http://127.0.0.1:9/hook", "secret": "a-webhook-secret-0123"})),
        )
    },
    retry: Retry::Repeats,
    holder: Holder::Caller,
};

const DELETE_WEBHOOK: Write = Write {
    name: "remove the tenant's webhook",
    setup: |rig| {
        let c = alice_connected(rig);
        data(rig.user(
            &c.token,
            "PUT",
            "/api/v1/tenant/webhook",
            Some(json!({"url": "http://127.0.0.1:9/hook"})),
        ));
        c
    },
    op: |rig, c| rig.user(&c.token, "DELETE", "/api/v1/tenant/webhook", None),
    retry: Retry::Refused(404),
    holder: Holder::Caller,
};

// Tenant creation under a configured default provider (api/seed.rs): the connection, its
// defaults and their audit entries are in the tenant's batch; and the admin route applying it to
// an existing tenant.

const CREATE_USER_SEEDED: Write = Write {
    name: "create a user without a tenant, under a default provider (tenant + connection + \
           defaults + user + audit rows)",
    setup: CREATE_USER.setup,
    op: CREATE_USER.op,
    retry: Retry::Refused(409),
    holder: Holder::Nobody,
};

const CREATE_TENANT_SEEDED: Write = Write {
    name: "create a tenant under a default provider, with an Idempotency-Key",
    setup: CREATE_TENANT.setup,
    op: KEYED_CREATE_TENANT.op,
    retry: Retry::Repeats,
    holder: Holder::Nobody,
};

const APPLY_DEFAULT_PROVIDER: Write = Write {
    name: "apply the default provider to an existing tenant",
    setup: |rig| {
        let c = alice(rig);
        // Created under the default provider, alice has it already: she removes it first.
        data(rig.user(
            &c.token,
            "DELETE",
            "/api/v1/models",
            Some(json!({"llm_factory": "OpenAI"})),
        ));
        c
    },
    op: |rig, c| {
        rig.admin(
            "POST",
            &format!("/api/v1/admin/tenants/{}/default_provider", c.tenant_id),
            None,
        )
    },
    retry: Retry::Refused(409),
    holder: Holder::Caller,
};

/// The writes run with a default provider configured.
const SEEDED: &[&Write] = &[
    &CREATE_USER_SEEDED,
    &CREATE_TENANT_SEEDED,
    &APPLY_DEFAULT_PROVIDER,
];

const ALL: &[&Write] = &[
    &CREATE_USER_SEEDED,
    &CREATE_TENANT_SEEDED,
    &APPLY_DEFAULT_PROVIDER,
    &CREATE_USER,
    &CREATE_MEMBER,
    &CREATE_TENANT,
    &PATCH_USER,
    &PUT_SETTINGS,
    &ISSUE_KEY,
    &ISSUE_OWN_KEY,
    &ROTATE_KEY,
    &ROTATE_KEY_NO_GRACE,
    &REVOKE_KEY,
    &REVOKE_OWN_KEY,
    &DELETE_USER,
    &DELETE_TENANT,
    &ADD_CONNECTION,
    &REPLACE_CONNECTION,
    &REMOVE_CONNECTION,
    &SET_DEFAULTS,
    &CREATE_AI_KEY,
    &UPDATE_AI_KEY,
    &DELETE_AI_KEY,
    &SET_WEBHOOK,
    &DELETE_WEBHOOK,
];

// ---------------------------------------------------------------------------------------------
// The check.
// ---------------------------------------------------------------------------------------------

/// What the faults did to one write.
struct Tally {
    /// Database calls the fault-free run makes.
    calls: usize,
    /// Faults injected before a call ran.
    faults: usize,
    /// Faults injected after a call ran and committed (its answer lost), each followed by a retry.
    lost: usize,
    /// How many faulty runs got each status.
    statuses: BTreeMap<u16, usize>,
    /// Faults raised inside the batch, by a trigger on one of the tables the write changes.
    in_batch: usize,
    /// The tables the whole change touches (the in-batch faults' targets).
    tables: Vec<String>,
}

/// Whether the core sees `msg` as an unexpected failure (not a constraint it maps to a 4xx).
fn unexpected(msg: &str) -> bool {
    matches!(DbError::from_message(msg), DbError::Other(_))
}

/// The answer to a request whose database call failed: a clean 500 or a 4xx, never a leak. An
/// unexpected database failure is never a 4xx: that would tell the client its request was wrong
/// (or its target absent) when the database only failed to answer.
fn assert_clean_failure(name: &str, at: usize, msg: &str, r: &Response) {
    let body = String::from_utf8_lossy(&r.body);
    let v = r.json_body();
    assert!(
        (400..600).contains(&r.status),
        "{name}: fault at call {at} ({msg}) answered {}: {body}",
        r.status
    );
    if r.status >= 500 {
        assert_eq!(r.status, 500, "{name}: fault at call {at}: {body}");
        assert_eq!(
            v,
            json!({"code": 100, "data": null, "message": "Internal error"}),
            "{name}: fault at call {at}"
        );
    } else {
        assert_eq!(v["data"], Json::Null, "{name}: fault at call {at}: {body}");
        assert!(v["code"].is_i64(), "{name}: fault at call {at}: {body}");
        assert!(
            !unexpected(msg),
            "{name}: the unexpected database failure at call {at} ({msg}) was answered {}, \
             a client error: {body}",
            r.status
        );
    }
    for leak in LEAKS {
        assert!(
            !body.contains(leak),
            "{name}: fault at call {at} ({msg}) leaks {leak:?}: {body}"
        );
    }
}

/// The user key the client holds after `answer` (the retry's), which must work.
fn assert_holder_can_work(w: &Write, rig: &Rig, ctx: &Ctx, answer: &Response, context: &str) {
    let held = match w.holder {
        Holder::Nobody => return,
        Holder::Caller => ctx.token.clone(),
        Holder::Answer => {
            assert_eq!(
                answer.status,
                200,
                "{}: {context}: the retry carries no token, so the client holds none that works: {}",
                w.name,
                String::from_utf8_lossy(&answer.body)
            );
            token(&answer.json_body()["data"])
        }
    };
    let me = rig.user(&held, "GET", "/api/v1/me", None);
    assert_eq!(
        me.status,
        200,
        "{}: {context}: the key the client holds does not work: {}",
        w.name,
        String::from_utf8_lossy(&me.body)
    );
}

/// Send the same request again on a database that holds `committed` (the state the lost attempt
/// left) and check what the retry did against the fault-free run (`full`, `full_keys`,
/// `full_counts`).
fn retry_after_lost_answer(
    w: &Write,
    rig: &Rig,
    ctx: &Ctx,
    committed: bool,
    (full, full_keys, full_counts): (&Snapshot, &Snapshot, &BTreeMap<String, usize>),
    at: usize,
) -> u16 {
    let context = format!(
        "retry after the answer to call {at} was lost ({})",
        if committed {
            "the change had committed"
        } else {
            "nothing had committed"
        }
    );
    let again = catch_unwind(AssertUnwindSafe(|| (w.op)(rig, ctx)))
        .unwrap_or_else(|_| panic!("{}: {context}: panicked", w.name));
    let body = String::from_utf8_lossy(&again.body).into_owned();
    match (committed, w.retry) {
        // Nothing happened yet: the retry is the first run, made with other random ids.
        (false, _) => {
            assert_eq!(again.status, 200, "{}: {context}: {body}", w.name);
            assert_eq!(
                &rig.counts(),
                full_counts,
                "{}: {context}: not the rows one run makes",
                w.name
            );
        }
        (true, Retry::Refused(status)) => {
            assert_eq!(again.status, status, "{}: {context}: {body}", w.name);
            assert_eq!(
                &rig.snapshot(),
                full,
                "{}: {context}: the refused retry changed something",
                w.name
            );
        }
        (true, Retry::Unsafe) => {
            assert!(again.status < 500, "{}: {context}: {body}", w.name);
            let conn = rig.db().conn.borrow();
            let broken: i64 = conn
                .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                    r.get(0)
                })
                .expect("foreign key check");
            assert_eq!(broken, 0, "{}: {context}: dangling references", w.name);
        }
        (true, Retry::Repeats) => {
            assert_eq!(again.status, 200, "{}: {context}: {body}", w.name);
            let keys = rig.keys();
            assert!(
                &keys == full_keys,
                "{}: {context}: rows made twice or lost; tables that differ from one run: {}",
                w.name,
                changed_tables(full_keys, &keys)
            );
        }
    }
    assert_holder_can_work(w, rig, ctx, &again, &context);
    again.status
}

fn inject_every_fault(w: &Write) -> Tally {
    // The fault-free run: how many calls, and what the whole change is.
    let rig = Rig::for_write(w);
    let ctx = (w.setup)(&rig);
    let before = rig.snapshot();
    let start = rig.calls();
    let ok = (w.op)(&rig, &ctx);
    assert_eq!(
        ok.status,
        200,
        "{}: fault-free run: {}",
        w.name,
        String::from_utf8_lossy(&ok.body)
    );
    assert!(
        ok.deferred.is_empty(),
        "{}: the operation defers a write; the setup should have used its key already",
        w.name
    );
    let calls = rig.calls() - start;
    let full = rig.snapshot();
    let full_keys = rig.keys();
    let full_counts = rig.counts();
    assert_ne!(
        before, full,
        "{}: the fault-free run changed nothing",
        w.name
    );
    let mut tally = Tally {
        calls,
        faults: 0,
        lost: 0,
        statuses: BTreeMap::new(),
        in_batch: 0,
        tables: before
            .iter()
            .filter(|(t, rows)| t.as_str() != "sqlite_sequence" && full.get(*t) != Some(rows))
            .map(|(t, _)| t.clone())
            .collect(),
    };

    // Before the call: the database never ran it.
    for msg in FAULTS {
        for at in 1..=calls {
            let rig = Rig::for_write(w);
            let ctx = (w.setup)(&rig);
            assert_eq!(
                rig.snapshot(),
                before,
                "{}: setup is not repeatable",
                w.name
            );
            rig.fail_at(at, msg);
            let r = catch_unwind(AssertUnwindSafe(|| (w.op)(&rig, &ctx)))
                .unwrap_or_else(|_| panic!("{}: fault at call {at} ({msg}) panicked", w.name));
            assert!(
                !rig.fault_pending(),
                "{}: fault at call {at} never fired",
                w.name
            );
            tally.faults += 1;
            assert_clean_failure(w.name, at, msg, &r);
            *tally.statuses.entry(r.status).or_default() += 1;
            let after = rig.snapshot();
            if after == full {
                // The change committed, then a later call failed: the server knew it had
                // committed, and a 500 would tell the client it may not have.
                assert!(
                    r.status < 500,
                    "{}: fault at call {at} ({msg}) was answered 500 after the change had \
                     committed; answer from what was written instead of failing after the commit",
                    w.name
                );
            } else {
                assert_eq!(
                    after,
                    before,
                    "{}: fault at call {at} ({msg}) left a partial write; changed: {}",
                    w.name,
                    changed_tables(&before, &after)
                );
            }
        }
    }
    // After the call: it ran and committed, and its answer was lost, as D1 may lose the answer
    // to a batch it committed. The server cannot know, so the answer is the generic 500; the
    // client then sends the same request again, which must not make anything twice or leave
    // the client without a working key.
    for msg in LOST {
        for at in 1..=calls {
            let rig = Rig::for_write(w);
            let ctx = (w.setup)(&rig);
            rig.lose_answer_at(at, msg);
            let r = catch_unwind(AssertUnwindSafe(|| (w.op)(&rig, &ctx))).unwrap_or_else(|_| {
                panic!("{}: lost answer at call {at} ({msg}) panicked", w.name)
            });
            assert!(
                !rig.fault_pending(),
                "{}: lost answer at call {at} never fired",
                w.name
            );
            tally.lost += 1;
            assert_clean_failure(w.name, at, msg, &r);
            assert_eq!(
                r.status, 500,
                "{}: a lost answer at call {at} is a failure the client cannot tell from any other",
                w.name
            );
            *tally.statuses.entry(r.status).or_default() += 1;
            let after = rig.snapshot();
            assert!(
                after == full || after == before,
                "{}: lost answer at call {at} ({msg}) left a partial write; changed: {}",
                w.name,
                changed_tables(&before, &after)
            );
            retry_after_lost_answer(
                w,
                &rig,
                &ctx,
                after == full,
                (&full, &full_keys, &full_counts),
                at,
            );
        }
    }
    // Inside the batch: a trigger aborts the first write to one of the changed tables, after the
    // batch's earlier statements ran. SqliteDb::batch is a transaction, as a D1 batch is; nothing
    // of the earlier statements may remain.
    for table in tally.tables.clone() {
        let rig = Rig::for_write(w);
        let ctx = (w.setup)(&rig);
        for kind in ["INSERT", "UPDATE", "DELETE"] {
            rig.db().sql(&format!(
                "CREATE TRIGGER fault_{kind} BEFORE {kind} ON \"{table}\" \
                 BEGIN SELECT RAISE(ABORT, '{}'); END;",
                FAULTS[0]
            ));
        }
        let r = catch_unwind(AssertUnwindSafe(|| (w.op)(&rig, &ctx)))
            .unwrap_or_else(|_| panic!("{}: a fault writing {table} panicked", w.name));
        tally.in_batch += 1;
        assert_clean_failure(w.name, 0, &format!("in batch, on {table}"), &r);
        assert_eq!(r.status, 500, "{}: a fault writing {table}", w.name);
        assert_eq!(
            rig.snapshot(),
            before,
            "{}: a fault writing {table} left a partial write",
            w.name
        );
    }
    eprintln!(
        "{}: {} database calls, {} faults injected before a call + {} answers lost after one \
         (each retried) + {} inside the batch, answers {:?}; whole change: {}",
        w.name,
        tally.calls,
        tally.faults,
        tally.lost,
        tally.in_batch,
        tally.statuses,
        changed_tables(&before, &full),
    );
    tally
}

fn check(w: &Write) {
    let t = inject_every_fault(w);
    assert_eq!(t.faults, t.calls * FAULTS.len());
    assert_eq!(t.lost, t.calls * LOST.len());
    assert_eq!(t.in_batch, t.tables.len());
}

#[test]
fn creating_a_user_without_a_tenant_writes_tenant_user_and_audit_entirely_or_not_at_all() {
    check(&CREATE_USER);
}

#[test]
fn creating_a_tenant_under_a_default_provider_writes_its_connection_and_defaults_entirely_or_not_at_all(
) {
    check(&CREATE_USER_SEEDED);
    check(&CREATE_TENANT_SEEDED);
}

#[test]
fn applying_the_default_provider_to_a_tenant_survives_a_failure_at_each_database_call() {
    check(&APPLY_DEFAULT_PROVIDER);
}

#[test]
fn creating_a_user_in_an_existing_tenant_survives_a_failure_at_each_database_call() {
    check(&CREATE_MEMBER);
}

#[test]
fn creating_a_tenant_survives_a_failure_at_each_database_call() {
    check(&CREATE_TENANT);
}

#[test]
fn changing_a_user_survives_a_failure_at_each_database_call() {
    check(&PATCH_USER);
}

#[test]
fn changing_the_settings_survives_a_failure_at_each_database_call() {
    check(&PUT_SETTINGS);
}

#[test]
fn issuing_a_key_survives_a_failure_at_each_database_call() {
    check(&ISSUE_KEY);
    check(&ISSUE_OWN_KEY);
}

#[test]
fn rotating_a_key_survives_a_failure_at_each_database_call() {
    check(&ROTATE_KEY);
    check(&ROTATE_KEY_NO_GRACE);
}

#[test]
fn revoking_a_key_survives_a_failure_at_each_database_call() {
    check(&REVOKE_KEY);
    check(&REVOKE_OWN_KEY);
}

#[test]
fn deleting_a_user_removes_their_keys_and_row_entirely_or_not_at_all() {
    check(&DELETE_USER);
}

#[test]
fn deleting_a_tenant_removes_everything_it_owns_entirely_or_not_at_all() {
    check(&DELETE_TENANT);
}

#[test]
fn adding_a_provider_connection_survives_a_failure_at_each_database_call() {
    check(&ADD_CONNECTION);
    check(&REPLACE_CONNECTION);
}

#[test]
fn removing_a_provider_connection_takes_its_defaults_and_usage_entirely_or_not_at_all() {
    check(&REMOVE_CONNECTION);
}

#[test]
fn setting_default_models_survives_a_failure_at_each_database_call() {
    check(&SET_DEFAULTS);
}

#[test]
fn creating_updating_and_deleting_a_gateway_key_survive_a_failure_at_each_database_call() {
    check(&CREATE_AI_KEY);
    check(&UPDATE_AI_KEY);
    check(&DELETE_AI_KEY);
}

#[test]
fn retrying_a_tenant_creation_with_its_idempotency_key_after_a_lost_answer_makes_no_second_tenant()
{
    check(&KEYED_CREATE_TENANT);
}

#[test]
fn retrying_a_key_issue_with_its_idempotency_key_after_a_lost_answer_makes_no_second_key() {
    check(&KEYED_ISSUE_KEY);
    check(&KEYED_ISSUE_OWN_KEY);
}

#[test]
fn retrying_a_rotation_with_its_idempotency_key_after_a_lost_answer_leaves_a_working_secret() {
    check(&KEYED_ROTATE_KEY);
    check(&KEYED_ROTATE_KEY_NO_GRACE);
}

// ---------------------------------------------------------------------------------------------
// The cron purge: single statements, each atomic, run in order; idempotent.
// ---------------------------------------------------------------------------------------------

/// Expired keys, ended grace periods and expired gateway keys, plus rows that must stay.
fn purge_setup(rig: &Rig) {
    bystander(rig);
    let o = rig.owner("alice");
    rig.issue_key("alice", json!({"ttl_minutes": 1}));
    rig.issue_key("alice", json!({"ttl_minutes": 2}));
    rig.issue_key("alice", json!({"ttl_minutes": 600}));
    let rotated = rig.issue_key("alice", json!({}));
    data(rig.user(
        &token(&rotated),
        "POST",
        &format!("/api/v1/api_keys/{}/rotate", str_of(&rotated["id"])),
        Some(json!({"grace_minutes": 1})),
    ));
    rig.create_ai_key(
        &o.token,
        "expiring",
        json!({"status": "enabled", "expire_time": "2026-11-24T00:01:00Z"}),
    );
    rig.create_ai_key(
        &o.token,
        "lasting",
        json!({"status": "enabled", "expire_time": "2030-01-01T00:00:00Z"}),
    );
    // An Idempotency-Key request made now, which stays, and one from before its window ended.
    data(
        rig.send(
            Request::new("POST", "/api/v1/admin/tenants")
                .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
                .header("idempotency-key", "purge-stays")
                .json(&json!({"name": "keyed"})),
        ),
    );
    rig.db().sql(&format!(
        "INSERT INTO idempotency_keys (scope, key_hash, request, target, created_at) \
         VALUES ('admin', 'old', 'r', 't', {})",
        rig.app.platform.now_ms() - idempotency::WINDOW_MS
    ));
    rig.advance_minutes(5);
}

/// The states after the first 0, 1, 2, 3 and 4 of the purge's statements, computed by running
/// the statements by hand.
fn purge_prefix_states() -> Vec<Snapshot> {
    let rig = Rig::new();
    purge_setup(&rig);
    let now = rig.app.platform.now_ms();
    let mut states = vec![rig.snapshot()];
    for stmt in [
        key_store::purge_expired(now, PURGE_CHUNK),
        key_store::purge_ended_grace(now, PURGE_CHUNK),
        ai_keys::disable_expired(now, PURGE_CHUNK),
        idempotency::purge(now - idempotency::WINDOW_MS, PURGE_CHUNK),
    ] {
        block_on(rig.db().execute(stmt)).expect("purge statement");
        states.push(rig.snapshot());
    }
    states
}

fn purge(rig: &Rig) -> Result<PurgeReport, DbError> {
    catch_unwind(AssertUnwindSafe(|| block_on(rig.app.purge()))).expect("the purge panicked")
}

#[test]
fn a_purge_failing_at_any_statement_keeps_what_it_did_and_the_next_run_completes_it() {
    let (faults, lost) = inject_purge_faults();
    eprintln!(
        "cron purge: {faults} faults injected before a statement, {lost} answers lost after one"
    );
}

/// Fail each of the purge's calls in turn, before it runs and after it committed; returns how
/// many faults of each kind were injected.
fn inject_purge_faults() -> (usize, usize) {
    let states = purge_prefix_states();
    let rig = Rig::new();
    purge_setup(&rig);
    let start = rig.calls();
    let report = purge(&rig).expect("fault-free purge");
    let calls = rig.calls() - start;
    assert_eq!(
        (
            report.expired_keys,
            report.ended_grace,
            report.disabled_gateway_keys,
            report.forgotten_requests
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(calls, 4, "one statement per kind when each fits one chunk");
    assert_eq!(rig.snapshot(), states[4]);

    let mut faults = 0;
    for msg in FAULTS {
        for at in 1..=calls {
            let rig = Rig::new();
            purge_setup(&rig);
            assert_eq!(rig.snapshot(), states[0], "setup is not repeatable");
            rig.fail_at(at, msg);
            let failed = purge(&rig);
            assert!(!rig.fault_pending(), "fault at call {at} never fired");
            faults += 1;
            assert!(
                failed.is_err(),
                "fault at call {at} reported success: {failed:?}"
            );
            assert_eq!(
                rig.snapshot(),
                states[at - 1],
                "fault at call {at} ({msg}): not exactly the statements before it applied"
            );
            let again = purge(&rig).expect("the next run");
            assert_eq!(
                rig.snapshot(),
                states[4],
                "the next run after a fault at {at}"
            );
            // What the failed run had done before the failing statement is not done again.
            let mut expect_now = vec![2, 1, 1, 1];
            expect_now.iter_mut().take(at - 1).for_each(|n| *n = 0);
            assert_eq!(
                vec![
                    again.expired_keys,
                    again.ended_grace,
                    again.disabled_gateway_keys,
                    again.forgotten_requests
                ],
                expect_now,
                "the next run after a fault at {at} does only what was left"
            );
        }
    }
    assert_eq!(faults, calls * FAULTS.len());

    // The statement ran and committed, and its answer was lost: the run stops there with an
    // error, the statement's work stays, and the next run does exactly what is left.
    let mut lost = 0;
    for msg in LOST {
        for at in 1..=calls {
            let rig = Rig::new();
            purge_setup(&rig);
            rig.lose_answer_at(at, msg);
            let failed = purge(&rig);
            assert!(!rig.fault_pending(), "lost answer at call {at} never fired");
            lost += 1;
            assert!(
                failed.is_err(),
                "lost answer at call {at} reported success: {failed:?}"
            );
            assert_eq!(
                rig.snapshot(),
                states[at],
                "lost answer at call {at} ({msg}): not exactly the statements up to it applied"
            );
            let again = purge(&rig).expect("the next run");
            assert_eq!(
                rig.snapshot(),
                states[4],
                "the next run after a lost answer at {at}"
            );
            let mut expect_now = vec![2, 1, 1, 1];
            expect_now.iter_mut().take(at).for_each(|n| *n = 0);
            assert_eq!(
                vec![
                    again.expired_keys,
                    again.ended_grace,
                    again.disabled_gateway_keys,
                    again.forgotten_requests
                ],
                expect_now,
                "the next run after a lost answer at {at} does only what was left"
            );
        }
    }
    assert_eq!(lost, calls * LOST.len());
    (faults, lost)
}

// ---------------------------------------------------------------------------------------------
// The reads: a database failure is a 500, never "not found", never a partial answer.
// ---------------------------------------------------------------------------------------------

/// A tenant with every kind of row a read can show.
fn read_setup(rig: &Rig) -> Ctx {
    let c = alice_connected(rig);
    rig.create_user("bob", Some(&c.tenant_id), Some("member"));
    rig.issue_key("bob", json!({"description": "bob's"}));
    data(rig.user(
        &c.token,
        "POST",
        "/api/v1/models/default",
        Some(json!({"llm_id": "gpt-4o@OpenAI"})),
    ));
    data(rig.user(
        &c.token,
        "PUT",
        "/api/v1/tenant/webhook",
        Some(json!({"url": "http://127.0.0.1:9/hook"})),
    ));
    c
}

/// Every GET route of the route table, with its path parameters filled from `c`, and whether it
/// is the relay's (which answers in OpenAI's error shape).
fn read_requests(c: &Ctx) -> Vec<(String, bool)> {
    keyward::api::routes::ROUTES
        .iter()
        .filter(|route| route.method == keyward::api::routes::Method::Get)
        .map(|route| {
            let template = route.path;
            let path = template
                .split('/')
                .map(|seg| match seg {
                    "{tenant_id}" => c.tenant_id.clone(),
                    "{username}" => "alice".to_owned(),
                    "{id}" if template.starts_with("/api/v1/ai_keys/") => c.ai_key_id.clone(),
                    "{id}" => c.key_id.clone(),
                    s if s.starts_with('{') => {
                        panic!("{template}: teach read_requests the parameter {s}")
                    }
                    s => s.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("/");
            (path, route.auth == keyward::api::routes::Auth::RelayKey)
        })
        .collect()
}

fn read(rig: &Rig, c: &Ctx, path: &str) -> Response {
    if path.starts_with("/api/v1/admin/") {
        rig.admin("GET", path, None)
    } else {
        rig.user(&c.token, "GET", path, None)
    }
}

/// Fail each call of every read, before it runs and with its answer lost; returns the number of
/// faults injected in each way. Every one must be answered 500 with nothing of the failure in
/// the body.
fn inject_read_faults() -> (usize, usize) {
    let (mut faults, mut lost) = (0, 0);
    let mut reads = 0;
    for (path, relay) in read_requests(&read_setup(&Rig::new())) {
        let rig = Rig::new();
        let ctx = read_setup(&rig);
        let start = rig.calls();
        let ok = read(&rig, &ctx, &path);
        assert_eq!(
            ok.status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&ok.body)
        );
        let calls = rig.calls() - start;
        reads += 1;
        for msg in LOST {
            for at in 1..=calls {
                for lose in [false, true] {
                    let rig = Rig::new();
                    let ctx = read_setup(&rig);
                    let before = rig.snapshot();
                    if lose {
                        rig.lose_answer_at(at, msg);
                    } else {
                        rig.fail_at(at, msg);
                    }
                    let r = catch_unwind(AssertUnwindSafe(|| read(&rig, &ctx, &path)))
                        .unwrap_or_else(|_| panic!("GET {path}: fault at call {at} panicked"));
                    assert!(
                        !rig.fault_pending(),
                        "GET {path}: fault at call {at} never fired"
                    );
                    if lose {
                        lost += 1;
                    } else {
                        faults += 1;
                    }
                    let name = format!("GET {path}");
                    if relay {
                        let body = String::from_utf8_lossy(&r.body);
                        assert_eq!(r.status, 500, "{name}: fault at call {at}: {body}");
                        assert_eq!(
                            r.json_body()["error"]["type"],
                            "server_error",
                            "{name}: {body}"
                        );
                        for leak in LEAKS {
                            assert!(!body.contains(leak), "{name}: leaks {leak:?}: {body}");
                        }
                    } else {
                        assert_clean_failure(&name, at, msg, &r);
                        assert_eq!(
                            r.status, 500,
                            "{name}: a database failure at call {at} is not the client's fault"
                        );
                    }
                    assert_eq!(
                        rig.snapshot(),
                        before,
                        "{name}: a failed read wrote something"
                    );
                }
            }
        }
    }
    eprintln!(
        "reads: {reads} GET routes, {faults} faults injected before a call and {lost} answers lost \
         after one, every one answered 500"
    );
    (faults, lost)
}

#[test]
fn every_read_answers_a_database_failure_with_a_500_not_a_404_or_an_empty_list() {
    let (faults, lost) = inject_read_faults();
    assert!(faults > 0 && faults == lost);
}

// ---------------------------------------------------------------------------------------------
// The cache.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_failing_cache_never_fails_setting_or_reading_default_models() {
    let t = T::new();
    let (_, k) = t.user_with_key("cachey");
    let tok = token(&k);
    let r = t.user(
        &tok,
        "POST",
        "/api/v1/models",
        Some(json!({"llm_factory": "OpenAI", "api_key": PROVIDER_KEY, "verify": false})),
    );
    assert_eq!(r.status, 200);
    let cache = &t.app.platform.cache;
    let get = |expect_llm: Json| {
        let r = t.user(&tok, "GET", "/api/v1/models/default", None);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json_body()["data"]["llm_id"], expect_llm);
    };
    let set = |body: Json| {
        let r = t.user(&tok, "POST", "/api/v1/models/default", Some(body));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    };
    let mut failing_requests = 0;

    // Cached while the cache works: the entry for the current version says "unset".
    get(Json::Null);
    assert_eq!(cache.map.borrow().len(), 1);

    cache.failing.set(true);
    set(json!({"llm_id": "gpt-4o@OpenAI"}));
    get(json!("gpt-4o@OpenAI"));
    get(json!("gpt-4o@OpenAI"));
    failing_requests += 3;

    // Back: the stale entry of the old version is never read.
    cache.failing.set(false);
    get(json!("gpt-4o@OpenAI"));
    assert_eq!(cache.map.borrow().len(), 2);

    cache.failing.set(true);
    set(json!({"llm_id": null}));
    get(Json::Null);
    set(json!({"llm_id": "gpt-4o@OpenAI", "embd_id": "@cf/baai/bge-base-en-v1.5@Builtin"}));
    get(json!("gpt-4o@OpenAI"));
    failing_requests += 4;

    cache.failing.set(false);
    get(json!("gpt-4o@OpenAI"));
    eprintln!("defaults with a failing cache: {failing_requests} requests served, none failed");
}

// ---------------------------------------------------------------------------------------------
// The total, and the one finding kept as a reproducer.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_multi_step_write_takes_a_failure_at_each_database_call_and_the_total_is_printed() {
    let (mut at_calls, mut lost, mut in_batch, mut writes) = (0, 0, 0, 0);
    // Each write on its own thread with its own databases: the same work as the tests above,
    // in a fraction of the time.
    let (tallies, (purge, purge_lost), reads) = std::thread::scope(|s| {
        let writes: Vec<_> = ALL
            .iter()
            .chain(KEYED)
            .map(|w| s.spawn(move || inject_every_fault(w)))
            .collect();
        let purge = s.spawn(inject_purge_faults);
        let reads = s.spawn(inject_read_faults);
        (
            writes
                .into_iter()
                .map(|h| h.join().expect("a write's faults"))
                .collect::<Vec<_>>(),
            purge.join().expect("the purge's faults"),
            reads.join().expect("the reads' faults"),
        )
    });
    for t in tallies {
        at_calls += t.faults;
        lost += t.lost;
        in_batch += t.in_batch;
        writes += 1;
    }
    let (reads, reads_lost) = reads;
    let before = at_calls + purge + reads;
    let after = lost + purge_lost + reads_lost;
    let total = before + after + in_batch;
    eprintln!(
        "faults injected: {total} in total. Before the call ran: {before} ({at_calls} in {writes} \
         HTTP writes, {purge} in the cron purge, {reads} in the reads). After the call committed, \
         its answer lost: {after} ({lost} in the writes, each then retried; {purge_lost} in the \
         purge; {reads_lost} in the reads). Inside a batch, after its earlier statements ran: \
         {in_batch}."
    );
    assert!(total > 0);
}

/// A rotation that fails leaves the caller's secret working, and one that succeeds hands over the
/// new one: never a key whose only valid secret nobody holds. (Found by this file: `rotate_key`
/// used to read the row back after committing, so a failed read answered 500 after the old
/// secret was gone; fixed in 1517608 by reading before the commit.)
#[test]
fn a_failed_rotation_never_leaves_a_key_without_a_working_secret() {
    let calls = inject_every_fault(&ROTATE_KEY_NO_GRACE).calls;
    let mut faults = 0;
    for msg in FAULTS {
        for at in 1..=calls {
            let rig = Rig::new();
            let c = (ROTATE_KEY_NO_GRACE.setup)(&rig);
            rig.fail_at(at, msg);
            let r = (ROTATE_KEY_NO_GRACE.op)(&rig, &c);
            faults += 1;
            let holds = if r.status == 200 {
                token(&r.json_body()["data"])
            } else {
                c.token.clone()
            };
            assert_eq!(
                rig.user(&holds, "GET", "/api/v1/me", None).status,
                200,
                "fault at call {at} ({msg}) answered {} and left the caller no working secret",
                r.status
            );
        }
    }
    eprintln!("rotation without grace: {faults} faults, a working secret after each");
}
