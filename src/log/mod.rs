//! The segmented, append-only log of one topic (netlog's BigLog), in netlog's
//! on-disk layout.
//!
//! A log is a directory of segments (`segment.rs`), each a data file plus a
//! memory-mapped index (`index.rs`), named by base offset. Only the last segment
//! (the *active* one) is written; a new one is rolled when asked or when the
//! active index is full, and the oldest is trimmed when retention says so.
//!
//! Writing: one writer at a time, under the writer mutex. `append*` stage
//! encoded messages in a write buffer; [`Log::flush`] writes the buffer with one
//! positional write, publishes the new index entries (see `segment.rs`), fsyncs
//! according to the [`FsyncPolicy`], and wakes every waiting scanner through a
//! `watch` channel that carries the next offset. Nothing is visible to readers
//! before it is flushed, so whatever a reader sees is complete. The buffer is
//! flushed on its own once it passes [`WRITE_BUFFER_BYTES`].
//!
//! Reading takes no lock but a brief one on the segment list: a [`Reader`]
//! holds an `Arc` of its segment and reads below the published end with
//! positional reads, so it keeps working while the writer appends, rolls, or
//! the segment is trimmed under it. [`Scanner`] adds waiting: at the end of the
//! log it sleeps on the watch channel (no polling) until an append or a deadline.
//! A reader reads ahead (a chunk of data, a block of index entries) and can
//! say what it can hand out without I/O ([`Reader::next_buffered`]).
//!
//! The tail cache (`tail.rs`) keeps the messages of the last flushes in
//! memory, bounded per log and per process, so consumers near the end never
//! touch a file ([`Log::read_cached`]). Each flush fills it after the write
//! (and, with `fsync = always`, the fsync) and before scanners are woken.
//!
//! A failed fsync is final: the log refuses writes from then on
//! ([`LogError::Failed`]) until it is opened again, since the kernel may
//! have dropped the pages it could not write and a retry could falsely
//! succeed. With `fsync = always` a flush makes its entries visible only
//! after its fsync, so no reader ever sees what a failed fsync lost.
//!
//! Opening runs recovery (`recovery.rs`), so a torn tail is cut off and the
//! index rebuilt before anything is served.
//!
//! A full disk is an error like any other, never a crash: index entries are
//! written with `pwrite` (see `index.rs`), every `ENOSPC` or `EDQUOT` becomes
//! [`LogError::NoSpace`], logged at most once per [`NO_SPACE_LOG_INTERVAL`]
//! per log with a count of the ones suppressed. A flush that fails publishes
//! nothing: the staged entries are dropped, the data file is cut back to the
//! published end and the index marker restored, so the next flush writes from
//! the published end again and writing resumes by itself once space is free.
//! Opening on a full disk works; a repair that cannot be written for lack of
//! space is held in memory and written before the next append (see
//! [`Index::rewrite`](index::Index::rewrite)), so the log opens for reading.
//!
//! Descriptors and memory: a log pins one descriptor (its active data file);
//! index files and sealed segments' data files open on demand through one
//! process-wide bounded cache (`files.rs`), no file is memory-mapped, and
//! opening reads a sealed segment's index only around its last entry.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use netlog::log::{Log, LogOptions};
//! let log = Log::open(dir.path(), LogOptions::default()).unwrap();
//! let first = log.append(b"hello").unwrap();
//! log.append_set(&[&b"a"[..], b"b"], netlog::message::SET_GZIP).unwrap();
//! log.flush().unwrap();
//! let mut reader = log.reader(first).unwrap();
//! assert_eq!(&reader.next().unwrap().unwrap().payload[..], b"hello");
//! assert_eq!(reader.next().unwrap().unwrap().offset, 1);
//! ```

mod check;
pub(crate) mod files;
mod index;
mod reader;
pub mod recovery;
mod scanner;
mod segment;
mod tail;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;

pub use check::{CheckError, CheckKind};
pub use files::{
    DEFAULT_OPEN_FILES, cached_open_files, open_file_limit, raise_open_file_limit,
    set_open_file_limit,
};
pub use index::{DEFAULT_INDEX_ENTRIES, INDEX_ENTRY_BYTES};
pub use reader::Reader;
pub use scanner::Scanner;
pub use segment::SEGMENT_HEADER_BYTES;
pub use tail::{
    MAX_CACHED_FLUSH, MESSAGE_OVERHEAD, TAIL_CACHE_BYTES, TAIL_CACHE_TOTAL_BYTES,
    set_tail_cache_limits, tail_cache_bytes,
};

use crate::lock::Recover;
use crate::message::{self, Codecs, FormatError, HEADER_BYTES, Header, Message};
use crate::rate_limit::LineLimit;
use index::IndexEntry;
use segment::{Segment, unix_now};
use tail::{Block, Fill, TailCache};

/// Bytes staged in the write buffer before it is flushed on its own.
pub const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Largest entry (one message, or one message set, header included) any
/// append accepts: 256 MiB, a quarter of what the reader and recovery accept
/// for one message ([`MAX_PAYLOAD_BYTES`](crate::message::MAX_PAYLOAD_BYTES),
/// 1 GiB), so every acknowledged entry can be read back. Group commit splits
/// its groups to stay under it.
pub const MAX_ENTRY_BYTES: usize = 256 << 20;

