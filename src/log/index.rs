//! A segment's index file: a fixed-size array of 16-byte entries, written
//! with positional writes and read with positional reads.
//!
//! ```text
//! entry i: relative_offset u32 | timestamp u32 (unix s) | data_position i64   (big-endian)
//! ```
//!
//! Relative offsets start at 1 (global offset = base + relative - 1). There is
//! one entry per write; a message set of N messages is one entry and the next
//! entry's relative offset is N higher. The entry after the last write is the
//! *marker*: the next relative offset, timestamp 0 and the data file's end. An
//! all-zero entry is unused space.
//!
//! **Why no memory map.** The file is created at its full size but sparse
//! (`set_len`): creating a segment writes only the marker's page, so a fresh
//! 1.6 MB index costs one page, not 400. Writing entries through a shared map
//! onto such unallocated pages kills the process with SIGBUS when the disk is
//! full; so entries are written with `pwrite`, which answers a full disk with
//! `ENOSPC` like any other write, and read with `pread` (lookups are a binary
//! search: about 17 reads of 16 bytes for a full index). The file stays sparse
//! and no mapping is held, so 100,000 segments cost neither address space nor
//! map count.
//!
//! Concurrency: the single writer writes entries past the published count;
//! readers read only below it (publication order is the segment's business,
//! see `segment.rs`), so entries a reader sees never change under it. The
//! descriptor comes from the process-wide bounded cache (`files.rs`), opened
//! for reading and writing, so an index holds no descriptor while idle.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::files::LazyFile;
use super::is_no_space;
use crate::fault::{self, Op};
use crate::lock::Recover;

/// Bytes of one index entry.
pub const INDEX_ENTRY_BYTES: u64 = 16;
/// netlog's number of entries per index file (100 Ki entries, 1,638,400 bytes).
pub const DEFAULT_INDEX_ENTRIES: u32 = 100 * 1024;
/// Entries read at a time when an index is scanned in full (64 KiB).
const SCAN_ENTRIES: usize = 4096;
/// Entries [`Index::rewrite`] reads at a time past the wanted ones, looking
/// for stale entries (4 KiB, a page).
const STALE_PAGE_ENTRIES: usize = 256;

/// One decoded index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IndexEntry {
    /// Relative offset, starting at 1.
    pub rel: u32,
    /// Unix seconds of the write; 0 in the marker.
    pub ts: u32,
    /// Byte position of the entry's message in the data file.
    pub pos: u64,
}

impl IndexEntry {
    pub(crate) fn is_zero(&self) -> bool {
        self.rel == 0 && self.ts == 0 && self.pos == 0
    }

    fn encode(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.rel.to_be_bytes());
        out[4..8].copy_from_slice(&self.ts.to_be_bytes());
        out[8..16].copy_from_slice(&(self.pos as i64).to_be_bytes());
    }

    fn decode(b: &[u8]) -> IndexEntry {
        let word = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 8];
            a[8 - r.len()..].copy_from_slice(&b[r]);
            u64::from_be_bytes(a)
        };
        IndexEntry {
            rel: word(0..4) as u32,
            ts: word(4..8) as u32,
            pos: (word(8..16) as i64).max(0) as u64,
        }
    }
}

/// What [`Index::rewrite`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// Entries (the marker included) that differed from the wanted ones.
    pub rebuilt: usize,
    /// Stale non-zero entries past the marker.
    pub cleared: usize,
    /// Whether the write failed for lack of space and is held in memory.
    pub held: bool,
}

/// Entries that belong at `from..` but could not be written (a full disk).
struct Held {
    from: usize,
    entries: Vec<IndexEntry>,
}

/// The index of one segment.
pub struct Index {
    file: LazyFile,
    capacity: usize,
    /// A rewrite recovery could not write for lack of space: reads see it,
    /// and the next write writes it first.
    held: RwLock<Option<Arc<Held>>>,
    /// Entries read so far (tests: what opening costs).
    #[cfg(test)]
    pub(crate) entries_read: std::sync::atomic::AtomicUsize,
}

