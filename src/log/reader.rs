//! Sequential reading from any offset, across segments.
//!
//! A reader walks a segment's index entries in order and reads each entry's
//! bytes from the data file: it keeps a chunk of the current segment (one
//! positional read of up to [`CHUNK_BYTES`]) and hands out messages as `Bytes`
//! slices of that chunk, so a sequential read costs one syscall per chunk and
//! no copy per message.
//!
//! **Reading ahead.** A reader also keeps a block of the segment's index
//! entries (up to [`INDEX_BLOCK`] of them, one positional read), so reading
//! on costs no index read per message. What the chunk and the block hold can
//! be read without any I/O: [`Reader::next_buffered`] hands out exactly
//! that, and says when the next message needs the disk (or a codec), so a
//! caller on an async worker reads what is in memory at once and sends only
//! the rest to a thread that may block.
//!
//! **Offsets come from the log.** An entry's first offset and its message
//! count come from the index (the next entry's relative offset, or the
//! segment's next offset for the last one), and its bytes must fill exactly
//! the space up to the next entry's position. A message whose length field
//! disagrees with that space (a damaged length, zeros where a message was),
//! or whose CRC fails, is a [`LogError::Corrupt`]; a set through a plugin
//! codec that fails, decodes garbage, or decodes another count than the
//! index recorded is a corrupt error whose source is [`FormatError::Codec`]
//! naming the codec. A built-in set's messages are checked one by one, so
//! the intact ones before a damaged one are still handed out, and a count
//! other than the recorded one is [`FormatError::CountMismatch`]. A reader never guesses
//! where a message starts, so one damaged message cannot shift the offsets of
//! the ones after it. An error leaves the reader where it is: the next call
//! returns it again.
//!
//! **Holes.** Recovery can leave offsets that no segment holds (a sealed
//! segment lost its tail; see `recovery.rs`). Holes only ever lie between
//! segments. A reader *opened* at an offset in a hole, or before the oldest
//! segment, is [`LogError::OffsetNotFound`], never another message. A reader
//! that *reaches* a hole while reading on skips to the next stored offset:
//! the messages it returns carry their true offsets, so a caller sees the
//! jump in [`Message::offset`] and [`Reader::next_offset`].

use std::sync::Arc;

use bytes::Bytes;

use super::index::IndexEntry;
use super::segment::Segment;
use super::{Log, LogError, io_error};
use crate::message::{FormatError, HEADER_BYTES, Header, MAX_PAYLOAD_BYTES, Message, SET_NONE};

/// Bytes read from a data file at a time.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Index entries read at a time (16 KiB).
pub const INDEX_BLOCK: usize = 1024;

/// Why a read stopped without a message.
enum Stop {
    /// The log failed.
    Err(LogError),
    /// The next message needs a read from a file or a codec call, and the
    /// caller asked for none.
    NeedIo,
}

impl From<LogError> for Stop {
    fn from(e: LogError) -> Stop {
        Stop::Err(e)
    }
}

impl Stop {
    /// The error of a read that was allowed I/O, so never stopped for it.
    fn into_error(self) -> LogError {
        match self {
            Stop::Err(e) => e,
            Stop::NeedIo => LogError::InvalidEntry("read stopped for I/O it was allowed"),
        }
    }
}

/// Inner messages of a set not handed out yet.
struct SetCursor {
    plain: Bytes,
    at: usize,
    /// The offset after the set's last message, as the index recorded it.
    end: u64,
}

/// Where one index entry's message lies and which offsets it holds.
#[derive(Clone, Copy, Debug)]
struct Span {
    pos: u64,
    end: u64,
    first: u64,
    count: u32,
}

/// How many whole messages `plain` holds, by their length fields.
fn count_in(plain: &[u8]) -> u64 {
    let (mut n, mut at) = (0, 0);
    while let Some(h) = Header::parse(&plain[at..]) {
        if at + h.total_len() > plain.len() {
            break;
        }
        at += h.total_len();
        n += 1;
    }
    n
}

