//! One process-wide, bounded set of open descriptors for segment files.
//!
//! A broker may hold 100,000 segments; opening two descriptors for each and
//! keeping them forever runs any process out of descriptors. So a segment
//! names its files with a [`LazyFile`] instead of holding a `File`:
//!
//! * the **active** segment *pins* its data file: it stays open outside the
//!   cache (the writer uses it on every flush) and does not count against its
//!   cap; that is one descriptor per topic;
//! * every other file (a sealed segment's data file, and every index file)
//!   opens on first use into one least-recently-used cache shared by every
//!   log of the process, capped at [`DEFAULT_OPEN_FILES`] descriptors (see
//!   [`set_open_file_limit`]). Opening one more closes the least recently
//!   used one. Data files reopen read-only, index files read-write (the
//!   writer's `pwrite` and `fsync` work on whichever descriptor is open:
//!   fsync writes back the file, not the descriptor).
//!
//! A caller gets an `Arc<File>`, so a descriptor evicted while a read is
//! under way is closed when that read ends: the cap is exceeded by at most
//! the reads in flight. Dropping a `LazyFile` (its segment trimmed or its log
//! deleted) takes its descriptor out of the cache, so the space of a removed
//! file is freed once the last reader lets go.

use crate::lock::Recover;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

/// Default cap on descriptors the cache keeps open for sealed segments
/// (pinned active segments come on top), well under the usual soft limit of
/// 1,024 descriptors.
pub const DEFAULT_OPEN_FILES: usize = 512;

static CAP: AtomicUsize = AtomicUsize::new(DEFAULT_OPEN_FILES);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(Cache::default()));

/// Sets the cap on descriptors kept open for sealed segments (at least 1);
/// the config calls it at start-up. Takes effect at the next open.
pub fn set_open_file_limit(cap: usize) {
    CAP.store(cap.max(1), Ordering::Relaxed);
}

/// The cap set by [`set_open_file_limit`].
pub fn open_file_limit() -> usize {
    CAP.load(Ordering::Relaxed)
}

/// Descriptors the cache holds now (pinned files not included).
pub fn cached_open_files() -> usize {
    lock_cache().open.len()
}

/// Hands the heap's free pages back to the system (glibc keeps what a
/// burst of allocations freed, and RSS with it); a no-op elsewhere.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no
    // pointer and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Raises the soft limit on open descriptors to the hard limit (and, where
/// the process may, the hard limit to the kernel's `fs.nr_open`); returns the
/// old and new soft limits. A broker with thousands of topics needs one
/// pinned descriptor per topic (its active data file) on top of the cache.
pub fn raise_open_file_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the call to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let old = lim.rlim_cur;
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if nr_open > lim.rlim_max {
        let wider = libc::rlimit {
            rlim_cur: nr_open,
            rlim_max: nr_open,
        };
        // SAFETY: `wider` is a valid rlimit; without the privilege to raise
        // the hard limit the call fails and changes nothing.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wider) } == 0 {
            return Ok((old, nr_open));
        }
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit read just above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((old, lim.rlim_cur))
}

#[derive(Default)]
struct Cache {
    /// id → (file, last use).
    open: HashMap<u64, (Arc<File>, u64)>,
    /// last use → id, oldest first.
    by_use: BTreeMap<u64, u64>,
    clock: u64,
}

impl Cache {
    fn touch(&mut self, id: u64) -> Option<Arc<File>> {
        self.clock += 1;
        let clock = self.clock;
        let (file, used) = self.open.get_mut(&id)?;
        self.by_use.remove(used);
        *used = clock;
        self.by_use.insert(clock, id);
        Some(file.clone())
    }

    fn insert(&mut self, id: u64, file: Arc<File>, cap: usize) {
        while self.open.len() >= cap {
            let Some((_, old)) = self.by_use.pop_first() else {
                break;
            };
            self.open.remove(&old);
        }
        self.clock += 1;
        self.by_use.insert(self.clock, id);
        self.open.insert(id, (file, self.clock));
    }

