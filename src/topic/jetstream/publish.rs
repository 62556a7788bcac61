//! Publishing to a topic's stream: 201 only after the PubAck.
//!
//! The PubAck comes from the stream leader after a quorum of replicas
//! stored the message. Every publish carries a `Nats-Msg-Id`, on its first
//! message: the client's `Idempotency-Key` behind [`IDEMPOTENT_ID_PREFIX`],
//! or a fresh UUID per request. The stream remembers the ids of its
//! duplicate window (the topic's `dedup_window`), so a retry that reaches
//! the stream after an earlier try landed is stored once. A try fails over
//! on a timeout, on no responders (no leader: an election), on a connection
//! error and on a 503 answer; it is retried with the same id, after a short
//! pause that doubles up to [`MAX_RETRY_PAUSE`], until `publish_timeout`.
//! Then the publish fails with [`TopicError::EngineUnavailable`]: the
//! message may still land, which is why the answer says
//! `"stored":"unknown"`.
//!
//! **Duplicates.** The stream answers a single message whose id it knows
//! with a PubAck marked `duplicate` that names the stored message's
//! sequence; it refuses an atomic batch whose first message's id it knows
//! (error 10201, "batch contains duplicate message id") without naming
//! one. Either is [`Acked::Duplicate`]; the topic finds the original and
//! decides what it means (`topic.rs`).
//!
//! **Batches** use atomic batch publish: every message carries
//! `Nats-Batch-Id` (fresh per try) and `Nats-Batch-Sequence` (1..n), the
//! last one `Nats-Batch-Commit: 1`; all but the last go out without a reply
//! and the commit's PubAck says the batch was stored whole. The server
//! stores all of it or nothing; a try that fails is abandoned by the
//! server (it drops a batch that never commits), and the retry sends it
//! whole again with the same first id. Only the first message carries an
//! id: the batch is stored whole or not at all, so one id dedups it.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::client::{Request, RequestErrorKind};
use bytes::Bytes;
use serde::Deserialize;
use tokio::time::Instant;

use super::headers::wire_len;
use super::{EngineError, HEADER_ROOM, MAX_BATCH};
use crate::topic::TopicError;

/// First pause between two tries (50 ms); doubles up to [`MAX_RETRY_PAUSE`].
pub const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between two tries (1 s).
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Prefix of the `Nats-Msg-Id` of a publish with an `Idempotency-Key`
/// (`i/<key>`): fresh ids are bare UUIDs, so a client's key never meets one.
pub const IDEMPOTENT_ID_PREFIX: &str = "i/";
/// JetStream's error code for an atomic batch whose message id the stream
/// already holds.
const BATCH_DUPLICATE_ID: u32 = 10201;
/// JetStream's error code for a message whose id is in a publish being
/// replicated ("duplicate message id is in process").
const DUPLICATE_IN_PROCESS: u32 = 10158;

/// One message as sent: netlog's NATS headers (a v1 record's sections,
/// `headers.rs`; empty for v0) and the payload.
pub(crate) struct Outgoing {
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Bytes,
}

/// What the stream said to a publish.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Acked {
    /// Stored now: the stream sequence of its first message.
    Stored(u64),
    /// The id of its first message was in the duplicate window: the
    /// sequence the stream stored it at, when the stream named it (a single
    /// message) and `None` when it did not (a batch).
    Duplicate(Option<u64>),
}

/// A PubAck as the server sends it.
#[derive(Deserialize)]
struct PubAck {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    code: u16,
    #[serde(default)]
    err_code: u32,
    #[serde(default)]
    description: String,
}

/// What one try did.
enum Try {
    /// Stored: the stream sequence of the last message.
    Stored(u64),
    /// The first message's id is in the duplicate window.
    Duplicate(Option<u64>),
    /// Worth another try (election, timeout, connection).
    Again(String),
    /// Nothing listens on the subject: an election, or a stream that
    /// another front end deleted.
    NoResponders,
}

/// Where and how a topic publishes.
pub(crate) struct Publisher<'a> {
    pub(crate) client: &'a async_nats::Client,
    pub(crate) subject: &'a str,
    pub(crate) request_timeout: Duration,
    pub(crate) publish_timeout: Duration,
    /// The servers' `max_payload`.
    pub(crate) max_payload: usize,
    /// The engine and topic, to ask whether the stream still exists.
    pub(crate) engine: &'a super::JsEngine,
    pub(crate) topic: &'a str,
}

