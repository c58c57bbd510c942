//! Every list answers one bounded page at a time, in a stable order, with the next page's cursor in
//! `Link` and `X-Next-Cursor`; paging stays correct while rows are added and removed in between.
#![cfg(not(target_arch = "wasm32"))]

mod common;
use common::*;
use keyward::api::http::Response;
use keyward::api::page::MAX_LIMIT;
use serde_json::json;
use std::collections::HashSet;

/// The path of the next page, from the `Link` header, if there is one; checks X-Next-Cursor agrees.
fn next_link(r: &Response) -> Option<String> {
    let link = r.header("link")?;
    let cursor = r
        .header("x-next-cursor")
        .expect("x-next-cursor beside link");
    let target = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .expect("one rel=next link");
    assert!(target.ends_with(&format!("cursor={cursor}")), "{link}");
    Some(target.to_owned())
}

/// Follow the pages from `first`, as `call` sends them, collecting each item's `field`.
fn walk(call: impl Fn(&str) -> Response, first: &str, field: &str) -> (Vec<String>, usize) {
    let (mut seen, mut pages) = (Vec::new(), 0);
    let mut path = Some(first.to_owned());
    while let Some(p) = path {
        let r = call(&p);
        assert_eq!(r.status, 200, "{p}: {}", String::from_utf8_lossy(&r.body));
        let items = r.json_body()["data"]
            .as_array()
            .expect("a bare list")
            .clone();
        assert!(
            items.len() as i64 <= MAX_LIMIT,
            "{p}: {} items",
            items.len()
        );
        seen.extend(items.iter().map(|i| i[field].as_str().unwrap().to_owned()));
        pages += 1;
        path = next_link(&r);
    }
    (seen, pages)
}

#[test]
fn a_hundred_thousand_users_are_listed_page_by_page_and_no_page_exceeds_the_maximum() {
    let t = T::new();
    const USERS: i64 = 100_000;
    // Bulk rows, not the API: 10,000 tenants of ten users each, several sharing a create_date so the
    // tiebreak matters.
    t.db().sql(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {t_max}) \
         INSERT INTO tenants (id, name, create_date) SELECT 't' || i, 'tenant ' || i, {START_MS} + i / 7 FROM n;
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {u_max}) \
         INSERT INTO users (username, tenant_id, role, status, create_date, update_date) \
         SELECT 'user' || i || '@example.com', 't' || (i / 10), 'member', 'active', {START_MS} + i / 3, 0 FROM n;",
        t_max = USERS / 10 - 1,
        u_max = USERS - 1,
    ));
    let (names, pages) = walk(
        |p| t.admin("GET", p, None),
        &format!("/api/v1/admin/users?limit={MAX_LIMIT}"),
        "username",
    );
    assert_eq!(pages, 100);
    assert_eq!(names.len() as i64, USERS);
    assert_eq!(
        names.iter().collect::<HashSet<_>>().len() as i64,
        USERS,
        "none twice"
    );
    // Without a limit a page is the default size, and a limit above the maximum is refused.
    let r = t.admin("GET", "/api/v1/admin/users", None);
    assert_eq!(r.json_body()["data"].as_array().unwrap().len(), 100);
    assert!(next_link(&r).is_some());
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=nope",
        "cursor=%00",
    ] {
        let r = t.admin("GET", &format!("/api/v1/admin/users?{bad}"), None);
        assert_eq!(r.status, 400, "{bad}");
    }
    // Tenants page the same way.
    let (ids, pages) = walk(
        |p| t.admin("GET", p, None),
        "/api/v1/admin/tenants?limit=1000",
        "id",
    );
    assert_eq!((ids.len() as i64, pages), (USERS / 10, 10));
}

#[test]
fn paging_stays_correct_while_rows_are_added_and_removed_between_pages() {
    let t = T::new();
    for i in 0..25 {
        t.create_user(&format!("u{i:02}"), None, None);
        t.advance_ms(1);
    }
    let first = t.admin("GET", "/api/v1/admin/users?limit=10", None);
    let page1: Vec<String> = first.json_body()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(page1.first().map(String::as_str), Some("u00"));
    // Meanwhile: one user from page one and one from page two go, two new ones arrive.
    t.admin("DELETE", "/api/v1/admin/users/u03", None);
    t.admin("DELETE", "/api/v1/admin/users/u12", None);
    t.create_user("late-1", None, None);
    t.create_user("late-2", None, None);
    let (rest, _) = walk(
        |p| t.admin("GET", p, None),
        &next_link(&first).unwrap(),
        "username",
    );
    let mut all = page1.clone();
    all.extend(rest);
    // Nothing skipped, nothing twice: page one as it was (u03 with it), then every user after u09
    // that still exists, the late ones last.
    let expected: Vec<String> = (0..25)
        .filter(|i| *i != 12)
        .map(|i| format!("u{i:02}"))
        .chain(["late-1".into(), "late-2".into()])
        .collect();
    assert_eq!(all, expected);
}

#[test]
fn a_users_keys_the_own_list_and_the_audit_log_are_paged_too() {
    let t = T::new();
    t.admin(
        "PUT",
        "/api/v1/admin/settings",
        Some(json!({"max_keys_per_user": 300})),
    );
    let (_, k) = t.user_with_key("pat");
    for _ in 0..249 {
        t.issue_key("pat", json!({}));
        t.advance_ms(1);
    }
    let (admin_ids, pages) = walk(
        |p| t.admin("GET", p, None),
        "/api/v1/admin/users/pat/api_key",
        "id",
    );
    assert_eq!((admin_ids.len(), pages), (250, 3), "default page of 100");
    let tok = token(&k);
    let (own_ids, _) = walk(
        |p| t.user(&tok, "GET", p, None),
        "/api/v1/api_keys?limit=7",
        "id",
    );
    assert_eq!(own_ids, admin_ids, "the same keys in the same order");
    // The audit log, newest first, filters kept in the next link.
    let tid = k["tenant_id"].as_str().unwrap();
    let (audit, pages) = walk(
        |p| t.admin("GET", p, None),
        &format!("/api/v1/admin/audit?tenant_id={tid}&limit=60"),
        "action",
    );
    assert_eq!(
        audit.len(),
        252,
        "user.create, tenant.create and 250 api_key.create"
    );
    assert_eq!(pages, 5);
    assert_eq!(audit.last().map(String::as_str), Some("tenant.create"));
    let r = t.admin(
        "GET",
        &format!("/api/v1/admin/audit?tenant_id={tid}&limit=60"),
        None,
    );
    assert!(next_link(&r).unwrap().contains(&format!("tenant_id={tid}")));
}
