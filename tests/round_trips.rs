//! Database round trips per request on the hot paths: a relayed call and `GET /v1/models` read
//! the caller's key and everything the call needs in one D1 request (issue 15), however the
//! `model` resolves. Counted on the test database's calls (`SqliteDb::calls`: a query, an
//! execute or a batch is one call each, as each is one request to D1) while the request is
//! handled; the writes deferred past the answer (`last_used_at`, usage) run in `waitUntil` and are
//! not on the request's path.
#![cfg(not(target_arch = "wasm32"))]

mod common;
#[path = "../examples/provider_standin/server.rs"]
mod standin;

use common::*;
use keyward::api::http::{Request, Response};
use serde_json::{json, Value};
use standin::{StandIn, GOOD_KEY};

/// A tenant with the stand-in's chat and embedding models, a gateway key and a default chat model.
fn setup(s: &StandIn) -> (T, String) {
    let t = T::new();
    let (_, k) = t.user_with_key("owner");
    let tok = token(&k);
    connect_standin_chat(&t, &tok, &s.base(), GOOD_KEY);
    let r = t.user(&tok, "POST", "/api/v1/models", Some(json!({
        "llm_factory": "OpenAI-API-Compatible", "llm_name": "standin-embed", "model_type": "embedding",
        "base_url": format!("{}/v1", s.base()), "api_key": GOOD_KEY
    })));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    team_chat_and_default(&t, &tok, GOOD_KEY);
    (t, tok)
}

/// Handle one request and count the database calls made before its answer.
fn counted(t: &T, req: Request) -> (Response, usize) {
    let before = t.db().calls.get();
    let resp = block_on(t.app.handle(req));
    (resp, t.db().calls.get() - before)
}

fn chat(tok: &str, model: &str) -> Request {
    Request::new("POST", "/v1/chat/completions")
        .header("authorization", &format!("Bearer {tok}"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
}

fn body(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[test]
fn a_relayed_chat_makes_one_database_round_trip_however_its_model_resolves() {
    let s = StandIn::start();
    let (t, tok) = setup(&s);
    for model in [
        "standin-chat@OpenAI-API-Compatible",
        "team-chat",
        "default",
        "",
        "standin-chat",
    ] {
        // The first call of each also writes `last_used_at`, after its answer; not counted.
        let (r, trips) = counted(&t, chat(&tok, model));
        assert_eq!(r.status, 200, "{model:?}: {}", body(&r));
        assert_eq!(trips, 1, "{model:?}: round trips before the answer");
    }
    let embed = Request::new("POST", "/v1/embeddings")
        .header("authorization", &format!("Bearer {tok}"))
        .json(&json!({"model": "standin-embed@OpenAI-API-Compatible", "input": "hi"}));
    let (r, trips) = counted(&t, embed);
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(trips, 1, "embeddings");
}

#[test]
fn the_relays_model_list_makes_one_database_round_trip() {
    let s = StandIn::start();
    let (t, tok) = setup(&s);
    let req = Request::new("GET", "/v1/models").header("authorization", &format!("Bearer {tok}"));
    let (r, trips) = counted(&t, req);
    assert_eq!(r.status, 200, "{}", body(&r));
    let ids: Vec<Value> = r.json_body()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert!(ids.contains(&json!("team-chat")), "{ids:?}");
    assert!(
        ids.contains(&json!("standin-chat@OpenAI-API-Compatible")),
        "{ids:?}"
    );
    assert_eq!(trips, 1);
}

#[test]
fn an_unknown_model_and_a_bad_key_still_cost_one_round_trip_and_answer_as_before() {
    let s = StandIn::start();
    let (t, tok) = setup(&s);
    let (r, trips) = counted(&t, chat(&tok, "no-such-model"));
    assert_eq!(r.status, 404, "{}", body(&r));
    assert_eq!(r.json_body()["error"]["code"], "model_not_found");
    assert_eq!(trips, 1);
    // A wrong secret for a real access key: one read, 401, and nothing of the tenant read.
    let access = tok.split(':').next().unwrap();
    let (_, other) = t.user_with_key("someone-else");
    let other_secret = token(&other).split(':').nth(1).unwrap().to_owned();
    let wrong = format!("{access}:{other_secret}");
    *t.db().recorded.borrow_mut() = Some(Vec::new());
    let (r, trips) = counted(&t, chat(&wrong, "team-chat"));
    let ran = t.db().recorded.borrow_mut().take().unwrap();
    assert_eq!(r.status, 401, "{}", body(&r));
    assert_eq!(r.json_body()["error"]["code"], "invalid_api_key");
    assert_eq!(trips, 1);
    // The key's own row is read (as for any presented key); what rides with it reads nothing.
    assert!(ran.len() > 1, "{ran:?}");
    assert_eq!(t.db().rows_of(&ran[0]), 1);
    for s in &ran[1..] {
        assert_eq!(t.db().rows_of(s), 0, "read for a wrong secret: {}", s.sql);
    }
    // The same statements with the right secret do read the tenant's rows.
    let (r, _) = counted(&t, chat(&tok, "team-chat"));
    assert_eq!(r.status, 200, "{}", body(&r));
}

#[test]
fn with_the_verification_cache_a_relayed_chat_still_makes_one_round_trip() {
    let s = StandIn::start();
    let (mut t, tok) = setup(&s);
    t.app.config.verify_cache_seconds = 60;
    for model in ["team-chat", "standin-chat@OpenAI-API-Compatible", "default"] {
        for _ in 0..2 {
            let (r, trips) = counted(&t, chat(&tok, model));
            assert_eq!(r.status, 200, "{model}: {}", body(&r));
            assert_eq!(trips, 1, "{model}");
        }
    }
}

#[test]
fn a_bad_key_is_answered_before_a_bad_body_as_before() {
    let s = StandIn::start();
    let (t, tok) = setup(&s);
    let access = tok.split(':').next().unwrap();
    let (_, other) = t.user_with_key("someone-else");
    let wrong = format!("{access}:{}", token(&other).split(':').nth(1).unwrap());
    let bad_body = |who: &str| {
        let mut req = Request::new("POST", "/v1/chat/completions")
            .header("authorization", &format!("Bearer {who}"))
            .header("content-type", "application/json");
        req.body = b"{\"model\": \"team-chat\", ".to_vec();
        req
    };
    let (r, trips) = counted(&t, bad_body(&wrong));
    assert_eq!(r.status, 401, "{}", body(&r));
    assert_eq!(r.json_body()["error"]["code"], "invalid_api_key");
    assert_eq!(trips, 1);
    let (r, trips) = counted(&t, bad_body(&tok));
    assert_eq!(r.status, 400, "{}", body(&r));
    assert!(
        r.json_body()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON body"),
        "{}",
        body(&r)
    );
    assert_eq!(trips, 1, "the key alone");
}
