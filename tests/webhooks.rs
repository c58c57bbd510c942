//! Budget alerts, over real SQLite, the in-memory ledgers on the test clock, the real stand-in
//! and a real webhook receiver on 127.0.0.1: the tenant's webhook routes (owners only, the secret
//! sealed and shown once), one signed event per threshold per period, retries of a failing
//! receiver with the same event id, and the audit log's record of each outcome by keyward itself.
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;
#[path = "common/standin_owner.rs"]
mod standin_owner;

use common::*;
use hmac::{Hmac, Mac};
use keyward::api::http::Response;
use keyward::limits::ALERT_ATTEMPTS;
use serde_json::{json, Value};
use sha2::Sha256;
use standin::GOOD_KEY;
use standin_owner::{setup, Setup};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("an event is JSON")
    }
}

/// A webhook receiver on 127.0.0.1 answering each request with the next queued status (200 once
/// the queue is empty), recording what it got.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
        let port = server.server_addr().to_ip().expect("ip").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(VecDeque::new()));
        let (s, g, a) = (server.clone(), got.clone(), answers.clone());
        let thread = std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut body = Vec::new();
                let _ = req.as_reader().read_to_end(&mut body);
                let headers = req
                    .headers()
                    .iter()
                    .map(|h| (h.field.to_string(), h.value.to_string()))
                    .collect();
                g.lock().unwrap().push(Received { headers, body });
                let status = a.lock().unwrap().pop_front().unwrap_or(200);
                let _ =
                    req.respond(tiny_http::Response::from_string("ok").with_status_code(status));
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hooks/keyward"),
            got,
            answers,
            server,
            thread: Some(thread),
        }
    }
    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
    fn answer(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend(statuses);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether `sig` (`t=..,v1=..`) is the HMAC-SHA256 of `<t>.<body>` under `secret`, computed here
/// with the hmac crate directly.
fn signed_by(sig: &str, secret: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in sig.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(bytes) = (0..v1.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(v1.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

impl Setup {
    fn put(&self, body: Value) -> Response {
        self.t
            .user(&self.tok, "PUT", "/api/v1/tenant/webhook", Some(body))
    }
    /// Set the webhook to `url` with a generated secret; the secret.
    fn webhook(&self, url: &str) -> String {
        let r = self.put(json!({"url": url}));
        assert_eq!(r.status, 200, "{}", text(&r));
        r.json_body()["data"]["secret"]
            .as_str()
            .expect("a generated secret is answered once")
            .to_owned()
    }
    fn budget_key(&self, alias: &str, budget: u64) -> String {
        self.key(
            alias,
            json!({"token_budget": budget, "budget_period": "month"}),
        )
    }
    /// What each object's alarm does with the alerts due now: post each, record the attempt.
    /// How many were posted or dropped for good.
    fn deliver_due(&self, retry_ms: i64) -> usize {
        let now = self.t.now();
        let due: Vec<_> = {
            let ledgers = self.t.app.platform.counters.ledgers.borrow();
            ledgers
                .values()
                .flat_map(|l| {
                    let owner = l.owner().cloned().expect("the relay names every ledger");
                    l.alerts_due(now)
                        .into_iter()
                        .map(move |a| (owner.clone(), a))
                })
                .collect()
        };
        let mut done = 0;
        for (scope, alert) in due {
            let attempt = alert.attempts + 1;
            let delivered = block_on(self.t.app.deliver_alert(
                &scope,
                &alert,
                attempt,
                attempt >= ALERT_ATTEMPTS,
            ));
            done += usize::from(delivered);
            self.t
                .app
                .platform
                .counters
                .ledgers
                .borrow_mut()
                .get_mut(&scope)
                .unwrap()
                .alert_attempted(&alert, delivered, self.t.now(), retry_ms);
        }
        done
    }
    fn audit(&self) -> Vec<Value> {
        let r = self.t.admin(
            "GET",
            &format!("/api/v1/admin/audit?tenant_id={}", self.tenant),
            None,
        );
        assert_eq!(r.status, 200, "{}", text(&r));
        r.json_body()["data"].as_array().unwrap().clone()
    }
}

#[test]
fn a_budget_posts_one_signed_event_at_80_and_one_at_100_percent_and_the_audit_log_records_them() {
    let s = setup();
    let rx = Receiver::start();
    let secret = s.webhook(&rx.url);
    // Each call spends 10 tokens and reserves 13: 50 admits four calls, the fifth is refused.
    let key = s.budget_key("alerted", 50);
    for _ in 0..3 {
        assert_eq!(s.chat("alerted", json!({})).status, 200);
    }
    assert_eq!(s.deliver_due(30_000), 0, "30 of 50 raises nothing");
    assert_eq!(s.chat("alerted", json!({})).status, 200);
    assert_eq!(s.deliver_due(30_000), 1);
    let refused = s.chat("alerted", json!({}));
    assert_eq!(refused.status, 429, "{}", text(&refused));
    assert_eq!(s.deliver_due(30_000), 1);
    // Nothing is posted twice, however often the alarm runs or calls are refused.
    assert_eq!(s.chat("alerted", json!({})).status, 429);
    assert_eq!(s.deliver_due(30_000), 0);
    let got = rx.got();
    assert_eq!(got.len(), 2, "{got:?}");
    let events: Vec<Value> = got.iter().map(Received::json).collect();
    for (r, e) in got.iter().zip(&events) {
        let sig = r.header("keyward-signature").expect("signed");
        assert!(signed_by(sig, &secret, &r.body), "{sig}");
        assert!(!signed_by(sig, "another secret entirely", &r.body));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("keyward-event-id"), e["id"].as_str());
        assert_eq!(
            r.header("keyward-event-type"),
            Some("budget.threshold_reached")
        );
        assert_eq!(e["type"], "budget.threshold_reached");
        assert_eq!(e["tenant_id"], s.tenant.as_str());
        assert_eq!(e["data"]["scope"], "ai_key");
        assert_eq!(e["data"]["ai_key_id"], key.as_str());
        assert_eq!(
            (e["data"]["budget"].as_u64(), e["data"]["period"].as_str()),
            (Some(50), Some("month"))
        );
        // The secret and the provider key never travel in an event.
        let raw = String::from_utf8_lossy(&r.body);
        assert!(!raw.contains(&secret) && !raw.contains(GOOD_KEY));
    }
    assert_eq!(
        (
            events[0]["data"]["threshold"].as_u64(),
            events[0]["data"]["spent"].as_u64(),
            events[0]["data"]["refused"].as_bool()
        ),
        (Some(80), Some(40), Some(false))
    );
    assert_eq!(
        (
            events[1]["data"]["threshold"].as_u64(),
            events[1]["data"]["refused"].as_bool()
        ),
        (Some(100), Some(true))
    );
    assert_ne!(events[0]["id"], events[1]["id"]);
    // Recorded by keyward itself, naming the receiver's host but not its path.
    let delivered: Vec<Value> = s
        .audit()
        .into_iter()
        .filter(|e| e["action"] == "webhook.delivered")
        .collect();
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    for e in &delivered {
        assert_eq!(e["actor_kind"], "system");
        assert!(e["actor"].is_null());
        let detail = e["detail"].as_str().unwrap();
        assert!(
            detail.contains("127.0.0.1") && detail.contains("HTTP 200"),
            "{detail}"
        );
        assert!(!detail.contains("/hooks/keyward"), "{detail}");
    }
    // The next month is a new period with alerts of its own.
    s.t.advance_ms(32 * 24 * 3_600_000);
    for _ in 0..4 {
        assert_eq!(s.chat("alerted", json!({})).status, 200);
    }
    assert_eq!(s.deliver_due(30_000), 1);
    assert_eq!(rx.got().len(), 3);
    assert_ne!(rx.got()[2].json()["id"], events[0]["id"]);
}

#[test]
fn a_failing_receiver_is_tried_again_with_the_same_event_until_it_answers_or_five_attempts_fail() {
    let s = setup();
    let rx = Receiver::start();
    s.webhook(&rx.url);
    s.budget_key("retried", 50);
    rx.answer(&[500, 503]);
    for _ in 0..4 {
        assert_eq!(s.chat("retried", json!({})).status, 200);
    }
    assert_eq!(s.deliver_due(30_000), 0, "a 500 asks for a retry");
    assert_eq!(s.deliver_due(30_000), 0, "not due again yet");
    assert_eq!(rx.got().len(), 1);
    s.t.advance_ms(30_000);
    assert_eq!(s.deliver_due(30_000), 0, "503: again");
    s.t.advance_ms(59_999);
    assert_eq!(s.deliver_due(30_000), 0);
    assert_eq!(rx.got().len(), 2, "the second retry waits twice as long");
    s.t.advance_ms(1);
    assert_eq!(s.deliver_due(30_000), 1);
    let got = rx.got();
    assert_eq!(got.len(), 3);
    let ids: Vec<_> = got.iter().map(|r| r.json()["id"].clone()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let entries = s.audit();
    let outcomes: Vec<_> = entries
        .iter()
        .filter(|e| {
            e["action"].as_str().unwrap().starts_with("webhook.") && e["actor_kind"] == "system"
        })
        .collect();
    assert_eq!(
        outcomes.len(),
        1,
        "only the final outcome is recorded: {outcomes:?}"
    );
    assert!(outcomes[0]["detail"]
        .as_str()
        .unwrap()
        .contains("attempt 3"));

    // A receiver that never accepts: five attempts, then one `webhook.failed` entry.
    let s = setup();
    let rx = Receiver::start();
    s.webhook(&rx.url);
    s.budget_key("refusing", 50);
    rx.answer(&[500; 10]);
    for _ in 0..4 {
        assert_eq!(s.chat("refusing", json!({})).status, 200);
    }
    let mut finished = 0;
    for _ in 0..ALERT_ATTEMPTS {
        finished += s.deliver_due(1_000);
        s.t.advance_ms(60_000);
    }
    assert_eq!(finished, 1, "given up after the last attempt");
    assert_eq!(rx.got().len(), ALERT_ATTEMPTS as usize);
    s.t.advance_ms(3_600_000);
    assert_eq!(s.deliver_due(1_000), 0);
    assert_eq!(
        rx.got().len(),
        ALERT_ATTEMPTS as usize,
        "nothing after giving up"
    );
    let failed: Vec<_> = s
        .audit()
        .into_iter()
        .filter(|e| e["action"] == "webhook.failed")
        .collect();
    assert_eq!(failed.len(), 1);
    let detail = failed[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("answered 500") && detail.contains("attempt 5"),
        "{detail}"
    );
}

#[test]
fn without_a_webhook_an_alert_is_dropped_and_with_an_unreachable_one_it_is_retried() {
    let s = setup();
    s.budget_key("quiet", 50);
    for _ in 0..4 {
        assert_eq!(s.chat("quiet", json!({})).status, 200);
    }
    assert_eq!(s.deliver_due(30_000), 1, "nowhere to post it: done with");
    assert_eq!(s.deliver_due(30_000), 0);

    let s = setup();
    let rx = Receiver::start();
    let url = rx.url.clone();
    drop(rx);
    s.webhook(&url);
    s.budget_key("unreachable", 50);
    for _ in 0..4 {
        assert_eq!(s.chat("unreachable", json!({})).status, 200);
    }
    assert_eq!(
        s.deliver_due(30_000),
        0,
        "a receiver that is down is tried again"
    );
}

#[test]
fn the_webhook_routes_are_for_owners_and_show_a_generated_secret_once() {
    let s = setup();
    let rx = Receiver::start();
    let r = s.t.user(&s.tok, "GET", "/api/v1/tenant/webhook", None);
    assert_eq!(r.status, 404, "{}", text(&r));
    assert!(text(&r).contains("no webhook"));
    let secret = s.webhook(&rx.url);
    assert!(
        secret.starts_with("whsec_") && secret.len() >= 40,
        "{secret}"
    );
    let got = s.t.user(&s.tok, "GET", "/api/v1/tenant/webhook", None);
    assert_eq!(got.status, 200);
    let data = &got.json_body()["data"];
    assert_eq!(data["url"], rx.url.as_str());
    assert!(data.get("secret").is_none(), "{data}");
    assert!(data["secret_hint"].as_str().unwrap().contains("..."));
    // Changing the URL keeps the secret; new_secret answers a new one once; a chosen one is never
    // answered.
    let kept = s.put(json!({"url": format!("{}/v2", rx.url)}));
    assert_eq!(kept.status, 200, "{}", text(&kept));
    assert!(kept.json_body()["data"].get("secret").is_none());
    assert_eq!(kept.json_body()["data"]["secret_hint"], data["secret_hint"]);
    let renewed = s.put(json!({"url": rx.url, "new_secret": true}));
    let second = renewed.json_body()["data"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(second, secret);
    let chosen = "my-own-secret-of-some-length";
    let set = s.put(json!({"url": rx.url, "secret": chosen}));
    assert_eq!(set.status, 200);
    assert!(set.json_body()["data"].get("secret").is_none());
    // A test event is signed with the chosen secret.
    let tested =
        s.t.user(&s.tok, "POST", "/api/v1/tenant/webhook/test", None);
    assert_eq!(tested.status, 200, "{}", text(&tested));
    assert_eq!(
        tested.json_body()["data"],
        json!({"delivered": true, "status": 200, "error": null})
    );
    let got = rx.got();
    let last = got.last().unwrap();
    assert!(signed_by(
        last.header("keyward-signature").unwrap(),
        chosen,
        &last.body
    ));
    assert_eq!(last.json()["type"], "webhook.test");
    rx.answer(&[418]);
    let teapot =
        s.t.user(&s.tok, "POST", "/api/v1/tenant/webhook/test", None);
    assert_eq!(teapot.json_body()["data"]["delivered"], false);
    assert_eq!(teapot.json_body()["data"]["status"], 418);

    // Bad input: a clear 400 naming the field, and nothing changed.
    for (body, field) in [
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "ftp://127.0.0.1/x"}), "url"),
        (json!({"url": "http://hooks.example.com/x"}), "https"),
        (
            json!({"url": "https://user:pw@hooks.example.com/x"}),
            "password",
        ),
        (json!({"url": "http://10.0.0.1/hook"}), "url"),
        (
            json!({"url": format!("http://127.0.0.1/{}", "a".repeat(2100))}),
            "url",
        ),
        (json!({"url": rx.url, "secret": "short"}), "secret"),
        (
            json!({"url": rx.url, "secret": "has a space in the middle"}),
            "secret",
        ),
        (json!({"url": rx.url, "secret": "x".repeat(257)}), "secret"),
        (
            json!({"url": rx.url, "secret": chosen, "new_secret": true}),
            "new_secret",
        ),
        (json!({"url": rx.url, "secret": null}), "secret"),
        (json!({"url": rx.url, "extra": 1}), "extra"),
        (json!({}), "url"),
    ] {
        let r = s.put(body.clone());
        assert_eq!(r.status, 400, "{body}: {}", text(&r));
        assert!(text(&r).contains(field), "{body}: {}", text(&r));
    }
    let after = s.t.user(&s.tok, "GET", "/api/v1/tenant/webhook", None);
    assert_eq!(after.json_body()["data"]["url"], rx.url.as_str());

    // Members read nothing and change nothing.
    s.t.create_user("member", Some(&s.tenant), Some("member"));
    let m = token(&s.t.issue_key("member", json!({})));
    for (method, path) in [
        ("GET", "/api/v1/tenant/webhook"),
        ("DELETE", "/api/v1/tenant/webhook"),
        ("POST", "/api/v1/tenant/webhook/test"),
    ] {
        assert_eq!(
            s.t.user(&m, method, path, None).status,
            403,
            "{method} {path}"
        );
    }
    let r = s.t.user(
        &m,
        "PUT",
        "/api/v1/tenant/webhook",
        Some(json!({"url": rx.url})),
    );
    assert_eq!(r.status, 403);

    // Another tenant's owner sees only their own (none).
    let (_, k2) = s.t.user_with_key("stranger");
    assert_eq!(
        s.t.user(&token(&k2), "GET", "/api/v1/tenant/webhook", None)
            .status,
        404
    );

    // The secret was stored sealed: no stored or answered text holds it.
    for sec in [&secret, &second, &chosen.to_string()] {
        assert_eq!(
            s.t.db().count(&format!(
                "SELECT COUNT(*) FROM tenant_webhooks WHERE secret LIKE '%{sec}%' OR secret_hint LIKE '%{sec}%'"
            )),
            0
        );
        assert_eq!(
            s.t.db().count(&format!(
                "SELECT COUNT(*) FROM audit WHERE detail LIKE '%{sec}%'"
            )),
            0
        );
        assert!(log_lines()
            .lock()
            .unwrap()
            .iter()
            .all(|l| !l.contains(sec.as_str())));
    }
    let shown =
        s.t.bodies
            .borrow()
            .iter()
            .filter(|b| b.contains(&secret))
            .count();
    assert_eq!(shown, 1, "shown once");

    let actions: Vec<String> = s
        .audit()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "webhook.set").count(), 4);
    assert_eq!(
        s.t.user(&s.tok, "DELETE", "/api/v1/tenant/webhook", None)
            .status,
        200
    );
    assert_eq!(
        s.t.user(&s.tok, "DELETE", "/api/v1/tenant/webhook", None)
            .status,
        404
    );
    assert_eq!(
        s.t.user(&s.tok, "POST", "/api/v1/tenant/webhook/test", None)
            .status,
        404
    );
}

#[test]
fn a_webhook_pointing_back_at_the_deployment_is_refused() {
    let s = setup();
    let r = s.t.send(
        keyward::api::http::Request::new("PUT", "/api/v1/tenant/webhook")
            .header("authorization", &format!("Bearer {}", s.tok))
            .header("host", "keyward.example.com")
            .json(&json!({"url": "https://keyward.example.com/hook"})),
    );
    assert_eq!(r.status, 400, "{}", text(&r));
    assert!(text(&r).contains("url"));
    let _ = &s.s;
}