impl Index {
    /// Creates an empty index for `entries` entries, replacing any file at
    /// `path`. The file is sparse: no page is written (nor read) here.
    pub fn create(path: &Path, entries: u32) -> io::Result<Index> {
        fault::check(Op::Open, path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let len = u64::from(entries.max(2)) * INDEX_ENTRY_BYTES;
        file.set_len(len)?;
        Ok(Index::cached(path.to_path_buf(), file, len))
    }

    /// Opens (creating or extending as needed) an index file sized for
    /// `entries` entries. A larger existing file
    /// keeps its size, so an index written with a bigger capacity stays fully
    /// readable.
    pub fn open(path: &Path, entries: u32) -> io::Result<Index> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let wanted = u64::from(entries.max(2)) * INDEX_ENTRY_BYTES;
        let len = file.metadata()?.len();
        let len = if len < wanted {
            file.set_len(wanted)?;
            wanted
        } else {
            len - len % INDEX_ENTRY_BYTES
        };
        Ok(Index::cached(path.to_path_buf(), file, len))
    }

    fn cached(path: PathBuf, file: File, len: u64) -> Index {
        Index {
            capacity: (len / INDEX_ENTRY_BYTES) as usize,
            file: LazyFile::cached(path, file),
            held: RwLock::new(None),
            #[cfg(test)]
            entries_read: Default::default(),
        }
    }

    /// How many entries the file holds, the marker included.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the descriptor is pinned open (tests).
    #[cfg(test)]
    pub(crate) fn is_pinned(&self) -> bool {
        self.file.is_pinned()
    }

    fn at(i: usize) -> u64 {
        i as u64 * INDEX_ENTRY_BYTES
    }

    fn held(&self) -> Option<Arc<Held>> {
        self.held.read().recover().clone()
    }

    fn read_one(&self, file: &File, held: Option<&Held>, i: usize) -> io::Result<IndexEntry> {
        if let Some(h) = held
            && let Some(e) = i.checked_sub(h.from).and_then(|k| h.entries.get(k))
        {
            return Ok(*e);
        }
        let mut b = [0u8; INDEX_ENTRY_BYTES as usize];
        file.read_exact_at(&mut b, Self::at(i))?;
        Ok(IndexEntry::decode(&b))
    }

    /// Reads entry `i`.
    pub fn get(&self, i: usize) -> io::Result<IndexEntry> {
        assert!(i < self.capacity, "index entry out of range");
        self.read_one(&*self.file.get()?, self.held().as_deref(), i)
    }

    /// Reads entries `from..from + n` (clamped to the capacity) with
    /// positional reads of up to 64 KiB.
    pub fn read(&self, from: usize, n: usize) -> io::Result<Vec<IndexEntry>> {
        let end = from.saturating_add(n).min(self.capacity);
        #[cfg(test)]
        self.entries_read.fetch_add(
            end.saturating_sub(from),
            std::sync::atomic::Ordering::Relaxed,
        );
        let file = self.file.get()?;
        let mut out = Vec::with_capacity(end.saturating_sub(from));
        let mut buf =
            vec![0u8; (end.saturating_sub(from)).min(SCAN_ENTRIES) * INDEX_ENTRY_BYTES as usize];
        let mut i = from;
        while i < end {
            let k = (end - i).min(SCAN_ENTRIES);
            let b = &mut buf[..k * INDEX_ENTRY_BYTES as usize];
            file.read_exact_at(b, Self::at(i))?;
            out.extend(
                b.chunks_exact(INDEX_ENTRY_BYTES as usize)
                    .map(IndexEntry::decode),
            );
            i += k;
        }
        if let Some(h) = self.held() {
            for (k, e) in h.entries.iter().enumerate() {
                if let Some(slot) = (h.from + k).checked_sub(from).and_then(|j| out.get_mut(j)) {
                    *slot = *e;
                }
            }
        }
        Ok(out)
    }