/// A sequential reader over a log. See the module docs.
pub struct Reader {
    log: Log,
    seg: Arc<Segment>,
    /// The segment's index entry read next.
    entry: usize,
    next: u64,
    chunk: Bytes,
    chunk_pos: u64,
    set: Option<SetCursor>,
    /// Index entries `idx_from..idx_from + idx.len()` of `seg`, read ahead.
    idx: Vec<IndexEntry>,
    idx_from: usize,
    /// Least bytes one read of the data file takes ([`CHUNK_BYTES`] unless
    /// the caller knows it wants less).
    read_ahead: usize,
}

impl Reader {
    pub(crate) fn new(log: Log, offset: u64) -> Result<Reader, LogError> {
        Reader::with_read_ahead(log, offset, CHUNK_BYTES)
    }

    /// [`Reader::new`] reading at least `read_ahead` bytes (at most
    /// [`CHUNK_BYTES`]) of the data file at a time: for a caller that takes
    /// a short run of messages, which should not read and copy 256 KiB.
    pub(crate) fn with_read_ahead(
        log: Log,
        offset: u64,
        read_ahead: usize,
    ) -> Result<Reader, LogError> {
        if offset < log.oldest_offset() || offset > log.next_offset() {
            return Err(LogError::OffsetNotFound(offset));
        }
        let seg = log
            .segment_for(offset)
            .ok_or(LogError::OffsetNotFound(offset))?;
        if offset < seg.base {
            // In a hole that recovery left between two segments.
            return Err(LogError::OffsetNotFound(offset));
        }
        let mut reader = Reader {
            log,
            entry: seg.entries(),
            next: offset,
            seg,
            chunk: Bytes::new(),
            chunk_pos: 0,
            set: None,
            idx: Vec::new(),
            idx_from: 0,
            read_ahead: read_ahead.clamp(HEADER_BYTES, CHUNK_BYTES),
        };
        if let Some(i) = reader.seg.locate_entry(offset)? {
            let first = reader.seg.base + u64::from(reader.seg.entry(i)?.rel) - 1;
            reader.entry = i;
            reader.next = first;
            if first < offset {
                // Inside a set: unpack it and step over the messages before,
                // by their frames only, so that a damaged neighbour does not
                // make an intact message after it unreadable.
                reader.open_entry(true).map_err(Stop::into_error)?;
                while reader.next < offset && reader.skip_in_set()? {}
            }
        }
        Ok(reader)
    }

