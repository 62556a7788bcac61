//! A v1 message on JetStream: its key, headers, timestamp and idempotency
//! section carried as NATS headers of the stored message, its value as the
//! NATS payload.
//!
//! The embedded engine stores a v1 record as one frame (`record.rs`); a
//! JetStream message has headers of its own, so the record's sections
//! become headers a NATS client can read too, and the payload stays the
//! value a consumer wants. Every name is netlog's (`Nl-` prefix):
//!
//! ```text
//! Nl-Format: 1                          every v1 message (a record with no section too)
//! Nl-Ts: 1767323045678                  the producer's timestamp, ms      (if any)
//! Nl-Key: order-42                      the key, <pct>                    (if any)
//! Nl-Headers: trace-id,schema           the header names, in order        (if any)
//! Nl-H-trace-id: abc123                 one per header, the value <pct>
//! Nl-Idem-Key: k-1                      the idempotency section, <pct>    (first message
//! Nl-Idem-Count: 3                        of an idempotent request only)
//! Nl-Idem-Fp: 00ff00ff00ff00ff          the request's fingerprint, 16 hex digits
//! ```
//!
//! `<pct>` is the encoding of netlog's HTTP answers (`encode.rs`): every
//! byte outside 0x21-0x7E, and `%`, as `%XX`. Keys and header values are
//! arbitrary bytes, and a NATS header value cannot hold CR, LF or NUL (nor
//! keep leading or trailing spaces); escaped, a value of printable text is
//! stored as it reads. A NATS header map has no order, so `Nl-Headers`
//! keeps the order of the names (a comma is not a header-name character).
//!
//! **Invariant.** [`record_of`] gives back exactly the record the message
//! was published from, so the record's bytes, and so every read route, are
//! the embedded engine's for the same messages. What comes back from the
//! servers is checked before it is believed: a missing, repeated or
//! undecodable part, or a record outside `record.rs`'s bounds, is a
//! [`HeaderError`] naming it. A message without `Nl-Format` is a v0
//! message whose payload is its bytes.
//!
//! **Size.** Headers count against the servers' `max_payload` like the
//! payload does; [`wire_len`] is what they take on the wire, so a publish
//! is measured whole before it is sent. Escaping at most triples a
//! binary value: a record's 32 KiB headers section takes at most about
//! 100 KiB here.

use async_nats::HeaderMap;
use async_nats::header::HeaderName;
use bytes::Bytes;

use crate::encode::{pct_decode, pct_into};
use crate::record::{Idempotency, Record, RecordError};

/// Marks a v1 message; its value is the record's format (`1`).
pub const FORMAT: &str = "Nl-Format";
/// The producer's timestamp, ms since the epoch, in decimal.
pub const TIMESTAMP: &str = "Nl-Ts";
/// The message key, `<pct>`.
pub const KEY: &str = "Nl-Key";
/// The names of the message's headers, in order, comma-separated.
pub const HEADER_NAMES: &str = "Nl-Headers";
/// Prefix of one message header: `Nl-H-<name>`, its value `<pct>`.
pub const HEADER_PREFIX: &str = "Nl-H-";
/// The idempotency section's key, `<pct>`.
pub const IDEMPOTENCY_KEY: &str = "Nl-Idem-Key";
/// The idempotency section's request count, in decimal.
pub const IDEMPOTENCY_COUNT: &str = "Nl-Idem-Count";
/// The idempotency section's fingerprint, 16 lower-case hex digits.
pub const IDEMPOTENCY_FINGERPRINT: &str = "Nl-Idem-Fp";
/// Bytes of a header block besides its lines: `NATS/1.0\r\n` and the
/// closing `\r\n`.
pub const HEADER_BLOCK_BYTES: usize = 12;

/// A v1 message's stored headers that do not make a record.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// A part is missing, repeated or does not decode.
    #[error("v1 header {name}: {why}")]
    Part { name: String, why: String },
    /// The parts decode to a record outside `record.rs`'s bounds.
    #[error("v1 headers: {0}")]
    Record(#[from] RecordError),
}

