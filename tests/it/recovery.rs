//! Crash tests: a log is written, its files are damaged the ways a crash (or a
//! bad disk) damages them, and the log is reopened.
//!
//! The oracle is the history of what was written: every write's offsets,
//! payloads, segment and the byte range it occupies in the data file (read back
//! from the index after a clean run). After reopening, a read may return a
//! message only with the exact bytes written at that offset. For pure cuts
//! (truncated files, appended zeros, lost indexes, torn headers) every message
//! whose bytes were fully inside the cut file must still be there, nothing past
//! the cut may be, and the log must continue at the right offset. For garbled
//! bytes, messages written before the first garbled byte must survive.
//!
//! Random points come from a seeded generator, so every run damages the same
//! files the same way; a failure names its history seed and iteration.

use crate::common;

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use netlog::log::{
    CheckKind, FsyncPolicy, Log, LogError, LogOptions, SEGMENT_HEADER_BYTES, recovery,
};
use netlog::message::{HEADER_BYTES, SET_GZIP, SET_NONE, SET_SNAPPY};

/// History seeds; each gives a different mix of writes and segment sizes.
/// `CRASH_HISTORIES` overrides it for a longer hunt.
fn histories_count() -> u64 {
    env_or("CRASH_HISTORIES", 4)
}

/// Damaged copies tried per history and kind of damage (`CRASH_ITERATIONS`).
fn iterations() -> u64 {
    env_or("CRASH_ITERATIONS", 12)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: small, seedable, good enough to pick damage.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_0fc0_ffee)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next() % (hi - lo)
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// One write (one index entry): a plain message or a set.
#[derive(Clone, Debug)]
struct Write {
    /// Base offset of the segment it went to.
    segment: u64,
    /// Byte range in that segment's data file.
    start: u64,
    end: u64,
    /// Offset of its first message.
    first: u64,
    payloads: Vec<Vec<u8>>,
    /// A plain message rather than a set.
    plain: bool,
}

/// Everything one run wrote.
struct History {
    dir: tempfile::TempDir,
    seed: u64,
    index_entries: u32,
    writes: Vec<Write>,
    /// Base offsets of all segments, the last (active) one possibly empty.
    segments: Vec<u64>,
}

impl History {
    fn opts(&self) -> LogOptions {
        options(self.index_entries)
    }

    fn total(&self) -> u64 {
        self.writes
            .last()
            .map_or(0, |w| w.first + w.payloads.len() as u64)
    }

    fn bases(&self) -> Vec<u64> {
        self.segments.clone()
    }

    fn active(&self) -> u64 {
        *self.segments.last().unwrap()
    }

    fn payload(&self, offset: u64) -> Option<&[u8]> {
        let i = self.writes.partition_point(|w| w.first <= offset);
        let w = &self.writes[i.checked_sub(1)?];
        w.payloads.get((offset - w.first) as usize).map(|p| &p[..])
    }

    /// Where the run of empty plain messages that ends the active segment
    /// starts, if it ends with one. Each is nine zero bytes: without an index
    /// entry vouching for them, recovery cannot tell them from unwritten pages.
    fn unvouched_empties(&self) -> Option<u64> {
        let active = self.active();
        self.writes
            .iter()
            .rev()
            .take_while(|w| w.segment == active && w.plain && w.payloads[0].is_empty())
            .last()
            .map(|w| w.first)
    }

    /// Offsets of every message of the writes `keep` accepts.
    fn offsets_where(&self, keep: impl Fn(&Write) -> bool) -> Vec<u64> {
        self.writes
            .iter()
            .filter(|w| keep(w))
            .flat_map(|w| w.first..w.first + w.payloads.len() as u64)
            .collect()
    }
}

fn options(index_entries: u32) -> LogOptions {
    LogOptions {
        index_entries,
        fsync: FsyncPolicy::Never,
        ..LogOptions::default()
    }
}

fn data_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.data"))
}

fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

fn random_payload(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.range(0, 100) {
        0..15 => rng.range(0, 3),
        15..80 => rng.range(3, 200),
        80..98 => rng.range(200, 5000),
        _ => rng.range(20_000, 100_000),
    } as usize;
    if rng.chance(50) {
        rng.bytes(len)
    } else {
        b"crash-test ".iter().copied().cycle().take(len).collect()
    }
}

/// Writes `writes` entries from `seed` (the same seed always writes the same
/// bytes), syncs, closes, and reads the byte ranges back from the indexes.
fn write_history(seed: u64, writes: usize) -> History {
    let mut rng = Rng::new(seed);
    let index_entries = rng.range(5, 16) as u32;
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options(index_entries)).unwrap();
    let mut written = Vec::new();
    for _ in 0..writes {
        let payloads: Vec<Vec<u8>> = if rng.chance(60) {
            vec![random_payload(&mut rng)]
        } else {
            (0..rng.range(1, 8))
                .map(|_| random_payload(&mut rng))
                .collect()
        };
        let plain = payloads.len() == 1 && rng.chance(70);
        let first = if plain {
            log.append(&payloads[0]).unwrap()
        } else {
            let c = [SET_NONE, SET_GZIP, SET_SNAPPY][rng.range(0, 3) as usize];
            log.append_set(&payloads, c).unwrap()
        };
        written.push((first, payloads, plain));
        if rng.chance(25) {
            log.flush().unwrap();
        }
        if rng.chance(4) {
            log.roll().unwrap();
        }
    }
    log.sync().unwrap();
    drop(log);

    // Index entries, segment by segment, in write order.
    let mut ranges = Vec::new();
    let segments = data_files(dir.path());
    for &base in &segments {
        let index = fs::read(index_path(dir.path(), base)).unwrap();
        let entries: Vec<(u64, u32, u64)> = index
            .chunks_exact(16)
            .map(|e| {
                let rel = u32::from_be_bytes(e[0..4].try_into().unwrap());
                let ts = u32::from_be_bytes(e[4..8].try_into().unwrap());
                let pos = u64::from_be_bytes(e[8..16].try_into().unwrap());
                (base + u64::from(rel) - 1, ts, pos)
            })
            .take_while(|e| e.1 != 0)
            .collect();
        let marker = &index[entries.len() * 16..entries.len() * 16 + 16];
        let end = u64::from_be_bytes(marker[8..16].try_into().unwrap());
        let len = fs::metadata(data_path(dir.path(), base)).unwrap().len();
        assert_eq!(end, len, "marker holds the data file's end");
        for (i, e) in entries.iter().enumerate() {
            let next = entries.get(i + 1).map_or(end, |n| n.2);
            ranges.push((base, e.0, e.2, next));
        }
    }
    assert_eq!(ranges.len(), written.len(), "one index entry per write");
    let writes = ranges
        .into_iter()
        .zip(written)
        .map(
            |((segment, offset, start, end), (first, payloads, plain))| {
                assert_eq!(offset, first, "index offsets match the returned ones");
                Write {
                    segment,
                    start,
                    end,
                    first,
                    payloads,
                    plain,
                }
            },
        )
        .collect();
    History {
        dir,
        seed,
        index_entries,
        writes,
        segments,
    }
}

