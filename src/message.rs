//! netlog's message format, byte for byte, and message sets.
//!
//! A message is a 9-byte header followed by its payload; every integer is
//! big-endian:
//!
//! ```text
//! offset 0  compver  u8    low nibble: compression; high nibble: format version (0 or 1)
//! offset 1  crc32    u32   CRC-32 (IEEE) of the payload
//! offset 5  length   u32   payload length in bytes
//! offset 9  payload  [length]u8
//! ```
//!
//! Compression 0 marks a *plain* message whose payload is the user's bytes.
//! Any other value marks a *message set*: its payload is N plain messages back
//! to back, stored as they are (1), gzip-compressed (2), snappy-framed (3) or
//! transformed by a codec plugin (4..=15). A set of N messages occupies N
//! consecutive offsets in the log. Sets never nest: every message inside a set
//! is plain, with its own CRC.
//!
//! Format version 1 exists only as a plain message (`compver` `0x10`): its
//! payload is a *record* carrying a timestamp, key and headers beside the
//! value (see `record.rs`). `0x11`..=`0x1F` are invalid, and a set keeps
//! format 0 in its own `compver`; the messages inside may be v0 or v1.
//! This module checks frames only; what a record holds is `record.rs`'s.
//!
//! Decompression goes through a [`Codecs`] table, one per topic, so that the
//! values 4..=15 can be bound to codec plugins and old data stays readable.
//!
//! ## Codecs are verified, not believed
//!
//! A codec plugin is code from outside the broker, so what it answers is
//! checked before anything depends on it:
//!
//! * **On write** ([`Codecs::pack_set`]), a plugin codec's output is
//!   decompressed again by the same codec and compared with the set it was
//!   given, *every byte*. Byte equality is the strongest check there is: the
//!   stored bytes then decode, through this codec, to exactly the messages
//!   that were acknowledged (same count, same payloads, same CRCs), so no
//!   weaker summary (count, CRCs and lengths) could catch something this
//!   misses, and comparing bytes costs a `memcmp` next to the decompression
//!   that any check needs. Output that does not decode back, or a codec that
//!   fails, stores the set uncompressed (value 1) instead; the failure is
//!   counted ([`Codecs::refused_sets`]) and returned for the caller to log.
//!   A plugin's output not smaller than its input is stored uncompressed as
//!   well (it saves nothing), without counting it as a failure. The built-in
//!   gzip and snappy are compiled in and tested here, so they are neither
//!   re-checked nor second-guessed: they write what netlog writes.
//! * **On read** ([`Codecs::unpack_set`]), the number of messages a set holds
//!   comes from the log (the index recorded it at write time), never from the
//!   codec: a set that decodes to another count, to bytes that are not plain
//!   messages with valid CRCs, or that the codec refuses, is a
//!   [`FormatError::Codec`] naming the codec. The stored bytes passed their
//!   own CRC, so the disk is not blamed.
//!
//! What no check can catch is a codec that decodes *well-formed other
//! messages of the same count* from bytes that an honest codec wrote earlier
//! (a plugin swapped under existing data): netlog's format keeps no checksum
//! of a set's decoded bytes. The write check makes sure the bytes on disk
//! were right when they were written.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// One message as read back from a log: its offset, its stored (and
/// verified) CRC-32 and its bytes. Every layer above the log hands
/// messages on in this shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its offset.
    pub offset: u64,
    /// Its stored (and verified) CRC-32.
    pub crc: u32,
    /// Its bytes: a v0 message's value, or a v1 message's record.
    pub payload: Bytes,
    /// Its format version: 0, or 1 for a record (see `record.rs`).
    pub format: u8,
}

/// Bytes of the header in front of every payload.
pub const HEADER_BYTES: usize = 9;
/// The message format version netlog writes (high nibble of `compver`);
/// version 1 is `record.rs`'s, valid on plain messages only.
pub const FORMAT_VERSION: u8 = 0;
/// The record format version (high nibble of `compver` of a v1 message).
pub const FORMAT_RECORD: u8 = 1;
/// Compression value of a plain message.
pub const PLAIN: u8 = 0;
/// Compression value of an uncompressed message set.
pub const SET_NONE: u8 = 1;
/// Compression value of a gzip-compressed message set.
pub const SET_GZIP: u8 = 2;
/// Compression value of a snappy-framed message set.
pub const SET_SNAPPY: u8 = 3;
/// First compression value available to codec plugins.
pub const FIRST_PLUGIN_CODEC: u8 = 4;
/// Last compression value (the nibble is 4 bits wide).
pub const LAST_CODEC: u8 = 15;
/// Largest payload a single message may carry (the length field is a u32, and
/// a decompressed set is refused beyond this to bound memory).
pub const MAX_PAYLOAD_BYTES: usize = 1 << 30;

