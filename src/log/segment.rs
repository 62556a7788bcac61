//! One segment: a data file and its index, named by the segment's base offset
//! (`%020d.data`, `%020d.index`).
//!
//! The data file starts with a 16-byte header (`version u8 = 1`,
//! `header_length u8 = 16`, `created u32` unix seconds, 10 zero bytes) followed
//! by messages back to back (see `message.rs`).
//!
//! Concurrency: one writer (the log's writer, under its mutex) appends with
//! positional writes past the published end, then *publishes*: it writes the
//! new index entries and the marker, then stores the entry count, the next
//! offset and the data length with release ordering. Readers load those with
//! acquire ordering and only ever read below them, so they never see a partial
//! write and never take the writer's lock. A publish whose index write fails
//! (a full disk) changes none of the counts, so nothing of it is visible.
//!
//! Descriptors: the active segment keeps its data file open (pinned); sealing
//! closes it, and a sealed segment's reads reopen it read-only through the
//! process-wide bounded cache (`files.rs`), where index files always live, so
//! idle sealed segments hold no descriptor.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use super::files::LazyFile;
use super::index::{INDEX_ENTRY_BYTES, Index, IndexEntry};
use super::{LogError, io_error};
use crate::fault::{self, Op};

/// Bytes of the data file's header.
pub const SEGMENT_HEADER_BYTES: u64 = 16;
/// The data file format version netlog writes.
pub const SEGMENT_VERSION: u8 = 1;

/// Builds a data file header created at `created` (unix seconds).
pub fn header_bytes(created: u32) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    h[0] = SEGMENT_VERSION;
    h[1] = SEGMENT_HEADER_BYTES as u8;
    h[2..6].copy_from_slice(&created.to_be_bytes());
    h
}