    /// Whether entries `from..from + n` (clamped to the capacity) are all
    /// zero bytes on disk, checked without decoding them.
    fn zeros(&self, from: usize, n: usize) -> io::Result<bool> {
        let end = from.saturating_add(n).min(self.capacity);
        #[cfg(test)]
        self.entries_read.fetch_add(
            end.saturating_sub(from),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut b = vec![0u8; end.saturating_sub(from) * INDEX_ENTRY_BYTES as usize];
        self.file.get()?.read_exact_at(&mut b, Self::at(from))?;
        let held = self.held();
        let held_here = held.is_some_and(|h| h.from < end && h.from + h.entries.len() > from);
        Ok(!held_here && b.iter().all(|x| *x == 0))
    }

    /// Writes entry `i` (one `pwrite`; a full disk is an `ENOSPC` error).
    pub fn set(&self, i: usize, e: IndexEntry) -> io::Result<()> {
        self.write(i, &[e])
    }

    /// Writes `entries` from slot `from` on with one positional write (after
    /// a rewrite held for lack of space, if any).
    pub fn write(&self, from: usize, entries: &[IndexEntry]) -> io::Result<()> {
        if let Some(h) = self.held() {
            self.write_raw(h.from, &h.entries)?;
            *self.held.write().recover() = None;
        }
        self.write_raw(from, entries)
    }

    fn write_raw(&self, from: usize, entries: &[IndexEntry]) -> io::Result<()> {
        assert!(
            from + entries.len() <= self.capacity,
            "index entry out of range"
        );
        let mut b = vec![0u8; entries.len() * INDEX_ENTRY_BYTES as usize];
        for (e, out) in entries
            .iter()
            .zip(b.chunks_exact_mut(INDEX_ENTRY_BYTES as usize))
        {
            e.encode(out);
        }
        let file = self.file.get()?;
        fault::check(Op::Write, self.file.path())?;
        file.write_all_at(&b, Self::at(from))
    }

    /// Makes the file hold `entries`, then `marker` (when there is room), then
    /// zeros, writing one run from the first slot that differs. Reads what
    /// is wanted, then on past it page by page ([`STALE_PAGE_ENTRIES`]) up
    /// to the first all-zero page: stale entries left past the marker are
    /// found and zeroed, and a healthy index costs its used part plus one
    /// page, not its capacity (recovery of the active segment). When the
    /// disk is full the run is held in memory instead: reads see it, and the
    /// next [`write`](Self::write) writes it first, so the segment opens for
    /// reading and writes resume once space is free.
    pub fn rewrite(&self, entries: &[IndexEntry], marker: IndexEntry) -> io::Result<Rewritten> {
        let mut want = entries.to_vec();
        if want.len() < self.capacity {
            want.push(marker);
        }
        let mut have = self.read(0, want.len())?;
        while have.len() < self.capacity && !self.zeros(have.len(), STALE_PAGE_ENTRIES)? {
            let page = self.read(have.len(), STALE_PAGE_ENTRIES)?;
            have.extend(page);
        }
        let mut done = Rewritten {
            rebuilt: want.iter().zip(&have).filter(|(w, h)| w != h).count(),
            cleared: have[want.len().min(have.len())..]
                .iter()
                .filter(|e| !e.is_zero())
                .count(),
            held: false,
        };
        let first = want.iter().zip(&have).position(|(w, h)| w != h);
        let last_stale = have
            .iter()
            .rposition(|e| !e.is_zero())
            .filter(|&i| i >= want.len());
        let Some(from) = first.or(last_stale.map(|_| want.len())) else {
            return Ok(done);
        };
        let to = last_stale.map_or(want.len(), |i| i + 1);
        let mut run = want.get(from..).unwrap_or_default().to_vec();
        run.resize(to - from, IndexEntry::default());
        match self.write(from, &run) {
            Err(e) if is_no_space(&e) => {
                *self.held.write().recover() = Some(Arc::new(Held { from, entries: run }));
                done.held = true;
                Ok(done)
            }
            other => other.map(|()| done),
        }
    }

    /// Replaces the file at `path` with one of `capacity` entries holding
    /// `entries`, then `marker` (when there is room), then zeros (sparse),
    /// atomically and durably (`durable::replace`: temporary file, fsync,
    /// rename, directory fsync), and opens it. For an index rebuilt from
    /// its data: a crash leaves the old index or the new one, never a mix.
    pub(crate) fn replace(
        path: &Path,
        capacity: usize,
        entries: &[IndexEntry],
        marker: IndexEntry,
    ) -> Result<Index, (PathBuf, io::Error)> {
        let mut want = entries.to_vec();
        if want.len() < capacity {
            want.push(marker);
        }
        let len = capacity.max(want.len()).max(2) as u64 * INDEX_ENTRY_BYTES;
        crate::durable::replace(path, |f| {
            let mut b = vec![0u8; want.len() * INDEX_ENTRY_BYTES as usize];
            for (e, out) in want
                .iter()
                .zip(b.chunks_exact_mut(INDEX_ENTRY_BYTES as usize))
            {
                e.encode(out);
            }
            f.write_all_at(&b, 0)?;
            f.set_len(len)
        })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| (path.to_path_buf(), e))?;
        Ok(Index::cached(path.to_path_buf(), file, len))
    }

    /// fsyncs the file.
    pub fn sync(&self) -> io::Result<()> {
        let file = self.file.get()?;
        fault::check(Op::Sync, self.file.path())?;
        file.sync_data()
    }