/// Shortest time between two log lines about a full disk, per log.
pub const NO_SPACE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Errors of the log layer.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The offset is before the oldest or after the next offset.
    #[error("offset {0} not found")]
    OffsetNotFound(u64),
    /// A stored message failed verification when read.
    #[error("corrupt data at offset {offset}: {source}")]
    Corrupt {
        offset: u64,
        #[source]
        source: FormatError,
    },
    /// Data was written with a codec that is not configured now.
    #[error("{}: data uses compression value {value}, which no configured codec handles", path.display())]
    UnknownCodec { value: u8, path: PathBuf },
    /// While opening, the codec failed on a message set that passed its CRC
    /// (so it was written whole) and had to be decoded to count its messages.
    /// Nothing is cut: a fixed codec reads it again.
    #[error("{}: the message set at byte {pos} is whole but its codec failed: {source}", path.display())]
    UndecodableSet {
        path: PathBuf,
        pos: u64,
        #[source]
        source: FormatError,
    },
    /// An entry handed to `append_encoded` is not one well-formed message.
    #[error("invalid entry: {0}")]
    InvalidEntry(&'static str),
    /// The disk (or the quota) is full: nothing of the failed write is
    /// visible, and writing resumes once space is free.
    #[error("no space left on device writing {}: {source}", path.display())]
    NoSpace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An entry over [`MAX_ENTRY_BYTES`] was refused.
    #[error("entry of {len} bytes is over the limit of {limit} bytes")]
    EntryTooLarge { len: usize, limit: usize },
    /// An fsync failed earlier: what it was to make durable may be lost
    /// (the kernel can drop the pages it could not write back, so a retry
    /// could report a success that is not true). The log refuses every write
    /// until it is opened again, which re-verifies its tail.
    #[error("writes refused since an fsync failed ({0}); restart the broker to re-verify the log")]
    Failed(String),
}

impl LogError {
    /// Whether this is [`LogError::NoSpace`].
    pub fn is_no_space(&self) -> bool {
        matches!(self, LogError::NoSpace { .. })
    }

    /// A copy of a [`LogError::NoSpace`] (its cause rebuilt from its kind and
    /// text), for answering every publisher of a failed group; `None` for any
    /// other error.
    pub fn no_space_copy(&self) -> Option<LogError> {
        match self {
            LogError::NoSpace { path, source } => Some(LogError::NoSpace {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            }),
            _ => None,
        }
    }
}

/// `ENOSPC` or `EDQUOT`.
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Wraps an I/O error on `path`: [`LogError::NoSpace`] for a full disk,
/// [`LogError::Io`] otherwise.
pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| {
        let path = path.to_path_buf();
        if is_no_space(&source) {
            LogError::NoSpace { path, source }
        } else {
            LogError::Io { path, source }
        }
    }
}

/// When appended data is fsynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every flush, before it returns: acknowledged means on disk.
    Always,
    /// Every this long, by whoever owns the log calling
    /// [`Log::sync_if_due`] (the broker runs a task for it), off the write
    /// path. The default, with one second: a power cut loses at most about
    /// that.
    Interval(Duration),
    /// Never explicitly; the OS writes back when it likes. A process crash
    /// still loses nothing flushed; a power cut may.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_secs(1))
    }
}

/// How a log is opened.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Entries per index file, the marker included (netlog: 102,400).
    pub index_entries: u32,
    /// When to fsync.
    pub fsync: FsyncPolicy,
    /// Codecs for reading and writing message sets.
    pub codecs: Codecs,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            index_entries: DEFAULT_INDEX_ENTRIES,
            fsync: FsyncPolicy::default(),
            codecs: Codecs::default(),
        }
    }
}

/// Facts about one segment, for topic info and retention.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// Offset of its first message.
    pub first_offset: u64,
    /// Offset one past its last message.
    pub next_offset: u64,
    /// Data plus index bytes.
    pub disk_size: u64,
    /// Data file bytes, header included.
    pub data_size: u64,
    /// Creation time (unix seconds, from the data header).
    pub created: u32,
    /// Modification time of the data file.
    pub mod_time: SystemTime,
}

struct Writer {
    active: Arc<Segment>,
    buf: Vec<u8>,
    buf_start: u64,
    pending: Vec<IndexEntry>,
    /// Beside each pending entry: the plain messages of a compressed set, so
    /// the tail cache need not decompress it.
    plains: Vec<Option<Bytes>>,
    next_rel: u32,
    /// Counts flushes.
    generation: u64,
    /// The generation known to be on disk; below `generation`, the log has
    /// unsynced writes.
    synced: u64,
}

impl Writer {
    /// Drops the entries staged since the last flush: cuts whatever part of
    /// them reached the data file and puts back the marker a partly written
    /// index run may have replaced, so the next flush writes from the
    /// published end again. Nothing staged was visible, so nothing visible
    /// changes.
    fn drop_staged(&mut self) {
        let _ = self.active.truncate(self.buf_start);
        let _ = self.active.rewrite_marker();
        self.buf.clear();
        self.pending.clear();
        self.plains.clear();
        self.next_rel = (self.active.next_offset() - self.active.base + 1) as u32;
    }
}

pub(crate) struct Inner {
    dir: PathBuf,
    opts: LogOptions,
    segments: RwLock<Vec<Arc<Segment>>>,
    writer: Mutex<Writer>,
    notify: watch::Sender<u64>,
    no_space: LineLimit<()>,
    /// Segments whose index was rebuilt from their data, when the log opened
    /// or later (see [`Log::rebuild_sealed`]): (base offset, entries
    /// rebuilt), for `check` to report.
    rebuilt: Mutex<Vec<(u64, usize)>>,
    /// The last messages written (see `tail.rs`).
    tail: TailCache,
    /// Set by the first failed fsync, for good (see [`LogError::Failed`]).
    failed: std::sync::OnceLock<String>,
    /// Tests: the next fsyncs fail with EIO.
    #[cfg(test)]
    fail_fsync: std::sync::atomic::AtomicBool,
}

/// A topic's log. Cheap to clone; every clone is the same log.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

