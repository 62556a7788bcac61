//! A group's journal: every change to its state, as fixed-size records,
//! appended before the answer that depends on it.
//!
//! A record is 32 bytes, little-endian: CRC-32 of the 28 bytes after it,
//! kind (1 byte), 3 zero bytes, offset (u64), deliveries (u32), generation
//! (u32), and a 64-bit argument (a time in milliseconds, or the next
//! offset of a base). Fixed size makes a torn tail easy to find: on open the
//! journal is read up to the first record that is short, fails its CRC or
//! has an unknown kind, and cut there (the cut is counted and logged).
//! A batch of changes is one `write` of all its records.
//!
//! The journal is compacted by rewriting it from the state
//! ([`super::state::State::snapshot`]): at every open and clean stop, when
//! it passes [`COMPACT_BYTES`], and [`COMPACT_EVERY`] after the last
//! rewrite if it grew since. The new file is written beside it, fsynced and
//! renamed over it, so a crash leaves the old or the new one, never a mix.
//! While the group runs, the snapshot is taken under the group's lock but
//! written without it ([`Journal::mark`], [`write_snapshot`]); then, under
//! the lock again, the records appended meanwhile are copied after it
//! ([`Journal::swap_in`]): the only I/O under the lock is that short tail.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::clock::Tick;

use super::state::Change;

/// Size of one record.
pub(crate) const RECORD: usize = 32;
/// A journal past this size (64 MiB) is compacted.
pub(crate) const COMPACT_BYTES: u64 = 64 << 20;
/// A journal that grew is compacted this long (10 minutes) after its last
/// rewrite.
pub(crate) const COMPACT_EVERY: Duration = Duration::from_secs(600);

/// The open journal of one group.
pub(crate) struct Journal {
    path: PathBuf,
    /// Shared with the fsync that follows a write outside the group's lock.
    file: Arc<File>,
    len: u64,
    /// fsync after every write (the broker's `fsync = "always"`).
    sync: bool,
    /// When it was last rewritten, and its size then.
    rewritten: (Tick, u64),
}

/// Where a rewrite started: the journal's size when its snapshot was taken.
pub(crate) struct Mark {
    tmp: PathBuf,
    len: u64,
}

/// Writes `changes` (a snapshot) to the file `mark` names, fsynced; returns
/// its size. Blocking; needs no lock.
pub(crate) fn write_snapshot(mark: &Mark, changes: &[Change]) -> std::io::Result<u64> {
    let mut buf = Vec::with_capacity(changes.len() * RECORD);
    for c in changes {
        encode(c, &mut buf);
    }
    let mut f = File::create(&mark.tmp)?;
    f.write_all(&buf)?;
    f.sync_all()?;
    Ok(buf.len() as u64)
}

/// What opening found.
pub(crate) struct Opened {
    pub(crate) journal: Journal,
    pub(crate) changes: Vec<Change>,
    /// Bytes cut from a torn or damaged tail.
    pub(crate) cut: u64,
}

fn encode(change: &Change, out: &mut Vec<u8>) {
    let (kind, offset, deliveries, generation, arg) = match *change {
        Change::Base { next } => (1u8, next, 0, 0, 0),
        Change::Deliver {
            offset,
            deliveries,
            generation,
            lease_ms,
        } => (2, offset, deliveries, generation, lease_ms),
        Change::Ack { offset } => (3, offset, 0, 0, 0),
        Change::Nack { offset, delay_ms } => (4, offset, 0, 0, delay_ms),
        Change::Extend { offset, lease_ms } => (5, offset, 0, 0, lease_ms),
        Change::Dead { offset } => (6, offset, 0, 0, 0),
        Change::Drop { offset } => (7, offset, 0, 0, 0),
        Change::Lost { offset } => (8, offset, 0, 0, 0),
        Change::Release { offset, deliveries } => (9, offset, deliveries, 0, 0),
        Change::Seek { to, generation } => (10, to, 0, generation, 0),
        Change::Skip { to } => (11, to, 0, 0, 0),
    };
    let mut rec = [0u8; RECORD];
    rec[4] = kind;
    rec[8..16].copy_from_slice(&offset.to_le_bytes());
    rec[16..20].copy_from_slice(&deliveries.to_le_bytes());
    rec[20..24].copy_from_slice(&generation.to_le_bytes());
    rec[24..32].copy_from_slice(&arg.to_le_bytes());
    let crc = crate::message::crc32(&rec[4..]);
    rec[..4].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&rec);
}

