//! Throughput of the log core: appends (one message per call, and message
//! sets), sequential reads through a `Reader`, and how long a scanner parked
//! at the end of the log takes to wake for a new message; and the message
//! checksum, `netlog::message::crc32` beside `crc32fast::hash`, at the sizes
//! messages have.
//!
//! Every log lives in a fresh temporary directory with `FsyncPolicy::Never`,
//! so the numbers are the log's own cost plus the page cache, not the disk's
//! fsync latency. Run with `cargo bench --bench log`.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use netlog::log::{FsyncPolicy, Log, LogOptions};
use netlog::message::{SET_NONE, SET_SNAPPY};

/// Messages per explicit flush in the buffered append benchmarks.
const FLUSH_EVERY: u64 = 1000;
/// Messages per set in the message set benchmarks.
const SET_LEN: usize = 100;
/// Messages written before the read benchmarks, per payload size.
const READ_BYTES: usize = 64 << 20;

fn options() -> LogOptions {
    LogOptions {
        fsync: FsyncPolicy::Never,
        ..LogOptions::default()
    }
}

/// A payload of `len` bytes that compresses about as well as JSON does.
fn payload(len: usize, seed: usize) -> Vec<u8> {
    format!(
        "{{\"id\":{seed},\"user\":\"u{}\",\"event\":\"click\"}}",
        seed % 977
    )
    .bytes()
    .cycle()
    .take(len)
    .collect()
}

/// A new, empty log in its own temporary directory.
fn fresh_log() -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    (dir, log)
}

fn short(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
}

/// `iters` appends of `len`-byte messages, flushing every `flush_every`.
fn append_run(iters: u64, len: usize, flush_every: u64) -> Duration {
    let (_dir, log) = fresh_log();
    let msg = payload(len, 1);
    let start = Instant::now();
    for i in 1..=iters {
        black_box(log.append(&msg).unwrap());
        if i % flush_every == 0 {
            log.flush().unwrap();
        }
    }
    log.flush().unwrap();
    start.elapsed()
}

fn appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    short(&mut group);
    group.throughput(Throughput::Elements(1));
    group.bench_function("100B/flush_every_1000", |b| {
        b.iter_custom(|iters| append_run(iters, 100, FLUSH_EVERY))
    });
    group.bench_function("100B/flush_each", |b| {
        b.iter_custom(|iters| append_run(iters, 100, 1))
    });
    group.bench_function("4KiB/flush_every_1000", |b| {
        b.iter_custom(|iters| append_run(iters, 4096, FLUSH_EVERY))
    });

    // One iteration is one set of SET_LEN messages.
    group.throughput(Throughput::Elements(SET_LEN as u64));
    let msgs: Vec<Vec<u8>> = (0..SET_LEN).map(|i| payload(100, i)).collect();
    for (name, compression) in [("none", SET_NONE), ("snappy", SET_SNAPPY)] {
        group.bench_function(format!("100B_sets_of_100/{name}"), |b| {
            b.iter_custom(|iters| {
                let (_dir, log) = fresh_log();
                let start = Instant::now();
                for i in 1..=iters {
                    black_box(log.append_set(&msgs, compression).unwrap());
                    if i % (FLUSH_EVERY / SET_LEN as u64) == 0 {
                        log.flush().unwrap();
                    }
                }
                log.flush().unwrap();
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn reads(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    short(&mut group);
    for (name, len) in [("100B", 100usize), ("4KiB", 4096)] {
        let (_dir, log) = fresh_log();
        let count = (READ_BYTES / len) as u64;
        for i in 0..count {
            log.append(&payload(len, i as usize)).unwrap();
        }
        log.flush().unwrap();
        // One iteration is one message; the reader starts over at the end.
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("sequential/{name}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut reader = log.reader(0).unwrap();
                for _ in 0..iters {
                    let m = match reader.next().unwrap() {
                        Some(m) => m,
                        None => {
                            reader = log.reader(0).unwrap();
                            reader.next().unwrap().unwrap()
                        }
                    };
                    black_box(m);
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

/// Time from the start of `append` + `flush` on this thread to a scanner,
/// parked in `Scanner::next` on a tokio worker, holding the message.
fn scanner_wakeup(c: &mut Criterion) {
    let mut group = c.benchmark_group("scanner");
    short(&mut group);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let (_dir, log) = fresh_log();
    let (tx, rx) = mpsc::channel::<Instant>();
    let mut scanner = log.scanner(0).unwrap();
    let waiter = runtime.spawn(async move {
        loop {
            // A wait that times out (None) just starts the next one.
            if let Some(_m) = scanner.next(Duration::from_secs(10)).await.unwrap()
                && tx.send(Instant::now()).is_err()
            {
                break;
            }
        }
    });
    let msg = payload(100, 7);
    group.bench_function("wakeup/100B", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Give the waiter time to park again after the last message.
                std::thread::sleep(Duration::from_micros(200));
                let start = Instant::now();
                log.append(&msg).unwrap();
                log.flush().unwrap();
                let got = rx.recv().unwrap();
                total += got.duration_since(start);
            }
            total
        })
    });
    group.finish();
    drop(rx);
    // The waiter ends at its next message, when its send fails.
    log.append(&msg).unwrap();
    log.flush().unwrap();
    runtime.block_on(waiter).unwrap();
}

/// The CRC-32 of one message's payload, ours and `crc32fast`'s, from a
/// short message to past the length where ours hands over to `crc32fast`.
fn checksums(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32");
    short(&mut group);
    for len in [16, 100, 127, 1024] {
        let bytes = payload(len, 3);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("netlog/{len}B"), |b| {
            b.iter(|| netlog::message::crc32(black_box(&bytes)))
        });
        group.bench_function(format!("crc32fast/{len}B"), |b| {
            b.iter(|| crc32fast::hash(black_box(&bytes)))
        });
    }
    group.finish();
}

criterion_group!(benches, appends, reads, scanner_wakeup, checksums);
criterion_main!(benches);
