//! netlog's textual grammar for durations, sizes and offsets.
//!
//! *Durations* ("bigduration"): optional `<n>year`, `<n>month`, `<n>day` parts
//! in that order (a year is 365 days, a month 30), then an optional Go-style
//! duration made of `<number><unit>` runs with units `ns`, `us`/`µs`, `ms`,
//! `s`, `m`, `h` (`300ms`, `1h30m`, `1.5h`). `0` alone is zero. Examples:
//! `5s`, `1day`, `1month2day3h`. Case-insensitive.
//!
//! *Sizes*: a whole number of bytes, optionally with a unit: `B`, `KB`/`MB`/
//! `GB`/`TB` (powers of 1000) or `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024).
//!
//! *Offsets*: empty, `beginning`, `first`, `oldest`, `start` (the oldest
//! offset); `last`, `latest` (the latest); `end`, `now` (latest + 1); a whole
//! number; or a duration, meaning the first offset written at or after now
//! minus that duration. Case-insensitive; negative numbers are refused.

use std::time::Duration;

const DAY_SECS: u64 = 24 * 3600;

/// Why a duration, size or offset did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {text:?}: {why}")]
pub struct ParseError {
    /// "duration", "size" or "offset".
    pub what: &'static str,
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

fn err(what: &'static str, text: &str, why: &'static str) -> ParseError {
    ParseError {
        what,
        text: text.to_string(),
        why,
    }
}

/// Parses a bigduration (see the module docs).
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    let bad = |why| err("duration", text, why);
    let s = text.trim().to_ascii_lowercase();
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut rest = s.as_str();
    let mut total = Duration::ZERO;
    // year, month, day parts, in that order.
    for (unit, days) in [("year", 365u64), ("month", 30), ("day", 1)] {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || !rest[digits..].starts_with(unit) {
            continue;
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| bad("number too large"))?;
        let mut after = &rest[digits + unit.len()..];
        after = after.strip_prefix('s').unwrap_or(after);
        total = n
            .checked_mul(days * DAY_SECS)
            .and_then(|secs| total.checked_add(Duration::from_secs(secs)))
            .ok_or(bad("too long"))?;
        rest = after;
    }
    if rest.is_empty() {
        return Ok(total);
    }
    if rest == "0" {
        return Ok(total);
    }
    let go = parse_go_duration(rest).ok_or(bad("not a duration"))?;
    total.checked_add(go).ok_or(bad("too long"))
}

/// Go's `time.ParseDuration` grammar, unsigned.
fn parse_go_duration(mut s: &str) -> Option<Duration> {
    let mut total = 0f64;
    while !s.is_empty() {
        let num_len = s
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if num_len == 0 {
            return None;
        }
        let n: f64 = s[..num_len].parse().ok()?;
        s = &s[num_len..];
        let unit_len = s
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(s.len(), |(i, _)| i);
        let nanos = match &s[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * nanos;
        s = &s[unit_len..];
    }
    (total.is_finite() && total < u64::MAX as f64).then(|| Duration::from_nanos(total as u64))
}

/// Formats a duration in the same grammar, e.g. `30day`, `1day2h`, `200ms`.
pub fn format_duration(d: Duration) -> String {
    let mut out = String::new();
    let mut secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let days = secs / DAY_SECS;
    secs %= DAY_SECS;
    if days > 0 {
        out.push_str(&format!("{days}day"));
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    for (n, unit) in [(h, "h"), (m, "m")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if nanos == 0 {
        if s > 0 {
            out.push_str(&format!("{s}s"));
        }
    } else if s == 0 && nanos.is_multiple_of(1_000_000) {
        out.push_str(&format!("{}ms", nanos / 1_000_000));
    } else {
        out.push_str(&format!("{}ns", u64::from(nanos) + s * 1_000_000_000));
    }
    if out.is_empty() {
        out.push('0');
    }
    out
}

/// Parses a size (see the module docs).
pub fn parse_size(text: &str) -> Result<u64, ParseError> {
    let bad = |why| err("size", text, why);
    let s = text.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad("must start with a whole number"));
    }
    let n: u64 = s[..digits].parse().map_err(|_| bad("number too large"))?;
    let mult: u64 = match s[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000u64.pow(2),
        "gb" => 1000u64.pow(3),
        "tb" => 1000u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(bad(
                "unknown unit (use B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)",
            ));
        }
    };
    n.checked_mul(mult).ok_or(bad("too large"))
}

/// An offset as a request names it, before it is resolved against a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The oldest offset still stored.
    Oldest,
    /// The latest offset written.
    Latest,
    /// The offset the next message will get.
    End,
    /// This exact offset.
    At(u64),
    /// The first offset written at or after now minus this.
    Ago(Duration),
}

/// Parses an offset (see the module docs).
pub fn parse_offset(text: &str) -> Result<OffsetSpec, ParseError> {
    let s = text.trim().to_ascii_lowercase();
    Ok(match s.as_str() {
        "" | "beginning" | "first" | "oldest" | "start" => OffsetSpec::Oldest,
        "last" | "latest" => OffsetSpec::Latest,
        "end" | "now" => OffsetSpec::End,
        _ if s.bytes().all(|b| b.is_ascii_digit()) => OffsetSpec::At(
            s.parse()
                .map_err(|_| err("offset", text, "number too large"))?,
        ),
        _ if s.starts_with('-') => return Err(err("offset", text, "negative")),
        _ => OffsetSpec::Ago(
            parse_duration(&s).map_err(|_| err("offset", text, "not an offset or duration"))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// netlog's examples parse to the durations they mean.
    #[test]
    fn parses_bigdurations() {
        let s = Duration::from_secs;
        assert_eq!(parse_duration("5s").unwrap(), s(5));
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("1h30m").unwrap(), s(5400));
        assert_eq!(parse_duration("1day").unwrap(), s(86400));
        assert_eq!(
            parse_duration("1month2day3h").unwrap(),
            s(32 * 86400 + 3 * 3600)
        );
        assert_eq!(parse_duration("1year").unwrap(), s(365 * 86400));
        assert_eq!(parse_duration("1.5h").unwrap(), s(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("30DAY").unwrap(), s(30 * 86400));
        for bad in ["", "abc", "5", "-5s", "1day1year", "5x", "h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    /// Formatting gives text that parses back to the same duration.
    #[test]
    fn formats_round_trip() {
        for d in [0u64, 1, 59, 3600, 86400 * 30, 86400 + 7261] {
            let d = Duration::from_secs(d);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        let d = Duration::from_millis(200);
        assert_eq!(format_duration(d), "200ms");
        assert_eq!(format_duration(Duration::from_secs(30 * 86400)), "30day");
    }

    /// Sizes accept decimal and binary units.
    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("500KB").unwrap(), 500_000);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    /// Offsets follow netlog's keywords, numbers and durations.
    #[test]
    fn parses_offsets() {
        use OffsetSpec::*;
        for (t, want) in [
            ("", Oldest),
            ("Beginning", Oldest),
            ("first", Oldest),
            ("oldest", Oldest),
            ("start", Oldest),
            ("last", Latest),
            ("LATEST", Latest),
            ("end", End),
            ("now", End),
            ("42", At(42)),
            ("1m", Ago(Duration::from_secs(60))),
        ] {
            assert_eq!(parse_offset(t).unwrap(), want, "{t}");
        }
        assert!(parse_offset("-1").is_err());
        assert!(parse_offset("soon").is_err());
    }
}