/// Base offsets of the `.data` files in `dir`, sorted.
fn data_files(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".data").map(|s| s.parse().unwrap())
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// A fresh copy of the history's files to damage.
fn copy_of(h: &History) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for e in fs::read_dir(h.dir.path()).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), copy.path().join(e.file_name())).unwrap();
    }
    copy
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// What the reopened log must (and may) hold.
struct Expect {
    /// Offsets that must read back intact.
    must: Vec<u64>,
    /// For pure cuts: the exact next offset, and that nothing but `must`
    /// exists and no read fails.
    exact_next: Option<u64>,
    /// Offsets from here to `exact_next` may be lost as well (see
    /// `History::unvouched_empties`); the next offset then says which were.
    may_lose_from: Option<u64>,
}

/// Reopens the damaged copy and holds it to `expect`; then appends, reopens
/// again, and checks that a second recovery finds nothing to repair.
fn verify(h: &History, dir: &Path, expect: &Expect, what: &str) {
    let ctx = format!(
        "history {} ({} entries/index): {what}",
        h.seed, h.index_entries
    );
    let log = Log::open(dir, h.opts()).unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
    let next = log.next_offset();
    let mut must: BTreeSet<u64> = expect.must.iter().copied().collect();
    match (expect.exact_next, expect.may_lose_from) {
        (Some(want), Some(from)) => {
            assert!((from..=want).contains(&next), "{ctx}: next offset {next}");
            must.retain(|o| *o < from);
            must.extend(from..next);
        }
        (Some(want), None) => assert_eq!(next, want, "{ctx}: next offset"),
        (None, _) => {}
    }
    assert!(
        next <= expect.exact_next.unwrap_or(h.total()).max(h.total()),
        "{ctx}: next offset {next} past what was written"
    );
    if let Some(&last) = must.last() {
        assert!(last < next, "{ctx}: offset {last} lost (next is {next})");
    }
    assert_eq!(log.oldest_offset(), 0, "{ctx}: oldest offset");

    // Every offset: the reader answers for the offset asked, with the bytes
    // written there, or says it is not there (a hole).
    let mut returned = Vec::new();
    for o in 0..next {
        let first = log.reader(o).and_then(|mut r| r.next());
        match first {
            Ok(Some(m)) => {
                let want = h.payload(m.offset);
                assert!(
                    want == Some(&m.payload[..]),
                    "{ctx}: reading from {o} returned a wrong message at {}",
                    m.offset
                );
                assert_eq!(
                    m.offset, o,
                    "{ctx}: reading from {o} answered another offset"
                );
                returned.push(o);
            }
            Ok(None) => assert!(
                must.range(o..).next().is_none(),
                "{ctx}: reading from {o} found nothing, but offsets after it were kept"
            ),
            Err(LogError::OffsetNotFound(_)) => {
                assert!(!must.contains(&o), "{ctx}: offset {o} not found")
            }
            Err(e) => assert!(
                expect.exact_next.is_none() && !must.contains(&o),
                "{ctx}: reading from {o} failed: {e}"
            ),
        }
    }
    for o in &must {
        assert!(returned.contains(o), "{ctx}: offset {o} not returned");
    }
    if expect.exact_next.is_some() {
        assert!(returned.iter().eq(&must), "{ctx}: exactly the kept offsets");
        // And one sequential pass sees the same, without errors.
        let mut r = log.reader(log.existing_offset(0)).unwrap();
        let mut seen = Vec::new();
        while let Some(m) = r
            .next()
            .unwrap_or_else(|e| panic!("{ctx}: sequential read failed: {e}"))
        {
            seen.push(m.offset);
        }
        assert!(seen.iter().eq(&must), "{ctx}: sequential read");
    }

    // The log continues at its next offset, and says so after reopening.
    let at = log.append(b"after the crash").unwrap();
    assert_eq!(at, next, "{ctx}: first append after reopening");
    log.flush().unwrap();
    drop(log);
    let log = Log::open(dir, h.opts()).unwrap();
    assert_eq!(
        log.next_offset(),
        next + 1,
        "{ctx}: next offset after append"
    );
    let m = log.reader(at).unwrap().next().unwrap().unwrap();
    assert_eq!((m.offset, &m.payload[..]), (at, &b"after the crash"[..]));
    for o in &must {
        let m = log.reader(*o).unwrap().next().unwrap().unwrap();
        assert!(
            h.payload(*o) == Some(&m.payload[..]),
            "{ctx}: {o} after append"
        );
    }
    drop(log);

    // Recovery converged: opening again repairs nothing.
    let bases = data_files(dir);
    for (i, base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let (_, repair) =
            recovery::open_segment(dir, *base, h.index_entries, &h.opts().codecs, next_base)
                .unwrap();
        assert!(
            !repair.changed(),
            "{ctx}: segment {base} repaired twice: {repair:?}"
        );
    }
}

fn histories() -> impl Iterator<Item = History> {
    (0..histories_count()).map(|seed| write_history(seed, 60 + 20 * seed as usize))
}

/// The writes fully inside `[0, cut)` of segment `base` survive; every other
/// segment is untouched.
fn kept_after_cut(h: &History, base: u64, cut: u64) -> Vec<u64> {
    h.offsets_where(|w| w.segment != base || w.end <= cut)
}

/// A cut point in `16..=len`, often right at or next to an entry boundary.
fn cut_point(h: &History, base: u64, len: u64, rng: &mut Rng) -> u64 {
    let bounds: Vec<u64> = h
        .writes
        .iter()
        .filter(|w| w.segment == base)
        .map(|w| w.end)
        .collect();
    if !bounds.is_empty() && rng.chance(40) {
        let b = bounds[rng.range(0, bounds.len() as u64) as usize];
        return (b + rng.range(0, 3)).saturating_sub(1).clamp(16, len);
    }
    rng.range(16, len + 1)
}

/// Cutting the active data file anywhere keeps every message written before
/// the cut; the offsets the index vouched for past the cut are never reused
/// (they become a hole, not found).
#[test]
fn truncated_active_data_keeps_complete_messages() {
    for h in histories() {
        let mut rng = Rng::new(h.seed * 1000 + 1);
        let base = h.active();
        for it in 0..iterations() * 2 {
            let dir = copy_of(&h);
            let path = data_path(dir.path(), base);
            let cut = cut_point(&h, base, file_len(&path), &mut rng);
            set_len(&path, cut);
            let must = kept_after_cut(&h, base, cut);
            let expect = Expect {
                must,
                exact_next: Some(h.total()),
                may_lose_from: None,
            };
            verify(
                &h,
                dir.path(),
                &expect,
                &format!("#{it} active data cut at {cut}"),
            );
        }
    }
}

