//! Which provider keys of a gateway key's pool are cooling down after a failure, so the relay
//! tries the next one instead of a key the provider just refused or rate limited.
//!
//! Kept in this isolate's memory (a static of the core, like the Vertex token cache): each
//! isolate learns on its own, and a recycled one starts with every key available. Entries are
//! keyed by the gateway key's id and the member's index, never by the secret. A cool-down shared
//! by every isolate needs shared state (a Durable Object), which this module does not have.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The cool-down when the provider gives no `Retry-After` (or the failure was a timeout or a
/// refused credential).
pub const DEFAULT_COOLDOWN_S: u64 = 30;
/// Entries kept at most; past it the ended ones go, then everything (forgetting only means a
/// key is tried once more).
pub const MAX_ENTRIES: usize = 4096;

static COOLING: Mutex<BTreeMap<(String, usize), i64>> = Mutex::new(BTreeMap::new());

fn cooling() -> std::sync::MutexGuard<'static, BTreeMap<(String, usize), i64>> {
    // Each write is one insert or remove, so a panic elsewhere leaves the map whole.
    COOLING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The order in which to try the `size` members of gateway key `key_id` at `now_ms`: every
/// member not cooling down, in priority order. When all are cooling down, only the one whose
/// cool-down ends first, so a request still reaches the provider (whose answer is then the
/// client's) and a pool of one behaves as if there were no cool-down.
pub fn order(key_id: &str, size: usize, now_ms: i64) -> Vec<usize> {
    let map = cooling();
    let until = |i: usize| {
        map.get(&(key_id.to_owned(), i))
            .copied()
            .filter(|t| *t > now_ms)
    };
    let free: Vec<usize> = (0..size).filter(|i| until(*i).is_none()).collect();
    if !free.is_empty() {
        return free;
    }
    (0..size)
        .min_by_key(|i| until(*i).unwrap_or(i64::MIN))
        .into_iter()
        .collect()
}

/// Keep member `index` of `key_id` out for `seconds` from `now_ms`.
pub fn cool(key_id: &str, index: usize, seconds: u64, now_ms: i64) {
    let until =
        now_ms.saturating_add(i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX));
    let mut map = cooling();
    let entry = (key_id.to_owned(), index);
    if map.len() >= MAX_ENTRIES && !map.contains_key(&entry) {
        map.retain(|_, t| *t > now_ms);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
    }
    map.insert(entry, until);
}

/// Member `index` of `key_id` served a call: it is available again at once.
pub fn clear(key_id: &str, index: usize) {
    cooling().remove(&(key_id.to_owned(), index));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cooling_member_is_skipped_until_its_time_is_up() {
        let id = "cooldown-test-skip";
        assert_eq!(order(id, 3, 0), vec![0, 1, 2]);
        cool(id, 0, 5, 1_000);
        assert_eq!(order(id, 3, 1_000), vec![1, 2]);
        assert_eq!(order(id, 3, 5_999), vec![1, 2]);
        assert_eq!(order(id, 3, 6_000), vec![0, 1, 2]);
    }

    #[test]
    fn when_every_member_cools_the_one_ending_first_is_tried_alone() {
        let id = "cooldown-test-all";
        cool(id, 0, 30, 0);
        cool(id, 1, 5, 0);
        assert_eq!(order(id, 2, 1), vec![1]);
        clear(id, 1);
        assert_eq!(order(id, 2, 1), vec![1]);
        assert_eq!(order("cooldown-test-one", 1, 0), vec![0]);
        cool("cooldown-test-one", 0, 30, 0);
        assert_eq!(
            order("cooldown-test-one", 1, 1),
            vec![0],
            "a pool of one is always tried"
        );
    }
}
