//! Broker-level scale figures for `docs/BENCHMARKS.md` (issue 9):
//!
//! - `topics N`: N topics with one message each, published through the real
//!   group-commit path; then RSS, threads, and the CPU the monitor costs per
//!   second while every topic is idle (`monitor_tick` every second, as the
//!   broker runs it).
//! - `scanners N`: a topic with N persistent scanner files (written here
//!   directly, 8 bytes each, as netlog leaves them), then the time
//!   `Broker::open` takes to restore them.
//!
//! - `info N`: a topic with N persistent scanners served over HTTP; 4
//!   clients ask for its info in a loop while another times an unrelated
//!   `GET /` 200 times: its median and p99.
//!
//! - `restart N`: the `netlog` binary (beside this example in the target
//!   directory) is started on an empty data directory, N topics get one
//!   message each over HTTP, and its RSS is read; then it is stopped with
//!   SIGTERM and started again: the time until `/_ready` answers 200, and
//!   its RSS then (issue 18).
//! - `polls N`: the binary again, with a topic of N scanners and N long
//!   polls (`scan?wait=1h`, one connection each) open at the default
//!   connection cap (10,000): how long a publish on a new connection takes
//!   to get its 201, and how the polls end (woken with the message, or shed
//!   with the empty answer) (issue 18).
//!
//! `cargo run --release --example broker_scale -- topics 10000`
//! `cargo run --release --example broker_scale -- scanners 100000`
//! Data goes to a temporary directory under `$SCALE_DIR` (default the
//! system's), removed at the end.

use std::time::{Duration, Instant};

use netlog::broker::Broker;
use netlog::config::{Config, SettingsInput};

fn status(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_string())
        .unwrap_or_default()
}

/// User plus system CPU of this process, from /proc/self/stat.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // Fields 14 and 15 of stat (utime, stime), counted after the name.
    let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

fn topics(n: usize, dir: &std::path::Path) {
    let _ = netlog::log::raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = Broker::open(config(dir)).unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        for i in 0..n {
            let t = broker
                .create_topic(&format!("t{i}"), SettingsInput::default())
                .unwrap();
            t.publish(netlog::topic::Batch::One(bytes::Bytes::from_static(b"one")))
                .await
                .unwrap();
        }
    });
    println!(
        "created {n} topics with one message each in {:?}",
        started.elapsed()
    );
    // Let the blocking pool's idle writer threads retire (10 s keep-alive).
    std::thread::sleep(Duration::from_secs(12));
    println!("RSS {} / threads {}", status("VmRSS:"), status("Threads:"));
    let before = cpu();
    let wall = Instant::now();
    for _ in 0..10 {
        let tick = Instant::now();
        broker.monitor_tick();
        std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
    }
    let used = cpu() - before;
    println!(
        "idle monitor: {:?} CPU over {:?} = {:.2}% of a core; threads {}",
        used,
        wall.elapsed(),
        100.0 * used.as_secs_f64() / wall.elapsed().as_secs_f64(),
        status("Threads:")
    );
    broker.close().unwrap();
}

/// The `netlog` binary of the same build: `target/<profile>/netlog`.
fn netlog_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|examples| examples.parent())
        .map(|profile| profile.join("netlog"))
        .unwrap()
}

/// VmRSS of process `pid`.
fn rss_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(|l| l["VmRSS:".len()..].trim().to_string())
        .unwrap_or_default()
}

