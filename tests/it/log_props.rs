//! Property tests of the log: any mix of appends, message sets, rolls and
//! flushes reads back identically from every offset, before and after the log
//! is closed and reopened, and the log's bookkeeping (oldest and latest
//! offsets, segment list, files on disk) matches a simple model.
//!
//! Payloads are described by `(length, seed)` and materialised on use, so a
//! failing case prints compactly however large its messages are.

use std::fmt;
use std::path::Path;

use netlog::log::{Log, LogOptions};
use netlog::message::{SET_GZIP, SET_NONE, SET_SNAPPY};
use proptest::prelude::*;
use proptest::sample::Index;

/// Cases per property unless `PROPTEST_CASES` says otherwise; modest so the
/// file stays fast in debug builds.
const DEFAULT_CASES: u32 = 24;
/// The largest payload generated.
const MAX_PAYLOAD: usize = 1 << 20;

/// A payload of `len` bytes derived from `seed`: noise for odd seeds, repeated
/// text (which compresses well) for even ones.
#[derive(Clone, Copy)]
struct Payload {
    len: usize,
    seed: u64,
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}B#{}", self.len, self.seed)
    }
}

impl Payload {
    fn bytes(&self) -> Vec<u8> {
        if self.seed.is_multiple_of(2) {
            let word = format!("msg-{}-", self.seed);
            return word.bytes().cycle().take(self.len).collect();
        }
        let mut x = self.seed;
        (0..self.len)
            .map(|_| {
                // splitmix64
                x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    }
}

fn payload() -> impl Strategy<Value = Payload> {
    let len = prop_oneof![
        30 => 0usize..=16,
        40 => 17usize..=512,
        12 => 513usize..=16 * 1024,
        1 => 16 * 1024 + 1..=MAX_PAYLOAD,
        1 => Just(MAX_PAYLOAD),
    ];
    (len, any::<u64>()).prop_map(|(len, seed)| Payload { len, seed })
}

#[derive(Clone, Debug)]
enum Op {
    Append(Payload),
    Set(u8, Vec<Payload>),
    Roll,
    Flush,
    /// Flush, then read from an offset picked among those written so far.
    Read(Index),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => payload().prop_map(Op::Append),
        5 => (
            prop_oneof![Just(SET_NONE), Just(SET_GZIP), Just(SET_SNAPPY)],
            prop::collection::vec(payload(), 1..24),
        )
            .prop_map(|(c, msgs)| Op::Set(c, msgs)),
        1 => Just(Op::Roll),
        3 => Just(Op::Flush),
        1 => any::<Index>().prop_map(Op::Read),
    ]
}

fn options(index_entries: u32) -> LogOptions {
    LogOptions {
        index_entries,
        fsync: netlog::log::FsyncPolicy::Never,
        ..LogOptions::default()
    }
}

/// What the log should hold: every payload by offset, and each segment's base
/// offset with the number of writes (index entries) it took.
struct Model {
    messages: Vec<Vec<u8>>,
    segments: Vec<(u64, u32)>,
    /// Writes per segment, the index marker excluded.
    room: u32,
}

impl Model {
    fn new(index_entries: u32) -> Model {
        Model {
            messages: Vec::new(),
            segments: vec![(0, 0)],
            room: index_entries.max(2) - 1,
        }
    }

    fn next(&self) -> u64 {
        self.messages.len() as u64
    }

    /// One write of `msgs`; a full index rolls first.
    fn write(&mut self, msgs: Vec<Vec<u8>>) -> u64 {
        if self.segments.last().unwrap().1 == self.room {
            self.segments.push((self.next(), 0));
        }
        self.segments.last_mut().unwrap().1 += 1;
        let first = self.next();
        self.messages.extend(msgs);
        first
    }

