//! One connection's activity, as its watchdog and the connection cap see
//! it: how many requests are in flight, since when it has been idle, and
//! since when a request head has been arriving.
//!
//! From these the watchdog derives one deadline (see [`Conn::deadline`]):
//! none while a request is in flight (a long poll or a stream waits on
//! purpose); otherwise `header_timeout` after the first byte of a head, or
//! after the accept for a connection that has sent nothing yet, and
//! `idle_timeout` after the last answer of a keep-alive connection. Nothing
//! here wakes the watchdog when the deadline moves (that would cost a
//! wake-up and a timer per request): while requests are in flight it looks
//! again every [`Conn::recheck`], so a deadline is kept to within that. Only a
//! connection with nothing in flight may be displaced by a newcomer.
//!
//! A request that waits in a long poll says so ([`LongPoll::waiting`]); a
//! connection whose requests in flight are all such waits may be *shed*
//! ([`Conn::shed`]): its wait ends at once with the normal empty answer,
//! that answer closes the connection, and the newcomer takes its place.
//!
//! A request that waits for its client's sake (a scan's or a receive's wait
//! of [`WATCHED_WAIT`] or more, a stream) asks, for as long as it waits, to
//! be ended if its client leaves ([`LongPoll::watch`]); the connection's
//! task then watches the socket (`serve/departure.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::config::ServerOptions;
use crate::lock::Recover;

/// One connection's activity, which its watchdog reads.
pub(crate) struct Conn {
    pub(super) id: u64,
    pub(super) accepted: Instant,
    activity: Mutex<Activity>,
    pub(super) displaced: Notify,
    /// Becomes `true` when the connection is shed: its long polls end.
    shed: watch::Sender<bool>,
    /// Requests in flight that are to end if the client leaves.
    watched: AtomicUsize,
}

/// Shortest wait of a scan or a receive that ends if its client leaves
/// while it waits: 100 ms. Shorter waits end soon by themselves, and
/// watching costs a few system calls.
pub(crate) const WATCHED_WAIT: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Activity {
    /// Requests handed to the router whose answers are not done.
    in_flight: usize,
    /// When the last answer finished (`None`: no request yet).
    idle_since: Option<Instant>,
    /// When the first byte of the next request head came, while idle.
    head_since: Option<Instant>,
    /// Of `in_flight`, requests waiting in a long poll.
    long_polls: usize,
    displaced: bool,
}

impl Conn {
    pub(super) fn new(id: u64) -> Conn {
        Conn {
            id,
            accepted: Instant::now(),
            activity: Mutex::new(Activity::default()),
            displaced: Notify::new(),
            shed: watch::Sender::new(false),
            watched: AtomicUsize::new(0),
        }
    }

    /// Whether a request in flight is to end if the client leaves.
    pub(super) fn watched(&self) -> bool {
        self.watched.load(Ordering::Acquire) > 0
    }

    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().recover()
    }

    pub(super) fn begin(&self) {
        let mut a = self.activity();
        a.in_flight += 1;
        a.head_since = None;
    }

    pub(super) fn end(&self) {
        let mut a = self.activity();
        a.in_flight = a.in_flight.saturating_sub(1);
        if a.in_flight == 0 {
            a.idle_since = Some(Instant::now());
            a.head_since = None;
        }
    }

    /// Bytes came in: if nothing is in flight, a request head has started.
    pub(super) fn saw_bytes(&self) {
        let mut a = self.activity();
        if a.in_flight == 0 && a.head_since.is_none() {
            a.head_since = Some(Instant::now());
        }
    }

    /// No request is in flight.
    pub(super) fn is_quiet(&self) -> bool {
        self.activity().in_flight == 0
    }

    /// Marks the connection to be closed if it has no request in flight;
    /// tells whether it did.
    pub(super) fn displace(&self) -> bool {
        let mut a = self.activity();
        if a.in_flight > 0 || a.displaced {
            return false;
        }
        a.displaced = true;
        self.displaced.notify_one();
        true
    }

    /// Marks the connection to be closed after its answers if every request
    /// in flight is waiting in a long poll, and ends those waits; tells
    /// whether it did.
    pub(super) fn shed(&self) -> bool {
        let mut a = self.activity();
        if a.displaced || a.long_polls == 0 || a.long_polls < a.in_flight {
            return false;
        }
        a.displaced = true;
        self.shed.send_replace(true);
        true
    }

    /// Whether the connection was shed: its answers close it.
    pub(super) fn is_shed(&self) -> bool {
        *self.shed.borrow()
    }

    pub(super) fn was_displaced(&self) -> bool {
        self.activity().displaced
    }

    /// How long the watchdog sleeps while no deadline is set: the shorter
    /// of the two timeouts, so the deadline set when the last answer ends is
    /// kept to within it.
    pub(super) fn recheck(opts: &ServerOptions) -> std::time::Duration {
        opts.header_timeout.min(opts.idle_timeout)
    }

    /// When the watchdog closes the connection if nothing changes; `None`
    /// while a request is in flight.
    pub(super) fn deadline(&self, opts: &ServerOptions) -> Option<Instant> {
        let a = self.activity();
        if a.in_flight > 0 {
            return None;
        }
        Some(match (a.head_since, a.idle_since) {
            (Some(head), _) => head + opts.header_timeout,
            (None, Some(idle)) => idle + opts.idle_timeout,
            (None, None) => self.accepted + opts.header_timeout,
        })
    }
}

/// A request's handle on its connection, for a handler that waits in a long
/// poll (a request extension; absent when the router is called directly).
#[derive(Clone)]
pub(crate) struct LongPoll(pub(super) Arc<Conn>);

impl LongPoll {
    /// Ends the connection's long-poll waits now (at shutdown), without
    /// shedding it.
    pub(crate) fn end_waits(&self) {
        self.0.shed.send_replace(true);
    }

    /// Marks the request as waiting in a long poll until the guard drops,
    /// and gives the signal that becomes `true` when the connection is shed
    /// (see the module docs).
    pub(crate) fn waiting(&self) -> (LongPollGuard, watch::Receiver<bool>) {
        self.0.activity().long_polls += 1;
        (LongPollGuard(self.0.clone()), self.0.shed.subscribe())
    }

    /// Asks that the request end if the client leaves, until the guard
    /// drops (see the module docs).
    pub(crate) fn watch(&self) -> Watched {
        self.0.watched.fetch_add(1, Ordering::AcqRel);
        Watched(self.0.clone())
    }
}

/// Ends a request's watch when dropped.
pub(crate) struct Watched(Arc<Conn>);

impl Drop for Watched {
    fn drop(&mut self) {
        self.0.watched.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Ends a request's long-poll mark when dropped.
pub(crate) struct LongPollGuard(Arc<Conn>);

impl Drop for LongPollGuard {
    fn drop(&mut self) {
        let mut a = self.0.activity();
        a.long_polls = a.long_polls.saturating_sub(1);
    }
}