/// Cutting a sealed segment's data file loses only what was cut: later
/// segments stay readable at their own offsets, and reading from inside the
/// gap is offset not found, never another message.
#[test]
fn truncated_sealed_data_leaves_a_gap_only() {
    for h in histories() {
        let mut rng = Rng::new(h.seed * 1000 + 2);
        let bases = h.bases();
        if bases.len() < 2 {
            continue;
        }
        for it in 0..iterations() {
            let dir = copy_of(&h);
            let base = bases[rng.range(0, bases.len() as u64 - 1) as usize];
            let path = data_path(dir.path(), base);
            let cut = cut_point(&h, base, file_len(&path), &mut rng);
            set_len(&path, cut);
            let expect = Expect {
                must: kept_after_cut(&h, base, cut),
                exact_next: Some(h.total()),
                may_lose_from: None,
            };
            verify(
                &h,
                dir.path(),
                &expect,
                &format!("#{it} segment {base} data cut at {cut}"),
            );
        }
    }
}

/// A truncated index (of the active or a sealed segment) loses nothing: the
/// data file is the truth and the index is rebuilt from it.
#[test]
fn truncated_index_loses_nothing() {
    for h in histories() {
        let mut rng = Rng::new(h.seed * 1000 + 3);
        let bases = h.bases();
        for it in 0..iterations() {
            let dir = copy_of(&h);
            let base = if rng.chance(50) {
                h.active()
            } else {
                bases[rng.range(0, bases.len() as u64) as usize]
            };
            let path = index_path(dir.path(), base);
            let cut = rng.range(0, file_len(&path) + 1);
            set_len(&path, cut);
            let expect = Expect {
                must: h.offsets_where(|_| true),
                exact_next: Some(h.total()),
                may_lose_from: if base == h.active() {
                    h.unvouched_empties()
                } else {
                    None
                },
            };
            verify(
                &h,
                dir.path(),
                &expect,
                &format!("#{it} index {base} cut at {cut}"),
            );
        }
    }
}

/// A lost index (one segment's or all of them) is rebuilt from the data.
#[test]
fn deleted_index_is_rebuilt() {
    for h in histories() {
        let bases = h.bases();
        let mut victims: Vec<Vec<u64>> = bases.iter().map(|b| vec![*b]).collect();
        victims.push(bases.clone());
        for (it, victim) in victims.iter().enumerate() {
            let dir = copy_of(&h);
            for base in victim {
                fs::remove_file(index_path(dir.path(), *base)).unwrap();
            }
            let expect = Expect {
                must: h.offsets_where(|_| true),
                exact_next: Some(h.total()),
                may_lose_from: if victim.contains(&h.active()) {
                    h.unvouched_empties()
                } else {
                    None
                },
            };
            verify(
                &h,
                dir.path(),
                &expect,
                &format!("#{it} indexes {victim:?} deleted"),
            );
        }
    }
}

/// Zeros after the data (pages the OS had not written) are cut off, and are
/// never read as empty messages.
#[test]
fn appended_zeros_are_cut() {
    for h in histories() {
        let mut rng = Rng::new(h.seed * 1000 + 4);
        let base = h.active();
        for it in 0..iterations() {
            let dir = copy_of(&h);
            let path = data_path(dir.path(), base);
            let extra = match it % 3 {
                0 => HEADER_BYTES as u64 * rng.range(1, 20),
                1 => rng.range(1, 64),
                _ => rng.range(1, 3 * 4096),
            };
            set_len(&path, file_len(&path) + extra);
            // Sometimes the index is lost as well, so nothing vouches for the
            // data in front of the zeros.
            let lost_index = it % 4 == 3;
            if lost_index {
                fs::remove_file(index_path(dir.path(), base)).unwrap();
            }
            let expect = Expect {
                must: h.offsets_where(|_| true),
                exact_next: Some(h.total()),
                may_lose_from: if lost_index {
                    h.unvouched_empties()
                } else {
                    None
                },
            };
            let what = format!("#{it} {extra} zeros appended, index lost: {lost_index}");
            verify(&h, dir.path(), &expect, &what);
        }
    }
}

/// A data file torn inside its 16-byte header holds no message: the active
/// segment's offsets that the index vouched for stay reserved (the log goes
/// on after them), a sealed one leaves a gap.
#[test]
fn torn_data_header_empties_the_segment() {
    for h in histories() {
        let bases = h.bases();
        for cut in 0..SEGMENT_HEADER_BYTES {
            let base = bases[cut as usize % bases.len()];
            let dir = copy_of(&h);
            set_len(&data_path(dir.path(), base), cut);
            let expect = Expect {
                must: h.offsets_where(|w| w.segment != base),
                exact_next: Some(h.total()),
                may_lose_from: None,
            };
            let what = format!("segment {base} data header torn at {cut}");
            verify(&h, dir.path(), &expect, &what);
        }
    }
}

/// Garbled bytes in the data tail never come back as messages; everything
/// written before the first garbled byte survives.
///
/// The compver byte is left alone: netlog's CRC covers only the payload, so a
/// set whose compver turns into 0 reads as one plain message holding the
/// compressed bytes, and no reader can tell.
#[test]
fn garbled_data_tail_is_never_returned() {
    for h in histories() {
        let mut rng = Rng::new(h.seed * 1000 + 5);
        let base = h.active();
        let starts: Vec<u64> = h
            .writes
            .iter()
            .filter(|w| w.segment == base)
            .map(|w| w.start)
            .collect();
        for it in 0..iterations() * 2 {
            let dir = copy_of(&h);
            let path = data_path(dir.path(), base);
            let mut data = fs::read(&path).unwrap();
            let len = data.len() as u64;
            let from = len.saturating_sub(2000).max(SEGMENT_HEADER_BYTES);
            if from >= len {
                continue;
            }
            let mut first_bad = u64::MAX;
            for _ in 0..rng.range(1, 4) {
                let at = rng.range(from, len);
                if starts.contains(&at) {
                    continue;
                }
                let old = data[at as usize];
                data[at as usize] = old ^ (rng.range(1, 256) as u8);
                first_bad = first_bad.min(at);
            }
            fs::write(&path, &data).unwrap();
            let expect = Expect {
                must: h.offsets_where(|w| w.segment != base || w.end <= first_bad),
                exact_next: None,
                may_lose_from: None,
            };
            verify(
                &h,
                dir.path(),
                &expect,
                &format!("#{it} data garbled from {first_bad}"),
            );
        }
    }
}