/// A failure of a codec, built in or plugin.
#[derive(Debug, thiserror::Error)]
#[error("codec {codec}: {reason}")]
pub struct CodecError {
    /// The codec's name (`gzip`, `snappy`, or the plugin's name).
    pub codec: String,
    /// What went wrong.
    pub reason: String,
}

/// What can be wrong with bytes that claim to be messages.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Fewer bytes than the header or the declared length needs.
    #[error("truncated message: {needed} bytes needed, {available} available")]
    Truncated { needed: usize, available: usize },
    /// The payload does not match its CRC.
    #[error("checksum mismatch: stored {expected}, computed {actual}")]
    Checksum { expected: u32, actual: u32 },
    /// A format version this build does not know.
    #[error("unknown message format version {0}")]
    Version(u8),
    /// Format 1 with a compression other than 0 (`0x11`..=`0x1F`).
    #[error("format 1 is valid on plain messages only (compver {0:#04x})")]
    RecordSet(u8),
    /// A set inside a set, or a set where a plain message was required.
    #[error("a message set may only hold plain messages (found compression {0})")]
    NestedSet(u8),
    /// No codec is bound to this compression value.
    #[error("no codec for compression value {0}")]
    UnknownCodec(u8),
    /// The codec failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A payload over [`MAX_PAYLOAD_BYTES`].
    #[error("message of {0} bytes is over the limit")]
    TooLarge(usize),
    /// The message's length field disagrees with the space its index entry
    /// gives it (a damaged length field, or zeros where a message was).
    #[error("length mismatch: the index gives {expected} bytes, the header says {actual}")]
    LengthMismatch { expected: u64, actual: u64 },
    /// A set holds another number of messages than the index recorded.
    #[error("the set holds {decoded} messages, the index recorded {recorded}")]
    CountMismatch { recorded: u64, decoded: u64 },
    /// An index entry gives a plain message more than one offset.
    #[error("a plain message holds one offset, the index gives it {0}")]
    PlainCount(u32),
}

/// The parsed 9-byte header of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The full `compver` byte.
    pub compver: u8,
    /// The stored CRC-32 of the payload.
    pub crc: u32,
    /// The payload length.
    pub length: u32,
}

impl Header {
    /// Parses a header from the start of `buf`, or `None` if it is too short.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        let h: &[u8; HEADER_BYTES] = buf.get(..HEADER_BYTES)?.try_into().ok()?;
        Some(Header {
            compver: h[0],
            crc: u32::from_be_bytes([h[1], h[2], h[3], h[4]]),
            length: u32::from_be_bytes([h[5], h[6], h[7], h[8]]),
        })
    }

    /// The compression nibble.
    pub fn compression(&self) -> u8 {
        self.compver & 0x0f
    }

    /// Whether this message is a set.
    pub fn is_set(&self) -> bool {
        self.compression() != PLAIN
    }

    /// Header plus payload.
    pub fn total_len(&self) -> usize {
        HEADER_BYTES + self.length as usize
    }

    /// The format version nibble.
    pub fn format(&self) -> u8 {
        self.compver >> 4
    }

    /// Checks the format version and the payload's CRC.
    pub fn verify(&self, payload: &[u8]) -> Result<(), FormatError> {
        match self.format() {
            FORMAT_VERSION => {}
            FORMAT_RECORD if !self.is_set() => {}
            FORMAT_RECORD => return Err(FormatError::RecordSet(self.compver)),
            v => return Err(FormatError::Version(v)),
        }
        let actual = crc32(payload);
        if actual != self.crc {
            return Err(FormatError::Checksum {
                expected: self.crc,
                actual,
            });
        }
        Ok(())
    }
}