    /// An explicit roll; rolling an empty segment changes nothing.
    fn roll(&mut self) {
        if self.segments.last().unwrap().1 > 0 {
            self.segments.push((self.next(), 0));
        }
    }
}

fn apply(log: &Log, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    match op {
        Op::Append(p) => {
            let bytes = p.bytes();
            let got = log.append(&bytes).unwrap();
            let want = model.write(vec![bytes]);
            prop_assert_eq!(got, want, "offset returned by append");
        }
        Op::Set(compression, msgs) => {
            let bytes: Vec<Vec<u8>> = msgs.iter().map(Payload::bytes).collect();
            let got = log.append_set(&bytes, *compression).unwrap();
            let want = model.write(bytes);
            prop_assert_eq!(got, want, "offset returned by append_set");
        }
        Op::Roll => {
            log.roll().unwrap();
            model.roll();
            prop_assert_eq!(log.next_offset(), model.next(), "a roll flushes");
        }
        Op::Flush => {
            log.flush().unwrap();
            prop_assert_eq!(log.next_offset(), model.next(), "flush publishes all");
        }
        Op::Read(at) => {
            log.flush().unwrap();
            if model.next() > 0 {
                let from = at.index(model.messages.len()) as u64;
                read_to_end(log, model, from)?;
            }
        }
    }
    Ok(())
}

/// Reads from `from` to the end and compares with the model.
fn read_to_end(log: &Log, model: &Model, from: u64) -> Result<(), TestCaseError> {
    let mut reader = log.reader(from).unwrap();
    for (offset, want) in model.messages.iter().enumerate().skip(from as usize) {
        let m = reader.next().unwrap();
        prop_assert!(
            m.is_some(),
            "message {} missing reading from {}",
            offset,
            from
        );
        let m = m.unwrap();
        prop_assert_eq!(m.offset, offset as u64);
        prop_assert!(m.payload[..] == want[..], "payload at {}", offset);
    }
    prop_assert!(reader.next().unwrap().is_none(), "nothing past the end");
    Ok(())
}

/// Every check of a flushed log against the model.
fn check_log(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    let next = model.next();
    prop_assert_eq!(log.oldest_offset(), 0);
    prop_assert_eq!(log.next_offset(), next);
    prop_assert_eq!(log.latest_offset(), next as i64 - 1);

    // Every offset reads its own message, and the one after it.
    for (offset, want) in model.messages.iter().enumerate() {
        let mut reader = log.reader(offset as u64).unwrap();
        let m = reader.next().unwrap().expect("a message at every offset");
        prop_assert_eq!(m.offset, offset as u64);
        prop_assert!(m.payload[..] == want[..], "payload at {}", offset);
        prop_assert_eq!(m.crc, crc_of(want));
        if let Some(after) = model.messages.get(offset + 1) {
            let m = reader.next().unwrap().expect("the message after");
            prop_assert_eq!(m.offset, offset as u64 + 1);
            prop_assert!(m.payload[..] == after[..], "payload at {}", offset + 1);
        }
    }
    read_to_end(log, model, 0)?;
    prop_assert!(log.reader(next).unwrap().next().unwrap().is_none());
    prop_assert!(log.reader(next + 1).is_err(), "past the end is an error");

    // Segments: the model's bases, contiguous, ending at the next offset.
    let segs = log.segments();
    let bases: Vec<u64> = segs.iter().map(|s| s.first_offset).collect();
    let want_bases: Vec<u64> = model.segments.iter().map(|s| s.0).collect();
    prop_assert_eq!(&bases, &want_bases, "segment bases");
    for pair in segs.windows(2) {
        prop_assert_eq!(pair[0].next_offset, pair[1].first_offset);
        prop_assert!(
            pair[0].first_offset < pair[0].next_offset,
            "sealed and empty"
        );
    }
    prop_assert_eq!(segs.last().unwrap().next_offset, next);
    for s in &segs {
        prop_assert!(s.data_size >= 16 && s.disk_size > s.data_size);
    }
    prop_assert_eq!(data_files(log.dir()), want_bases, "files on disk");
    Ok(())
}

fn crc_of(bytes: &[u8]) -> u32 {
    let mut out = Vec::new();
    netlog::message::encode(&mut out, 0, bytes);
    u32::from_be_bytes([out[1], out[2], out[3], out[4]])
}

/// Base offsets of the `.data` files in `dir`, sorted.
fn data_files(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".data").map(|s| s.parse().unwrap())
        })
        .collect();
    bases.sort_unstable();
    bases
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        max_shrink_iters: 2_000,
        // Failures are turned into named regression tests below instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Rolling an empty active segment is a no-op: it must not create a second
