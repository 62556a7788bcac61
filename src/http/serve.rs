//! The listener: accepts connections and serves the router on each with
//! hyper, under the limits of [`ServerOptions`], in place of `axum::serve`.
//!
//! What one client can hold is bounded:
//! - **Descriptors.** The soft `RLIMIT_NOFILE` is raised to the hard limit
//!   at start-up. At most `max_connections` are served at once, and never
//!   more than three quarters of the descriptor limit. At the cap a new
//!   connection displaces the oldest one with no request in flight (a silent
//!   or idle one); failing that, it sheds the oldest one waiting in a long
//!   poll, whose wait ends at once with its normal empty answer (`404 end
//!   of topic`) on a closing connection (long polls are idle by nature, and
//!   a producer must always get in to wake them); only when every
//!   connection is busy otherwise does the newcomer get a fast `503` in
//!   netlog's JSON shape with `Connection: close`. An accept that
//!   fails for want of descriptors is retried after a short pause, so the
//!   loop neither spins nor stops.
//! - **Time.** Each connection has a watchdog (see [`Conn`]): a request head
//!   must be complete within `header_timeout`, a connection with no request
//!   in flight is closed after `idle_timeout`, and a body must keep a minimum
//!   rate (`serve/body.rs`). A long poll or a stream is a request in flight,
//!   never idle, however long it waits.
//! - **Memory.** Request bodies take room in one process-wide byte budget
//!   before they are handed to the handlers (`serve/body.rs`).
//!
//! A client that leaves while a request waits for it (a scan's or a
//! receive's wait of `WATCHED_WAIT`, 100 ms, or more; a stream) ends that
//! request at once, so a scanner does not move past, nor a group lease,
//! what nobody will receive (`serve/departure.rs`). hyper itself does not
//! read while a request is in flight: its check for a leaving client cost
//! every request an allocation.
//!
//! A connection without TLS on the main listener starts in the lane
//! (`serve/lane.rs`), which serves the hot routes' simple requests without
//! hyper's machinery, and hands the connection to hyper at the first request
//! it does not take; the answers are the same either way.
//!
//! Shutdown stops the accept loop, asks every connection to finish what it
//! is doing (idle ones close at once), and marks every answer written from
//! then on with `Connection: close`. Connections still busy after
//! `shutdown_timeout` are closed.

mod body;
mod conn;
mod departure;
mod io;
mod lane;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::http::{HeaderValue, Request, Response, header};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use self::body::{BoundedBody, Outcome, Rate, RequestCtx, Source};
use self::conn::Conn;
pub(crate) use self::conn::{LongPoll, WATCHED_WAIT, Watched};
use self::departure::{Departure, Watches};
use self::io::Tracked;
use self::lane::Lane;
use super::budget::ByteBudget;
use axum::response::IntoResponse;

use super::ApiError;
use super::tls::Tls;
use crate::config::ServerOptions;
use crate::lock::Recover;

