//! Opening a segment after any kind of stop, clean or not.
//!
//! netlog trusts its files; this does not. After a crash the data file's tail
//! may be torn (a partial header or payload, or zeros where the OS had not yet
//! written the pages), the index may be ahead of or behind the data, and a bad
//! disk can garble bytes anywhere. Neither file is believed alone: each index
//! entry must land on a message boundary that the data confirms, and the data
//! is read through the index where the index holds.
//!
//! * **Quick path** (sealed segments): when the index ends with a marker at the
//!   data file's end, or fills the index with a last entry that ends the file,
//!   only that last message is verified (length and CRC), and a sample of
//!   [`SAMPLE_PAIRS`] pairs of adjacent entries spread over the index must be
//!   plausible: offsets and positions increasing from pair to pair, inside
//!   the file, each sampled entry's message header filling exactly the space
//!   up to the next entry (a frame boundary), a plain message one offset. The last used entry is found by
//!   binary search (see `Index::used`): a sealed index is never read in
//!   full, so restart costs a few dozen small reads per sealed segment. An
//!   index that fails any of this gets the full walk below, so garbage,
//!   zeros or a cut inside a sealed index are rebuilt from the data. Damage
//!   the sample misses is left for reads (which verify every message, so
//!   they never serve a wrong one) and `check` to report.
//! * **Index walk** (the active segment, or when the quick path fails): the
//!   index's well-formed prefix (the *chain*: relative offset 1 at byte 16,
//!   then strictly increasing relative offsets and positions, ending at the
//!   marker, timestamp 0) is followed entry by entry. Each entry's bytes,
//!   up to the next entry's position, are judged:
//!   - *good*: one message that fills the space exactly, passes its CRC, and
//!     holds the number of offsets the index gives it (counted from the data
//!     for plain messages and built-in sets; a plugin set is not decoded,
//!     the index's count stands, so a failing plugin never costs data);
//!   - *index wrong*: a message that passes its CRC but disagrees with the
//!     entry (another length, another count). The data wins: the index is
//!     not believed from this entry on, and the rest is rebuilt from the data;
//!   - *damaged*: bytes that fail their own check (CRC, a length past the
//!     file, zeros). The index wins: when the next chain position holds a
//!     message that passes its CRC (so the entry's extent is confirmed from
//!     both sides), the damaged entry is kept as it is, with its offsets,
//!     and reads and `check` report it. A run of damaged entries that no
//!     verified message follows is a torn tail and is cut;
//!   - *torn*: an entry that reaches past the data file's end. Cut.
//! * **Data walk** (past the chain, or where the index was proven wrong):
//!   every message is read in order, its length and CRC checked, and every
//!   set unpacked to count its messages. The walk stops at the first message
//!   that is short, fails its CRC, or is all zeros (see below); the data file
//!   is cut there, the marker written after the last good entry and stale
//!   entries zeroed. A set that verifies but that no configured codec can
//!   decode fails the open with [`LogError::UndecodableSet`] (or
//!   `UnknownCodec`) rather than cutting a message that was written whole.
//!   This is the one place a plugin's count is used: past the index nothing
//!   else records it. It is reached only when the index lags the data (an
//!   index lost or cut); a codec lying about a count there would shift the
//!   offsets after that set, but the write check keeps a lying codec's output
//!   off the disk, so that takes a codec swapped under existing data *and* a
//!   lost index.
//!
//! **Zeros.** netlog's format lets an empty message be nine zero bytes
//! (compression 0, CRC-32 of nothing = 0, length 0), which is also what
//! unwritten pages look like. The rule: a zero header is a message only
//! where the index names exactly nine bytes for it. Where the index gives an
//! entry more space, zeros are damage. Past the index (no entry vouches), a
//! run of zero headers is kept as empty messages only when a verified
//! non-zero message follows it, or when it ends a sealed segment with exactly
//! the messages the next segment's base offset implies; otherwise it is
//! unwritten pages and cut.
//!
//! **Offsets are never reused.** When the active segment is cut below what
//! its index chain vouched for (the data of acknowledged, possibly already
//! read, offsets was lost), [`Repair::reserved_next`] says where the log must
//! continue, and [`Log::open`](super::Log::open) starts a new segment there.
//! The offsets in between become a *hole* between two segments: reads there
//! answer offset not found, never another message. A sealed segment that
//! loses its tail leaves the same kind of hole before the next segment.
//!
//! **Rebuilt indexes.** When the walk keeps entries the index had wrong or
//! lacked (garbled, zeroed, cut, or lost; for the active segment, entries
//! past its marker are the normal lag of a crash and do not count), the
//! index disagreed with the data: the rebuilt index is written as a new
//! file, atomically (`Index::replace`: temporary file, fsync, rename,
//! directory fsync), and [`Repair::index_rebuilt`] counts those entries; the
//! log reports the segment in `check` and logs one line for it. Other
//! repairs (a new marker after a cut tail, stale entries zeroed) write only
//! what differs, in place (`Index::rewrite`). On a full disk either is held
//! in memory, so the log still opens.
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
    /// Damaged entries the index vouches for, kept in place (not a change on
    /// disk: reads and `check` report them).
    pub damaged_entries: usize,
    /// For the active segment: the offset the index vouched for beyond what
    /// the data kept. The log must continue there, never below.
    pub reserved_next: Option<u64>,
    /// Entries the index had wrong or lacked that the data gave (see the
    /// module docs): non-zero means the index was rebuilt from the data.
    pub index_rebuilt: usize,
}

