//! v1 messages over HTTP: the `Netlog-*` request headers, ndjson envelopes,
//! and how a message read back is shown on every read route.
//!
//! A publish becomes a v1 message when it carries any of `Netlog-Key`
//! (`<pct>`), `Netlog-Key-Base64`, `Netlog-Header-<name>` (`<pct>`, the name
//! lowercased by HTTP itself) or `Netlog-Timestamp` (integer ms, or RFC 3339
//! with `Z` or an offset); a request with none of them is stored and
//! answered exactly as before. Every bound is `record.rs`'s, and a request
//! that breaks one is a `400` naming the header and the bound.
//!
//! Reading, a message is a [`View`]: its offset, its value, and the CRC-32
//! *of the value as sent* (for a v0 message, the stored CRC, which is the
//! same thing). A v0 message's view is shown with exactly the bytes and
//! headers of the build before v1; a v1 message's adds `Netlog-Format: 1`,
//! `Netlog-Key`, `Netlog-Timestamp` and one `Netlog-Header-<name>` per
//! header (single reads), or `key`/`key_base64`, `timestamp` and
//! `headers`/`headers_base64` (ndjson lines, which are valid envelopes when
//! published again with `?envelope=true`). A v1 record that does not parse
//! is `500 format error` with its offset.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::ApiError;
use crate::message::Message;
use crate::record::{MAX_TIMESTAMP_MS, Record, RecordError};

/// Prefix of the request and answer headers that carry one message header.
pub const HEADER_PREFIX: &str = "netlog-header-";

/// A message as a consumer sees it. See the module docs.
pub(crate) struct View {
    pub offset: u64,
    /// CRC-32 of `value`.
    pub crc: u32,
    pub value: Bytes,
    /// The record of a v1 message (its `value` is `value`).
    pub record: Option<Record>,
}

impl View {
    /// The view of `m`; a v1 record that does not parse is a format error.
    pub(crate) fn of(m: &Message) -> Result<View, ApiError> {
        match Record::of(m) {
            Ok(None) => Ok(View {
                offset: m.offset,
                crc: m.crc,
                value: m.payload.clone(),
                record: None,
            }),
            Ok(Some(r)) => Ok(View {
                offset: m.offset,
                crc: crate::message::crc32(&r.value),
                value: r.value.clone(),
                record: Some(r),
            }),
            Err(e) => Err(ApiError::Format {
                offset: m.offset,
                detail: format!("offset {}: {e}", m.offset),
            }),
        }
    }