/// Share of the descriptor limit that connections may use; the rest is for
/// topic files, plugins and the answers to refused connections.
const CONNECTION_SHARE_OF_FDS: (u64, u64) = (3, 4);
/// Most refused connections being answered `503` at once; past it they are
/// closed without an answer.
const MAX_REFUSING: usize = 256;
/// Longest the `503` to a refused connection (or the answer to plain HTTP on
/// a TLS port) may take, reading included; also the longest a connection
/// lingers after its last answer to read what the client still sends.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and dropped after such an answer, so that closing the
/// socket does not reset the answer away.
const REFUSAL_DRAIN_BYTES: usize = 64 << 10;
/// Pause after a failed accept (descriptors exhausted, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Least time between two warnings about failed accepts or refusals.
const WARN_EVERY: Duration = Duration::from_secs(5);
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// Serves `router` on `listener` until `shutdown` resolves, then drains as
/// the module docs say. Returns once every connection is closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: super::App,
    opts: ServerOptions,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let fd_limit = crate::raise_fd_limit();
    let share = fd_limit.map_or(u64::MAX, |n| {
        n / CONNECTION_SHARE_OF_FDS.1 * CONNECTION_SHARE_OF_FDS.0
    });
    let cap = (opts.max_connections as u64).min(share).max(1) as usize;
    tracing::info!(
        max_connections = cap,
        header_timeout = ?opts.header_timeout,
        idle_timeout = ?opts.idle_timeout,
        body_budget = opts.body_budget,
        tls = tls.is_some(),
        "connection limits"
    );
    let shared = Arc::new(ListenerState {
        budget: Arc::new(ByteBudget::new(opts.body_budget, opts.body_budget_wait)),
        router,
        opts,
        tls,
        cap,
        watches: Arc::new(Watches::new(fd_limit, cap)),
        closing: AtomicBool::new(false),
        registry: Mutex::new(Registry::default()),
        live: watch::Sender::new(0),
        refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
    });
    let (phase_tx, phase) = watch::channel(Phase::Serving);
    tokio::pin!(shutdown);
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                match shared.admit() {
                    Some(conn) => {
                        tokio::spawn(connection(shared.clone(), conn, stream, phase.clone()));
                    }
                    None => {
                        warn_now_and_then(&mut last_warning, "connection cap reached: 503");
                        refuse(&shared, stream, too_many_connections());
                    }
                }
            }
            Err(e) => {
                if warn_now_and_then(&mut last_warning, "accept failed") {
                    tracing::warn!(error = %e, "accept failed; retrying");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    drop(listener);
    shared.closing.store(true, Ordering::Release);
    let _ = phase_tx.send(Phase::Draining);
    let mut live = shared.live.subscribe();
    let drained = tokio::time::timeout(shared.opts.shutdown_timeout, live.wait_for(|n| *n == 0));
    if drained.await.is_err() {
        tracing::warn!(
            open = *live.borrow(),
            "connections still busy after shutdown_timeout: closing them"
        );
        let _ = phase_tx.send(Phase::Closing);
        let _ = live.wait_for(|n| *n == 0).await;
    }
    Ok(())
}

/// Logs `what` unless a warning was logged less than [`WARN_EVERY`] ago;
/// tells whether it did.
fn warn_now_and_then(last: &mut Option<Instant>, what: &str) -> bool {
    if last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
        return false;
    }
    *last = Some(Instant::now());
    tracing::warn!("{what}");
    true
}

/// Where shutdown is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Serving,
    /// Finish the request in flight, then close.
    Draining,
    /// Close now.
    Closing,
}

/// What every connection task shares.
struct ListenerState {
    router: super::App,
    opts: ServerOptions,
    tls: Option<Arc<Tls>>,
    budget: Arc<ByteBudget>,
    /// Connections served at once.
    cap: usize,
    /// Open watches for clients leaving (`serve/departure.rs`).
    watches: Arc<Watches>,
    /// Shutdown has begun: answers carry `Connection: close`.
    closing: AtomicBool,
    registry: Mutex<Registry>,
    /// Connections not yet closed, for the shutdown drain.
    live: watch::Sender<usize>,
    refusing: Arc<Semaphore>,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    next_id: u64,
    open: BTreeMap<u64, Arc<Conn>>,
    /// Of `open`, those told to close that have not closed yet.
    displaced: usize,
}

impl ListenerState {
    /// Registers a new connection; at the cap, displaces the oldest one with
    /// no request in flight, or else sheds the oldest one waiting in long
    /// polls; `None` if every one is busy otherwise.
    fn admit(&self) -> Option<Arc<Conn>> {
        let mut reg = self.registry.lock().recover();
        if reg.open.len() - reg.displaced >= self.cap {
            if let Some(victim) = reg.open.values().find(|c| c.displace()) {
                tracing::debug!(
                    id = victim.id,
                    "displaced a connection with no request in flight"
                );
            } else {
                let victim = reg.open.values().find(|c| c.shed())?;
                tracing::debug!(id = victim.id, "shed a connection waiting in a long poll");
            }
            reg.displaced += 1;
        }
        let id = reg.next_id;
        reg.next_id += 1;
        let conn = Arc::new(Conn::new(id));
        reg.open.insert(id, conn.clone());
        self.live.send_replace(reg.open.len());
        Some(conn)
    }