fn decode(rec: &[u8]) -> Option<Change> {
    let crc = u32::from_le_bytes(rec[..4].try_into().ok()?);
    if crc != crate::message::crc32(&rec[4..RECORD]) || rec[5..8] != [0, 0, 0] {
        return None;
    }
    let offset = u64::from_le_bytes(rec[8..16].try_into().ok()?);
    let deliveries = u32::from_le_bytes(rec[16..20].try_into().ok()?);
    let generation = u32::from_le_bytes(rec[20..24].try_into().ok()?);
    let arg = u64::from_le_bytes(rec[24..32].try_into().ok()?);
    Some(match rec[4] {
        1 => Change::Base { next: offset },
        2 => Change::Deliver {
            offset,
            deliveries,
            generation,
            lease_ms: arg,
        },
        3 => Change::Ack { offset },
        4 => Change::Nack {
            offset,
            delay_ms: arg,
        },
        5 => Change::Extend {
            offset,
            lease_ms: arg,
        },
        6 => Change::Dead { offset },
        7 => Change::Drop { offset },
        8 => Change::Lost { offset },
        9 => Change::Release { offset, deliveries },
        10 => Change::Seek {
            to: offset,
            generation,
        },
        11 => Change::Skip { to: offset },
        _ => return None,
    })
}

impl Journal {
    /// Opens (creating) the journal at `path` and reads its records, cutting
    /// a torn tail. Blocking.
    pub(crate) fn open(path: &Path, sync: bool) -> std::io::Result<Opened> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut changes = Vec::with_capacity(bytes.len() / RECORD);
        let mut good = 0;
        for rec in bytes.chunks(RECORD) {
            let Some(change) = (rec.len() == RECORD).then(|| decode(rec)).flatten() else {
                break;
            };
            changes.push(change);
            good += RECORD;
        }
        let cut = (bytes.len() - good) as u64;
        if cut > 0 {
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        Ok(Opened {
            journal: Journal {
                path: path.to_path_buf(),
                file: Arc::new(file),
                len: good as u64,
                sync,
                rewritten: (Tick::now(), good as u64),
            },
            changes,
            cut,
        })
    }

