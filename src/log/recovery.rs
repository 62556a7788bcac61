//! Opening a segment after any kind of stop, clean or not.
//!
//! netlog trusts its files; this does not. After a crash the data file's tail
//! may be torn (a partial header or payload, or zeros where the OS had not yet
//! written the pages) and the index may be ahead of or behind the data. The data
//! file is the truth; the index is a hint that saves work:
//!
//! * **Quick path** (sealed segments): when the index ends with a marker at the
//!   data file's end, or fills the index with a last entry that ends the file,
//!   only that last message is verified (length and CRC). The last used entry
//!   is found by binary search (see `Index::used`): a sealed index is never
//!   read in full, so restart costs a few reads per sealed segment.
//! * **Walk** (the active segment, or when the quick path fails): every message
//!   is read in order, its length and CRC checked, and every set unpacked to
//!   count its messages (no checksum covers an index entry, so offsets come
//!   from the data). Index entries that agree with the data are kept (and give
//!   timestamps, and the count of a set no configured codec can read); where
//!   they stop agreeing, entries are rebuilt from the data. The walk stops at
//!   the first message that is short, fails its CRC, or (past the trusted
//!   index) is all zeros; the data file is cut there, the marker written after
//!   the last good entry and stale entries zeroed.
//!   Nine zero bytes are also a valid empty message, so past the trusted
//!   index a run of them is kept when a verified message follows it, or when
//!   it ends a sealed segment with exactly the messages the next segment's
//!   base offset implies.
//!   A set that verifies but that no configured codec can decode, and that
//!   the index gives no count for, fails the open with
//!   [`LogError::UndecodableSet`] (or `UnknownCodec`) rather than cutting a
//!   message that was written whole.
//!   A message that fails its CRC although the index vouches for it and for a
//!   verified message right after it is damage, not a torn tail: it is kept,
//!   so reads and `check` report it and the messages after it stay.
//!
//! A message fully written before the crash passes all of these checks, so it
//! is never cut.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::index::{Index, IndexEntry};
use super::segment::{SEGMENT_HEADER_BYTES, SEGMENT_VERSION, Segment, file_name, header_bytes};
use super::{LogError, io_error};
use crate::message::{self, Codecs, FormatError, HEADER_BYTES, Header, MAX_PAYLOAD_BYTES};

/// What opening a segment had to repair.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repair {
    /// Bytes cut from the data file's tail.
    pub truncated_bytes: u64,
    /// Index entries rewritten from the data.
    pub rebuilt_entries: usize,
    /// Stale index entries zeroed.
    pub cleared_entries: usize,
    /// Whether the data file header had to be rewritten.
    pub header_rewritten: bool,
}

impl Repair {
    /// Whether anything was changed on disk.
    pub fn changed(&self) -> bool {
        *self != Repair::default()
    }
}

/// Opens the segment at `base` in `dir`, repairing it as described above.
/// `next_base` is the base offset of the segment after it; `None` marks the
/// active segment, which always gets the full walk.
pub fn open_segment(
    dir: &Path,
    base: u64,
    index_entries: u32,
    codecs: &Codecs,
    next_base: Option<u64>,
) -> Result<(Segment, Repair), LogError> {
    let data_path = dir.join(file_name(base, "data"));
    let index_path = dir.join(file_name(base, "index"));
    let data = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&data_path)
        .map_err(io_error(&data_path))?;
    let mut repair = Repair::default();
    let meta = data.metadata().map_err(io_error(&data_path))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as u32)
        .unwrap_or_else(super::segment::unix_now);
    let mut len = meta.len();
    let created = read_header(&data, &data_path, &mut len, mtime, &mut repair)?;
    let index = Index::open(&index_path, index_entries).map_err(io_error(&index_path))?;

    let quick = match next_base {
        None => None,
        Some(_) => quick_check(&data, &index, len, codecs).map_err(io_error(&index_path))?,
    };
    let (entries, next_rel, good_len) = match quick {
        Some((n, next_rel)) => (n, next_rel, len),
        None => {
            let hints = read_hints(&index, len).map_err(io_error(&index_path))?;
            let next_rel = next_base.map(|b| b.saturating_sub(base) + 1);
            let walked = walk_data(
                &data, &data_path, &hints, len, &index, codecs, mtime, next_rel,
            )?;
            let marker = IndexEntry {
                rel: walked.next_rel,
                ts: 0,
                pos: walked.end,
            };
            let done = index
                .rewrite(&walked.entries, marker)
                .map_err(io_error(&index_path))?;
            if done.held {
                tracing::warn!(
                    path = %index_path.display(),
                    "disk full: index repair held in memory until space is free"
                );
            }
            repair.rebuilt_entries = done.rebuilt;
            repair.cleared_entries = done.cleared;
            (walked.entries.len(), walked.next_rel, walked.end)
        }
    };
    if good_len < len {
        data.set_len(good_len).map_err(io_error(&data_path))?;
        repair.truncated_bytes = len - good_len;
    }
    let seg = Segment::assemble(base, created, data_path, index_path, data, index);
    seg.restore(entries, next_rel, good_len);
    if repair.changed() {
        match seg.sync() {
            Err(e) if e.is_no_space() => {
                tracing::warn!(error = %e, "disk full: repaired segment not synced")
            }
            other => other?,
        }
    }
    Ok((seg, repair))
}