impl Repair {
    /// Whether anything was changed on disk.
    pub fn changed(&self) -> bool {
        self.truncated_bytes != 0
            || self.rebuilt_entries != 0
            || self.cleared_entries != 0
            || self.header_rewritten
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
    open_segment_with(dir, base, index_entries, codecs, next_base, false)
}

/// [`open_segment`], with `walk` forcing the full walk on a sealed segment
/// too (a reader or `check` found it disagreeing with its data although
/// the quick path's sample passed).
pub(crate) fn open_segment_with(
    dir: &Path,
    base: u64,
    index_entries: u32,
    codecs: &Codecs,
    next_base: Option<u64>,
    walk: bool,
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
    let mut index = Index::open(&index_path, index_entries).map_err(io_error(&index_path))?;

    let quick = match next_base {
        None => None,
        Some(_) if walk => None,
        Some(b) => {
            let sealed_next_rel = u32::try_from(b.saturating_sub(base) + 1).ok();
            quick_check(&data, &index, len, codecs, sealed_next_rel)
                .map_err(io_error(&index_path))?
        }
    };
    let (entries, next_rel, good_len) = match quick {
        Some((n, next_rel)) => (n, next_rel, len),
        None => {
            let chain = read_chain(&index).map_err(io_error(&index_path))?;
            let next_rel = next_base.map(|b| b.saturating_sub(base) + 1);
            let file = SegmentFile {
                data: &data,
                path: &data_path,
                len,
                capacity: index.capacity(),
                codecs,
            };
            let mut walked = walk_index(&file, &chain);
            repair.damaged_entries = walked.damaged;
            if walked.data_walk {
                walk_data(&file, &mut walked, mtime, next_rel)?;
            }
            if next_base.is_none() && walked.reserved_rel > walked.next_rel {
                repair.reserved_next = Some(base + u64::from(walked.reserved_rel) - 1);
            }
            let marker = IndexEntry {
                rel: walked.next_rel,
                ts: 0,
                pos: walked.end,
            };
            repair.index_rebuilt = disagreements(&chain, &walked.entries, next_base.is_some());
            let replaced = repair.index_rebuilt > 0
                && match Index::replace(&index_path, index.capacity(), &walked.entries, marker) {
                    Ok(rebuilt) => {
                        index = rebuilt;
                        true
                    }
                    // Written in place, or held in memory until space is free.
                    Err((_, e)) if super::is_no_space(&e) => false,
                    Err((path, e)) => return Err(io_error(&path)(e)),
                };
            if replaced {
                repair.rebuilt_entries = repair.index_rebuilt;
            } else {
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
            }
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

/// The index's chain: the longest well-formed prefix of entries (relative
/// offset 1 at byte 16, then strictly increasing offsets and positions), up
/// to and including the marker (timestamp 0), which ends it. Read in blocks
/// that start at [`CHAIN_FIRST_BLOCK`] entries and double, and stop where
/// the chain does, so its cost is what the index holds, not its
/// preallocated capacity.
fn read_chain(index: &Index) -> std::io::Result<Vec<IndexEntry>> {
    let mut chain: Vec<IndexEntry> = Vec::new();
    let mut from = 0;
    let mut block_entries = CHAIN_FIRST_BLOCK;
    while from < index.capacity() {
        let block = index.read(from, block_entries)?;
        from += block.len();
        block_entries = (block_entries * 2).min(CHAIN_MAX_BLOCK);
        for e in block {
            let ok = match chain.last() {
                None => e.rel == 1 && e.pos == SEGMENT_HEADER_BYTES,
                Some(p) => e.rel > p.rel && e.pos > p.pos,
            };
            if !ok {
                return Ok(chain);
            }
            chain.push(e);
            if e.ts == 0 {
                return Ok(chain);
            }
        }
    }
    Ok(chain)
}

/// Index entries read first while following the chain (256 bytes).
const CHAIN_FIRST_BLOCK: usize = 16;
/// Most index entries read at a time while following the chain (64 KiB).
const CHAIN_MAX_BLOCK: usize = 4096;

/// How many of the entries the walks kept the index had wrong or lacked
/// (see the module docs). Past a marker that ends the chain, the active
/// segment's index only lags its data (a crash between the data write and
/// the index write): those entries do not count there; a sealed index was
/// complete, so they do.
fn disagreements(chain: &[IndexEntry], kept: &[IndexEntry], sealed: bool) -> usize {
    let ends_with_marker = chain.last().is_some_and(|m| m.ts == 0);
    kept.iter()
        .enumerate()
        .filter(|(k, e)| match chain.get(*k) {
            Some(c) if c.ts != 0 => c.rel != e.rel || c.pos != e.pos,
            Some(_) => sealed,
            None => sealed || !ends_with_marker,
        })
        .count()
}

/// Pairs of adjacent entries the quick path samples across a sealed index.
pub const SAMPLE_PAIRS: usize = 16;

/// Whether [`SAMPLE_PAIRS`] pairs of adjacent entries among the first
/// `used`, spread evenly, are plausible: increasing from pair to pair,
/// inside the data's `len` bytes, each first entry's message header filling
/// exactly the space up to the second (and a plain message holding one
/// offset). Two small reads per pair.
fn sample_plausible(data: &File, index: &Index, used: usize, len: u64) -> std::io::Result<bool> {
    let pairs = used.saturating_sub(1);
    let samples = SAMPLE_PAIRS.min(pairs);
    let mut floor = IndexEntry {
        rel: 1,
        ts: 0,
        pos: SEGMENT_HEADER_BYTES,
    };
    for k in 0..samples {
        let i = k * pairs / samples;
        let two = index.read(i, 2)?;
        let [e, next] = two[..] else {
            return Ok(false);
        };
        let ordered = e.rel >= floor.rel
            && e.pos >= floor.pos
            && e.ts != 0
            && next.rel > e.rel
            && next.pos > e.pos
            && next.pos <= len;
        if !ordered {
            return Ok(false);
        }
        let mut h = [0u8; HEADER_BYTES];
        if data.read_exact_at(&mut h, e.pos).is_err() {
            return Ok(false);
        }
        // The message fills the space up to the next entry, and a plain one
        // holds one offset.
        let fills = Header::parse(&h).is_some_and(|hd| {
            e.pos + hd.total_len() as u64 == next.pos && (hd.is_set() || next.rel == e.rel + 1)
        });
        if !fills {
            return Ok(false);
        }
        floor = next;
    }
    Ok(true)
}

/// The quick path for a sealed segment: `Some((entries, next_rel))` when
/// the index's last used entry (found by binary search, see [`Index::used`])
/// accounts exactly for the data file's end and that message verifies. Reads
/// three entries and one message, not the whole index: a sealed index was
/// fsynced before its successor was created. In a full index, the last
/// entry's count comes from the data, except for a plugin set, whose count is
/// the one the next segment's base implies (`sealed_next_rel`): a plugin is
/// not asked how many messages it holds.
fn quick_check(
    data: &File,
    index: &Index,
    len: u64,
    codecs: &Codecs,
    sealed_next_rel: Option<u32>,
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
    if last.pos > len || !sample_plausible(data, index, used, len)? {
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
        if header.compression() >= message::FIRST_PLUGIN_CODEC {
            return Ok(sealed_next_rel.filter(|n| *n > last.rel).map(|n| (used, n)));
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

/// Where the run of zero headers starting at `pos` ends (looking no
/// further than `stop`), and whether a verified message that is not all
/// zeros starts there (it may reach up to `len`, the data's end).
fn zero_run(data: &File, pos: u64, stop: u64, len: u64) -> (u64, bool) {
    let mut at = pos;
    let mut h = [0u8; HEADER_BYTES];
    while at + HEADER_BYTES as u64 <= stop.min(len) {
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

/// The data file being recovered, and what judging it needs.
struct SegmentFile<'a> {
    data: &'a File,
    path: &'a Path,
    len: u64,
    capacity: usize,
    codecs: &'a Codecs,
}

/// What the walks found.
struct Walked {
    entries: Vec<IndexEntry>,
    next_rel: u32,
    end: u64,
    /// Damaged entries kept.
    damaged: usize,
    /// Whether the data walk must go on from `end` (past the chain, or where
    /// the index was proven wrong).
    data_walk: bool,
    /// The relative offset the chain vouched for beyond a cut (else 0).
    reserved_rel: u32,
}

/// What the bytes of one chain entry are; see the module docs.
#[derive(Debug, PartialEq, Eq)]
enum EntryState {
    Good,
    IndexWrong,
    Damaged,
    Torn,
}

/// Judges the entry `e` whose extent the chain ends at `next`.
fn judge(file: &SegmentFile<'_>, e: IndexEntry, next: IndexEntry) -> EntryState {
    let space = next.pos - e.pos;
    let count = next.rel - e.rel;
    let Some((header, payload)) = read_verified(file.data, e.pos, file.len) else {
        return if next.pos > file.len {
            EntryState::Torn
        } else {
            EntryState::Damaged
        };
    };
    let zero = header.compver == 0 && header.crc == 0 && header.length == 0;
    if header.total_len() as u64 != space {
        if !zero {
            return EntryState::IndexWrong;
        }
        // Zeros are what unwritten pages look like: a message only where the
        // index names exactly its nine bytes. Unless verified messages start
        // right after them inside the entry's space: then they are real
        // empty messages and the index is what is wrong.
        // Only a run ending inside the entry's space matters: stopping at
        // its end keeps recovery linear when many entries point into one
        // long zero-filled region.
        let (run_end, followed) = zero_run(file.data, e.pos, next.pos, file.len);
        return if followed && run_end < next.pos {
            EntryState::IndexWrong
        } else {
            EntryState::Damaged
        };
    }
    let counted = match header.compression() {
        message::PLAIN => Ok(1),
        // A plugin's answer cannot outvote the index; it is not even asked.
        c if c >= message::FIRST_PLUGIN_CODEC => return EntryState::Good,
        _ => entry_count(header, &payload, file.codecs),
    };
    match counted {
        Ok(n) if n == count => EntryState::Good,
        Ok(_) => EntryState::IndexWrong,
        // A built-in set that passed its CRC but does not unpack was written
        // so: the index's count stands, reads report it.
        Err(_) => EntryState::Good,
    }
}

/// Follows the index chain over the data; see the module docs.
fn walk_index(file: &SegmentFile<'_>, chain: &[IndexEntry]) -> Walked {
    let mut walked = Walked {
        entries: Vec::new(),
        next_rel: 1,
        end: SEGMENT_HEADER_BYTES,
        damaged: 0,
        data_walk: true,
        reserved_rel: 0,
    };
    // Entries judged damaged and not yet confirmed by a verified message.
    let mut pending: Vec<IndexEntry> = Vec::new();
    let mut torn = false;
    for (i, e) in chain.iter().enumerate() {
        if e.ts == 0 || i >= file.capacity {
            break;
        }
        let Some(&next) = chain.get(i + 1) else {
            // No successor bounds it: the data walk judges it.
            break;
        };
        match judge(file, *e, next) {
            EntryState::Good => {
                walked.damaged += pending.len();
                walked.entries.append(&mut pending);
                walked.entries.push(*e);
                (walked.end, walked.next_rel) = (next.pos, next.rel);
            }
            EntryState::Damaged => pending.push(*e),
            EntryState::IndexWrong => {
                // A verified message starts here, which confirms the extent
                // of the damaged entries before it; from here on the data
                // is the truth.
                walked.damaged += pending.len();
                walked.entries.append(&mut pending);
                (walked.end, walked.next_rel) = (e.pos, e.rel);
                return walked;
            }
            EntryState::Torn => {
                torn = true;
                break;
            }
        }
    }
    // Whatever the walks keep, the offsets the chain names stay reserved: up
    // to the marker's, or to the last entry's first offset when the chain
    // has no marker (its own count is the data walk's business).
    walked.reserved_rel = chain.last().map_or(0, |last| last.rel);
    // Damage that no verified message follows is a torn tail: cut, and
    // nothing after it is believed.
    walked.data_walk = pending.is_empty() && !torn;
    walked
}

/// Reads the messages of the data file from where `walked` ends, in order;
/// see the module docs. `sealed_next_rel`, for a sealed segment, is the
/// relative offset its messages end at.
fn walk_data(
    file: &SegmentFile<'_>,
    walked: &mut Walked,
    fallback_ts: u32,
    sealed_next_rel: Option<u64>,
) -> Result<(), LogError> {
    let (data, path, len) = (file.data, file.path, file.len);
    // Up to 1 MiB, and no more than is left to read: a healthy segment
    // walked from its marker reads nothing.
    let left = len.saturating_sub(walked.end).min(1 << 20) as usize;
    let mut rd = BufReader::with_capacity(left.max(HEADER_BYTES), data);
    rd.seek(SeekFrom::Start(walked.end))
        .map_err(io_error(path))?;
    let (mut pos, mut rel) = (walked.end, walked.next_rel);
    let mut empty_until = 0;
    let mut payload = Vec::new();
    while pos + HEADER_BYTES as u64 <= len && walked.entries.len() < file.capacity {
        let mut h = [0u8; HEADER_BYTES];
        rd.read_exact(&mut h).map_err(io_error(path))?;
        let header = Header::parse(&h).expect("nine bytes make a header");
        let total = header.total_len() as u64;
        if pos + total > len || header.length as usize > MAX_PAYLOAD_BYTES {
            break;
        }
        if h == [0u8; HEADER_BYTES] && pos >= empty_until {
            // Nine zero bytes are also an empty message (its CRC is 0). Past
            // what the index vouches for, they count as messages only if a
            // verified non-empty message follows them, or if they complete a
            // sealed segment; otherwise they are unwritten pages.
            let (end, followed) = zero_run(data, pos, len, len);
            let fills_segment = end == len
                && sealed_next_rel == Some(u64::from(rel) + (len - pos) / HEADER_BYTES as u64);
            if !(followed || fills_segment) {
                break;
            }
            empty_until = end;
        }
        payload.resize(header.length as usize, 0);
        rd.read_exact(&mut payload).map_err(io_error(path))?;
        if header.verify(&payload).is_err() {
            break;
        }
        let count = match entry_count(header, &payload, file.codecs) {
            Ok(0) => break, // a set holds at least one message
            Ok(n) => n,
            Err(FormatError::UnknownCodec(v)) => {
                return Err(LogError::UnknownCodec {
                    value: v,
                    path: path.to_path_buf(),
                });
            }
            // It passed its CRC, so it is no torn tail: a codec that fails
            // now (a plugin trapping or erring) must not cost data.
            Err(source @ FormatError::Codec(_)) => {
                return Err(LogError::UndecodableSet {
                    path: path.to_path_buf(),
                    pos,
                    source,
                });
            }
            // A set that passed its CRC but holds a damaged message cannot
            // be counted without an index: the walk stops there.
            Err(_) => break,
        };
        walked.entries.push(IndexEntry {
            rel,
            ts: fallback_ts,
            pos,
        });
        let Some(next) = rel.checked_add(count) else {
            break;
        };
        rel = next;
        pos += total;
    }
    walked.next_rel = rel;
    walked.end = pos;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::index::DEFAULT_INDEX_ENTRIES;
    use crate::log::{Log, LogOptions};

    /// Recovering an active segment of one message reads a few dozen of its
    /// 102,400 preallocated index entries, not all of them; a sealed one
    /// reads its sample. Start-up costs what the data holds.
    #[test]
    fn recovery_reads_the_used_part_of_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        log.append(b"one").unwrap();
        log.flush().unwrap();
        log.roll().unwrap();
        log.append(b"two").unwrap();
        log.flush().unwrap();
        drop(log);
        let codecs = Codecs::default();
        for (base, next) in [(0, Some(1)), (1, None)] {
            let (seg, repair) =
                open_segment(dir.path(), base, DEFAULT_INDEX_ENTRIES, &codecs, next).unwrap();
            assert!(!repair.changed(), "{repair:?}");
            assert_eq!(seg.next_offset(), base + 1);
            let read = seg
                .index
                .entries_read
                .load(std::sync::atomic::Ordering::Relaxed);
            assert!(read <= 600, "segment {base}: {read} index entries read");
        }
    }
}