    fn remove(&mut self, id: u64) {
        if let Some((_, used)) = self.open.remove(&id) {
            self.by_use.remove(&used);
        }
    }
}

fn lock_cache() -> std::sync::MutexGuard<'static, Cache> {
    CACHE.lock().recover()
}

/// A segment file that is open while pinned, or opened on demand through the
/// process-wide cache. See the module docs.
pub(crate) struct LazyFile {
    id: u64,
    path: PathBuf,
    /// Reopened for writing too (an index, which recovery and the writer
    /// write through the cache).
    writable: bool,
    pinned: RwLock<Option<Arc<File>>>,
}

impl LazyFile {
    /// A file kept open (pinned) as `file` until [`unpin`](Self::unpin).
    pub(crate) fn pinned(path: PathBuf, file: File) -> LazyFile {
        LazyFile {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            path,
            writable: false,
            pinned: RwLock::new(Some(Arc::new(file))),
        }
    }

    /// A file that is never pinned: `file` goes into the cache now, and is
    /// reopened (for reading and writing) whenever it was evicted.
    pub(crate) fn cached(path: PathBuf, file: File) -> LazyFile {
        let lf = LazyFile {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            path,
            writable: true,
            pinned: RwLock::new(None),
        };
        lock_cache().insert(lf.id, Arc::new(file), open_file_limit());
        lf
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Closes the pinned descriptor; later uses go through the cache.
    pub(crate) fn unpin(&self) {
        *self.pinned.write().recover() = None;
    }

    /// Whether the file is pinned open.
    #[cfg(test)]
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned.read().recover().is_some()
    }

    /// The open file: the pinned one, a cached one, or freshly opened
    /// (read-only) into the cache.
    pub(crate) fn get(&self) -> io::Result<Arc<File>> {
        if let Some(f) = &*self.pinned.read().recover() {
            return Ok(f.clone());
        }
        if let Some(f) = lock_cache().touch(self.id) {
            return Ok(f);
        }
        // Opened outside the lock: a slow open must not stall every reader.
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(self.writable)
                .open(&self.path)?,
        );
        let mut cache = lock_cache();
        if let Some(f) = cache.touch(self.id) {
            return Ok(f);
        }
        cache.insert(self.id, file.clone(), open_file_limit());
        Ok(file)
    }
}

impl Drop for LazyFile {
    fn drop(&mut self) {
        lock_cache().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn some_file(dir: &Path, name: &str) -> (PathBuf, File) {
        let p = dir.join(name);
        std::fs::write(&p, b"x").unwrap();
        let f = File::open(&p).unwrap();
        (p, f)
    }

    /// The cache never holds more than its cap and closes the least recently
    /// used descriptor first.
    #[test]
    fn cache_evicts_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::default();
        for id in 1..=3 {
            c.insert(id, Arc::new(some_file(dir.path(), "f").1), 3);
        }
        assert!(c.touch(1).is_some());
        c.insert(4, Arc::new(some_file(dir.path(), "f").1), 3);
        assert_eq!(c.open.len(), 3);
        assert!(c.touch(2).is_none(), "2 was the least recently used");
        assert!(c.touch(1).is_some() && c.touch(3).is_some() && c.touch(4).is_some());
        c.insert(5, Arc::new(some_file(dir.path(), "f").1), 2);
        assert_eq!(c.open.len(), 2);
        assert_eq!(c.by_use.len(), 2);
    }

    /// An unpinned file opens through the cache on use, and dropping it takes
    /// its descriptor out of the cache.
    #[test]
    fn unpinned_file_opens_on_demand_and_leaves_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let (p, f) = some_file(dir.path(), "a");
        let lf = LazyFile::pinned(p, f);
        assert!(lf.is_pinned());
        lf.unpin();
        assert!(!lf.is_pinned());
        let id = lf.id;
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 1];
        lf.get().unwrap().read_exact_at(&mut b, 0).unwrap();
        assert_eq!(&b, b"x");
        drop(lf);
        assert!(lock_cache().touch(id).is_none());
    }
}
