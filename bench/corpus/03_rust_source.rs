use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A token bucket per client: `capacity` tokens, refilled at `rate` per second.
pub struct Limiter {
    capacity: f64,
    rate: f64,
    buckets: HashMap<String, (f64, Instant)>,
}

impl Limiter {
    pub fn new(capacity: u32, per: Duration) -> Self {
        Self {
            capacity: f64::from(capacity),
            rate: f64::from(capacity) / per.as_secs_f64(),
            buckets: HashMap::new(),
        }
    }

    /// Take one token for `client`; `Err(wait)` when the bucket is empty.
    pub fn take(&mut self, client: &str, now: Instant) -> Result<(), Duration> {
        let (tokens, last) = self
            .buckets
            .entry(client.to_owned())
            .or_insert((self.capacity, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_over_time() {
        let mut l = Limiter::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(l.take("a", t0).is_ok());
        assert!(l.take("a", t0).is_ok());
        assert!(l.take("a", t0).is_err());
        assert!(l.take("a", t0 + Duration::from_millis(600)).is_ok());
    }
}
