//! A process-wide budget of bytes held in memory: the one primitive behind
//! the request-body budget (`serve/body.rs`, `[server] body_budget`) and
//! the answer budget (`answers.rs`, `[server] answer_budget`).
//!
//! A budget is a semaphore of one permit per byte, with the longest a
//! taker waits for room. Takers keep what they took as an
//! [`OwnedSemaphorePermit`] and give it back by dropping it (or part of it
//! by splitting it), so nothing is released twice or forgotten. One taking
//! is at most `u32::MAX` bytes (tokio's limit) and at most the whole budget,
//! so a taker that asks for more than the budget gets all of it rather than
//! waiting forever.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes in memory across requests, bounded (see the module docs).
pub(crate) struct ByteBudget {
    permits: Arc<Semaphore>,
    total: usize,
    wait: Duration,
}

impl ByteBudget {
    /// A budget of `bytes` (at least 1), where a taker waits at most `wait`.
    pub(crate) fn new(bytes: u64, wait: Duration) -> ByteBudget {
        let total = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        ByteBudget {
            permits: Arc::new(Semaphore::new(total)),
            total,
            wait,
        }
    }

    /// The whole budget, in bytes.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// The longest a taker waits for room.
    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }

    /// Bytes taken now.
    pub(crate) fn in_flight(&self) -> usize {
        self.total.saturating_sub(self.permits.available_permits())
    }

    /// What one taking of `n` bytes asks for: at least 1, at most the whole
    /// budget and `u32::MAX`.
    fn clamp(&self, n: usize) -> u32 {
        u32::try_from(n.clamp(1, self.total)).unwrap_or(u32::MAX)
    }

    /// `n` bytes if they are free now.
    pub(crate) fn try_take(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        self.permits
            .clone()
            .try_acquire_many_owned(self.clamp(n))
            .ok()
    }

    /// `n` bytes, waiting up to `wait` for them; the future owns what it
    /// needs, so it can be boxed and polled from anywhere.
    pub(crate) fn take_within(
        &self,
        n: usize,
        wait: Duration,
    ) -> impl Future<Output = Option<OwnedSemaphorePermit>> + Send + 'static {
        let (permits, n) = (self.permits.clone(), self.clamp(n));
        async move {
            tokio::time::timeout(wait, permits.acquire_many_owned(n))
                .await
                .ok()
                .and_then(Result::ok)
        }
    }

    /// Whatever is free now, up to `n` bytes; `None` when nothing is.
    pub(crate) fn take_free(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        let free = self.permits.available_permits().min(n);
        (free > 0).then(|| self.try_take(free)).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takings are clamped to the budget, counted while held, and given
    /// back when dropped; a wait for room that does not come ends.
    #[tokio::test]
    async fn takings_are_bounded_and_given_back() {
        let budget = ByteBudget::new(100, Duration::from_millis(10));
        let all = budget.try_take(1_000).expect("clamped to the whole budget");
        assert_eq!(all.num_permits(), 100);
        assert_eq!(budget.in_flight(), 100);
        assert!(budget.try_take(1).is_none());
        assert!(budget.take_free(10).is_none());
        assert!(budget.take_within(1, budget.wait()).await.is_none());
        drop(all);
        assert_eq!(budget.in_flight(), 0);
        assert_eq!(budget.take_free(10).expect("free").num_permits(), 10);
        assert_eq!(ByteBudget::new(0, Duration::ZERO).total(), 1);
    }
}
