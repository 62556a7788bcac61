//! The runtime the binary serves on, and its idle spin: a worker that runs
//! out of work watches for new work for a few microseconds before it sleeps.
//!
//! **Why.** A client that sends one request at a time (a consumer scanning
//! on one connection, a producer waiting for each 201) is a ping-pong between
//! its thread and one of the broker's workers. When the worker sleeps in
//! `epoll_wait` between two requests, each request first has to wake it,
//! and on a virtual machine waking a thread on an idle vCPU is a trip
//! through the hypervisor that costs several times the work of a scan
//! (docs/BENCHMARKS.md, "Stop 32": with the spin, a scan on one connection
//! went from 9,700 to 15,600 requests/s to 23,300 to 26,600 here). Go's
//! scheduler spins briefly before it sleeps for the same reason.
//!
//! **How.** tokio calls `before_park` on a worker that is about to park
//! (its queue is empty). When a spin may pay (below), that worker
//! `poll(2)`s the runtime's epoll descriptor with a zero timeout, with a
//! short pause between two polls, until the descriptor is readable (a
//! socket or the runtime's waker has an event ready, which `poll` sees
//! without consuming it) or the spin's time is up; then it parks as it
//! would have. When a request arrives during the
//! spin, the worker finds it at once instead of being woken for it.
//! tokio does not expose its epoll descriptor, so [`runtime`] finds it
//! among the `eventpoll` descriptors that building the runtime added to
//! `/proc/self/fd` (two today: the I/O driver's and the signal driver's
//! duplicate of it); if they are not all one instance, or on another OS,
//! nothing spins.
//!
//! **When.** Only where a spin is likely to pay, and never where it takes
//! a CPU something else of ours wants:
//! - one worker spins at a time, and only while every other worker is
//!   parked and no blocking job of ours (a file read, a group commit) is
//!   queued or running; when another worker wakes up or such a job comes,
//!   the spin ends;
//! - not after a wake-up that began more than one request: clients then
//!   have requests in flight on several connections, and a worker that
//!   sleeps a little finds them gathered, where one that spins would take
//!   them one by one;
//! - for a window that adapts, from 10µs to `[server] idle_spin`, much as
//!   Linux's KVM adapts its halt polling: a spin that catches work doubles
//!   it; a spin that ends empty-handed halves it if the worker was then
//!   idle for more than four times `idle_spin` in all (no spin would have
//!   caught that) and doubles it otherwise (a sleep and its wake-up cost
//!   about as much as the spin would have).
//!
//! **Bounds.** A spin lasts at most `[server] idle_spin` (default 50µs, at
//! most 1ms, `0` turns it off) and happens at most once per park, so it
//! costs at most that much CPU per request, and about 10µs where spins
//! seldom catch anything; while the broker is idle, a worker parks and
//! sleeps, and spins again only after a wake-up of the broker's own timers
//! (the monitor's, once per `monitor_interval`). Across a real network a
//! client's next request rarely comes within the spin, and the spin is then
//! nearly pure cost, at the narrowest window:
//! `netlog_idle_spins_total`, `netlog_idle_spin_catches_total` and
//! `netlog_idle_spin_seconds_total` say how often it ran, how often work
//! came during it, and the time it took.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Default `[server] idle_spin`.
pub const DEFAULT_IDLE_SPIN: Duration = Duration::from_micros(50);
/// Largest `[server] idle_spin`.
pub const MAX_IDLE_SPIN: Duration = Duration::from_millis(1);

/// `spin_loop` hints between two polls: roughly a microsecond on a recent
/// x86 CPU, so that the spin does not hammer the epoll instance's lock that
/// the sockets' wake-ups take too.
const PAUSES_BETWEEN_POLLS: u32 = 20;

/// The runtime's epoll descriptor, or -1 when unknown (then nothing spins).
static EPOLL_FD: AtomicI32 = AtomicI32::new(-1);
/// The longest spin in nanoseconds (`idle_spin`); 0 turns it off.
static SPIN_NANOS: AtomicU64 = AtomicU64::new(0);
/// The spin's current window, from [`NARROWEST`] to `SPIN_NANOS`, set by
/// what the last spins found (see `adapt`).
static WINDOW_NANOS: AtomicU64 = AtomicU64::new(0);
/// An idle time up to this many times `idle_spin` widens the window.
const SHORT_IDLE: u64 = 4;
/// The narrowest window: short enough to cost little where spins seldom
/// catch anything, long enough to catch a client that answers at once, so
/// that the window widens again.
const NARROWEST: Duration = Duration::from_micros(10);
/// Set while a worker spins, so that at most one does.
static SPINNING: AtomicBool = AtomicBool::new(false);
/// Blocking jobs queued or running ([`spawn_blocking`]).
static BLOCKING: AtomicUsize = AtomicUsize::new(0);
/// The runtime's workers, and how many of them are parked (or about to).
static WORKERS: AtomicUsize = AtomicUsize::new(usize::MAX);
static PARKED: AtomicUsize = AtomicUsize::new(0);
static SPINS: AtomicU64 = AtomicU64::new(0);
static CATCHES: AtomicU64 = AtomicU64::new(0);
static SPUN_NANOS: AtomicU64 = AtomicU64::new(0);

