//! Usage history over real SQLite and the stand-in on 127.0.0.1: per hour and per day, per
//! gateway key, per model and for the tenant, whether a call was counted by a ledger (gathered,
//! then flushed as one batch) or on its own; the counters of `GET /api/v1/ai_keys` and
//! `GET /api/v1/models` stay right either way; bad parameters are 400s naming them.
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;
#[path = "common/standin_owner.rs"]
mod standin_owner;

use common::*;
use keyward::api::http::Response;
use serde_json::{json, Value};
use standin_owner::{setup, Setup};

impl Setup {
    /// A chat call's status; the stand-in answers it with 5 input and 5 output tokens.
    fn status(&self, model: &str) -> u16 {
        self.chat(model, json!({})).status
    }
    fn get(&self, path: &str) -> Response {
        self.t.user(&self.tok, "GET", path, None)
    }
    fn page(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "{path}: {}", text(&r));
        r.json_body()["data"].clone()
    }
}

/// `(start, requests, input, output, rejected)` of each item.
fn points(page: &Value) -> Vec<(String, u64, u64, u64, u64)> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let n = |f: &str| p[f].as_u64().unwrap();
            (
                p["start"].as_str().unwrap().to_owned(),
                n("requests"),
                n("input_tokens"),
                n("output_tokens"),
                n("rejected"),
            )
        })
        .collect()
}

fn p(start: &str, requests: u64, rejected: u64) -> (String, u64, u64, u64, u64) {
    (start.into(), requests, 5 * requests, 5 * requests, rejected)
}

#[test]
fn usage_history_reads_back_per_hour_and_day_the_calls_made_counted_or_not() {
    let s = setup();
    // The test clock starts at 2026-11-24T00:00:00Z.
    let limited = s.key("limited", json!({"rpm_limit": 2}));
    let free = s.key("free", json!({}));
    assert_eq!(s.status("limited"), 200);
    assert_eq!(s.status("limited"), 200);
    assert_eq!(s.status("limited"), 429);
    assert_eq!(s.status("free"), 200);
    s.t.advance_minutes(90);
    assert_eq!(s.status("limited"), 200);
    assert_eq!(s.status("standin-chat@OpenAI-API-Compatible"), 200);
    s.t.advance_minutes(24 * 60);
    assert_eq!(s.status("free"), 200);

    let range = "from=2026-11-24T00:00:00Z&to=2026-11-26T00:00:00Z";
    let hours = s.page(&format!("/api/v1/ai_keys/{limited}/usage?{range}"));
    assert_eq!(hours["granularity"], "hour");
    assert_eq!(
        points(&hours),
        [
            p("2026-11-24T00:00:00Z", 2, 1),
            p("2026-11-24T01:00:00Z", 1, 0)
        ]
    );
    assert_eq!(hours["total"], 2);
    let days = s.page(&format!(
        "/api/v1/ai_keys/{free}/usage?granularity=day&{range}"
    ));
    assert_eq!(
        points(&days),
        [
            p("2026-11-24T00:00:00Z", 1, 0),
            p("2026-11-25T00:00:00Z", 1, 0)
        ]
    );
    let tenant = s.page(&format!("/api/v1/usage?granularity=day&{range}"));
    assert_eq!(
        points(&tenant),
        [
            p("2026-11-24T00:00:00Z", 5, 1),
            p("2026-11-25T00:00:00Z", 1, 0)
        ]
    );
    // Gateway keys count under their provider's model too.
    let model = s.page(&format!(
        "/api/v1/usage?model=standin-chat@OpenAI-API-Compatible&{range}"
    ));
    assert_eq!(points(&model).iter().map(|p| p.1).sum::<u64>(), 6);
    // Paged, oldest first.
    let first = s.page(&format!("/api/v1/usage?{range}&page_size=2"));
    let second = s.page(&format!("/api/v1/usage?{range}&page_size=2&page=2"));
    assert_eq!(first["total"], 3);
    assert_eq!(points(&first).len(), 2);
    assert_eq!(points(&second), [p("2026-11-25T01:00:00Z", 1, 0)]);

    // The counters the lists show agree with the history, whichever way a call was recorded.
    let k = s.page(&format!("/api/v1/ai_keys/{limited}"));
    assert_eq!(
        (&k["used_input_tokens"], &k["used_output_tokens"]),
        (&json!(15), &json!(15))
    );
    assert_eq!(k["pool"][0]["requests"], 3);
    let f = s.page(&format!("/api/v1/ai_keys/{free}"));
    assert_eq!(f["used_input_tokens"], 10);
    let models = s.page("/api/v1/models");
    let used = models["OpenAI-API-Compatible"]["llm"][0]["used_token"].clone();
    assert_eq!(used, 60, "{models}");
}

