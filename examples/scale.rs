//! Scale figures of the log layer (issue 9), one subcommand each:
//!
//! ```text
//! cargo run --release --example scale -- segments [COUNT]        # default 100000
//! cargo run --release --example scale -- restart [GIB] [SEGMENTS] # default 10 1000
//! cargo run --release --example scale -- topics [COUNT]           # default 10000
//! ```
//!
//! * `segments`: one log of COUNT segments (one message each); opens it, reads
//!   every message across every segment and a random offset a thousand times,
//!   and reports the most descriptors the process held (`/proc/self/fd`).
//! * `restart`: writes GIB GiB in SEGMENTS segments, then times `Log::open`
//!   after a clean stop, and again after a child process appending to the
//!   log was killed with SIGKILL (with the page cache dropped first when
//!   this may write `/proc/sys/vm/drop_caches`, so both a cold and a warm
//!   figure are printed).
//! * `topics`: COUNT logs in one process, each opened and given one message,
//!   all kept open; reports the resident set (`VmRSS`).
//!
//! Data goes to a temporary directory under `$SCALE_DIR` (default the system
//! temporary directory), removed at the end.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netlog::log::{FsyncPolicy, Log, LogOptions};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn workdir() -> tempfile::TempDir {
    let base = std::env::var_os("SCALE_DIR").map_or_else(std::env::temp_dir, Into::into);
    tempfile::Builder::new()
        .prefix("netlog-scale-")
        .tempdir_in(base)
        .expect("temporary directory")
}

fn opts(index_entries: u32) -> LogOptions {
    LogOptions {
        index_entries,
        fsync: FsyncPolicy::Never,
        ..LogOptions::default()
    }
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("segments") => segments(arg(2, 100_000)),
        Some("restart") => restart(arg(2, 10), arg(3, 1000)),
        Some("topics") => topics(arg(2, 10_000)),
        Some("append-forever") => append_forever(
            Path::new(&std::env::args().nth(2).unwrap()),
            arg(3, 10 << 20),
        ),
        _ => eprintln!("usage: scale segments [COUNT] | restart [GIB] [SEGMENTS] | topics [COUNT]"),
    }
}

/// COUNT one-message segments: the first is written through the log, the
/// others are copies of its files under the following base offsets (a
/// segment's files hold no absolute offset), which is quicker than COUNT
/// fsynced rolls.
fn segments(count: u64) {
    let tmp = workdir();
    let dir = tmp.path().join("t");
    let t = Instant::now();
    {
        let log = Log::open(&dir, opts(1024)).unwrap();
        log.append(b"segment message").unwrap();
        log.sync().unwrap();
    }
    let data = std::fs::read(dir.join(format!("{:020}.data", 0))).unwrap();
    let index = std::fs::read(dir.join(format!("{:020}.index", 0))).unwrap();
    // The used entries only; the rest of the copy stays sparse as written.
    let used = &index[..32];
    for base in 1..count {
        std::fs::write(dir.join(format!("{base:020}.data")), &data).unwrap();
        let path = dir.join(format!("{base:020}.index"));
        std::fs::write(&path, used).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(index.len() as u64))
            .unwrap();
    }
    println!("wrote {count} segments in {:?}", t.elapsed());
    let before = open_fds();
    let t = Instant::now();
    let log = Log::open(&dir, opts(1024)).unwrap();
    println!(
        "opened in {:?}; descriptors: {before} before, {} after",
        t.elapsed(),
        open_fds()
    );
    let mut max_fds = open_fds();
    let t = Instant::now();
    let mut reader = log.reader(0).unwrap();
    let mut n = 0u64;
    while let Some(m) = reader.next().unwrap() {
        assert_eq!(m.offset, n);
        n += 1;
        if n.is_multiple_of(1000) {
            max_fds = max_fds.max(open_fds());
        }
    }
    assert_eq!(n, count);
    println!(
        "read {n} messages across every segment in {:?}",
        t.elapsed()
    );
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let o = x % count;
        let m = log.reader(o).unwrap().next().unwrap().unwrap();
        assert_eq!(m.offset, o);
        max_fds = max_fds.max(open_fds());
    }
    println!(
        "segments: {count}; most descriptors held: {max_fds} (cache cap {}); RSS {:.1} MiB",
        netlog::log::open_file_limit(),
        rss_mib()
    );
}

