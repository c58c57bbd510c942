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

/// Parse an HTTP date in RFC 9110's IMF-fixdate form (`Sun, 06 Nov 1994 08:49:37 GMT`, the only
/// form senders may generate) to milliseconds since the epoch. Read by hand: chrono's RFC 2822
/// parser would add about 7 KB (gzip) to the Worker for one header; the obsolete RFC 850 and
/// asctime forms are not read (`None`).
pub fn parse_http_date(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (weekday, rest) = s.split_once(", ")?;
    let mut parts = rest.split(' ');
    let (day, month, year, clock, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if parts.next().is_some() || zone != "GMT" || weekday.len() != 3 || day.len() != 2 {
        return None;
    }
    let digits = |t: &str, n: usize| {
        (t.len() == n && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<u32>().ok())
            .flatten()
    };
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let mut hms = clock.split(':');
    let (h, m, sec) = (
        digits(hms.next()?, 2)?,
        digits(hms.next()?, 2)?,
        digits(hms.next()?, 2)?,
    );
    if hms.next().is_some() {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(digits(year, 4)? as i32, month, digits(day, 2)?)?;
    let at = date.and_hms_opt(h, m, sec)?.and_utc();
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let named = DAYS[chrono::Datelike::weekday(&at).num_days_from_monday() as usize];
    (named == weekday).then(|| at.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_in_imf_fixdate_form_are_read_and_others_are_not() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        for bad in [
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

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