fn part(name: &str, why: impl std::fmt::Display) -> HeaderError {
    HeaderError::Part {
        name: name.to_string(),
        why: why.to_string(),
    }
}

fn name_of(name: &HeaderName) -> &str {
    name.as_ref()
}

fn pct(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    pct_into(&mut out, bytes);
    out
}

/// The NATS headers that carry `record` (its value excluded: it is the
/// payload).
pub(crate) fn headers_of(record: &Record) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(FORMAT, "1");
    if let Some(t) = record.timestamp {
        h.insert(TIMESTAMP, t.to_string().as_str());
    }
    if let Some(k) = &record.key {
        h.insert(KEY, pct(k).as_str());
    }
    if !record.headers.is_empty() {
        let names: Vec<&str> = record.headers.iter().map(|(n, _)| n.as_str()).collect();
        h.insert(HEADER_NAMES, names.join(",").as_str());
        for (name, value) in &record.headers {
            // Checked names are lowercase token characters: printable, no ':'.
            h.insert(
                format!("{HEADER_PREFIX}{name}").as_str(),
                pct(value).as_str(),
            );
        }
    }
    if let Some(i) = &record.idempotency {
        h.insert(IDEMPOTENCY_KEY, pct(&i.key).as_str());
        h.insert(IDEMPOTENCY_COUNT, i.request_count.to_string().as_str());
        h.insert(
            IDEMPOTENCY_FINGERPRINT,
            format!("{:016x}", i.fingerprint).as_str(),
        );
    }
    h
}

/// Bytes `headers` take on the wire (0 for none).
pub(crate) fn wire_len(headers: &HeaderMap) -> usize {
    if headers.is_empty() {
        return 0;
    }
    HEADER_BLOCK_BYTES
        + headers
            .iter()
            .map(|(name, values)| {
                values
                    .iter()
                    .map(|v| name_of(name).len() + 2 + v.as_str().len() + 2)
                    .sum::<usize>()
            })
            .sum::<usize>()
}

/// The one value of `name`, if present; a repeated one is an error.
fn one<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, HeaderError> {
    let mut all = headers.get_all(name);
    let first = all.next();
    if all.next().is_some() {
        return Err(part(name, "given twice"));
    }
    Ok(first.map(|v| v.as_str()))
}

fn decoded(headers: &HeaderMap, name: &str) -> Result<Option<Bytes>, HeaderError> {
    one(headers, name)?
        .map(|v| pct_decode(v.as_bytes()).map(Bytes::from))
        .transpose()
        .map_err(|e| part(name, e))
}

fn number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Result<Option<T>, HeaderError>
where
    T::Err: std::fmt::Display,
{
    one(headers, name)?
        .map(|v| v.parse::<T>())
        .transpose()
        .map_err(|e| part(name, e))
}