    fn forget(&self, conn: &Conn) {
        let mut reg = self.registry.lock().recover();
        if reg.open.remove(&conn.id).is_some() && conn.was_displaced() {
            reg.displaced -= 1;
        }
        self.live.send_replace(reg.open.len());
    }
}

/// Unregisters its connection when the connection task ends.
struct Registered {
    shared: Arc<ListenerState>,
    conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.forget(&self.conn);
    }
}

/// Serves one connection: the TLS handshake if any, then HTTP/1.1 under the
/// watchdog.
async fn connection(
    shared: Arc<ListenerState>,
    conn: Arc<Conn>,
    stream: TcpStream,
    phase: watch::Receiver<Phase>,
) {
    let _registered = Registered {
        shared: shared.clone(),
        conn: conn.clone(),
    };
    let fd = stream.as_raw_fd();
    let Some(tls) = shared.tls.clone() else {
        let lane = shared.router.serves_hot();
        return drive(shared, conn, stream, fd, phase, lane).await;
    };
    let deadline = conn.accepted + shared.opts.header_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_BYTE => {}
        Ok(Ok(1)) => {
            tracing::debug!(id = conn.id, "plain HTTP on the TLS port");
            let answer = ApiError::BadRequest("this port speaks HTTPS only".into()).raw_answer();
            return answer_and_close(stream, &answer).await;
        }
        _ => return,
    }
    match tokio::time::timeout_at(deadline, tls.acceptor().accept(stream)).await {
        Ok(Ok(tls_stream)) => drive(shared, conn, tls_stream, fd, phase, false).await,
        Ok(Err(e)) => tracing::debug!(id = conn.id, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(id = conn.id, "TLS handshake timed out"),
    }
}

