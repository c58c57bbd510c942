//! The fixture of the suites that relay through gateway keys over the real stand-in: a tenant
//! owner with a key, the stand-in started and connected as the owner's chat model. Included by
//! path (after `mod common;` and the stand-in's `mod standin;`) only by the files that use it,
//! so the other test binaries do not compile the stand-in.

use crate::common::*;
use crate::standin::{StandIn, GOOD_KEY};
use keyward::api::http::Response;
use serde_json::{json, Value};

/// `s` keeps the stand-in serving for the test's length; not every suite reads every field.
#[allow(dead_code)]
pub struct Setup {
    pub t: T,
    pub s: StandIn,
    pub tok: String,
    pub tenant: String,
}

pub fn setup() -> Setup {
    let t = T::new();
    let s = StandIn::start();
    let (u, k) = t.user_with_key("owner");
    let tok = token(&k);
    connect_standin_chat(&t, &tok, &s.base(), GOOD_KEY);
    let tenant = u["tenant_id"].as_str().unwrap().to_owned();
    Setup { t, s, tok, tenant }
}

impl Setup {
    /// An enabled gateway key for the stand-in's chat model with these extra fields; its id.
    pub fn key(&self, alias: &str, extra: Value) -> String {
        let mut body = json!({
            "alias": alias, "provider": "OpenAI-API-Compatible", "model": "standin-chat",
            "input_limit": 0, "status": "enabled", "api_key": GOOD_KEY
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = self
            .t
            .user(&self.tok, "POST", "/api/v1/ai_keys", Some(body));
        assert_eq!(r.status, 200, "{}", text(&r));
        r.json_body()["data"]["id"].as_str().unwrap().to_owned()
    }

    /// A short chat call to `model` as the owner, with these extra fields.
    pub fn chat(&self, model: &str, extra: Value) -> Response {
        let mut body = json!({"model": model, "max_tokens": 5,
            "messages": [{"role": "user", "content": "hello limits"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.t
            .user(&self.tok, "POST", "/v1/chat/completions", Some(body))
    }
}
