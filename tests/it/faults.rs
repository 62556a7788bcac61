//! Injected faults in the write path of the real binary, on any machine and
//! without root: `ENOSPC`, `EIO` and `EPERM` on the data, index, settings and
//! scanner files (opens, writes, fsyncs, renames), an fsync `EIO` with
//! `fsync = always`, and a panic in the writer's drain.
//!
//! The faults come from the fault seam (`src/fault.rs`): the package's tests
//! build the binary with the `fault-injection` feature, and each broker here
//! reads its rules from the file named by `NETLOG_FAULTS`, which a test
//! rewrites to inject a fault and empties to lift it. (A plain `cargo build`
//! sharing the target directory while these run would replace the binary
//! with one without the seam: then the first injected fault is answered 201
//! and the test fails there.)
//!
//! Every case checks the same four things: the answer is netlog's JSON error
//! (`507 insufficient storage` for a full disk, a generic `500` otherwise),
//! nothing acknowledged is lost or altered (read back after the fault is
//! lifted and after a restart), nothing panics, and the other topics keep
//! being served meanwhile.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use reqwest::StatusCode;
use tempfile::TempDir;

/// The errors injected on every file, with the answer each must get.
const ERRORS: &[(&str, u16, &str)] = &[
    ("ENOSPC", 507, "insufficient storage"),
    ("EIO", 500, "unkwown error"),
    ("EPERM", 500, "unkwown error"),
];

/// A broker started with a fault rules file, and what it acknowledged.
struct Faulty {
    netlog: NetlogProcess,
    rules: PathBuf,
    data: TempDir,
    _rules_dir: TempDir,
    args: Vec<String>,
    /// (topic, offset, payload) of every 201.
    acked: Vec<(String, u64, Vec<u8>)>,
}

impl Faulty {
    /// Starts the binary on a fresh data directory with no fault, and
    /// creates topics `t` and `other`.
    async fn start(args: &[&str]) -> Faulty {
        let data = data_dir();
        let rules_dir = data_dir();
        let rules = rules_dir.path().join("faults");
        std::fs::write(&rules, "").unwrap();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let netlog = spawn(data.path(), &rules, &args).await;
        let f = Faulty {
            netlog,
            rules,
            data,
            _rules_dir: rules_dir,
            args,
            acked: Vec::new(),
        };
        f.api().create_topic("t").await;
        f.api().create_topic("other").await;
        f
    }

    fn api(&self) -> Api {
        self.netlog.api()
    }

    /// Replaces the fault rules (empty: no fault).
    fn set(&self, rules: &str) {
        std::fs::write(&self.rules, rules).unwrap();
    }

    /// Publishes `payload` to `topic`, which must be acknowledged.
    async fn publish(&mut self, topic: &str, payload: &[u8]) -> u64 {
        let offset = self.api().publish(topic, payload.to_vec()).await;
        self.acked
            .push((topic.to_string(), offset, payload.to_vec()));
        offset
    }

    /// Publishes `payload` to `topic`, which must be refused with `status`
    /// and netlog's error `text`.
    async fn refused(&self, topic: &str, payload: &[u8], status: u16, text: &str) {
        let resp = self
            .api()
            .post(&format!("/{topic}/payload"), payload.to_vec())
            .await;
        expect_error(resp, status, text).await;
    }

    /// Every acknowledged message reads back as acknowledged, and the next
    /// offset of each topic is one past its last acknowledged message (no
    /// refused publish became readable).
    async fn verify(&self) {
        let api = self.api();
        for (topic, offset, want) in &self.acked {
            let (got_offset, got) = api.payload(topic, &offset.to_string()).await;
            assert_eq!(got_offset, *offset);
            assert!(got == *want, "{topic} message {offset} differs");
        }
        for topic in ["t", "other"] {
            let next = self
                .acked
                .iter()
                .filter(|a| a.0 == topic)
                .map(|a| a.1 + 1)
                .max()
                .unwrap_or(0);
            let resp = api.get(&format!("/{topic}/payload/{next}")).await;
            expect_error(resp, 404, "offset not found").await;
        }
    }

