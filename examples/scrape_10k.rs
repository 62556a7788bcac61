//! What one `GET /_metrics` costs with 10,000 topics.
//!
//! Creates 10,000 topics in a temporary directory through the library (one
//! message published to each, and a persistent scanner on every tenth, so
//! every per-topic series has a value), then serves them with `netlog::run`
//! on 127.0.0.1:0 and scrapes `/_metrics` a few times, printing the time of
//! each scrape and the size of the exposition. Exits by itself.
//!
//! ```text
//! cargo run --release --example scrape_10k [-- TOPICS]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use netlog::broker::Broker;
use netlog::config::{Config, SettingsInput};
use netlog::log::FsyncPolicy;
use netlog::topic::Batch;

/// Topics by default.
const TOPICS: usize = 10_000;
/// Scrapes timed.
const SCRAPES: usize = 5;
/// Index entries per segment: small, so 10,000 indexes stay light.
const INDEX_ENTRIES: u32 = 1024;

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
            topic
                .publish(Batch::One(bytes::Bytes::from_static(b"{\"hello\":1}")))
                .await
                .expect("publish");
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
        let first = loop {
            match client.get(&url).send().await {
                Ok(r) => break r.text().await.unwrap(),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        println!(
            "broker opened {topics} topics and answered in {:.1?}",
            opened.elapsed()
        );
        let series = first.lines().filter(|l| !l.starts_with('#')).count();
        println!(
            "exposition: {} bytes ({:.1} MiB), {series} samples, {:.0} bytes per topic",
            first.len(),
            first.len() as f64 / (1024.0 * 1024.0),
            first.len() as f64 / topics as f64
        );
        let mut times = Vec::new();
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