/// A damaged index of the active segment costs nothing: garbled entries,
/// entries pointing elsewhere (even at a message inside a set) and an
/// all-zero index are rebuilt from the data. An index from a longer run
/// (ahead of the data, as after a power cut) keeps every message too, and
/// its offsets past the data are never reused.
#[test]
fn garbled_active_index_is_rebuilt_from_data() {
    for h in histories() {
        let mut rng = Rng::new(h.seed * 1000 + 6);
        let base = h.active();
        let longer = write_history(h.seed, h.writes.len() + 15);
        let in_active: Vec<&Write> = h.writes.iter().filter(|w| w.segment == base).collect();
        // What the longer run's index of this segment vouches for: up to its
        // marker, or to its last entry's first offset when it is full.
        let longer_in: Vec<&Write> = longer.writes.iter().filter(|w| w.segment == base).collect();
        let longer_next = match longer_in.last() {
            Some(w) if longer_in.len() == longer.index_entries as usize => w.first,
            Some(w) => w.first + w.payloads.len() as u64,
            None => base,
        }
        .max(h.total());
        for it in 0..iterations() * 2 {
            let dir = copy_of(&h);
            let path = index_path(dir.path(), base);
            let mut index = fs::read(&path).unwrap();
            let used = (in_active.len() + 1) * 16;
            let what = match it % 5 {
                0 => {
                    for _ in 0..rng.range(1, 4) {
                        let at = rng.range(0, used as u64) as usize;
                        index[at] ^= rng.range(1, 256) as u8;
                    }
                    "random bytes garbled".to_string()
                }
                1 => {
                    // An entry points somewhere else in the data.
                    let e = rng.range(0, in_active.len() as u64 + 1) as usize;
                    let len = file_len(&data_path(dir.path(), base));
                    let pos = rng.range(SEGMENT_HEADER_BYTES, len + 1);
                    index[e * 16 + 8..e * 16 + 16].copy_from_slice(&pos.to_be_bytes());
                    format!("entry {e} points at {pos}")
                }
                2 => {
                    // An entry points at the first message inside a set.
                    let sets: Vec<usize> = (0..in_active.len())
                        .filter(|i| in_active[*i].payloads.len() > 1)
                        .collect();
                    if sets.is_empty() {
                        continue;
                    }
                    let e = sets[rng.range(0, sets.len() as u64) as usize];
                    let pos = in_active[e].start + HEADER_BYTES as u64;
                    let at = if rng.chance(50) { e } else { e + 1 };
                    index[at * 16 + 8..at * 16 + 16].copy_from_slice(&pos.to_be_bytes());
                    format!("entry {at} points inside the set of entry {e}")
                }
                3 => {
                    index.fill(0);
                    "all zeros".to_string()
                }
                _ => {
                    index = fs::read(index_path(longer.dir.path(), base)).unwrap();
                    "index of a longer run".to_string()
                }
            };
            fs::write(&path, &index).unwrap();
            let ahead = it % 5 == 4;
            let expect = Expect {
                must: h.offsets_where(|_| true),
                exact_next: Some(if ahead { longer_next } else { h.total() }),
                may_lose_from: if ahead { None } else { h.unvouched_empties() },
            };
            verify(&h, dir.path(), &expect, &format!("#{it} {what}"));
        }
    }
}

/// A damaged index of a sealed segment costs nothing either: garbage in its
/// entries' offsets or positions, an entry pointing elsewhere, an all-zero
/// index and a cut index are all rebuilt from the data (the quick path's
/// sample sees them), every message reads back at its offset, and `check`
/// names the rebuilt segment.
#[test]
fn damaged_sealed_index_is_rebuilt_from_data() {
    for h in histories() {
        let mut rng = Rng::new(h.seed * 1000 + 8);
        let sealed: Vec<u64> = h.bases()[..h.bases().len() - 1].to_vec();
        if sealed.is_empty() {
            continue;
        }
        for it in 0..iterations() * 2 {
            let dir = copy_of(&h);
            let base = sealed[rng.range(0, sealed.len() as u64) as usize];
            let path = index_path(dir.path(), base);
            let mut index = fs::read(&path).unwrap();
            let entries = h.writes.iter().filter(|w| w.segment == base).count();
            if entries == 0 {
                continue;
            }
            let e = rng.range(0, entries as u64) as usize;
            let what = match it % 5 {
                0 => {
                    // A high byte of a relative offset (as in `1644245182`).
                    index[e * 16] ^= rng.range(1, 256) as u8;
                    format!("entry {e}'s offset garbled")
                }
                1 => {
                    index[e * 16 + 8 + rng.range(0, 8) as usize] ^= rng.range(1, 256) as u8;
                    format!("entry {e}'s position garbled")
                }
                2 => {
                    let len = file_len(&data_path(dir.path(), base));
                    let pos = rng.range(SEGMENT_HEADER_BYTES, len);
                    let w = h
                        .writes
                        .iter()
                        .filter(|w| w.segment == base)
                        .nth(e)
                        .unwrap();
                    if pos == w.start {
                        continue;
                    }
                    index[e * 16 + 8..e * 16 + 16].copy_from_slice(&pos.to_be_bytes());
                    format!("entry {e} points at {pos}")
                }
                3 => {
                    index.fill(0);
                    "all zeros".to_string()
                }
                _ => {
                    index.truncate(e * 16 + rng.range(0, 16) as usize);
                    format!("cut inside entry {e}")
                }
            };
            fs::write(&path, &index).unwrap();
            let ctx = format!("history {}: #{it} segment {base}: {what}", h.seed);
            let log = Log::open(dir.path(), h.opts()).unwrap();
            let problems = log.check(0).unwrap();
            assert!(
                problems
                    .iter()
                    .any(|p| p.kind == CheckKind::Index && p.offset == base),
                "{ctx}: check names the rebuilt segment: {problems:?}"
            );
            assert!(
                problems.iter().all(|p| p.kind == CheckKind::Index),
                "{ctx}: nothing else is wrong: {problems:?}"
            );
            drop(log);
            let expect = Expect {
                must: h.offsets_where(|_| true),
                exact_next: Some(h.total()),
                may_lose_from: None,
            };
            verify(&h, dir.path(), &expect, &ctx);
        }
    }
}