impl Log {
    /// Opens the log in `dir`, creating it if needed, and recovers every
    /// segment (see `recovery.rs`).
    pub fn open(dir: &Path, opts: LogOptions) -> Result<Log, LogError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let bases = list_segments(dir)?;
        let mut segments = Vec::with_capacity(bases.len().max(1));
        let mut rebuilt = Vec::new();
        for (seg, reserved_next, index_rebuilt) in open_segments(dir, &bases, &opts)? {
            if index_rebuilt > 0 {
                rebuilt.push((seg.base, index_rebuilt));
            }
            segments.push(seg);
            if let Some(reserved) = reserved_next {
                // Offsets the index vouched for were lost with their data:
                // continue after them, never reuse them (see recovery.rs).
                segments.last().expect("just pushed").seal();
                segments.push(Arc::new(Segment::create(
                    dir,
                    reserved,
                    opts.index_entries,
                )?));
            }
        }
        if segments.is_empty() {
            segments.push(Arc::new(Segment::create(dir, 0, opts.index_entries)?));
        }
        let active = segments.last().expect("at least one segment").clone();
        let writer = Writer {
            buf_start: active.data_len(),
            next_rel: (active.next_offset() - active.base + 1) as u32,
            active,
            // Grown by what is written: 10,000 idle topics must not hold
            // 64 KiB each.
            buf: Vec::new(),
            pending: Vec::new(),
            plains: Vec::new(),
            generation: 0,
            synced: 0,
        };
        let next = writer.active.next_offset();
        Ok(Log {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                opts,
                segments: RwLock::new(segments),
                writer: Mutex::new(writer),
                notify: watch::Sender::new(next),
                no_space: LineLimit::new(NO_SPACE_LOG_INTERVAL),
                rebuilt: Mutex::new(rebuilt),
                tail: TailCache::default(),
                failed: std::sync::OnceLock::new(),
                #[cfg(test)]
                fail_fsync: Default::default(),
            }),
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether a write may wait for the disk: with `fsync = always`, or
    /// while the writer lock is held (by a roll, say). Writers on an async
    /// worker write only when this says no.
    pub fn write_may_block(&self) -> bool {
        self.inner.opts.fsync == FsyncPolicy::Always || self.inner.writer.try_lock().is_err()
    }

    /// The codecs this log reads and writes with.
    pub fn codecs(&self) -> &Codecs {
        &self.inner.opts.codecs
    }

    /// Stages one plain message; returns its offset. Visible after `flush`.
    pub fn append(&self, payload: &[u8]) -> Result<u64, LogError> {
        // Encoded straight into the write buffer: no allocation per message.
        self.stage(HEADER_BYTES + payload.len(), 1, None, |buf| {
            message::encode(buf, message::PLAIN, payload)
        })
    }

    /// Stages `msgs` as one message set with `compression` (1 none, 2 gzip,
    /// 3 snappy, 4..=15 a bound codec); returns the first offset. Compression
    /// happens before the writer lock is taken. A failing codec stores the set
    /// uncompressed and logs why.
    pub fn append_set<M: AsRef<[u8]>>(&self, msgs: &[M], compression: u8) -> Result<u64, LogError> {
        let mut plain = Vec::new();
        for m in msgs {
            message::encode(&mut plain, message::PLAIN, m.as_ref());
        }
        if msgs.is_empty() {
            return Ok(self.next_offset());
        }
        let (entry, err) = self.inner.opts.codecs.pack_set(&plain, compression);
        if let Some(e) = err {
            tracing::warn!(error = %e, "codec failed, message set stored uncompressed");
        }
        self.append_packed(&entry, msgs.len() as u32, Bytes::from(plain))
    }

    /// Stages a message set packed by [`Codecs::pack_set`] from `plain`
    /// (its `count` plain messages back to back), which the tail cache
    /// keeps instead of decompressing the set.
    pub fn append_packed(&self, entry: &[u8], count: u32, plain: Bytes) -> Result<u64, LogError> {
        self.check_entry(entry, count)?;
        self.stage(entry.len(), count, Some(plain), |buf| {
            buf.extend_from_slice(entry)
        })
    }

