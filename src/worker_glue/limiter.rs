//! Brute-force throttling over the Workers rate-limiting binding (`AUTH_FAILURES`).
//!
//! The binding counts failures per client within its period; its counters are per Cloudflare
//! location, so a client spread over many locations gets each location's budget. Once a client is
//! over budget, this isolate remembers the block for [`BLOCK_MS`] so that every attempt, a correct
//! one included, gets 429 before any credential work.

use crate::store::Limiter;
use std::cell::RefCell;
use std::collections::HashMap;

/// How long a client stays blocked after going over its failure budget (the binding's period).
pub const BLOCK_MS: i64 = 60_000;
/// Most blocked clients remembered per isolate; expired entries are dropped first.
const MAX_TRACKED: usize = 10_000;

thread_local! {
    static BLOCKED: RefCell<HashMap<String, i64>> = RefCell::new(HashMap::new());
}

pub struct BindingLimiter(pub Option<worker::RateLimiter>);

fn seconds_until(until: i64, now: i64) -> u64 {
    ((until - now).max(1000) as u64).div_ceil(1000)
}

impl Limiter for BindingLimiter {
    fn blocked_for(&self, client: &str, now_ms: i64) -> Option<u64> {
        BLOCKED.with(|b| {
            let mut b = b.borrow_mut();
            match b.get(client).copied() {
                Some(until) if until > now_ms => Some(seconds_until(until, now_ms)),
                Some(_) => {
                    b.remove(client);
                    None
                }
                None => None,
            }
        })
    }

    async fn failure(&self, client: &str, now_ms: i64) -> Option<u64> {
        let limiter = self.0.as_ref()?;
        let outcome = match limiter.limit(format!("authfail:{client}")).await {
            Ok(o) => o,
            Err(e) => {
                log::warn!("rate limiter unavailable: {e}");
                return None;
            }
        };
        if outcome.success {
            return None;
        }
        let until = now_ms + BLOCK_MS;
        BLOCKED.with(|b| {
            let mut b = b.borrow_mut();
            if b.len() >= MAX_TRACKED {
                b.retain(|_, t| *t > now_ms);
            }
            if b.len() < MAX_TRACKED {
                b.insert(client.to_owned(), until);
            }
        });
        Some(seconds_until(until, now_ms))
    }
}
