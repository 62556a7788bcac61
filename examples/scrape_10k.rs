//! What one `GET /_metrics` costs with 10,000 topics.
//!
//! Creates 10,000 topics in a temporary directory through the library (a
//! persistent scanner on every tenth), then serves them with `netlog::run`
//! on 127.0.0.1:0, publishes one message to each over HTTP (so every
//! per-topic series, the publish histogram included, has a value) and
//! scrapes `/_metrics` a few times, printing the wall time and the process's
//! CPU time per scrape and the size of the exposition. Exits by itself.
//!
//! Every topic keeps one file open (its active segment's log; indexes go
//! through the descriptor cache): 10,000 topics need a file limit above
//! 10,000 plus the connections (`ulimit -n`); pass a smaller count where the
//! limit is lower.
//!
//! ```text
//! cargo run --release --example scrape_10k [-- TOPICS]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use netlog::broker::Broker;
use netlog::config::{Config, SettingsInput};
use netlog::log::FsyncPolicy;

/// Topics by default.
const TOPICS: usize = 10_000;
/// Scrapes timed.
const SCRAPES: usize = 5;
/// Index entries per segment: small, so 10,000 indexes stay light.
const INDEX_ENTRIES: u32 = 1024;

/// Concurrent publishers filling the topics.
const PUBLISHERS: usize = 32;
/// Linux reports `/proc` times in USER_HZ ticks, 100 per second.
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // utime and stime are fields 14 and 15, counted after the command name
    // (field 2, in parentheses, may hold spaces).
    let after_name = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        fsync: FsyncPolicy::Never,
        index_entries: INDEX_ENTRIES,
        monitor_interval: Duration::from_secs(3600),
        ..Config::default()
    }
}

fn main() {
    let topics: usize = std::env::args()
        .nth(1)
        .map_or(TOPICS, |n| n.parse().expect("a number of topics"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let started = Instant::now();
    let broker = Arc::new(Broker::open(config(dir.path())).expect("open the data directory"));
    runtime.block_on(async {
        for i in 0..topics {
            let name = format!("topic-{i:05}");
            let topic = broker
                .create_topic(&name, SettingsInput::default())
                .expect("create a topic");
            if i % 10 == 0 {
                topic.create_scanner(0, true).await.expect("scanner");
            }
        }
    });
    broker.close().expect("close");
    drop(broker);
    println!("created {topics} topics in {:.1?}", started.elapsed());

    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/_metrics", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(netlog::run(listener, config(dir.path()), async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        let opened = Instant::now();
        while client.get(&url).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "broker opened {topics} topics and answered in {:.1?}",
            opened.elapsed()
        );
        let base = url.trim_end_matches("/_metrics").to_string();
        futures_util::stream::iter(0..topics)
            .map(|i| {
                let (client, base) = (client.clone(), base.clone());
                async move {
                    let url = format!("{base}/topic-{i:05}/payload");
                    let r = client.post(url).body("{\"hello\":1}").send().await;
                    assert_eq!(r.expect("publish").status(), 201);
                }
            })
            .buffer_unordered(PUBLISHERS)
            .collect::<Vec<()>>()
            .await;
        let first = client.get(&url).send().await.unwrap().text().await.unwrap();
        let series = first.lines().filter(|l| !l.starts_with('#')).count();
        println!(
            "exposition: {} bytes ({:.1} MiB), {series} samples, {:.0} bytes per topic",
            first.len(),
            first.len() as f64 / (1024.0 * 1024.0),
            first.len() as f64 / topics as f64
        );
        let mut times = Vec::new();
        let cpu_before = cpu_time();
        for _ in 0..SCRAPES {
            let t = Instant::now();
            let body = client
                .get(&url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            times.push(t.elapsed());
            assert!(body.len() > topics);
        }
        let cpu = cpu_time() - cpu_before;
        println!(
            "CPU time per scrape (server and client, one process): {:.1?}",
            cpu / SCRAPES as u32
        );
        times.sort();
        println!(
            "scrape time over {SCRAPES} scrapes: min {:.1?}, median {:.1?}, max {:.1?}",
            times[0],
            times[SCRAPES / 2],
            times[SCRAPES - 1]
        );
        let _ = stop.send(());
        server.await.unwrap().expect("clean stop");
    });
}
