//! A data directory in netlog's layout, written here byte by byte from
//! `storage-format.md` (compression by flate2 and snap directly, not by the
//! crate), opens and serves as netlog would.

use std::io::Write;
use std::path::Path;

use crate::common::*;
use serde_json::json;

/// The seven messages of the directory, in offset order: three plain ones,
/// a gzip set of two, a snappy-framed set of two.
const MESSAGES: [&[u8]; 7] = [
    b"plain one",
    b"plain two",
    b"plain three",
    b"gzip four",
    b"gzip \x00\xff five",
    b"snappy six",
    b"snappy seven",
];

/// Settings as text durations, as in the spec's examples.
const SETTINGS_TEXT: &str = r#"{"segment_age":"1day","segment_size":1024,"batch_num_messages":10,"batch_interval":"1s","compression_type":1}"#;
/// The same settings with durations as integer nanoseconds (Go's encoding
/// of a time.Duration).
const SETTINGS_NANOS: &str = r#"{"segment_age":86400000000000,"segment_size":1024,"batch_num_messages":10,"batch_interval":1000000000,"compression_type":1}"#;

/// Entries per index file in netlog (the index is preallocated to this).
const INDEX_ENTRIES: usize = 100 * 1024;

fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

fn index_entry(index: &mut Vec<u8>, rel: u32, ts: u32, pos: usize) {
    index.extend_from_slice(&rel.to_be_bytes());
    index.extend_from_slice(&ts.to_be_bytes());
    index.extend_from_slice(&(pos as i64).to_be_bytes());
}

