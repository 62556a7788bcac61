//! The integrity checker behind `GET /{topic}/check`, as netlog's `check`.
//!
//! It walks the index entries of every segment from a given offset and
//! verifies each stored message against the index and itself, reporting every
//! problem it finds (it never stops at the first). Each entry is found
//! through the index, so one bad message does not hide the ones after it.
//!
//! Kinds, netlog's three first:
//! - `checksum`: a payload does not match its CRC (`odelta` is the position
//!   inside a set for a damaged inner message; 0 otherwise).
//! - `length`: the length field disagrees with the space the entry occupies
//!   up to the next entry (a flipped length, zeros where a message was, a
//!   short file), or a set's inner message is truncated.
//! - `unknown`: anything else: a set no configured codec handles, a built-in
//!   set that does not unpack, a plain message the index gives more than one
//!   offset.
//! - `codec` (beyond netlog): a set whose bytes passed their CRC but whose
//!   plugin codec fails on them, decodes garbage, or decodes another number
//!   of messages than the index recorded at write time. The disk is fine;
//!   the codec is to blame. `expected` is the count the index recorded,
//!   `actual` the count decoded (0 when nothing decoded).
//! - `format` (beyond netlog): a v1 message whose CRC passes but whose
//!   record does not parse (reserved flag bits, a section past the end, a
//!   bound broken; see `record.rs`). Recovery keeps it and reads of it fail
//!   at its offset; the messages after it stay readable. `odelta` is its
//!   position inside a set; `expected` and `actual` are 0.
//! - `hole` (beyond netlog): offsets no segment holds, between two segments
//!   (a sealed segment lost its tail). `offset` is the first missing offset,
//!   `expected` the offset where messages resume, `actual` how many are
//!   missing.
//! - `index` (beyond netlog): not a problem left but one repaired: the
//!   segment's index disagreed with its data and was rebuilt from the data
//!   (see `recovery.rs`), when the log opened or by this check. `offset` is
//!   the segment's base offset, `actual` the entries rebuilt, `expected` 0.
//!   Listed until the next restart, for segments holding offsets from
//!   `from` on.
//!
//! **Rebuilding.** Opening samples a sealed segment's index and may miss
//! damage in a large one. When a sealed segment shows problems here, it is
//! walked as recovery walks it (`Log::rebuild_sealed`); if that rebuilt its
//! index, the segment is swapped for the rebuilt one and checked again, so
//! only damage in the data itself is reported.

use serde::Serialize;

use super::segment::Segment;
use super::{Log, LogError};
use crate::message::{FORMAT_RECORD, FormatError, HEADER_BYTES, Header, SET_NONE, plain_frames};
use crate::record::Record;

/// Whether a plain message's payload is a v1 record that does not parse.
fn bad_record(header: &Header, payload: &[u8]) -> bool {
    header.format() == FORMAT_RECORD
        && Record::parse(&bytes::Bytes::copy_from_slice(payload)).is_err()
}

/// What kind of problem a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// The payload does not match its CRC.
    Checksum,
    /// The length field disagrees with the space the entry occupies.
    Length,
    /// Anything else (a set that cannot be unpacked, an unreadable header).
    Unknown,
    /// A codec failed on a set whose bytes are intact (see the module docs).
    Codec,
    /// A v1 record that does not parse though its CRC passes.
    Format,
    /// Offsets missing between two segments.
    Hole,
    /// A segment's index rebuilt from its data (see the module docs).
    Index,
}

/// One problem, in netlog's JSON shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckError {
    /// Offset of the stored entry.
    pub offset: u64,
    /// Position of the message inside its set (0 for plain messages).
    pub odelta: u64,
    /// The kind of problem.
    #[serde(rename = "type")]
    pub kind: CheckKind,
    /// What was expected (the stored CRC, or the length the index implies).
    pub expected: u64,
    /// What was found.
    pub actual: u64,
}

pub(crate) fn check(log: &Log, from: u64) -> Result<Vec<CheckError>, LogError> {
    let mut problems = Vec::new();
    let mut buf = Vec::new();
    let mut prev_next: Option<u64> = None;
    let list = log.segment_list();
    for (i, listed) in list.iter().enumerate() {
        let mut seg = listed.clone();
        let found = problems.len();
        if seg.next_offset() > from {
            check_segment(log, &seg, from, &mut buf, &mut problems)?;
        }
        // Problems in a sealed segment whose sample passed at open may be
        // its index's: walk it, and if the index was rebuilt, check the
        // rebuilt segment instead.
        if problems.len() > found
            && i + 1 < list.len()
            && let Some(rebuilt) = rebuild(log, &seg)
        {
            problems.truncate(found);
            seg = rebuilt;
            check_segment(log, &seg, from, &mut buf, &mut problems)?;
        }
        if let Some(p) = prev_next
            && p < seg.base
            && seg.base > from
        {
            problems.insert(
                found,
                CheckError {
                    offset: p.max(from),
                    odelta: 0,
                    kind: CheckKind::Hole,
                    expected: seg.base,
                    actual: seg.base - p.max(from),
                },
            );
        }
        if let Some((_, rebuilt)) = log
            .rebuilt_indexes()
            .into_iter()
            .rfind(|(b, _)| *b == seg.base)
            && seg.next_offset() > from
        {
            problems.insert(
                found,
                CheckError {
                    offset: seg.base,
                    odelta: 0,
                    kind: CheckKind::Index,
                    expected: 0,
                    actual: rebuilt as u64,
                },
            );
        }
        prev_next = Some(seg.next_offset());
    }
    Ok(problems)
}

