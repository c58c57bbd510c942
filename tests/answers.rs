//! Every answer the API gives, held natively to the schema the OpenAPI document states for its
//! operation and status, over real SQLite. Until now only schemathesis in the end-to-end run
//! noticed a body drifting from the document; this walk fails `cargo test` instead.
//!
//! The checker knows the keywords the document uses for answers (`$ref`, `type` with `null`,
//! `properties`, `required`, `additionalProperties`, `items`, `enum`, `const`, `allOf`, `anyOf`,
//! `oneOf`, `minimum`, `maximum`, `minLength`, `maxLength`, `pattern`, `minItems`,
//! `minProperties`) and fails on any other, so a new keyword cannot be skipped unnoticed.
#![cfg(not(target_arch = "wasm32"))]

mod common;
use common::*;
use keyward::api::http::Response;
use keyward::api::OPENAPI;
use serde_json::{json, Value as Json};

/// Keywords that say nothing about validity.
const ANNOTATIONS: &[&str] = &[
    "description",
    "examples",
    "example",
    "default",
    "format",
    "title",
    "deprecated",
    "readOnly",
    "writeOnly",
    "uniqueItems",
];

fn doc() -> Json {
    serde_json::from_str(OPENAPI).expect("src/api/openapi.json is valid JSON")
}

fn deref<'a>(doc: &'a Json, v: &'a Json) -> &'a Json {
    match v.get("$ref").and_then(Json::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("unresolved {r}")),
        None => v,
    }
}

fn type_matches(t: &str, v: &Json) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        other => panic!("unknown type {other}"),
    }
}