    /// How many leading entries are in use, found by binary search for the
    /// first all-zero entry (reads about 17 entries, not the file). Correct
    /// for an index whose used entries form a prefix, as the writer leaves it.
    pub fn used(&self) -> io::Result<usize> {
        let file = self.file.get()?;
        let held = self.held();
        let (mut lo, mut hi) = (0usize, self.capacity);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.read_one(&file, held.as_deref(), mid)?.is_zero() {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    /// The index of the last entry among the first `count` whose relative
    /// offset is at most `rel` (entries are sorted by relative offset).
    pub fn search(&self, count: usize, rel: u32) -> io::Result<Option<usize>> {
        let file = self.file.get()?;
        let held = self.held();
        let (mut lo, mut hi) = (0usize, count.min(self.capacity));
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.read_one(&file, held.as_deref(), mid)?.rel <= rel {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo.checked_sub(1))
    }

    /// The first of the first `count` entries with a timestamp at or after `ts`.
    pub fn search_time(&self, count: usize, ts: u32) -> io::Result<Option<usize>> {
        let file = self.file.get()?;
        let held = self.held();
        let count = count.min(self.capacity);
        let (mut lo, mut hi) = (0usize, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.read_one(&file, held.as_deref(), mid)?.ts < ts {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok((lo < count).then_some(lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries are stored big-endian at 16-byte strides, as netlog lays them out.
    #[test]
    fn entries_are_big_endian_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let index = Index::open(&path, 4).unwrap();
        index
            .set(
                1,
                IndexEntry {
                    rel: 2,
                    ts: 0x01020304,
                    pos: 27,
                },
            )
            .unwrap();
        index.sync().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 64);
        assert_eq!(
            &bytes[16..32],
            &[0, 0, 0, 2, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 27]
        );
        assert_eq!(index.get(1).unwrap().pos, 27);
    }

    /// Binary search finds the entry that holds a relative offset.
    #[test]
    fn search_finds_covering_entry() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i"), 8).unwrap();
        for (i, rel) in [1u32, 2, 5, 6].iter().enumerate() {
            index
                .set(
                    i,
                    IndexEntry {
                        rel: *rel,
                        ts: 10 + i as u32,
                        pos: 16 + i as u64,
                    },
                )
                .unwrap();
        }
        assert_eq!(index.search(4, 1).unwrap(), Some(0));
        assert_eq!(index.search(4, 4).unwrap(), Some(1));
        assert_eq!(index.search(4, 9).unwrap(), Some(3));
        assert_eq!(index.search(4, 0).unwrap(), None);
        assert_eq!(index.search_time(4, 12).unwrap(), Some(2));
        assert_eq!(index.search_time(4, 99).unwrap(), None);
    }

    /// A fresh index is sparse: creating it allocates no block, and writing
    /// the marker allocates only the page it lands on.
    #[test]
    fn create_touches_no_page() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let index = Index::create(&path, DEFAULT_INDEX_ENTRIES).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            meta.len(),
            u64::from(DEFAULT_INDEX_ENTRIES) * INDEX_ENTRY_BYTES
        );
        assert_eq!(meta.blocks(), 0, "a fresh index has no block");
        index
            .set(
                0,
                IndexEntry {
                    rel: 1,
                    ts: 0,
                    pos: 16,
                },
            )
            .unwrap();
        index.sync().unwrap();
        // 512-byte blocks: a page or a filesystem block or two, far from 1.6 MB.
        assert!(std::fs::metadata(&path).unwrap().blocks() <= 64);
    }

    /// `used` finds the end of the used prefix by binary search, and
    /// `rewrite` replaces entries and zeroes stale ones after the marker.
    #[test]
    fn used_and_clear_from() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::create(&dir.path().join("i"), 1000).unwrap();
        assert_eq!(index.used().unwrap(), 0);
        let es: Vec<IndexEntry> = (0..300)
            .map(|i| IndexEntry {
                rel: i + 1,
                ts: 5,
                pos: 16 + u64::from(i),
            })
            .collect();
        index.write(0, &es).unwrap();
        assert_eq!(index.used().unwrap(), 300);
        assert_eq!(index.read(0, 300).unwrap(), es);
        let marker = IndexEntry {
            rel: 200,
            ts: 0,
            pos: 900,
        };
        let done = index.rewrite(&es[..199], marker).unwrap();
        assert_eq!(
            done,
            Rewritten {
                rebuilt: 1,
                cleared: 100,
                held: false
            }
        );
        assert_eq!(index.used().unwrap(), 200);
        assert_eq!(index.get(199).unwrap(), marker);
        assert!(index.get(250).unwrap().is_zero());
        let again = index.rewrite(&es[..199], marker).unwrap();
        assert_eq!(again, Rewritten::default());
    }
}
