//! Go duration syntax, as written by Go's `time.Duration.String` and read by
//! `time.ParseDuration`.
//!
//! TTLs travel in the `Time-To-Live` header in this syntax, and the command
//! line's `--ttl` flag accepts it.
//!
//! ```
//! use std::time::Duration;
//! use cachew_proto::duration::{format, parse};
//!
//! assert_eq!(format(Duration::from_secs(5400)), "1h30m0s");
//! assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
//! assert_eq!(parse("300ms").unwrap(), Duration::from_millis(300));
//! ```

use std::time::Duration;

use crate::error::{ProtoError, Reason};

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Go's largest duration, `1<<63 - 1` nanoseconds (about 292 years).
const GO_MAX_NANOS: u64 = i64::MAX as u64;

/// Formats `d` exactly as Go's `Duration.String` does: `1h0m0s`, `1m30s`,
/// `1.5s`, `300ms`, `1.5µs`, `0s`.
///
/// Durations beyond Go's maximum (about 292 years) are clamped to it. Note
/// the micro sign in sub-millisecond values; use [`format_ascii`] for headers.
pub fn format(d: Duration) -> String {
    format_with(d, "µ")
}

/// Like [`format()`] but spells microseconds `us`, which Go also parses; the
/// result is always ASCII, so it is safe in HTTP headers.
pub fn format_ascii(d: Duration) -> String {
    format_with(d, "u")
}

fn format_with(d: Duration, micro: &str) -> String {
    let nanos = u64::try_from(d.as_nanos())
        .unwrap_or(u64::MAX)
        .min(GO_MAX_NANOS);
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < NANOS_PER_SEC {
        let (unit, prec) = if nanos < 1_000 {
            ("n", 0)
        } else if nanos < 1_000_000 {
            (micro, 3)
        } else {
            ("m", 6)
        };
        let (int, frac) = split_fraction(nanos, prec);
        return format!("{int}{frac}{unit}s");
    }
    let (secs, frac) = split_fraction(nanos, 9);
    let (mins, secs) = (secs / 60, secs % 60);
    let (hours, mins) = (mins / 60, mins % 60);
    if hours > 0 {
        format!("{hours}h{mins}m{secs}{frac}s")
    } else if mins > 0 {
        format!("{mins}m{secs}{frac}s")
    } else {
        format!("{secs}{frac}s")
    }
}

