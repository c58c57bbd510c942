//! Limits over time on the relay, over real SQLite, the in-memory ledgers on the test clock and
//! the real stand-in on 127.0.0.1: reservations before forwarding, 429s with `Retry-After`,
//! `use_anyway`, settlement whole and streamed, release on failure, the tenant's limits on top of
//! the key's, and failing closed when a ledger cannot be reached.
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;
#[path = "common/standin_owner.rs"]
mod standin_owner;

use common::*;
use keyward::api::http::Response;
use keyward::limits::{Ledger, Scope};
use serde_json::json;
use standin::FAILING_KEY;
use standin_owner::{setup, Setup};

impl Setup {
    fn chats_received(&self) -> usize {
        self.s
            .requests()
            .iter()
            .filter(|q| q.path.ends_with("/chat/completions"))
            .count()
    }
    fn ledger(&self, scope: Scope) -> Ledger {
        self.t
            .app
            .platform
            .counters
            .ledgers
            .borrow()
            .get(&scope)
            .cloned()
            .unwrap_or_default()
    }
    fn key_ledger(&self, id: &str) -> Ledger {
        self.ledger(Scope::Key {
            tenant_id: self.tenant.clone(),
            key_id: id.into(),
        })
    }
    fn tenant_ledger(&self) -> Ledger {
        self.ledger(Scope::Tenant {
            tenant_id: self.tenant.clone(),
        })
    }
}

