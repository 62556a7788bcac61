//! A segment's index file: a preallocated, memory-mapped array of 16-byte
//! entries.
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
//! The map is only touched through 64-bit atomics (two per entry), so the single
//! writer can fill entries past the published count while readers binary-search
//! the published ones without a lock. Publication order is the segment's
//! business (see `segment.rs`).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapRaw;

/// Bytes of one index entry.
pub const INDEX_ENTRY_BYTES: u64 = 16;
/// netlog's number of entries per index file (100 Ki entries, 1,638,400 bytes).
pub const DEFAULT_INDEX_ENTRIES: u32 = 100 * 1024;

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
    fn is_zero(&self) -> bool {
        self.rel == 0 && self.ts == 0 && self.pos == 0
    }
}

/// The memory-mapped index of one segment.
pub struct Index {
    map: MmapRaw,
    capacity: usize,
    file: File,
}

// SAFETY: the map is only read and written through `AtomicU64`s (see `words`),
// so sharing the raw pointer between threads cannot produce a data race.
unsafe impl Send for Index {}
// SAFETY: as above.
unsafe impl Sync for Index {}

impl Index {
    /// Opens (creating or extending as needed) an index file sized for
    /// `entries` entries. A larger existing file keeps its size, so an index
    /// written with a bigger capacity stays fully readable.
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
        let map = MmapRaw::map_raw(&file)?;
        Ok(Index {
            capacity: (len / INDEX_ENTRY_BYTES) as usize,
            map,
            file,
        })
    }

    /// How many entries the file holds, the marker included.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.capacity * 2, "index word out of range");
        // SAFETY: the mapping is page-aligned and at least `capacity * 16`
        // bytes long, so every 8-byte word below that is in bounds and aligned
        // for `AtomicU64`; the mapping lives as long as `self`. All access in
        // this process goes through atomics.
        unsafe { &*(self.map.as_mut_ptr() as *const AtomicU64).add(i) }
    }

    /// Reads entry `i`.
    pub fn get(&self, i: usize) -> IndexEntry {
        let a = self.word(2 * i).load(Ordering::Acquire).to_ne_bytes();
        let b = self.word(2 * i + 1).load(Ordering::Acquire).to_ne_bytes();
        IndexEntry {
            rel: u32::from_be_bytes([a[0], a[1], a[2], a[3]]),
            ts: u32::from_be_bytes([a[4], a[5], a[6], a[7]]),
            pos: i64::from_be_bytes(b).max(0) as u64,
        }
    }

    /// Writes entry `i`.
    pub fn set(&self, i: usize, e: IndexEntry) {
        let mut a = [0u8; 8];
        a[..4].copy_from_slice(&e.rel.to_be_bytes());
        a[4..].copy_from_slice(&e.ts.to_be_bytes());
        let b = (e.pos as i64).to_be_bytes();
        self.word(2 * i)
            .store(u64::from_ne_bytes(a), Ordering::Release);
        self.word(2 * i + 1)
            .store(u64::from_ne_bytes(b), Ordering::Release);
    }

    /// Zeroes every non-zero entry from `from` on (stale entries after a crash).
    pub fn clear_from(&self, from: usize) -> usize {
        let mut cleared = 0;
        for i in from..self.capacity {
            if !self.get(i).is_zero() {
                self.set(i, IndexEntry::default());
                cleared += 1;
            }
        }
        cleared
    }

    /// Flushes the map to disk (msync) and the file's metadata.
    pub fn sync(&self) -> io::Result<()> {
        self.map.flush()?;
        self.file.sync_data()
    }

    /// The index of the last entry among the first `count` whose relative
    /// offset is at most `rel` (entries are sorted by relative offset).
    pub fn search(&self, count: usize, rel: u32) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid).rel <= rel {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// The first of the first `count` entries with a timestamp at or after `ts`.
    pub fn search_time(&self, count: usize, ts: u32) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid).ts < ts {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo < count).then_some(lo)
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
        index.set(
            1,
            IndexEntry {
                rel: 2,
                ts: 0x01020304,
                pos: 27,
            },
        );
        index.sync().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 64);
        assert_eq!(
            &bytes[16..32],
            &[0, 0, 0, 2, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 27]
        );
        assert_eq!(index.get(1).pos, 27);
    }

    /// Binary search finds the entry that holds a relative offset.
    #[test]
    fn search_finds_covering_entry() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i"), 8).unwrap();
        for (i, rel) in [1u32, 2, 5, 6].iter().enumerate() {
            index.set(
                i,
                IndexEntry {
                    rel: *rel,
                    ts: 10 + i as u32,
                    pos: 16 + i as u64,
                },
            );
        }
        assert_eq!(index.search(4, 1), Some(0));
        assert_eq!(index.search(4, 4), Some(1));
        assert_eq!(index.search(4, 9), Some(3));
        assert_eq!(index.search(4, 0), None);
        assert_eq!(index.search_time(4, 12), Some(2));
        assert_eq!(index.search_time(4, 99), None);
    }
}
