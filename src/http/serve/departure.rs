//! Whether the client of a waiting request has left.
//!
//! hyper is told not to read while a request is in flight (`half_close`):
//! its own check for a client that left read ahead into a fresh 8 KiB
//! buffer on every request, because the request still held the old one,
//! and that allocation (with its free) was about a sixteenth of a single
//! publish's instructions. Most requests end within microseconds and need
//! no check. The ones that wait for their client's sake (long polls,
//! receives, streams: see `conn.rs`) are watched here instead, by the
//! connection's task, only while they wait.
//!
//! The watch is a duplicate of the socket's descriptor registered with the
//! runtime for reading, made at the first wait of a connection and dropped
//! when no request waits (so a connection between waits costs nothing). At
//! each readiness it asks the kernel whether the peer has closed its side
//! (`POLLRDHUP`) or the socket has failed (a reset): either means the
//! client left. Bytes the client sends meanwhile (a pipelined request, or
//! TLS's closing alert) are left for hyper, which reads them after the
//! answer; they do not hide a close that follows them, so the check works
//! the same under TLS. A client that only shuts down its sending side is
//! taken as gone, as hyper's own check took it.
//!
//! **Bound.** Each watch holds a descriptor, so at most [`Watches`] of them
//! are open at once, process-wide: an eighth of the descriptor limit (2,500
//! under a limit of 20,000). Connections may take three quarters of the
//! limit; the watches come out of the last quarter, and half of it is left
//! to topic files, plugins and the answers to refused connections. A wait
//! past the bound is not watched: it ends when its time is up, and a client
//! that left meanwhile is noticed when its answer is written.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::Conn;

/// The process-wide count of open watches, and its bound (see the module
/// docs).
pub(super) struct Watches {
    open: AtomicUsize,
    max: usize,
}

impl Watches {
    /// The bound for a descriptor limit of `fd_limit`; with the limit
    /// unknown, `fallback`.
    pub(super) fn new(fd_limit: Option<u64>, fallback: usize) -> Watches {
        let max = fd_limit.map_or(fallback, |n| usize::try_from(n / 8).unwrap_or(usize::MAX));
        Watches {
            open: AtomicUsize::new(0),
            max,
        }
    }

    /// Takes a place for one watch, if one is free.
    fn take(self: &Arc<Self>) -> Option<Place> {
        let mut open = self.open.load(Ordering::Relaxed);
        loop {
            if open >= self.max {
                return None;
            }
            match self.open.compare_exchange_weak(
                open,
                open + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Place(self.clone())),
                Err(now) => open = now,
            }
        }
    }
}

/// One watch's place in [`Watches`], given back when dropped.
struct Place(Arc<Watches>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One connection's watch (see the module docs).
pub(super) struct Departure {
    /// The connection's socket, owned by hyper's stream.
    fd: RawFd,
    watches: Arc<Watches>,
    /// The duplicate registered for reading, while a request waits, and its
    /// place (dropped after it).
    watch: Option<(AsyncFd<OwnedFd>, Place)>,
    /// Setting a watch up failed or found no place, and was logged.
    failed: bool,
}

impl Departure {
    pub(super) fn new(fd: RawFd, watches: Arc<Watches>) -> Departure {
        Departure {
            fd,
            watches,
            watch: None,
            failed: false,
        }
    }

    /// Ready when a request waits and its client has left; registers `cx`
    /// for the socket's next readiness while one waits. When nothing waits
    /// it costs one atomic load (and drops the watch left from a wait).
    pub(super) fn poll(&mut self, conn: &Conn, cx: &mut Context<'_>) -> Poll<()> {
        if !conn.watched() {
            if self.watch.is_some() {
                self.watch = None;
            }
            return Poll::Pending;
        }
        if self.watch.is_none() {
            let set = match self.watches.take() {
                Some(place) => duplicate(self.fd)
                    .and_then(register)
                    .map(|watch| (watch, place)),
                None => Err(io::Error::other("too many watches open")),
            };
            match set {
                Ok(watch) => self.watch = Some(watch),
                Err(e) => {
                    if !std::mem::replace(&mut self.failed, true) {
                        tracing::debug!(id = conn.id, error = %e, "not watching for the client leaving");
                    }
                    return Poll::Pending;
                }
            }
        }
        let Some((watch, _)) = &self.watch else {
            return Poll::Pending;
        };
        loop {
            let Ok(mut ready) = ready!(watch.poll_read_ready(cx)) else {
                return Poll::Ready(());
            };
            if peer_gone(self.fd) {
                return Poll::Ready(());
            }
            ready.clear_ready();
        }
    }
}

/// A duplicate of `fd`, closed on exec.
fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: `fd` is the connection's open socket (its stream outlives
    // this watch); the duplicate is a new descriptor that we own.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` was just made and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// `fd` registered with the runtime for reading.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` owns `fd`, which stays open and the same for
    // as long as it does.
    Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?)
}

/// Whether the peer of socket `fd` has closed its side or the socket has
/// failed, asked without waiting.
fn peer_gone(fd: RawFd) -> bool {
    let mut probe = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid `pollfd`, with its count; a zero timeout.
    let n = unsafe { libc::poll(&raw mut probe, 1, 0) };
    n > 0 && probe.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}