    /// The answer of a single read (`payload/{o}`, `scan`): the value, with
    /// `X-Offset`, `X-Crc32` and, for v1, the `Netlog-*` headers.
    pub(crate) fn single_answer(self) -> Response {
        let mut response = (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::HeaderName::from_static("x-offset"),
                    self.offset.to_string(),
                ),
                (
                    header::HeaderName::from_static("x-crc32"),
                    self.crc.to_string(),
                ),
            ],
            self.value,
        )
            .into_response();
        if let Some(r) = &self.record {
            let h = response.headers_mut();
            h.insert("netlog-format", HeaderValue::from_static("1"));
            if let Some(k) = &r.key {
                h.insert("netlog-key", pct_value(k));
            }
            if let Some(t) = r.timestamp {
                h.insert("netlog-timestamp", HeaderValue::from(t));
            }
            for (name, value) in &r.headers {
                // Checked names are lowercase token characters.
                if let Ok(name) = HeaderName::try_from(format!("{HEADER_PREFIX}{name}")) {
                    h.append(name, pct_value(value));
                }
            }
        }
        response
    }

    /// Appends the view's ndjson line (without the newline).
    pub(crate) fn ndjson_line(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let Some(r) = &self.record else {
            match std::str::from_utf8(&self.value) {
                // Written straight out, in the order a JSON map gives its
                // keys (sorted): the same bytes, no map per message.
                Ok(text) => {
                    let mut digits = itoa::Buffer::new();
                    out.extend_from_slice(b"{\"crc32\":");
                    out.extend_from_slice(digits.format(self.crc).as_bytes());
                    out.extend_from_slice(b",\"message\":");
                    serde_json::to_writer(&mut *out, text).expect("JSON to memory");
                    out.extend_from_slice(b",\"offset\":");
                    out.extend_from_slice(digits.format(self.offset).as_bytes());
                    out.push(b'}');
                }
                // Base64 straight into the answer: no intermediate string, so a
                // large binary message costs about its encoded size once.
                Err(_) => {
                    let _ = write!(
                        out,
                        "{{\"offset\":{},\"crc32\":{},\"message_base64\":\"",
                        self.offset, self.crc
                    );
                    crate::encode::base64_into(out, &self.value);
                    out.extend_from_slice(b"\"}");
                }
            }
            return;
        };
        let mut line = Map::new();
        line.insert("offset".into(), self.offset.into());
        line.insert("crc32".into(), self.crc.into());
        put_bytes(&mut line, "message", &self.value);
        if let Some(k) = &r.key {
            put_bytes(&mut line, "key", k);
        }
        if let Some(t) = r.timestamp {
            line.insert("timestamp".into(), t.into());
        }
        let (mut text, mut binary) = (Map::new(), Map::new());
        for (name, value) in &r.headers {
            match std::str::from_utf8(value) {
                Ok(v) => text.insert(name.clone(), v.into()),
                Err(_) => binary.insert(name.clone(), base64(value).into()),
            };
        }
        if !text.is_empty() {
            line.insert("headers".into(), text.into());
        }
        if !binary.is_empty() {
            line.insert("headers_base64".into(), binary.into());
        }
        serde_json::to_writer(&mut *out, &line).expect("JSON to memory");
    }
}

fn base64(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    crate::encode::base64_into(&mut out, bytes);
    String::from_utf8(out).unwrap_or_default()
}

/// `name` as text when UTF-8, else `name_base64`.
fn put_bytes(line: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => line.insert(name.into(), text.into()),
        Err(_) => line.insert(format!("{name}_base64"), base64(bytes).into()),
    };
}

/// A header value of `bytes` in `<pct>` (always visible ASCII).
fn pct_value(bytes: &[u8]) -> HeaderValue {
    let mut text = String::with_capacity(bytes.len());
    crate::encode::pct_into(&mut text, bytes);
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn bad(what: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("{what}: {why}"))
}

fn record_error(e: RecordError) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// The v1 parts of a single publish (`value` left empty), from its
/// `Netlog-*` headers; `None` when it has none of them.
pub(crate) fn record_from_headers(headers: &HeaderMap) -> Result<Option<Record>, ApiError> {
    let mut r = Record::default();
    let mut any = false;
    for name in headers.keys() {
        let n = name.as_str();
        if !n.starts_with("netlog-") {
            continue;
        }
        let mut values = headers.get_all(name).iter();
        let value = values.next().map(HeaderValue::as_bytes).unwrap_or_default();
        let once = |what: &str| -> Result<(), ApiError> {
            match headers.get_all(name).iter().count() {
                1 => Ok(()),
                _ => Err(bad(what, "given more than once")),
            }
        };
        match n {
            "netlog-key" | "netlog-key-base64" => {
                once(n)?;
                if r.key.is_some() {
                    return Err(bad(n, "give Netlog-Key or Netlog-Key-Base64, not both"));
                }
                let key = if n == "netlog-key" {
                    crate::encode::pct_decode(value)
                } else {
                    crate::encode::base64_decode(value)
                };
                r.key = Some(Bytes::from(key.map_err(|e| bad(n, e))?));
            }
            "netlog-timestamp" => {
                once(n)?;
                let text = std::str::from_utf8(value).map_err(|e| bad(n, e))?;
                r.timestamp = Some(parse_timestamp(text).map_err(|e| bad(n, e))?);
            }
            _ if n.starts_with(HEADER_PREFIX) => {
                let header = &n[HEADER_PREFIX.len()..];
                if headers.get_all(name).iter().count() > 1 {
                    return Err(record_error(RecordError::DuplicateName(header.to_string())));
                }
                let v = crate::encode::pct_decode(value).map_err(|e| bad(n, e))?;
                r.headers.push((header.to_string(), Bytes::from(v)));
            }
            _ => continue,
        }
        any = true;
    }
    if !any {
        return Ok(None);
    }
    r.check_input().map_err(record_error)?;
    Ok(Some(r))
}