    /// Stages an uncompressed message set made of `parts`: plain messages
    /// back to back, split anywhere (`count` of them in all). The set's header
    /// and the parts go straight into the write buffer, with the CRC computed
    /// over the parts: no intermediate copy of the set.
    pub fn append_plain_set(&self, parts: &[&[u8]], count: u32) -> Result<u64, LogError> {
        if count == 0 {
            return Err(LogError::InvalidEntry("wrong message count"));
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let length = u32::try_from(len).map_err(|_| LogError::InvalidEntry("set over 4 GiB"))?;
        let mut crc = crc32fast::Hasher::new();
        for p in parts {
            crc.update(p);
        }
        let crc = crc.finalize();
        self.stage(HEADER_BYTES + len, count, None, |buf| {
            buf.push((message::FORMAT_VERSION << 4) | message::SET_NONE);
            buf.extend_from_slice(&crc.to_be_bytes());
            buf.extend_from_slice(&length.to_be_bytes());
            for p in parts {
                buf.extend_from_slice(p);
            }
        })
    }

    /// Stages one already-encoded entry (a plain message, or a set holding
    /// `count` messages); returns its first offset.
    pub fn append_encoded(&self, entry: &[u8], count: u32) -> Result<u64, LogError> {
        self.check_entry(entry, count)?;
        self.stage(entry.len(), count, None, |buf| buf.extend_from_slice(entry))
    }

    fn check_entry(&self, entry: &[u8], count: u32) -> Result<(), LogError> {
        let header = Header::parse(entry).ok_or(LogError::InvalidEntry("shorter than a header"))?;
        if header.total_len() != entry.len() {
            return Err(LogError::InvalidEntry(
                "length field does not match the entry",
            ));
        }
        if count == 0 || (!header.is_set() && count != 1) {
            return Err(LogError::InvalidEntry("wrong message count"));
        }
        Ok(())
    }

    /// Stages one entry of `len` bytes holding `count` messages, written into
    /// the buffer by `write`; rolls or flushes first when needed. An entry
    /// over [`MAX_ENTRY_BYTES`] is refused. When a flush made here fails,
    /// everything staged since the last flush is dropped with it.
    fn stage(
        &self,
        len: usize,
        count: u32,
        plain: Option<Bytes>,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<u64, LogError> {
        if let Some(why) = self.inner.failed.get() {
            return Err(LogError::Failed(why.clone()));
        }
        if len > MAX_ENTRY_BYTES {
            return Err(LogError::EntryTooLarge {
                len,
                limit: MAX_ENTRY_BYTES,
            });
        }
        let mut w = self.inner.writer.lock().recover();
        let room = w.active.index.capacity() - 1;
        let full = w.active.entries() + w.pending.len() >= room;
        if full || w.next_rel.checked_add(count).is_none() {
            self.roll_locked(&mut w).map_err(|e| self.noted(e))?;
        }
        if w.buf.len() + len > WRITE_BUFFER_BYTES {
            self.flush_locked(&mut w)?;
        }
        let pos = w.buf_start + w.buf.len() as u64;
        let rel = w.next_rel;
        w.pending.push(IndexEntry {
            rel,
            ts: unix_now(),
            pos,
        });
        w.plains.push(plain);
        write(&mut w.buf);
        w.next_rel = rel + count;
        Ok(w.active.base + u64::from(rel) - 1)
    }

    /// Writes staged entries, publishes them to readers, fsyncs per policy and
    /// wakes waiting scanners.
    pub fn flush(&self) -> Result<(), LogError> {
        let mut w = self.inner.writer.lock().recover();
        self.flush_locked(&mut w)
    }

    fn flush_locked(&self, w: &mut Writer) -> Result<(), LogError> {
        if let Some(why) = self.inner.failed.get() {
            return Err(LogError::Failed(why.clone()));
        }
        if w.pending.is_empty() {
            return Ok(());
        }
        let start = w.buf_start;
        let end = start + w.buf.len() as u64;
        let entries = w.active.entries() + w.pending.len();
        // Data, then index entries and marker; then, with `fsync = always`,
        // the fsync; only then are the entries made visible, so no reader
        // ever sees an entry that a failed fsync may have lost.
        let written = w
            .active
            .write_at(&w.buf, start)
            .and_then(|()| w.active.write_entries(&w.pending, w.next_rel, end))
            .and_then(|()| match self.inner.opts.fsync {
                FsyncPolicy::Always => self.fsync(&w.active),
                _ => Ok(()),
            });
        if let Err(e) = written {
            w.drop_staged();
            return Err(self.noted(e));
        }
        w.active.restore(entries, w.next_rel, end);
        let fill = self.tail_fill(w);
        w.buf.clear();
        // One huge entry (up to MAX_ENTRY_BYTES) must not leave its buffer
        // held by the topic for good.
        if w.buf.capacity() > 2 * WRITE_BUFFER_BYTES {
            w.buf.shrink_to(WRITE_BUFFER_BYTES);
        }
        w.pending.clear();
        w.plains.clear();
        w.buf_start = end;
        w.generation += 1;
        if self.inner.opts.fsync == FsyncPolicy::Always {
            w.synced = w.generation;
        }
        // The interval policy is served by `sync_if_due`, which fsyncs
        // outside the writer lock so publishers never wait for the disk.
        let next = w.active.next_offset();
        self.inner.tail.extend(fill, next);
        self.inner.notify.send_replace(next);
        Ok(())
    }

    /// The messages of the flush staged in `w`, for the tail cache: slices
    /// of one copy of the write buffer (or of a compressed set's plain
    /// messages). `None` when the flush is over the cache's bound or an
    /// entry does not decode to the count the index records (then the cache
    /// restarts after it).
    fn tail_fill(&self, w: &Writer) -> Option<Fill> {
        if !tail::cacheable(w.buf.len()) {
            return None;
        }
        let data = Bytes::copy_from_slice(&w.buf);
        let first = w.active.base + u64::from(w.pending[0].rel) - 1;
        let mut blocks = vec![Block::new(data.clone())];
        for (i, e) in w.pending.iter().enumerate() {
            let at = (e.pos - w.buf_start) as usize;
            let (until, next_rel) = match w.pending.get(i + 1) {
                Some(n) => ((n.pos - w.buf_start) as usize, n.rel),
                None => (data.len(), w.next_rel),
            };
            let header = Header::parse(data.get(at..until)?)?;
            let count = u64::from(next_rel.checked_sub(e.rel)?);
            if !header.is_set() {
                let len = until.checked_sub(at + HEADER_BYTES)?;
                blocks
                    .last_mut()?
                    .push(at + HEADER_BYTES, len, header.crc, header.format())?;
                if count != 1 {
                    return None;
                }
                continue;
            }
            // A set: its plain messages lie in the buffer (uncompressed) or
            // in the plain bytes the writer handed over (compressed).
            let (plain_at, plain_end) = match (&w.plains[i], header.compression()) {
                (_, message::SET_NONE) => (at + HEADER_BYTES, until),
                (Some(plain), _) => {
                    blocks.push(Block::new(plain.clone()));
                    (0, plain.len())
                }
                (None, _) => return None,
            };
            let source = if header.compression() == message::SET_NONE {
                &data
            } else {
                w.plains[i].as_ref()?
            };
            let block = blocks.last_mut()?;
            let mut pos = plain_at;
            let mut n = 0;
            while pos < plain_end {
                let h = Header::parse(&source[pos..plain_end])?;
                let stop = pos + h.total_len();
                if h.is_set() || stop > plain_end {
                    return None;
                }
                block.push(pos + HEADER_BYTES, h.length as usize, h.crc, h.format())?;
                pos = stop;
                n += 1;
            }
            if n != count {
                return None;
            }
            if header.compression() != message::SET_NONE {
                // What follows comes from the buffer again.
                blocks.push(Block::new(data.clone()));
            }
        }
        Some(Fill { first, blocks })
    }

    /// Up to `max` messages from `offset` (stopping after the one that
    /// reaches `max_bytes` of payload) if the tail cache holds `offset`:
    /// read without touching a file, so callers on an async worker may call
    /// it. `None` when `offset` is not cached (or no longer stored).
    pub fn read_cached(&self, offset: u64, max: usize, max_bytes: usize) -> Option<Vec<Message>> {
        if offset < self.oldest_offset() {
            return None;
        }
        self.inner.tail.read(offset, max, max_bytes)
    }

    /// fsyncs `segment`; a failure fails the log for good (see
    /// [`LogError::Failed`]).
    fn fsync(&self, segment: &Segment) -> Result<(), LogError> {
        #[cfg(test)]
        let injected = if self
            .inner
            .fail_fsync
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            Err(io_error(&segment.data_path)(
                std::io::Error::from_raw_os_error(libc::EIO),
            ))
        } else {
            Ok(())
        };
        #[cfg(not(test))]
        let injected = Ok(());
        injected.and_then(|()| segment.sync()).inspect_err(|e| {
            let why = e.to_string();
            if self.inner.failed.set(why).is_ok() {
                tracing::error!(dir = %self.inner.dir.display(), error = %e, "fsync failed: the log refuses writes until it is opened again");
            }
        })
    }

    /// Drops whatever was staged since the last flush, as a failed flush
    /// does: for a writer whose work was cut short (a panic) between
    /// staging and flushing. Nothing staged was visible, so nothing visible
    /// changes; the next append takes the next unpublished offset.
    pub(crate) fn discard_staged(&self) {
        self.inner.writer.lock().recover().drop_staged();
    }

    /// Logs a full disk, at most once per [`NO_SPACE_LOG_INTERVAL`], with the
    /// count of the failures not logged since; returns the error.
    fn noted(&self, e: LogError) -> LogError {
        if !e.is_no_space() {
            return e;
        }
        let Some(suppressed) = self.inner.no_space.allow(()) else {
            return e;
        };
        tracing::error!(
            dir = %self.inner.dir.display(),
            error = %e,
            suppressed,
            "disk full: write refused (reads go on; writes resume once space is free)"
        );
        e
    }

    fn sync_locked(&self, w: &mut Writer) -> Result<(), LogError> {
        if let Some(why) = self.inner.failed.get() {
            return Err(LogError::Failed(why.clone()));
        }
        self.fsync(&w.active)?;
        w.synced = w.generation;
        Ok(())
    }

    /// Flushes and fsyncs the active segment, whatever the policy.
    pub fn sync(&self) -> Result<(), LogError> {
        let mut w = self.inner.writer.lock().recover();
        self.flush_locked(&mut w)?;
        self.sync_locked(&mut w)
    }

    /// Under the interval policy, fsyncs what was flushed since the last
    /// sync. The owner calls it once per interval (the broker has a task for
    /// it). The fsync runs outside the writer lock: appends go on meanwhile,
    /// and what they add stays marked unsynced for the next call.
    pub fn sync_if_due(&self) -> Result<(), LogError> {
        if !matches!(self.inner.opts.fsync, FsyncPolicy::Interval(_)) {
            return Ok(());
        }
        let (segment, generation) = {
            let w = self.inner.writer.lock().recover();
            if w.synced == w.generation {
                return Ok(());
            }
            (w.active.clone(), w.generation)
        };
        self.fsync(&segment)?;
        let mut w = self.inner.writer.lock().recover();
        // Everything up to `generation` was in `segment` or in segments
        // fsynced when they rolled; later writes stay unsynced.
        w.synced = w.synced.max(generation);
        Ok(())
    }

    /// Seals the active segment and starts a new one at the next offset; an
    /// empty active segment stays as it is.
    pub fn roll(&self) -> Result<(), LogError> {
        let mut w = self.inner.writer.lock().recover();
        self.roll_locked(&mut w).map_err(|e| self.noted(e))
    }

    fn roll_locked(&self, w: &mut Writer) -> Result<(), LogError> {
        self.flush_locked(w)?;
        if w.active.entries() == 0 {
            // An empty segment has nothing to seal, and a new one would have
            // the same base offset, hence the same files.
            return Ok(());
        }
        self.sync_locked(w)?;
        let next = w.active.next_offset();
        let seg = Arc::new(Segment::create(
            &self.inner.dir,
            next,
            self.inner.opts.index_entries,
        )?);
        // List the new segment before sealing the old one: a sealed segment
        // without a successor made `reader(next_offset)` fail meanwhile.
        self.inner.segments.write().recover().push(seg.clone());
        w.active.seal();
        w.buf_start = seg.data_len();
        w.next_rel = 1;
        w.active = seg;
        tracing::debug!(dir = %self.inner.dir.display(), base = next, "rolled segment");
        Ok(())
    }

    /// Deletes the oldest segment unless it is the active one; returns its base.
    pub fn trim_oldest(&self) -> Result<Option<u64>, LogError> {
        let seg = {
            let mut segs = self.inner.segments.write().recover();
            if segs.len() <= 1 {
                return Ok(None);
            }
            segs.remove(0)
        };
        seg.remove_files()?;
        Ok(Some(seg.base))
    }

    pub(crate) fn segment_list(&self) -> Vec<Arc<Segment>> {
        self.inner.segments.read().recover().clone()
    }

    /// The segment holding `offset`, or the first one after it.
    pub(crate) fn segment_for(&self, offset: u64) -> Option<Arc<Segment>> {
        let segs = self.inner.segments.read().recover();
        let i = segs.partition_point(|s| s.base <= offset);
        match i.checked_sub(1).map(|j| &segs[j]) {
            Some(s) if offset < s.next_offset() || !s.is_sealed() => Some(s.clone()),
            _ => segs.get(i).cloned(),
        }
    }

    /// Offset of the oldest message still stored.
    pub fn oldest_offset(&self) -> u64 {
        self.inner
            .segments
            .read()
            .recover()
            .first()
            .map_or(0, |s| s.base)
    }

    /// Offset the next message will get (one past the latest readable one).
    pub fn next_offset(&self) -> u64 {
        *self.inner.notify.borrow()
    }

    /// The latest readable offset, -1 in an empty log (netlog's convention).
    pub fn latest_offset(&self) -> i64 {
        self.next_offset() as i64 - 1
    }

    /// The first offset written at or after `t`; the next offset if none was.
    pub fn offset_at(&self, t: SystemTime) -> u64 {
        let ts = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        for seg in self.segment_list() {
            let found = seg.last_write_ts().and_then(|last| match last {
                Some(last) if last >= ts => seg.first_at_or_after(ts),
                _ => Ok(None),
            });
            match found {
                Ok(Some(o)) => return o,
                Ok(None) => {}
                // An unreadable index (out of descriptors, say): the segment
                // is skipped rather than the answer guessed from it.
                Err(e) => tracing::warn!(error = %e, base = seg.base, "index unreadable"),
            }
        }
        self.next_offset()
    }

    /// When the message at `offset` was written, to the second (from the
    /// index entry holding it); `None` when no written entry holds it (gone,
    /// not yet written, or still in the writer's staged batch). Reads the
    /// index, which may touch the disk.
    pub fn write_time(&self, offset: u64) -> Result<Option<SystemTime>, LogError> {
        let Some(seg) = self.segment_for(offset) else {
            return Ok(None);
        };
        Ok(seg
            .locate(offset)?
            .map(|(e, _)| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(e.ts))))
    }