/// The record a stored message was published from, its value `payload`;
/// `None` for a v0 message (no `Nl-Format`). See the module docs.
pub(crate) fn record_of(
    headers: &HeaderMap,
    payload: Bytes,
) -> Result<Option<Record>, HeaderError> {
    match one(headers, FORMAT)? {
        None => return Ok(None),
        Some("1") => {}
        Some(other) => return Err(part(FORMAT, format!("format {other:?} is not 1"))),
    }
    let mut record = Record {
        timestamp: number::<i64>(headers, TIMESTAMP)?,
        key: decoded(headers, KEY)?,
        value: payload,
        ..Record::default()
    };
    if let Some(names) = one(headers, HEADER_NAMES)? {
        for name in names.split(',') {
            let header = format!("{HEADER_PREFIX}{name}");
            let value = decoded(headers, &header)?.ok_or_else(|| part(&header, "missing"))?;
            record.headers.push((name.to_string(), value));
        }
    }
    let listed = record.headers.len();
    let stored = headers
        .iter()
        .filter(|(n, _)| name_of(n).starts_with(HEADER_PREFIX))
        .count();
    if stored != listed {
        return Err(part(
            HEADER_NAMES,
            format!("names {listed} headers, the message has {stored}"),
        ));
    }
    if let Some(key) = decoded(headers, IDEMPOTENCY_KEY)? {
        let count = number::<u32>(headers, IDEMPOTENCY_COUNT)?
            .ok_or_else(|| part(IDEMPOTENCY_COUNT, "missing"))?;
        let fp = one(headers, IDEMPOTENCY_FINGERPRINT)?
            .ok_or_else(|| part(IDEMPOTENCY_FINGERPRINT, "missing"))?;
        let fingerprint = u64::from_str_radix(fp, 16)
            .ok()
            .filter(|_| fp.len() == 16)
            .ok_or_else(|| part(IDEMPOTENCY_FINGERPRINT, "not 16 hex digits"))?;
        record.idempotency = Some(Idempotency {
            key,
            request_count: count,
            fingerprint,
        });
    }
    record.check()?;
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Record {
        Record {
            timestamp: Some(1_767_323_045_678),
            key: Some(Bytes::from_static(b"order 42\r\n\0%")),
            headers: vec![
                ("trace-id".into(), Bytes::from_static(b"abc123")),
                ("b".into(), Bytes::from_static(b"")),
                ("a|~'".into(), Bytes::from_static(b" lead\r\nNUL\0 trail ")),
            ],
            idempotency: Some(Idempotency {
                key: Bytes::from_static(b"k-1"),
                request_count: 3,
                fingerprint: 0x00ff_00ff_00ff_00ff,
            }),
            value: Bytes::from_static(b"{\"total\":9.5}"),
        }
    }

    /// Every section comes back equal, in order, bytes with CR, LF, NUL,
    /// spaces and `%` included, and so does a record with no section.
    #[test]
    fn records_round_trip() {
        for r in [full(), Record::default()] {
            let h = headers_of(&r);
            for (_, values) in h.iter() {
                assert!(
                    values
                        .iter()
                        .all(|v| !v.as_str().contains(['\r', '\n', '\0']))
                );
            }
            assert_eq!(record_of(&h, r.value.clone()).unwrap(), Some(r));
        }
        let h = headers_of(&full());
        assert_eq!(h.get(KEY).unwrap().as_str(), "order%2042%0D%0A%00%25");
        assert_eq!(h.get(HEADER_NAMES).unwrap().as_str(), "trace-id,b,a|~'");
    }

    /// A message without `Nl-Format` is v0, whatever else it carries.
    #[test]
    fn v0_messages_have_no_record() {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", "x");
        assert_eq!(record_of(&h, Bytes::new()).unwrap(), None);
    }

    /// Headers that do not make a record are refused, naming the part.
    #[test]
    fn damaged_headers_are_refused() {
        let damaged = |change: &dyn Fn(&mut HeaderMap)| {
            let mut h = headers_of(&full());
            change(&mut h);
            record_of(&h, Bytes::new()).unwrap_err().to_string()
        };
        assert!(damaged(&|h| h.insert(FORMAT, "2")).contains(FORMAT));
        assert!(damaged(&|h| h.insert(TIMESTAMP, "soon")).contains(TIMESTAMP));
        assert!(damaged(&|h| h.insert(TIMESTAMP, "-1")).contains("timestamp"));
        assert!(damaged(&|h| h.insert(KEY, "%zz")).contains(KEY));
        assert!(damaged(&|h| h.insert(HEADER_NAMES, "trace-id,b")).contains(HEADER_NAMES));
        assert!(damaged(&|h| h.insert(HEADER_NAMES, "trace-id,b,c")).contains("Nl-H-c"));
        assert!(damaged(&|h| h.append(KEY, "again")).contains("twice"));
        assert!(damaged(&|h| h.insert(IDEMPOTENCY_FINGERPRINT, "ff")).contains("hex"));
        assert!(damaged(&|h| h.insert(IDEMPOTENCY_COUNT, "-3")).contains(IDEMPOTENCY_COUNT));
    }

    /// The wire length counts every line and the block's framing.
    #[test]
    fn wire_length() {
        assert_eq!(wire_len(&HeaderMap::new()), 0);
        let mut h = HeaderMap::new();
        h.insert("Nl-Key", "ab");
        assert_eq!(wire_len(&h), HEADER_BLOCK_BYTES + "Nl-Key: ab\r\n".len());
    }
}
