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

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::task::{Context, Poll, ready};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::Conn;

/// One connection's watch (see the module docs).
pub(super) struct Departure {
    /// The connection's socket, owned by hyper's stream.
    fd: RawFd,
    /// The duplicate registered for reading, while a request waits.
    watch: Option<AsyncFd<OwnedFd>>,
    /// Setting the watch up failed (out of descriptors, say): the
    /// connection's requests are not watched.
    failed: bool,
}

impl Departure {
    pub(super) fn new(fd: RawFd) -> Departure {
        Departure {
            fd,
            watch: None,
            failed: false,
        }
    }

    /// Whether a watch is registered (to be dropped once nothing waits).
    pub(super) fn is_set(&self) -> bool {
        self.watch.is_some()
    }

    /// Ready when a request waits and its client has left; registers `cx`
    /// for the socket's next readiness while one waits.
    pub(super) fn poll(&mut self, conn: &Conn, cx: &mut Context<'_>) -> Poll<()> {
        if !conn.watched() {
            self.watch = None;
            return Poll::Pending;
        }
        if self.watch.is_none() && !self.failed {
            match duplicate(self.fd).and_then(register) {
                Ok(watch) => self.watch = Some(watch),
                Err(e) => {
                    tracing::debug!(id = conn.id, error = %e, "cannot watch for the client leaving");
                    self.failed = true;
                }
            }
        }
        let Some(watch) = &self.watch else {
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
