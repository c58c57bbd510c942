//! What the relay opened and parsed, kept in this isolate's memory so a call does not decrypt or
//! parse it again: a connection's secrets, a connection's settings, a gateway key's pool, and
//! the scrubber built from a call's credentials (every form of them it cuts from answers).
//!
//! Each entry is keyed by everything its value is a function of: the keyring (its
//! [`Keyring::instance`](crate::domain::crypto::Keyring::instance)), the row's associated data
//! (tenant, factory or kind, model or endpoint, row id), the key version and the ciphertext, or
//! for settings their text. Every write of a credential seals it anew with a fresh nonce, so a
//! rotated, replaced or moved credential is another ciphertext and so another key: an entry is
//! never stale, only unused, and a changed row is opened on its next read. A deleted row is not
//! read, so not asked for. Failures are not kept. Nothing here is logged; the values are exactly
//! what opening produced, and `Debug` is not implemented for them.

use crate::providers::scrub::Scrubber;
use crate::providers::Secrets;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::HashMap;

/// Most entries kept per isolate (credentials and settings together); when full, all are
/// dropped and opened again as calls need them. A thousand rows of a few hundred bytes each.
pub const MAX_ENTRIES: usize = 1_000;

enum Entry {
    Secrets(Secrets),
    Settings(Map<String, Value>),
    Pool(Vec<String>),
    Scrubber(Scrubber),
}

#[derive(Default)]
struct Kept {
    /// The keyring the entries were opened with; another one empties the map.
    keyring: u64,
    map: HashMap<String, Entry>,
}

thread_local! {
    static KEPT: RefCell<Kept> = RefCell::new(Kept::default());
}

/// Look `key` up among what `keyring` opened; else run `open` and keep what it gives.
fn kept<T>(
    keyring: u64,
    key: String,
    hit: impl Fn(&Entry) -> Option<T>,
    open: impl FnOnce() -> Result<(T, Entry), super::error::ApiError>,
) -> Result<T, super::error::ApiError> {
    let found = KEPT.with(|k| {
        let mut k = k.borrow_mut();
        if k.keyring != keyring {
            k.keyring = keyring;
            k.map.clear();
        }
        k.map.get(&key).and_then(&hit)
    });
    if let Some(v) = found {
        return Ok(v);
    }
    let (value, entry) = open()?;
    KEPT.with(|k| {
        let mut k = k.borrow_mut();
        if k.map.len() >= MAX_ENTRIES {
            k.map.clear();
        }
        k.map.insert(key, entry);
    });
    Ok(value)
}

/// A connection's secrets, sealed as `sealed` under `key_version` for associated data `aad`.
pub(crate) fn secrets(
    keyring: u64,
    aad: &str,
    key_version: i64,
    sealed: &str,
    open: impl FnOnce() -> Result<Secrets, super::error::ApiError>,
) -> Result<Secrets, super::error::ApiError> {
    let key = format!("c\0{aad}\0{key_version}\0{sealed}");
    kept(
        keyring,
        key,
        |e| match e {
            Entry::Secrets(s) => Some(s.clone()),
            _ => None,
        },
        || open().map(|s| (s.clone(), Entry::Secrets(s))),
    )
}

/// A gateway key's pool of provider keys, sealed as `sealed` under `key_version` for `aad`
/// (`pooled`: as the JSON array of a pool of more than one).
pub(crate) fn pool(
    keyring: u64,
    aad: &str,
    key_version: i64,
    sealed: &str,
    pooled: bool,
    open: impl FnOnce() -> Result<Vec<String>, super::error::ApiError>,
) -> Result<Vec<String>, super::error::ApiError> {
    let key = format!("k\0{aad}\0{key_version}\0{}\0{sealed}", u8::from(pooled));
    kept(
        keyring,
        key,
        |e| match e {
            Entry::Pool(p) => Some(p.clone()),
            _ => None,
        },
        || open().map(|p| (p.clone(), Entry::Pool(p))),
    )
}