/// Runs hyper on `stream` (over the socket `fd`) until it ends, the
/// watchdog fires, the connection is displaced, a waiting request's client
/// leaves, or shutdown closes it.
async fn drive<S>(
    shared: Arc<ListenerState>,
    conn: Arc<Conn>,
    stream: S,
    fd: RawFd,
    mut phase: watch::Receiver<Phase>,
    lane: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = ConnService {
        shared: shared.clone(),
        conn: conn.clone(),
    };
    let io = Tracked::new(stream, conn.clone());
    let mut http = if lane {
        Engine::Lane(Lane::new(io, service))
    } else {
        Engine::hyper(io, Bytes::new(), service)
    };
    let mut draining = false;
    if *phase.borrow_and_update() != Phase::Serving {
        http.graceful_shutdown();
        draining = true;
    }
    let folded = Folded::new();
    let rare = Arc::new(Rare {
        woken: AtomicBool::new(true),
        conn: folded.shared.clone(),
    });
    let rare_waker = Waker::from(rare.clone());
    let mut departure = Departure::new(fd, shared.watches.clone());
    loop {
        let recheck = Instant::now() + Conn::recheck(&shared.opts);
        let wake = conn
            .deadline(&shared.opts)
            .map_or(recheck, |d| d.min(recheck));
        let event = {
            let sleep = tokio::time::sleep_until(wake);
            let displaced = conn.displaced.notified();
            let changed = phase.changed();
            tokio::pin!(sleep, displaced, changed);
            // Fresh futures are polled once, to arm them.
            rare.woken.store(true, Ordering::Release);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(served) = folded.poll(cx, |cx| http.poll(cx)) {
                    return Poll::Ready(Event::Served(served));
                }
                let mut rcx = Context::from_waker(&rare_waker);
                // Polled at every pass: a wait begins in hyper's poll just
                // above, and the watch's socket wakes the rare waker.
                if departure.poll(&conn, &mut rcx).is_ready() {
                    return Poll::Ready(Event::Left);
                }
                if rare.take() {
                    if sleep.as_mut().poll(&mut rcx).is_ready() {
                        return Poll::Ready(Event::Timer);
                    }
                    if displaced.as_mut().poll(&mut rcx).is_ready() {
                        return Poll::Ready(Event::Displaced);
                    }
                    if let Poll::Ready(changed) = changed.as_mut().poll(&mut rcx) {
                        return Poll::Ready(Event::Phase(changed.is_ok()));
                    }
                }
                Poll::Pending
            })
            .await
        };
        match event {
            Event::Served(served) => {
                if let Err(e) = served {
                    tracing::debug!(id = conn.id, error = %e, "connection ended with an error");
                    return;
                }
                // The last answer may have left part of a body unread (a 408,
                // a 413, a 503): closing at once would reset the connection
                // and the client could lose the answer.
                if let Some(io) = http.into_io() {
                    answer_and_close(io, &[]).await;
                }
                return;
            }
            Event::Timer => {
                if conn
                    .deadline(&shared.opts)
                    .is_some_and(|d| d <= Instant::now())
                {
                    tracing::debug!(id = conn.id, "closing a silent or idle connection");
                    return;
                }
            }
            Event::Displaced => return,
            Event::Left => {
                tracing::debug!(id = conn.id, "the client left while its request waited");
                return;
            }
            Event::Phase(open) => {
                let now = *phase.borrow_and_update();
                if !open || now == Phase::Closing {
                    return;
                }
                if !draining {
                    http.graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
}

/// What serves a connection: the lane (`serve/lane.rs`), until it hands
/// the connection to hyper, or hyper from the start (TLS, the admin
/// listener).
// It lives in the connection's task, allocated once; a box per variant would
// only add one more allocation per connection.
#[allow(clippy::large_enum_variant)]
enum Engine<S> {
    Lane(Lane<S>),
    Hyper(HyperConn<S>),
    /// Only while the lane hands over.
    Moving,
}

type HyperConn<S> = hyper::server::conn::http1::Connection<TokioIo<Tracked<S>>, ConnService>;

/// Why a connection ended in error.
enum Ended {
    Hyper(hyper::Error),
    Io(std::io::Error),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Hyper(e) => e.fmt(f),
            Ended::Io(e) => e.fmt(f),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Engine<S> {
    /// hyper on `io`, reading `prefix` first.
    fn hyper(mut io: Tracked<S>, prefix: Bytes, service: ConnService) -> Engine<S> {
        io.put_back(prefix);
        // `half_close`: hyper does not read while a request is in flight (see
        // `serve/departure.rs`, which watches the requests that wait instead).
        Engine::Hyper(
            hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .half_close(true)
                .serve_connection(TokioIo::new(io), service),
        )
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Ended>> {
        loop {
            match self {
                Engine::Lane(lane) => match std::task::ready!(lane.poll(cx)) {
                    lane::Exit::Done(done) => return Poll::Ready(done.map_err(Ended::Io)),
                    lane::Exit::ToHyper => {
                        if let Engine::Lane(lane) = std::mem::replace(self, Engine::Moving) {
                            let (io, read, service, draining) = lane.into_parts();
                            *self = Engine::hyper(io, read, service);
                            if draining {
                                self.graceful_shutdown();
                            }
                        }
                    }
                },
                Engine::Hyper(http) => return http.poll_without_shutdown(cx).map_err(Ended::Hyper),
                Engine::Moving => return Poll::Ready(Ok(())),
            }
        }
    }

    fn graceful_shutdown(&mut self) {
        match self {
            Engine::Lane(lane) => lane.graceful_shutdown(),
            Engine::Hyper(http) => Pin::new(http).graceful_shutdown(),
            Engine::Moving => {}
        }
    }

    /// The connection's stream, to close it.
    fn into_io(self) -> Option<Tracked<S>> {
        match self {
            Engine::Lane(lane) => Some(lane.into_parts().0),
            Engine::Hyper(http) => Some(http.into_parts().io.into_inner()),
            Engine::Moving => None,
        }
    }
}

/// hyper's waker for one connection. A wake that comes while the
/// connection's task is polling hyper is folded into one more pass of that
/// poll instead of a trip through the runtime's queue: hyper's body channel
/// wakes its sender (the connection) whenever the handler takes a frame,
/// though the sender is in the middle of the poll, which cost most single
/// publishes a second, empty poll of their task. Wakes at any other time go
/// to the task as usual.
struct Folded {
    shared: Arc<FoldedShared>,
    waker: Waker,
}

#[derive(Default)]
struct FoldedShared {
    /// [`IDLE`], [`POLLING`] or [`WOKEN`] (woken while polling).
    state: AtomicU8,
    /// The task's waker, kept from the first poll: the connection is the
    /// root future of its own task, whose waker does not change (a poll
    /// with another one is not folded).
    task: OnceLock<Waker>,
}

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const WOKEN: u8 = 2;
/// Most extra passes of one poll; a connection still woken after them goes
/// through the runtime's queue, so it cannot hold its worker.
const MAX_FOLDED_PASSES: usize = 4;

impl Folded {
    fn new() -> Folded {
        let shared = Arc::new(FoldedShared::default());
        Folded {
            waker: Waker::from(shared.clone()),
            shared,
        }
    }

    /// Polls `f` with the folding waker, again while it was woken meanwhile.
    fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let shared = &self.shared;
        if !shared
            .task
            .get_or_init(|| cx.waker().clone())
            .will_wake(cx.waker())
        {
            return f(cx);
        }
        shared.state.store(POLLING, Ordering::Release);
        let mut fcx = Context::from_waker(&self.waker);
        let mut passes = 0;
        let out = loop {
            let out = f(&mut fcx);
            if out.is_ready() || passes == MAX_FOLDED_PASSES {
                break out;
            }
            let again =
                shared
                    .state
                    .compare_exchange(WOKEN, POLLING, Ordering::AcqRel, Ordering::Acquire);
            if again.is_err() {
                break out;
            }
            passes += 1;
        };
        // A wake between the last pass and here is handed on.
        if shared.state.swap(IDLE, Ordering::AcqRel) == WOKEN {
            cx.waker().wake_by_ref();
        }
        out
    }
}

impl Wake for FoldedShared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut seen = self.state.load(Ordering::Acquire);
        loop {
            match seen {
                POLLING => match self.state.compare_exchange(
                    POLLING,
                    WOKEN,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return,
                    Err(now) => seen = now,
                },
                WOKEN => return,
                _ => {
                    if let Some(task) = self.task.get() {
                        task.wake_by_ref();
                    }
                    return;
                }
            }
        }
    }
}

/// What ended one wait of [`drive`].
enum Event {
    /// hyper is done with the connection.
    Served(Result<(), Ended>),
    /// The watchdog's timer ran out.
    Timer,
    /// A newcomer took the connection's place.
    Displaced,
    /// A waiting request's client left (see `serve/departure.rs`).
    Left,
    /// Shutdown moved on (`false`: its sender is gone).
    Phase(bool),
}

/// The waker of a connection's rare events (its watchdog's timer,
/// displacement, shutdown). It marks that one of them fired, then wakes
/// the connection as hyper's wakes do ([`Folded`]), so the common wake-ups
/// (bytes in, an answer ready) poll hyper alone: polling the three every
/// time cost about a twentieth of a single publish's instructions
/// (callgrind).
struct Rare {
    woken: AtomicBool,
    conn: Arc<FoldedShared>,
}

impl Rare {
    /// Whether a rare event fired since the last call.
    fn take(&self) -> bool {
        self.woken.load(Ordering::Acquire) && self.woken.swap(false, Ordering::AcqRel)
    }
}

impl Wake for Rare {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        Wake::wake_by_ref(&self.conn);
    }
}

