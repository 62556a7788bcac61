//! A reader that waits: at the end of the log it sleeps until the writer
//! publishes more (or a deadline passes) instead of polling.
//!
//! Waking goes through the log's `watch` channel, which the writer updates
//! after each flush. The scanner marks the channel's current value as seen
//! *before* it tries to read, so an append that lands between the read and the
//! wait still wakes it: no lost wake-ups, and no CPU spent while idle, however
//! long the wait. It is the log's simple API for one consumer; the broker's
//! scanners, shared by many requests, keep a position and a parked
//! [`Reader`] instead (see `topic`'s `scan`).

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::LogError;
use super::reader::Reader;
use crate::message::Message;

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
}