/// Builds the multi-threaded runtime the binary serves on, its workers
/// spinning up to `spin` before they park (clamped to [`MAX_IDLE_SPIN`]).
pub fn runtime(spin: Duration) -> std::io::Result<tokio::runtime::Runtime> {
    let before = epoll_fds();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(before_park)
        .on_thread_unpark(after_unpark)
        .build()?;
    WORKERS.store(runtime.metrics().num_workers(), Ordering::Relaxed);
    let added: Vec<i32> = epoll_fds()
        .into_iter()
        .filter(|fd| !before.contains(fd))
        .collect();
    match one_instance(&added) {
        Some(fd) => EPOLL_FD.store(fd, Ordering::Relaxed),
        None => tracing::debug!(
            found = added.len(),
            "idle spin off: no single epoll instance"
        ),
    }
    let nanos = spin.min(MAX_IDLE_SPIN).as_nanos() as u64;
    SPIN_NANOS.store(nanos, Ordering::Relaxed);
    WINDOW_NANOS.store(nanos, Ordering::Relaxed);
    Ok(runtime)
}

/// The process's open epoll descriptors (none where `/proc` cannot tell).
fn epoll_fds() -> Vec<i32> {
    if !cfg!(target_os = "linux") {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|t| t.as_os_str().as_encoded_bytes() == b"anon_inode:[eventpoll]")
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The lowest of `fds` when they are all one epoll instance, told by the
/// same registrations in `/proc/self/fdinfo` (tokio's signal driver holds a
/// duplicate of the I/O driver's descriptor); `None` if there is none, or
/// more than one instance.
fn one_instance(fds: &[i32]) -> Option<i32> {
    let watched = |fd: &i32| {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
        let mut lines: Vec<String> = info
            .lines()
            .filter(|l| l.starts_with("tfd:"))
            .map(str::to_string)
            .collect();
        lines.sort();
        Some(lines)
    };
    let first = fds.iter().min()?;
    let theirs = watched(first)?;
    fds.iter()
        .all(|fd| watched(fd).as_ref() == Some(&theirs))
        .then_some(*first)
}

thread_local! {
    /// Requests this worker began since it last decided whether to spin.
    static BEGUN: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// When this worker began to be idle, if it spun for nothing before it
    /// parked.
    static SLEEPING_SINCE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Called as a request begins, on the worker that serves it.
pub(crate) fn request_begins() {
    BEGUN.with(|n| n.set(n.get().saturating_add(1)));
}

/// tokio's hook before a worker parks: the spin (see the module docs).
/// tokio calls the unpark hook after this one whether the worker parked or
/// not, so `PARKED` counts every worker between the two.
fn before_park() {
    spin();
    PARKED.fetch_add(1, Ordering::Relaxed);
}

/// Whether every worker but the one asking is parked and no blocking job
/// is queued or running: the broker is otherwise idle, and a spin takes a
/// CPU nothing else of ours wants.
fn otherwise_idle() -> bool {
    PARKED.load(Ordering::Relaxed) + 1 >= WORKERS.load(Ordering::Relaxed)
        && BLOCKING.load(Ordering::Relaxed) == 0
}

/// `tokio::task::spawn_blocking`, counted, so that no worker spins while a
/// blocking thread of ours (a file read, a group commit, a wasm call) wants
/// a CPU. Every blocking job of the crate goes through here.
pub(crate) fn spawn_blocking<F, R>(work: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let busy = Busy::new();
    tokio::task::spawn_blocking(move || {
        let _busy = busy;
        work()
    })
}

/// One blocking job in [`BLOCKING`], from its spawn until it has run or
/// was dropped unrun.
struct Busy;

impl Busy {
    fn new() -> Busy {
        BLOCKING.fetch_add(1, Ordering::Relaxed);
        Busy
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BLOCKING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Spins if a spin may pay (see the module docs), and counts it.
fn spin() {
    // Several requests since the last park: clients have requests in
    // flight on several connections, and a worker that sleeps for a while
    // finds them gathered, where one that spins takes them one by one.
    if BEGUN.with(|n| n.replace(0)) > 1 {
        return;
    }
    let fd = EPOLL_FD.load(Ordering::Relaxed);
    if SPIN_NANOS.load(Ordering::Relaxed) == 0
        || fd < 0
        || !otherwise_idle()
        || SPINNING.swap(true, Ordering::Acquire)
    {
        return;
    }
    let window = WINDOW_NANOS.load(Ordering::Relaxed);
    let start = Instant::now();
    let end = watch(fd, start, Duration::from_nanos(window));
    let spun = start.elapsed().as_nanos() as u64;
    SPINNING.store(false, Ordering::Release);
    SPINS.fetch_add(1, Ordering::Relaxed);
    SPUN_NANOS.fetch_add(spun, Ordering::Relaxed);
    match end {
        End::Caught => {
            CATCHES.fetch_add(1, Ordering::Relaxed);
            adapt(true);
        }
        // The unpark hook learns from how long the sleep lasts.
        End::TimeUp => SLEEPING_SINCE.with(|t| t.set(Some(start))),
        End::Yielded => {}
    }
}

/// How a spin ended.
enum End {
    /// Work came.
    Caught,
    /// The window passed with no work.
    TimeUp,
    /// Another worker or a blocking job took a CPU, or `poll` failed: the
    /// spin says nothing of the window.
    Yielded,
}

/// Polls `fd` until it is ready, `limit` has passed since `start`, or the
/// broker is no longer otherwise idle.
fn watch(fd: i32, start: Instant, limit: Duration) -> End {
    loop {
        match ready(fd) {
            Some(true) => return End::Caught,
            Some(false) => {}
            None => {
                // The descriptor is gone or refused: stop spinning for good.
                EPOLL_FD.store(-1, Ordering::Relaxed);
                return End::Yielded;
            }
        }
        // Another worker woke up, or a blocking job came: the CPU is theirs.
        if !otherwise_idle() {
            return End::Yielded;
        }
        if start.elapsed() >= limit {
            return End::TimeUp;
        }
        for _ in 0..PAUSES_BETWEEN_POLLS {
            std::hint::spin_loop();
        }
    }
}

/// tokio's hook after a worker unparks. After a spin that caught nothing
/// it sets the window by how long the worker was idle in all. Within
/// [`SHORT_IDLE`] times `idle_spin`, a longer window would likely have
/// caught the work (the idle time counts the wake-up too, which is what the
/// spin saves), so it widens; past it, the spin was wasted, so it narrows.
fn after_unpark() {
    PARKED.fetch_sub(1, Ordering::Relaxed);
    let Some(since) = SLEEPING_SINCE.with(std::cell::Cell::take) else {
        return;
    };
    let idle = since.elapsed().as_nanos() as u64;
    adapt(idle <= SHORT_IDLE * SPIN_NANOS.load(Ordering::Relaxed));
}

/// Doubles the spin's window (up to `idle_spin`) or halves it (down to
/// [`NARROWEST`], or `idle_spin` if that is less). Two workers adapting at
/// once may lose one step; the window stays within its bounds either way.
fn adapt(widen: bool) {
    let most = SPIN_NANOS.load(Ordering::Relaxed);
    let least = (NARROWEST.as_nanos() as u64).min(most);
    let window = WINDOW_NANOS.load(Ordering::Relaxed);
    let next = if widen { window * 2 } else { window / 2 };
    WINDOW_NANOS.store(next.clamp(least, most), Ordering::Relaxed);
}

/// Whether the epoll descriptor has an event ready, without taking it;
/// `None` when `poll` fails other than by a signal.
#[cfg(unix)]
fn ready(fd: i32) -> Option<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the length of the call, and a
    // zero timeout returns at once.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    if n < 0 {
        let interrupted = std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
        return interrupted.then_some(false);
    }
    if p.revents & libc::POLLNVAL != 0 {
        return None;
    }
    Some(n > 0)
}

#[cfg(not(unix))]
fn ready(_fd: i32) -> Option<bool> {
    None
}

/// The spin's counters so far: spins, spins that work interrupted, and
/// seconds spent spinning.
pub(crate) fn figures() -> (u64, u64, f64) {
    (
        SPINS.load(Ordering::Relaxed),
        CATCHES.load(Ordering::Relaxed),
        SPUN_NANOS.load(Ordering::Relaxed) as f64 / 1e9,
    )
}
