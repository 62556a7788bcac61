//! A request body held to a rate and to the process-wide body budget.
//!
//! [`BoundedBody`] wraps a request's body before axum sees it: hyper's, or
//! the bytes the lane (`serve/lane.rs`) read whole with the head. Two rules:
//! - **Rate.** After a grace of `body_timeout`, a body must keep up
//!   `body_min_rate` bytes per second on average, and it may never pause
//!   for longer than `body_timeout`: its deadline is the earlier of
//!   `start + grace + received / rate` and `last byte + grace`, both pushed
//!   out by the time spent waiting for the budget (that wait is the
//!   server's doing, not the client's). Past the deadline the body fails and
//!   the request is answered 408.
//! - **Budget.** Every data frame takes as many permits (bytes) from one
//!   semaphore shared by the whole process before it is handed on, and they
//!   stay taken until the request's answer is done, since the handler keeps
//!   the bytes that long. When the budget is spent the frame waits, reading
//!   nothing more from the socket (so the client is held back by TCP); a
//!   body that has waited `body_budget_wait` in all is answered 503. Memory held by
//!   bodies is thus the budget plus one frame per waiting connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::lock::Recover;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

use crate::http::budget::ByteBudget;
use tokio::time::{Instant, Sleep};

/// Why a request body was cut short by this layer.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body came slower than `body_min_rate` after `body_timeout`.
    #[error("the request body arrived too slowly")]
    TooSlow,
    /// No room in `body_budget` within `body_budget_wait`.
    #[error("no room for the request body: too many bodies in flight")]
    NoBudget,
    /// The connection failed while the body was read.
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// How a request's body ended, as far as this layer is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Read whole, or not read at all.
    Fine,
    /// Failed with [`BodyError::TooSlow`].
    TooSlow,
    /// Failed with [`BodyError::NoBudget`].
    NoBudget,
}

/// What one request's body and its answer share: the budget it holds and
/// how the body ended.
#[derive(Default)]
pub(crate) struct RequestCtx {
    permits: Mutex<Option<OwnedSemaphorePermit>>,
    outcome: AtomicU8,
}

impl RequestCtx {
    fn hold(&self, permit: OwnedSemaphorePermit) {
        let mut held = self.permits.lock().recover();
        match held.as_mut() {
            Some(p) => p.merge(permit),
            None => *held = Some(permit),
        }
    }

    /// Gives the body's bytes back to the budget (when the answer is done).
    pub(crate) fn release(&self) {
        self.permits.lock().recover().take();
    }

    fn fail(&self, outcome: Outcome) {
        self.outcome.store(outcome as u8, Ordering::Release);
    }

    /// How the body ended.
    pub(crate) fn outcome(&self) -> Outcome {
        match self.outcome.load(Ordering::Acquire) {
            x if x == Outcome::TooSlow as u8 => Outcome::TooSlow,
            x if x == Outcome::NoBudget as u8 => Outcome::NoBudget,
            _ => Outcome::Fine,
        }
    }
}

/// Where a request body's bytes come from.
pub(crate) enum Source {
    /// Read from the connection by hyper, frame by frame.
    Hyper(Incoming),
    /// Read whole with its head by the lane (`serve/lane.rs`); `None` once
    /// handed on.
    Whole(Option<Bytes>),
}

impl Source {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self {
            Source::Hyper(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(BodyError::from))),
            Source::Whole(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Source::Hyper(body) => body.is_end_stream(),
            Source::Whole(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Source::Hyper(body) => body.size_hint(),
            Source::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// The rate rule's two settings.
#[derive(Clone, Copy)]
pub(crate) struct Rate {
    /// Grace before the rate applies.
    pub grace: Duration,
    /// Bytes per second expected after the grace (at least 1).
    pub bytes_per_sec: u64,
}

type Acquire = Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send>>;

/// A body under the rules of the module docs.
pub(crate) struct BoundedBody {
    inner: Source,
    ctx: Arc<RequestCtx>,
    budget: Arc<ByteBudget>,
    rate: Rate,
    /// The start, moved later by the time spent waiting for the budget.
    start: Instant,
    received: u64,
    /// When the last data came (moved like `start`).
    last_data: Instant,
    /// When the body fails unless more comes (see the module docs).
    deadline_at: Instant,
    /// The timer for `deadline_at`, made the first time the body has to
    /// wait for the client: most bodies arrive with their headers and never
    /// need one.
    deadline: Option<Pin<Box<Sleep>>>,
    /// A frame read but waiting for room in the budget, and since when.
    waiting: Option<(Frame<Bytes>, Acquire, Instant)>,
    /// Time this body has spent waiting for the budget in all.
    waited: Duration,
    done: bool,
}

impl BoundedBody {
    pub(crate) fn new(
        inner: Source,
        ctx: Arc<RequestCtx>,
        budget: Arc<ByteBudget>,
        rate: Rate,
    ) -> Self {
        let start = Instant::now();
        BoundedBody {
            inner,
            ctx,
            budget,
            rate,
            start,
            received: 0,
            last_data: start,
            deadline_at: start + rate.grace,
            deadline: None,
            waiting: None,
            waited: Duration::ZERO,
            done: false,
        }
    }

    fn push_deadline(&mut self) {
        // In whole nanoseconds: a float division and conversion cost a
        // publish more than the rest of this layer.
        let nanos = u128::from(self.received) * 1_000_000_000 / u128::from(self.rate.bytes_per_sec);
        let earned = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let at = (self.start + self.rate.grace + earned).min(self.last_data + self.rate.grace);
        self.deadline_at = at;
        if let Some(timer) = &mut self.deadline {
            timer.as_mut().reset(at);
        }
    }

    fn fail(
        &mut self,
        outcome: Outcome,
        error: BodyError,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.done = true;
        self.waiting = None;
        self.ctx.fail(outcome);
        Poll::Ready(Some(Err(error)))
    }

    /// Takes budget for `frame`; hands it on, or parks it until there is room.
    fn admit(&mut self, frame: Frame<Bytes>) -> Option<Frame<Bytes>> {
        let len = frame.data_ref().map_or(0, Bytes::len);
        if len == 0 {
            return Some(frame);
        }
        self.received += len as u64;
        self.last_data = Instant::now();
        self.push_deadline();
        if let Some(permit) = self.budget.try_take(len) {
            self.ctx.hold(permit);
            return Some(frame);
        }
        let wait = self.budget.wait().saturating_sub(self.waited);
        let acquire: Acquire = Box::pin(self.budget.take_within(len, wait));
        self.waiting = Some((frame, acquire, Instant::now()));
        None
    }
}

impl Body for BoundedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if let Some((_, acquire, _)) = &mut this.waiting {
                let permit = std::task::ready!(acquire.as_mut().poll(cx));
                let (frame, _, since) = this.waiting.take().expect("a parked frame");
                let Some(permit) = permit else {
                    return this.fail(Outcome::NoBudget, BodyError::NoBudget);
                };
                this.ctx.hold(permit);
                let waited = since.elapsed();
                this.waited += waited;
                this.start += waited;
                this.last_data += waited;
                this.push_deadline();
                return Poll::Ready(Some(Ok(frame)));
            }
            match this.inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(frame) = this.admit(frame) {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    let at = this.deadline_at;
                    let timer = this
                        .deadline
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                    if timer.as_mut().poll(cx).is_ready() {
                        return this.fail(Outcome::TooSlow, BodyError::TooSlow);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.waiting.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
