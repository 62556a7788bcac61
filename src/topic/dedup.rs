//! Idempotent publish: the table of a topic's recent `Idempotency-Key`s.
//!
//! A publish with an `Idempotency-Key` first asks the table ([`Dedup::begin`]):
//! a key being written is `InFlight` (the HTTP layer answers `409`); a key
//! recorded within the window with the same fingerprint is a `Replay` of the
//! original answer (its first offset and count), with no validation and no
//! write; the same key with another fingerprint is a `Conflict` naming the
//! first offset (`422`). Otherwise the key is marked in flight and a
//! [`Ticket`] is handed out: [`Ticket::done`] records it once the write is
//! acknowledged; a ticket dropped without it (a failed write: `422`, `503`,
//! `507`, a dropped request) frees the key.
//!
//! **Durability.** The key is stored in the same log entry as the data (the
//! idempotency section of the request's first message, `record.rs`), so
//! after any crash it is known exactly when its data is: [`Dedup::rebuild`]
//! replays the log from the first offset written within the window (by the
//! index's time) when the topic opens. No snapshot is kept: start-up reads
//! the window's messages once.
//!
//! **Bounds.** At most `dedup_max_keys` keys are recorded; past it the one
//! that expires soonest is forgotten and counted ([`Dedup::evicted`]). Keys
//! in flight are bounded by the topic's queue. An entry costs its key, one
//! map slot and one ordered-index slot (see `docs/BENCHMARKS.md` for the
//! measured bytes). The window runs from the acknowledgment of the original
//! and retries do not extend it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::lock::Recover;

/// What the table says about a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Its first request is being written.
    InFlight,
    /// Recorded with the same fingerprint: the original answer.
    Replay { first: u64, count: u32 },
    /// Recorded with another fingerprint; `first` is its first offset.
    Conflict { first: u64 },
}

#[derive(Clone, Copy, Debug)]
enum Entry {
    InFlight,
    Done {
        fingerprint: u64,
        first: u64,
        count: u32,
        /// ms since the epoch.
        expires: u64,
    },
}

#[derive(Default)]
struct Table {
    keys: HashMap<Bytes, Entry>,
    /// Recorded keys by expiry, soonest first.
    by_expiry: BTreeSet<(u64, Bytes)>,
}

/// A topic's idempotency keys. See the module docs.
pub struct Dedup {
    table: Mutex<Table>,
    window: Duration,
    max_keys: usize,
    hits: AtomicU64,
    conflicts_payload: AtomicU64,
    conflicts_in_flight: AtomicU64,
    evicted: AtomicU64,
}

