//! Scanner cursors in JetStream KV: the position of every scanner of every
//! topic, shared by all front ends.
//!
//! Two buckets, each with one value per key and `replicas` replicas:
//! `nl_scanners` for persistent scanners (kept until deleted) and
//! `nl_scanners_idle` for the others (`max_age` = `scanner_idle_ttl`, so a
//! scanner nobody moves expires on the server, whichever front end made
//! it). The key is `<topic>.<uuid>` with the topic's `.` written `=`; the
//! value is `{"next":N,"from":F,"persistent":b}`.
//!
//! A cursor moves only by [`Cursors::advance`], a compare-and-set on the
//! revision the mover read: of two front ends that read the same position,
//! one moves it and the other reads again, so one offset is never handed
//! out twice.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::EngineError;

/// Bucket of persistent scanners' cursors.
pub const PERSISTENT_BUCKET: &str = "nl_scanners";
/// Bucket of the other scanners' cursors (expiring).
pub const IDLE_BUCKET: &str = "nl_scanners_idle";

/// A cursor's value.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Cursor {
    pub(crate) next: u64,
    pub(crate) from: u64,
    pub(crate) persistent: bool,
}

/// A cursor as read, with the revision a compare-and-set needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen {
    pub(crate) cursor: Cursor,
    pub(crate) revision: u64,
}

/// What a compare-and-set did.
pub(crate) enum Moved {
    /// The cursor moved.
    Yes,
    /// Someone else moved it first: read again.
    Raced,
}

/// The two buckets. See the module docs.
pub(crate) struct Cursors {
    persistent: kv::Store,
    idle: kv::Store,
}

/// Whether a compare-and-set failed because the revision moved: the
/// client's own kind, or the server's code for it (2.15 answers 10164,
/// which async-nats 0.52 does not map).
pub(crate) fn is_wrong_revision(e: &kv::UpdateError) -> bool {
    use jetstream::ErrorCode;
    if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
        return true;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(j) = c.downcast_ref::<jetstream::Error>() {
            return matches!(
                j.error_code(),
                ErrorCode::STREAM_WRONG_LAST_SEQUENCE
                    | ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
            );
        }
        cause = c.source();
    }
    false
}

/// The key of a scanner.
fn key(topic: &str, id: &Uuid) -> String {
    format!("{}.{id}", topic.replace('.', "="))
}

impl Cursors {
    /// Makes (or binds to) both buckets.
    pub(crate) async fn open(
        js: &jetstream::Context,
        replicas: usize,
        idle_ttl: Duration,
    ) -> Result<Cursors, EngineError> {
        let bucket = |name: &str, max_age| kv::Config {
            bucket: name.to_string(),
            history: 1,
            num_replicas: replicas,
            max_age,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let persistent = js
            .create_key_value(bucket(PERSISTENT_BUCKET, Duration::ZERO))
            .await?;
        let idle = js.create_key_value(bucket(IDLE_BUCKET, idle_ttl)).await?;
        Ok(Cursors { persistent, idle })
    }

    fn bucket(&self, persistent: bool) -> &kv::Store {
        if persistent {
            &self.persistent
        } else {
            &self.idle
        }
    }

    /// Stores a new scanner's cursor.
    pub(crate) async fn create(
        &self,
        topic: &str,
        id: &Uuid,
        cursor: Cursor,
    ) -> Result<(), EngineError> {
        let value = Bytes::from(serde_json::to_vec(&cursor)?);
        self.bucket(cursor.persistent)
            .create(key(topic, id), value)
            .await?;
        Ok(())
    }

    /// A scanner's cursor, looked up in the bucket `persistent` names, or in
    /// both when unknown; `None` if it does not exist.
    pub(crate) async fn get(
        &self,
        topic: &str,
        id: &Uuid,
        persistent: Option<bool>,
    ) -> Result<Option<Seen>, EngineError> {
        let k = key(topic, id);
        let order: &[bool] = match persistent {
            Some(p) => {
                if p {
                    &[true]
                } else {
                    &[false]
                }
            }
            None => &[false, true],
        };
        for &p in order {
            if let Some(e) = self.bucket(p).entry(k.clone()).await?
                && e.operation == kv::Operation::Put
            {
                let cursor: Cursor = serde_json::from_slice(&e.value)?;
                return Ok(Some(Seen {
                    cursor,
                    revision: e.revision,
                }));
            }
        }
        Ok(None)
    }

    /// Moves a cursor read as `seen` to `next`, if nobody moved it since.
    pub(crate) async fn advance(
        &self,
        topic: &str,
        id: &Uuid,
        seen: Seen,
        next: u64,
    ) -> Result<Moved, EngineError> {
        let cursor = Cursor {
            next,
            ..seen.cursor
        };
        let value = Bytes::from(serde_json::to_vec(&cursor)?);
        match self
            .bucket(cursor.persistent)
            .update(key(topic, id), value, seen.revision)
            .await
        {
            Ok(_) => Ok(Moved::Yes),
            Err(e) if is_wrong_revision(&e) => Ok(Moved::Raced),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a scanner's cursor; `false` if it did not exist.
    pub(crate) async fn delete(&self, topic: &str, id: &Uuid) -> Result<bool, EngineError> {
        let Some(seen) = self.get(topic, id, None).await? else {
            return Ok(false);
        };
        self.bucket(seen.cursor.persistent)
            .purge(key(topic, id))
            .await?;
        Ok(true)
    }

    /// Every scanner of `topic`, with its cursor, at most `max` of them
    /// (sorted by id), and how many there are. The keys come from one
    /// stream-info request per bucket (subjects with messages), not from a
    /// consumer; each is then read, so deleted ones are not counted.
    pub(crate) async fn list(
        &self,
        topic: &str,
        max: usize,
    ) -> Result<(Vec<(Uuid, Cursor)>, usize), EngineError> {
        let mut ids = Vec::new();
        for (p, name) in [(true, PERSISTENT_BUCKET), (false, IDLE_BUCKET)] {
            let prefix = format!("$KV.{name}.{}.", topic.replace('.', "="));
            let mut subjects = self
                .bucket(p)
                .stream
                .info_with_subjects(format!("{prefix}*"))
                .await?;
            while let Some(s) = subjects.next().await {
                let (subject, _) = s?;
                if let Some(id) = subject
                    .strip_prefix(&prefix)
                    .and_then(|s| Uuid::parse_str(s).ok())
                {
                    ids.push((id, p));
                }
            }
        }
        ids.sort();
        let mut out = Vec::new();
        let mut count = 0;
        for (id, p) in ids {
            if let Some(seen) = self.get(topic, &id, Some(p)).await? {
                count += 1;
                if out.len() < max {
                    out.push((id, seen.cursor));
                }
            }
        }
        Ok((out, count))
    }

    /// Deletes every cursor of `topic`.
    pub(crate) async fn delete_topic(&self, topic: &str) -> Result<(), EngineError> {
        let (all, _) = self.list(topic, usize::MAX).await?;
        for (id, c) in all {
            self.bucket(c.persistent).purge(key(topic, &id)).await?;
        }
        Ok(())
    }
}
