//! The answer budget: bytes of batch-scan answers in memory at once, across
//! all requests, bounded as request bodies are (`serve/body.rs`).
//!
//! A batch scan first waits, holding nothing, until its scanner has
//! something to read, so an idle long poll costs no budget. It then reserves
//! what a full answer may take (`max_bytes` plus the framing of `max`
//! messages, at most the whole budget). When that much is not free it waits
//! up to `answer_budget_wait` for it, then makes do with what is free: the
//! read is bounded by the room held ([`ReadBound`]), so the answer holds
//! fewer messages, never a partial one, and the scanner moves only past
//! what is answered. When not even the next message fits, the scan waits
//! for room for that one message (again up to `answer_budget_wait`), and
//! answers `503 server busy` if it does not come; the scanner stays.
//!
//! Room is counted per message as its payload plus [`FRAME_BYTES`], the
//! binary framing; ndjson answers are counted the same way (their text is
//! usually about as long; base64 adds a third). A message larger than the
//! whole budget is answered alone, once it holds the whole budget.
//!
//! The reservation shrinks to the answer's size as soon as the answer is
//! read, and the rest is released when the answer's body is dropped: after
//! its last byte went out, or when the client went away mid-answer, so a
//! disconnect leaks nothing.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

use super::budget::ByteBudget;
use crate::message::{HEADER_BYTES, Message};
use crate::topic::ReadBound;

/// Bytes of binary framing per message of a batch answer: its 8-byte offset
/// and netlog's 9-byte header.
pub(crate) const FRAME_BYTES: usize = 8 + HEADER_BYTES;

/// The process-wide budget of answer bytes in flight (see the module docs).
pub(crate) struct AnswerBudget(ByteBudget);

/// Room held in the [`AnswerBudget`], given back when dropped.
pub(crate) struct Grant {
    permit: OwnedSemaphorePermit,
    /// The whole budget is held: the one message it holds may be larger.
    whole: bool,
}

impl AnswerBudget {
    /// A budget of `bytes` (at most `u32::MAX`, so that one reservation can
    /// take it all; `[server] answer_budget` is at most 2 GiB), where a scan
    /// waits at most `wait` for room.
    pub(crate) fn new(bytes: u64, wait: Duration) -> AnswerBudget {
        AnswerBudget(ByteBudget::new(bytes.min(u64::from(u32::MAX)), wait))
    }

    /// Bytes reserved by answers now.
    pub(crate) fn in_flight(&self) -> usize {
        self.0.in_flight()
    }

    /// Reserves `want` bytes (at most the whole budget), waiting up to the
    /// budget's wait; past it, whatever is free if `partial`. `None` when
    /// nothing (or, without `partial`, not all of it) could be had.
    pub(crate) async fn reserve(&self, want: usize, partial: bool) -> Option<Grant> {
        let budget = &self.0;
        let permit = match budget.try_take(want) {
            Some(p) => Some(p),
            None => budget.take_within(want, budget.wait()).await,
        };
        let permit = match permit {
            Some(p) => p,
            None if partial => budget.take_free(want)?,
            None => return None,
        };
        Some(Grant {
            whole: permit.num_permits() == budget.total(),
            permit,
        })
    }
}

impl Grant {
    /// The bound a read within this grant must keep: `None` when the whole
    /// budget is held and the one message wanted is larger still.
    pub(crate) fn bound(&self, needed: Option<usize>) -> Option<ReadBound> {
        let bytes = self.permit.num_permits();
        if self.whole && needed.is_some_and(|n| n > bytes) {
            return None;
        }
        Some(ReadBound {
            bytes,
            per_message: FRAME_BYTES,
        })
    }

    /// Gives back what `messages` do not take.
    pub(crate) fn shrink_to(&mut self, messages: &[Message]) {
        let used: usize = messages
            .iter()
            .map(|m| m.payload.len().saturating_add(FRAME_BYTES))
            .sum();
        let held = self.permit.num_permits();
        if used < held {
            drop(self.permit.split(held - used));
        }
    }
}

/// Bytes an answer's body hands the connection at a time: the connection
/// asks for the next piece only once it has written most of the last, so
/// the body (and its grant) lives until about all of it is sent.
const PIECE_BYTES: usize = 64 << 10;

/// An answer's body holding its [`Grant`] until the body is dropped: its
/// last piece taken by the connection, or the client gone away.
pub(crate) struct BudgetedBody {
    rest: Bytes,
    _grant: Grant,
}

impl BudgetedBody {
    pub(crate) fn new(bytes: Vec<u8>, grant: Grant) -> BudgetedBody {
        BudgetedBody {
            rest: Bytes::from(bytes),
            _grant: grant,
        }
    }
}

impl Body for BudgetedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.rest.len().min(PIECE_BYTES);
        Poll::Ready(Some(Ok(Frame::data(self.rest.split_to(n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Message {
        Message {
            offset: 0,
            crc: 0,
            payload: Bytes::from(vec![0u8; len]),
            format: 0,
        }
    }

    /// A reservation past the budget gets what is free after the wait, or
    /// nothing when nothing is; shrinking and dropping give room back.
    #[tokio::test]
    async fn reservations_share_the_budget() {
        let budget = AnswerBudget::new(1000, Duration::from_millis(10));
        let mut a = budget.reserve(700, true).await.unwrap();
        assert_eq!(budget.in_flight(), 700);
        let b = budget.reserve(700, true).await.unwrap();
        assert_eq!(b.permit.num_permits(), 300, "what was free");
        assert!(budget.reserve(1, true).await.is_none(), "nothing free");
        a.shrink_to(&[message(100 - FRAME_BYTES)]);
        assert_eq!(budget.in_flight(), 400);
        assert!(budget.reserve(700, false).await.is_none(), "not all of it");
        drop((a, b));
        assert_eq!(budget.in_flight(), 0);
        let whole = budget.reserve(5000, true).await.unwrap();
        assert!(
            whole.bound(Some(5000)).is_none(),
            "a message over the whole budget"
        );
        assert_eq!(whole.bound(Some(10)).unwrap().bytes, 1000);
    }
}