/// CRC-32 (IEEE, the checksum of every message header) of `bytes`.
///
/// Most messages are short, and a broker computes this once per message
/// written and once per message checked (every frame of a batch publish,
/// every message read from a file). `crc32fast` folds with `pclmulqdq`
/// only from 128 bytes; below that it takes 64 bytes at a time through its
/// tables and then goes byte by byte, so a 100-byte message paid 36 steps
/// of one byte, and the checksum was a fifth of a batch publish's CPU
/// (`perf`, docs/BENCHMARKS.md). Below [`CRC_FOLD_FROM`] this takes 16
/// bytes a step through its own tables (16 of 256 entries, 16 KiB, built
/// at compile time), then 4 bytes a step and at most 3 single bytes; from
/// there on `crc32fast`, whose fold is faster (`cargo bench --bench log --
/// crc32`: 36 ns against 80 for 100 bytes).
pub fn crc32(bytes: &[u8]) -> u32 {
    if bytes.len() >= CRC_FOLD_FROM {
        return crc32fast::hash(bytes);
    }
    let t = &CRC_TABLES;
    let mut crc = !0u32;
    let mut blocks = bytes.chunks_exact(16);
    for b in &mut blocks {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let (w0, w1, w2, w3) = (word(0) ^ crc, word(4), word(8), word(12));
        let at = |w: u32, k: u32| (w >> (8 * k) & 0xff) as usize;
        crc = t[15][at(w0, 0)]
            ^ t[14][at(w0, 1)]
            ^ t[13][at(w0, 2)]
            ^ t[12][at(w0, 3)]
            ^ t[11][at(w1, 0)]
            ^ t[10][at(w1, 1)]
            ^ t[9][at(w1, 2)]
            ^ t[8][at(w1, 3)]
            ^ t[7][at(w2, 0)]
            ^ t[6][at(w2, 1)]
            ^ t[5][at(w2, 2)]
            ^ t[4][at(w2, 3)]
            ^ t[3][at(w3, 0)]
            ^ t[2][at(w3, 1)]
            ^ t[1][at(w3, 2)]
            ^ t[0][at(w3, 3)];
    }
    let mut words = blocks.remainder().chunks_exact(4);
    for w in &mut words {
        let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) ^ crc;
        crc = t[3][(w & 0xff) as usize]
            ^ t[2][(w >> 8 & 0xff) as usize]
            ^ t[1][(w >> 16 & 0xff) as usize]
            ^ t[0][(w >> 24) as usize];
    }
    for &b in words.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xff) as usize];
    }
    !crc
}

/// From this length on, [`crc32`] leaves the work to `crc32fast`'s fold.
pub const CRC_FOLD_FROM: usize = 128;