/// The file name of a segment's data or index file.
pub fn file_name(base: u64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

/// Unix seconds now, as the index stores them.
pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// A segment of the log.
pub struct Segment {
    /// Offset of the first message.
    pub base: u64,
    /// Unix seconds at creation, from the data file header.
    pub created: u32,
    pub(crate) data_path: PathBuf,
    pub(crate) index_path: PathBuf,
    data: LazyFile,
    pub(crate) index: Index,
    data_len: AtomicU64,
    entries: AtomicUsize,
    next: AtomicU64,
    sealed: AtomicBool,
}

impl Segment {
    /// Creates an empty segment at `base` in `dir`. Writes the data header and
    /// the index marker, and nothing else: the index stays sparse; then
    /// fsyncs `dir`, so the new names survive a power cut (a roll that a
    /// restart forgot would put later writes in the previous segment's
    /// offsets). On failure (a full disk) the files it made are removed again.
    pub fn create(dir: &Path, base: u64, index_entries: u32) -> Result<Segment, LogError> {
        let data_path = dir.join(file_name(base, "data"));
        let index_path = dir.join(file_name(base, "index"));
        let made =
            Self::create_files(&data_path, &index_path, base, index_entries).and_then(|seg| {
                crate::durable::sync_dir(dir).map_err(io_error(dir))?;
                Ok(seg)
            });
        if made.is_err() {
            let _ = std::fs::remove_file(&index_path);
            let _ = std::fs::remove_file(&data_path);
        }
        made
    }

    fn create_files(
        data_path: &Path,
        index_path: &Path,
        base: u64,
        index_entries: u32,
    ) -> Result<Segment, LogError> {
        let data = fault::check(Op::Open, data_path)
            .and_then(|()| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(data_path)
            })
            .map_err(io_error(data_path))?;
        let created = unix_now();
        fault::check(Op::Write, data_path)
            .and_then(|()| data.write_all_at(&header_bytes(created), 0))
            .map_err(io_error(data_path))?;
        let index = Index::create(index_path, index_entries).map_err(io_error(index_path))?;
        let seg = Segment::assemble(
            base,
            created,
            data_path.to_path_buf(),
            index_path.to_path_buf(),
            data,
            index,
        );
        seg.publish(&[], 1, SEGMENT_HEADER_BYTES)?;
        Ok(seg)
    }

    /// Wraps opened files (kept open until [`seal`](Self::seal)); counts
    /// start empty until `publish` or `restore`.
    pub(crate) fn assemble(
        base: u64,
        created: u32,
        data_path: PathBuf,
        index_path: PathBuf,
        data: File,
        index: Index,
    ) -> Segment {
        Segment {
            base,
            created,
            data: LazyFile::pinned(data_path.clone(), data),
            data_path,
            index_path,
            index,
            data_len: AtomicU64::new(SEGMENT_HEADER_BYTES),
            entries: AtomicUsize::new(0),
            next: AtomicU64::new(base),
            sealed: AtomicBool::new(false),
        }
    }

    /// Bytes of the data file readers may read (header included).
    pub fn data_len(&self) -> u64 {
        self.data_len.load(Ordering::Acquire)
    }

    /// Published index entries (writes), the marker excluded.
    pub fn entries(&self) -> usize {
        self.entries.load(Ordering::Acquire)
    }

    /// Offset one past the last published message.
    pub fn next_offset(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// Whether the writer has moved on to a later segment.
    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// Marks the segment sealed and closes its pinned data descriptor; reads
    /// reopen it through the bounded cache.
    pub(crate) fn seal(&self) {
        self.sealed.store(true, Ordering::Release);
        self.data.unpin();
    }

    /// Whether the data file is pinned open (tests).
    #[cfg(test)]
    pub(crate) fn data_pinned(&self) -> bool {
        self.data.is_pinned()
    }

    /// Whether the index file is pinned open (tests).
    #[cfg(test)]
    pub(crate) fn index_pinned(&self) -> bool {
        self.index.is_pinned()
    }

    /// Writes the new entries after the published ones, then the marker (one
    /// positional write), then makes them visible. `next_rel` is the relative
    /// offset after the last message; `data_len` the data file's new end. If
    /// the write fails nothing is published, and the caller rewrites from the
    /// published end next time.
    pub(crate) fn publish(
        &self,
        new: &[IndexEntry],
        next_rel: u32,
        data_len: u64,
    ) -> Result<(), LogError> {
        self.write_entries(new, next_rel, data_len)?;
        self.restore(self.entries() + new.len(), next_rel, data_len);
        Ok(())
    }

    /// Writes the new entries after the published ones, then the marker (one
    /// positional write), without making them visible: [`Segment::restore`]
    /// does that once the caller is ready (after an fsync, say).
    pub(crate) fn write_entries(
        &self,
        new: &[IndexEntry],
        next_rel: u32,
        data_len: u64,
    ) -> Result<(), LogError> {
        let start = self.entries();
        let count = start + new.len();
        let mut run = Vec::with_capacity(new.len() + 1);
        run.extend_from_slice(new);
        if count < self.index.capacity() {
            run.push(IndexEntry {
                rel: next_rel,
                ts: 0,
                pos: data_len,
            });
        }
        self.index
            .write(start, &run)
            .map_err(io_error(&self.index_path))
    }

    /// Writes the marker after the published entries again (best effort,
    /// after a failed publish overwrote it).
    pub(crate) fn rewrite_marker(&self) -> Result<(), LogError> {
        let count = self.entries();
        if count >= self.index.capacity() {
            return Ok(());
        }
        let marker = IndexEntry {
            rel: (self.next_offset() - self.base + 1) as u32,
            ts: 0,
            pos: self.data_len(),
        };
        self.index
            .set(count, marker)
            .map_err(io_error(&self.index_path))
    }

    /// Sets the published counts of a segment whose index and data recovery
    /// has already made consistent on disk.
    pub(crate) fn restore(&self, entries: usize, next_rel: u32, data_len: u64) {
        self.entries.store(entries, Ordering::Release);
        self.next
            .store(self.base + u64::from(next_rel) - 1, Ordering::Release);
        self.data_len.store(data_len, Ordering::Release);
    }

    fn data_file(&self) -> Result<Arc<File>, LogError> {
        self.data.get().map_err(io_error(&self.data_path))
    }

    /// Writes `bytes` at `pos` of the data file (past the published end).
    pub(crate) fn write_at(&self, bytes: &[u8], pos: u64) -> Result<(), LogError> {
        let file = self.data_file()?;
        fault::check(Op::Write, &self.data_path)
            .and_then(|()| file.write_all_at(bytes, pos))
            .map_err(io_error(&self.data_path))
    }

    /// Cuts the data file back to `len` (after a failed write).
    pub(crate) fn truncate(&self, len: u64) -> Result<(), LogError> {
        self.data_file()?
            .set_len(len)
            .map_err(io_error(&self.data_path))
    }

    /// Reads into `buf` from `pos`; never past the published end.
    pub fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<usize, LogError> {
        let end = self.data_len();
        if pos >= end {
            return Ok(0);
        }
        let want = buf.len().min((end - pos) as usize);
        self.read_raw_at(&mut buf[..want], pos)
    }

    /// Positional read ignoring the published end (recovery and check): fills
    /// `buf` unless the file ends first; returns the bytes read.
    pub(crate) fn read_raw_at(&self, buf: &mut [u8], pos: u64) -> Result<usize, LogError> {
        let file = self.data_file()?;
        let mut done = 0;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(&self.data_path)(e)),
            }
        }
        Ok(done)
    }

    /// The open data file (pinned, or from the bounded cache), for raw
    /// positional reads ignoring the published end.
    pub(crate) fn raw_file(&self) -> Result<Arc<File>, LogError> {
        self.data_file()
    }

    /// fsyncs the data file and the index.
    pub fn sync(&self) -> Result<(), LogError> {
        let file = self.data_file()?;
        fault::check(Op::Sync, &self.data_path)
            .and_then(|()| file.sync_data())
            .map_err(io_error(&self.data_path))?;
        self.index.sync().map_err(io_error(&self.index_path))
    }

    /// Index entry `i` (below [`entries`](Self::entries) for a published one).
    pub fn entry(&self, i: usize) -> Result<IndexEntry, LogError> {
        self.index.get(i).map_err(io_error(&self.index_path))
    }

    /// The published entry holding global `offset`, with its own global offset
    /// and the entry's message count.
    pub fn locate(&self, offset: u64) -> Result<Option<(IndexEntry, u64)>, LogError> {
        let Some(i) = self.locate_entry(offset)? else {
            return Ok(None);
        };
        let e = self.entry(i)?;
        Ok(Some((e, self.base + u64::from(e.rel) - 1)))
    }

    /// The position in the index of the published entry holding global
    /// `offset`.
    pub(crate) fn locate_entry(&self, offset: u64) -> Result<Option<usize>, LogError> {
        if offset < self.base || offset >= self.next_offset() {
            return Ok(None);
        }
        let Ok(rel) = u32::try_from(offset - self.base + 1) else {
            return Ok(None);
        };
        self.index
            .search(self.entries(), rel)
            .map_err(io_error(&self.index_path))
    }

    /// The first published entry written at or after `ts` (unix seconds).
    pub fn first_at_or_after(&self, ts: u32) -> Result<Option<u64>, LogError> {
        let found = self
            .index
            .search_time(self.entries(), ts)
            .map_err(io_error(&self.index_path))?;
        match found {
            Some(i) => Ok(Some(self.base + u64::from(self.entry(i)?.rel) - 1)),
            None => Ok(None),
        }
    }

    /// Timestamp of the last published write, if any.
    pub fn last_write_ts(&self) -> Result<Option<u32>, LogError> {
        match self.entries() {
            0 => Ok(None),
            n => Ok(Some(self.entry(n - 1)?.ts)),
        }
    }

    /// Data and index bytes on disk.
    pub fn disk_size(&self) -> u64 {
        self.data_len() + self.index.capacity() as u64 * INDEX_ENTRY_BYTES
    }

    /// The data file's modification time (from its path: opens nothing).
    pub fn mod_time(&self) -> SystemTime {
        std::fs::metadata(&self.data_path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Removes both files (the open handles stay readable until dropped).
    pub(crate) fn remove_files(&self) -> Result<(), LogError> {
        std::fs::remove_file(&self.data_path).map_err(io_error(&self.data_path))?;
        match std::fs::remove_file(&self.index_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_error(&self.index_path)(e))
            }
            _ => Ok(()),
        }
    }
}