/// [`Log::rebuild_sealed`]; a walk that fails (a codec failing on a set it
/// must count) leaves the segment as it is, and its problems reported.
fn rebuild(log: &Log, seg: &std::sync::Arc<Segment>) -> Option<std::sync::Arc<Segment>> {
    log.rebuild_sealed(seg).unwrap_or_else(|e| {
        tracing::warn!(base = seg.base, error = %e, "check could not walk a sealed segment");
        None
    })
}

/// Checks the entries of `seg` holding offsets from `from` on.
fn check_segment(
    log: &Log,
    seg: &Segment,
    from: u64,
    buf: &mut Vec<u8>,
    problems: &mut Vec<CheckError>,
) -> Result<(), LogError> {
    let entries = seg.entries();
    let data_len = seg.data_len();
    for i in 0..entries {
        let e = seg.entry(i)?;
        let (end, next_rel) = if i + 1 < seg.index.capacity() {
            let n = seg.entry(i + 1)?;
            (n.pos, n.rel)
        } else {
            (data_len, (seg.next_offset() - seg.base + 1) as u32)
        };
        let offset = seg.base + u64::from(e.rel) - 1;
        let count = next_rel.saturating_sub(e.rel);
        if offset + u64::from(count) <= from {
            continue;
        }
        // A garbled position must not make this read (or its buffer)
        // unbounded: no entry goes past the data or over the largest
        // entry a log writes.
        let space = end
            .min(data_len)
            .saturating_sub(e.pos)
            .min((super::MAX_ENTRY_BYTES + HEADER_BYTES) as u64) as usize;
        buf.resize(space, 0);
        use std::os::unix::fs::FileExt;
        let read = seg.raw_file()?.read_at(buf, e.pos).unwrap_or(0);
        buf.truncate(read);
        check_entry(log, offset, count, buf, space, problems);
    }
    Ok(())
}

fn check_entry(
    log: &Log,
    offset: u64,
    count: u32,
    buf: &[u8],
    space: usize,
    out: &mut Vec<CheckError>,
) {
    let problem = |odelta, kind, expected: u64, actual: u64| CheckError {
        offset,
        odelta,
        kind,
        expected,
        actual,
    };
    let Some(header) = Header::parse(buf) else {
        out.push(problem(
            0,
            CheckKind::Length,
            space as u64,
            buf.len() as u64,
        ));
        return;
    };
    let implied = space.saturating_sub(HEADER_BYTES) as u64;
    if header.total_len() != space || buf.len() < space {
        out.push(problem(
            0,
            CheckKind::Length,
            implied,
            u64::from(header.length),
        ));
        return;
    }
    let payload = &buf[HEADER_BYTES..];
    let actual = crate::message::crc32(payload);
    if actual != header.crc {
        out.push(problem(
            0,
            CheckKind::Checksum,
            u64::from(header.crc),
            u64::from(actual),
        ));
        return;
    }
    if header.format() > FORMAT_RECORD || (header.format() == FORMAT_RECORD && header.is_set()) {
        out.push(problem(0, CheckKind::Unknown, 0, 0));
        return;
    }
    if !header.is_set() {
        if count != 1 {
            out.push(problem(0, CheckKind::Unknown, 1, u64::from(count)));
        } else if bad_record(&header, payload) {
            out.push(problem(0, CheckKind::Format, 0, 0));
        }
        return;
    }
    let compression = header.compression();
    if compression >= crate::message::FIRST_PLUGIN_CODEC {
        let unpacked =
            log.codecs()
                .unpack_set(compression, bytes::Bytes::copy_from_slice(payload), count);
        match unpacked {
            Ok(_) => {}
            Err(FormatError::UnknownCodec(_)) => out.push(problem(0, CheckKind::Unknown, 0, 0)),
            Err(_) => {
                let decoded = log
                    .codecs()
                    .unpack_slice(compression, payload)
                    .ok()
                    .and_then(|p| crate::message::count_plain(&p).ok())
                    .unwrap_or(0);
                out.push(problem(
                    0,
                    CheckKind::Codec,
                    u64::from(count),
                    u64::from(decoded),
                ));
            }
        }
        return;
    }
    let plain = match log.codecs().unpack_slice(compression, payload) {
        Ok(p) => p,
        Err(_) => {
            out.push(problem(0, CheckKind::Unknown, 0, 0));
            return;
        }
    };
    let mut seen = 0u32;
    for (k, m) in plain_frames(&plain).enumerate() {
        seen += 1;
        match m {
            Ok((h, payload)) if bad_record(&h, payload) => {
                out.push(problem(k as u64, CheckKind::Format, 0, 0))
            }
            Ok(_) => {}
            Err(FormatError::Checksum { expected, actual }) => out.push(problem(
                k as u64,
                CheckKind::Checksum,
                u64::from(expected),
                u64::from(actual),
            )),
            Err(FormatError::Truncated { needed, available }) => out.push(problem(
                k as u64,
                CheckKind::Length,
                needed as u64,
                available as u64,
            )),
            Err(_) => out.push(problem(k as u64, CheckKind::Unknown, 0, 0)),
        }
    }
    if seen != count && out.last().is_none_or(|p| p.offset != offset) {
        let kind = if compression == SET_NONE {
            CheckKind::Length
        } else {
            CheckKind::Unknown
        };
        out.push(problem(0, kind, u64::from(count), u64::from(seen)));
    }
}
