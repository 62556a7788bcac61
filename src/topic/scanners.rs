//! The scanner registry of one topic, and its persistence.
//!
//! A scanner is a consumer position: a [`Scanner`] behind an async mutex, so
//! concurrent scans of one id hand each message out once. Persistent ones
//! save `readers/<uuid>.scanner` (the last offset returned, an 8-byte
//! big-endian signed integer, as netlog does) on creation, on every monitor
//! tick where they moved, and at shutdown; after a crash they resume at most
//! one tick behind: a message may be seen twice, never skipped.
//!
//! Loading at start-up only reads: a scanner file is rewritten when its
//! scanner moves, never because it was loaded. An empty file is what netlog
//! leaves for a persistent scanner it has not saved yet; it is restored at
//! offset 0, as netlog does. Any other malformed file is skipped and logged.
//!
//! The registry's map is locked only to look up, add or remove an entry,
//! never across I/O.
//!
//! **Idle scanners expire.** A scanner that is not persistent and has not
//! been scanned for the process-wide `scanner_idle_ttl` (default a day; see
//! [`set_scanner_idle_ttl`]) is removed on the monitor's next tick, so a
//! client that opens scanners and walks away does not hold memory, and a
//! topic's `DELETE`, for good. This is the one place the broker differs from
//! netlog, which kept them until restart. Persistent scanners never expire.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{TopicError, write_atomic};
use crate::lock::Recover;
use crate::log::{Log, Reader};

/// Folder of persistent scanner files in a topic directory.
pub const READERS_DIR: &str = "readers";
/// The idle time after which a scanner that is not persistent expires, in
/// milliseconds (see the module docs).
static IDLE_TTL_MS: AtomicU64 = AtomicU64::new(86_400_000);
/// The clock scanners' last use is counted on.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Sets how long a scanner that is not persistent may go unscanned before
/// it expires; the broker calls it at start-up with `scanner_idle_ttl`.
pub fn set_scanner_idle_ttl(ttl: Duration) {
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    IDLE_TTL_MS.store(ms, Ordering::Relaxed);
}

fn now_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Extension of a persistent scanner file.
pub(crate) const SCANNER_EXT: &str = "scanner";

/// One consumer position; see the module docs.
pub struct ScannerEntry {
    /// Its id.
    pub id: Uuid,
    /// Where it started.
    pub from: u64,
    /// Whether it survives restarts.
    pub persistent: bool,
    /// The position: moved only by [`ScannerEntry::advance`].
    next: AtomicU64,
    saved: AtomicU64,
    /// When it was last scanned (or created), on [`EPOCH`]'s clock.
    last_used: AtomicU64,
    /// The reader of reads from data not in the tail cache, parked where
    /// the last one stopped (see `Topic::scan`). Its lock is held only while
    /// the reader hands out what it holds in memory, never across I/O.
    pub(super) parked: Mutex<Parked>,
    /// Raised when a read from disk gives the parked reader back.
    pub(super) returned: tokio::sync::Notify,
}

/// A scanner's parked reader and whether a read from disk has it.
#[derive(Default)]
pub(super) struct Parked {
    pub(super) reader: Option<Reader>,
    /// A read on the blocking pool holds the reader: other requests on this
    /// scanner wait for [`ScannerEntry::returned`] (they would read the same
    /// bytes).
    pub(super) out: bool,
}

impl ScannerEntry {
    /// An entry kept by an engine other than the embedded one (JetStream):
    /// its position lives elsewhere, this is what this process last saw.
    pub(crate) fn detached(id: Uuid, from: u64, next: u64, persistent: bool) -> ScannerEntry {
        ScannerEntry {
            id,
            from,
            persistent,
            next: AtomicU64::new(next),
            saved: AtomicU64::new(next),
            last_used: AtomicU64::new(now_ms()),
            parked: Mutex::new(Parked::default()),
            returned: tokio::sync::Notify::new(),
        }
    }

    /// Records the position an engine moved it to.
    pub(super) fn set_next(&self, next: u64) {
        self.next.store(next, Ordering::Release);
    }

