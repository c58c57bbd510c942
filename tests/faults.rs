//! Fault injection over real SQLite: every multi-step write is run once to count its database
//! calls, then once per call index with that call failing, on a fresh instance each time. The
//! answer must be a clean 5xx (500, code 100, a generic message, no SQL or driver text) or a 4xx,
//! never a panic, and the database must afterwards hold either the whole change or none of it
//! (SECURITY.md promises 4 and 5: multi-row writes are one atomic D1 batch). The cron purge is a
//! sequence of single atomic statements, so a failure leaves a prefix of them applied and the next
//! run completes it. A failing cache never fails setting or reading the default models.
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
use keyward::store::{ai_keys, keys as key_store, providers, Db, DbError, Platform};
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

    fn fault_pending(&self) -> bool {
        self.db().fail_on_call.get().is_some()
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
};

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
};

const ALL: &[&Write] = &[
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
];

// ---------------------------------------------------------------------------------------------
// The check.
// ---------------------------------------------------------------------------------------------

/// What the faults did to one write.
struct Tally {
    /// Database calls the fault-free run makes.
    calls: usize,
    faults: usize,
    /// Fault index and message of answers that were 5xx although the change was committed.
    committed_but_failed: Vec<(usize, &'static str)>,
    /// Fault index and status of unexpected database failures answered with a 4xx.
    answered_4xx: Vec<(usize, u16)>,
    /// How many faulty runs got each status.
    statuses: BTreeMap<u16, usize>,
    /// Faults raised inside the batch, by a trigger on one of the tables the write changes.
    in_batch: usize,
    /// The tables the whole change touches (the in-batch faults' targets).
    tables: Vec<String>,
}

/// The answer to a request whose database call failed: a clean 500 or a 4xx, never a leak.
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
    }
    for leak in LEAKS {
        assert!(
            !body.contains(leak),
            "{name}: fault at call {at} ({msg}) leaks {leak:?}: {body}"
        );
    }
}

fn inject_every_fault(w: &Write) -> Tally {
    // The fault-free run: how many calls, and what the whole change is.
    let rig = Rig::new();
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
    assert_ne!(
        before, full,
        "{}: the fault-free run changed nothing",
        w.name
    );
    let mut tally = Tally {
        calls,
        faults: 0,
        committed_but_failed: Vec::new(),
        answered_4xx: Vec::new(),
        statuses: BTreeMap::new(),
        in_batch: 0,
        tables: before
            .iter()
            .filter(|(t, rows)| t.as_str() != "sqlite_sequence" && full.get(*t) != Some(rows))
            .map(|(t, _)| t.clone())
            .collect(),
    };

    for msg in FAULTS {
        for at in 1..=calls {
            let rig = Rig::new();
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
            if r.status < 500 && DbError::from_message(msg) == DbError::Other(msg.into()) {
                tally.answered_4xx.push((at, r.status));
            }
            let after = rig.snapshot();
            if after == full {
                if r.status >= 500 {
                    tally.committed_but_failed.push((at, msg));
                }
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
    // Inside the batch: a trigger aborts the first write to one of the changed tables, after the
    // batch's earlier statements ran. SqliteDb::batch is a transaction, as a D1 batch is; nothing
    // of the earlier statements may remain.
    for table in tally.tables.clone() {
        let rig = Rig::new();
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
        "{}: {} database calls, {} faults injected + {} inside the batch, answers {:?}; \
         whole change: {}{}{}",
        w.name,
        tally.calls,
        tally.faults,
        tally.in_batch,
        tally.statuses,
        changed_tables(&before, &full),
        if tally.answered_4xx.is_empty() {
            String::new()
        } else {
            format!(
                "; unexpected failures answered 4xx (call, status): {:?}",
                tally.answered_4xx
            )
        },
        if tally.committed_but_failed.is_empty() {
            String::new()
        } else {
            format!(
                "; answered 500 after the change was committed at call(s) {:?}",
                tally
                    .committed_but_failed
                    .iter()
                    .map(|(at, _)| *at)
                    .collect::<std::collections::BTreeSet<_>>()
            )
        }
    );
    tally
}

fn check(w: &Write) {
    let t = inject_every_fault(w);
    assert_eq!(t.faults, t.calls * FAULTS.len());
    assert_eq!(t.in_batch, t.tables.len());
}

#[test]
fn creating_a_user_without_a_tenant_writes_tenant_user_and_audit_entirely_or_not_at_all() {
    check(&CREATE_USER);
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
    rig.advance_minutes(5);
}

/// The states after the first 0, 1, 2 and 3 of the purge's statements, computed by running the
/// statements by hand.
fn purge_prefix_states() -> Vec<Snapshot> {
    let rig = Rig::new();
    purge_setup(&rig);
    let now = rig.app.platform.now_ms();
    let mut states = vec![rig.snapshot()];
    for stmt in [
        key_store::purge_expired(now, PURGE_CHUNK),
        key_store::purge_ended_grace(now, PURGE_CHUNK),
        ai_keys::disable_expired(now, PURGE_CHUNK),
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
    let faults = inject_purge_faults();
    eprintln!("cron purge: {faults} faults injected");
}

/// Fail each of the purge's calls in turn; returns how many faults were injected.
fn inject_purge_faults() -> usize {
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
            report.disabled_gateway_keys
        ),
        (2, 1, 1)
    );
    assert_eq!(calls, 3, "one statement per kind when each fits one chunk");
    assert_eq!(rig.snapshot(), states[3]);

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
                states[3],
                "the next run after a fault at {at}"
            );
            // What the failed run had done before the failing statement is not done again.
            let mut expect_now = vec![2, 1, 1];
            expect_now.iter_mut().take(at - 1).for_each(|n| *n = 0);
            assert_eq!(
                vec![
                    again.expired_keys,
                    again.ended_grace,
                    again.disabled_gateway_keys
                ],
                expect_now,
                "the next run after a fault at {at} does only what was left"
            );
        }
    }
    assert_eq!(faults, calls * FAULTS.len());
    faults
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
    let (mut at_calls, mut in_batch, mut writes) = (0, 0, 0);
    for w in ALL {
        let t = inject_every_fault(w);
        at_calls += t.faults;
        in_batch += t.in_batch;
        writes += 1;
    }
    let purge = inject_purge_faults();
    let total = at_calls + in_batch + purge;
    eprintln!(
        "faults injected: {total} in total = {at_calls} failing database calls + {in_batch} \
         failing statements inside a batch, over {writes} HTTP writes, + {purge} in the cron purge"
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
