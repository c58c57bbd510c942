//! Arbitrary bytes as a JSON body (`Content-Type: application/json`) to every route that reads
//! one, through the whole `App` over real SQLite. The first byte picks the route (`a` is the first,
//! `b` the second, ...); the rest is the body. Never a 5xx, and the body is always what its
//! content type says (JSON, or server-sent events of JSON).
#![no_main]

use keyward::api::http::Request;
use keyward_fuzz::{check_body, with_harness, ADMIN, MEMBER, OWNER};
use libfuzzer_sys::fuzz_target;

/// Who calls.
#[derive(Clone, Copy)]
enum Who {
    Admin,
    Owner,
    Member,
}

/// (method, path, caller); `{key}` and `{ai}` are the template's key and gateway key ids.
const ROUTES: [(&str, &str, Who); 16] = [
    ("POST", "/api/v1/admin/tenants", Who::Admin),
    ("POST", "/api/v1/admin/users", Who::Admin),
    ("PATCH", "/api/v1/admin/users/fuzz-member", Who::Admin),
    (
        "POST",
        "/api/v1/admin/users/fuzz-member/api_key",
        Who::Admin,
    ),
    ("PUT", "/api/v1/admin/settings", Who::Admin),
    ("POST", "/api/v1/api_keys", Who::Owner),
    ("POST", "/api/v1/api_keys/{key}/rotate", Who::Owner),
    ("POST", "/api/v1/models", Who::Owner),
    ("DELETE", "/api/v1/models", Who::Owner),
    ("POST", "/api/v1/models/default", Who::Owner),
    ("POST", "/api/v1/ai_keys", Who::Owner),
    ("PUT", "/api/v1/ai_keys/{ai}", Who::Owner),
    ("POST", "/v1/chat/completions", Who::Owner),
    ("POST", "/v1/embeddings", Who::Owner),
    ("POST", "/v1/chat/completions", Who::Member),
    ("POST", "/api/v1/models/default", Who::Member),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (method, template, who) = ROUTES[pick.wrapping_sub(b'a') as usize % ROUTES.len()];
    with_harness(|h| {
        let path = template
            .replace("{key}", OWNER.id)
            .replace("{ai}", &h.ai_key_id);
        let auth = match who {
            Who::Admin => ADMIN.to_owned(),
            Who::Owner => OWNER.token(),
            Who::Member => MEMBER.token(),
        };
        let mut req = Request::new(method, &path)
            .header("authorization", &format!("Bearer {auth}"))
            .header("content-type", "application/json");
        req.body = body.to_vec();
        let r = h.send(req);
        assert!(
            r.status < 500,
            "{method} {path} answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        if let Err(why) = check_body(&r) {
            panic!("{method} {path} ({}): {why}", r.status);
        }
    });
});
