//! Codecs are verified, not believed (issue 10): a broker in this process,
//! driven over HTTP, with the hostile codec component of `plugins/dist`
//! lying in each way it can. Whatever the codec answers, every message served
//! is the one acknowledged at that offset, offsets never move, and a failing
//! codec is named rather than the disk blamed.

use crate::common::*;
use netlog::config::Config;
use serde_json::{Value, json};

/// The codec that misbehaves on demand.
const HOSTILE_CODEC: &str = "hostile_codec.wasm";
/// The name the tests declare it under, which errors must carry.
const CODEC: &str = "sly";
/// Messages per published batch.
const BATCH: usize = 10;

/// A broker config on `dir` with the hostile codec declared in `mode`.
fn codec_config(dir: &std::path::Path, mode: &str) -> Config {
    let mut sly = declare(CODEC, HOSTILE_CODEC);
    sly.config = json!({ "mode": mode });
    config_with(dir, vec![sly])
}

/// One compressible JSON message, `i`-th of a series.
fn reading(i: usize) -> String {
    format!(
        r#"{{"id":{i},"kind":"reading","sensor":"probe-{:02}","unit":"celsius"}}"#,
        i % 4
    )
}

/// Publishes messages `from..from + BATCH` as one ndjson batch; returns the
/// acknowledged first offset.
async fn publish_batch(api: &Api, topic: &str, from: usize) -> u64 {
    let lines: Vec<String> = (from..from + BATCH).map(reading).collect();
    let body = expect_json(api.publish_ndjson(topic, lines.join("\n")).await, 201).await;
    assert_eq!(body["count"], BATCH, "{body}");
    body["first_offset"].as_u64().expect("first_offset")
}

/// Asserts that offsets `0..n` of `topic` read back as `reading(offset)`,
/// one by one and through a scanner.
async fn assert_all_read(api: &Api, topic: &str, n: usize) {
    for i in 0..n {
        let got = api.payload(topic, &i.to_string()).await;
        assert_eq!(got, (i as u64, reading(i).into_bytes()), "{topic} at {i}");
    }
    let scanner = api.scanner_id(topic, "0").await;
    for i in 0..n {
        let got = api.scan_one(topic, &scanner).await;
        assert_eq!(
            got,
            (i as u64, reading(i).into_bytes()),
            "{topic} scanned at {i}"
        );
    }
}

/// The compver bytes of the entries of the topic's first data file.
fn stored_compvers(dir: &std::path::Path, topic: &str) -> Vec<u8> {
    data_entries(&data_file(dir, topic, 0))
        .iter()
        .map(|(compver, _)| *compver)
        .collect()
}

/// How many sets `GET /{topic}` says the codec's output was refused for.
async fn refused_sets(api: &Api, topic: &str) -> Value {
    api.info(topic).await["hooks"]["compression_refused_sets"].clone()
}

/// `GET /{topic}/check` answers `topic healthy`.
async fn assert_healthy(api: &Api, topic: &str) {
    expect_ok_message(
        api.get(&format!("/{topic}/check")).await,
        200,
        "topic healthy",
    )
    .await;
}

/// An altering codec's output never reaches the disk: sets are stored
/// uncompressed, the refusal is counted, and reads serve what was sent.
#[tokio::test]
async fn altering_codec_is_never_served_and_is_counted() {
    let dir = data_dir();
    let broker = spawn_broker_with(codec_config(dir.path(), "alter"));
    let api = broker.api();
    api.create_topic_with("t", &json!({"compression": CODEC}))
        .await;
    for b in 0..3 {
        assert_eq!(
            publish_batch(&api, "t", b * BATCH).await,
            (b * BATCH) as u64
        );
    }
    assert_eq!(
        stored_compvers(dir.path(), "t"),
        vec![0x01; 3],
        "stored uncompressed"
    );
    assert_eq!(refused_sets(&api, "t").await, 3);
    assert_all_read(&api, "t", 3 * BATCH).await;
    assert_healthy(&api, "t").await;
    broker.stop().await;
}

/// An honest codec's sets are stored compressed (the other tests' control),
/// and nothing is refused.
#[tokio::test]
async fn honest_codec_sets_are_stored_compressed() {
    let dir = data_dir();
    let broker = spawn_broker_with(codec_config(dir.path(), "ok"));
    let api = broker.api();
    api.create_topic_with("t", &json!({"compression": CODEC}))
        .await;
    publish_batch(&api, "t", 0).await;
    let entries = data_entries(&data_file(dir.path(), "t", 0));
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, 0x04, "the set went through the codec");
    assert_eq!(entries[0].1[0], 0xEC, "the hostile codec's magic byte");
    assert_eq!(refused_sets(&api, "t").await, 0);
    assert_all_read(&api, "t", BATCH).await;
    broker.stop().await;
}

