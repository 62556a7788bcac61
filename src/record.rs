//! The v1 record: a message's value with its timestamp, key, headers and
//! idempotency section.
//!
//! A v1 message is a plain message (see [`crate::message`]) whose `compver`
//! is [`COMPVER_V1`] (`0x10`: format 1, compression 0). Its 9-byte frame is
//! netlog's, and the CRC covers the whole record, so recovery, sets, codecs
//! and `check` keep working frame by frame. The record, the frame's payload,
//! is big-endian throughout:
//!
//! ```text
//! flags        u8    bit0 timestamp, bit1 key, bit2 headers, bit3 idempotency; bits 4-7 zero
//! timestamp    i64   ms since the Unix epoch, 0 ..= 253402300799999          (if bit0)
//! key          u16 n (1 ..= 4096), n bytes                                   (if bit1)
//! headers      u8 count (1 ..= 64), then per header:                         (if bit2)
//!                u8 name_len (1 ..= 128), name, u16 value_len (0 ..= 8192), value
//! idempotency  u8 n (1 ..= 255), key bytes, u32 request_count, u64 fingerprint (if bit3)
//! value        the remaining bytes (may be empty)
//! ```
//!
//! Header names are lowercase HTTP token characters, unique within a message
//! and kept in the order given; names starting `netlog-` are the broker's.
//! The encoded headers section is at most [`MAX_HEADERS_SECTION_BYTES`].
//!
//! **Invariant.** [`Record::parse`] and [`Record::encode`] agree on every
//! bound: what `encode` accepts, `parse` reads back equal, and `parse`
//! refuses (with a [`RecordError`] naming the part) any record `encode`
//! could not have written: reserved flag bits, a section past the end, a
//! length or count out of its range, a bad or repeated header name. A record
//! on disk is data from outside the process, so it is checked before it is
//! believed; a record whose frame CRC passes but whose structure does not is
//! kept by recovery and reported by readers and `check` at its offset.
//!
//! The worked example of the spec (key `order-42`, header `trace-id:
//! abc123`, timestamp 1767323045678, value `{"total":9.5}`) is a 59-byte
//! frame, reproduced bit for bit by this module's tests.

use bytes::Bytes;

use crate::message::{self, Message};

/// The message format version of a v1 record (high nibble of `compver`).
pub const FORMAT_V1: u8 = 1;
/// `compver` of a v1 message: format 1, compression 0 (plain).
pub const COMPVER_V1: u8 = FORMAT_V1 << 4;
/// Flag bit: a timestamp follows.
pub const FLAG_TIMESTAMP: u8 = 1;
/// Flag bit: a key follows.
pub const FLAG_KEY: u8 = 1 << 1;
/// Flag bit: a headers section follows.
pub const FLAG_HEADERS: u8 = 1 << 2;
/// Flag bit: an idempotency section follows.
pub const FLAG_IDEMPOTENCY: u8 = 1 << 3;
/// Flag bits that must be zero.
pub const RESERVED_FLAGS: u8 = 0xf0;
/// Largest timestamp, in ms since the epoch: the last millisecond of 9999.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;
/// Longest key, in bytes (at least 1).
pub const MAX_KEY_BYTES: usize = 4096;
/// Most headers per message (at least 1 when the section is present).
pub const MAX_HEADERS: usize = 64;
/// Longest header name, in bytes (at least 1).
pub const MAX_HEADER_NAME_BYTES: usize = 128;
/// Longest header value, in bytes (may be 0).
pub const MAX_HEADER_VALUE_BYTES: usize = 8192;
/// Largest encoded headers section (count byte included): 32 KiB.
pub const MAX_HEADERS_SECTION_BYTES: usize = 32 * 1024;
/// Longest idempotency key, in bytes (at least 1).
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
/// Header names the broker keeps for itself start with this.
pub const RESERVED_HEADER_PREFIX: &str = "netlog-";

/// The idempotency section: which request wrote this message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    /// The request's `Idempotency-Key`.
    pub key: Bytes,
    /// How many messages the request wrote (from this one on).
    pub request_count: u32,
    /// 64-bit hash of the request's messages without this section.
    pub fingerprint: u64,
}

/// A v1 record, parsed or to be encoded. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The producer's timestamp, ms since the epoch.
    pub timestamp: Option<i64>,
    /// The message key.
    pub key: Option<Bytes>,
    /// Headers in the order given; names lowercase and unique.
    pub headers: Vec<(String, Bytes)>,
    /// Set by the broker on the first message of an idempotent publish.
    pub idempotency: Option<Idempotency>,
    /// The value (the message's bytes for a consumer).
    pub value: Bytes,
}