    /// The process is alive, healthy, and logged no panic but `allowed`.
    async fn healthy(&self, allowed: usize) {
        expect_json(self.api().get("/_health").await, 200).await;
        let log = self.netlog.log();
        let panics = log.matches(" panicked at ").count();
        assert!(panics <= allowed, "{panics} panics logged:\n{log}");
    }

    /// Stops the broker (SIGTERM when `graceful`, else SIGKILL) and starts
    /// it again with no fault.
    async fn restart(&mut self, graceful: bool) {
        if graceful {
            self.netlog.terminate().await;
        } else {
            self.netlog.kill();
        }
        self.set("");
        self.netlog = spawn(self.data.path(), &self.rules, &self.args).await;
    }
}

async fn spawn(data: &Path, rules: &Path, args: &[String]) -> NetlogProcess {
    spawn_netlog_env(data, args, &[("NETLOG_FAULTS", rules)]).await
}

/// `ENOSPC`, `EIO` and `EPERM` on writes to the data and the index file
/// refuse the publish with netlog's error, make none of it readable, leave
/// the other topic writable, and writing resumes at the next offset once
/// the fault is lifted; all of it survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_faults_on_data_and_index_refuse_the_publish_only() {
    let mut f = Faulty::start(&[]).await;
    f.publish("t", b"before").await;
    for file in ["data", "index"] {
        for (errno, status, text) in ERRORS {
            f.set(&format!("t {file} write {errno}"));
            for _ in 0..3 {
                f.refused("t", b"refused", *status, text).await;
            }
            let other = format!("other while t's {file} gets {errno}");
            f.publish("other", other.as_bytes()).await;
            f.set("");
            let next = f.acked.iter().filter(|a| a.0 == "t").count() as u64;
            let after = format!("after {file} {errno}");
            assert_eq!(
                f.publish("t", after.as_bytes()).await,
                next,
                "no offset skipped"
            );
            f.verify().await;
        }
    }
    f.healthy(0).await;
    f.restart(false).await;
    f.verify().await;
    f.publish("t", b"after the restart").await;
    f.verify().await;
}

/// With `fsync = always`, a publish whose fsync fails (`EIO`) is answered
/// 500 and is never served, later writes to that topic are refused even
/// once the disk works again (a retried fsync could lie) while the other
/// topics go on, and after a restart (the topic reopened, its tail
/// re-verified) writes resume at the refused publish's offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_is_never_acknowledged_nor_served() {
    for file in ["data", "index"] {
        let mut f = Faulty::start(&["--fsync", "always"]).await;
        for i in 0..3 {
            f.publish("t", format!("durable {i}").as_bytes()).await;
        }
        f.set(&format!("t {file} sync EIO"));
        f.refused("t", b"never acknowledged", 500, "unkwown error")
            .await;
        f.set("");
        // The refused message is not served, and the log refuses writes.
        f.verify().await;
        for _ in 0..3 {
            f.refused("t", b"refused until reopened", 500, "unkwown error")
                .await;
        }
        f.publish("other", b"other topics go on").await;
        let log = f.netlog.log();
        assert_eq!(
            log.matches("fsync failed: the log refuses writes").count(),
            1,
            "the failed fsync is logged once:\n{log}"
        );
        f.healthy(0).await;

        f.restart(false).await;
        f.verify().await;
        assert_eq!(f.publish("t", b"after reopening").await, 3);
        f.verify().await;
    }
}

/// `ENOSPC`, `EIO` and `EPERM` on creating, writing, fsyncing or renaming a
/// new topic's files (data, index, `settings.json`) refuse the create with
/// netlog's error and leave nothing behind: the same create succeeds once
/// the fault is lifted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_creating_a_topic_leave_nothing_behind() {
    let mut f = Faulty::start(&[]).await;
    let cases = [
        ("data", "open"),
        ("data", "write"),
        ("index", "open"),
        ("settings", "open"),
        ("settings", "write"),
        ("settings", "sync"),
        ("settings", "rename"),
    ];
    let mut n = 0;
    for (file, op) in cases {
        for (errno, status, text) in ERRORS {
            let name = format!("new{n}");
            n += 1;
            f.set(&format!("{name} {file} {op} {errno}"));
            let resp = f.api().post_empty(&format!("/{name}")).await;
            let body = expect_error(resp, *status, text).await;
            assert!(
                !f.data.path().join(&name).exists(),
                "{file} {op} {errno}: a refused create left its directory: {body}"
            );
            f.publish("t", format!("t while {name} fails").as_bytes())
                .await;
            f.set("");
            f.api().create_topic(&name).await;
            assert_eq!(f.api().publish(&name, b"x".to_vec()).await, 0);
        }
    }
    f.verify().await;
    f.healthy(0).await;
}