/// Damage the open's sample misses (one relative offset nudged by one in a
/// large sealed index) is found by `check`, which rebuilds that index from
/// the data, names the segment, and leaves every message readable at its
/// offset.
#[test]
fn check_rebuilds_a_sealed_index_the_sample_missed() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || options(64);
    let log = Log::open(dir.path(), opts()).unwrap();
    let mut want = Vec::new();
    for i in 0..40u32 {
        // Even entries are sets of two, odd ones plain messages.
        let payloads: Vec<Vec<u8>> = if i % 2 == 0 {
            vec![
                format!("set {i} a").into_bytes(),
                format!("set {i} b").into_bytes(),
            ]
        } else {
            vec![format!("plain {i}").into_bytes()]
        };
        let first = if i % 2 == 0 {
            log.append_set(&payloads, SET_NONE).unwrap()
        } else {
            log.append(&payloads[0]).unwrap()
        };
        for (k, p) in payloads.into_iter().enumerate() {
            want.push((first + k as u64, p));
        }
        log.flush().unwrap();
    }
    log.roll().unwrap();
    log.append(b"active").unwrap();
    log.flush().unwrap();
    drop(log);
    // Entry 3 (after the set of entry 2): its relative offset one higher.
    // The sample checks pairs starting at entries 0, 2, 5, ...: the pair
    // (2, 3) sees a set, whose count it cannot check; (3, 4) is not sampled.
    let path = index_path(dir.path(), 0);
    let mut index = fs::read(&path).unwrap();
    let rel = u32::from_be_bytes(index[48..52].try_into().unwrap());
    index[48..52].copy_from_slice(&(rel + 1).to_be_bytes());
    fs::write(&path, &index).unwrap();

    let log = Log::open(dir.path(), opts()).unwrap();
    // The sample passed: offset 5, which the nudged index puts in entry 2's
    // set of two (offsets 3 and 4), reads as an error, never as a message.
    let missed = log.reader(5).and_then(|mut r| r.next());
    assert!(missed.is_err(), "the sample missed it: {missed:?}");
    let before = log.check(0).unwrap();
    assert!(
        before
            .iter()
            .any(|p| p.kind == CheckKind::Index && p.offset == 0),
        "check names the rebuilt segment: {before:?}"
    );
    assert!(
        before.iter().all(|p| p.kind == CheckKind::Index),
        "nothing else is left: {before:?}"
    );
    for (offset, payload) in &want {
        let m = log.reader(*offset).unwrap().next().unwrap().unwrap();
        assert_eq!((m.offset, &m.payload[..]), (*offset, &payload[..]));
    }
    assert_eq!(
        log.check(0).unwrap(),
        before,
        "a second check repairs nothing"
    );
    drop(log);
    let (_, repair) =
        recovery::open_segment(dir.path(), 0, 64, &opts().codecs, Some(want.len() as u64)).unwrap();
    assert!(
        !repair.changed(),
        "the rebuilt index is on disk: {repair:?}"
    );
}

/// A sealed index rebuilt from the data is replaced whole: no temporary
/// file is left, a leftover of an interrupted rebuild is removed on open,
/// and a healthy sealed index is not rewritten at all.
#[test]
fn rebuilt_sealed_index_is_replaced_atomically() {
    let h = histories()
        .find(|h| h.bases().len() > 2)
        .expect("a history with sealed segments");
    let dir = copy_of(&h);
    let sealed = h.bases()[0];
    let healthy = h.bases()[1];
    let healthy_before = fs::metadata(index_path(dir.path(), healthy)).unwrap();
    fs::write(index_path(dir.path(), sealed), [0u8; 40]).unwrap();
    let leftover = dir.path().join(format!("{sealed:020}.tmp.1.2"));
    fs::write(&leftover, b"half a rebuild").unwrap();
    let log = Log::open(dir.path(), h.opts()).unwrap();
    assert!(
        !leftover.exists(),
        "an interrupted rebuild's file is removed"
    );
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".tmp")),
        "no temporary file is left: {names:?}"
    );
    assert_eq!(
        file_len(&index_path(dir.path(), sealed)),
        u64::from(h.index_entries) * 16,
        "the rebuilt index has its capacity"
    );
    let healthy_after = fs::metadata(index_path(dir.path(), healthy)).unwrap();
    assert_eq!(
        healthy_before.modified().unwrap(),
        healthy_after.modified().unwrap(),
        "a healthy sealed index is not rewritten"
    );
    for o in h.offsets_where(|_| true) {
        let m = log.reader(o).unwrap().next().unwrap().unwrap();
        assert!(h.payload(o) == Some(&m.payload[..]), "offset {o}");
    }
}

/// Offsets before the oldest or past the next one are errors after recovery
/// too, not panics.
#[test]
fn out_of_range_reads_are_errors_after_recovery() {
    let h = write_history(9, 30);
    let dir = copy_of(&h);
    set_len(&data_path(dir.path(), h.active()), SEGMENT_HEADER_BYTES + 3);
    let log = Log::open(dir.path(), h.opts()).unwrap();
    let next = log.next_offset();
    assert!(matches!(
        log.reader(next + 1),
        Err(LogError::OffsetNotFound(_))
    ));
    assert!(log.reader(next).unwrap().next().unwrap().is_none());
}

/// Reads every message from offset 0 on.
fn read_all(log: &Log) -> Vec<(u64, Vec<u8>)> {
    let mut r = log.reader(0).unwrap();
    std::iter::from_fn(|| r.next().unwrap())
        .map(|m| (m.offset, m.payload.to_vec()))
        .collect()
}

/// An empty message is nine zero bytes: once its index entry is gone it is
/// kept if a verified message follows it, and cut like unwritten pages if it
/// ends the active segment.
#[test]
fn unvouched_empty_messages_survive_only_before_real_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options(64)).unwrap();
    for m in [&b"a"[..], b"", b"", b"b", b"", b""] {
        log.append(m).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    fs::remove_file(index_path(dir.path(), 0)).unwrap();
    let log = Log::open(dir.path(), options(64)).unwrap();
    let want: Vec<(u64, Vec<u8>)> = vec![
        (0, b"a".to_vec()),
        (1, vec![]),
        (2, vec![]),
        (3, b"b".to_vec()),
    ];
    assert_eq!(read_all(&log), want);
    assert_eq!(log.next_offset(), 4, "the trailing empty messages are cut");
}

/// In a sealed segment, trailing empty messages without an index are kept
/// when they account exactly for the offsets up to the next segment.
#[test]
fn unvouched_empty_messages_ending_a_sealed_segment_survive() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options(64)).unwrap();
    for m in [&b"a"[..], b"", b""] {
        log.append(m).unwrap();
    }
    log.roll().unwrap();
    log.append(b"c").unwrap();
    log.sync().unwrap();
    drop(log);
    fs::remove_file(index_path(dir.path(), 0)).unwrap();
    let log = Log::open(dir.path(), options(64)).unwrap();
    let want: Vec<(u64, Vec<u8>)> = vec![
        (0, b"a".to_vec()),
        (1, vec![]),
        (2, vec![]),
        (3, b"c".to_vec()),
    ];
    assert_eq!(read_all(&log), want);
    let segs: Vec<_> = log
        .segments()
        .iter()
        .map(|s| (s.first_offset, s.next_offset))
        .collect();
    assert_eq!(segs, [(0, 3), (3, 4)]);
}