impl Publisher<'_> {
    /// Checks sizes and count before anything is sent: a message over
    /// `max_payload` would make the server close the connection for every
    /// request on it.
    pub(crate) fn check(&self, messages: &[Outgoing]) -> Result<(), TopicError> {
        if messages.len() > MAX_BATCH {
            return Err(TopicError::TooLarge {
                limit: MAX_BATCH as u64,
                what: "messages in one batch on the JetStream engine",
            });
        }
        let room = self.max_payload.saturating_sub(HEADER_ROOM);
        if messages
            .iter()
            .any(|m| m.payload.len() + wire_len(&m.headers) > room)
        {
            return Err(TopicError::TooLarge {
                limit: room as u64,
                what: "bytes per message, v1 headers included, on the JetStream engine (the \
                       servers' max_payload)",
            });
        }
        Ok(())
    }

    /// Publishes `messages` (one, or an atomic batch), the first with
    /// `Nats-Msg-Id: id` (see [`first_id`]); what the PubAck said once it
    /// came.
    pub(crate) async fn publish(
        &self,
        messages: &[Outgoing],
        id: &str,
    ) -> Result<Acked, TopicError> {
        self.check(messages)?;
        let key = id;
        let deadline = Instant::now() + self.publish_timeout;
        let mut pause = FIRST_RETRY_PAUSE;
        let n = messages.len() as u64;
        loop {
            let why = match self.try_once(key, messages).await? {
                Try::Stored(last) => return Ok(Acked::Stored(last + 1 - n)),
                Try::Duplicate(seq) => return Ok(Acked::Duplicate(seq)),
                Try::Again(why) => why,
                // Deleted elsewhere: answered as any publish to a topic that
                // does not exist, at once (not after publish_timeout).
                Try::NoResponders => match self.engine.settings_of(self.topic).await {
                    Ok(None) => return Err(TopicError::Deleted),
                    _ => "no responders: the stream has no leader".to_string(),
                },
            };
            let now = Instant::now();
            if now + pause >= deadline {
                tracing::warn!(subject = self.subject, reason = %why, "publish not acknowledged within publish_timeout: answered 503, stored unknown");
                return Err(TopicError::EngineUnavailable {
                    reason: why,
                    publish: true,
                });
            }
            tracing::debug!(subject = self.subject, reason = %why, "publish retried");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
    }

    /// One try: the messages sent, the ack awaited.
    async fn try_once(&self, key: &str, messages: &[Outgoing]) -> Result<Try, TopicError> {
        let batch = (messages.len() > 1).then(|| uuid::Uuid::new_v4().simple().to_string());
        let last = messages.len() - 1;
        for (i, m) in messages.iter().enumerate() {
            let (mut h, payload) = (m.headers.clone(), &m.payload);
            if i == 0 {
                h.insert("Nats-Msg-Id", key);
            }
            if let Some(b) = &batch {
                h.insert("Nats-Batch-Id", b.as_str());
                h.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
                if i == last {
                    h.insert("Nats-Batch-Commit", "1");
                }
            }
            if i < last {
                if let Err(e) = self
                    .client
                    .publish_with_headers(self.subject.to_string(), h, payload.clone())
                    .await
                {
                    return Ok(Try::Again(format!("sending a batch message: {e}")));
                }
                continue;
            }
            let request = Request::new()
                .headers(h)
                .payload(payload.clone())
                .timeout(Some(self.request_timeout));
            let answer = self
                .client
                .send_request(self.subject.to_string(), request)
                .await;
            return match answer {
                Ok(m) => ack(&m.payload, messages.len()),
                Err(e) => match e.kind() {
                    RequestErrorKind::TimedOut => Ok(Try::Again("no PubAck in time".into())),
                    RequestErrorKind::NoResponders => Ok(Try::NoResponders),
                    _ => Ok(Try::Again(format!("publish request: {e}"))),
                },
            };
        }
        Ok(Try::Again("empty publish".into()))
    }
}

/// The `Nats-Msg-Id` of a publish's first message: the idempotency key
/// behind its prefix, or a fresh UUID.
pub(crate) fn first_id(idempotency_key: Option<&[u8]>) -> String {
    match idempotency_key {
        // An Idempotency-Key is visible ASCII (checked by the HTTP layer);
        // anything else would not be a header value.
        Some(k) => format!("{IDEMPOTENT_ID_PREFIX}{}", String::from_utf8_lossy(k)),
        None => uuid::Uuid::new_v4().simple().to_string(),
    }
}

/// Reads a PubAck for `n` messages.
fn ack(payload: &[u8], n: usize) -> Result<Try, TopicError> {
    let ack: PubAck = serde_json::from_slice(payload).map_err(|e| TopicError::Engine {
        what: "reading a PubAck",
        source: EngineError::from(e),
    })?;
    if let Some(e) = ack.error {
        // 503: no quorum, or the stream is moving; retry.
        if e.code == 503 {
            return Ok(Try::Again(format!("{} ({})", e.description, e.err_code)));
        }
        if e.code == 404 {
            return Err(TopicError::Deleted);
        }
        // The id is in a proposal not yet committed (a concurrent publish
        // with the same key, or an earlier try of this one): once it is,
        // the stream answers it as a duplicate.
        if e.err_code == DUPLICATE_IN_PROCESS {
            return Ok(Try::Again(format!("{} ({})", e.description, e.err_code)));
        }
        if n > 1 && e.err_code == BATCH_DUPLICATE_ID {
            return Ok(Try::Duplicate(None));
        }
        return Err(TopicError::Engine {
            what: "publishing",
            source: format!("{} ({} {})", e.description, e.code, e.err_code).into(),
        });
    }
    if ack.duplicate {
        // Only a single message is acknowledged as a duplicate.
        return Ok(Try::Duplicate(Some(ack.seq).filter(|&s| s > 0)));
    }
    if n > 1 && ack.count != Some(n as u64) {
        return Err(TopicError::Engine {
            what: "publishing a batch",
            source: format!(
                "the server acknowledged {:?} messages of a batch of {n}",
                ack.count
            )
            .into(),
        });
    }
    if ack.seq < n as u64 {
        return Err(TopicError::Engine {
            what: "publishing",
            source: format!("a PubAck with sequence {}", ack.seq).into(),
        });
    }
    Ok(Try::Stored(ack.seq))
}