    /// The next offset it will return.
    pub fn next(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// Marks the scanner as used now (see the module docs).
    pub(super) fn touch(&self) {
        self.last_used.store(now_ms(), Ordering::Relaxed);
    }

    /// Moves the position from `from` to `to`; `false` if it is no longer
    /// at `from` (another request moved it first).
    pub(super) fn advance(&self, from: u64, to: u64) -> bool {
        self.next
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Drops the parked reader (the scanner reads from the tail cache now),
    /// unless a read from disk holds it: it would pin an old segment's
    /// files.
    /// On the hot path: a lock another request holds is skipped, not waited
    /// for (the next cached read drops the reader).
    pub(super) fn unpark(&self) {
        if let Ok(mut parked) = self.parked.try_lock()
            && parked.reader.is_some()
            && !parked.out
        {
            parked.reader = None;
        }
    }

    /// Gives the reader back after a read from disk, and wakes the requests
    /// waiting for it.
    pub(super) fn give_back(&self, reader: Option<Reader>) {
        let mut parked = self.parked.lock().recover();
        parked.reader = reader;
        parked.out = false;
        drop(parked);
        self.returned.notify_waiters();
    }
}

/// The scanners of one topic.
pub(crate) struct Scanners {
    dir: PathBuf,
    map: Mutex<HashMap<Uuid, Arc<ScannerEntry>>>,
}

impl Scanners {
    pub(crate) fn new(topic_dir: &Path) -> Scanners {
        Scanners {
            dir: topic_dir.join(READERS_DIR),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, id: &Uuid) -> PathBuf {
        self.dir.join(format!("{id}.{SCANNER_EXT}"))
    }

    /// Adds a scanner positioned at `at`; a new persistent one is saved.
    pub(crate) fn add(
        &self,
        log: &Log,
        id: Uuid,
        from: u64,
        at: u64,
        persistent: bool,
        loaded: bool,
    ) -> Result<Arc<ScannerEntry>, TopicError> {
        let reader = log.reader(at)?;
        let entry = Arc::new(ScannerEntry {
            id,
            from,
            persistent,
            next: AtomicU64::new(at),
            last_used: AtomicU64::new(now_ms()),
            // A loaded scanner's file already says `at`.
            saved: AtomicU64::new(if loaded { at } else { u64::MAX }),
            parked: Mutex::new(Parked {
                reader: Some(reader),
                out: false,
            }),
            returned: tokio::sync::Notify::new(),
        });
        if persistent && !loaded {
            self.save(&entry)?;
        }
        self.map.lock().recover().insert(id, entry.clone());
        Ok(entry)
    }

    /// Looks up a scanner by its id's text.
    pub(crate) fn get(&self, id: &str) -> Result<Arc<ScannerEntry>, TopicError> {
        let id = Uuid::parse_str(id).map_err(|_| TopicError::ScannerNotFound)?;
        self.map
            .lock()
            .recover()
            .get(&id)
            .cloned()
            .ok_or(TopicError::ScannerNotFound)
    }

    /// How many scanners there are.
    pub(crate) fn len(&self) -> usize {
        self.map.lock().recover().len()
    }

    /// Every scanner, sorted by id.
    pub(crate) fn all(&self) -> Vec<Arc<ScannerEntry>> {
        let mut all: Vec<_> = self.map.lock().recover().values().cloned().collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// The `limit` scanners with the lowest ids, sorted, and how many there
    /// are in all: a partial selection, so topic info over 100k scanners
    /// sorts only what it lists.
    pub(crate) fn first(&self, limit: usize) -> (Vec<Arc<ScannerEntry>>, usize) {
        let mut some: Vec<_> = self.map.lock().recover().values().cloned().collect();
        let total = some.len();
        if limit < total {
            some.select_nth_unstable_by_key(limit, |s| s.id);
            some.truncate(limit);
        }
        some.sort_by_key(|s| s.id);
        (some, total)
    }

    /// Removes the scanners that are not persistent and have not been used
    /// for the idle TTL; returns their ids.
    pub(crate) fn expire_idle(&self) -> Vec<Uuid> {
        let ttl = IDLE_TTL_MS.load(Ordering::Relaxed);
        let now = now_ms();
        let mut map = self.map.lock().recover();
        let idle: Vec<Uuid> = map
            .values()
            .filter(|s| {
                !s.persistent && now.saturating_sub(s.last_used.load(Ordering::Relaxed)) >= ttl
            })
            .map(|s| s.id)
            .collect();
        for id in &idle {
            map.remove(id);
        }
        idle
    }

    /// Removes a scanner, and its file.
    pub(crate) fn remove(&self, id: &str) -> Result<(), TopicError> {
        let entry = self.get(id)?;
        self.map.lock().recover().remove(&entry.id);
        if entry.persistent {
            let path = self.path(&entry.id);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(TopicError::io(&path)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn save(&self, entry: &ScannerEntry) -> Result<(), TopicError> {
        let next = entry.next();
        if entry.saved.load(Ordering::Acquire) == next {
            return Ok(());
        }
        let last = i64::try_from(next).unwrap_or(i64::MAX).wrapping_sub(1);
        write_atomic(&self.path(&entry.id), &last.to_be_bytes())?;
        entry.saved.store(next, Ordering::Release);
        Ok(())
    }

    /// Saves every persistent scanner that moved since it was last saved.
    pub(crate) fn save_moved(&self) -> Result<(), TopicError> {
        let moved: Vec<_> = self
            .map
            .lock()
            .recover()
            .values()
            .filter(|s| s.persistent && s.saved.load(Ordering::Acquire) != s.next())
            .cloned()
            .collect();
        for s in moved {
            self.save(&s)?;
        }
        Ok(())
    }

    /// Restores the persistent scanners of `readers/` (see the module docs).
    pub(crate) fn load(&self, topic: &str, log: &Log) -> Result<(), TopicError> {
        let entries = std::fs::read_dir(&self.dir).map_err(TopicError::io(&self.dir))?;
        for entry in entries {
            let path = entry.map_err(TopicError::io(&self.dir))?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".scanner"))
                .and_then(|n| Uuid::parse_str(n).ok())
            else {
                continue;
            };
            let bytes = std::fs::read(&path).map_err(TopicError::io(&path))?;
            let wanted = match bytes.len() {
                // netlog's file for a scanner it never saved.
                0 => 0,
                8 => {
                    let last = i64::from_be_bytes(bytes[..].try_into().expect("8 bytes"));
                    last.saturating_add(1).max(0) as u64
                }
                n => {
                    tracing::warn!(path = %path.display(), bytes = n, "ignoring scanner file that is neither empty nor 8 bytes");
                    continue;
                }
            };
            // A position in a hole (a segment that lost its tail) moves to
            // the next stored offset.
            let at = log.existing_offset(wanted.clamp(log.oldest_offset(), log.next_offset()));
            if at != wanted {
                tracing::warn!(topic, %id, wanted, at, "scanner position no longer stored, moved");
            }
            // Moved or empty files are saved on the next tick; others are
            // left as they are.
            let unchanged = at == wanted && !bytes.is_empty();
            let e = self.add(log, id, at, at, true, true)?;
            if !unchanged {
                e.saved.store(u64::MAX, Ordering::Release);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogOptions;

    /// `first(n)` lists the n lowest ids, sorted, and counts every scanner.
    #[test]
    fn first_lists_the_lowest_ids_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let scanners = Scanners::new(dir.path());
        let ids: Vec<Uuid> = (0..50u128)
            .rev()
            .map(|i| Uuid::from_u128(i * 7919 % 101))
            .collect();
        for id in &ids {
            scanners.add(&log, *id, 0, 0, false, false).unwrap();
        }
        let (some, total) = scanners.first(10);
        assert_eq!(total, 50);
        let mut want = ids.clone();
        want.sort();
        want.truncate(10);
        assert_eq!(some.iter().map(|e| e.id).collect::<Vec<_>>(), want);
        assert_eq!(scanners.first(100).0.len(), 50);
        assert!(scanners.first(0).0.is_empty());
    }
}
