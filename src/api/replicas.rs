//! Opt-in D1 read replication: with `D1_READ_REPLICATION = "on"` every request runs in a D1
//! session (the Sessions API) that may read from the nearest replica (`first-unconstrained`), or
//! from one at least as new as the bookmark the client sends back in [`BOOKMARK_HEADER`]; writes
//! always go to the primary. Management answers (`/api/...`) carry the session's latest bookmark
//! in the same header, so a client that sends it with its next request reads its own writes.
//!
//! What a replica's lag means: a key revoked (or a user disabled) on the primary may still verify
//! on a lagging replica until the replica catches up, for as long as that replica lags; a client
//! holding a bookmark from the revoking answer is never served older data. Off (the default),
//! every read goes to the primary and revocation is immediate.

use super::error::ApiError;
use super::http::Request;

/// The var that turns it on.
pub const VAR: &str = "D1_READ_REPLICATION";
/// The header a bookmark travels in, both ways (the name Cloudflare's own examples use).
pub const BOOKMARK_HEADER: &str = "x-d1-bookmark";
/// The session's start without a bookmark: any replica.
pub const UNCONSTRAINED: &str = "first-unconstrained";
/// Longest bookmark taken (D1's are a few dozen characters).
const MAX_BOOKMARK: usize = 256;

/// Whether the var's value turns replication on (`on`, `true` or `1`; anything else is off).
pub fn enabled(value: Option<&str>) -> bool {
    matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("on" | "true" | "1")
    )
}

/// Where the request's session starts: the client's bookmark, else [`UNCONSTRAINED`]. A bookmark
/// that is not one (D1's are hex groups joined by `-`) is a 400 naming the header, so it never
/// reaches D1 to fail there.
pub fn session_start(req: &Request) -> Result<String, ApiError> {
    let mut sent = req.headers_named(BOOKMARK_HEADER);
    let Some(b) = sent.next().map(str::trim).filter(|b| !b.is_empty()) else {
        return Ok(UNCONSTRAINED.to_owned());
    };
    let well_formed = b.len() <= MAX_BOOKMARK
        && b.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-')
        && sent.next().is_none();
    if !well_formed {
        return Err(ApiError::bad(
            BOOKMARK_HEADER,
            "must be one bookmark as a previous answer gave it (hex digits and -)",
        ));
    }
    Ok(b.to_owned())
}

/// Whether an answer to this path carries the session's bookmark: the management API.
pub fn answers_bookmark(path: &str) -> bool {
    path.starts_with("/api/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_on_turns_replication_on() {
        for on in ["on", "ON", " true", "1"] {
            assert!(enabled(Some(on)), "{on}");
        }
        for off in [None, Some(""), Some("off"), Some("0"), Some("yes please")] {
            assert!(!enabled(off), "{off:?}");
        }
    }

    #[test]
    fn a_session_starts_at_the_clients_bookmark_or_anywhere() {
        let req = |v: Option<&str>| {
            let r = Request::new("GET", "/api/v1/me");
            match v {
                Some(v) => r.header(BOOKMARK_HEADER, v),
                None => r,
            }
        };
        assert_eq!(session_start(&req(None)).unwrap(), UNCONSTRAINED);
        assert_eq!(session_start(&req(Some(" "))).unwrap(), UNCONSTRAINED);
        let b = "0000000a-00000003-00004fb3-2bd7b1c3e4a0c6b5d1f2e3a4b5c6d7e8";
        assert_eq!(session_start(&req(Some(b))).unwrap(), b);
        for bad in ["first-primary", "00ff;drop", &"a".repeat(257)] {
            let e = session_start(&req(Some(bad))).unwrap_err();
            assert!(e.message().contains(BOOKMARK_HEADER), "{bad}");
        }
        let twice = req(Some(b)).header(BOOKMARK_HEADER, b);
        assert!(session_start(&twice).is_err(), "one bookmark, not two");
    }
}