/// What is wrong with a record, or with the parts of one to be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Reserved flag bits are set.
    #[error("reserved flag bits set (flags {0:#04x})")]
    ReservedFlags(u8),
    /// A section runs past the end of the record.
    #[error("the {0} section runs past the end of the record")]
    PastEnd(&'static str),
    /// A timestamp outside 0 ..= year 9999.
    #[error("timestamp {0} is outside 0 ..= {MAX_TIMESTAMP_MS} (ms since the epoch)")]
    Timestamp(i64),
    /// A key of 0 or more than [`MAX_KEY_BYTES`] bytes.
    #[error("a key is 1 to {MAX_KEY_BYTES} bytes, not {0}")]
    KeyLength(usize),
    /// A headers section of 0 or more than [`MAX_HEADERS`] headers.
    #[error("a message has 1 to {MAX_HEADERS} headers, not {0}")]
    HeaderCount(usize),
    /// A header name of 0 or more than [`MAX_HEADER_NAME_BYTES`] bytes.
    #[error("a header name is 1 to {MAX_HEADER_NAME_BYTES} bytes, not {0}")]
    NameLength(usize),
    /// A header name with characters other than lowercase token ones.
    #[error("header name {0:?} is not lowercase HTTP token characters (a-z 0-9 !#$%&'*+-.^_`|~)")]
    NameChars(String),
    /// A header name given twice.
    #[error("header {0:?} is given twice")]
    DuplicateName(String),
    /// A header name the broker keeps for itself.
    #[error("header names starting \"netlog-\" are reserved (found {0:?})")]
    ReservedName(String),
    /// A header value over [`MAX_HEADER_VALUE_BYTES`].
    #[error("header {name:?}: a value is at most {MAX_HEADER_VALUE_BYTES} bytes, not {len}")]
    ValueLength { name: String, len: usize },
    /// A headers section over [`MAX_HEADERS_SECTION_BYTES`].
    #[error("the headers take {0} bytes encoded, over {MAX_HEADERS_SECTION_BYTES}")]
    SectionTooLarge(usize),
    /// An idempotency key of 0 or more than 255 bytes.
    #[error("an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes, not {0}")]
    IdempotencyKeyLength(usize),
}

/// Whether `c` may appear in a header name (a lowercase HTTP token char).
fn name_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Checks one header name: length and characters. Reserved names pass:
/// the broker writes them (dead letters), and they are read back.
pub fn check_header_name(name: &str) -> Result<(), RecordError> {
    if name.is_empty() || name.len() > MAX_HEADER_NAME_BYTES {
        return Err(RecordError::NameLength(name.len()));
    }
    if !name.bytes().all(name_char) {
        return Err(RecordError::NameChars(name.to_string()));
    }
    Ok(())
}

impl Record {
    /// Whether the record carries nothing but a value (and so a v0 message
    /// would say the same).
    pub fn is_bare(&self) -> bool {
        self.timestamp.is_none()
            && self.key.is_none()
            && self.headers.is_empty()
            && self.idempotency.is_none()
    }

    /// The flags byte for the sections present.
    fn flags(&self) -> u8 {
        let mut f = 0;
        if self.timestamp.is_some() {
            f |= FLAG_TIMESTAMP;
        }
        if self.key.is_some() {
            f |= FLAG_KEY;
        }
        if !self.headers.is_empty() {
            f |= FLAG_HEADERS;
        }
        if self.idempotency.is_some() {
            f |= FLAG_IDEMPOTENCY;
        }
        f
    }

    /// [`Record::check`], and no header name the broker reserves: what a
    /// client may send.
    pub fn check_input(&self) -> Result<(), RecordError> {
        self.check()?;
        match self
            .headers
            .iter()
            .find(|(n, _)| n.starts_with(RESERVED_HEADER_PREFIX))
        {
            Some((name, _)) => Err(RecordError::ReservedName(name.clone())),
            None => Ok(()),
        }
    }

    /// Checks every bound of the module docs.
    pub fn check(&self) -> Result<(), RecordError> {
        if let Some(t) = self.timestamp
            && !(0..=MAX_TIMESTAMP_MS).contains(&t)
        {
            return Err(RecordError::Timestamp(t));
        }
        if let Some(k) = &self.key
            && (k.is_empty() || k.len() > MAX_KEY_BYTES)
        {
            return Err(RecordError::KeyLength(k.len()));
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(RecordError::HeaderCount(self.headers.len()));
        }
        let mut section = 1usize;
        for (i, (name, value)) in self.headers.iter().enumerate() {
            check_header_name(name)?;
            if value.len() > MAX_HEADER_VALUE_BYTES {
                return Err(RecordError::ValueLength {
                    name: name.clone(),
                    len: value.len(),
                });
            }
            if self.headers[..i].iter().any(|(n, _)| n == name) {
                return Err(RecordError::DuplicateName(name.clone()));
            }
            section += 1 + name.len() + 2 + value.len();
        }
        if section > MAX_HEADERS_SECTION_BYTES {
            return Err(RecordError::SectionTooLarge(section));
        }
        if let Some(i) = &self.idempotency
            && (i.key.is_empty() || i.key.len() > MAX_IDEMPOTENCY_KEY_BYTES)
        {
            return Err(RecordError::IdempotencyKeyLength(i.key.len()));
        }
        Ok(())
    }

