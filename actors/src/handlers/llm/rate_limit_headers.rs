//! What a provider's response headers say about its rate limits, as a
//! [`RateLimitHint`]. Pure: the clock is a parameter, nothing is remembered.
//!
//! Understood: `retry-after-ms` (milliseconds, OpenAI and Azure), `Retry-After`
//! (seconds, possibly fractional, or an HTTP date), and OpenAI's
//! `x-ratelimit-remaining-{requests,tokens}` and
//! `x-ratelimit-reset-{requests,tokens}` (Go-style durations such as `1s`,
//! `6m0s`, `250ms`, `1m30.5s`, or plain seconds). A header that does not parse
//! is ignored, never an error: hints only make budgets more accurate.

use std::time::SystemTime;

use herd_protocol::messages::provider::RateLimitHint;
use reqwest::header::HeaderMap;

/// The hint carried by `headers`, dates read relative to `now`.
pub(super) fn rate_limit_hint(headers: &HeaderMap, now: SystemTime) -> RateLimitHint {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let retry_after_ms = text("retry-after-ms")
        .and_then(milliseconds)
        .or_else(|| text("retry-after").and_then(|value| retry_after(value, now)));
    RateLimitHint {
        retry_after_ms,
        remaining_requests: text("x-ratelimit-remaining-requests").and_then(count),
        reset_requests_ms: text("x-ratelimit-reset-requests").and_then(duration_ms),
        remaining_tokens: text("x-ratelimit-remaining-tokens").and_then(count),
        reset_tokens_ms: text("x-ratelimit-reset-tokens").and_then(duration_ms),
    }
}

fn count(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

fn milliseconds(text: &str) -> Option<u64> {
    let value: f64 = text.trim().parse().ok()?;
    whole_ms(value)
}

/// Seconds (whole or fractional) or an HTTP date; a date in the past is 0.
fn retry_after(text: &str, now: SystemTime) -> Option<u64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return whole_ms(seconds * 1000.0);
    }
    let at = httpdate::parse_http_date(text).ok()?;
    let wait = at.duration_since(now).unwrap_or_default();
    Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
}

/// A Go-style duration (`1h2m3.5s`, `250ms`, `20us`) or plain seconds.
fn duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return whole_ms(seconds * 1000.0);
    }
    if text.is_empty() {
        return None;
    }
    let mut total_ms = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let unit_end = rest[number_end..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .map_or(rest.len(), |offset| number_end + offset);
        let value: f64 = rest[..number_end].parse().ok()?;
        let unit_ms = match &rest[number_end..unit_end] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1_000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        total_ms += value * unit_ms;
        rest = &rest[unit_end..];
    }
    whole_ms(total_ms)
}

/// Rounded up, so a hint never says "go" a fraction of a millisecond early
/// (after dropping float noise below a microsecond: 8.64 s is 8640 ms).
fn whole_ms(value: f64) -> Option<u64> {
    let value = (value * 1000.0).round() / 1000.0;
    (value.is_finite() && value >= 0.0).then(|| value.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::header::{HeaderName, HeaderValue};

    use super::*;

    fn hint(pairs: &[(&str, &str)]) -> RateLimitHint {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        // 2015-10-21 07:28:00 UTC
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        rate_limit_hint(&headers, now)
    }

    #[test]
    fn retry_after_in_every_form() {
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let table: &[(Headers, Option<u64>)] = &[
            (&[("retry-after", "2")], Some(2_000)),
            (&[("Retry-After", "0.5")], Some(500)),
            (
                &[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")],
                Some(30_000),
            ),
            (&[("retry-after", "Wed, 21 Oct 2015 07:27:00 GMT")], Some(0)),
            (&[("retry-after-ms", "1500")], Some(1_500)),
            (&[("retry-after-ms", "12.2")], Some(13)),
            // The millisecond header is the more precise one.
            (
                &[("retry-after", "2"), ("retry-after-ms", "1500")],
                Some(1_500),
            ),
            (&[("retry-after", "soon")], None),
            (&[("retry-after", "-3")], None),
            (&[], None),
        ];
        for (headers, expected) in table {
            assert_eq!(hint(headers).retry_after_ms, *expected, "{headers:?}");
        }
    }

    #[test]
    fn openai_durations_and_plain_seconds() {
        let table: &[(&str, Option<u64>)] = &[
            ("1s", Some(1_000)),
            ("6m0s", Some(360_000)),
            ("250ms", Some(250)),
            ("1m30.5s", Some(90_500)),
            ("1h2m", Some(3_720_000)),
            ("20us", Some(1)),
            ("17", Some(17_000)),
            ("0.25", Some(250)),
            ("", None),
            ("5 minutes", None),
            ("1x", None),
            ("s", None),
        ];
        for (text, expected) in table {
            let parsed = hint(&[("x-ratelimit-reset-requests", text)]);
            assert_eq!(parsed.reset_requests_ms, *expected, "{text:?}");
        }
    }

    #[test]
    fn remaining_and_reset_of_requests_and_tokens() {
        let parsed = hint(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "8.64s"),
            ("x-ratelimit-remaining-tokens", "149984"),
            ("x-ratelimit-reset-tokens", "6ms"),
        ]);
        assert_eq!(
            parsed,
            RateLimitHint {
                retry_after_ms: None,
                remaining_requests: Some(0),
                reset_requests_ms: Some(8_640),
                remaining_tokens: Some(149_984),
                reset_tokens_ms: Some(6),
            }
        );
        assert!(hint(&[("x-ratelimit-remaining-tokens", "many")]).is_empty());
    }
}