/// Damage a bad disk or a power cut does inside what the index vouches for.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Zeros over writes `first..=last` (unwritten pages).
    Zeros,
    /// One bit flipped in a write's length field.
    FlippedLength,
    /// Random bytes from inside one write to inside the next.
    GarbageAcrossTwo,
    /// A sealed segment's data file cut at a random point (a hole).
    SealedTail,
}

/// Applies `damage` to `dir`, a copy of `h`'s files, choosing where with
/// `rng`; returns the indices (in `h.writes`) of the writes it touched, or
/// `None` when the history has no place for this damage.
fn damage(h: &History, dir: &Path, kind: Damage, rng: &mut Rng) -> Option<Vec<usize>> {
    // Only writes still whole on disk (an earlier damage may have cut some).
    let whole = |i: usize| {
        let w = &h.writes[i];
        w.end <= file_len(&data_path(dir, w.segment))
            && h.writes
                .get(i + 1)
                .is_none_or(|n| n.end <= file_len(&data_path(dir, n.segment)))
    };
    let pick = |rng: &mut Rng, ok: &dyn Fn(usize) -> bool| -> Option<usize> {
        let candidates: Vec<usize> = (0..h.writes.len())
            .filter(|i| whole(*i) && ok(*i))
            .collect();
        (!candidates.is_empty()).then(|| candidates[rng.range(0, candidates.len() as u64) as usize])
    };
    let touched = match kind {
        Damage::Zeros => {
            let i = pick(rng, &|i| {
                h.writes[i].end - h.writes[i].start > HEADER_BYTES as u64
            })?;
            let w = &h.writes[i];
            let mut last = i;
            while rng.chance(40)
                && h.writes
                    .get(last + 1)
                    .is_some_and(|n| n.segment == w.segment)
            {
                last += 1;
            }
            let path = data_path(dir, w.segment);
            let mut data = fs::read(&path).unwrap();
            data[w.start as usize..h.writes[last].end as usize].fill(0);
            fs::write(&path, &data).unwrap();
            (i..=last).collect()
        }
        Damage::FlippedLength => {
            let i = pick(rng, &|_| true)?;
            let w = &h.writes[i];
            let path = data_path(dir, w.segment);
            let mut data = fs::read(&path).unwrap();
            let bit = rng.range(0, 32);
            data[w.start as usize + 5 + (bit / 8) as usize] ^= 1 << (bit % 8);
            fs::write(&path, &data).unwrap();
            vec![i]
        }
        Damage::GarbageAcrossTwo => {
            let i = pick(rng, &|i| {
                h.writes
                    .get(i + 1)
                    .is_some_and(|n| n.segment == h.writes[i].segment)
            })?;
            let (w, n) = (&h.writes[i], &h.writes[i + 1]);
            let from = rng.range(w.start + 1, w.end);
            // Past the next message's CRC: a changed compver alone would go
            // unseen (netlog's CRC covers only the payload).
            let to = rng.range((n.start + HEADER_BYTES as u64).min(n.end), n.end + 1);
            let path = data_path(dir, w.segment);
            let mut data = fs::read(&path).unwrap();
            let junk = rng.bytes((to - from) as usize);
            data[from as usize..to as usize].copy_from_slice(&junk);
            fs::write(&path, &data).unwrap();
            vec![i, i + 1]
        }
        Damage::SealedTail => {
            let sealed = &h.segments[..h.segments.len() - 1];
            let i = pick(rng, &|i| sealed.contains(&h.writes[i].segment))?;
            let w = &h.writes[i];
            let cut = rng.range(w.start, w.end);
            set_len(&data_path(dir, w.segment), cut);
            (i..h.writes.len())
                .take_while(|j| h.writes[*j].segment == w.segment)
                .collect()
        }
    };
    Some(touched)
}

/// The oracle for damage: every message served is exactly what was written
/// at the offset asked; an offset of a damaged write answers an error or not
/// found; every other offset reads back intact; `check` names every damaged
/// write still stored and every hole; offsets are never reused.
fn verify_damage(h: &History, dir: &Path, touched: &[usize], what: &str) {
    let ctx = format!(
        "history {} ({} entries/index): {what}",
        h.seed, h.index_entries
    );
    let damaged: BTreeSet<u64> = touched
        .iter()
        .flat_map(|i| {
            let w = &h.writes[*i];
            w.first..w.first + w.payloads.len() as u64
        })
        .collect();
    let log = Log::open(dir, h.opts()).unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
    let next = log.next_offset();
    assert!(
        next >= h.total(),
        "{ctx}: next offset {next} reuses offsets"
    );
    for o in 0..h.total() {
        match log.reader(o).and_then(|mut r| r.next()) {
            Ok(Some(m)) => {
                assert_eq!(m.offset, o, "{ctx}: reading {o} answered another offset");
                assert!(
                    h.payload(o) == Some(&m.payload[..]),
                    "{ctx}: reading {o} served bytes that were not written there"
                );
            }
            Ok(None) => panic!("{ctx}: reading {o} found the end of the log"),
            Err(e) => assert!(damaged.contains(&o), "{ctx}: intact offset {o} failed: {e}"),
        }
    }
    // A sequential read from an intact offset past the damage goes on to
    // the end with true offsets.
    if let Some(after) = (0..h.total()).rev().find(|o| !damaged.contains(o))
        && damaged.range(..after).next().is_some()
    {
        let mut r = log.reader(after).unwrap();
        while let Some(m) = r.next().unwrap_or_else(|e| panic!("{ctx}: {e}")) {
            assert!(h.payload(m.offset) == Some(&m.payload[..]), "{ctx}");
        }
    }
    let problems = log.check(0).unwrap();
    for i in touched {
        let w = &h.writes[*i];
        let last = w.first + w.payloads.len() as u64 - 1;
        let damaged_still = log
            .reader(w.first)
            .and_then(|mut r| r.next())
            .is_err_and(|e| !matches!(e, LogError::OffsetNotFound(_)));
        let reported = problems.iter().any(|p| {
            (p.offset <= last && p.offset >= w.first)
                || (p.kind == CheckKind::Hole && p.offset <= w.first && w.first < p.expected)
        });
        assert!(
            reported || !damaged_still,
            "{ctx}: damaged write at {} not reported: {problems:?}",
            w.first
        );
    }
    // An index rebuilt around the damage is a repair reported, not damage.
    for p in problems.iter().filter(|p| p.kind != CheckKind::Index) {
        assert!(
            damaged.contains(&p.offset),
            "{ctx}: problem at intact offset: {p:?}"
        );
    }
    // The log goes on after everything the index vouched for, and a second
    // open repairs nothing.
    let at = log.append(b"after the damage").unwrap();
    assert_eq!(at, next, "{ctx}: first append");
    log.flush().unwrap();
    drop(log);
    let log = Log::open(dir, h.opts()).unwrap();
    assert_eq!(log.next_offset(), next + 1, "{ctx}: after reopening");
    let m = log.reader(at).unwrap().next().unwrap().unwrap();
    assert_eq!(&m.payload[..], b"after the damage", "{ctx}");
    drop(log);
    let bases = data_files(dir);
    for (i, base) in bases.iter().enumerate() {
        let (_, repair) = recovery::open_segment(
            dir,
            *base,
            h.index_entries,
            &h.opts().codecs,
            bases.get(i + 1).copied(),
        )
        .unwrap();
        assert!(
            !repair.changed(),
            "{ctx}: segment {base} repaired twice: {repair:?}"
        );
    }
}

