//! The on-disk layout, pinned byte for byte against storage-format.md.

use netlog::log::{Log, LogOptions};
use netlog::message::{self, PLAIN};

fn plain(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    message::encode(&mut out, PLAIN, payload);
    out
}

/// The spec's example (m1, m2, m3 on a new topic) in bytes, timestamps aside.
fn expected_example() -> (Vec<u8>, Vec<u8>) {
    let mut data = vec![0x01, 0x10, 0, 0, 0, 0];
    data.extend_from_slice(&[0u8; 10]);
    for m in [b"m1", b"m2", b"m3"] {
        data.extend(plain(m));
    }
    let mut index = Vec::new();
    for (rel, pos) in [(1u32, 16u64), (2, 0x1b), (3, 0x26), (4, 0x31)] {
        index.extend_from_slice(&rel.to_be_bytes());
        index.extend_from_slice(&[0u8; 4]);
        index.extend_from_slice(&pos.to_be_bytes());
    }
    (data, index)
}

/// Writing m1, m2, m3 produces the spec's data and index bytes exactly.
#[test]
fn writes_the_spec_example_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    for m in [b"m1", b"m2", b"m3"] {
        log.append(m).unwrap();
    }
    log.flush().unwrap();
    log.sync().unwrap();

    let (want_data, want_index) = expected_example();
    let mut data = std::fs::read(dir.path().join("00000000000000000000.data")).unwrap();
    let index = std::fs::read(dir.path().join("00000000000000000000.index")).unwrap();
    assert_eq!(data.len(), want_data.len());
    data[2..6].fill(0); // created timestamp
    assert_eq!(data, want_data);

    assert_eq!(
        index.len(),
        100 * 1024 * 16,
        "index preallocated as netlog does"
    );
    let mut head = index[..64].to_vec();
    for e in 0..3 {
        assert_ne!(
            &head[e * 16 + 4..e * 16 + 8],
            &[0u8; 4],
            "entry {e} has a timestamp"
        );
        head[e * 16 + 4..e * 16 + 8].fill(0);
    }
    assert_eq!(head, want_index, "three entries and the marker");
    assert!(
        index[64..].iter().all(|b| *b == 0),
        "rest of the index unused"
    );
}

/// A directory holding the spec's bytes (as netlog wrote them) opens and reads back.
#[test]
fn reads_a_directory_built_from_the_spec_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut data, entries) = expected_example();
    data[2..6].copy_from_slice(&1_700_000_000u32.to_be_bytes());
    let mut index = vec![0u8; 100 * 1024 * 16];
    index[..64].copy_from_slice(&entries);
    for e in 0..3 {
        index[e * 16 + 4..e * 16 + 8].copy_from_slice(&1_700_000_000u32.to_be_bytes());
    }
    std::fs::write(dir.path().join("00000000000000000000.data"), &data).unwrap();
    std::fs::write(dir.path().join("00000000000000000000.index"), &index).unwrap();

    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.oldest_offset(), 0);
    assert_eq!(log.latest_offset(), 2);
    for start in 0..3u64 {
        let mut r = log.reader(start).unwrap();
        for want in start..3 {
            let m = r.next().unwrap().expect("message");
            assert_eq!(m.offset, want);
            assert_eq!(&m.payload[..], format!("m{}", want + 1).as_bytes());
        }
        assert!(r.next().unwrap().is_none());
    }
    // Opening changed nothing: the files are byte-identical.
    assert_eq!(
        std::fs::read(dir.path().join("00000000000000000000.data")).unwrap(),
        data
    );
    assert_eq!(
        std::fs::read(dir.path().join("00000000000000000000.index")).unwrap(),
        index
    );
    // And the next append continues the layout.
    log.append(b"m4").unwrap();
    log.flush().unwrap();
    assert_eq!(
        &log.reader(3).unwrap().next().unwrap().unwrap().payload[..],
        b"m4"
    );
}

/// A message set occupies consecutive offsets and one index entry; reads may
/// start inside it.
#[test]
fn sets_take_consecutive_offsets_and_one_entry() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    log.append(b"solo").unwrap();
    let first = log
        .append_set(&[&b"a"[..], b"b", b"c"], message::SET_SNAPPY)
        .unwrap();
    log.append(b"after").unwrap();
    log.flush().unwrap();
    assert_eq!(first, 1);
    assert_eq!(log.latest_offset(), 4);
    let mut r = log.reader(2).unwrap();
    let got: Vec<_> = std::iter::from_fn(|| r.next().unwrap())
        .map(|m| (m.offset, m.payload))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, bytes::Bytes::from_static(b"b")),
            (3, bytes::Bytes::from_static(b"c")),
            (4, bytes::Bytes::from_static(b"after"))
        ]
    );
    log.sync().unwrap();
    let index = std::fs::read(dir.path().join("00000000000000000000.index")).unwrap();
    let rel = |e: usize| u32::from_be_bytes(index[e * 16..e * 16 + 4].try_into().unwrap());
    assert_eq!((rel(0), rel(1), rel(2), rel(3)), (1, 2, 5, 6));
}

/// Rolling, reading across segments, trimming and time lookup work together.
#[test]
fn rolls_reads_across_segments_and_trims() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        index_entries: 4,
        ..LogOptions::default()
    };
    let log = Log::open(dir.path(), opts.clone()).unwrap();
    for i in 0..10u32 {
        log.append(&i.to_be_bytes()).unwrap();
    }
    log.flush().unwrap();
    let segs = log.segments();
    assert!(segs.len() >= 3, "index of 4 entries fills after 3 writes");
    assert_eq!(segs[1].first_offset, 3);
    let all: Vec<_> = {
        let mut r = log.reader(0).unwrap();
        std::iter::from_fn(|| r.next().unwrap())
            .map(|m| m.offset)
            .collect()
    };
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert_eq!(log.trim_oldest().unwrap(), Some(0));
    assert_eq!(log.oldest_offset(), 3);
    assert!(log.reader(2).is_err(), "trimmed offsets are gone");
    assert_eq!(log.offset_at(std::time::SystemTime::UNIX_EPOCH), 3);
    drop(log);
    let log = Log::open(dir.path(), opts).unwrap();
    assert_eq!((log.oldest_offset(), log.latest_offset()), (3, 9));
}
