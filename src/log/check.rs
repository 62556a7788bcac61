//! The integrity checker behind `GET /{topic}/check`, as netlog's `check`.
//!
//! It walks the index entries of every segment from a given offset and
//! verifies each stored message against the index and itself: its length must
//! fill exactly the space up to the next entry (`length`), its CRC must match
//! (`checksum`), and a set must unpack into plain messages whose own CRCs match
//! (`checksum` with `odelta`, the position inside the set; `unknown` when the
//! set cannot be unpacked at all). Because each entry is found through the
//! index, one bad message does not hide the ones after it.

use serde::Serialize;

use super::{Log, LogError};
use crate::message::{FormatError, HEADER_BYTES, Header, plain_messages};

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
    for seg in log.segment_list() {
        if seg.next_offset() <= from {
            continue;
        }
        let entries = seg.entries();
        let data_len = seg.data_len();
        for i in 0..entries {
            let e = seg.entry(i)?;
            let end = if i + 1 < entries {
                seg.entry(i + 1)?.pos
            } else {
                data_len
            };
            let offset = seg.base + u64::from(e.rel) - 1;
            let next_offset = if i + 1 < entries {
                seg.base + u64::from(seg.entry(i + 1)?.rel) - 1
            } else {
                seg.next_offset()
            };
            if next_offset <= from {
                continue;
            }
            let space = end.saturating_sub(e.pos) as usize;
            buf.resize(space, 0);
            use std::os::unix::fs::FileExt;
            let read = seg.raw_file()?.read_at(&mut buf, e.pos).unwrap_or(0);
            buf.truncate(read);
            check_entry(log, offset, &buf, space, &mut problems);
        }
    }
    Ok(problems)
}

fn check_entry(log: &Log, offset: u64, buf: &[u8], space: usize, out: &mut Vec<CheckError>) {
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
    let actual = crc32fast::hash(payload);
    if actual != header.crc {
        out.push(problem(
            0,
            CheckKind::Checksum,
            u64::from(header.crc),
            u64::from(actual),
        ));
        return;
    }
    if !header.is_set() {
        return;
    }
    let plain = match log.codecs().unpack_slice(header.compression(), payload) {
        Ok(p) => p,
        Err(_) => {
            out.push(problem(0, CheckKind::Unknown, 0, 0));
            return;
        }
    };
    for (k, m) in plain_messages(&plain).enumerate() {
        match m {
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
}