/// `ENOSPC`, `EIO` and `EPERM` on a persistent scanner's file (create,
/// write, fsync, rename) refuse the scanner with netlog's error; the topic
/// reads on, and the same scanner opens once the fault is lifted, and
/// survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_scanner_files_refuse_the_scanner_only() {
    let mut f = Faulty::start(&[]).await;
    f.publish("t", b"one").await;
    f.publish("t", b"two").await;
    for op in ["open", "write", "sync", "rename"] {
        for (errno, status, text) in ERRORS {
            f.set(&format!("t scanner {op} {errno}"));
            let resp = f.api().post_empty("/t/scanner?from=0&persist=true").await;
            expect_error(resp, *status, text).await;
            f.verify().await;
            f.set("");
        }
    }
    let scanners = f.api().info("t").await["scanners"].clone();
    assert_eq!(
        scanners.as_object().map_or(0, |s| s.len()),
        0,
        "no refused scanner is registered: {scanners}"
    );
    let id = f.api().scanner("t", "from=0&persist=true").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(f.api().scan_one("t", &id).await, (0, b"one".to_vec()));
    f.healthy(0).await;
    f.restart(true).await;
    assert_eq!(f.api().scan_one("t", &id).await, (1, b"two".to_vec()));
    f.verify().await;
}

/// A panic in the writer's drain fails that group's publishes with a 500,
/// is logged with its cause, makes nothing readable, and the topic goes on
/// at the next offset, the other topics unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_drain_fails_its_group_only() {
    let mut f = Faulty::start(&[]).await;
    f.publish("t", b"before").await;
    f.set("t drain panic -");
    for _ in 0..3 {
        f.refused("t", b"panics", 500, "unkwown error").await;
    }
    f.publish("other", b"other topics go on").await;
    f.set("");
    assert_eq!(f.publish("t", b"after").await, 1);
    f.verify().await;
    let log = f.netlog.log();
    assert!(
        log.contains("writer panicked") && log.contains("injected fault: a panic in the drain"),
        "the panic is logged with its cause:\n{log}"
    );
    let panics = log.matches("writer panicked: the group").count();
    assert_eq!(
        log.matches("injected fault: a panic in the drain").count(),
        panics,
        "each panic is logged once, not printed by the panic hook as well:\n{log}"
    );
    f.healthy(3).await;
    f.restart(false).await;
    f.verify().await;
}

/// A disk that stays full for 5 s (every data write `ENOSPC`) writes a few
/// log lines in all, not one per refused publish (the issue saw 16,916),
/// on any machine: the root-only tmpfs variant is in `disk_full.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_for_5_s_writes_a_few_log_lines() {
    let f = Faulty::start(&[]).await;
    let api = f.api();
    let before = f.netlog.log().lines().count();
    f.set("t data write ENOSPC");
    let started = Instant::now();
    let (mut sent, mut refused) = (0, 0);
    while started.elapsed() < Duration::from_secs(5) {
        let resp = api.post("/t/payload", vec![b'x'; 1000]).await;
        sent += 1;
        if resp.status() == StatusCode::INSUFFICIENT_STORAGE {
            refused += 1;
        }
    }
    let log = f.netlog.log();
    let lines = log.lines().count() - before;
    println!("{lines} log lines for {refused} of {sent} publishes refused in 5 s");
    assert_eq!(
        refused, sent,
        "every publish is refused while the disk is full"
    );
    assert!(refused > 100, "only {refused} publishes in 5 s");
    assert!(
        lines <= 24,
        "{lines} log lines for {refused} refused publishes:\n{log}"
    );
    assert!(log.contains("disk full"), "the full disk is logged:\n{log}");
}