/// Splits `v` into `v / 10^prec` and the fraction `.ddd` with trailing zeros
/// removed (empty when the fraction is zero), like Go's `fmtFrac`.
fn split_fraction(v: u64, prec: u32) -> (u64, String) {
    let scale = 10u64.pow(prec);
    let (int, frac) = (v / scale, v % scale);
    if frac == 0 {
        return (int, String::new());
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    (int, format!(".{}", digits.trim_end_matches('0')))
}

/// Parses Go duration syntax: `[-+]?([0-9]*(\.[0-9]*)?unit)+` with units
/// `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`, or the bare `0`.
///
/// Accepts exactly what Go's `time.ParseDuration` accepts and computes the
/// same value, except that negative durations (which [`Duration`] cannot
/// hold) are rejected.
pub fn parse(input: &str) -> Result<Duration, ProtoError> {
    let err = |reason: &'static str| ProtoError::InvalidDuration {
        input: input.to_owned(),
        reason: Reason(reason),
    };
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let overflow = || err("it is larger than Go's maximum duration (about 292 years)");
    let mut total: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(err("expected a number before each unit"));
        }
        // Integer part.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut value: u64 = 0;
        for b in s[..int_len].bytes() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .filter(|v| *v <= 1 << 63)
                .ok_or_else(overflow)?;
        }
        s = &s[int_len..];
        // Fraction part: digits past what fits are dropped, as Go does.
        let mut fraction: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut frac_len = None;
        if let Some(rest) = s.strip_prefix('.') {
            let len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflowed = false;
            for b in rest[..len].bytes() {
                if overflowed {
                    continue;
                }
                match fraction
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .filter(|v| *v <= 1 << 63)
                {
                    Some(v) => {
                        fraction = v;
                        scale *= 10.0;
                    }
                    None => overflowed = true,
                }
            }
            frac_len = Some(len);
            s = &rest[len..];
        }
        if int_len == 0 && frac_len.unwrap_or(0) == 0 {
            return Err(err("expected digits before the unit"));
        }
        // Unit: everything up to the next digit or '.'.
        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(err("missing unit (use ns, us, µs, ms, s, m or h)"));
        }
        let unit: u64 = match &s[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            _ => return Err(err("unknown unit (use ns, us, µs, ms, s, m or h)")),
        };
        s = &s[unit_len..];
        if value > (1u64 << 63) / unit {
            return Err(overflow());
        }
        value *= unit;
        if fraction > 0 {
            // Go uses float64 here too: it is nanosecond-accurate for
            // fractions of the largest unit, the hour.
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > 1 << 63 {
                return Err(overflow());
            }
        }
        total = total.checked_add(value).ok_or_else(overflow)?;
        if total > 1 << 63 {
            return Err(overflow());
        }
    }
    if negative && total > 0 {
        return Err(err("negative durations are not allowed"));
    }
    if total > GO_MAX_NANOS {
        return Err(overflow());
    }
    Ok(Duration::from_nanos(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(n: u64) -> Duration {
        Duration::from_nanos(n)
    }

    #[test]
    fn formats_like_go() {
        // Expected strings are what Go's Duration.String prints.
        let cases = [
            (ns(0), "0s"),
            (ns(1), "1ns"),
            (ns(1_100), "1.1µs"),
            (ns(2_200_000), "2.2ms"),
            (ns(3_300_000_000), "3.3s"),
            (ns(4 * 60 * NANOS_PER_SEC + 5 * NANOS_PER_SEC), "4m5s"),
            (ns(4 * 60 * NANOS_PER_SEC + 5_001_000_000), "4m5.001s"),
            (
                ns(5 * 3600 * NANOS_PER_SEC + 6 * 60 * NANOS_PER_SEC + 7_001_000_000),
                "5h6m7.001s",
            ),
            (ns(8 * 60 * NANOS_PER_SEC + 1), "8m0.000000001s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(300), "300ms"),
            (ns(GO_MAX_NANOS), "2562047h47m16.854775807s"),
            (Duration::MAX, "2562047h47m16.854775807s"),
        ];
        for (d, want) in cases {
            assert_eq!(format(d), want, "{d:?}");
        }
        assert_eq!(format_ascii(ns(1_500)), "1.5us");
    }

    #[test]
    fn parses_like_go() {
        let h = 3600 * NANOS_PER_SEC;
        let m = 60 * NANOS_PER_SEC;
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("5s", 5 * NANOS_PER_SEC),
            ("30s", 30 * NANOS_PER_SEC),
            ("1478s", 1478 * NANOS_PER_SEC),
            ("-0", 0),
            ("+5s", 5 * NANOS_PER_SEC),
            ("-0s", 0),
            ("5.0s", 5 * NANOS_PER_SEC),
            ("5.6s", 5 * NANOS_PER_SEC + 600_000_000),
            ("5.s", 5 * NANOS_PER_SEC),
            (".5s", 500_000_000),
            ("1.0s", NANOS_PER_SEC),
            ("1.00s", NANOS_PER_SEC),
            ("1.004s", NANOS_PER_SEC + 4_000_000),
            ("1.0040s", NANOS_PER_SEC + 4_000_000),
            ("100.00100s", 100 * NANOS_PER_SEC + 1_000_000),
            ("10ns", 10),
            ("11us", 11_000),
            ("12µs", 12_000),
            ("12μs", 12_000),
            ("13ms", 13_000_000),
            ("14s", 14 * NANOS_PER_SEC),
            ("15m", 15 * m),
            ("16h", 16 * h),
            ("3h30m", 3 * h + 30 * m),
            ("1h30m", h + 30 * m),
            ("1.5h", h + 30 * m),
            ("10.5s4m", 4 * m + 10 * NANOS_PER_SEC + 500_000_000),
            ("2h45m0.5s", 2 * h + 45 * m + 500_000_000),
            (
                "1h1m1s1ms1us1ns",
                h + m + NANOS_PER_SEC + 1_000_000 + 1_000 + 1,
            ),
            ("1µs", 1_000),
            ("1us", 1_000),
            (
                "39h9m14.425s",
                39 * h + 9 * m + 14 * NANOS_PER_SEC + 425_000_000,
            ),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * m),
            ("9007199254740993ns", 9_007_199_254_740_993),
            ("9223372036854775807ns", GO_MAX_NANOS),
            ("9223372036854775.807us", GO_MAX_NANOS),
            ("9223372036s854ms775us807ns", GO_MAX_NANOS),
            ("0.100000000000000000000h", 6 * m),
            (
                "0.830103483285477580700h",
                49 * m + 48 * NANOS_PER_SEC + 372_539_827,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).unwrap(), ns(*want), "{input}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        let cases = [
            ("", "empty"),
            ("3", "missing unit"),
            ("-", "empty"),
            ("s", "number"),
            (".", "digits"),
            ("-.", "digits"),
            (".s", "digits"),
            ("+.s", "digits"),
            ("1d", "unknown unit"),
            ("1.5x", "unknown unit"),
            ("3000000h", "maximum"),
            ("9223372036854775808ns", "maximum"),
            ("9223372036854775.808us", "maximum"),
            ("9223372036854ms775us808ns", "maximum"),
            ("-5s", "negative"),
            ("1h 30m", "unknown unit"),
            (" 1h", "number"),
        ];
        for (input, why) in cases {
            let msg = parse(input).unwrap_err().to_string();
            assert!(msg.contains(&format!("{input:?}")), "{msg}");
            assert!(msg.contains(why), "{input:?}: {msg} should say {why}");
        }
    }

    #[test]
    fn format_round_trips_through_parse() {
        let values = [
            ns(1),
            ns(999),
            ns(1_500),
            ns(999_999),
            ns(1_000_001),
            Duration::from_millis(300),
            Duration::from_secs(1),
            Duration::from_millis(1_500),
            Duration::from_secs(59),
            Duration::from_secs(90),
            Duration::from_secs(3600),
            Duration::from_secs(5400),
            Duration::from_secs(7 * 24 * 3600),
            ns(2 * 3600 * NANOS_PER_SEC + 45 * 60 * NANOS_PER_SEC + 500_000_000),
            ns(123_456_789_012_345),
            ns(GO_MAX_NANOS),
        ];
        for d in values {
            assert_eq!(parse(&format(d)).unwrap(), d, "{}", format(d));
            assert_eq!(parse(&format_ascii(d)).unwrap(), d, "{}", format_ascii(d));
            assert!(format_ascii(d).is_ascii());
        }
    }
}