#[test]
fn bad_history_parameters_are_400s_naming_them_and_a_foreign_key_is_a_404() {
    let s = setup();
    let id = s.key("k", json!({}));
    for (query, want) in [
        ("granularity=week", "granularity: must be hour or day"),
        ("from=yesterday", "from: must be an RFC 3339 time"),
        ("to=2026-13-01T00:00:00Z", "to: must be an RFC 3339 time"),
        (
            "from=2026-11-24T00:00:00Z&to=2026-11-24T00:00:00Z",
            "from must be before to",
        ),
        (
            "page_size=0",
            "page_size: must be an integer from 1 to 1000",
        ),
        (
            "page_size=1001",
            "page_size: must be an integer from 1 to 1000",
        ),
        ("page=-1", "page: must be an integer from 1 to 1000000"),
        ("page_size=", "page_size: must be an integer from 1 to 1000"),
        ("page=", "page: must be an integer from 1 to 1000000"),
    ] {
        for path in [
            format!("/api/v1/usage?{query}"),
            format!("/api/v1/ai_keys/{id}/usage?{query}"),
        ] {
            let r = s.get(&path);
            assert_eq!(r.status, 400, "{path}");
            let m = r.json_body()["message"].as_str().unwrap().to_owned();
            assert!(m.contains(want), "{path}: {m}");
        }
    }
    let long = "m".repeat(257);
    assert_eq!(s.get(&format!("/api/v1/usage?model={long}")).status, 400);
    let (_, other) = s.t.user_with_key("other");
    let r = s.t.user(
        &token(&other),
        "GET",
        &format!("/api/v1/ai_keys/{id}/usage"),
        None,
    );
    assert_eq!(r.status, 404);
}

#[test]
fn a_call_counted_on_its_own_adds_to_its_hour_and_its_day_in_one_statement() {
    use keyward::limits::{Source, Used};
    let t = T::new();
    let user = t.create_user("owner", None, None);
    let tenant = user["tenant_id"].as_str().unwrap().to_owned();
    let source = Source {
        tenant_id: tenant.clone(),
        model: "m@OpenAI".into(),
        ..Source::default()
    };
    let now = START_MS + 90 * 60_000;
    let stmts = keyward::store::usage::record_call(
        &source,
        Used {
            input: 3,
            output: 4,
        },
        now,
    );
    assert_eq!(stmts.len(), 1, "one statement for both rows");
    for _ in 0..2 {
        block_on(keyward::store::Db::batch(t.db(), stmts.clone())).unwrap();
    }
    let row = |g: &str| {
        t.db().count(&format!(
            "SELECT requests * 10000 + input_tokens * 100 + output_tokens FROM usage_buckets \
             WHERE tenant_id = '{tenant}' AND granularity = '{g}'"
        ))
    };
    assert_eq!(row("hour"), 2 * 10000 + 6 * 100 + 8);
    assert_eq!(row("day"), 2 * 10000 + 6 * 100 + 8);
    assert_eq!(t.db().count("SELECT COUNT(*) FROM usage_buckets"), 2);
}