    /// The record's encoded length.
    pub fn encoded_len(&self) -> usize {
        1 + self.timestamp.map_or(0, |_| 8)
            + self.key.as_ref().map_or(0, |k| 2 + k.len())
            + if self.headers.is_empty() {
                0
            } else {
                1 + self
                    .headers
                    .iter()
                    .map(|(n, v)| 3 + n.len() + v.len())
                    .sum::<usize>()
            }
            + self
                .idempotency
                .as_ref()
                .map_or(0, |i| 1 + i.key.len() + 12)
            + self.value.len()
    }

    /// Appends the record (the frame's payload) to `out`, after checking
    /// it.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        self.check()?;
        out.reserve(self.encoded_len());
        out.push(self.flags());
        if let Some(t) = self.timestamp {
            out.extend_from_slice(&t.to_be_bytes());
        }
        if let Some(k) = &self.key {
            // Checked: at most 4096.
            out.extend_from_slice(&(k.len() as u16).to_be_bytes());
            out.extend_from_slice(k);
        }
        if !self.headers.is_empty() {
            out.push(self.headers.len() as u8);
            for (name, value) in &self.headers {
                out.push(name.len() as u8);
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(&(value.len() as u16).to_be_bytes());
                out.extend_from_slice(value);
            }
        }
        if let Some(i) = &self.idempotency {
            out.push(i.key.len() as u8);
            out.extend_from_slice(&i.key);
            out.extend_from_slice(&i.request_count.to_be_bytes());
            out.extend_from_slice(&i.fingerprint.to_be_bytes());
        }
        out.extend_from_slice(&self.value);
        Ok(())
    }

    /// Appends the record as a whole v1 message (frame and record) to `out`.
    pub fn encode_frame(&self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        let mut record = Vec::with_capacity(self.encoded_len());
        self.encode(&mut record)?;
        message::encode_with(out, COMPVER_V1, &record);
        Ok(())
    }

    /// Parses a record (a v1 frame's payload); the parts are slices of
    /// `bytes`, no copy.
    pub fn parse(bytes: &Bytes) -> Result<Record, RecordError> {
        let mut at = Cursor { bytes, at: 0 };
        let flags = at.take(1, "flags")?[0];
        if flags & RESERVED_FLAGS != 0 {
            return Err(RecordError::ReservedFlags(flags));
        }
        let mut r = Record::default();
        if flags & FLAG_TIMESTAMP != 0 {
            let t = at.take(8, "timestamp")?;
            r.timestamp = Some(i64::from_be_bytes(t[..].try_into().unwrap_or_default()));
        }
        if flags & FLAG_KEY != 0 {
            let n = at.u16("key")?;
            r.key = Some(at.take(n, "key")?);
        }
        if flags & FLAG_HEADERS != 0 {
            let count = at.take(1, "headers")?[0];
            if count == 0 {
                return Err(RecordError::HeaderCount(0));
            }
            for _ in 0..count {
                let n = usize::from(at.take(1, "headers")?[0]);
                let name = at.take(n, "headers")?;
                let name = std::str::from_utf8(&name)
                    .map_err(|_| RecordError::NameChars(String::from_utf8_lossy(&name).into()))?
                    .to_string();
                let len = at.u16("headers")?;
                r.headers.push((name, at.take(len, "headers")?));
            }
        }
        if flags & FLAG_IDEMPOTENCY != 0 {
            let n = usize::from(at.take(1, "idempotency")?[0]);
            let key = at.take(n, "idempotency")?;
            let tail = at.take(12, "idempotency")?;
            r.idempotency = Some(Idempotency {
                key,
                request_count: u32::from_be_bytes(tail[..4].try_into().unwrap_or_default()),
                fingerprint: u64::from_be_bytes(tail[4..].try_into().unwrap_or_default()),
            });
        }
        r.value = bytes.slice(at.at..);
        r.check()?;
        Ok(r)
    }

    /// The record of `m` if it is a v1 message; `None` for a v0 one.
    pub fn of(m: &Message) -> Result<Option<Record>, RecordError> {
        if m.format != FORMAT_V1 {
            return Ok(None);
        }
        Record::parse(&m.payload).map(Some)
    }
}