    /// Facts about every segment, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segment_list()
            .iter()
            .map(|s| SegmentInfo {
                first_offset: s.base,
                next_offset: s.next_offset(),
                disk_size: s.disk_size(),
                data_size: s.data_len(),
                created: s.created,
                mod_time: s.mod_time(),
            })
            .collect()
    }

    /// `offset` if a message is stored there (or it is the next offset);
    /// otherwise, for an offset in a hole, the first offset stored after it.
    /// Offsets below the oldest come back as they are.
    pub fn existing_offset(&self, offset: u64) -> u64 {
        match self.segment_for(offset) {
            Some(s) if s.base > offset && offset >= self.oldest_offset() => s.base,
            _ => offset,
        }
    }

    /// A reader positioned at `offset`, which must be between the oldest and
    /// the next offset (inclusive) and not in a hole (see `reader.rs`).
    pub fn reader(&self, offset: u64) -> Result<Reader, LogError> {
        Reader::new(self.clone(), offset)
    }

    /// [`Log::reader`] for a short run: it reads at least `read_ahead`
    /// bytes of the data file at a time instead of a whole chunk.
    pub fn reader_for_run(&self, offset: u64, read_ahead: usize) -> Result<Reader, LogError> {
        Reader::with_read_ahead(self.clone(), offset, read_ahead)
    }

    /// A scanner (a reader that can wait for appends) at `offset`.
    pub fn scanner(&self, offset: u64) -> Result<Scanner, LogError> {
        Ok(Scanner::new(self.reader(offset)?, self.subscribe()))
    }

    /// A receiver that changes whenever new messages become readable.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.notify.subscribe()
    }

    /// Verifies every message from `from` on; see [`check`](check) for the
    /// kinds of problems reported.
    pub fn check(&self, from: u64) -> Result<Vec<CheckError>, LogError> {
        check::check(self, from)
    }

    /// Segments whose index was rebuilt from their data: (base offset,
    /// entries rebuilt).
    pub(crate) fn rebuilt_indexes(&self) -> Vec<(u64, usize)> {
        self.inner.rebuilt.lock().recover().clone()
    }

    /// Runs recovery's full walk on the sealed segment `seg` (its sample
    /// passed at open, but `check` found it disagreeing with its data) and,
    /// when that rebuilt its index or repaired it otherwise, puts the
    /// reopened segment in its place: readers already holding the old one
    /// finish on it. Returns the reopened segment when its index was
    /// rebuilt from the data; `None` when the index agreed with the data
    /// (the damage is in the data) or `seg` is not a sealed segment of
    /// this log any more.
    pub(crate) fn rebuild_sealed(
        &self,
        seg: &Arc<Segment>,
    ) -> Result<Option<Arc<Segment>>, LogError> {
        let list = self.segment_list();
        let Some(i) = list.iter().position(|s| Arc::ptr_eq(s, seg)) else {
            return Ok(None);
        };
        let Some(next) = list.get(i + 1) else {
            return Ok(None);
        };
        let opts = &self.inner.opts;
        let (fresh, repair) = recovery::open_segment_with(
            &self.inner.dir,
            seg.base,
            opts.index_entries,
            &opts.codecs,
            Some(next.base),
            true,
        )?;
        if !repair.changed() && repair.index_rebuilt == 0 {
            return Ok(None);
        }
        fresh.seal();
        let fresh = Arc::new(fresh);
        {
            let mut segments = self.inner.segments.write().recover();
            match segments.iter_mut().find(|s| Arc::ptr_eq(s, seg)) {
                Some(slot) => *slot = fresh.clone(),
                // Trimmed meanwhile.
                None => return Ok(None),
            }
        }
        let dir = self.inner.dir.display();
        if repair.index_rebuilt == 0 {
            tracing::warn!(%dir, base = seg.base, ?repair, "repaired segment on check");
            return Ok(None);
        }
        tracing::warn!(
            %dir,
            base = seg.base,
            entries = repair.index_rebuilt,
            ?repair,
            "index disagreed with the data: rebuilt from the data"
        );
        self.inner
            .rebuilt
            .lock()
            .recover()
            .push((seg.base, repair.index_rebuilt));
        Ok(Some(fresh))
    }

    /// Removes the log's directory. Readers already open keep working until
    /// dropped; the log must not be written again.
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.inner.dir.clone();
        std::fs::remove_dir_all(&dir).map_err(io_error(&dir))
    }
}

