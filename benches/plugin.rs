//! Per-call cost of the plugin hooks, with the real components in
//! `plugins/dist` (`$NETLOG_PLUGIN_DIR` overrides; run `plugins/build.sh`
//! first): the host's overhead (taking an instance, arming the limits,
//! lowering and lifting the arguments) plus the plugin's own work.
//!
//! `cargo bench --bench plugin` (`-- codec-verify` for the write check's
//! cost alone)

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netlog::message::{self, Codec, Codecs, PLAIN};
use netlog::plugin::{
    HostOptions, Limits, Plugin, PluginHost, RetentionState, ScannerState, SegmentState,
};

fn load(host: &PluginHost, file: &str) -> Arc<Plugin> {
    let dir = std::env::var_os("NETLOG_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/dist"));
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "{} is missing: run plugins/build.sh",
        path.display()
    );
    host.load(file, &path, Limits::default()).unwrap()
}

/// A JSON object of about 100 bytes.
fn json_message(i: usize) -> Vec<u8> {
    format!(
        r#"{{"id": {i:08}, "user": "user-{i:06}", "action": "checkout", "amount": 1999, "ok": true}}"#
    )
    .into_bytes()
}

fn validate(c: &mut Criterion, host: &PluginHost) {
    let json = load(host, "json_validator.wasm")
        .validator("bench", r#"{"required": ["id"]}"#)
        .unwrap();
    let noop = load(host, "hostile_validator.wasm")
        .validator("bench", r#"{"mode": "ok"}"#)
        .unwrap();
    let messages: Vec<Vec<u8>> = (0..100).map(json_message).collect();
    let mut group = c.benchmark_group("validate");
    for n in [1, 100] {
        let batch: Vec<&[u8]> = messages[..n].iter().map(Vec::as_slice).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("json-validator/{n}"), |b| {
            b.iter(|| json.validate(black_box(&batch)).unwrap())
        });
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("accept-all/0 (host overhead)", |b| {
        b.iter(|| noop.validate(black_box(&[])).unwrap())
    });
    group.finish();
}

fn compress(c: &mut Criterion, host: &PluginHost) {
    let codec = load(host, "lz4_codec.wasm").codec("bench", "{}").unwrap();
    let mut set = Vec::new();
    for i in 0.. {
        if set.len() >= 10_000 {
            break;
        }
        message::encode(&mut set, PLAIN, &json_message(i));
    }
    let packed = codec.compress(&set).unwrap();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(set.len() as u64));
    group.bench_function("lz4/compress-10KB-set", |b| {
        b.iter(|| codec.compress(black_box(&set)).unwrap())
    });
    group.bench_function("lz4/decompress-10KB-set", |b| {
        b.iter(|| codec.decompress(black_box(&packed)).unwrap())
    });
    group.finish();
}

/// The cost of verifying a codec's output on write (issue 10): a set of 100
/// messages of about 100 bytes, through the lz4 plugin. `codec alone` is the
/// compression the write path always paid; `pack_set` is what it pays now
/// (compress, decompress again, compare every byte, frame); `verification`
/// is the added part alone (decompress and compare).
fn verify_on_write(c: &mut Criterion, host: &PluginHost) {
    let codec = Arc::new(load(host, "lz4_codec.wasm").codec("bench", "{}").unwrap());
    let mut set = Vec::new();
    for i in 0..100 {
        message::encode(&mut set, PLAIN, &json_message(i));
    }
    let packed = codec.compress(&set).unwrap();
    let mut codecs = Codecs::default();
    codecs.bind(4, codec.clone());
    let mut group = c.benchmark_group("codec-verify");
    group.throughput(Throughput::Elements(100));
    group.bench_function("lz4/100x100B codec alone (compress)", |b| {
        b.iter(|| codec.compress(black_box(&set)).unwrap())
    });
    group.bench_function(
        "lz4/100x100B verification alone (decompress + compare)",
        |b| {
            b.iter(|| {
                let back = codec.decompress(black_box(&packed)).unwrap();
                assert!(back == set);
            })
        },
    );
    group.bench_function("lz4/100x100B pack_set (codec + verification)", |b| {
        b.iter(|| {
            let (entry, err) = codecs.pack_set(black_box(&set), 4);
            assert!(err.is_none() && entry[0] == 4);
            entry
        })
    });
    group.finish();
}

fn evaluate(c: &mut Criterion, host: &PluginHost) {
    let policy = load(host, "keep_unread.wasm")
        .retention("bench", r#"{"max_age": "7day"}"#)
        .unwrap();
    let now = 1_700_000_000_000u64;
    let state = RetentionState {
        topic: "bench".into(),
        segments: (0..10)
            .map(|i| SegmentState {
                base_offset: i * 1000,
                next_offset: (i + 1) * 1000,
                bytes: 64 << 20,
                created_ms: now - (10 - i) * 3_600_000,
                modified_ms: now - (10 - i) * 3_600_000 + 60_000,
            })
            .collect(),
        scanners: (0..3)
            .map(|i| ScannerState {
                id: format!("00000000-0000-4000-8000-00000000000{i}"),
                next_offset: 2500 + i * 1000,
                persistent: i != 2,
            })
            .collect(),
        now_ms: now,
    };
    c.bench_function("retention/keep-unread/10-segments-3-scanners", |b| {
        b.iter(|| policy.evaluate(black_box(&state)).unwrap())
    });
}

fn plugins(c: &mut Criterion) {
    let host = PluginHost::new(HostOptions::default()).unwrap();
    validate(c, &host);
    compress(c, &host);
    verify_on_write(c, &host);
    evaluate(c, &host);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = plugins
}
criterion_main!(benches);