/// The per-connection service: bounds each body, tracks each request until
/// its answer is done, and fixes up the answer.
#[derive(Clone)]
struct ConnService {
    shared: Arc<ListenerState>,
    conn: Arc<Conn>,
}

/// The router's answer in the making, as the front makes it.
type RouterFuture = <super::App as tower::Service<Request<BoundedBody>>>::Future;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Answering;

    fn call(&self, req: Request<Incoming>) -> Answering {
        self.answer(req.map(Source::Hyper))
    }
}

impl ConnService {
    /// The answer to `req`, from hyper or the lane.
    fn answer(&self, req: Request<Source>) -> Answering {
        crate::idle_spin::request_begins();
        self.conn.begin();
        let ctx = Arc::new(RequestCtx::default());
        let done = RequestDone {
            conn: self.conn.clone(),
            ctx: ctx.clone(),
        };
        let opts = &self.shared.opts;
        let rate = Rate {
            grace: opts.body_timeout,
            bytes_per_sec: opts.body_min_rate.max(1),
        };
        let budget = self.shared.budget.clone();
        let mut req = req.map(|b| BoundedBody::new(b, ctx.clone(), budget, rate));
        // Only the routes that wait (scans, receives, streams) get the
        // connection's handle, for its shed signal and its watch for the
        // client leaving; other requests skip the extension map it would
        // allocate.
        let path = req.uri().path();
        if path.ends_with("/scan") || path.ends_with("/receive") || path.ends_with("/stream") {
            req.extensions_mut().insert(LongPoll(self.conn.clone()));
        }
        // The front is always ready: it is as ready as axum's router, which
        // always is. So it is called at once, without `poll_ready`.
        let inner = tower::Service::call(&mut self.shared.router.clone(), req);
        Answering {
            inner,
            shared: self.shared.clone(),
            done: Some(done),
        }
    }
}

