//! Retention plugins on the JetStream engine: a ledger of virtual segments.
//!
//! A stream has no segments, but a retention plugin decides in segments:
//! how many of the oldest to delete, whether to roll the active one. So
//! each topic with a retention plugin has a ledger in the KV bucket
//! `nl_ledger` (key: the topic, `.` written `=`): its virtual segments as
//! `{"segments":[{"base":B,"created_ms":T}, ...]}`, oldest first, the last
//! one active (it runs to the end of the stream). On each monitor tick the
//! plugin sees these segments (their bytes estimated from the stream's
//! average message size), the scanners' cursors, and the clock, exactly as
//! on the embedded engine, with the same clamps: never the active segment,
//! never more than exist, a roll only when the active segment is big or old
//! enough. Deleting the `n` oldest is one `PURGE` of the stream up to the
//! base of segment `n`, so offsets never move; a roll appends a segment
//! whose base is the end of the stream.
//!
//! Every front end runs the tick; the ledger moves by compare-and-set, so
//! of two front ends deciding at once one applies its decision and the
//! other skips the tick. A purge is idempotent (up to a sequence), and a
//! ledger whose oldest segments were purged by another front end before it
//! could write is mended on the next tick (segments below the stream's
//! first sequence are dropped).

use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::EngineError;

/// The ledger bucket.
pub const LEDGER_BUCKET: &str = "nl_ledger";

/// One virtual segment.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Segment {
    /// Its first offset.
    pub(crate) base: u64,
    /// When it became the active segment, ms since the Unix epoch.
    pub(crate) created_ms: u64,
}

/// A topic's ledger as read, with the revision its update needs (0: none
/// stored yet).
#[derive(Clone, Debug)]
pub(crate) struct Ledger {
    pub(crate) segments: Vec<Segment>,
    revision: u64,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    segments: Vec<Segment>,
}

/// Ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn key(topic: &str) -> String {
    topic.replace('.', "=")
}

impl Ledger {
    /// Whether it was made on this read (nothing stored yet).
    pub(crate) fn is_new(&self) -> bool {
        self.revision == 0
    }
}

/// The bucket of every topic's ledger.
pub(crate) struct Ledgers {
    kv: kv::Store,
}

impl Ledgers {
    /// Makes (or binds to) the bucket.
    pub(crate) async fn open(
        js: &jetstream::Context,
        replicas: usize,
    ) -> Result<Ledgers, EngineError> {
        let kv = js
            .create_key_value(kv::Config {
                bucket: LEDGER_BUCKET.to_string(),
                history: 1,
                num_replicas: replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await?;
        Ok(Ledgers { kv })
    }

    /// `topic`'s ledger, mended against the stream's oldest offset
    /// `oldest`: a topic without one starts with one segment there.
    pub(crate) async fn get(&self, topic: &str, oldest: u64) -> Result<Ledger, EngineError> {
        let mut ledger = match self.kv.entry(key(topic)).await? {
            Some(e) if e.operation == kv::Operation::Put => Ledger {
                segments: serde_json::from_slice::<Stored>(&e.value)?.segments,
                revision: e.revision,
            },
            _ => Ledger {
                segments: Vec::new(),
                revision: 0,
            },
        };
        // Segments wholly below the oldest offset were purged.
        while ledger.segments.len() > 1 && ledger.segments[1].base <= oldest {
            ledger.segments.remove(0);
        }
        match ledger.segments.first_mut() {
            Some(first) => first.base = first.base.max(oldest),
            None => ledger.segments.push(Segment {
                base: oldest,
                created_ms: now_ms(),
            }),
        }
        Ok(ledger)
    }

    /// Stores `ledger` if nobody changed it since it was read; `false` if
    /// someone did (this tick's decision is then dropped).
    pub(crate) async fn put(&self, topic: &str, ledger: &Ledger) -> Result<bool, EngineError> {
        let value = Bytes::from(serde_json::to_vec(&Stored {
            segments: ledger.segments.clone(),
        })?);
        let done = if ledger.revision == 0 {
            self.kv
                .create(key(topic), value)
                .await
                .map(drop)
                .map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        EngineError::from(e),
                    )
                })
        } else {
            self.kv
                .update(key(topic), value, ledger.revision)
                .await
                .map(drop)
                .map_err(|e| (super::cursors::is_wrong_revision(&e), EngineError::from(e)))
        };
        match done {
            Ok(()) => Ok(true),
            Err((true, _)) => Ok(false),
            Err((false, e)) => Err(e),
        }
    }

    /// Deletes `topic`'s ledger.
    pub(crate) async fn delete(&self, topic: &str) -> Result<(), EngineError> {
        self.kv.purge(key(topic)).await?;
        Ok(())
    }
}

/// Whether an active segment `age` old holding `bytes` may roll, as on the
/// embedded engine.
pub(crate) fn may_roll(age: Duration, bytes: u64, min_age: Duration, min_bytes: u64) -> bool {
    let floor = crate::config::MIN_ROLL_AGE_FLOOR;
    age >= min_age.max(floor) || (bytes >= min_bytes && age >= floor)
}