/// Writes `gib` GiB in `segments` segments, then times reopening.
fn restart(gib: u64, segments: u64) {
    let tmp = workdir();
    let dir = tmp.path().join("t");
    let seg_bytes = (gib << 30) / segments;
    let payload = vec![0x5Au8; 64 * 1024 - 9];
    let t = Instant::now();
    {
        let log = Log::open(&dir, opts(netlog::log::DEFAULT_INDEX_ENTRIES)).unwrap();
        let mut in_seg = 0u64;
        for _ in 0..segments {
            while in_seg < seg_bytes {
                log.append(&payload).unwrap();
                in_seg += 64 * 1024;
            }
            log.flush().unwrap();
            log.roll().unwrap();
            in_seg = 0;
        }
        log.sync().unwrap();
    }
    println!(
        "wrote {gib} GiB in {segments} segments in {:?}",
        t.elapsed()
    );
    let cold = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    let t = Instant::now();
    let log = Log::open(&dir, opts(netlog::log::DEFAULT_INDEX_ENTRIES)).unwrap();
    println!(
        "restart after a clean stop: {:?} ({}), next offset {}",
        t.elapsed(),
        if cold {
            "cold page cache"
        } else {
            "warm page cache"
        },
        log.next_offset()
    );
    let t = Instant::now();
    let log = Log::open(&dir, opts(netlog::log::DEFAULT_INDEX_ENTRIES)).unwrap();
    println!("  again, warm: {:?}", t.elapsed());
    drop(log);

    // A child appends to the log until it is killed mid-stream.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("append-forever")
        .arg(&dir)
        .arg(seg_bytes.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("child");
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let cold = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    let t = Instant::now();
    let log = Log::open(&dir, opts(netlog::log::DEFAULT_INDEX_ENTRIES)).unwrap();
    println!(
        "restart after SIGKILL: {:?} ({}), next offset {}",
        t.elapsed(),
        if cold {
            "cold page cache"
        } else {
            "warm page cache"
        },
        log.next_offset()
    );
    drop(log);
    let t = Instant::now();
    let log = Log::open(&dir, opts(netlog::log::DEFAULT_INDEX_ENTRIES)).unwrap();
    println!("  again, warm: {:?}", t.elapsed());
    println!("segments: {}", log.segments().len());
}

/// Appends until killed, rolling at `seg_bytes` as a broker's segment size
/// would.
fn append_forever(dir: &Path, seg_bytes: u64) {
    let log = Log::open(dir, opts(netlog::log::DEFAULT_INDEX_ENTRIES)).unwrap();
    let payload = vec![0xA5u8; 4000];
    loop {
        for _ in 0..16 {
            log.append(&payload).unwrap();
        }
        log.flush().unwrap();
        if log
            .segments()
            .last()
            .is_some_and(|s| s.data_size >= seg_bytes)
        {
            log.roll().unwrap();
        }
    }
}

/// COUNT logs with one message each, all open at once.
fn topics(count: u64) {
    match netlog::log::raise_open_file_limit() {
        Ok((old, new)) => println!("descriptor soft limit {old} -> {new}"),
        Err(e) => println!("could not raise the descriptor limit: {e}"),
    }
    let tmp = workdir();
    let base_rss = rss_mib();
    let t = Instant::now();
    let mut logs = Vec::with_capacity(count as usize);
    for i in 0..count {
        let log = Log::open(
            &tmp.path().join(format!("topic-{i}")),
            LogOptions::default(),
        )
        .unwrap();
        log.append(format!("message of topic {i}").as_bytes())
            .unwrap();
        log.flush().unwrap();
        logs.push(log);
    }
    println!(
        "topics: {count} logs open with one message each in {:?}; RSS {:.1} MiB ({:.1} MiB before), {} descriptors",
        t.elapsed(),
        rss_mib(),
        base_rss,
        open_fds()
    );
}