/// A key in flight; see [`Ticket::done`].
pub struct Ticket {
    dedup: Arc<Dedup>,
    key: Bytes,
    fingerprint: u64,
    done: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The fingerprint of a request: a 64-bit hash of its messages as they
/// would be stored without the idempotency section (frames back to back).
pub fn fingerprint(frames: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(frames)
}

impl Dedup {
    /// An empty table.
    pub fn new(window: Duration, max_keys: usize) -> Dedup {
        Dedup {
            table: Mutex::default(),
            window,
            max_keys: max_keys.max(1),
            hits: AtomicU64::new(0),
            conflicts_payload: AtomicU64::new(0),
            conflicts_in_flight: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// Looks `key` up; when it is free, marks it in flight and returns a
    /// ticket.
    pub fn begin(self: &Arc<Self>, key: Bytes, fingerprint: u64) -> Result<Ticket, Lookup> {
        let now = now_ms();
        let mut t = self.table.lock().recover();
        match t.keys.get(&key).copied() {
            Some(Entry::InFlight) => {
                self.conflicts_in_flight.fetch_add(1, Ordering::Relaxed);
                return Err(Lookup::InFlight);
            }
            Some(Entry::Done {
                fingerprint: f,
                first,
                count,
                expires,
            }) if expires > now => {
                if f == fingerprint {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Err(Lookup::Replay { first, count });
                }
                self.conflicts_payload.fetch_add(1, Ordering::Relaxed);
                return Err(Lookup::Conflict { first });
            }
            Some(Entry::Done { expires, .. }) => {
                t.by_expiry.remove(&(expires, key.clone()));
            }
            None => {}
        }
        t.keys.insert(key.clone(), Entry::InFlight);
        Ok(Ticket {
            dedup: self.clone(),
            key,
            fingerprint,
            done: false,
        })
    }

    /// Records `key` as written at `first` (`count` messages), expiring at
    /// `expires` (ms since the epoch); evicts past the cap.
    fn record(&self, key: Bytes, fingerprint: u64, first: u64, count: u32, expires: u64) {
        let now = now_ms();
        let mut t = self.table.lock().recover();
        // Forget what expired, soonest first.
        while let Some((at, k)) = t.by_expiry.first().cloned() {
            if at > now {
                break;
            }
            t.by_expiry.pop_first();
            if matches!(t.keys.get(&k), Some(Entry::Done { expires, .. }) if *expires == at) {
                t.keys.remove(&k);
            }
        }
        if let Some(Entry::Done { expires: old, .. }) = t.keys.get(&key).copied() {
            t.by_expiry.remove(&(old, key.clone()));
        }
        while t.by_expiry.len() >= self.max_keys {
            let Some((_, k)) = t.by_expiry.pop_first() else {
                break;
            };
            t.keys.remove(&k);
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        t.by_expiry.insert((expires, key.clone()));
        t.keys.insert(
            key,
            Entry::Done {
                fingerprint,
                first,
                count,
                expires,
            },
        );
    }

    /// Records a key found in the log when the topic opens: written at
    /// `first` at `written_ms` (the index's time); skipped if expired.
    pub fn recover(&self, key: Bytes, fingerprint: u64, first: u64, count: u32, written_ms: u64) {
        let expires = written_ms.saturating_add(self.window.as_millis() as u64);
        if expires > now_ms() {
            self.record(key, fingerprint, first, count, expires);
        }
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Keys recorded (not expired ones awaiting removal excluded lazily).
    pub fn keys(&self) -> usize {
        self.table.lock().recover().by_expiry.len()
    }

    /// Replays answered.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Conflicts: (another payload, in flight).
    pub fn conflicts(&self) -> (u64, u64) {
        (
            self.conflicts_payload.load(Ordering::Relaxed),
            self.conflicts_in_flight.load(Ordering::Relaxed),
        )
    }

    /// Keys forgotten at the cap.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

impl Ticket {
    /// The request's fingerprint.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The request's key.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// Records the key as written at `first` (`count` messages); the window
    /// starts now.
    pub fn done(mut self, first: u64, count: u32) {
        self.done = true;
        let expires = now_ms().saturating_add(self.dedup.window.as_millis() as u64);
        self.dedup
            .record(self.key.clone(), self.fingerprint, first, count, expires);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            let mut t = self.dedup.table.lock().recover();
            if matches!(t.keys.get(&self.key), Some(Entry::InFlight)) {
                t.keys.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Bytes {
        Bytes::copy_from_slice(k.as_bytes())
    }

    /// In flight, replay, conflict, and a failed first try leaves the key
    /// free.
    #[test]
    fn lookups() {
        let d = Arc::new(Dedup::new(Duration::from_secs(60), 10));
        let t = d.begin(key("a"), 1).unwrap();
        assert_eq!(d.begin(key("a"), 1).err(), Some(Lookup::InFlight));
        t.done(5, 2);
        assert_eq!(
            d.begin(key("a"), 1).err(),
            Some(Lookup::Replay { first: 5, count: 2 })
        );
        assert_eq!(
            d.begin(key("a"), 2).err(),
            Some(Lookup::Conflict { first: 5 })
        );
        drop(d.begin(key("b"), 1).unwrap());
        assert!(d.begin(key("b"), 9).is_ok());
        assert_eq!(d.hits(), 1);
        assert_eq!(d.conflicts(), (1, 1));
    }

    /// At the cap the soonest-expiring key is evicted and counted; expired
    /// keys are free again.
    #[test]
    fn eviction_and_expiry() {
        let d = Arc::new(Dedup::new(Duration::from_secs(60), 2));
        let now = now_ms();
        d.recover(key("old"), 1, 0, 1, now - 50_000);
        d.recover(key("mid"), 1, 1, 1, now - 10_000);
        d.recover(key("new"), 1, 2, 1, now);
        assert_eq!(d.evicted(), 1);
        assert_eq!(d.keys(), 2);
        assert!(d.begin(key("old"), 1).is_ok());
        assert!(d.begin(key("mid"), 1).is_err());
        d.recover(key("gone"), 1, 3, 1, now - 61_000);
        assert!(
            d.begin(key("gone"), 7).is_ok(),
            "expired before it was seen"
        );
    }
}
