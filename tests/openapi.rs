//! The OpenAPI document served at `/openapi.json` against the route table: every route is
//! documented, every documented operation exists, and the document holds together.

use keyward::api::routes::ROUTES;
use keyward::api::OPENAPI;
use serde_json::Value;
use std::collections::BTreeSet;

/// The HTTP methods an OpenAPI path item may hold as operations.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Paths that answer without credentials.
const PUBLIC: &[&str] = &["/health", "/openapi.json"];

/// The OpenAI-compatible relay's paths, whose errors use OpenAI's shape instead of the envelope.
const RELAY_PREFIX: &str = "/v1/";

fn doc() -> Value {
    serde_json::from_str(OPENAPI).expect("src/api/openapi.json is valid JSON")
}

/// Every operation in the document: (path, upper-case method, operation object).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("the document has paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for (key, op) in item {
            if METHODS.contains(&key.as_str()) {
                out.push((path.clone(), key.to_ascii_uppercase(), op.clone()));
            }
        }
    }
    out
}

/// Resolve a local reference such as `#/components/schemas/Error`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` value anywhere under `v`.
fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "$ref" {
                    if let Some(s) = child.as_str() {
                        out.push(s.to_owned());
                    }
                }
                collect_refs(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        _ => {}
    }
}

/// A parameter object, following its `$ref` if it has one.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, r).unwrap_or(v),
        None => v,
    }
}

#[test]
fn every_route_is_documented_and_every_documented_operation_exists() {
    let doc = doc();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(path, method, _)| (path, method))
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|route| (route.path.to_string(), route.method.as_str().to_owned()))
        .collect();

    let missing: Vec<String> = routed
        .difference(&documented)
        .map(|(p, m)| format!("{m} {p}"))
        .collect();
    let extra: Vec<String> = documented
        .difference(&routed)
        .map(|(p, m)| format!("{m} {p}"))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "OpenAPI document and routes::ROUTES disagree.\n\
         Routes missing from the document ({}):\n  {}\n\
         Documented operations with no route ({}):\n  {}",
        missing.len(),
        missing.join("\n  "),
        extra.len(),
        extra.join("\n  ")
    );
}

#[test]
fn the_document_declares_openapi_3_1_and_the_service() {
    let doc = doc();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi is {version:?}");
    assert_eq!(doc["info"]["title"], "keyward");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    for scheme in ["adminToken", "userKey", "userBasic"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "security scheme {scheme} is not defined"
        );
    }
}

