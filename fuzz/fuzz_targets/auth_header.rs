//! Arbitrary `Authorization` header values against routes that need a credential. The first byte
//! picks the route (`a`, `b`, ...); the rest, split at newlines, are the header values (none if
//! empty, two for `a\nb`). Never a 5xx; never a 200 unless the header is exactly one live
//! credential (the admin token on admin routes, a live user key elsewhere), and then the caller
//! is that credential's user; every 401 of the management API has the one body all get.
#![no_main]

use base64::Engine;
use keyward::api::error::AUTH_FAILED;
use keyward::api::http::Request;
use keyward_fuzz::{check_body, with_harness, Cred, ADMIN, LIVE};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

/// (path, admin route?, relay route?)
const ROUTES: [(&str, bool, bool); 5] = [
    ("/api/v1/me", false, false),
    ("/api/v1/admin/users", true, false),
    ("/api/v1/ai_keys", false, false),
    ("/v1/models", false, true),
    ("/api/v1/models/default", false, false),
];

enum Carried {
    Admin,
    User(Cred),
}

/// The live credential the header values carry, judged independently of the service: exactly
/// one value, `Bearer <token>` or `Basic base64(<access>:<secret>)`, scheme in any case.
fn carried(values: &[String]) -> Option<Carried> {
    let [value] = values else {
        return None;
    };
    let (scheme, rest) = value.split_once(' ')?;
    let pair = if scheme.eq_ignore_ascii_case("bearer") {
        if rest == ADMIN {
            return Some(Carried::Admin);
        }
        rest.to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        String::from_utf8(raw).ok()?
    } else {
        return None;
    };
    LIVE.into_iter()
        .find(|c| pair == c.token())
        .map(Carried::User)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (path, admin_route, relay) = ROUTES[pick.wrapping_sub(b'a') as usize % ROUTES.len()];
    let text = String::from_utf8_lossy(rest);
    let values: Vec<String> = if text.is_empty() {
        Vec::new()
    } else {
        text.split('\n').map(str::to_owned).collect()
    };
    with_harness(|h| {
        let mut req = Request::new("GET", path);
        for v in &values {
            req = req.header("authorization", v);
        }
        let r = h.send(req);
        let body = String::from_utf8_lossy(&r.body);
        assert!(r.status < 500, "{path} answered {}: {body}", r.status);
        if let Err(why) = check_body(&r) {
            panic!("{path} ({}): {why}", r.status);
        }
        let who = carried(&values);
        match r.status {
            200 => match (admin_route, who) {
                (true, Some(Carried::Admin)) => {}
                (false, Some(Carried::User(c))) => {
                    if path == "/api/v1/me" {
                        let v = r.json_body();
                        assert_eq!(v["data"]["username"], json!(c.username));
                        assert_eq!(v["data"]["api_key"]["access_key"], json!(c.access));
                    }
                }
                _ => panic!("{path} accepted a credential that is not live: {values:?}"),
            },
            401 => {
                if !relay {
                    assert_eq!(
                        r.json_body(),
                        json!({"code": 109, "data": null, "message": AUTH_FAILED}),
                        "every 401 has the same body"
                    );
                }
                assert!(
                    who.is_none() || matches!(who, Some(Carried::Admin)),
                    "{path} refused a live credential: {values:?}"
                );
            }
            // A live user key on an admin route.
            403 => assert!(
                admin_route && matches!(who, Some(Carried::User(_))),
                "{path} answered 403 to {values:?}: {body}"
            ),
            s => panic!("{path} answered {s} to {values:?}: {body}"),
        }
    });
});