/// A `Netlog-Timestamp`: integer ms since the epoch, or RFC 3339
/// (`2026-01-02T03:04:05.678Z`, `...+02:00`), in 0 ..= year 9999.
pub(crate) fn parse_timestamp(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let ms = match text.parse::<i64>() {
        Ok(ms) => ms,
        Err(_) => rfc3339_ms(text).ok_or_else(|| {
            format!("{text:?} is neither whole milliseconds since the epoch nor RFC 3339")
        })?,
    };
    if !(0..=MAX_TIMESTAMP_MS).contains(&ms) {
        return Err(RecordError::Timestamp(ms).to_string());
    }
    Ok(ms)
}

/// RFC 3339 date-time to ms since the epoch (fractions past ms truncated).
fn rfc3339_ms(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut at = 19;
    let mut ms = 0;
    if b[at] == b'.' {
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        let frac = &t[at + 1..at + 1 + digits.min(3)];
        ms = frac.parse::<i64>().ok()? * 10_i64.pow(3 - frac.len() as u32);
        at += 1 + digits;
    }
    let offset_min = match b.get(at..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(at + 1..at + 3)?, num(at + 4..at + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60;
    Some(secs * 1000 + ms)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One line of an ndjson batch publish with `?envelope=true`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    message: Option<String>,
    message_base64: Option<String>,
    key: Option<String>,
    key_base64: Option<String>,
    headers: Option<Pairs>,
    headers_base64: Option<Pairs>,
    timestamp: Option<Value>,
    /// Read back from a batch scan: ignored.
    #[allow(dead_code)]
    offset: Option<serde::de::IgnoredAny>,
    /// Read back from a batch scan: ignored.
    #[allow(dead_code)]
    crc32: Option<serde::de::IgnoredAny>,
}

/// A JSON object's members in the order written (duplicates kept, so the
/// record's check can refuse them).
struct Pairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of header names to strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Pairs, A::Error> {
                let mut out = Vec::new();
                while let Some(pair) = m.next_entry::<String, String>()? {
                    if out.len() > crate::record::MAX_HEADERS {
                        return Err(serde::de::Error::custom("too many headers"));
                    }
                    out.push(pair);
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The record of one envelope line.
fn envelope_record(line: &[u8]) -> Result<Record, String> {
    let e: Envelope = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let both = |a: bool, b: bool, what: &str| {
        if a && b {
            Err(format!("give {what} or {what}_base64, not both"))
        } else {
            Ok(())
        }
    };
    both(e.message.is_some(), e.message_base64.is_some(), "message")?;
    both(e.key.is_some(), e.key_base64.is_some(), "key")?;
    let b64 = |t: &str, what: &str| {
        crate::encode::base64_decode(t.as_bytes()).map_err(|e| format!("{what}: {e}"))
    };
    let has_message = e.message.is_some() || e.message_base64.is_some();
    let value = match (e.message, e.message_base64) {
        (Some(m), _) => Bytes::from(m),
        (_, Some(m)) => Bytes::from(b64(&m, "message_base64")?),
        _ => Bytes::new(),
    };
    let mut r = Record {
        value,
        ..Record::default()
    };
    r.key = match (e.key, e.key_base64) {
        (Some(k), _) => Some(Bytes::from(k)),
        (_, Some(k)) => Some(Bytes::from(b64(&k, "key_base64")?)),
        _ => None,
    };
    for (name, value) in e.headers.map(|p| p.0).unwrap_or_default() {
        r.headers.push((name, Bytes::from(value)));
    }
    for (name, value) in e.headers_base64.map(|p| p.0).unwrap_or_default() {
        let v = b64(&value, "headers_base64")?;
        r.headers.push((name, Bytes::from(v)));
    }
    r.timestamp = match e.timestamp {
        None => None,
        Some(Value::Number(n)) => Some(parse_timestamp(&n.to_string())?),
        Some(Value::String(s)) => Some(parse_timestamp(&s)?),
        Some(_) => return Err("timestamp is ms since the epoch or RFC 3339 text".into()),
    };
    if r.is_bare() && !has_message {
        return Err(
            "an envelope needs message or message_base64 (or a key, headers or a timestamp)".into(),
        );
    }
    r.check_input().map_err(|e| e.to_string())?;
    Ok(r)
}

/// Encodes ndjson envelope lines as messages back to back: a line with no
/// key, headers or timestamp as a v0 message of its value, any other as v1.
/// Returns the frames, their count and whether any is v1.
pub(crate) fn envelope_lines(body: &[u8]) -> Result<(Bytes, usize, bool), ApiError> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 4);
    let (mut count, mut v1) = (0, false);
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let r = envelope_record(line)
            .map_err(|e| ApiError::BadRequest(format!("line {}: {e}", i + 1)))?;
        if r.is_bare() {
            crate::message::encode(&mut out, crate::message::PLAIN, &r.value);
        } else {
            r.encode_frame(&mut out).map_err(record_error)?;
            v1 = true;
        }
        count += 1;
    }
    Ok((Bytes::from(out), count, v1))
}

/// Checks the payload of frame `i` of a binary batch publish, a v1 record
/// (a slice of the body, not a copy): it must parse and carry no
/// idempotency section (the broker's). The error names the frame.
pub(crate) fn check_v1_frame(i: usize, payload: &Bytes) -> Result<(), ApiError> {
    let r = Record::parse(payload)
        .and_then(|r| r.check_input().map(|()| r))
        .map_err(|e| ApiError::BadRequest(format!("frame {i}: {e}")))?;
    if r.idempotency.is_some() {
        return Err(ApiError::BadRequest(format!(
            "frame {i}: the idempotency section is the broker's; send an Idempotency-Key header"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A text message's line, written field by field, is the bytes a JSON
    /// map of it gives (escapes included).
    #[test]
    fn text_lines_are_the_maps_bytes() {
        for text in [
            "",
            "plain",
            "quote \" back\\ nl\n cr\r nul\u{0} tab\t é ☃",
            "\u{1f}",
        ] {
            let view = View {
                offset: 42,
                crc: 7,
                value: Bytes::from(text.to_string()),
                record: None,
            };
            let mut line = Vec::new();
            view.ndjson_line(&mut line);
            let map = serde_json::json!({"offset": 42, "crc32": 7, "message": text});
            assert_eq!(line, serde_json::to_vec(&map).expect("json"), "{text:?}");
        }
    }

    /// Timestamps: integers and RFC 3339 with offsets; -1 and past 9999
    /// refused.
    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("0"), Ok(0));
        assert_eq!(parse_timestamp("1767323045678"), Ok(1_767_323_045_678));
        assert_eq!(
            parse_timestamp("2026-01-02T03:04:05.678Z"),
            Ok(1_767_323_045_678)
        );
        assert_eq!(
            parse_timestamp("2026-01-02T05:04:05.678+02:00"),
            Ok(1_767_323_045_678)
        );
        assert_eq!(
            parse_timestamp("2026-01-01T23:04:05.678123-04:00"),
            Ok(1_767_323_045_678)
        );
        assert_eq!(
            parse_timestamp("9999-12-31T23:59:59.999Z"),
            Ok(MAX_TIMESTAMP_MS)
        );
        assert!(parse_timestamp("-1").is_err());
        assert!(parse_timestamp("253402300800000").is_err());
        assert!(parse_timestamp("1969-12-31T23:59:59Z").is_err());
        assert!(parse_timestamp("2026-02-30T00:00:00Z").is_err());
        assert!(parse_timestamp("2026-01-02T03:04:05").is_err());
    }
}
