//! Helpers shared by the integration tests: a broker running in this process
//! (the library's `run` on `127.0.0.1:0`), the real `netlog` binary started
//! by the one launcher, [`Launch`] (port 0, the address read back from the
//! broker's start-up line), a small HTTP client for the API, checks for
//! netlog's JSON shapes, waits for events ([`eventually`], [`metric`],
//! [`until_long_polls`]) and [`skip`], which records a test that cannot run
//! here where `./test.sh` lists it.
//!
//! Everything listens on and talks to 127.0.0.1 only. Data lives in temporary
//! directories that are removed when their guard is dropped.

#![allow(dead_code)]

mod engines;
mod nats;
mod plugins;
mod raw;
#[allow(unused_imports)]
pub use engines::*;
#[allow(unused_imports)]
pub use nats::*;
#[allow(unused_imports)]
pub use plugins::*;
#[allow(unused_imports)]
pub use raw::*;

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use netlog::config::Config;
use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

/// Longest any single request of a test may take before the test fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a child broker may take to answer after start or to exit.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// Calls `probe` every 20 ms until it gives `Some`, and returns that; fails
/// the test, saying what was awaited, if `limit` passes first. The way to
/// wait for an event (a gauge, a log line, an answer) instead of sleeping.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the sample `name` in the broker's `/_metrics` whose labels
/// include every `key="value"` of `labels`; `None` if there is none.
pub async fn metric(api: &Api, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = api.get("/_metrics").await.text().await.ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            let wanted = series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
            if wanted { value.parse().ok() } else { None }
        })
}

/// Waits until the broker counts exactly `n` scans in progress
/// (`netlog_long_polls`, which counts a scan from when its request is read
/// until it is answered): the long polls sent are in, and what the test does
/// next comes after them.
pub async fn until_long_polls(api: &Api, n: usize) {
    eventually(
        &format!("netlog_long_polls at {n}"),
        REQUEST_TIMEOUT,
        || async { (metric(api, "netlog_long_polls", &[]).await? == n as f64).then_some(()) },
    )
    .await
}

/// Records that the running test cannot run here, and why, where
/// `./test.sh` finds it: one line `<binary> <test>: <reason>` appended to the
/// file named by `$NETLOG_SKIP_LOG` (when set), and the same line on stderr
/// after `NETLOG-SKIP`. `./test.sh` lists these lines in its summary and,
/// with `CI=true`, fails on one it was not told to expect. The test then
/// returns: it passes, but visibly did not run.
pub fn skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("an unnamed test");
    let line = format!("{} {test}: {reason}", env!("CARGO_CRATE_NAME"));
    eprintln!("NETLOG-SKIP: {line}");
    if let Some(path) = std::env::var_os("NETLOG_SKIP_LOG") {
        // One short write with O_APPEND: lines of parallel tests and test
        // binaries do not interleave.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open $NETLOG_SKIP_LOG ({path:?}): {e}"));
        file.write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| panic!("write $NETLOG_SKIP_LOG ({path:?}): {e}"));
    }
}

/// A fresh temporary data directory, removed on drop.
pub fn data_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("netlog-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// The default configuration pointed at `dir`, with a fast segment monitor.
pub fn test_config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        monitor_interval: Duration::from_millis(50),
        ..Config::default()
    }
}

/// A broker served by `netlog::run` in this process, on its own runtime and
/// thread. Dropping it triggers shutdown without waiting; `stop` waits.
pub struct Broker {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), netlog::RunError>>>,
}

/// Starts a broker with the test defaults on data directory `dir`.
pub fn spawn_broker(dir: &Path) -> Broker {
    spawn_broker_with(test_config(dir))
}

/// Starts a broker with `config` (its `listen` is ignored: the broker gets a
/// listener on `127.0.0.1:0`). The listener is bound before this returns, so
/// requests may be sent at once; they wait until the broker has opened the
/// data directory.
pub fn spawn_broker_with(config: Config) -> Broker {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("listener address");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("netlog-broker-{}", addr.port()))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("broker runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                netlog::run(listener, config, async {
                    // A dropped sender is a shutdown too.
                    let _ = rx.await;
                })
                .await
            })
        })
        .expect("spawn the broker thread");
    Broker {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    }
}

