//! What 1,000 idle scanners cost, and how fast one append wakes them all.
//!
//! Opens a log in a temporary directory, parks 1,000 tokio tasks in
//! `Scanner::next(one hour)` at the end of the log, measures the process's CPU
//! time (utime + stime from `/proc/self/stat`) over 5 s of idling, then appends
//! one message and reports how long until every scanner holds it. Exits by
//! itself; a run takes about 6 s.
//!
//! ```text
//! cargo run --release --example idle_scanners
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netlog::log::{FsyncPolicy, Log, LogOptions};

const SCANNERS: usize = 1_000;
const IDLE: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(3600);
/// Linux reports `/proc` times in USER_HZ ticks, 100 per second.
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // The command name (field 2) is in parentheses and may hold spaces; the
    // fields after it are plain. utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let opts = LogOptions {
        fsync: FsyncPolicy::Never,
        ..LogOptions::default()
    };
    let log = Log::open(dir.path(), opts).expect("open log");
    log.append(b"before").unwrap();
    log.flush().unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let parked = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(SCANNERS);
        for _ in 0..SCANNERS {
            let mut scanner = log.scanner(log.next_offset()).unwrap();
            let parked = parked.clone();
            tasks.push(tokio::spawn(async move {
                parked.fetch_add(1, Ordering::Relaxed);
                let m = scanner.next(WAIT).await.unwrap();
                (Instant::now(), m.map(|m| m.offset))
            }));
        }
        while parked.load(Ordering::Relaxed) < SCANNERS {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let the last ones reach their await before the clock starts.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let (cpu0, wall0) = (cpu_time(), Instant::now());
        tokio::time::sleep(IDLE).await;
        let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
        println!(
            "{SCANNERS} idle scanners: {} ms CPU over {:.2} s ({:.3}% of one core; /proc counts in 10 ms ticks)",
            cpu.as_millis(),
            wall.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
        );

        let start = Instant::now();
        let offset = log.append(b"wake up").unwrap();
        log.flush().unwrap();
        let mut woke = Vec::with_capacity(SCANNERS);
        for task in tasks {
            let joined = tokio::time::timeout(Duration::from_secs(30), task).await;
            let (at, got) = joined.expect("scanner woke within 30 s").unwrap();
            assert_eq!(got, Some(offset), "every scanner gets the new message");
            woke.push(at.duration_since(start));
        }
        woke.sort_unstable();
        println!(
            "one append woke all {SCANNERS}: first {:?}, median {:?}, p99 {:?}, last {:?}",
            woke[0],
            woke[SCANNERS / 2],
            woke[SCANNERS * 99 / 100],
            woke[SCANNERS - 1]
        );
    });
}
