//! What a plugin instance can reach: the data of its `Store`, the imports the
//! linker gives it, and the limits on its resources.
//!
//! Every instance lives in its own `Store<StoreData>`. [`StoreData`] holds the
//! plugin's and the topic's names (every log line the guest causes is tagged
//! with both), an empty WASI context, the resource table WASI needs, the
//! captured stdout and stderr, and the [`Limiter`] that enforces the memory
//! limit and remembers whether it refused a request.
//!
//! The sandbox, import by import:
//!
//! - `netlog:plugin/host` (at 0.1.0 and 0.2.0, the same functions): `log`
//!   becomes a `tracing` event, escaped, cut and rate limited by the
//!   binding's [`GuestLog`]; `now-ms` reads the broker's wall clock. It is
//!   the only clock a plugin sees.
//! - `wasi:*` 0.2 (every component built by Rust's std imports it): linked
//!   with an empty context: no preopened directory, no environment, no
//!   arguments, stdin closed, TCP, UDP and name lookup denied. Both WASI
//!   clocks are frozen at zero, and sleeping returns at once: a guest that
//!   sleeps would otherwise block the host thread in a host call, where the
//!   epoch deadline cannot reach it.
//! - stdout and stderr go to in-memory buffers (bounded: the excess is
//!   dropped and counted), which [`StoreData::forward_output`] turns into
//!   `tracing` events after every call, through the same [`GuestLog`].

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use wasmtime::component::{HasData, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamError};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::Limits;
use super::bindings::v0_1::validator::netlog::plugin::host;
use super::bindings::v0_2::validator::netlog::plugin::host as host_v0_2;
use super::guest_log::{self, GUEST_TARGET, GuestLog, Level};
use crate::lock::Recover;

/// Bytes of guest stdout (and, separately, stderr) kept between two calls;
/// the rest is dropped and reported as dropped.
pub(crate) const OUTPUT_CAPTURE_BYTES: usize = 64 * 1024;
/// Most core and component instances one plugin instance may create (a
/// component built by Rust is a handful).
const MAX_INSTANCES: usize = 64;
/// Most tables one plugin instance may create.
const MAX_TABLES: usize = 64;
/// Most linear memories one plugin instance may create.
const MAX_MEMORIES: usize = 4;
/// Most elements one table may grow to (function tables of real plugins hold
/// a few thousand).
const MAX_TABLE_ELEMENTS: usize = 1 << 17;

/// The data of one plugin instance's `Store`.
pub(crate) struct StoreData {
    /// The plugin's name, as the operator declared it.
    pub(crate) plugin: Arc<str>,
    /// The topic this instance serves.
    pub(crate) topic: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    /// Where the guest's log lines and output go, bounded and escaped.
    log: Arc<GuestLog>,
    /// Enforces the memory and table limits.
    pub(crate) limiter: Limiter,
    stdout: Capture,
    stderr: Capture,
    /// The last line the guest wrote to stderr (a panic message, usually),
    /// escaped and cut like a log line.
    pub(crate) last_stderr: Option<String>,
}

impl StoreData {
    /// The data of a fresh instance of `plugin` serving `topic`, logging
    /// through the binding's `log`.
    pub(crate) fn new(
        plugin: Arc<str>,
        topic: Arc<str>,
        log: Arc<GuestLog>,
        limits: &Limits,
    ) -> StoreData {
        let stdout = Capture::default();
        let stderr = Capture::default();
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        StoreData {
            plugin,
            topic,
            wasi,
            table: ResourceTable::new(),
            log,
            limiter: Limiter::new(limits.memory_bytes),
            stdout,
            stderr,
            last_stderr: None,
        }
    }