/// segment on the same files, which trimming the first would then delete.
#[test]
fn rolling_an_empty_segment_keeps_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options(8)).unwrap();
    log.append(b"a").unwrap();
    log.roll().unwrap();
    log.roll().unwrap();
    log.roll().unwrap();
    log.append(b"b").unwrap();
    log.flush().unwrap();
    let bases: Vec<u64> = log.segments().iter().map(|s| s.first_offset).collect();
    assert_eq!(bases, [0, 1]);
    assert_eq!(log.trim_oldest().unwrap(), Some(0));
    assert_eq!(log.trim_oldest().unwrap(), None, "the active segment stays");
    drop(log);
    let log = Log::open(dir.path(), options(8)).unwrap();
    let m = log.reader(1).unwrap().next().unwrap().expect("b survives");
    assert_eq!((m.offset, &m.payload[..]), (1, &b"b"[..]));
}

/// A stored set that holds no message is reported as corrupt when read; it
/// is not skipped, which would hand the next message out under its offset.
#[test]
fn empty_set_is_an_error_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options(8)).unwrap();
    let mut empty_set = Vec::new();
    netlog::message::encode(&mut empty_set, SET_NONE, b"");
    assert_eq!(log.append_encoded(&empty_set, 1).unwrap(), 0);
    assert_eq!(log.append(b"x").unwrap(), 1);
    log.flush().unwrap();
    let first = log.reader(0).unwrap().next();
    assert!(
        matches!(first, Err(netlog::log::LogError::Corrupt { offset: 0, .. })),
        "{first:?}"
    );
    let m = log.reader(1).unwrap().next().unwrap().unwrap();
    assert_eq!((m.offset, &m.payload[..]), (1, &b"x"[..]));
}

/// A reader can always be opened at the next offset, even while the writer
/// is rolling to a new segment.
#[test]
fn reader_at_the_end_opens_during_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options(4)).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..200u32 {
                log.append(&i.to_be_bytes()).unwrap();
                log.roll().unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        let mut opened = 0u64;
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            let next = log.next_offset();
            if let Err(e) = log.reader(next) {
                panic!("reader({next}) failed after {opened} opens: {e}");
            }
            opened += 1;
        }
    });
}

proptest! {
    #![proptest_config(config())]

    /// Whatever is appended reads back identically from every offset, and the
    /// offsets and segments match the model, before and after reopening.
    #[test]
    fn reads_back_from_every_offset_and_after_reopen(
        index_entries in 4u32..64,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new(index_entries);
        let log = Log::open(dir.path(), options(index_entries)).unwrap();
        for op in &ops {
            apply(&log, &mut model, op)?;
        }
        log.flush().unwrap();
        check_log(&log, &model)?;

        drop(log);
        let log = Log::open(dir.path(), options(index_entries)).unwrap();
        check_log(&log, &model)?;

        // The reopened log keeps writing where it stopped.
        apply(&log, &mut model, &Op::Append(Payload { len: 3, seed: 7 }))?;
        apply(&log, &mut model, &Op::Set(SET_SNAPPY, vec![Payload { len: 5, seed: 8 }; 2]))?;
        log.flush().unwrap();
        check_log(&log, &model)?;
    }

    /// A reader opened before more is appended sees the later messages once
    /// they are flushed, across rolls, with no gaps or repeats.
    #[test]
    fn open_reader_follows_appends(
        index_entries in 4u32..16,
        batches in prop::collection::vec(prop::collection::vec(op(), 0..8), 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new(index_entries);
        let log = Log::open(dir.path(), options(index_entries)).unwrap();
        let mut reader = log.reader(0).unwrap();
        let mut seen = 0usize;
        for batch in &batches {
            for op in batch {
                apply(&log, &mut model, op)?;
            }
            log.flush().unwrap();
            while let Some(m) = reader.next().unwrap() {
                prop_assert_eq!(m.offset, seen as u64);
                prop_assert!(m.payload[..] == model.messages[seen][..], "payload at {}", seen);
                seen += 1;
            }
            prop_assert_eq!(seen, model.messages.len(), "reader caught up");
        }
    }
}
