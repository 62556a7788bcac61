//! Locks that outlive a panic: the one way this crate takes a std lock.
//!
//! A std `Mutex` or `RwLock` is poisoned when a thread panics while holding
//! it, and every later `lock()` returns an error. Nothing in this crate
//! holds a lock across work that can leave the data half-changed and then
//! panic (writers catch their panics per group and discard what they
//! staged; the rest are maps, counters and caches changed in single steps),
//! so the data behind a poisoned lock is as good as before, and refusing
//! every later request would turn one bug into an outage. [`Recover`] takes
//! the guard either way; `lock().recover()`, `read().recover()`,
//! `write().recover()`, `get_mut().recover()` and `wait(..).recover()` are
//! the only spellings used.

use std::sync::{LockResult, PoisonError};

/// The guard of a lock, poisoned or not. See the module docs.
pub(crate) trait Recover<G> {
    /// The guard, whether or not a panic poisoned the lock.
    fn recover(self) -> G;
}

impl<G> Recover<G> for LockResult<G> {
    fn recover(self) -> G {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}
