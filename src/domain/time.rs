//! Time as the API shows it: RFC 3339 UTC strings outside, integer milliseconds inside.

use chrono::{DateTime, SecondsFormat, Utc};

pub const MS_PER_MINUTE: i64 = 60_000;

/// `1732416748000` -> `"2024-11-24T02:52:28Z"`.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Parse an RFC 3339 timestamp (any offset) to milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Parse an HTTP date (RFC 9110's IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`, which is RFC
/// 2822 syntax) to milliseconds since the epoch.
pub fn parse_http_date(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc2822(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_second_precision() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            parse_rfc3339("2026-11-24T02:52:28Z"),
            Some(1_795_488_748_000)
        );
        assert_eq!(rfc3339(1_795_488_748_000), "2026-11-24T02:52:28Z");
        assert_eq!(
            parse_rfc3339("2026-11-24T03:52:28+01:00"),
            Some(1_795_488_748_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
