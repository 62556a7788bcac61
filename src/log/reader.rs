//! Sequential reading from any offset, across segments.
//!
//! A reader walks the data files, not the index: it keeps a chunk of the
//! current segment (one positional read of up to [`CHUNK_BYTES`]) and hands
//! out messages as `Bytes` slices of that chunk, so a sequential read costs one
//! syscall per chunk and no copy per message. The index is used once, to find
//! where to start. A message set is decompressed once and its messages handed
//! out one by one with consecutive offsets; starting at an offset embedded in
//! a set skips the messages before it.
//!
//! Every message's CRC is checked before it is returned; a corrupt one is an
//! error, never garbage, and the reader stays on it (it returns the same error
//! again) rather than guessing where the next message starts.

use std::sync::Arc;

use bytes::Bytes;

use super::segment::{SEGMENT_HEADER_BYTES, Segment};
use super::{Log, LogError};
use crate::message::{FormatError, HEADER_BYTES, Header, MAX_PAYLOAD_BYTES};

/// Bytes read from a data file at a time.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// One message read from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its offset.
    pub offset: u64,
    /// Its stored (and verified) CRC-32.
    pub crc: u32,
    /// Its bytes.
    pub payload: Bytes,
}

/// Inner messages of a set not handed out yet.
struct SetCursor {
    plain: Bytes,
    at: usize,
}

/// A sequential reader over a log. See the module docs.
pub struct Reader {
    log: Log,
    seg: Arc<Segment>,
    pos: u64,
    next: u64,
    chunk: Bytes,
    chunk_pos: u64,
    set: Option<SetCursor>,
}

impl Reader {
    pub(crate) fn new(log: Log, offset: u64) -> Result<Reader, LogError> {
        if offset < log.oldest_offset() || offset > log.next_offset() {
            return Err(LogError::OffsetNotFound(offset));
        }
        let seg = log
            .segment_for(offset)
            .ok_or(LogError::OffsetNotFound(offset))?;
        // An offset below the segment's base lies in a gap that recovery left
        // (a damaged segment lost its tail): start at the segment's first
        // message. Otherwise `offset` is the end of the log, unless located.
        let pos = if offset < seg.base {
            SEGMENT_HEADER_BYTES
        } else {
            seg.data_len()
        };
        let mut reader = Reader {
            log,
            pos,
            next: offset.max(seg.base),
            seg,
            chunk: Bytes::new(),
            chunk_pos: 0,
            set: None,
        };
        if let Some((entry, entry_offset)) = reader.seg.locate(offset)? {
            reader.pos = entry.pos;
            reader.next = entry_offset;
            while reader.next < offset {
                if reader.next()?.is_none() {
                    break;
                }
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
        loop {
            if let Some(m) = self.next_in_set()? {
                return Ok(Some(m));
            }
            if self.pos >= self.seg.data_len() {
                // Sealed is set after the segment's last publish, so a length
                // read after seeing it is final.
                if !self.seg.is_sealed() {
                    return Ok(None);
                }
                if self.pos < self.seg.data_len() {
                    continue;
                }
                match self.log.segment_for(self.next) {
                    Some(s) if s.base > self.seg.base => {
                        self.next = self.next.max(s.base);
                        self.pos = SEGMENT_HEADER_BYTES;
                        self.seg = s;
                        self.chunk = Bytes::new();
                        continue;
                    }
                    _ => return Ok(None),
                }
            }
            let (header, payload) = self.read_entry()?;
            if !header.is_set() {
                let m = Message {
                    offset: self.next,
                    crc: header.crc,
                    payload,
                };
                self.pos += header.total_len() as u64;
                self.next += 1;
                return Ok(Some(m));
            }
            let plain = self
                .log
                .codecs()
                .unpack(header.compression(), payload)
                .map_err(|source| self.corrupt(source))?;
            if plain.is_empty() {
                // A set holds at least one message; skipping an empty one
                // would hand the next message out under this offset.
                return Err(self.corrupt(FormatError::Truncated {
                    needed: HEADER_BYTES,
                    available: 0,
                }));
            }
            self.pos += header.total_len() as u64;
            self.set = Some(SetCursor { plain, at: 0 });
        }
    }

    fn next_in_set(&mut self) -> Result<Option<Message>, LogError> {
        let Some(set) = &mut self.set else {
            return Ok(None);
        };
        if set.at >= set.plain.len() {
            self.set = None;
            return Ok(None);
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
                };
                self.next += 1;
                Ok(Some(m))
            }
            Err(source) => Err(self.corrupt(source)),
        }
    }

    fn corrupt(&self, source: FormatError) -> LogError {
        LogError::Corrupt {
            offset: self.next,
            source,
        }
    }

    /// The verified entry at `pos`, as a slice of the chunk.
    fn read_entry(&mut self) -> Result<(Header, Bytes), LogError> {
        let end = self.seg.data_len();
        self.ensure(HEADER_BYTES, end)?;
        let at = (self.pos - self.chunk_pos) as usize;
        let header = Header::parse(&self.chunk[at..]).ok_or_else(|| {
            self.corrupt(FormatError::Truncated {
                needed: HEADER_BYTES,
                available: self.chunk.len() - at,
            })
        })?;
        if header.length as usize > MAX_PAYLOAD_BYTES {
            return Err(self.corrupt(FormatError::TooLarge(header.length as usize)));
        }
        self.ensure(header.total_len(), end)?;
        let at = (self.pos - self.chunk_pos) as usize;
        if self.chunk.len() < at + header.total_len() {
            return Err(self.corrupt(FormatError::Truncated {
                needed: header.total_len(),
                available: self.chunk.len() - at,
            }));
        }
        let payload = self.chunk.slice(at + HEADER_BYTES..at + header.total_len());
        header
            .verify(&payload)
            .map_err(|source| self.corrupt(source))?;
        Ok((header, payload))
    }

    /// Makes the chunk cover `len` bytes from `pos` (or up to `end`).
    fn ensure(&mut self, len: usize, end: u64) -> Result<(), LogError> {
        let chunk_end = self.chunk_pos + self.chunk.len() as u64;
        if self.pos >= self.chunk_pos && self.pos + len as u64 <= chunk_end {
            return Ok(());
        }
        let size = len.max(CHUNK_BYTES).min((end - self.pos) as usize);
        let mut buf = vec![0u8; size];
        let n = self.seg.read_at(&mut buf, self.pos)?;
        buf.truncate(n);
        self.chunk = Bytes::from(buf);
        self.chunk_pos = self.pos;
        Ok(())
    }
}