/// Reads (or rewrites, when torn or garbled) the 16-byte data file header.
fn read_header(
    data: &File,
    path: &Path,
    len: &mut u64,
    mtime: u32,
    repair: &mut Repair,
) -> Result<u32, LogError> {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    if *len >= SEGMENT_HEADER_BYTES {
        data.read_exact_at(&mut h, 0).map_err(io_error(path))?;
        if h[0] == SEGMENT_VERSION && u64::from(h[1]) == SEGMENT_HEADER_BYTES {
            return Ok(u32::from_be_bytes([h[2], h[3], h[4], h[5]]));
        }
    }
    // A header torn at creation, or garbled: messages start at byte 16 in any
    // case, so write a fresh header and keep whatever follows.
    tracing::warn!(path = %path.display(), "segment header torn or invalid, rewriting it");
    if *len < SEGMENT_HEADER_BYTES {
        data.set_len(0).map_err(io_error(path))?;
        *len = SEGMENT_HEADER_BYTES;
    }
    data.write_all_at(&header_bytes(mtime), 0)
        .map_err(io_error(path))?;
    repair.header_rewritten = true;
    Ok(mtime)
}

/// The longest prefix of index entries that is well-formed: starting at
/// relative offset 1 and position 16, strictly increasing, inside the data.
fn read_hints(index: &Index, len: u64) -> std::io::Result<Vec<IndexEntry>> {
    let mut hints: Vec<IndexEntry> = Vec::new();
    for e in index.read(0, index.capacity())? {
        let ok = match hints.last() {
            None => e.rel == 1 && e.pos == SEGMENT_HEADER_BYTES,
            Some(p) => e.rel > p.rel && e.pos > p.pos,
        };
        if !ok || e.pos > len {
            break;
        }
        hints.push(e);
    }
    Ok(hints)
}

/// The quick path for a sealed segment: `Some((entries, next_rel))` when the
/// index's last used entry (found by binary search, see
/// [`Index::used`]) accounts exactly for the data file's end and that message
/// verifies. Reads four entries and one message, not the whole index: a
/// sealed index was fsynced before its successor was created.
fn quick_check(
    data: &File,
    index: &Index,
    len: u64,
    codecs: &Codecs,
) -> std::io::Result<Option<(usize, u32)>> {
    let used = index.used()?;
    let Some(first) = index.read(0, 1)?.first().copied() else {
        return Ok(None);
    };
    if used == 0 || first.rel != 1 || first.pos != SEGMENT_HEADER_BYTES {
        return Ok(None);
    }
    let tail = index.read(used.saturating_sub(2), used.min(2))?;
    let last = *tail.last().expect("used > 0");
    if last.pos > len {
        return Ok(None);
    }
    if last.ts == 0 && last.pos == len {
        // Ends with a marker: verify the message before it.
        let [prev, _] = tail[..] else {
            return Ok((len == SEGMENT_HEADER_BYTES).then_some((0, last.rel)));
        };
        if prev.rel >= last.rel || prev.pos >= last.pos {
            return Ok(None);
        }
        let Some((header, _)) = read_verified(data, prev.pos, len) else {
            return Ok(None);
        };
        Ok((prev.pos + header.total_len() as u64 == len).then_some((used - 1, last.rel)))
    } else if used == index.capacity() && last.ts != 0 {
        // A full index has no room for a marker: the last entry ends the file.
        let Some((header, payload)) = read_verified(data, last.pos, len) else {
            return Ok(None);
        };
        if last.pos + header.total_len() as u64 != len {
            return Ok(None);
        }
        let Ok(count) = entry_count(header, &payload, codecs) else {
            return Ok(None);
        };
        Ok(last.rel.checked_add(count).map(|next| (used, next)))
    } else {
        Ok(None)
    }
}

/// Reads and verifies the message at `pos`, if it fits before `len`.
fn read_verified(data: &File, pos: u64, len: u64) -> Option<(Header, Vec<u8>)> {
    let mut h = [0u8; HEADER_BYTES];
    data.read_exact_at(&mut h, pos).ok()?;
    let header = Header::parse(&h)?;
    if pos + header.total_len() as u64 > len || header.length as usize > MAX_PAYLOAD_BYTES {
        return None;
    }
    let mut payload = vec![0u8; header.length as usize];
    data.read_exact_at(&mut payload, pos + HEADER_BYTES as u64)
        .ok()?;
    header.verify(&payload).ok()?;
    Some((header, payload))
}

/// How many offsets a verified message occupies.
fn entry_count(header: Header, payload: &[u8], codecs: &Codecs) -> Result<u32, FormatError> {
    if !header.is_set() {
        return Ok(1);
    }
    message::count_plain(&codecs.unpack_slice(header.compression(), payload)?)
}