#[test]
fn every_operation_has_a_unique_operation_id_and_a_200_response() {
    let doc = doc();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        match op["operationId"].as_str() {
            Some(id) if !id.is_empty() => {
                if !seen.insert(id.to_owned()) {
                    problems.push(format!("{method} {path}: duplicate operationId {id}"));
                }
            }
            _ => problems.push(format!("{method} {path}: no operationId")),
        }
        if op["responses"]["200"].is_null() {
            problems.push(format!("{method} {path}: no 200 response"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_authenticated_operation_declares_security_and_a_401_response() {
    let doc = doc();
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut problems = Vec::new();
    for (path, method, op) in operations(&doc) {
        if PUBLIC.contains(&path.as_str()) {
            continue;
        }
        if op["responses"]["401"].is_null() {
            problems.push(format!("{method} {path}: no 401 response"));
        }
        match op["security"].as_array() {
            Some(reqs) if !reqs.is_empty() => {
                for req in reqs {
                    let names = req
                        .as_object()
                        .map(|m| m.keys().cloned().collect::<Vec<_>>());
                    match names {
                        Some(names) if !names.is_empty() => {
                            for name in names.iter().filter(|n| !schemes.contains_key(*n)) {
                                problems.push(format!(
                                    "{method} {path}: unknown security scheme {name}"
                                ));
                            }
                        }
                        _ => problems.push(format!(
                            "{method} {path}: a security requirement names no scheme"
                        )),
                    }
                }
            }
            _ => problems.push(format!("{method} {path}: no security requirement")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_ref_resolves_within_the_document() {
    let doc = doc();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty(), "the document uses no $ref at all");
    let broken: BTreeSet<&String> = refs.iter().filter(|r| resolve(&doc, r).is_none()).collect();
    assert!(
        broken.is_empty(),
        "unresolved $ref: {}",
        broken.into_iter().cloned().collect::<Vec<_>>().join(", ")
    );
}

#[test]
fn every_path_template_parameter_is_declared_as_a_required_path_parameter() {
    let doc = doc();
    let mut problems = Vec::new();
    for (path, method, op) in operations(&doc) {
        let in_template: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        let path_level = doc["paths"][&path]["parameters"].as_array().cloned();
        let op_level = op["parameters"].as_array().cloned();
        let declared: BTreeSet<String> = path_level
            .into_iter()
            .chain(op_level)
            .flatten()
            .filter_map(|p| {
                let p = deref(&doc, &p);
                (p["in"] == "path" && p["required"] == true)
                    .then(|| p["name"].as_str().map(str::to_owned))
                    .flatten()
            })
            .collect();
        if in_template != declared {
            problems.push(format!(
                "{method} {path}: template has {in_template:?}, document declares {declared:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every error response uses the shared envelope (`Error`), except on the relay, which answers
/// in OpenAI's shape (`RelayError`), 405 included.
#[test]
fn every_error_response_uses_the_shared_error_envelope() {
    let doc = doc();
    let error = doc["components"]["schemas"]["Error"].clone();
    assert_eq!(
        error["required"],
        serde_json::json!(["code", "data", "message"]),
        "Error must require code, data and message"
    );
    let relay_error = doc["components"]["schemas"]["RelayError"].clone();
    assert_eq!(
        relay_error["required"],
        serde_json::json!(["error"]),
        "RelayError must require error"
    );
    assert_eq!(
        relay_error["properties"]["error"]["required"],
        serde_json::json!(["message", "type", "param", "code"]),
        "RelayError's error must require message, type, param and code"
    );
    let mut problems = Vec::new();
    for (path, method, op) in operations(&doc) {
        let Some(responses) = op["responses"].as_object() else {
            problems.push(format!("{method} {path}: no responses"));
            continue;
        };
        for (status, resp) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
            let expected = if path.starts_with(RELAY_PREFIX) {
                "RelayError"
            } else {
                "Error"
            };
            let resp = deref(&doc, resp);
            let mut refs = Vec::new();
            collect_refs(&resp["content"]["application/json"]["schema"], &mut refs);
            if !refs
                .iter()
                .any(|r| *r == format!("#/components/schemas/{expected}"))
            {
                problems.push(format!("{method} {path}: {status} does not use {expected}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A request carrying keyward's hop header is refused on every path with 508, so every operation
/// documents it, in the relay's shape on `/v1` and the envelope elsewhere.
#[test]
fn every_operation_documents_the_508_a_request_from_keyward_gets() {
    let doc = doc();
    let mut problems = Vec::new();
    for (path, method, op) in operations(&doc) {
        let want = if path.starts_with(RELAY_PREFIX) {
            "#/components/responses/RelayLoopDetected"
        } else {
            "#/components/responses/LoopDetected"
        };
        if op["responses"]["508"]["$ref"] != want {
            problems.push(format!("{method} {path}: 508 is not {want}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let relay = &doc["components"]["responses"]["RelayLoopDetected"];
    let text = relay.to_string();
    assert!(text.contains("loop_detected"), "{text}");
    assert!(doc["components"]["responses"]["LoopDetected"]
        .to_string()
        .contains("508"));
}

/// Each route's declaration (routes.rs) names its operation in the document: the same
/// operationId, tag and summary, and the security its auth kind means. (The Worker build does not
/// carry the names, so this runs natively.)
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn every_documented_operation_carries_its_routes_declared_name_tag_summary_and_security() {
    let doc = doc();
    let mut problems = Vec::new();
    for route in ROUTES {
        let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
        if op.is_null() {
            problems.push(format!("{:?} {}: not documented", route.method, route.path));
            continue;
        }
        use keyward::api::routes::Auth;
        let security = match route.auth {
            Auth::Public => serde_json::json!([]),
            Auth::Admin => serde_json::json!([{"adminToken": []}]),
            Auth::Key | Auth::RelayKey => serde_json::json!([{"userKey": []}, {"userBasic": []}]),
        };
        for (field, want) in [
            ("operationId", serde_json::json!(route.operation_id)),
            ("tags", serde_json::json!([route.tag])),
            ("summary", serde_json::json!(route.summary)),
            ("security", security),
        ] {
            if op[field] != want {
                problems.push(format!(
                    "{:?} {}: {field} is {}, the declaration says {want}",
                    route.method, route.path, op[field]
                ));
            }
        }
        if route.path.starts_with(RELAY_PREFIX) != (route.auth == Auth::RelayKey) {
            problems.push(format!("{}: only /v1/ routes are the relay's", route.path));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The committed document is exactly what the generator writes from the route table and the
/// body types (`src/api/doc`); `make openapi` (`KEYWARD_WRITE_OPENAPI=1`) rewrites it.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn the_committed_document_is_the_one_the_types_generate() {
    let generated = keyward::api::doc::rendered();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/openapi.json");
    if std::env::var_os("KEYWARD_WRITE_OPENAPI").is_some() {
        std::fs::write(path, &generated).expect("write src/api/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(path).expect("read src/api/openapi.json");
    if generated != committed {
        let (g, c): (Vec<&str>, Vec<&str>) =
            (generated.lines().collect(), committed.lines().collect());
        let at = g
            .iter()
            .zip(&c)
            .position(|(a, b)| a != b)
            .unwrap_or(g.len().min(c.len()));
        panic!(
            "src/api/openapi.json is not what the types generate (first difference at line {}):\n  committed: {}\n  generated: {}\nRun `make openapi` and commit the result.",
            at + 1,
            c.get(at).unwrap_or(&"<end>"),
            g.get(at).unwrap_or(&"<end>")
        );
    }
}

/// What `GET /openapi.json` serves is the committed document, whitespace aside.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn the_served_document_is_the_committed_one_without_whitespace() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/openapi.json");
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read src/api/openapi.json"))
            .expect("the committed document is JSON");
    assert_eq!(doc(), committed);
    assert!(
        !OPENAPI.contains("\n  "),
        "the served document keeps its indentation"
    );
    assert!(OPENAPI.len() < std::fs::metadata(path).unwrap().len() as usize * 2 / 3);
}