/// Runs `kind` of damage over every history, `iterations()` times each.
fn damage_histories(kind: Damage, salt: u64) {
    for h in histories() {
        let mut rng = Rng::new(h.seed * 1000 + salt);
        for it in 0..iterations() {
            let dir = copy_of(&h);
            let Some(touched) = damage(&h, dir.path(), kind, &mut rng) else {
                continue;
            };
            verify_damage(
                &h,
                dir.path(),
                &touched,
                &format!("#{it} {kind:?} on writes {touched:?}"),
            );
        }
    }
}

/// Zeros where the index vouches for messages are never served as empty
/// messages, and the messages after them stay readable at their offsets.
#[test]
fn zeros_inside_the_indexed_range_are_damage_not_messages() {
    damage_histories(Damage::Zeros, 7);
}

/// One flipped bit in a length field costs that message only.
#[test]
fn a_flipped_length_field_costs_one_message() {
    damage_histories(Damage::FlippedLength, 8);
}

/// Garbage spanning two messages costs those two only.
#[test]
fn garbage_across_two_messages_costs_those_two() {
    damage_histories(Damage::GarbageAcrossTwo, 9);
}

/// A sealed segment missing its tail leaves a hole: offsets in it are not
/// found, never another message, and `check` reports the hole.
#[test]
fn a_sealed_segment_missing_its_tail_leaves_a_hole() {
    damage_histories(Damage::SealedTail, 10);
}

/// The issue's case: zeros over message 1 of three in one segment. Message 1
/// answers an error (never an empty 200), 2 reads back, `check` reports 1.
#[test]
fn zeroed_message_is_reported_and_the_next_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options(64)).unwrap();
    for m in [&b"first"[..], b"second message", b"third"] {
        log.append(m).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let path = data_path(dir.path(), 0);
    let mut data = fs::read(&path).unwrap();
    let start = SEGMENT_HEADER_BYTES as usize + HEADER_BYTES + 5;
    data[start..start + HEADER_BYTES + 14].fill(0);
    fs::write(&path, &data).unwrap();
    let log = Log::open(dir.path(), options(64)).unwrap();
    assert!(matches!(
        log.reader(1).unwrap().next(),
        Err(LogError::Corrupt { offset: 1, .. })
    ));
    let m = log.reader(2).unwrap().next().unwrap().unwrap();
    assert_eq!((m.offset, &m.payload[..]), (2, &b"third"[..]));
    let problems = log.check(0).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].offset, 1);
    assert_eq!(log.next_offset(), 3);
}

/// The issue's hole: a sealed segment holding 0..5 loses its tail after
/// message 1; reading 2 is not found (never message 5), a scanner starting
/// before the hole jumps it with true offsets, and `check` reports it.
#[test]
fn reading_in_a_hole_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options(64)).unwrap();
    for i in 0..5 {
        log.append(format!("m{i}").as_bytes()).unwrap();
    }
    log.roll().unwrap();
    log.append(b"m5").unwrap();
    log.sync().unwrap();
    drop(log);
    let cut = SEGMENT_HEADER_BYTES + 2 * (HEADER_BYTES as u64 + 2);
    set_len(&data_path(dir.path(), 0), cut);
    let log = Log::open(dir.path(), options(64)).unwrap();
    for o in 2..5 {
        assert!(
            matches!(log.reader(o), Err(LogError::OffsetNotFound(_))),
            "offset {o}"
        );
    }
    assert_eq!(log.existing_offset(3), 5);
    let seen: Vec<(u64, Vec<u8>)> = read_all(&log);
    let want: Vec<(u64, Vec<u8>)> = vec![
        (0, b"m0".to_vec()),
        (1, b"m1".to_vec()),
        (5, b"m5".to_vec()),
    ];
    assert_eq!(seen, want);
    let problems = log.check(0).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        (problems[0].offset, problems[0].expected, problems[0].actual),
        (2, 5, 3)
    );
    assert_eq!(serde_json::to_value(&problems[0]).unwrap()["type"], "hole");
}

/// A sealed segment's index entry garbled to an absurd position (recovery
/// vouches only for a sealed segment's last entry): `check` reports the
/// damage within the data's bounds instead of sizing a buffer from the
/// position, and the other messages stay readable.
#[test]
fn check_survives_an_absurd_index_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options(64)).unwrap();
    for i in 0..4 {
        log.append(format!("m{i}").as_bytes()).unwrap();
    }
    log.roll().unwrap();
    log.append(b"m4").unwrap();
    log.sync().unwrap();
    drop(log);
    let path = index_path(dir.path(), 0);
    let mut index = fs::read(&path).unwrap();
    // Entry 2 (message m2) now claims to start at ~ 2^62.
    index[2 * 16 + 8..2 * 16 + 16].copy_from_slice(&(1u64 << 62).to_be_bytes());
    fs::write(&path, &index).unwrap();
    let log = Log::open(dir.path(), options(64)).unwrap();
    let problems = log.check(0).unwrap();
    assert!(!problems.is_empty(), "the garbled entry is reported");
    for o in [0, 4] {
        let m = log.reader(o).unwrap().next().unwrap().unwrap();
        assert_eq!(m.payload, format!("m{o}").into_bytes());
    }
}