/// Segments opened at a time while a log opens: opening is mostly waiting
/// for a few small reads per segment, which a disk serves in parallel.
const OPEN_THREADS: usize = 8;

/// An opened segment; when recovery found offsets lost with their data, the
/// offset the log must continue at (`Repair::reserved_next`); and the index
/// entries rebuilt from the data (`Repair::index_rebuilt`).
type OpenedSegment = (Arc<Segment>, Option<u64>, usize);

/// Recovers the segments at `bases` (sorted), sealing all but the last.
/// Large logs open on [`OPEN_THREADS`] threads.
fn open_segments(
    dir: &Path,
    bases: &[u64],
    opts: &LogOptions,
) -> Result<Vec<OpenedSegment>, LogError> {
    let open = |i: usize| -> Result<OpenedSegment, LogError> {
        let base = bases[i];
        let next_base = bases.get(i + 1).copied();
        let (seg, repair) =
            recovery::open_segment(dir, base, opts.index_entries, &opts.codecs, next_base)?;
        // One line per segment.
        if repair.index_rebuilt > 0 {
            tracing::warn!(
                dir = %dir.display(),
                base,
                entries = repair.index_rebuilt,
                ?repair,
                "index disagreed with the data: rebuilt from the data"
            );
        } else if repair.changed() || repair.damaged_entries > 0 {
            tracing::warn!(dir = %dir.display(), base, ?repair, "repaired segment on open");
        }
        if next_base.is_some() {
            seg.seal();
        }
        Ok((Arc::new(seg), repair.reserved_next, repair.index_rebuilt))
    };
    let threads = OPEN_THREADS.min(bases.len() / 64 + 1);
    if threads == 1 {
        return (0..bases.len()).map(open).collect();
    }
    let mut opened: Vec<Option<Result<OpenedSegment, LogError>>> =
        (0..bases.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..bases.len())
                        .step_by(threads)
                        .map(|i| (i, open(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for w in workers {
            for (i, r) in w.join().expect("segment open thread panicked") {
                opened[i] = Some(r);
            }
        }
    });
    opened
        .into_iter()
        .map(|r| r.expect("every segment opened"))
        .collect()
}

/// Base offsets of the segments in `dir`, sorted. Index files without a data
/// file are leftovers of an interrupted roll or trim and are removed.
fn list_segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut data = Vec::new();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<u64>() else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        match ext {
            "data" => data.push(base),
            "index" => indexes.push(base),
            // An index rebuild interrupted before its rename.
            tmp if tmp.starts_with("tmp.") => {
                let path = entry.path();
                tracing::warn!(path = %path.display(), "removing an interrupted index rebuild");
                std::fs::remove_file(&path).map_err(io_error(&path))?;
            }
            _ => {}
        }
    }
    data.sort_unstable();
    for base in indexes {
        if data.binary_search(&base).is_err() {
            let path = dir.join(segment::file_name(base, "index"));
            tracing::warn!(path = %path.display(), "removing index without a data file");
            std::fs::remove_file(&path).map_err(io_error(&path))?;
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(dir: &Path) -> Log {
        let opts = LogOptions {
            index_entries: 4,
            fsync: FsyncPolicy::Never,
            ..LogOptions::default()
        };
        Log::open(dir, opts).unwrap()
    }

    /// ENOSPC and EDQUOT become `NoSpace`; other I/O errors stay `Io`.
    #[test]
    fn full_disk_errors_are_typed() {
        let p = Path::new("/x");
        for code in [libc::ENOSPC, libc::EDQUOT] {
            let e = io_error(p)(std::io::Error::from_raw_os_error(code));
            assert!(e.is_no_space(), "{e:?}");
            let copy = e.no_space_copy().expect("a copy");
            assert!(copy.to_string().starts_with("no space left on device"));
        }
        let e = io_error(p)(std::io::Error::from_raw_os_error(libc::EIO));
        assert!(matches!(e, LogError::Io { .. }));
        assert!(e.no_space_copy().is_none());
    }

    /// An entry over `MAX_ENTRY_BYTES` is refused before anything is staged,
    /// and the log goes on as before.
    #[test]
    fn refuses_entries_over_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let log = small(dir.path());
        let mib = vec![7u8; 1 << 20];
        let parts: Vec<&[u8]> = vec![&mib[..]; MAX_ENTRY_BYTES / mib.len() + 1];
        let err = log.append_plain_set(&parts, 1).unwrap_err();
        assert!(matches!(err, LogError::EntryTooLarge { limit, .. } if limit == MAX_ENTRY_BYTES));
        assert_eq!(log.append(b"after").unwrap(), 0);
        log.flush().unwrap();
        assert_eq!(
            &log.reader(0).unwrap().next().unwrap().unwrap().payload[..],
            b"after"
        );
    }

    /// Sealed segments close their descriptors; only the active one keeps
    /// its data file open, index files are never pinned, and sealed segments
    /// still read through the cache.
    #[test]
    fn only_the_active_segment_pins_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let log = small(dir.path());
        for i in 0..10u8 {
            log.append(&[i]).unwrap();
            log.flush().unwrap();
        }
        let segs = log.segment_list();
        assert!(segs.len() >= 3);
        let (active, sealed) = segs.split_last().unwrap();
        assert!(active.data_pinned() && !active.index_pinned());
        for s in sealed {
            assert!(!s.index_pinned() && !s.data_pinned());
        }
        drop(log);
        let log = small(dir.path());
        let segs = log.segment_list();
        let (active, sealed) = segs.split_last().unwrap();
        assert!(active.data_pinned() && !active.index_pinned());
        assert!(sealed.iter().all(|s| !s.index_pinned() && !s.data_pinned()));
        let mut r = log.reader(0).unwrap();
        for i in 0..10u8 {
            let m = r.next().unwrap().unwrap();
            assert_eq!((m.offset, &m.payload[..]), (u64::from(i), &[i][..]));
        }
    }

    /// With a cache of one descriptor, logs that roll, write and read in
    /// turn keep evicting each other's files, and every message still reads
    /// back at its offset (files reopen, index files for writing).
    #[test]
    fn a_one_descriptor_cache_loses_nothing() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let logs: Vec<Log> = dirs.iter().map(|d| small(d.path())).collect();
        let old = open_file_limit();
        set_open_file_limit(1);
        for i in 0..20u8 {
            for log in &logs {
                log.append(&[i]).unwrap();
                log.flush().unwrap();
                log.sync().unwrap();
            }
        }
        for log in &logs {
            let mut r = log.reader(0).unwrap();
            for i in 0..20u8 {
                assert_eq!(&r.next().unwrap().unwrap().payload[..], &[i]);
            }
            assert!(log.check(0).unwrap().is_empty());
            assert_eq!(log.reader(13).unwrap().next().unwrap().unwrap().offset, 13);
        }
        set_open_file_limit(old);
        drop(logs);
        for d in &dirs {
            let log = small(d.path());
            assert_eq!(log.next_offset(), 20);
        }
    }

    /// Every message read from the tail cache is the message the log holds
    /// at that offset: plain messages, uncompressed and compressed sets.
    #[test]
    fn the_tail_cache_answers_as_the_log_does() {
        let dir = tempfile::tempdir().unwrap();
        let log = small(dir.path());
        log.append(b"one").unwrap();
        log.flush().unwrap();
        log.append_set(&[&b"two"[..], b"three"], message::SET_NONE)
            .unwrap();
        log.append_set(&[&b"four"[..], b"five", b"six"], message::SET_GZIP)
            .unwrap();
        log.append(b"seven").unwrap();
        log.flush().unwrap();
        let cached = log.read_cached(0, 100, usize::MAX).expect("cached");
        let mut reader = log.reader(0).unwrap();
        let mut from_disk = Vec::new();
        while let Some(m) = reader.next().unwrap() {
            from_disk.push(m);
        }
        assert_eq!(cached, from_disk);
        assert_eq!(cached.len(), 7);
        assert_eq!(log.read_cached(4, 2, usize::MAX).unwrap(), from_disk[4..6]);
        assert!(log.read_cached(7, 1, 1).is_none(), "past the end");
        // Retention: offsets no longer stored are never answered.
        while log.trim_oldest().unwrap().is_some() {}
        let oldest = log.oldest_offset();
        assert!(oldest > 0);
        assert!(log.read_cached(0, 1, 1).is_none());
    }

    /// A failed fsync under `fsync = always` makes nothing visible, to
    /// readers or the cache, and fails every later write: it is never
    /// retried into a success.
    #[test]
    fn a_failed_fsync_is_never_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LogOptions {
            fsync: FsyncPolicy::Always,
            ..LogOptions::default()
        };
        let log = Log::open(dir.path(), opts.clone()).unwrap();
        log.append(b"durable").unwrap();
        log.flush().unwrap();
        log.inner
            .fail_fsync
            .store(true, std::sync::atomic::Ordering::Relaxed);
        log.append(b"lost").unwrap();
        let err = log.flush().unwrap_err();
        assert!(matches!(err, LogError::Io { .. }), "{err:?}");
        assert_eq!(log.next_offset(), 1, "the failed entry is not visible");
        assert!(log.read_cached(1, 1, 1).is_none());
        let mut r = log.reader(0).unwrap();
        assert_eq!(&r.next().unwrap().unwrap().payload[..], b"durable");
        assert!(r.next().unwrap().is_none());
        // Even once fsync works again, writes stay refused.
        log.inner
            .fail_fsync
            .store(false, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(log.append(b"later"), Err(LogError::Failed(_))));
        assert!(matches!(log.sync(), Err(LogError::Failed(_))));
        drop(log);
        // Reopened, the log writes again, and the refused entry is gone.
        let log = Log::open(dir.path(), opts).unwrap();
        assert_eq!(log.next_offset(), 1);
        assert_eq!(log.append(b"after").unwrap(), 1);
        log.flush().unwrap();
    }

    /// Reading what is in memory, then the rest with I/O, in any
    /// interleaving, gives exactly what a plain read gives, across sets and
    /// segments.
    #[test]
    fn buffered_reads_agree_with_plain_reads() {
        let dir = tempfile::tempdir().unwrap();
        let log = small(dir.path());
        for i in 0..40u32 {
            let p = i.to_be_bytes();
            if i % 5 == 0 {
                log.append_set(&[&p[..], b"x"], message::SET_NONE).unwrap();
            } else if i % 7 == 0 {
                log.append_set(&[&p[..], b"y"], message::SET_GZIP).unwrap();
            } else {
                log.append(&p).unwrap();
            }
            log.flush().unwrap();
        }
        let mut plain = log.reader(0).unwrap();
        let mut want = Vec::new();
        while let Some(m) = plain.next().unwrap() {
            want.push(m);
        }
        for pattern in [1usize, 2, 3, 7] {
            let mut r = log.reader(0).unwrap();
            let mut got = Vec::new();
            let mut needed_io = 0;
            for step in 0.. {
                let next = if step % pattern == 0 {
                    Some(r.next())
                } else {
                    r.next_buffered()
                };
                match next {
                    None => needed_io += 1,
                    Some(Ok(Some(m))) => got.push(m),
                    Some(Ok(None)) => break,
                    Some(Err(e)) => panic!("{e}"),
                }
            }
            assert_eq!(got, want, "pattern {pattern}");
            if pattern > 1 {
                assert!(needed_io > 0, "segments and gzip sets need I/O");
            }
        }
    }

    /// Repeated full-disk failures are logged once per interval, and the
    /// ones not logged are counted for the next line.
    #[test]
    fn full_disk_logging_is_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let log = small(dir.path());
        let full = || io_error(Path::new("/x"))(std::io::Error::from_raw_os_error(libc::ENOSPC));
        for _ in 0..5 {
            assert!(log.noted(full()).is_no_space());
        }
        let other = log.noted(LogError::InvalidEntry("x"));
        assert!(matches!(other, LogError::InvalidEntry(_)));
        assert_eq!(
            log.inner.no_space.suppressed(&()),
            4,
            "one line, four suppressed"
        );
    }
}