/// One HTTP/1.1 request on its own connection; the answer's status (0 when
/// nothing answered).
fn request(port: u16, method: &str, path: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Starts the binary on `dir` at `port`; returns it and how long `/_ready`
/// took to answer 200. The caller waits for it (`stop_netlog`).
#[allow(clippy::zombie_processes)]
fn start_netlog(dir: &std::path::Path, port: u16) -> (std::process::Child, Duration) {
    let started = Instant::now();
    let mut child = std::process::Command::new(netlog_binary())
        .args([
            "-listen",
            &format!("127.0.0.1:{port}"),
            "-loglevel",
            "warn",
            "-dir",
        ])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the netlog binary (build it first: cargo build)");
    loop {
        if request(port, "GET", "/_ready", "") == 200 {
            return (child, started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netlog never answered /_ready");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stop_netlog(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "netlog stopped with {status}");
}

fn restart(n: usize, dir: &std::path::Path) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (child, first_ready) = start_netlog(dir, port);
    let created = Instant::now();
    for i in 0..n {
        assert_eq!(request(port, "POST", &format!("/t{i}"), ""), 201);
        assert_eq!(request(port, "POST", &format!("/t{i}/payload"), "one"), 201);
    }
    println!(
        "first start: ready in {first_ready:?}; {n} topics with one message each in {:?}",
        created.elapsed()
    );
    std::thread::sleep(Duration::from_secs(12));
    println!("first start: RSS {}", rss_of(child.id()));
    stop_netlog(child);
    let (child, ready) = start_netlog(dir, port);
    println!(
        "clean restart: /_ready in {ready:?}, RSS {}",
        rss_of(child.id())
    );
    std::thread::sleep(Duration::from_secs(12));
    println!("clean restart, 12 s later: RSS {}", rss_of(child.id()));
    let last = format!("/t{}/payload/0", n - 1);
    assert_eq!(request(port, "GET", &last, ""), 200);
    stop_netlog(child);
}

fn polls(n: usize, dir: &std::path::Path) {
    use std::io::{Read, Write};
    let _ = netlog::log::raise_open_file_limit();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (child, _) = start_netlog(dir, port);
    assert_eq!(request(port, "POST", "/t", ""), 201);
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        use std::net::TcpStream;
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"POST /t/scanner HTTP/1.1\r\nHost: n\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let id = answer
            .split("\"id\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next());
        ids.push(id.expect("a scanner id").to_string());
    }
    let mut open = Vec::with_capacity(n);
    for id in &ids {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head =
            format!("GET /t/scan?id={id}&wait=1h HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).unwrap();
        open.push(s);
    }
    std::thread::sleep(Duration::from_secs(3));
    println!("{n} long polls open; RSS {}", rss_of(child.id()));
    let started = Instant::now();
    let status = request(port, "POST", "/t/payload", "wake");
    println!("publish at the cap: {status} in {:?}", started.elapsed());
    let (mut woken, mut shed, mut other) = (0, 0, 0);
    let reading = Instant::now();
    for mut s in open {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        match answer.get(9..12) {
            Some(b"200") => woken += 1,
            Some(b"404") => shed += 1,
            _ => other += 1,
        }
    }
    println!(
        "polls: {woken} woken with the message, {shed} shed with the empty answer, {other} other; all read in {:?}",
        reading.elapsed()
    );
    stop_netlog(child);
}

fn scanners(n: usize, dir: &std::path::Path) {
    {
        let broker = Broker::open(config(dir)).unwrap();
        broker.create_topic("t", SettingsInput::default()).unwrap();
        broker.close().unwrap();
    }
    let readers = dir.join("t/readers");
    for i in 0..n {
        let id = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
        std::fs::write(readers.join(format!("{id}.scanner")), (-1i64).to_be_bytes()).unwrap();
    }
    println!("wrote {n} scanner files");
    let started = Instant::now();
    let broker = Broker::open(config(dir)).unwrap();
    let took = started.elapsed();
    let count = broker.topic("t").unwrap().scanner_count();
    println!("start-up with {count} persistent scanners: {took:?}");
    broker.close().unwrap();
}

fn info(n: usize, dir: &std::path::Path) {
    scanners(n, dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(netlog::run(listener, config(dir), async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        // Wait until it serves.
        while http.get(format!("{base}/")).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut loaders = Vec::new();
        for _ in 0..4 {
            let (http, base, busy) = (http.clone(), base.clone(), busy.clone());
            loaders.push(tokio::spawn(async move {
                let mut answers = 0u32;
                while busy.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = http.get(format!("{base}/t")).send().await.unwrap();
                    let _ = r.bytes().await.unwrap();
                    answers += 1;
                }
                answers
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let r = http.get(format!("{base}/")).send().await.unwrap();
            let _ = r.bytes().await.unwrap();
            times.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        busy.store(false, std::sync::atomic::Ordering::Relaxed);
        let mut infos = 0;
        for l in loaders {
            infos += l.await.unwrap();
        }
        times.sort();
        println!(
            "unrelated GET / while 4 clients read the info of a topic with {n} scanners \
             ({infos} info answers): median {:?}, p99 {:?}, max {:?}",
            times[times.len() / 2],
            times[times.len() * 99 / 100],
            times[times.len() - 1]
        );
        let _ = stop.send(());
        let _ = server.await;
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let base = std::env::var_os("SCALE_DIR").map(std::path::PathBuf::from);
    let dir = match base {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir(),
    }
    .unwrap();
    match args.first().map(String::as_str) {
        Some("topics") => topics(n, dir.path()),
        Some("scanners") => scanners(n, dir.path()),
        Some("info") => info(n, dir.path()),
        Some("restart") => restart(n, dir.path()),
        Some("polls") => polls(n, dir.path()),
        _ => eprintln!("usage: broker_scale topics N | scanners N | info N | restart N | polls N"),
    }
}