impl Broker {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client for this broker.
    pub fn api(&self) -> Api {
        Api::new(&self.base_url())
    }

    /// Graceful stop: triggers shutdown and waits for `run` to return, which
    /// must be `Ok`.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let thread = self.thread.take().expect("broker thread");
        let result = tokio::time::timeout(
            PROCESS_TIMEOUT,
            tokio::task::spawn_blocking(move || thread.join()),
        )
        .await
        .expect("the broker stops within the process timeout")
        .expect("join task")
        .expect("the broker thread does not panic");
        if let Err(e) = result {
            panic!("netlog::run returned an error: {e}");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The real `netlog` binary, run as a child process by [`Launch`]. Killed
/// (SIGKILL) on drop if still running.
pub struct NetlogProcess {
    child: Child,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    log_path: PathBuf,
    _log_dir: Option<TempDir>,
}

/// Starts `netlog -listen 127.0.0.1:0 -dir <dir>` and waits for its
/// start-up line (see [`Launch`]).
pub async fn spawn_netlog(dir: &Path) -> NetlogProcess {
    spawn_netlog_with(dir, &[] as &[&str]).await
}

/// [`spawn_netlog`] with more arguments after `-listen` and `-dir` (e.g.
/// `--config FILE`).
pub async fn spawn_netlog_with<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> NetlogProcess {
    Launch::new().dir(dir).args(args).start().await
}

/// [`spawn_netlog_with`] with environment variables set for the child
/// (e.g. `NETLOG_FAULTS`, the fault seam's rules file).
pub async fn spawn_netlog_env<S: AsRef<OsStr>>(
    dir: &Path,
    args: &[S],
    envs: &[(&str, &Path)],
) -> NetlogProcess {
    let mut launch = Launch::new().dir(dir).args(args);
    for (key, value) in envs {
        launch = launch.env(key, value);
    }
    launch.start().await
}

/// How to start the real `netlog` binary: the one launcher of the tests.
///
/// The broker binds `127.0.0.1:0` (by `-listen`, or by the config file's
/// `listen` with [`Launch::listen_from_config`]) and the launcher reads the
/// bound address back from its start-up line (`netlog listening ...
/// addr=...`, text or JSON), and the admin listener's from its line: no port
/// is probed and freed beforehand. The start-up line is written once the
/// data directory is open and the listeners are bound, so the broker is
/// ready when [`Launch::start`] returns. `RUST_LOG` is removed from the
/// child's environment unless set with [`Launch::env`], so that the
/// start-up line (at `info`) is written.
#[derive(Default)]
pub struct Launch {
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    ulimit: Option<String>,
    listen_from_config: bool,
    log: Option<PathBuf>,
    binary: Option<PathBuf>,
}

impl Launch {
    /// Runs `path` rather than this build's binary (a previous build, to
    /// record golden answers or check a downgrade).
    pub fn binary(mut self, path: &Path) -> Launch {
        self.binary = Some(path.to_path_buf());
        self
    }

    /// `netlog -listen 127.0.0.1:0`, its log in a temporary file.
    pub fn new() -> Launch {
        Launch::default()
    }

    /// `-dir dir`.
    pub fn dir(self, dir: &Path) -> Launch {
        self.arg("-dir").arg(dir)
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Launch {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// More arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: &[S]) -> Launch {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// An environment variable of the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        self.envs
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Runs the binary under `bash -c 'ulimit <limit> && exec netlog ...'`
    /// (e.g. `-n 1024`).
    pub fn ulimit(mut self, limit: &str) -> Launch {
        self.ulimit = Some(limit.to_string());
        self
    }

    /// No `-listen` flag: the config file names the address, which must be
    /// `127.0.0.1:0`.
    pub fn listen_from_config(mut self) -> Launch {
        self.listen_from_config = true;
        self
    }

    /// Stdout and stderr go to `path` (created or truncated) rather than to
    /// a temporary file.
    pub fn log_to(mut self, path: &Path) -> Launch {
        self.log = Some(path.to_path_buf());
        self
    }

    /// Starts the binary and waits, up to [`PROCESS_TIMEOUT`], for its
    /// start-up line; fails the test with the log if it exits first.
    pub async fn start(self) -> NetlogProcess {
        let (log_path, log_dir) = match self.log {
            Some(path) => (path, None),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("netlog-log-")
                    .tempdir()
                    .expect("log directory");
                (dir.path().join("netlog.log"), Some(dir))
            }
        };
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut args = Vec::new();
        if !self.listen_from_config {
            args.push(OsString::from("-listen"));
            args.push(OsString::from("127.0.0.1:0"));
        }
        args.extend(self.args);
        let exe = self
            .binary
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_netlog")));
        let mut command = match &self.ulimit {
            Some(limit) => {
                let mut bash = Command::new("bash");
                bash.arg("-c")
                    .arg(format!("ulimit {limit} && exec \"$0\" \"$@\""))
                    .arg(&exe);
                bash
            }
            None => Command::new(&exe),
        };
        command.args(&args).env_remove("RUST_LOG");
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start the netlog binary");
        let mut process = NetlogProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: None,
            log_path,
            _log_dir: log_dir,
        };
        process.wait_started().await;
        process
    }
}

/// The address logged on the first line of `log` that contains `message`
/// (`addr=127.0.0.1:1234` in text logs, `"addr":"127.0.0.1:1234"` in JSON).
fn logged_addr(log: &str, message: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains(message))?;
    let at = ["addr=", "\"addr\":\""]
        .iter()
        .find_map(|key| line.find(key).map(|i| i + key.len()))?;
    let rest = &line[at..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl NetlogProcess {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where its admin listener listens, if it has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client for this broker.
    pub fn api(&self) -> Api {
        Api::new(&self.base_url())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process has logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits for the start-up line and reads the addresses from the log.
    async fn wait_started(&mut self) {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            let log = self.log();
            if let Some(addr) = logged_addr(&log, "netlog listening") {
                self.addr = addr;
                self.admin_addr = logged_addr(&log, "admin listener");
                return;
            }
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                panic!(
                    "{} exited before its start-up line, with {status} (a binary that \
                     exits 0 at once is not this crate's netlog: was it overwritten by \
                     another build sharing the target directory?):\n{}",
                    env!("CARGO_BIN_EXE_netlog"),
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "netlog wrote no start-up line in time:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL, then reaps the process.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL netlog");
        self.child.wait().expect("reap netlog");
    }

    /// Sends `signal` (`-TERM`, `-HUP`) through `kill`; it must be delivered.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} failed: {sent}");
    }

    /// SIGTERM (through `kill -TERM`), then waits for the exit, which must be
    /// a success.
    pub async fn terminate(&mut self) {
        self.signal("-TERM");
        let status = self.wait_exit().await;
        assert!(
            status.success(),
            "netlog exited with {status} after SIGTERM:\n{}",
            self.log()
        );
    }

    /// Waits, up to [`PROCESS_TIMEOUT`], for the process to exit.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "netlog did not exit in time:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for NetlogProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A failing test shows what the broker logged at WARN and above
        // (the last 40 such lines), since its log dies with its directory.
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            let from = lines.len().saturating_sub(40);
            eprintln!(
                "--- netlog (pid {}) warnings and errors, last {}:\n{}",
                self.child.id(),
                lines.len() - from,
                lines[from..].join("\n")
            );
        }
    }
}

/// What a finished run of the `netlog` binary left: its status and output.
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Runs the real `netlog` binary with `args` to completion (killed and
/// failing the test after [`PROCESS_TIMEOUT`]), for commands that end on
/// their own: `plugin check`, or a start-up that must fail.
pub fn run_netlog<I, S>(args: I) -> Finished
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_netlog_fed(args, None)
}

/// [`run_netlog`] with `stdin` as the standard input (`None`: none at all),
/// for `token hash`.
pub fn run_netlog_fed<I, S>(args: I, stdin: Option<&[u8]>) -> Finished
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut child = Command::new(env!("CARGO_BIN_EXE_netlog"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the netlog binary");
    if let (Some(bytes), Some(mut input)) = (stdin, child.stdin.take()) {
        // A command that exits without reading closes the pipe: not an error here.
        let _ = std::io::Write::write_all(&mut input, bytes);
    }
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll netlog") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netlog did not finish within {PROCESS_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Finished {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// A thin client for the API at one base URL. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    /// The underlying client (127.0.0.1 only, no proxy).
    pub http: reqwest::Client,
    base: String,
}

impl Api {
    /// A client for `base` (`http://127.0.0.1:<port>`).
    pub fn new(base: &str) -> Api {
        Api::with_client(base, client_builder().build().expect("HTTP client"))
    }

    /// A client for `base` over `http`.
    pub fn with_client(base: &str, http: reqwest::Client) -> Api {
        Api {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    /// `POST path` with `body`.
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    /// `POST path` without a body.
    pub async fn post_empty(&self, path: &str) -> reqwest::Response {
        self.http.post(self.url(path)).send().await.expect("POST")
    }

    /// `POST path` without a body, asking for ndjson (a group receive of
    /// many, one message per line).
    pub async fn post_for_ndjson(&self, path: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("accept", "application/x-ndjson")
            .send()
            .await
            .expect("POST")
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    /// Creates `topic` with the server defaults; must succeed.
    pub async fn create_topic(&self, topic: &str) {
        let resp = self.post_empty(&format!("/{topic}")).await;
        expect_ok_message(resp, 201, "topic created").await;
    }

    /// Creates `topic` with `settings` JSON; must succeed.
    pub async fn create_topic_with(&self, topic: &str, settings: &Value) {
        let resp = self.post(&format!("/{topic}"), settings.to_string()).await;
        expect_ok_message(resp, 201, "topic created").await;
    }

    /// Publishes one message; must succeed. Returns its offset.
    pub async fn publish(&self, topic: &str, payload: impl Into<reqwest::Body>) -> u64 {
        let resp = self.post(&format!("/{topic}/payload"), payload).await;
        let body = expect_json(resp, 201).await;
        body["offset"]
            .as_u64()
            .expect("the answer names the offset")
    }

    /// `POST /{topic}/messages` with `body` as ndjson (one message a line).
    pub async fn publish_ndjson(
        &self,
        topic: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/{topic}/messages")))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("POST messages")
    }

    /// Topic info; must succeed.
    pub async fn info(&self, topic: &str) -> Value {
        expect_json(self.get(&format!("/{topic}")).await, 200).await
    }

    /// Creates a scanner with `query` (e.g. `from=0&persist=true`); must
    /// succeed. Returns the answer.
    pub async fn scanner(&self, topic: &str, query: &str) -> Value {
        let resp = self.post_empty(&format!("/{topic}/scanner?{query}")).await;
        let body = expect_json(resp, 201).await;
        assert!(
            body["id"].as_str().is_some_and(is_uuid),
            "scanner id is a UUID: {body}"
        );
        body
    }

    /// Creates a scanner from `from`; returns its id.
    pub async fn scanner_id(&self, topic: &str, from: &str) -> String {
        let body = self.scanner(topic, &format!("from={from}")).await;
        body["id"].as_str().expect("id").to_string()
    }

    /// One scan of scanner `id`, waiting up to `wait` (netlog syntax).
    pub async fn scan(&self, topic: &str, id: &str, wait: &str) -> reqwest::Response {
        self.get(&format!("/{topic}/scan?id={id}&wait={wait}"))
            .await
    }

    /// One scan that must return a message; returns (offset, payload).
    pub async fn scan_one(&self, topic: &str, id: &str) -> (u64, Vec<u8>) {
        let resp = self.scan(topic, id, "5ms").await;
        expect_message(resp).await
    }

    /// Reads the message at `offset` (netlog syntax); must succeed.
    pub async fn payload(&self, topic: &str, offset: &str) -> (u64, Vec<u8>) {
        expect_message(self.get(&format!("/{topic}/payload/{offset}")).await).await
    }
}

/// A client builder with the tests' defaults: no proxy, bounded requests.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
}

/// Whether `s` is a hyphenated UUID.
pub fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// Asserts the status and a JSON content type; returns the body.
pub async fn expect_json(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let ctype = content_type(&resp);
    let bytes = resp.bytes().await.expect("read the body");
    assert_eq!(
        got,
        status,
        "unexpected status; body: {}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        ctype.starts_with("application/json"),
        "content type {ctype:?} is JSON"
    );
    serde_json::from_slice(&bytes).expect("the body is JSON")
}

/// Asserts `{"ok":true,"message":<message>}` with `status`.
pub async fn expect_ok_message(resp: reqwest::Response, status: u16, message: &str) {
    let body = expect_json(resp, status).await;
    assert_eq!(body, serde_json::json!({"ok": true, "message": message}));
}

/// Extra fields an error body may carry beyond netlog's three.
const ERROR_EXTRAS: &[&str] = &["reason", "index", "plugin", "codec", "errors", "offset"];

/// Asserts netlog's error shape, `{"ok":false,"status":<status>,"error":
/// "netlog: <text>"}` with `application/json`, allowing only the documented
/// extra fields. Returns the body.
pub async fn expect_error(resp: reqwest::Response, status: u16, text: &str) -> Value {
    let body = expect_json(resp, status).await;
    check_error_body(&body, status, text);
    body
}

/// The checks of [`expect_error`] on an already parsed body.
pub fn check_error_body(body: &Value, status: u16, text: &str) {
    let obj = body.as_object().expect("the error body is an object");
    assert_eq!(body["ok"], Value::Bool(false), "{body}");
    assert_eq!(body["status"], Value::from(status), "{body}");
    assert_eq!(
        body["error"],
        Value::from(format!("netlog: {text}")),
        "{body}"
    );
    for key in obj.keys() {
        assert!(
            ["ok", "status", "error"].contains(&key.as_str())
                || ERROR_EXTRAS.contains(&key.as_str()),
            "unexpected field {key:?} in {body}"
        );
    }
}

/// Asserts the exact error body, with no extra field.
pub async fn expect_exact_error(resp: reqwest::Response, status: u16, text: &str) {
    let body = expect_error(resp, status, text).await;
    assert_eq!(
        body,
        serde_json::json!({"ok": false, "status": status, "error": format!("netlog: {text}")})
    );
}

/// Asserts a 400 with netlog's shape and a non-empty `reason`; returns it.
pub async fn expect_bad_request(resp: reqwest::Response, text: &str) -> String {
    let body = expect_error(resp, 400, text).await;
    let reason = body["reason"].as_str().unwrap_or_default().to_string();
    assert!(!reason.is_empty(), "a 400 says why: {body}");
    reason
}

/// Asserts a 200 message answer (payload or scan): octet-stream, `X-Offset`
/// and `X-Crc32` (decimal CRC-32 of the payload). Returns (offset, payload).
pub async fn expect_message(resp: reqwest::Response) -> (u64, Vec<u8>) {
    let status = resp.status();
    let ctype = content_type(&resp);
    let offset = header(&resp, "x-offset");
    let crc = header(&resp, "x-crc32");
    let bytes = resp.bytes().await.expect("read the body").to_vec();
    assert_eq!(
        status,
        StatusCode::OK,
        "a message; body: {}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(ctype, "application/octet-stream");
    let offset: u64 = offset
        .expect("X-Offset header")
        .parse()
        .expect("X-Offset is a number");
    let crc: u32 = crc
        .expect("X-Crc32 header")
        .parse()
        .expect("X-Crc32 is decimal");
    assert_eq!(crc, crc32fast::hash(&bytes), "X-Crc32 is the payload's CRC");
    (offset, bytes)
}

/// A header's value as text.
pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

/// The Content-Type, or "".
pub fn content_type(resp: &reqwest::Response) -> String {
    header(resp, "content-type").unwrap_or_default()
}

/// Sends one raw HTTP/1.1 request (for paths an URL library would
/// normalise, such as `/..`) and returns the status and the body.
pub fn raw_request(addr: SocketAddr, method: &str, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .expect("read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/json"),
        "JSON answer: {head}"
    );
    (status, answer[split + 4..].to_vec())
}

/// Encodes one netlog message (compver, CRC-32, length, payload), written
/// here from the storage spec rather than borrowed from the crate.
pub fn frame(compver: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    out.push(compver);
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The data file of segment `base` of `topic` in `dir`.
pub fn data_file(dir: &Path, topic: &str, base: u64) -> PathBuf {
    dir.join(topic).join(format!("{base:020}.data"))
}