fn code(r: &Response) -> String {
    r.json_body()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn an_rpm_limit_answers_429_with_retry_after_past_its_requests_and_frees_a_minute_later() {
    let s = setup();
    s.key("rpm", json!({"rpm_limit": 2}));
    for _ in 0..2 {
        let r = s.chat("rpm", json!({}));
        assert_eq!(r.status, 200, "{}", text(&r));
    }
    s.t.advance_ms(20_000);
    let r = s.chat("rpm", json!({}));
    assert_eq!(r.status, 429, "{}", text(&r));
    assert_eq!(code(&r), "rate_limit_exceeded");
    assert_eq!(r.json_body()["error"]["type"], "rate_limit_error");
    assert_eq!(r.header("retry-after"), Some("40"));
    assert!(text(&r).contains("requests per minute"), "{}", text(&r));
    assert_eq!(s.chats_received(), 2, "a refused call is not forwarded");
    s.t.advance_ms(40_000);
    assert_eq!(s.chat("rpm", json!({})).status, 200);
    assert_eq!(s.chats_received(), 3);
}

#[test]
fn a_budget_settles_each_call_with_the_providers_usage_and_refuses_once_spent() {
    let s = setup();
    // The stand-in reports 5 prompt tokens ("hello limits" and 3) and 5 completion tokens.
    let id = s.key(
        "budget",
        json!({"token_budget": 35, "budget_period": "day"}),
    );
    let mut answered = 0;
    let last = loop {
        let r = s.chat("budget", json!({}));
        if r.status != 200 {
            break r;
        }
        answered += 1;
        let g = s.key_ledger(&id);
        assert_eq!((g.spent(), g.reserved()), (10 * answered, 0));
    };
    assert_eq!(last.status, 429, "{}", text(&last));
    assert_eq!(code(&last), "budget_exceeded");
    // Past 30 of 35 tokens no call reserving 13 fits: three answered, and the day's end frees it.
    assert_eq!(answered, 3);
    let retry: i64 = last.header("retry-after").unwrap().parse().unwrap();
    let midnight = keyward::limits::period_end(
        keyward::domain::states::BudgetPeriod::Day,
        keyward::limits::period_start(keyward::domain::states::BudgetPeriod::Day, s.t.now()),
    )
    .unwrap();
    assert_eq!(retry, (midnight - s.t.now()) / 1000);
    assert_eq!(s.chats_received(), 3);
    s.t.advance_ms(retry * 1000);
    assert_eq!(s.chat("budget", json!({})).status, 200);
}

#[test]
fn use_anyway_forwards_past_a_limit_and_names_it_in_the_header() {
    let s = setup();
    s.key(
        "anyway",
        json!({"rpm_limit": 1, "usage_limit_policy": "use_anyway"}),
    );
    let first = s.chat("anyway", json!({}));
    assert_eq!(first.header("x-keyward-limit-exceeded"), None);
    let second = s.chat("anyway", json!({}));
    assert_eq!(second.status, 200, "{}", text(&second));
    assert_eq!(second.header("x-keyward-limit-exceeded"), Some("rpm"));
    assert_eq!(s.chats_received(), 2);
}

#[test]
fn a_call_that_fails_releases_its_reservation_and_spends_nothing() {
    let s = setup();
    let mut body = json!({"token_budget": 1000});
    body["api_key"] = json!(FAILING_KEY);
    let id = s.key("failing", body);
    let r = s.chat("failing", json!({}));
    assert_eq!(r.status, 502, "{}", text(&r));
    let g = s.key_ledger(&id);
    assert_eq!((g.spent(), g.reserved()), (0, 0));
    assert_eq!(
        g.window(s.t.now()),
        (1, 0),
        "the request counts, its tokens do not"
    );
}

#[test]
fn a_streamed_call_settles_its_reservation_when_the_stream_ends() {
    let s = setup();
    let id = s.key("streamed", json!({"tpm_limit": 1000}));
    let r = s.chat("streamed", json!({"stream": true}));
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(text(&r).contains("[DONE]"));
    let g = s.key_ledger(&id);
    assert_eq!(g.reserved(), 0);
    assert_eq!(
        g.spent(),
        10,
        "settled with the stream's usage, 5 in and 5 out"
    );
    assert_eq!(g.window(s.t.now()), (1, 10));
}

#[test]
fn a_request_reserving_more_than_the_tpm_is_a_400_not_a_wait() {
    let s = setup();
    s.key("small", json!({"tpm_limit": 50}));
    let r = s.chat("small", json!({"max_tokens": 100}));
    assert_eq!(r.status, 400, "{}", text(&r));
    assert_eq!(code(&r), "request_over_limit");
    assert!(text(&r).contains("smaller max_tokens"), "{}", text(&r));
    assert_eq!(s.chats_received(), 0);
}

#[test]
fn a_tenant_limit_holds_over_every_key_and_its_refusal_releases_the_keys_reservation() {
    let s = setup();
    let a = s.key("a", json!({"token_budget": 1000}));
    s.key("b", json!({}));
    let r = s.t.admin(
        "PUT",
        &format!("/api/v1/admin/tenants/{}/limits", s.tenant),
        Some(json!({"rpm_limit": 2})),
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(s.chat("a", json!({})).status, 200);
    assert_eq!(s.chat("b", json!({})).status, 200);
    let r = s.chat("a", json!({}));
    assert_eq!(r.status, 429, "{}", text(&r));
    assert!(text(&r).contains("of this tenant"), "{}", text(&r));
    // The connection's own model id counts on the tenant too.
    assert_eq!(
        s.chat("standin-chat@OpenAI-API-Compatible", json!({}))
            .status,
        429
    );
    let key = s.key_ledger(&a);
    assert_eq!((key.spent(), key.reserved()), (10, 0));
    assert_eq!(s.tenant_ledger().window(s.t.now()).0, 2);
    assert_eq!(s.chats_received(), 2);
}

#[test]
fn an_unreachable_ledger_fails_closed_for_limited_keys_and_leaves_the_others_alone() {
    let s = setup();
    s.key("limited", json!({"rpm_limit": 100}));
    s.key("free", json!({}));
    s.t.app.platform.counters.down.set(true);
    let r = s.chat("limited", json!({}));
    assert_eq!(r.status, 503, "{}", text(&r));
    assert_eq!(code(&r), "limits_unavailable");
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(s.chats_received(), 0, "nothing forwarded");
    let r = s.chat("free", json!({}));
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(s.chats_received(), 1);
}