/// Where the run of zero headers starting at `pos` ends, and whether a
/// verified message that is not all zeros starts there.
fn zero_run(data: &File, pos: u64, len: u64) -> (u64, bool) {
    let mut at = pos;
    let mut h = [0u8; HEADER_BYTES];
    while at + HEADER_BYTES as u64 <= len {
        if data.read_exact_at(&mut h, at).is_err() {
            return (at, false);
        }
        if h != [0u8; HEADER_BYTES] {
            return (at, read_verified(data, at, len).is_some());
        }
        at += HEADER_BYTES as u64;
    }
    (at, false)
}

struct Walked {
    entries: Vec<IndexEntry>,
    next_rel: u32,
    end: u64,
}

/// Reads every message of the data file in order; see the module docs.
/// `next_rel`, for a sealed segment, is the relative offset its messages end at.
#[allow(clippy::too_many_arguments)]
fn walk_data(
    data: &File,
    path: &Path,
    hints: &[IndexEntry],
    len: u64,
    index: &Index,
    codecs: &Codecs,
    fallback_ts: u32,
    next_rel: Option<u64>,
) -> Result<Walked, LogError> {
    let mut rd = BufReader::with_capacity(1 << 20, data);
    rd.seek(SeekFrom::Start(SEGMENT_HEADER_BYTES))
        .map_err(io_error(path))?;
    let (mut pos, mut rel) = (SEGMENT_HEADER_BYTES, 1u32);
    let mut entries = Vec::new();
    let mut trusted = true;
    let mut empty_until = 0;
    let mut payload = Vec::new();
    while pos + HEADER_BYTES as u64 <= len && entries.len() < index.capacity() {
        let mut h = [0u8; HEADER_BYTES];
        rd.read_exact(&mut h).map_err(io_error(path))?;
        let header = Header::parse(&h).expect("nine bytes make a header");
        let total = header.total_len() as u64;
        let hint = hints.get(entries.len()).copied();
        trusted &= hint.is_some_and(|e| e.pos == pos && e.rel == rel && e.ts != 0);
        if pos + total > len || header.length as usize > MAX_PAYLOAD_BYTES {
            break;
        }
        if !trusted && h == [0u8; HEADER_BYTES] && pos >= empty_until {
            // Nine zero bytes are also an empty message (its CRC is 0). Past
            // what the index vouches for, they count as messages only if a
            // verified non-empty message follows them, or if they complete a
            // sealed segment; otherwise they are unwritten pages.
            let (end, followed) = zero_run(data, pos, len);
            let fills_segment =
                end == len && next_rel == Some(u64::from(rel) + (len - pos) / HEADER_BYTES as u64);
            if !(followed || fills_segment) {
                break;
            }
            empty_until = end;
        }
        payload.resize(header.length as usize, 0);
        rd.read_exact(&mut payload).map_err(io_error(path))?;
        // Counts come from the data: an index entry's relative offset is not
        // covered by any checksum, so a garbled one must not shift offsets.
        // The index is only believed for a set no configured codec can read,
        // and for a message damaged after it was written (below).
        let next_hint = hints.get(entries.len() + 1);
        let hinted = match (trusted, next_hint) {
            (true, Some(n)) if n.pos == pos + total && n.rel > rel => Some(n.rel - rel),
            _ => None,
        };
        let count = if header.verify(&payload).is_err() {
            // Vouched for by the index and followed by a message that
            // verifies where the index says: damaged after it was written,
            // not torn. Cutting here would drop every message after it.
            match hinted {
                Some(n) if read_verified(data, pos + total, len).is_some() => n,
                _ => break,
            }
        } else {
            match entry_count(header, &payload, codecs) {
                Ok(0) => break, // a set holds at least one message
                Ok(n) => n,
                Err(FormatError::UnknownCodec(v)) => match hinted {
                    Some(n) => n,
                    None => {
                        return Err(LogError::UnknownCodec {
                            value: v,
                            path: path.to_path_buf(),
                        });
                    }
                },
                // It passed its CRC, so it is no torn tail: a codec that
                // fails now (a plugin trapping or erring) must not cost data.
                Err(source @ FormatError::Codec(_)) => match hinted {
                    Some(n) => n,
                    None => {
                        return Err(LogError::UndecodableSet {
                            path: path.to_path_buf(),
                            pos,
                            source,
                        });
                    }
                },
                // The set passed its own CRC but holds a damaged message:
                // damage, not a torn tail. With the index's count it is kept
                // (reads and `check` report it); without one it cannot be
                // counted and the walk stops there.
                Err(_) => match hinted {
                    Some(n) => n,
                    None => break,
                },
            }
        };
        let ts = if trusted {
            hint.map_or(fallback_ts, |e| e.ts)
        } else {
            fallback_ts
        };
        entries.push(IndexEntry { rel, ts, pos });
        let Some(next) = rel.checked_add(count) else {
            break;
        };
        rel = next;
        pos += total;
    }
    Ok(Walked {
        entries,
        next_rel: rel,
        end: pos,
    })
}