/// A connection's settings (a JSON object; anything else reads as none).
pub(crate) fn settings(keyring: u64, text: &str) -> Map<String, Value> {
    let parse = || {
        let m = match serde_json::from_str(text) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        Ok((m.clone(), Entry::Settings(m)))
    };
    let hit = |e: &Entry| match e {
        Entry::Settings(m) => Some(m.clone()),
        _ => None,
    };
    kept(keyring, format!("s\0{text}"), hit, parse).unwrap_or_default()
}

/// The scrubber for a call's credentials (every encoding of each, built once per set).
pub(crate) fn scrubber(keyring: u64, secrets: &[&str]) -> Scrubber {
    let mut key = String::from("x");
    for s in secrets {
        key.push('\0');
        key.push_str(s);
    }
    let build = || {
        let s = Scrubber::new(secrets);
        Ok((s.clone(), Entry::Scrubber(s)))
    };
    let hit = |e: &Entry| match e {
        Entry::Scrubber(s) => Some(s.clone()),
        _ => None,
    };
    kept(keyring, key, hit, build).unwrap_or_else(|_| Scrubber::new(secrets))
}

/// How many entries this isolate keeps (for tests of the bound).
pub fn kept_entries() -> usize {
    KEPT.with(|k| k.borrow().map.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn an_entry_is_opened_once_and_again_only_for_another_ciphertext_or_keyring() {
        let opens = Cell::new(0);
        let open = || {
            opens.set(opens.get() + 1);
            Ok(Secrets::from_json(r#"{"api_key":"sk-1"}"#))
        };
        for _ in 0..3 {
            let s = secrets(7, "aad", 1, "sealed-1", open).unwrap();
            assert_eq!(s.get("api_key"), Some("sk-1"));
        }
        assert_eq!(opens.get(), 1);
        secrets(7, "aad", 1, "sealed-2", open).unwrap();
        secrets(7, "aad", 2, "sealed-2", open).unwrap();
        secrets(7, "moved", 2, "sealed-2", open).unwrap();
        assert_eq!(opens.get(), 4, "ciphertext, version and row each count");
        secrets(8, "aad", 1, "sealed-1", open).unwrap();
        assert_eq!(opens.get(), 5, "another keyring opens again");
    }

    #[test]
    fn a_scrubber_is_built_once_per_set_of_credentials() {
        let a = scrubber(12, &["sk-one-0123456789", "sk-two-0123456789"]);
        let again = scrubber(12, &["sk-one-0123456789", "sk-two-0123456789"]);
        assert!(std::sync::Arc::ptr_eq(&a.0, &again.0), "built again");
        let other = scrubber(12, &["sk-one-0123456789"]);
        assert!(!std::sync::Arc::ptr_eq(&a.0, &other.0));
        assert_eq!(other.text("x sk-one-0123456789 y"), "x *** y");
    }

    #[test]
    fn a_failure_is_not_kept() {
        let opens = Cell::new(0);
        let failing = || {
            opens.set(opens.get() + 1);
            Err(super::super::error::ApiError::Internal("no".into()))
        };
        for _ in 0..2 {
            assert!(pool(9, "a", 1, "s", false, failing).is_err());
        }
        assert_eq!(opens.get(), 2);
    }

    #[test]
    fn settings_are_parsed_once_per_text_and_the_cache_stays_within_its_cap() {
        let a = settings(11, r#"{"location":"europe-west4"}"#);
        assert_eq!(a["location"], "europe-west4");
        assert!(settings(11, "not json").is_empty());
        for i in 0..(MAX_ENTRIES + 10) {
            settings(11, &format!("{{\"n\":{i}}}"));
            assert!(kept_entries() <= MAX_ENTRIES);
        }
        assert_eq!(settings(11, r#"{"n":3}"#)["n"], 3);
    }
}