/// Whether `v` satisfies `schema`; every reason it does not goes to `errs`, at `at`.
fn check(doc: &Json, schema: &Json, v: &Json, at: &str, errs: &mut Vec<String>) {
    let schema = deref(doc, schema);
    if schema == &json!(true) || schema == &json!({}) {
        return;
    }
    let Some(map) = schema.as_object() else {
        errs.push(format!("{at}: schema is not an object: {schema}"));
        return;
    };
    for (k, s) in map {
        match k.as_str() {
            "$ref" => {}
            k if ANNOTATIONS.contains(&k) => {}
            "type" => {
                let ok = match s {
                    Json::String(t) => type_matches(t, v),
                    Json::Array(ts) => ts.iter().any(|t| type_matches(t.as_str().unwrap(), v)),
                    _ => panic!("{at}: bad type {s}"),
                };
                if !ok {
                    errs.push(format!("{at}: {v} is not of type {s}"));
                }
            }
            "enum" => {
                if !s.as_array().unwrap().contains(v) {
                    errs.push(format!("{at}: {v} is not one of {s}"));
                }
            }
            "const" => {
                if s != v {
                    errs.push(format!("{at}: {v} is not {s}"));
                }
            }
            "properties" => {
                if let Some(obj) = v.as_object() {
                    for (name, sub) in s.as_object().unwrap() {
                        if let Some(x) = obj.get(name) {
                            check(doc, sub, x, &format!("{at}.{name}"), errs);
                        }
                    }
                }
            }
            "required" => {
                if let Some(obj) = v.as_object() {
                    for name in s.as_array().unwrap() {
                        if !obj.contains_key(name.as_str().unwrap()) {
                            errs.push(format!("{at}: required {name} is missing"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(obj) = v.as_object() {
                    let known = map.get("properties").and_then(Json::as_object);
                    for (name, x) in obj {
                        if known.is_some_and(|p| p.contains_key(name)) {
                            continue;
                        }
                        match s {
                            Json::Bool(false) => {
                                errs.push(format!("{at}: {name} is not a documented property"))
                            }
                            Json::Bool(true) => {}
                            sub => check(doc, sub, x, &format!("{at}.{name}"), errs),
                        }
                    }
                }
            }
            "items" => {
                if let Some(items) = v.as_array() {
                    for (i, x) in items.iter().enumerate() {
                        check(doc, s, x, &format!("{at}[{i}]"), errs);
                    }
                }
            }
            "allOf" => {
                for sub in s.as_array().unwrap() {
                    check(doc, sub, v, at, errs);
                }
            }
            "anyOf" | "oneOf" => {
                let passing = s
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|sub| {
                        let mut e = Vec::new();
                        check(doc, sub, v, at, &mut e);
                        e.is_empty()
                    })
                    .count();
                let ok = if k == "oneOf" {
                    passing == 1
                } else {
                    passing >= 1
                };
                if !ok {
                    errs.push(format!("{at}: {v} matches {passing} of {k} {s}"));
                }
            }
            "minimum" | "maximum" => {
                if let (Some(n), Some(bound)) = (v.as_f64(), s.as_f64()) {
                    if (k == "minimum" && n < bound) || (k == "maximum" && n > bound) {
                        errs.push(format!("{at}: {n} is outside {k} {bound}"));
                    }
                }
            }
            "minLength" | "maxLength" => {
                if let Some(text) = v.as_str() {
                    let (n, bound) = (text.chars().count() as u64, s.as_u64().unwrap());
                    if (k == "minLength" && n < bound) || (k == "maxLength" && n > bound) {
                        errs.push(format!("{at}: length {n} is outside {k} {bound}"));
                    }
                }
            }
            "pattern" => {
                if let Some(text) = v.as_str() {
                    let re = regex::Regex::new(s.as_str().unwrap()).expect("pattern compiles");
                    if !re.is_match(text) {
                        errs.push(format!("{at}: {text:?} does not match {s}"));
                    }
                }
            }
            "minItems" => {
                if v.as_array()
                    .is_some_and(|a| (a.len() as u64) < s.as_u64().unwrap())
                {
                    errs.push(format!("{at}: fewer than {s} items"));
                }
            }
            "minProperties" => {
                if v.as_object()
                    .is_some_and(|o| (o.len() as u64) < s.as_u64().unwrap())
                {
                    errs.push(format!("{at}: fewer than {s} properties"));
                }
            }
            other => panic!("{at}: the checker does not know the keyword {other}; teach it"),
        }
    }
}

/// Holds each answer to the document and counts what it checked.
struct Walk {
    doc: Json,
    checked: Vec<String>,
    errs: Vec<String>,
}

impl Walk {
    /// Check `r` against the documented answer of `method template` for its status.
    fn answer(&mut self, template: &str, method: &str, r: &Response) -> Json {
        let doc = self.doc.clone();
        let what = format!("{method} {template} -> {}", r.status);
        let op = &doc["paths"][template][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        let Some(resp) = op["responses"].get(r.status.to_string()) else {
            self.errs.push(format!("{what}: status not documented"));
            return Json::Null;
        };
        let resp = deref(&doc, resp);
        let body: Json = serde_json::from_slice(&r.body).unwrap_or(Json::Null);
        match resp["content"]["application/json"].get("schema") {
            Some(schema) => check(&doc, schema, &body, &what, &mut self.errs),
            None => self.errs.push(format!("{what}: no JSON schema documented")),
        }
        self.checked.push(what);
        body
    }
}

#[test]
fn every_answer_of_a_walk_through_the_api_matches_its_documented_schema() {
    let t = T::new();
    let mut w = Walk {
        doc: doc(),
        checked: Vec::new(),
        errs: Vec::new(),
    };

    w.answer(
        "/health",
        "GET",
        &t.send(keyward::api::http::Request::new("GET", "/health")),
    );

    // Tenants and users.
    let r = t.admin(
        "POST",
        "/api/v1/admin/tenants",
        Some(json!({"name": "Acme"})),
    );
    let tenant = w.answer("/api/v1/admin/tenants", "POST", &r)["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    w.answer(
        "/api/v1/admin/tenants",
        "GET",
        &t.admin("GET", "/api/v1/admin/tenants", None),
    );
    let tpath = format!("/api/v1/admin/tenants/{tenant}");
    w.answer(
        "/api/v1/admin/tenants/{tenant_id}",
        "GET",
        &t.admin("GET", &tpath, None),
    );
    let body = json!({"username": "alice@example.com", "tenant_id": tenant, "role": "owner"});
    let r = t.admin("POST", "/api/v1/admin/users", Some(body));
    w.answer("/api/v1/admin/users", "POST", &r);
    w.answer(
        "/api/v1/admin/users",
        "GET",
        &t.admin("GET", "/api/v1/admin/users", None),
    );
    let upath = "/api/v1/admin/users/alice@example.com";
    w.answer(
        "/api/v1/admin/users/{username}",
        "GET",
        &t.admin("GET", upath, None),
    );
    let r = t.admin("PATCH", upath, Some(json!({"role": "owner"})));
    w.answer("/api/v1/admin/users/{username}", "PATCH", &r);

    // Keys, by the admin and by the user.
    let r = t.admin(
        "POST",
        &format!("{upath}/api_key"),
        Some(json!({"description": "laptop", "ttl_minutes": 600})),
    );
    let key = w.answer("/api/v1/admin/users/{username}/api_key", "POST", &r)["data"].clone();
    let tok = token(&key);
    for (template, path) in [
        (
            "/api/v1/admin/users/{username}/api_key",
            format!("{upath}/api_key"),
        ),
        (
            "/api/v1/admin/users/{username}/keys",
            format!("{upath}/keys"),
        ),
    ] {
        w.answer(template, "GET", &t.admin("GET", &path, None));
    }
    w.answer(
        "/api/v1/me",
        "GET",
        &t.user(&tok, "GET", "/api/v1/me", None),
    );
    w.answer(
        "/api/v1/me/limits",
        "GET",
        &t.user(&tok, "GET", "/api/v1/me/limits", None),
    );
    w.answer(
        "/api/v1/api_keys",
        "GET",
        &t.user(&tok, "GET", "/api/v1/api_keys", None),
    );
    let r = t.user(
        &tok,
        "POST",
        "/api/v1/api_keys",
        Some(json!({"ttl_minutes": 60})),
    );
    let second = w.answer("/api/v1/api_keys", "POST", &r)["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = t.user(
        &tok,
        "POST",
        &format!("/api/v1/api_keys/{second}/rotate"),
        Some(json!({"grace_minutes": 5})),
    );
    w.answer("/api/v1/api_keys/{id}/rotate", "POST", &r);
    let r = t.user(&tok, "DELETE", &format!("/api/v1/api_keys/{second}"), None);
    w.answer("/api/v1/api_keys/{id}", "DELETE", &r);

    // Settings and audit.
    let spath = "/api/v1/admin/settings";
    w.answer(spath, "GET", &t.admin("GET", spath, None));
    let r = t.admin("PUT", spath, Some(json!({"max_keys_per_user": 20})));
    w.answer(spath, "PUT", &r);
    let apath = "/api/v1/admin/audit";
    w.answer(apath, "GET", &t.admin("GET", apath, None));

    // Models, defaults, gateway keys, the relay's list.
    for (template, path) in [
        ("/api/v1/factories", "/api/v1/factories"),
        ("/api/v1/models", "/api/v1/models"),
        ("/api/v1/models", "/api/v1/models?include_details=true"),
        ("/api/v1/models/default", "/api/v1/models/default"),
        ("/api/v1/ai_keys", "/api/v1/ai_keys"),
        ("/v1/models", "/v1/models"),
    ] {
        w.answer(template, "GET", &t.user(&tok, "GET", path, None));
    }

    // Refusals: the envelope and the relay's shape.
    w.answer(
        "/api/v1/admin/tenants/{tenant_id}",
        "GET",
        &t.admin("GET", "/api/v1/admin/tenants/nope", None),
    );
    w.answer(
        "/api/v1/me",
        "GET",
        &t.user("not-a-key", "GET", "/api/v1/me", None),
    );
    w.answer(
        "/api/v1/admin/users",
        "POST",
        &t.admin("POST", "/api/v1/admin/users", Some(json!({"username": ""}))),
    );
    w.answer(
        "/api/v1/admin/settings",
        "GET",
        &t.user(&tok, "GET", spath, None),
    );
    // A method the path lacks: its 405 as the path's documented operations state it.
    w.answer(
        "/api/v1/me",
        "GET",
        &t.user(&tok, "POST", "/api/v1/me", None),
    );
    w.answer(
        "/v1/models",
        "GET",
        &t.user("not-a-key", "GET", "/v1/models", None),
    );
    w.answer(
        "/v1/models",
        "GET",
        &t.user(&tok, "POST", "/v1/models", None),
    );
    let r = t.user(
        &tok,
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": "nope", "messages": []})),
    );
    w.answer("/v1/chat/completions", "POST", &r);
    let r = t.user(&tok, "GET", "/api/v1/ai_keys/nope", None);
    w.answer("/api/v1/ai_keys/{id}", "GET", &r);

    // Deletions answer `true`.
    let kid = key["id"].as_str().unwrap();
    let r = t.admin("DELETE", &format!("{upath}/api_key/{kid}"), None);
    w.answer("/api/v1/admin/users/{username}/api_key/{id}", "DELETE", &r);
    w.answer(
        "/api/v1/admin/users/{username}",
        "DELETE",
        &t.admin("DELETE", upath, None),
    );
    w.answer(
        "/api/v1/admin/tenants/{tenant_id}",
        "DELETE",
        &t.admin("DELETE", &tpath, None),
    );

    assert!(
        w.errs.is_empty(),
        "answers that break the document ({} of {} checked):\n  {}",
        w.errs.len(),
        w.checked.len(),
        w.errs.join("\n  ")
    );
    // The walk reached what it meant to: every success a 200, every refusal its status.
    let statuses: Vec<&str> = w
        .checked
        .iter()
        .filter_map(|c| c.rsplit(" -> ").next())
        .collect();
    let refusals = [
        "404", "401", "400", "403", "405", "401", "405", "404", "404",
    ];
    let (ok, refused) = statuses.split_at(statuses.len() - refusals.len() - 3);
    assert!(ok.iter().all(|s| *s == "200"), "{}", w.checked.join("\n"));
    assert_eq!(
        &refused[..refusals.len()],
        refusals,
        "{}",
        w.checked.join("\n")
    );
    assert!(refused[refusals.len()..].iter().all(|s| *s == "200"));
}

/// The default provider's routes, and tenant creation refused while it is misconfigured, answer
/// as the document says: unconfigured, usable and unusable; applied, refused twice, unknown.
#[test]
fn the_default_provider_routes_and_the_misconfigured_500_match_their_documented_schemas() {
    use keyward::api::seed::DefaultProvider;
    let mut t = T::new();
    let mut w = Walk {
        doc: doc(),
        checked: Vec::new(),
        errs: Vec::new(),
    };
    let status = "/api/v1/admin/default_provider";
    let apply = "/api/v1/admin/tenants/{tenant_id}/default_provider";
    let tenant = t.create_user("early@example.com", None, None)["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/admin/tenants/{tenant}/default_provider");
    w.answer(status, "GET", &t.admin("GET", status, None));
    w.answer(apply, "POST", &t.admin("POST", &path, None));
    t.app.config.default_provider = DefaultProvider {
        factory: Some("OpenAI".into()),
        base_url: Some("http://127.0.0.1:9/v1".into()),
        models: Some("llm_id=gpt-4o-mini".into()),
        api_key: Some("sk-answers-0123456789".into()),
    };
    w.answer(status, "GET", &t.admin("GET", status, None));
    w.answer(apply, "POST", &t.admin("POST", &path, None));
    w.answer(apply, "POST", &t.admin("POST", &path, None));
    w.answer(
        apply,
        "POST",
        &t.admin("POST", "/api/v1/admin/tenants/nope/default_provider", None),
    );
    t.app.config.default_provider.models = Some("llm_id=gpt-9".into());
    w.answer(status, "GET", &t.admin("GET", status, None));
    w.answer(
        "/api/v1/admin/tenants",
        "POST",
        &t.admin(
            "POST",
            "/api/v1/admin/tenants",
            Some(json!({"name": "acme"})),
        ),
    );
    w.answer(
        "/api/v1/admin/users",
        "POST",
        &t.admin(
            "POST",
            "/api/v1/admin/users",
            Some(json!({"username": "late"})),
        ),
    );
    assert!(w.errs.is_empty(), "{}", w.errs.join("\n"));
    let statuses: Vec<&str> = w
        .checked
        .iter()
        .filter_map(|c| c.rsplit(" -> ").next())
        .collect();
    assert_eq!(
        statuses,
        ["200", "409", "200", "200", "409", "404", "200", "500", "500"],
        "{}",
        w.checked.join("\n")
    );
}

/// Every paged list refuses a `limit` over its maximum with 400, and the document says so (the
/// lists paged after the fact had no 400 documented, which schemathesis reported as ST103).
#[test]
fn a_page_size_over_the_maximum_is_a_documented_400_on_every_paged_list() {
    let t = T::new();
    let (_, key) = t.user_with_key("alice@example.com");
    let tok = token(&key);
    let mut w = Walk {
        doc: doc(),
        checked: Vec::new(),
        errs: Vec::new(),
    };
    let doc = doc();
    let mut paged = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        let op = &item["get"];
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        if params
            .iter()
            .any(|p| p["$ref"] == "#/components/parameters/PageLimit")
        {
            paged.push(template.clone());
        }
    }
    assert!(paged.len() >= 6, "{paged:?}");
    for template in &paged {
        let path = format!(
            "{}?limit=1001",
            template.replace("{username}", "alice@example.com")
        );
        let r = if template.starts_with("/api/v1/admin/") {
            t.admin("GET", &path, None)
        } else {
            t.user(&tok, "GET", &path, None)
        };
        assert_eq!(r.status, 400, "{path}");
        w.answer(template, "GET", &r);
    }
    assert!(w.errs.is_empty(), "{}", w.errs.join("\n"));
}

#[test]
fn the_checker_refuses_what_the_document_forbids() {
    let doc = doc();
    let user = json!({"$ref": "#/components/schemas/User"});
    let good = json!({
        "username": "a@b.c", "tenant_id": "0123456789abcdef0123456789abcdef", "role": "owner",
        "status": "active", "create_date": "2026-01-01T00:00:00Z",
        "update_date": "2026-01-01T00:00:00Z"
    });
    let mut errs = Vec::new();
    check(&doc, &user, &good, "user", &mut errs);
    assert!(errs.is_empty(), "{errs:?}");
    for (why, bad) in [
        ("an extra field", {
            let mut b = good.clone();
            b["extra"] = json!(1);
            b
        }),
        ("a missing field", {
            let mut b = good.clone();
            b.as_object_mut().unwrap().remove("role");
            b
        }),
        ("a role outside the enum", {
            let mut b = good.clone();
            b["role"] = json!("root");
            b
        }),
        ("null where none is allowed", {
            let mut b = good.clone();
            b["username"] = Json::Null;
            b
        }),
    ] {
        let mut errs = Vec::new();
        check(&doc, &user, &bad, "user", &mut errs);
        assert!(!errs.is_empty(), "{why} passed");
    }
}
