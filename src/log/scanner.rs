//! A reader that waits: at the end of the log it sleeps until the writer
//! publishes more (or a deadline passes) instead of polling.
//!
//! Waking goes through the log's `watch` channel, which the writer updates
//! after each flush. The scanner marks the channel's current value as seen
//! *before* it tries to read, so an append that lands between the read and the
//! wait still wakes it: no lost wake-ups, and no CPU spent while idle, however
//! long the wait. A scanner is `Send`; to share one between tasks (as the
//! broker does for a scanner id used by several requests) put it behind an
//! async mutex, which also keeps each message handed out once.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::LogError;
use super::reader::{Message, Reader};

/// A waiting reader. See the module docs.
pub struct Scanner {
    reader: Reader,
    appended: watch::Receiver<u64>,
}

impl Scanner {
    pub(crate) fn new(reader: Reader, appended: watch::Receiver<u64>) -> Scanner {
        Scanner { reader, appended }
    }

    /// The offset the next message returned will have.
    pub fn next_offset(&self) -> u64 {
        self.reader.next_offset()
    }

    /// The next message if one is readable now.
    pub fn try_next(&mut self) -> Result<Option<Message>, LogError> {
        self.reader.next()
    }

    /// The next message, waiting up to `wait` for one to be appended.
    /// `None` when the wait ends with nothing new.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Message>, LogError> {
        let deadline = Instant::now() + wait;
        loop {
            self.appended.borrow_and_update();
            if let Some(m) = self.reader.next()? {
                return Ok(Some(m));
            }
            match tokio::time::timeout_at(deadline, self.appended.changed()).await {
                Ok(Ok(())) => continue,
                // The deadline passed, or the log is gone.
                Ok(Err(_)) | Err(_) => return Ok(None),
            }
        }
    }

    /// Marks every append so far as seen. Call it before reading, and
    /// [`Scanner::wait_appended`] after a read that found nothing: an append
    /// that lands in between still wakes the wait, and a wait never wakes
    /// for an append the read already saw.
    pub fn mark_seen(&mut self) {
        self.appended.borrow_and_update();
    }

    /// Waits until something is appended after the last
    /// [`Scanner::mark_seen`], or the deadline passes; returns whether
    /// something was appended.
    pub async fn wait_appended(&mut self, deadline: Instant) -> bool {
        matches!(
            tokio::time::timeout_at(deadline, self.appended.changed()).await,
            Ok(Ok(()))
        )
    }
}
