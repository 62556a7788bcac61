//! What idempotency keys cost: memory per key in a topic's table, and the
//! start-up of a topic holding 100,000 keys in its window.
//!
//! 1. Fills a `Dedup` table with `KEYS` keys of 36 bytes (a UUID's text, a
//!    typical `Idempotency-Key`) and reports the growth of the process's
//!    resident memory per key (`/proc/self/statm`).
//! 2. Writes a topic directory at `DIR` (first argument) holding `KEYS`
//!    idempotent publishes (one 100-byte v1 message each, with its
//!    idempotency section) and `"message_format":"v1"` in `settings.json`,
//!    then opens a broker on it and reports the time `Broker::open` took,
//!    which rebuilds the table from the log, and how many keys it found;
//!    then the same without the v1 marker (no rebuild), as the baseline.
//!
//! ```text
//! cargo run --release --example dedup_keys -- /tmp/dedup-startup
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use netlog::log::{Log, LogOptions};
use netlog::record::{Idempotency, Record};
use netlog::topic::{Dedup, fingerprint};

const KEYS: usize = 100_000;
/// Linux pages.
const PAGE_BYTES: u64 = 4096;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * PAGE_BYTES
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("{:08x}-0000-4000-8000-{:012x}", i, i * 7919))
}

fn memory_per_key() {
    let before = resident_bytes();
    let dedup = Arc::new(Dedup::new(Duration::from_secs(120), KEYS));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for i in 0..KEYS {
        dedup.recover(key(i), i as u64, i as u64, 1, now);
    }
    let after = resident_bytes();
    assert_eq!(dedup.keys(), KEYS);
    println!(
        "memory: {KEYS} keys of 36 bytes: {:.1} MiB resident, {} bytes per key",
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) / KEYS as u64
    );
}

fn startup(dir: PathBuf) {
    let _ = std::fs::remove_dir_all(&dir);
    let topic = dir.join("keys");
    std::fs::create_dir_all(&topic).unwrap();
    std::fs::write(topic.join("settings.json"), r#"{"message_format":"v1"}"#).unwrap();
    let log = Log::open(&topic, LogOptions::default()).unwrap();
    let value = Bytes::from(vec![b'x'; 100]);
    for i in 0..KEYS {
        let mut v0 = Vec::new();
        netlog::message::encode(&mut v0, netlog::message::PLAIN, &value);
        let record = Record {
            idempotency: Some(Idempotency {
                key: key(i),
                request_count: 1,
                fingerprint: fingerprint(&v0),
            }),
            value: value.clone(),
            ..Record::default()
        };
        let mut frame = Vec::new();
        record.encode_frame(&mut frame).unwrap();
        log.append_encoded(&frame, 1).unwrap();
    }
    log.flush().unwrap();
    log.sync().unwrap();
    drop(log);
    let open = |what: &str| {
        let config = netlog::config::Config {
            data_dir: dir.clone(),
            ..netlog::config::Config::default()
        };
        let started = Instant::now();
        let broker = netlog::broker::Broker::open(config).expect("open the broker");
        let took = started.elapsed();
        let keys = broker
            .topic("keys")
            .unwrap()
            .dedup()
            .expect("an embedded topic")
            .keys();
        println!(
            "start-up: Broker::open, {what}: {:.0} ms, {keys} keys rebuilt",
            took.as_secs_f64() * 1000.0
        );
    };
    open("a topic with 100,000 keys in the window");
    // The same log without the v1 marker: no rebuild, the rest of the open.
    std::fs::write(topic.join("settings.json"), "{}").unwrap();
    open("the same log, no rebuild (baseline)");
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("netlog-dedup-keys"));
    memory_per_key();
    startup(dir);
}