/// Reads sections off the front of a record.
struct Cursor<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, section: &'static str) -> Result<Bytes, RecordError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(RecordError::PastEnd(section))?;
        let out = self.bytes.slice(self.at..end);
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self, section: &'static str) -> Result<usize, RecordError> {
        let b = self.take(2, section)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Record {
        Record {
            timestamp: Some(1_767_323_045_678),
            key: Some(Bytes::from_static(b"order-42")),
            headers: vec![("trace-id".into(), Bytes::from_static(b"abc123"))],
            idempotency: None,
            value: Bytes::from_static(br#"{"total":9.5}"#),
        }
    }

    /// The spec's worked example is produced bit for bit.
    #[test]
    fn worked_example_bit_for_bit() {
        let mut frame = Vec::new();
        example().encode_frame(&mut frame).unwrap();
        let expected = "10 e6a09467 00000032 07 0000019b7ca98f2e 0008 6f726465722d3432 \
                        01 08 74726163652d6964 0006 616263313233 7b22746f74616c223a392e357d";
        assert_eq!(
            crate::encode::hex(&frame),
            expected.replace([' ', '\n'], "")
        );
        assert_eq!(frame.len(), 59);
        let (header, payload) = message::decode(&frame).unwrap();
        assert_eq!(header.compver, COMPVER_V1);
        let back = Record::parse(&Bytes::copy_from_slice(payload)).unwrap();
        assert_eq!(back, example());
    }

    /// Every section round-trips, the idempotency one included, and an
    /// empty value is allowed.
    #[test]
    fn all_sections_roundtrip() {
        let mut r = example();
        r.value = Bytes::new();
        r.idempotency = Some(Idempotency {
            key: Bytes::from_static(b"retry-1"),
            request_count: 3,
            fingerprint: u64::MAX - 7,
        });
        let mut out = Vec::new();
        r.encode(&mut out).unwrap();
        assert_eq!(out.len(), r.encoded_len());
        assert_eq!(Record::parse(&Bytes::from(out)).unwrap(), r);
    }

    /// A record cut at any byte is refused, never misread; reserved flag
    /// bits are refused.
    #[test]
    fn torn_and_reserved_records_are_refused() {
        let mut r = example();
        r.value = Bytes::new();
        let mut out = Vec::new();
        r.encode(&mut out).unwrap();
        for cut in 0..out.len() {
            let torn = Bytes::copy_from_slice(&out[..cut]);
            assert!(Record::parse(&torn).is_err(), "cut at {cut}");
        }
        for bit in 4..8 {
            let mut bad = out.clone();
            bad[0] |= 1 << bit;
            assert_eq!(
                Record::parse(&Bytes::from(bad)),
                Err(RecordError::ReservedFlags(out[0] | 1 << bit))
            );
        }
    }

    /// 64 headers are taken, 65 refused; 128-byte names taken, 129 refused;
    /// uppercase and duplicate names refused, `netlog-` ones from clients.
    #[test]
    fn header_bounds() {
        let with = |headers: Vec<(String, Bytes)>| {
            Record {
                headers,
                ..Record::default()
            }
            .check()
        };
        let many = |n: usize| (0..n).map(|i| (format!("h{i}"), Bytes::new())).collect();
        assert_eq!(with(many(64)), Ok(()));
        assert_eq!(with(many(65)), Err(RecordError::HeaderCount(65)));
        let named = |n: &str| vec![(n.to_string(), Bytes::new())];
        assert_eq!(with(named(&"a".repeat(128))), Ok(()));
        assert_eq!(
            with(named(&"a".repeat(129))),
            Err(RecordError::NameLength(129))
        );
        assert!(matches!(
            with(named("Trace")),
            Err(RecordError::NameChars(_))
        ));
        // The broker's own names: stored and read back, never taken from a
        // client.
        assert_eq!(with(named("netlog-x")), Ok(()));
        assert!(matches!(
            Record {
                headers: named("netlog-x"),
                ..Record::default()
            }
            .check_input(),
            Err(RecordError::ReservedName(_))
        ));
        let twice = vec![("a".into(), Bytes::new()), ("a".into(), Bytes::new())];
        assert!(matches!(with(twice), Err(RecordError::DuplicateName(_))));
        let big = (0..5)
            .map(|i| (format!("h{i}"), Bytes::from(vec![b'x'; 8000])))
            .collect();
        assert!(matches!(with(big), Err(RecordError::SectionTooLarge(_))));
    }

    /// Timestamps 0 and year 9999 are taken; -1 and past 9999 refused.
    #[test]
    fn timestamp_bounds() {
        let at = |t| {
            Record {
                timestamp: Some(t),
                ..Record::default()
            }
            .check()
        };
        assert_eq!(at(0), Ok(()));
        assert_eq!(at(MAX_TIMESTAMP_MS), Ok(()));
        assert_eq!(at(-1), Err(RecordError::Timestamp(-1)));
        assert_eq!(
            at(MAX_TIMESTAMP_MS + 1),
            Err(RecordError::Timestamp(MAX_TIMESTAMP_MS + 1))
        );
    }
}