    /// Appends `changes` in one `write`. Under `fsync = "always"` the
    /// caller fsyncs through [`Journal::to_sync`] after releasing its lock.
    pub(crate) fn append(&mut self, changes: &[Change]) -> std::io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(changes.len() * RECORD);
        for c in changes {
            encode(c, &mut buf);
        }
        if let Err(e) = (&*self.file).write_all(&buf) {
            // A short write leaves a torn record; cut it so the next append
            // starts on a record boundary.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    /// The file to fsync after a write, under `fsync = "always"`.
    pub(crate) fn to_sync(&self) -> Option<Arc<File>> {
        self.sync.then(|| self.file.clone())
    }

    /// Whether a compaction is due: past [`COMPACT_BYTES`], or grown since
    /// a rewrite [`COMPACT_EVERY`] ago.
    pub(crate) fn due(&self) -> bool {
        self.due_at(Tick::now())
    }

    fn due_at(&self, now: Tick) -> bool {
        let (at, len) = self.rewritten;
        self.len > COMPACT_BYTES
            || (self.len > len && now.saturating_duration_since(at) >= COMPACT_EVERY)
    }

    /// Replaces the journal with `changes` (a snapshot of the state after
    /// every record in it): written beside it, fsynced, renamed over it.
    /// Blocking.
    pub(crate) fn rewrite(&mut self, changes: &[Change]) -> std::io::Result<()> {
        let mark = self.mark();
        let written = write_snapshot(&mark, changes)?;
        self.swap_in(&mark, written)
    }

    /// Starts a rewrite whose snapshot is of the state now.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            tmp: self.path.with_extension("tmp"),
            len: self.len,
        }
    }

    /// Ends a rewrite: copies the records appended since `mark` after the
    /// snapshot (`written` bytes, from [`write_snapshot`]), fsyncs them,
    /// and renames the new file over the journal. Blocking.
    pub(crate) fn swap_in(&mut self, mark: &Mark, written: u64) -> std::io::Result<()> {
        let tail_len = self.len - mark.len;
        if tail_len > 0 {
            let mut tail = vec![0u8; tail_len as usize];
            std::os::unix::fs::FileExt::read_exact_at(
                &File::open(&self.path)?,
                &mut tail,
                mark.len,
            )?;
            let mut f = OpenOptions::new().append(true).open(&mark.tmp)?;
            f.write_all(&tail)?;
            // A write appended before the swap may still wait for its
            // fsync, which would go to the old file.
            f.sync_data()?;
        }
        std::fs::rename(&mark.tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = Arc::new(OpenOptions::new().append(true).open(&self.path)?);
        self.len = written + tail_len;
        self.rewritten = (Tick::now(), self.len);
        Ok(())
    }

    /// fsyncs what was written (at shutdown and on the interval policy).
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Change> {
        vec![
            Change::Base { next: 7 },
            Change::Deliver {
                offset: 7,
                deliveries: 1,
                generation: 2,
                lease_ms: 30_000,
            },
            Change::Nack {
                offset: 7,
                delay_ms: 10,
            },
            Change::Extend {
                offset: 7,
                lease_ms: 5,
            },
            Change::Ack { offset: 7 },
            Change::Dead { offset: 8 },
            Change::Drop { offset: 9 },
            Change::Lost { offset: 10 },
            Change::Release {
                offset: 11,
                deliveries: 3,
            },
            Change::Seek {
                to: 12,
                generation: 3,
            },
            Change::Skip { to: 13 },
        ]
    }

    #[test]
    fn records_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let mut j = Journal::open(&path, false).expect("open").journal;
        j.append(&sample()).expect("append");
        let again = Journal::open(&path, false).expect("reopen");
        assert_eq!(again.changes, sample());
        assert_eq!(again.cut, 0);
    }

    /// A journal torn at every byte of its last record keeps every record
    /// before it, cuts the rest, and takes appends after the cut.
    /// A rewrite whose snapshot was written while records were appended
    /// keeps those records after it, in order, and restarts the clock of
    /// [`Journal::due`].
    #[test]
    fn records_appended_during_a_rewrite_follow_the_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let mut j = Journal::open(&path, false).expect("open").journal;
        let now = Tick::now();
        assert!(!j.due_at(now + COMPACT_EVERY), "not grown since");
        j.append(&sample()).expect("append");
        assert!(!j.due_at(now));
        assert!(j.due_at(now + COMPACT_EVERY), "grown, ten minutes on");
        let mark = j.mark();
        let snapshot = [Change::Base { next: 8 }];
        let written = write_snapshot(&mark, &snapshot).expect("snapshot");
        let meanwhile = [Change::Base { next: 9 }, Change::Skip { to: 12 }];
        j.append(&meanwhile).expect("append meanwhile");
        j.swap_in(&mark, written).expect("swap in");
        j.append(&[Change::Drop { offset: 12 }])
            .expect("append after");
        assert!(!j.due_at(Tick::now() + COMPACT_EVERY / 2));
        let again = Journal::open(&path, false).expect("reopen");
        assert_eq!(again.cut, 0);
        let mut want = snapshot.to_vec();
        want.extend(meanwhile);
        want.push(Change::Drop { offset: 12 });
        assert_eq!(again.changes, want);
        assert!(!dir.path().join("journal.tmp").exists());
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let mut whole = Vec::new();
        for c in sample() {
            encode(&c, &mut whole);
        }
        let last = whole.len() - RECORD;
        for keep in last..whole.len() {
            std::fs::write(&path, &whole[..keep]).expect("write");
            let opened = Journal::open(&path, false).expect("open");
            assert_eq!(
                opened.changes,
                sample()[..sample().len() - 1],
                "cut at {keep}"
            );
            assert_eq!(opened.cut, (keep - last) as u64);
            let mut j = opened.journal;
            j.append(&[Change::Ack { offset: 1 }]).expect("append");
            let again = Journal::open(&path, false).expect("reopen");
            assert_eq!(again.changes.last(), Some(&Change::Ack { offset: 1 }));
            assert_eq!(again.cut, 0);
        }
        // A flipped bit in the last record: cut there too.
        for byte in last..whole.len() {
            let mut bad = whole.clone();
            bad[byte] ^= 0x40;
            std::fs::write(&path, &bad).expect("write");
            let opened = Journal::open(&path, false).expect("open");
            assert_eq!(opened.changes.len(), sample().len() - 1, "flip at {byte}");
        }
    }

    #[test]
    fn a_rewrite_replaces_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let mut j = Journal::open(&path, false).expect("open").journal;
        j.append(&sample()).expect("append");
        j.rewrite(&[Change::Base { next: 99 }]).expect("rewrite");
        j.append(&[Change::Ack { offset: 100 }]).expect("append");
        let again = Journal::open(&path, false).expect("reopen");
        assert_eq!(
            again.changes,
            vec![Change::Base { next: 99 }, Change::Ack { offset: 100 }]
        );
        assert!(!path.with_extension("tmp").exists());
    }
}