/// `CRC_TABLES[0]` is the byte-at-a-time table of the reflected IEEE
/// polynomial; `CRC_TABLES[k]` advances a byte's contribution by `k` more
/// bytes of zeros, so that 16 lookups take in 16 bytes at once.
static CRC_TABLES: [[u32; 256]; 16] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 16] {
    let mut t = [[0u32; 256]; 16];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
            bit += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 16 {
        let mut i = 0;
        while i < 256 {
            let before = t[k - 1][i];
            t[k][i] = (before >> 8) ^ t[0][(before & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// Appends one message (header and payload) to `out`.
pub fn encode(out: &mut Vec<u8>, compression: u8, payload: &[u8]) {
    encode_with(out, (FORMAT_VERSION << 4) | (compression & 0x0f), payload)
}

/// Appends one message with the whole `compver` byte given.
pub fn encode_with(out: &mut Vec<u8>, compver: u8, payload: &[u8]) {
    out.reserve(HEADER_BYTES + payload.len());
    out.push(compver);
    out.extend_from_slice(&crc32(payload).to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Splits the message at the start of `buf` into its header and payload,
/// verifying the CRC. Returns the bytes it occupies.
pub fn decode(buf: &[u8]) -> Result<(Header, &[u8]), FormatError> {
    let header = Header::parse(buf).ok_or(FormatError::Truncated {
        needed: HEADER_BYTES,
        available: buf.len(),
    })?;
    let payload = buf
        .get(HEADER_BYTES..header.total_len())
        .ok_or(FormatError::Truncated {
            needed: header.total_len(),
            available: buf.len(),
        })?;
    header.verify(payload)?;
    Ok((header, payload))
}

/// Iterates over plain messages stored back to back (a set's payload, or a
/// batch-publish body), verifying each CRC. Yields the payload slices.
pub fn plain_messages(buf: &[u8]) -> impl Iterator<Item = Result<&[u8], FormatError>> {
    plain_frames(buf).map(|m| m.map(|(_, payload)| payload))
}

/// [`plain_messages`] with each message's header (its format version).
pub fn plain_frames(buf: &[u8]) -> PlainMessages<'_> {
    PlainMessages { buf, pos: 0 }
}

/// Iterator returned by [`plain_frames`].
pub struct PlainMessages<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for PlainMessages<'a> {
    type Item = Result<(Header, &'a [u8]), FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let item = decode(&self.buf[self.pos..]).and_then(|(header, payload)| {
            if header.is_set() {
                return Err(FormatError::NestedSet(header.compression()));
            }
            self.pos += header.total_len();
            Ok((header, payload))
        });
        if item.is_err() {
            self.pos = self.buf.len();
        }
        Some(item)
    }
}

/// Counts the messages of a run of plain messages, verifying every CRC.
pub fn count_plain(buf: &[u8]) -> Result<u32, FormatError> {
    let mut n = 0u32;
    for m in plain_messages(buf) {
        m?;
        n += 1;
    }
    Ok(n)
}

/// A compression codec for message sets: built in (gzip, snappy) or a plugin.
pub trait Codec: Send + Sync {
    /// The name used in logs and errors.
    fn name(&self) -> &str;
    /// Compresses a set's plain messages.
    fn compress(&self, data: &[u8]) -> Result<Vec<u8>, CodecError>;
    /// Restores what `compress` was given.
    fn decompress(&self, data: &[u8]) -> Result<Vec<u8>, CodecError>;
    /// The codec itself, for layers above that know its type (metrics read
    /// a plugin codec's counters); `None` for the built-in ones.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// gzip, as netlog writes it (compression value 2).
pub struct Gzip;

impl Codec for Gzip {
    fn name(&self) -> &str {
        "gzip"
    }

    fn compress(&self, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(data.len() / 2 + 64),
            flate2::Compression::fast(),
        );
        enc.write_all(data).map_err(|e| codec_error("gzip", e))?;
        enc.finish().map_err(|e| codec_error("gzip", e))
    }

    fn decompress(&self, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(data.len() * 3);
        flate2::read::GzDecoder::new(data)
            .take(MAX_PAYLOAD_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| codec_error("gzip", e))?;
        bounded(out, "gzip")
    }
}

/// Snappy's framed stream format, as netlog writes it (compression value 3).
pub struct Snappy;

impl Codec for Snappy {
    fn name(&self) -> &str {
        "snappy"
    }

    fn compress(&self, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut enc = snap::write::FrameEncoder::new(Vec::with_capacity(data.len() / 2 + 64));
        enc.write_all(data).map_err(|e| codec_error("snappy", e))?;
        enc.into_inner()
            .map_err(|e| codec_error("snappy", e.into_error()))
    }

    fn decompress(&self, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(data.len() * 2);
        snap::read::FrameDecoder::new(data)
            .take(MAX_PAYLOAD_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| codec_error("snappy", e))?;
        bounded(out, "snappy")
    }
}

fn codec_error(codec: &str, e: std::io::Error) -> CodecError {
    CodecError {
        codec: codec.to_string(),
        reason: e.to_string(),
    }
}

fn bounded(out: Vec<u8>, codec: &str) -> Result<Vec<u8>, CodecError> {
    if out.len() > MAX_PAYLOAD_BYTES {
        return Err(CodecError {
            codec: codec.to_string(),
            reason: "decompressed set is over the size limit".to_string(),
        });
    }
    Ok(out)
}

/// The codecs one topic can read and write, by compression value. Clones
/// share the [`refused_sets`](Codecs::refused_sets) counter.
#[derive(Clone)]
pub struct Codecs {
    slots: [Option<Arc<dyn Codec>>; 16],
    refused: Arc<AtomicU64>,
}

impl Default for Codecs {
    fn default() -> Self {
        let mut slots: [Option<Arc<dyn Codec>>; 16] = Default::default();
        slots[SET_GZIP as usize] = Some(Arc::new(Gzip));
        slots[SET_SNAPPY as usize] = Some(Arc::new(Snappy));
        Codecs {
            slots,
            refused: Arc::default(),
        }
    }
}

/// Whether `value` names a codec plugin, whose answers are checked.
fn is_plugin(value: u8) -> bool {
    (FIRST_PLUGIN_CODEC..=LAST_CODEC).contains(&value)
}

impl std::fmt::Debug for Codecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = (0..16)
            .filter_map(|i| self.slots[i].as_ref().map(|c| (i, c.name().to_string())))
            .collect();
        f.debug_struct("Codecs").field("slots", &names).finish()
    }
}

impl Codecs {
    /// Binds a plugin codec to a compression value in 4..=15.
    pub fn bind(&mut self, value: u8, codec: Arc<dyn Codec>) {
        assert!(
            (FIRST_PLUGIN_CODEC..=LAST_CODEC).contains(&value),
            "plugin codecs take values 4..=15"
        );
        self.slots[value as usize] = Some(codec);
    }

    /// The codec bound to `value`, if any (none for 0 and 1).
    pub fn get(&self, value: u8) -> Option<&Arc<dyn Codec>> {
        self.slots.get(value as usize).and_then(|c| c.as_ref())
    }

    /// Whether a set with this compression value can be read.
    pub fn can_read(&self, value: u8) -> bool {
        value == SET_NONE || self.get(value).is_some()
    }

    /// Turns a set's stored payload back into plain messages back to back;
    /// an uncompressed set comes back as the same bytes, without a copy.
    pub fn unpack(&self, compression: u8, payload: Bytes) -> Result<Bytes, FormatError> {
        let decoded = match self.unpack_slice(compression, &payload)? {
            Cow::Owned(plain) => Some(plain),
            Cow::Borrowed(_) => None,
        };
        Ok(decoded.map_or(payload, Bytes::from))
    }

    /// [`unpack`](Self::unpack) over borrowed bytes.
    pub fn unpack_slice<'a>(
        &self,
        compression: u8,
        payload: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, FormatError> {
        match compression {
            PLAIN | SET_NONE => Ok(Cow::Borrowed(payload)),
            value => {
                let codec = self.get(value).ok_or(FormatError::UnknownCodec(value))?;
                Ok(Cow::Owned(codec.decompress(payload)?))
            }
        }
    }

    /// The codec's name for errors: its own, or `#value` when none is bound.
    fn name_of(&self, value: u8) -> String {
        self.get(value)
            .map_or_else(|| format!("#{value}"), |c| c.name().to_string())
    }

    /// Unpacks a stored set that the log recorded as holding `count`
    /// messages. Through a plugin codec, what came out is checked whole:
    /// plain messages back to back, each with a valid CRC, exactly `count` of
    /// them; any failure (an error, garbage, a wrong count) is a
    /// [`FormatError::Codec`] naming the plugin. Built-in sets are returned
    /// as unpacked, so a reader can hand out the intact messages in front of
    /// a damaged one; it checks each message and the count as it goes.
    pub fn unpack_set(
        &self,
        compression: u8,
        payload: Bytes,
        count: u32,
    ) -> Result<Bytes, FormatError> {
        if !is_plugin(compression) {
            return self.unpack(compression, payload);
        }
        let codec_error = |reason: String| {
            FormatError::Codec(CodecError {
                codec: self.name_of(compression),
                reason,
            })
        };
        let plain = self.unpack(compression, payload)?;
        let decoded = count_plain(&plain)
            .map_err(|e| codec_error(format!("decoded set is not valid messages: {e}")))?;
        if decoded != count {
            return Err(codec_error(format!(
                "decoded {decoded} messages, the log recorded {count}"
            )));
        }
        Ok(plain)
    }

    /// Sets whose codec output was refused on write (it failed, or did not
    /// decode back to the set) and that were stored uncompressed instead.
    pub fn refused_sets(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Builds one stored message set out of `plain` (plain messages back to
    /// back), compressed with `compression`. A plugin codec's output is
    /// checked first (see the module docs). Falls back to an uncompressed set
    /// if the codec fails, is missing, or its output does not decode back,
    /// returning the error beside the bytes so the caller can log it; a
    /// plugin's output not smaller than `plain` is stored uncompressed
    /// without an error.
    pub fn pack_set(&self, plain: &[u8], compression: u8) -> (Vec<u8>, Option<CodecError>) {
        let mut out = Vec::new();
        if matches!(compression, PLAIN | SET_NONE) {
            encode(&mut out, SET_NONE, plain);
            return (out, None);
        }
        match self.compress_checked(plain, compression) {
            Ok(bytes) if !is_plugin(compression) || bytes.len() < plain.len() => {
                encode(&mut out, compression, &bytes)
            }
            Ok(_) => encode(&mut out, SET_NONE, plain),
            Err(e) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                encode(&mut out, SET_NONE, plain);
                return (out, Some(e));
            }
        }
        (out, None)
    }

    /// The codec's output for `plain`, decoded back and compared byte for
    /// byte when the codec is a plugin.
    fn compress_checked(&self, plain: &[u8], compression: u8) -> Result<Vec<u8>, CodecError> {
        let codec = self.get(compression).ok_or_else(|| CodecError {
            codec: format!("#{compression}"),
            reason: "no codec bound to this compression value".into(),
        })?;
        let bytes = codec.compress(plain)?;
        if is_plugin(compression) && bytes.len() < plain.len() {
            let back = codec.decompress(&bytes)?;
            if back != plain {
                return Err(CodecError {
                    codec: codec.name().to_string(),
                    reason: format!(
                        "output does not decode back to the set ({} bytes given, {} decoded)",
                        plain.len(),
                        back.len()
                    ),
                });
            }
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short-message CRC is CRC-32 (IEEE): the same value as
    /// `crc32fast` for every length around its 16-byte steps and the fold
    /// threshold, at every alignment, and the check value of the standard.
    #[test]
    fn crc32_is_ieee_at_every_length() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let mut x = 0x9E37_79B9u32;
        let bytes: Vec<u8> = (0..CRC_FOLD_FROM * 3)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for start in 0..16 {
            for end in start..bytes.len() {
                let b = &bytes[start..end];
                assert_eq!(crc32(b), crc32fast::hash(b), "bytes {start}..{end}");
            }
        }
        let mut flipped = bytes[..100].to_vec();
        flipped[57] ^= 0x10;
        assert_ne!(crc32(&flipped), crc32(&bytes[..100]));
    }

    /// The header layout is netlog's: compver, CRC-32 (IEEE), length, big-endian.
    #[test]
    fn encodes_netlog_header() {
        let mut out = Vec::new();
        encode(&mut out, PLAIN, b"m1");
        let crc = crc32fast::hash(b"m1").to_be_bytes();
        assert_eq!(
            out,
            [&[0u8][..], &crc, &[0, 0, 0, 2], b"m1"].concat(),
            "plain message bytes"
        );
    }

    /// A flipped payload bit is reported as a checksum error, not returned.
    #[test]
    fn detects_corrupt_payload() {
        let mut out = Vec::new();
        encode(&mut out, PLAIN, b"hello");
        out[10] ^= 1;
        assert!(matches!(decode(&out), Err(FormatError::Checksum { .. })));
    }

    /// A header that promises more bytes than there are is a truncation.
    #[test]
    fn detects_truncation() {
        let mut out = Vec::new();
        encode(&mut out, PLAIN, b"hello");
        assert!(matches!(
            decode(&out[..12]),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&out[..4]),
            Err(FormatError::Truncated { .. })
        ));
    }

    /// Sets round-trip through every built-in compression.
    #[test]
    fn sets_roundtrip_all_builtin_codecs() {
        let codecs = Codecs::default();
        let mut plain = Vec::new();
        for m in [&b"a"[..], b"", b"third message"] {
            encode(&mut plain, PLAIN, m);
        }
        for c in [SET_NONE, SET_GZIP, SET_SNAPPY] {
            let (stored, err) = codecs.pack_set(&plain, c);
            assert!(err.is_none());
            let (h, payload) = decode(&stored).unwrap();
            assert_eq!(h.compression(), c);
            let unpacked = codecs.unpack(c, Bytes::copy_from_slice(payload)).unwrap();
            let got: Vec<_> = plain_messages(&unpacked).map(|m| m.unwrap()).collect();
            assert_eq!(got, vec![&b"a"[..], b"", b"third message"]);
        }
    }

    /// Snappy sets use the framed stream format (stream identifier chunk first).
    #[test]
    fn snappy_is_framed() {
        let packed = Snappy.compress(b"hello hello hello").unwrap();
        assert_eq!(&packed[..10], b"\xff\x06\x00\x00sNaPpY");
    }

    /// A set nested in a set is refused rather than misread.
    #[test]
    fn refuses_nested_sets() {
        let mut inner = Vec::new();
        encode(&mut inner, SET_NONE, b"");
        assert!(matches!(
            count_plain(&inner),
            Err(FormatError::NestedSet(1))
        ));
    }

    /// A stand-in plugin codec that answers what the test tells it to.
    struct Fake {
        /// What `decompress` answers, whatever it is given.
        decoded: Option<Vec<u8>>,
        /// How many bytes `compress` answers.
        out_len: usize,
    }

    impl Codec for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn compress(&self, _: &[u8]) -> Result<Vec<u8>, CodecError> {
            Ok(vec![7; self.out_len])
        }
        fn decompress(&self, _: &[u8]) -> Result<Vec<u8>, CodecError> {
            self.decoded.clone().ok_or(CodecError {
                codec: "fake".into(),
                reason: "no".into(),
            })
        }
    }

    fn three_messages() -> Vec<u8> {
        let mut plain = Vec::new();
        for m in [&b"alpha alpha"[..], b"beta beta", b"gamma gamma"] {
            encode(&mut plain, PLAIN, m);
        }
        plain
    }

    fn with_fake(fake: Fake) -> Codecs {
        let mut codecs = Codecs::default();
        codecs.bind(4, Arc::new(fake));
        codecs
    }

    /// A plugin whose output does not decode back to the set is refused:
    /// the set is stored uncompressed, the error returned and counted.
    #[test]
    fn lying_plugin_output_is_stored_uncompressed_and_counted() {
        let plain = three_messages();
        let mut altered = plain.clone();
        *altered.last_mut().unwrap() ^= 1;
        for decoded in [Some(altered), None, Some(Vec::new())] {
            let codecs = with_fake(Fake {
                decoded,
                out_len: 4,
            });
            let (stored, err) = codecs.pack_set(&plain, 4);
            assert_eq!(err.expect("refused").codec, "fake");
            let (h, payload) = decode(&stored).unwrap();
            assert_eq!((h.compression(), payload), (SET_NONE, &plain[..]));
            assert_eq!(codecs.refused_sets(), 1);
        }
    }

    /// An honest plugin's output is stored; output not smaller than the set
    /// is stored uncompressed, and that is no failure.
    #[test]
    fn plugin_output_is_kept_only_when_honest_and_smaller() {
        let plain = three_messages();
        let honest = with_fake(Fake {
            decoded: Some(plain.clone()),
            out_len: 4,
        });
        let (stored, err) = honest.pack_set(&plain, 4);
        assert!(err.is_none());
        assert_eq!(decode(&stored).unwrap().1, &[7, 7, 7, 7]);
        let expanding = with_fake(Fake {
            decoded: Some(plain.clone()),
            out_len: plain.len() * 100,
        });
        let (stored, err) = expanding.pack_set(&plain, 4);
        assert!(err.is_none());
        assert_eq!(decode(&stored).unwrap().0.compression(), SET_NONE);
        assert_eq!(expanding.refused_sets(), 0);
    }

    /// On read, a count other than the recorded one, or bytes that are not
    /// messages, is a codec error naming the codec.
    #[test]
    fn unpack_set_holds_the_codec_to_the_recorded_count() {
        let plain = three_messages();
        let codecs = with_fake(Fake {
            decoded: Some(plain.clone()),
            out_len: 4,
        });
        let stored = Bytes::from_static(&[7, 7, 7, 7]);
        assert_eq!(codecs.unpack_set(4, stored.clone(), 3).unwrap(), plain);
        for count in [2, 4] {
            let err = codecs.unpack_set(4, stored.clone(), count).unwrap_err();
            assert!(
                matches!(&err, FormatError::Codec(c) if c.codec == "fake"),
                "{err}"
            );
        }
        let garbage = with_fake(Fake {
            decoded: Some(vec![1, 2, 3]),
            out_len: 4,
        });
        let err = garbage.unpack_set(4, stored, 3).unwrap_err();
        assert!(
            matches!(&err, FormatError::Codec(c) if c.codec == "fake"),
            "{err}"
        );
    }

    /// An unbound plugin value cannot be read and says which value it was.
    #[test]
    fn unknown_codec_is_an_error() {
        let codecs = Codecs::default();
        assert!(matches!(
            codecs.unpack(7, Bytes::from_static(b"x")),
            Err(FormatError::UnknownCodec(7))
        ));
    }
}