    /// The offset the next call to `next` returns (once it exists).
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// The next message, or `None` at the current end of the log.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Message>, LogError> {
        self.step(true).map_err(Stop::into_error)
    }

    /// The next message if it can be had without I/O: from the chunk and
    /// the index block the reader holds, a plain message or one of an
    /// uncompressed set. `None` when it cannot (a file must be read, or a
    /// codec called): then [`Reader::next`], off the async workers, goes on
    /// from the same place. `Some(Ok(None))` at the end of the log.
    pub fn next_buffered(&mut self) -> Option<Result<Option<Message>, LogError>> {
        match self.step(false) {
            Ok(m) => Some(Ok(m)),
            Err(Stop::Err(e)) => Some(Err(e)),
            Err(Stop::NeedIo) => None,
        }
    }

    /// [`Reader::next`], doing I/O only if `io`. Stopping for I/O leaves the
    /// reader where a later call continues.
    fn step(&mut self, io: bool) -> Result<Option<Message>, Stop> {
        loop {
            if let Some(m) = self.next_in_set()? {
                return Ok(Some(m));
            }
            if self.entry >= self.seg.entries() {
                // Sealed is set after the segment's last publish, so a count
                // read after seeing it is final.
                if !self.seg.is_sealed() {
                    return Ok(None);
                }
                if self.entry < self.seg.entries() {
                    continue;
                }
                let end = self.seg.next_offset().max(self.next);
                match self.log.segment_for(end) {
                    Some(s) if s.base > self.seg.base => {
                        // A hole ends here if `s` starts later: skip it,
                        // keeping true offsets.
                        self.next = end.max(s.base);
                        self.entry = 0;
                        self.seg = s;
                        self.chunk = Bytes::new();
                        self.idx.clear();
                        continue;
                    }
                    _ => return Ok(None),
                }
            }
            if let Some(m) = self.open_entry(io)? {
                return Ok(Some(m));
            }
        }
    }

    /// Entry `i` of the segment, from the index block (read ahead from `i`
    /// when it does not hold it, if `io`).
    fn index_entry(&mut self, i: usize, io: bool) -> Result<IndexEntry, Stop> {
        if let Some(e) = i.checked_sub(self.idx_from).and_then(|k| self.idx.get(k)) {
            return Ok(*e);
        }
        if !io {
            return Err(Stop::NeedIo);
        }
        // Published entries and the marker after them: the writer rewrites
        // the marker's slot with an entry of the same offset and position,
        // and nothing past it is read.
        let readable = (self.seg.entries() + 1).min(self.seg.index.capacity());
        let n = INDEX_BLOCK.min(readable.saturating_sub(i)).max(1);
        self.idx = self
            .seg
            .index
            .read(i, n)
            .map_err(io_error(&self.seg.index_path))?;
        self.idx_from = i;
        let first = self.idx.first().copied();
        first.ok_or_else(|| LogError::InvalidEntry("index entry out of range").into())
    }

    /// The span of entry `i`, if it is published. The entry after it (or
    /// the marker) gives its end and count; a full index has no marker, and
    /// then the segment can no longer grow, so its published end is final.
    fn span(&mut self, i: usize, io: bool) -> Result<Option<Span>, Stop> {
        let seg = self.seg.clone();
        if i >= seg.entries() {
            return Ok(None);
        }
        let e = self.index_entry(i, io)?;
        let (end, next_rel) = if i + 1 < seg.index.capacity() {
            let n = self.index_entry(i + 1, io)?;
            (n.pos, u64::from(n.rel))
        } else {
            (seg.data_len(), seg.next_offset() - seg.base + 1)
        };
        let Some(count) = next_rel.checked_sub(u64::from(e.rel)) else {
            return Ok(None);
        };
        Ok(u32::try_from(count).ok().map(|count| Span {
            pos: e.pos,
            end,
            first: seg.base + u64::from(e.rel) - 1,
            count,
        }))
    }

    /// Reads the current entry: returns a plain message, or loads a set's
    /// messages into the cursor (and returns `None`). Moves to the next entry
    /// only on success.
    fn open_entry(&mut self, io: bool) -> Result<Option<Message>, Stop> {
        let span = self.span(self.entry, io)?.ok_or_else(|| {
            self.corrupt(FormatError::Truncated {
                needed: HEADER_BYTES,
                available: 0,
            })
        })?;
        self.next = span.first;
        let (header, payload) = self.read_entry(span, io)?;
        if !header.is_set() {
            if span.count != 1 {
                return Err(self.corrupt(FormatError::PlainCount(span.count)).into());
            }
            let m = Message {
                offset: self.next,
                crc: header.crc,
                payload,
                format: header.format(),
            };
            self.entry += 1;
            self.next += 1;
            return Ok(Some(m));
        }
        let plain = self
            .log
            .codecs()
            .unpack_set(header.compression(), payload, span.count)
            .map_err(|source| self.corrupt(source))?;
        self.entry += 1;
        self.set = Some(SetCursor {
            plain,
            at: 0,
            end: span.first + u64::from(span.count),
        });
        Ok(None)
    }

    fn next_in_set(&mut self) -> Result<Option<Message>, LogError> {
        let Some(set) = &mut self.set else {
            return Ok(None);
        };
        // The index's count is the truth: a set holding fewer or more
        // messages is corrupt, never a shift of the offsets after it.
        if set.at >= set.plain.len() && self.next >= set.end {
            self.set = None;
            return Ok(None);
        }
        if set.at >= set.plain.len() || self.next >= set.end {
            let decoded = count_in(&set.plain);
            let recorded = set.end - self.next + count_in(&set.plain[..set.at]);
            return Err(self.corrupt(FormatError::CountMismatch { recorded, decoded }));
        }
        let rest = &set.plain[set.at..];
        match crate::message::decode(rest) {
            Ok((header, _)) if header.is_set() => {
                Err(self.corrupt(FormatError::NestedSet(header.compression())))
            }
            Ok((header, _)) => {
                let start = set.at + HEADER_BYTES;
                let end = set.at + header.total_len();
                let payload = set.plain.slice(start..end);
                set.at = end;
                let m = Message {
                    offset: self.next,
                    crc: header.crc,
                    payload,
                    format: header.format(),
                };
                self.next += 1;
                Ok(Some(m))
            }
            Err(source) => Err(self.corrupt(source)),
        }
    }

    /// Moves past the next message of the current set without checking its
    /// CRC (its frame, the length, must be whole); `false` at the set's end.
    fn skip_in_set(&mut self) -> Result<bool, LogError> {
        let Some(set) = &mut self.set else {
            return Ok(false);
        };
        if set.at >= set.plain.len() || self.next >= set.end {
            return Ok(false);
        }
        let rest = &set.plain[set.at..];
        let whole = Header::parse(rest)
            .map(|h| h.total_len())
            .filter(|&len| len <= rest.len());
        match whole {
            Some(len) => {
                set.at += len;
                self.next += 1;
                Ok(true)
            }
            None => {
                let available = rest.len();
                Err(self.corrupt(FormatError::Truncated {
                    needed: HEADER_BYTES,
                    available,
                }))
            }
        }
    }

    fn corrupt(&self, source: FormatError) -> LogError {
        LogError::Corrupt {
            offset: self.next,
            source,
        }
    }

    /// The verified message of `span`, as a slice of the chunk: its length
    /// must fill the span exactly and its CRC must match.
    /// Without `io`, a set that needs its codec stops before its CRC is
    /// computed.
    fn read_entry(&mut self, span: Span, io: bool) -> Result<(Header, Bytes), Stop> {
        let space = span.end.saturating_sub(span.pos);
        if space < HEADER_BYTES as u64 || space - HEADER_BYTES as u64 > MAX_PAYLOAD_BYTES as u64 {
            return Err(self
                .corrupt(FormatError::LengthMismatch {
                    expected: space.saturating_sub(HEADER_BYTES as u64),
                    actual: 0,
                })
                .into());
        }
        let len = space as usize;
        self.ensure(span.pos, len, self.seg.data_len(), io)?;
        let at = (span.pos - self.chunk_pos) as usize;
        if self.chunk.len() < at + len {
            return Err(self
                .corrupt(FormatError::Truncated {
                    needed: len,
                    available: self.chunk.len().saturating_sub(at),
                })
                .into());
        }
        let header = Header::parse(&self.chunk[at..]).expect("at least a header's bytes");
        if header.total_len() != len {
            return Err(self
                .corrupt(FormatError::LengthMismatch {
                    expected: (len - HEADER_BYTES) as u64,
                    actual: u64::from(header.length),
                })
                .into());
        }
        if !io && header.is_set() && header.compression() != SET_NONE {
            return Err(Stop::NeedIo);
        }
        let payload = self.chunk.slice(at + HEADER_BYTES..at + len);
        header
            .verify(&payload)
            .map_err(|source| self.corrupt(source))?;
        Ok((header, payload))
    }

    /// Makes the chunk cover `len` bytes from `pos` (or up to `end`),
    /// reading the file only if `io`.
    fn ensure(&mut self, pos: u64, len: usize, end: u64, io: bool) -> Result<(), Stop> {
        let chunk_end = self.chunk_pos + self.chunk.len() as u64;
        if pos >= self.chunk_pos && pos + len as u64 <= chunk_end {
            return Ok(());
        }
        if !io {
            return Err(Stop::NeedIo);
        }
        let size = len
            .max(self.read_ahead)
            .min(end.saturating_sub(pos) as usize);
        let mut buf = vec![0u8; size];
        let n = self.seg.read_at(&mut buf, pos)?;
        buf.truncate(n);
        self.chunk = Bytes::from(buf);
        self.chunk_pos = pos;
        Ok(())
    }
}