fn plain_set(messages: &[&[u8]]) -> Vec<u8> {
    messages.iter().flat_map(|m| frame(0, m)).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn snappy_framed(bytes: &[u8]) -> Vec<u8> {
    let mut enc = snap::write::FrameEncoder::new(Vec::new());
    enc.write_all(bytes).unwrap();
    enc.into_inner().unwrap()
}

/// Writes topic `name` in `data_dir` as netlog lays it out, with a
/// persistent scanner `scanner` whose last returned offset is `last`.
/// Returns the data file's length.
fn write_netlog_topic(
    data_dir: &Path,
    name: &str,
    settings: &str,
    scanner: uuid::Uuid,
    last: i64,
) -> usize {
    let topic = data_dir.join(name);
    std::fs::create_dir_all(topic.join("readers")).unwrap();
    std::fs::write(topic.join("settings.json"), settings).unwrap();

    let now = unix_now();
    let mut data = vec![1u8, 16];
    data.extend_from_slice(&now.to_be_bytes());
    data.extend_from_slice(&[0u8; 10]);
    assert_eq!(data.len(), 16);

    let mut index = Vec::new();
    for (i, m) in MESSAGES[..3].iter().enumerate() {
        index_entry(&mut index, i as u32 + 1, now, data.len());
        data.extend(frame(0x00, m));
    }
    index_entry(&mut index, 4, now, data.len());
    data.extend(frame(0x02, &gzip(&plain_set(&MESSAGES[3..5]))));
    index_entry(&mut index, 6, now, data.len());
    data.extend(frame(0x03, &snappy_framed(&plain_set(&MESSAGES[5..7]))));
    index_entry(&mut index, 8, 0, data.len()); // the marker: next relative offset
    index.resize(INDEX_ENTRIES * 16, 0);

    std::fs::write(topic.join("00000000000000000000.data"), &data).unwrap();
    std::fs::write(topic.join("00000000000000000000.index"), &index).unwrap();
    std::fs::write(
        topic.join(format!("readers/{scanner}.scanner")),
        last.to_be_bytes(),
    )
    .unwrap();
    data.len()
}

/// A topic in netlog's layout is listed, reports its offsets, segment and
/// settings, and a scanner from 0 reads all seven messages in order.
async fn assert_serves_netlog_topic(api: &Api, name: &str, data_len: usize) {
    assert_eq!(expect_json(api.get("/").await, 200).await, json!([name]));
    let info = api.info(name).await;
    assert_eq!(info["first_offset"], 0);
    assert_eq!(info["latest_offset"], 6);
    assert_eq!(info["segments"].as_array().unwrap().len(), 1);
    assert_eq!(info["segments"][0]["data_size"], data_len);
    assert_eq!(
        info["settings"],
        json!({
            "segment_age": "1day",
            "segment_size": 1024,
            "batch_num_messages": 10,
            "batch_interval": "1s",
            "compression_type": 1,
        })
    );
    let id = api.scanner_id(name, "0").await;
    for (i, m) in MESSAGES.iter().enumerate() {
        assert_eq!(api.scan_one(name, &id).await, (i as u64, m.to_vec()));
    }
    expect_exact_error(api.scan(name, &id, "5ms").await, 404, "end of topic").await;
    for (spec, i) in [("4", 4), ("5", 5), ("latest", 6)] {
        assert_eq!(
            api.payload(name, spec).await,
            (i, MESSAGES[i as usize].to_vec())
        );
    }
    expect_ok_message(
        api.get(&format!("/{name}/check")).await,
        200,
        "topic healthy",
    )
    .await;
}

/// netlog's layout with text durations in `settings.json` opens and serves every message.
#[tokio::test]
async fn opens_netlog_layout_with_text_durations() {
    let dir = data_dir();
    let len = write_netlog_topic(
        dir.path(),
        "legacy",
        SETTINGS_TEXT,
        uuid::Uuid::new_v4(),
        -1,
    );
    let broker = spawn_broker(dir.path());
    assert_serves_netlog_topic(&broker.api(), "legacy", len).await;
    broker.stop().await;
}

/// netlog's layout with nanosecond durations in `settings.json` opens the same way.
#[tokio::test]
async fn opens_netlog_layout_with_nanosecond_durations() {
    let dir = data_dir();
    let len = write_netlog_topic(
        dir.path(),
        "legacy",
        SETTINGS_NANOS,
        uuid::Uuid::new_v4(),
        -1,
    );
    let broker = spawn_broker(dir.path());
    assert_serves_netlog_topic(&broker.api(), "legacy", len).await;
    broker.stop().await;
}

/// A scanner file written by netlog resumes after its offset, inside the gzip set.
#[tokio::test]
async fn netlog_scanner_resumes_after_stored_offset() {
    let dir = data_dir();
    let id = uuid::Uuid::new_v4();
    write_netlog_topic(dir.path(), "legacy", SETTINGS_TEXT, id, 3);
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    let id = id.to_string();
    let info = api.info("legacy").await;
    assert_eq!(info["scanners"][&id]["next"], 4);
    assert_eq!(info["scanners"][&id]["persistent"], true);
    for i in 4..7 {
        assert_eq!(
            api.scan_one("legacy", &id).await,
            (i, MESSAGES[i as usize].to_vec())
        );
    }
    expect_exact_error(api.scan("legacy", &id, "5ms").await, 404, "end of topic").await;
    broker.stop().await;

    let scanner_file = dir.path().join(format!("legacy/readers/{id}.scanner"));
    assert_eq!(std::fs::read(scanner_file).unwrap(), 6i64.to_be_bytes());
}

/// New messages are appended in netlog's layout: data, index entry and marker.
#[tokio::test]
async fn keeps_writing_netlog_layout() {
    let dir = data_dir();
    let old_len = write_netlog_topic(
        dir.path(),
        "legacy",
        SETTINGS_TEXT,
        uuid::Uuid::new_v4(),
        -1,
    );
    let broker = spawn_broker(dir.path());
    let api = broker.api();
    assert_eq!(api.publish("legacy", "eight").await, 7);
    assert_eq!(api.payload("legacy", "7").await, (7, b"eight".to_vec()));
    broker.stop().await;

    let topic = dir.path().join("legacy");
    let data = std::fs::read(topic.join("00000000000000000000.data")).unwrap();
    assert_eq!(&data[old_len..], &frame(0, b"eight")[..]);
    let index = std::fs::read(topic.join("00000000000000000000.index")).unwrap();
    assert_eq!(index.len(), INDEX_ENTRIES * 16, "index keeps netlog's size");
    let entry = |i: usize| {
        let e = &index[i * 16..i * 16 + 16];
        (
            u32::from_be_bytes(e[..4].try_into().unwrap()),
            u32::from_be_bytes(e[4..8].try_into().unwrap()),
            i64::from_be_bytes(e[8..].try_into().unwrap()),
        )
    };
    let (rel, ts, pos) = entry(5);
    assert_eq!((rel, pos), (8, old_len as i64), "entry of offset 7");
    assert_ne!(ts, 0, "a write has a timestamp");
    assert_eq!(entry(6), (9, 0, data.len() as i64), "the new marker");
    assert!(index[7 * 16..].iter().all(|b| *b == 0), "the rest unused");
}