    /// Sends what the guest wrote to stdout (at `info`) and stderr (at
    /// `warn`) since the last call to the log, one event per line.
    pub(crate) fn forward_output(&mut self) {
        for (stream, capture) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (text, dropped) = capture.take();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if stream == "stdout" {
                    self.log.write(Level::Info, Some(stream), line);
                } else {
                    self.log.write(Level::Warn, Some(stream), line);
                    self.last_stderr = Some(guest_log::escape_and_cut(line));
                }
            }
            if dropped > 0 {
                tracing::warn!(target: GUEST_TARGET, plugin = %self.plugin, topic = %self.topic, stream, dropped,
                    "plugin output over {OUTPUT_CAPTURE_BYTES} bytes between calls; the rest was dropped");
            }
        }
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for StoreData {
    fn log(&mut self, level: host::Level, message: String) {
        let level = match level {
            host::Level::Trace => Level::Trace,
            host::Level::Debug => Level::Debug,
            host::Level::Info => Level::Info,
            host::Level::Warn => Level::Warn,
            host::Level::Error => Level::Error,
        };
        self.log.write(level, None, &message);
    }

    fn now_ms(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// The 0.2.0 host interface is the 0.1.0 one under another version.
impl host_v0_2::Host for StoreData {
    fn log(&mut self, level: host_v0_2::Level, message: String) {
        let level = match level {
            host_v0_2::Level::Trace => host::Level::Trace,
            host_v0_2::Level::Debug => host::Level::Debug,
            host_v0_2::Level::Info => host::Level::Info,
            host_v0_2::Level::Warn => host::Level::Warn,
            host_v0_2::Level::Error => host::Level::Error,
        };
        host::Host::log(self, level, message);
    }

    fn now_ms(&mut self) -> u64 {
        host::Host::now_ms(self)
    }
}

/// Builds the one linker every plugin is instantiated with: WASI (sandboxed
/// as described above) and `netlog:plugin/host`. A component that imports
/// only part of this (or nothing) links all the same.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<StoreData>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    linker.allow_shadowing(true);
    monotonic_clock::add_to_linker::<StoreData, NoSleep>(&mut linker, |data| NoSleepView {
        table: &mut data.table,
    })?;
    linker.allow_shadowing(false);
    host::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut linker, |data| data)?;
    host_v0_2::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut linker, |data| data)?;
    Ok(linker)
}

/// A clock stuck at zero, for both WASI clocks: the plugin's only clock is
/// `host.now-ms`, so its answers depend on nothing the broker did not pass.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// `wasi:clocks/monotonic-clock` whose time stands still and whose timers
/// are due at once, so no guest can park the host thread in a sleep.
struct NoSleep;

impl HasData for NoSleep {
    type Data<'a> = NoSleepView<'a>;
}

/// What [`NoSleep`] needs of the store: the table its timers go into.
struct NoSleepView<'a> {
    table: &'a mut ResourceTable,
}

impl monotonic_clock::Host for NoSleepView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(HostMonotonicClock::now(&FrozenClock))
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(HostMonotonicClock::resolution(&FrozenClock))
    }

    fn subscribe_instant(
        &mut self,
        _when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let due = self.table.push(Due)?;
        wasmtime_wasi::p2::subscribe(self.table, due)
    }

    fn subscribe_duration(
        &mut self,
        _duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let due = self.table.push(Due)?;
        wasmtime_wasi::p2::subscribe(self.table, due)
    }
}

/// A timer that is already due.
struct Due;

#[wasmtime_wasi::async_trait]
impl Pollable for Due {
    async fn ready(&mut self) {}
}

/// The memory and table limits of one instance, through wasmtime's
/// [`StoreLimits`], remembering whether a memory request was refused so a
/// trap that follows can be reported as the memory limit it is.
pub(crate) struct Limiter {
    limits: StoreLimits,
    /// Set when a memory request was refused; cleared before every call.
    pub(crate) memory_refused: bool,
    /// The largest linear memory granted so far, in bytes.
    pub(crate) peak_memory: usize,
}

impl Limiter {
    fn new(memory_bytes: u64) -> Limiter {
        Limiter {
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(memory_bytes).unwrap_or(usize::MAX))
                .table_elements(MAX_TABLE_ELEMENTS)
                .instances(MAX_INSTANCES)
                .tables(MAX_TABLES)
                .memories(MAX_MEMORIES)
                .build(),
            memory_refused: false,
            peak_memory: 0,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_memory = self.peak_memory.max(desired);
        } else {
            self.memory_refused = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// One captured output stream (stdout or stderr) of one instance: a bounded
/// buffer shared between the WASI context and [`StoreData`].
#[derive(Clone, Default)]
struct Capture {
    buf: Arc<Mutex<CaptureBuf>>,
}

#[derive(Default)]
struct CaptureBuf {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Capture {
    fn lock(&self) -> MutexGuard<'_, CaptureBuf> {
        self.buf.lock().recover()
    }

    fn append(&self, data: &[u8]) {
        let mut buf = self.lock();
        let room = OUTPUT_CAPTURE_BYTES.saturating_sub(buf.bytes.len());
        let kept = data.len().min(room);
        buf.bytes.extend_from_slice(&data[..kept]);
        buf.dropped += data.len() - kept;
    }

    /// Empties the buffer, returning its text and how many bytes were dropped.
    fn take(&self) -> (String, usize) {
        let mut buf = self.lock();
        let bytes = std::mem::take(&mut buf.bytes);
        let dropped = std::mem::take(&mut buf.dropped);
        (String::from_utf8_lossy(&bytes).into_owned(), dropped)
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always ready: what does not fit is dropped, never waited for.
        Ok(OUTPUT_CAPTURE_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