/// A codec that drops messages on decompress moves no offset: live (its
/// sets are refused on write), and over data an honest codec wrote, before
/// and after restarts: reads name the codec, publishes continue after the
/// last acknowledged offset.
#[tokio::test]
async fn dropping_codec_never_moves_offsets() {
    let dir = data_dir();
    // Live: the write check refuses its output.
    let broker = spawn_broker_with(codec_config(dir.path(), "drop"));
    let api = broker.api();
    api.create_topic_with("live", &json!({"compression": CODEC}))
        .await;
    for b in 0..4 {
        assert_eq!(
            publish_batch(&api, "live", b * BATCH).await,
            (b * BATCH) as u64
        );
    }
    assert_all_read(&api, "live", 4 * BATCH).await;
    assert_eq!(refused_sets(&api, "live").await, 4);
    broker.stop().await;

    // Sets an honest codec wrote, read back through the dropping one.
    let broker = spawn_broker_with(codec_config(dir.path(), "ok"));
    let api = broker.api();
    api.create_topic_with("old", &json!({"compression": CODEC}))
        .await;
    for b in 0..2 {
        publish_batch(&api, "old", b * BATCH).await;
    }
    assert_eq!(stored_compvers(dir.path(), "old"), vec![0x04; 2]);
    broker.stop().await;

    for round in 0..2 {
        let broker = spawn_broker_with(codec_config(dir.path(), "drop"));
        let api = broker.api();
        let latest = api.info("old").await["latest_offset"].as_i64().unwrap();
        assert_eq!(
            latest,
            (2 * BATCH + round * BATCH) as i64 - 1,
            "round {round}"
        );
        let body = expect_error(api.get("/old/payload/5").await, 500, "codec error").await;
        assert_eq!(body["codec"], CODEC);
        let first = publish_batch(&api, "old", (2 + round) * BATCH).await;
        assert_eq!(
            first,
            ((2 + round) * BATCH) as u64,
            "round {round}: no offset reused"
        );
        let got = api.payload("old", &first.to_string()).await;
        assert_eq!(got, (first, reading(first as usize).into_bytes()));
        broker.stop().await;
    }
    let broker = spawn_broker_with(codec_config(dir.path(), "ok"));
    let api = broker.api();
    assert_all_read(&api, "old", 4 * BATCH).await;
    broker.stop().await;
}

/// A codec answering garbage gets a 500 naming it (never a checksum error),
/// `check` reports a codec error, the bytes stay, and an honest codec bound
/// to the same value reads everything again.
#[tokio::test]
async fn garbage_codec_is_named_and_readable_once_fixed() {
    let dir = data_dir();
    let broker = spawn_broker_with(codec_config(dir.path(), "ok"));
    let api = broker.api();
    api.create_topic_with("t", &json!({"compression": CODEC}))
        .await;
    publish_batch(&api, "t", 0).await;
    broker.stop().await;
    let path = data_file(dir.path(), "t", 0);
    let written = std::fs::read(&path).unwrap();

    let broker = spawn_broker_with(codec_config(dir.path(), "garbage"));
    let api = broker.api();
    for at in ["0", "3", "9"] {
        let body = expect_error(
            api.get(&format!("/t/payload/{at}")).await,
            500,
            "codec error",
        )
        .await;
        assert_eq!(body["codec"], CODEC, "{body}");
    }
    let scanner = api.scanner_id("t", "0").await;
    let body = expect_error(api.scan("t", &scanner, "5ms").await, 500, "codec error").await;
    assert_eq!(body["codec"], CODEC);
    let problems = expect_json(api.get("/t/check").await, 200).await;
    assert_eq!(problems[0]["type"], "codec", "{problems}");
    assert_eq!(problems[0]["offset"], 0, "{problems}");
    assert_eq!(problems.as_array().unwrap().len(), 1, "{problems}");
    broker.stop().await;
    assert_eq!(
        std::fs::read(&path).unwrap(),
        written,
        "the bytes stay intact"
    );

    let broker = spawn_broker_with(codec_config(dir.path(), "ok"));
    let api = broker.api();
    assert_all_read(&api, "t", BATCH).await;
    assert_healthy(&api, "t").await;
    broker.stop().await;
}

/// A codec whose output is larger than its input is not used: the sets are
/// stored uncompressed at their own size.
#[tokio::test]
async fn expanding_codec_is_stored_uncompressed() {
    let dir = data_dir();
    let broker = spawn_broker_with(codec_config(dir.path(), "expand"));
    let api = broker.api();
    api.create_topic_with("t", &json!({"compression": CODEC}))
        .await;
    for b in 0..2 {
        publish_batch(&api, "t", b * BATCH).await;
    }
    let entries = data_entries(&data_file(dir.path(), "t", 0));
    assert_eq!(
        entries.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![0x01; 2]
    );
    let plain: usize = (0..BATCH).map(|i| 9 + reading(i).len()).sum();
    assert_eq!(entries[0].1.len(), plain, "stored at the set's own size");
    assert_all_read(&api, "t", 2 * BATCH).await;
    broker.stop().await;
}