pin_project_lite::pin_project! {
    /// One request's answer: the router's, fixed up as the body's outcome
    /// and the connection's state require. A named future, not a boxed
    /// one: hyper keeps it in the slot it keeps per connection, so a
    /// request allocates nothing for it.
    struct Answering {
        #[pin]
        inner: RouterFuture,
        shared: Arc<ListenerState>,
        // Taken by the answer's body; dropped with the future if the
        // request is abandoned first.
        done: Option<RequestDone>,
    }
}

impl Future for Answering {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut answer = match std::task::ready!(this.inner.poll(cx)) {
            Ok(answer) => answer,
            Err(never) => match never {},
        };
        let Some(done) = this.done.take() else {
            // Polled again after its answer: hyper never does.
            return Poll::Pending;
        };
        // A shed connection closes after its answer: its place is taken.
        let mut close = this.shared.closing.load(Ordering::Acquire) || done.conn.is_shed();
        match done.ctx.outcome() {
            Outcome::Fine => {}
            Outcome::TooSlow => {
                answer =
                    ApiError::RequestTimeout("the request body arrived too slowly").into_response();
                close = true;
            }
            Outcome::NoBudget => {
                answer = ApiError::ServerBusy("too many request bodies in flight").into_response();
                close = true;
            }
        }
        if close {
            answer
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(answer.map(|inner| TrackedBody { inner, _done: done })))
    }
}

/// Ends a request's tracking when its answer is done or dropped: the
/// connection may turn idle, and the body's budget is given back.
struct RequestDone {
    conn: Arc<Conn>,
    ctx: Arc<RequestCtx>,
}

impl Drop for RequestDone {
    fn drop(&mut self) {
        self.ctx.release();
        self.conn.end();
    }
}

/// An answer's body, carrying its request's [`RequestDone`].
struct TrackedBody {
    inner: axum::body::Body,
    _done: RequestDone,
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a connection past the cap.
fn too_many_connections() -> Vec<u8> {
    ApiError::TooManyConnections.raw_answer()
}

/// Answers a refused connection on a task of its own, or just closes it when
/// too many are being answered already.
fn refuse(shared: &ListenerState, stream: TcpStream, answer: Vec<u8>) {
    if let Ok(permit) = shared.refusing.clone().try_acquire_owned() {
        tokio::spawn(async move {
            answer_and_close(stream, &answer).await;
            drop(permit);
        });
    }
}

/// Writes `answer`, closes the writing side, and reads what the client
/// sends until it closes too (bounded), so the answer is not lost to a reset.
async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, answer: &[u8]) {
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        if !answer.is_empty() {
            stream.write_all(answer).await?;
        }
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSAL_DRAIN_BYTES {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}