mod random_damage {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
            ..ProptestConfig::default()
        })]

        /// Random damage over random histories: whatever is served is what
        /// was written at that offset, the rest is intact, offsets never
        /// move or get reused.
        #[test]
        fn random_damage_never_serves_a_wrong_message(
            seed in 100u64..100_000,
            writes in 5usize..60,
            kinds in proptest::collection::vec(0usize..4, 1..3),
            pick in any::<u64>(),
        ) {
            let h = write_history(seed, writes);
            let mut rng = super::Rng::new(pick);
            let dir = copy_of(&h);
            let mut touched = BTreeSet::new();
            let mut what = Vec::new();
            for k in kinds {
                let kind = [Damage::Zeros, Damage::FlippedLength, Damage::GarbageAcrossTwo, Damage::SealedTail][k];
                if let Some(t) = damage(&h, dir.path(), kind, &mut rng) {
                    what.push(format!("{kind:?} on writes {t:?}"));
                    touched.extend(t);
                }
            }
            let touched: Vec<usize> = touched.into_iter().collect();
            verify_damage(&h, dir.path(), &touched, &what.join(", "));
        }
    }
}

/// Over HTTP, the issue's hole: with a sealed segment cut after message 1,
/// `GET /t/payload/2` is 404 (never message 5), a scanner cannot start in
/// the hole, one started before it reads 0, 1, then 5 under its true offset,
/// and `check` reports the hole.
#[tokio::test]
async fn http_reads_in_a_hole_are_not_found() {
    let dir = common::data_dir();
    let config = netlog::config::Config {
        index_entries: 6,
        ..common::test_config(dir.path())
    };
    let broker = common::spawn_broker_with(config.clone());
    let api = broker.api();
    api.create_topic("t").await;
    for i in 0..6 {
        assert_eq!(api.publish("t", format!("m{i}")).await, i);
    }
    broker.stop().await;
    let cut = SEGMENT_HEADER_BYTES + 2 * (HEADER_BYTES as u64 + 2);
    set_len(&common::data_file(dir.path(), "t", 0), cut);

    let broker = common::spawn_broker_with(config);
    let api = broker.api();
    for at in ["2", "4"] {
        let resp = api.get(&format!("/t/payload/{at}")).await;
        common::expect_exact_error(resp, 404, "offset not found").await;
    }
    assert_eq!(api.payload("t", "5").await, (5, b"m5".to_vec()));
    let resp = api.post_empty("/t/scanner?from=3").await;
    common::expect_exact_error(resp, 404, "offset not found").await;
    let scanner = api.scanner_id("t", "0").await;
    for (offset, payload) in [(0, "m0"), (1, "m1"), (5, "m5")] {
        let got = api.scan_one("t", &scanner).await;
        assert_eq!(got, (offset, payload.as_bytes().to_vec()));
    }
    let problems = common::expect_json(api.get("/t/check").await, 200).await;
    assert_eq!(
        problems,
        serde_json::json!([{"offset": 2, "odelta": 0, "type": "hole", "expected": 5, "actual": 3}])
    );
    assert_eq!(api.publish("t", "m6").await, 6);
    broker.stop().await;
}

/// Over HTTP, with the real binary: a topic of several segments (1 KiB
/// segments, as netlog allowed) holding plain messages and batch sets has
/// a sealed index garbled, another zeroed, another cut, and the active one
/// garbled, over intact data. After a restart every message reads back at
/// its offset and `GET /{topic}/check` names exactly the rebuilt segments.
#[tokio::test]
async fn damaged_indexes_are_rebuilt_and_named_over_http() {
    let dir = common::data_dir();
    let flags = ["-monitor_interval", "20ms"];
    let mut netlog = common::spawn_netlog_with(dir.path(), &flags).await;
    let api = netlog.api();
    common::expect_ok_message(
        api.post("/t", r#"{"segment_size":1024,"compression_type":2}"#)
            .await,
        201,
        "topic created",
    )
    .await;
    let mut want: Vec<(u64, String)> = Vec::new();
    let segments = |info: serde_json::Value| info["segments"].as_array().map_or(0, Vec::len);
    for round in 0..6u64 {
        for i in 0..4 {
            let p = format!("plain {round}.{i} {}", "p".repeat(300));
            want.push((api.publish("t", p.clone()).await, p));
        }
        let lines: Vec<String> = (0..5)
            .map(|i| format!("set {round}.{i} {}", "s".repeat(40)))
            .collect();
        let body = common::expect_json(api.publish_ndjson("t", lines.join("\n")).await, 201).await;
        let first = body["first_offset"]
            .as_u64()
            .expect("the batch's first offset");
        for (k, l) in lines.into_iter().enumerate() {
            want.push((first + k as u64, l));
        }
        // Let the monitor roll past segment_size.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while segments(api.info("t").await) < round as usize + 2 {
            assert!(std::time::Instant::now() < deadline, "no roll");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    // The active segment holds some too.
    for i in 0..3 {
        let p = format!("active {i}");
        want.push((api.publish("t", p.clone()).await, p));
    }
    netlog.terminate().await;
    let topic = dir.path().join("t");
    let bases = data_files(&topic);
    assert!(bases.len() >= 5, "segments: {bases:?}");
    let (garbled, zeroed, cut, active) = (bases[0], bases[1], bases[2], *bases.last().unwrap());
    let mut index = fs::read(index_path(&topic, garbled)).unwrap();
    index[16 + 8] ^= 0x5a; // the second entry's position
    index[32] ^= 0x7f; // the third entry's relative offset
    fs::write(index_path(&topic, garbled), &index).unwrap();
    let len = file_len(&index_path(&topic, zeroed));
    fs::write(index_path(&topic, zeroed), vec![0u8; len as usize]).unwrap();
    set_len(&index_path(&topic, cut), 40);
    let mut index = fs::read(index_path(&topic, active)).unwrap();
    index[16..32].fill(0xee);
    fs::write(index_path(&topic, active), &index).unwrap();

    let mut netlog = common::spawn_netlog_with(dir.path(), &flags).await;
    let api = netlog.api();
    for (offset, payload) in &want {
        assert_eq!(
            api.payload("t", &offset.to_string()).await,
            (*offset, payload.clone().into_bytes()),
            "offset {offset}"
        );
    }
    let problems = common::expect_json(api.get("/t/check").await, 200).await;
    let named: Vec<u64> = problems
        .as_array()
        .unwrap_or_else(|| panic!("check names the rebuilt segments: {problems}"))
        .iter()
        .map(|p| {
            assert_eq!(p["type"], "index", "only rebuilt indexes: {problems}");
            p["offset"].as_u64().unwrap()
        })
        .collect();
    let rebuilt = vec![garbled, zeroed, cut, active];
    assert_eq!(named, rebuilt, "{problems}");
    let log = netlog.log();
    let lines = log.matches("rebuilt from the data").count();
    assert_eq!(lines, rebuilt.len(), "one log line per segment:\n{log}");
    assert_eq!(api.publish("t", "after").await, want.len() as u64);
    netlog.kill();
}
