//! One topic on the JetStream engine: the facade's operations over its
//! stream, its cursors and its wake-up subject.
//!
//! **Reads** are direct gets, answered by any replica; a miss is asked
//! again of the stream leader (the message-get API) before it is a 404, so
//! a message acknowledged to another front end is readable here at once.
//! A scan reads up to its limits with at most [`READS_IN_FLIGHT`] direct
//! gets in flight, from the cursor's position, and stops at the first
//! sequence not stored.
//!
//! **Waits** (long polls, streams) watch a counter that a task bumps for
//! every header the leader republishes on `nl.w.<topic>` after a commit,
//! and read again at least every [`SAFETY_REREAD`], so a lost wake-up
//! costs a second, never the message.
//!
//! **Cursor failures.** A cursor bucket that does not answer (an election)
//! makes a scan `503 engine unavailable`. The compare-and-set of such a
//! scan may still have landed: its messages are then skipped for that
//! scanner, never handed out twice.
//!
//! **Validation** runs here, before the publish, on the blocking pool (a
//! wasm call), with the topic's `on_error` policy, once per request. A v1
//! message is validated by its value, as on the embedded engine.
//!
//! **v1 messages** are sent with their record's sections as NATS headers
//! (`headers.rs`) and read back as the same record, so every read route
//! answers what the embedded engine answers. The first v1 message records
//! `"message_format":"v1"` in the stream's settings (a `v0` topic refuses
//! it), and topic info reads it from there, whichever front end wrote it.
//!
//! **Idempotency keys** are the stream's duplicate window: the first
//! message of an idempotent request carries `Nats-Msg-Id: i/<key>` and the
//! idempotency section with the request's fingerprint. A retry the stream
//! finds a duplicate is answered from the original's first message, read
//! back: the same fingerprint replays its offsets and count, another one is
//! a conflict naming its first offset. The stream names the original of a
//! single message; for a batch it does not, and the original is searched
//! for from the end of the stream backwards, through at most
//! [`MAX_DUPLICATE_SEARCH`] messages and none older than the window.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_nats::jetstream::stream;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::cursors::{Cursor, Moved};
use super::headers::{self, HeaderError};
use super::publish::{Acked, Outgoing, Publisher, first_id};
use super::{
    EngineError, JsEngine, MAX_SCAN_MESSAGES, READS_IN_FLIGHT, SAFETY_REREAD, engine_error,
    stream_name, subject, wake_subject,
};
use crate::config::{MessageFormat, OnError, Settings};
use crate::duration::OffsetSpec;
use crate::lock::Recover;
use crate::log::CheckError;
use crate::message::{self, Message};
use crate::plugin::Verdict;
use crate::record::Record;
use crate::topic::{
    Batch, Hooks, Keyed, PluginStats, ReadLimits, ScannerEntry, ScannerInfo, TopicError,
    TopicGauges, TopicInfo, TopicStats,
};

/// Most messages read back, from the end of the stream, to find the
/// original of a duplicate batch (10,000); past it the publish is answered
/// `503 engine unavailable`. A retry usually follows its original closely,
/// so the search usually ends in the first reads.
pub const MAX_DUPLICATE_SEARCH: u64 = 10_000;

/// A topic on the JetStream engine. See the module docs.
pub(crate) struct JsTopic {
    name: String,
    subject: String,
    engine: Arc<JsEngine>,
    stream: stream::Stream<()>,
    settings: ArcSwap<Settings>,
    hooks: ArcSwap<Hooks>,
    stats: TopicStats,
    messages_out: AtomicU64,
    /// The offset after the last message this process saw stored.
    next: AtomicU64,
    /// Bumped on every republished header (see the module docs).
    wake: watch::Sender<u64>,
    gone: watch::Sender<bool>,
    /// Scanners this process has handed out, by id: a cache of the
    /// cursors' ids and kinds, never of their positions.
    known: Mutex<HashMap<Uuid, Arc<ScannerEntry>>>,
    waker: tokio::task::JoinHandle<()>,
}

impl Drop for JsTopic {
    fn drop(&mut self) {
        self.waker.abort();
    }
}

impl JsTopic {
    /// Binds to the topic's stream and subscribes to its wake-up subject.
    pub(crate) async fn open(
        engine: Arc<JsEngine>,
        name: &str,
        settings: Settings,
        hooks: Hooks,
    ) -> Result<Arc<JsTopic>, EngineError> {
        let stream = engine.js.get_stream_no_info(stream_name(name)).await?;
        let mut wakes = engine.client.subscribe(wake_subject(name)).await?;
        let wake = watch::Sender::new(0u64);
        let waker = tokio::spawn({
            let wake = wake.clone();
            async move {
                while wakes.next().await.is_some() {
                    wake.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        });
        let info = match stream.get_info().await {
            Ok(info) => info,
            Err(e) => {
                // The subscription goes with its task: a failed open (the
                // stream deleted meanwhile, a server down) leaves neither.
                waker.abort();
                return Err(e.into());
            }
        };
        Ok(Arc::new(JsTopic {
            name: name.to_string(),
            subject: subject(name),
            engine,
            stream,
            settings: ArcSwap::from_pointee(settings),
            hooks: ArcSwap::from_pointee(hooks),
            stats: TopicStats::default(),
            messages_out: AtomicU64::new(0),
            next: AtomicU64::new(info.state.last_sequence),
            wake,
            gone: watch::Sender::new(false),
            known: Mutex::new(HashMap::new()),
            waker,
        }))
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The topic's stream.
    pub(crate) fn stream(&self) -> &stream::Stream<()> {
        &self.stream
    }

    /// The engine's connection.
    pub(crate) fn client(&self) -> &async_nats::Client {
        &self.engine.client
    }

    /// None: the topic lives in the cluster.
    pub(crate) fn dir(&self) -> &Path {
        Path::new("")
    }

    pub(crate) fn settings(&self) -> Settings {
        Settings::clone(&self.settings.load())
    }

    pub(crate) fn hooks(&self) -> Arc<Hooks> {
        self.hooks.load_full()
    }

    pub(crate) fn replace_hooks(&self, settings: Settings, hooks: Hooks) {
        self.hooks.store(Arc::new(hooks));
        self.settings.store(Arc::new(settings));
    }

    /// Stores the settings in the stream's config. Blocking.
    pub(crate) fn store_settings(&self, settings: &Settings) -> Result<(), TopicError> {
        super::block(self.engine.update(&self.name, settings))
            .unwrap_or_else(|| Err("no multi-threaded runtime to update the stream on".into()))
            .map_err(engine_error("storing settings"))
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    pub(crate) fn messages_out(&self) -> u64 {
        self.messages_out.load(Ordering::Relaxed)
    }

    fn count_out(&self, n: usize) {
        self.messages_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn saw_stored(&self, next: u64) {
        self.next.fetch_max(next, Ordering::Relaxed);
    }

    /// Deleted: here, or found deleted by another front end.
    pub(crate) fn is_gone(&self) -> bool {
        *self.gone.borrow()
    }

    /// Validates and publishes `batch`; its first offset once the PubAck
    /// says it is stored (see `publish.rs`). A duplicate here is an earlier
    /// try of this very publish that landed: its offset is the answer.
    pub(crate) async fn publish(&self, batch: Batch) -> Result<u64, TopicError> {
        let sent = self.send(batch).await?;
        match sent.acked {
            Acked::Stored(first_seq) => Ok(first_seq - 1),
            Acked::Duplicate(seq) => Ok(self.original(seq, &sent.id).await? - 1),
        }
    }

    /// Publishes `batch`, whose first message carries the request's
    /// idempotency section, at most once per key within the stream's
    /// duplicate window (see the module docs).
    pub(crate) async fn publish_keyed(&self, batch: Batch) -> Result<Keyed, TopicError> {
        let sent = self.send(batch).await?;
        let Some(mine) = sent.idempotency else {
            return Err(TopicError::Engine {
                what: "publishing with an idempotency key",
                source: "the request's first message has no idempotency section".into(),
            });
        };
        let seq = match sent.acked {
            Acked::Stored(first_seq) => return Ok(Keyed::Stored(first_seq - 1)),
            Acked::Duplicate(seq) => self.original(seq, &sent.id).await?,
        };
        let first = seq - 1;
        let stored = self.get(seq).await?.ok_or(TopicError::EngineUnavailable {
            reason: format!("the original of a duplicate, sequence {seq}, is not readable"),
            publish: true,
        })?;
        let theirs = headers::record_of(&stored.headers, Bytes::new())
            .map_err(|e| read_error(first, e))?
            .and_then(|r| r.idempotency);
        Ok(match theirs {
            Some(t) if t.fingerprint == mine.fingerprint => Keyed::Replayed {
                first,
                count: t.request_count,
            },
            _ => Keyed::Conflict { first },
        })
    }

    /// The sequence of the stored original of a publish whose first
    /// message's id is `id`: `seq` when the stream named it, else searched
    /// for (see the module docs).
    async fn original(&self, seq: Option<u64>, id: &str) -> Result<u64, TopicError> {
        if let Some(seq) = seq {
            return Ok(seq);
        }
        let window = self.settings().dedup_window;
        let oldest = SystemTime::now()
            .checked_sub(window + SAFETY_REREAD)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let (first, last) = self.bounds().await?;
        let stop = first
            .max(last.saturating_sub(MAX_DUPLICATE_SEARCH - 1))
            .max(1);
        let mut end = last;
        'search: while end >= stop {
            let from = end.saturating_sub(READS_IN_FLIGHT as u64 - 1).max(stop);
            let gets = (from..=end).rev().map(|seq| self.stream.direct_get(seq));
            for (seq, got) in (from..=end)
                .rev()
                .zip(futures_util::future::join_all(gets).await)
            {
                let Ok(m) = got else { continue };
                if m.headers.get("Nats-Msg-Id").map(|v| v.as_str()) == Some(id) {
                    return Ok(seq);
                }
                if SystemTime::from(m.time) < oldest {
                    break 'search;
                }
            }
            if from == stop {
                break;
            }
            end = from - 1;
        }
        Err(TopicError::EngineUnavailable {
            reason: format!(
                "the stream holds a publish with id {id} but it is not among the last \
                 {MAX_DUPLICATE_SEARCH} messages of the window"
            ),
            publish: true,
        })
    }

    /// Validates and sends `batch`: what the stream said, under which id.
    async fn send(&self, batch: Batch) -> Result<Sent, TopicError> {
        let hooks = self.hooks.load_full();
        if let Some((plugin, reason)) = &hooks.unavailable {
            return Err(TopicError::PluginUnavailable {
                plugin: plugin.clone(),
                reason: reason.clone(),
            });
        }
        if self.is_gone() {
            return Err(TopicError::Deleted);
        }
        let (started, route) = (std::time::Instant::now(), batch.route());
        let bytes = batch.payload_bytes();
        let (messages, idempotency) = outgoing(batch)?;
        let publisher = self.publisher();
        publisher.check(&messages)?;
        validate(&hooks, &messages).await?;
        let key = idempotency.as_ref().map(|i| &i.key[..]);
        let id = first_id(key);
        let acked = match publisher.publish(&messages, &id).await {
            Err(TopicError::Deleted) => {
                self.mark_deleted();
                return Err(TopicError::Deleted);
            }
            r => r?,
        };
        if let Acked::Stored(first_seq) = acked {
            let count = messages.len() as u64;
            self.saw_stored(first_seq - 1 + count);
            self.stats.published(route, count, bytes, started.elapsed());
        }
        Ok(Sent {
            acked,
            id,
            idempotency,
        })
    }

    /// Lets v1 messages into the topic: refuses a `v0` topic, and before
    /// the first one records `"message_format":"v1"` in the stream's
    /// settings (one stream update; then an atomic load).
    pub(crate) async fn allow_v1(&self) -> Result<(), TopicError> {
        let mut settings = self.settings();
        match settings.message_format {
            Some(MessageFormat::V1) => return Ok(()),
            Some(MessageFormat::V0) => return Err(TopicError::V0Only),
            None => {}
        }
        settings.message_format = Some(MessageFormat::V1);
        self.engine
            .update(&self.name, &settings)
            .await
            .map_err(engine_error("recording message_format v1"))?;
        self.settings.rcu(|s| {
            let mut s = Settings::clone(s);
            s.message_format = Some(MessageFormat::V1);
            s
        });
        Ok(())
    }

    fn publisher(&self) -> Publisher<'_> {
        Publisher {
            client: &self.engine.client,
            subject: &self.subject,
            request_timeout: self.engine.cfg.request_timeout,
            publish_timeout: self.engine.cfg.publish_timeout,
            max_payload: self.engine.max_payload,
            engine: &self.engine,
            topic: &self.name,
        }
    }

    /// Whether another front end recorded `"message_format":"v1"` in the
    /// stream's settings (this one's are from when it opened the topic).
    async fn v1_recorded_elsewhere(&self) -> bool {
        let Ok(info) = self.stream.get_info().await else {
            return false;
        };
        let recorded = info
            .config
            .metadata
            .get(super::SETTINGS_KEY)
            .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
            .is_some_and(|v| v["message_format"] == "v1");
        if recorded {
            self.settings.rcu(|s| {
                let mut s = Settings::clone(s);
                s.message_format.get_or_insert(MessageFormat::V1);
                s
            });
        }
        recorded
    }

    /// The stream's first and last sequence, from its leader.
    async fn bounds(&self) -> Result<(u64, u64), TopicError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| self.failed("reading the stream's state", &e))?;
        let last = info.state.last_sequence;
        self.saw_stored(last);
        Ok((info.state.first_sequence.max(1), last))
    }

    pub(crate) async fn resolve(&self, spec: OffsetSpec) -> Result<u64, TopicError> {
        let (first, last) = self.bounds().await?;
        let oldest = first - 1;
        Ok(match spec {
            OffsetSpec::Oldest => oldest,
            OffsetSpec::Latest => last.saturating_sub(1).max(oldest),
            OffsetSpec::End => last,
            OffsetSpec::At(n) => n,
            OffsetSpec::Ago(d) => {
                let at = SystemTime::now()
                    .checked_sub(d)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                self.offset_at(first, last, at).await?
            }
        })
    }

    /// The first offset stored at or after `at` (binary search over the
    /// stored times; the end of the topic if none).
    async fn offset_at(&self, first: u64, last: u64, at: SystemTime) -> Result<u64, TopicError> {
        let (mut lo, mut hi) = (first, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let before = match self.get(mid).await? {
                Some(m) => SystemTime::from(m.time) < at,
                None => true,
            };
            if before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo - 1)
    }

    /// The stored message at `seq`, from any replica, then from the leader
    /// before `None`.
    async fn get(
        &self,
        seq: u64,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, TopicError> {
        use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind};
        match self.stream.direct_get(seq).await {
            Ok(m) => return Ok(Some(m)),
            // No server answering a direct get may mean the stream is gone
            // (deleted through any front end: nothing serves its direct
            // gets any more) as well as every replica down: the leader's
            // answer tells which, "stream not found" making it `Deleted`
            // (a 404). No responders is answered at once: no added wait.
            Err(e) if e.kind() == DirectGetErrorKind::NotFound || no_responders(&e) => {}
            Err(e) => return Err(unavailable("a direct get", e.to_string())),
        }
        match self.stream.get_raw_message(seq).await {
            Ok(m) => Ok(Some(m)),
            Err(e) => match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => Ok(None),
                // This kind holds JetStream's error itself, not as a source
                // that `stream_gone` would find.
                LastRawMessageErrorKind::JetStream(j)
                    if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    self.mark_deleted();
                    Err(TopicError::Deleted)
                }
                _ => Err(self.failed("a message get on the leader", &e)),
            },
        }
    }

    pub(crate) async fn read(&self, offset: u64) -> Result<Option<Message>, TopicError> {
        let Some(seq) = offset.checked_add(1) else {
            return Ok(None);
        };
        let m = match self.get(seq).await? {
            Some(m) => Some(message(offset, m)?),
            None => None,
        };
        if m.is_some() {
            self.saw_stored(seq);
            self.count_out(1);
        }
        Ok(m)
    }

    /// Up to `limits` messages from `at`, stopping at the first sequence
    /// not stored (from any replica; not confirmed on the leader: a wait
    /// follows, and its re-read sees it).
    async fn read_from(&self, at: u64, limits: ReadLimits) -> Result<Vec<Message>, TopicError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        let want = limits.messages.clamp(1, MAX_SCAN_MESSAGES);
        let mut out: Vec<Message> = Vec::new();
        let mut bytes = 0usize;
        let mut offset = at;
        while out.len() < want && (out.is_empty() || bytes < limits.bytes) {
            let n = (want - out.len()).min(READS_IN_FLIGHT);
            let gets = (0..n as u64).map(|i| self.stream.direct_get(offset + i + 1));
            let got = futures_util::future::join_all(gets).await;
            let mut ended = false;
            for r in got {
                match r {
                    Ok(m) => {
                        if !out.is_empty() && bytes >= limits.bytes {
                            ended = true;
                            break;
                        }
                        bytes += m.payload.len();
                        out.push(message(offset, m)?);
                        offset += 1;
                    }
                    Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
                        ended = true;
                        break;
                    }
                    // As in `get`, which asks the leader.
                    Err(e) if out.is_empty() && no_responders(&e) => {
                        if let Some(m) = self.get(offset + 1).await? {
                            out.push(message(offset, m)?);
                            offset += 1;
                        }
                        ended = true;
                        break;
                    }
                    Err(e) if out.is_empty() => {
                        return Err(unavailable("a direct get", e.to_string()));
                    }
                    Err(_) => {
                        ended = true;
                        break;
                    }
                }
            }
            if ended {
                break;
            }
        }
        if out.is_empty() && at < self.next_offset() {
            // Nothing at a position before the end this process saw: it
            // is behind the stream's first sequence (a purge, `max_age`),
            // or this replica lags. Go on from the oldest stored; a leader
            // that does not answer leaves it to the next re-read.
            if let Ok((first, _)) = self.bounds().await
                && at + 1 < first
            {
                return Box::pin(self.read_from(first - 1, limits)).await;
            }
        } else if !out.is_empty() {
            self.saw_stored(offset);
        }
        Ok(out)
    }

    pub(crate) async fn create_scanner(
        &self,
        from: u64,
        persistent: bool,
    ) -> Result<Arc<ScannerEntry>, TopicError> {
        if self.is_gone() {
            return Err(TopicError::Deleted);
        }
        // As on the log: a scanner may start at the end, not past it.
        let (_, last) = self.bounds().await?;
        if from > last {
            return Err(TopicError::Log(crate::log::LogError::OffsetNotFound(from)));
        }
        let id = Uuid::new_v4();
        let cursor = Cursor {
            next: from,
            from,
            persistent,
        };
        self.engine
            .cursors
            .create(&self.name, &id, cursor)
            .await
            .map_err(|e| unavailable("creating a scanner", e.to_string()))?;
        let entry = Arc::new(ScannerEntry::detached(id, from, from, persistent));
        self.known.lock().recover().insert(id, entry.clone());
        tracing::info!(topic = %self.name, %id, from, persistent, "scanner created");
        Ok(entry)
    }

    /// A handle on scanner `id`; whether it exists is known when it is
    /// scanned (its cursor may be another front end's).
    pub(crate) async fn scanner(&self, id: &str) -> Result<Arc<ScannerEntry>, TopicError> {
        let id = Uuid::parse_str(id).map_err(|_| TopicError::ScannerNotFound)?;
        if let Some(e) = self.known.lock().recover().get(&id) {
            return Ok(e.clone());
        }
        let seen = self
            .engine
            .cursors
            .get(&self.name, &id, None)
            .await
            .map_err(|e| unavailable("reading a scanner", e.to_string()))?
            .ok_or(TopicError::ScannerNotFound)?;
        let c = seen.cursor;
        let entry = Arc::new(ScannerEntry::detached(id, c.from, c.next, c.persistent));
        self.known.lock().recover().insert(id, entry.clone());
        Ok(entry)
    }

    /// A handle on scanner `id` for synchronous callers: the cached one, or
    /// one looked up on a multi-threaded runtime.
    pub(crate) fn scanner_now(&self, id: &str) -> Result<Arc<ScannerEntry>, TopicError> {
        super::block(self.scanner(id)).unwrap_or(Err(TopicError::ScannerNotFound))
    }

    pub(crate) fn scanner_count(&self) -> usize {
        super::block(self.engine.cursors.list(&self.name, 0))
            .and_then(Result::ok)
            .map_or(0, |(_, n)| n)
    }

    pub(crate) fn scanners(&self) -> Vec<Arc<ScannerEntry>> {
        let mut v: Vec<_> = self.known.lock().recover().values().cloned().collect();
        v.sort_by_key(|e| e.id);
        v
    }

    pub(crate) async fn delete_scanner(&self, id: &str) -> Result<(), TopicError> {
        let id = Uuid::parse_str(id).map_err(|_| TopicError::ScannerNotFound)?;
        self.known.lock().recover().remove(&id);
        let deleted = self
            .engine
            .cursors
            .delete(&self.name, &id)
            .await
            .map_err(engine_error("deleting a scanner"))?;
        if deleted {
            Ok(())
        } else {
            Err(TopicError::ScannerNotFound)
        }
    }

    /// Up to `limits` messages from the scanner's cursor, moved by
    /// compare-and-set (see `cursors.rs`); waits up to `wait` for the first.
    pub(crate) async fn scan(
        &self,
        entry: &Arc<ScannerEntry>,
        limits: ReadLimits,
        wait: Duration,
        stop: &watch::Receiver<bool>,
    ) -> Result<Vec<Message>, TopicError> {
        let deadline = deadline_after(wait);
        let mut woken = self.wake.subscribe();
        loop {
            woken.borrow_and_update();
            let seen = self
                .engine
                .cursors
                .get(&self.name, &entry.id, Some(entry.persistent))
                .await
                .map_err(|e| unavailable("reading a scanner", e.to_string()))?
                .ok_or(TopicError::ScannerNotFound)?;
            let at = seen.cursor.next;
            let mut messages = self.read_from(at, limits).await?;
            let mut after = messages.last().map_or(at, |m| m.offset + 1);
            if let Some(bound) = limits.bound {
                after = bound.cut(&mut messages, after)?;
            }
            if after != at {
                match self
                    .engine
                    .cursors
                    .advance(&self.name, &entry.id, seen, after)
                    .await
                    .map_err(|e| unavailable("moving a scanner", e.to_string()))?
                {
                    Moved::Yes => entry.set_next(after),
                    Moved::Raced => continue,
                }
            }
            if !messages.is_empty() {
                self.count_out(messages.len());
                return Ok(messages);
            }
            if !self.wait_stored(&mut woken, deadline, stop).await? {
                return Ok(Vec::new());
            }
            if *stop.borrow() {
                return Err(TopicError::ShuttingDown);
            }
        }
    }

    pub(crate) async fn wait_readable(
        &self,
        entry: &Arc<ScannerEntry>,
        wait: Duration,
        stop: &watch::Receiver<bool>,
    ) -> Result<bool, TopicError> {
        let deadline = deadline_after(wait);
        let mut woken = self.wake.subscribe();
        let one = ReadLimits {
            messages: 1,
            bytes: 1,
            bound: None,
        };
        loop {
            woken.borrow_and_update();
            let seen = self
                .engine
                .cursors
                .get(&self.name, &entry.id, Some(entry.persistent))
                .await
                .map_err(|e| unavailable("reading a scanner", e.to_string()))?
                .ok_or(TopicError::ScannerNotFound)?;
            if !self.read_from(seen.cursor.next, one).await?.is_empty() {
                return Ok(true);
            }
            if !self.wait_stored(&mut woken, deadline, stop).await? {
                return Ok(false);
            }
        }
    }

    /// Waits for a wake-up, [`SAFETY_REREAD`], the deadline, shutdown or
    /// deletion; `Ok(false)` at the deadline.
    async fn wait_stored(
        &self,
        woken: &mut watch::Receiver<u64>,
        deadline: Instant,
        stop: &watch::Receiver<bool>,
    ) -> Result<bool, TopicError> {
        if self.is_gone() {
            return Err(TopicError::Deleted);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        let mut stop = stop.clone();
        let mut gone = self.gone.subscribe();
        let reread = (Instant::now() + SAFETY_REREAD).min(deadline);
        tokio::select! {
            _ = tokio::time::timeout_at(reread, woken.changed()) => Ok(true),
            _ = stop.wait_for(|s| *s) => Err(TopicError::ShuttingDown),
            _ = gone.wait_for(|g| *g) => Err(TopicError::Deleted),
        }
    }

    /// A failed request as an error: `Deleted` when the stream is gone
    /// (another front end deleted the topic), else the engine unavailable.
    fn failed(&self, what: &str, e: &(dyn std::error::Error + 'static)) -> TopicError {
        if stream_gone(e) {
            self.mark_deleted();
            return TopicError::Deleted;
        }
        unavailable(what, e.to_string())
    }

    pub(crate) fn subscribe(&self, from: u64) -> JsSubscription {
        JsSubscription { next: from }
    }

    /// The servers sync on their own (`sync_interval`): nothing to do.
    pub(crate) async fn sync(&self) -> Result<(), TopicError> {
        Ok(())
    }

    /// The servers check their own files: nothing to report.
    pub(crate) async fn check(&self, _from: u64) -> Result<Vec<CheckError>, TopicError> {
        Ok(Vec::new())
    }

    pub(crate) async fn info(&self, max_scanners: usize) -> Result<TopicInfo, TopicError> {
        let (first, last) = self.bounds().await?;
        let mut settings = self.settings();
        if settings.message_format.is_none() && self.v1_recorded_elsewhere().await {
            settings.message_format = Some(MessageFormat::V1);
        }
        let (listed, scanner_count) = self
            .engine
            .cursors
            .list(&self.name, max_scanners)
            .await
            .map_err(engine_error("listing scanners"))?;
        let hooks = self.hooks.load();
        let hook = |plugin: &str, on_error, stats| crate::topic::HookInfo {
            plugin: plugin.to_string(),
            on_error,
            stats,
        };
        Ok(TopicInfo {
            name: self.name.clone(),
            dir: Default::default(),
            oldest_offset: first - 1,
            latest_offset: last as i64 - 1,
            segments: Vec::new(),
            scanners: listed
                .into_iter()
                .map(|(id, c)| ScannerInfo {
                    id,
                    next: c.next,
                    from: c.from,
                    persistent: c.persistent,
                })
                .collect(),
            scanner_count,
            settings,
            validation: hooks
                .validator
                .as_ref()
                .map(|v| hook(v.plugin().name(), Some(hooks.on_error), v.stats())),
            retention: hooks
                .retention
                .as_ref()
                .map(|r| hook(r.plugin().name(), None, r.stats())),
            compression_refused_sets: 0,
        })
    }

    /// One monitor pass: with a retention plugin, its decision over the
    /// ledger's virtual segments (`ledger.rs`); without one the servers
    /// apply `max_age`. Blocking (the plugin is a wasm call).
    pub(crate) fn maintain(&self) -> Result<(), TopicError> {
        let hooks = self.hooks.load_full();
        let Some(retention) = &hooks.retention else {
            return Ok(());
        };
        let Some(seen) = super::block(self.retention_state()) else {
            return Ok(());
        };
        let (state, mut ledger, end) = seen?;
        let decision = match retention.evaluate(&state) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(topic = self.name, error = %e, "retention plugin failed: nothing deleted this tick");
                return Ok(());
            }
        };
        let settings = self.settings();
        let segments = &state.segments;
        let active = segments.last().expect("a ledger has an active segment");
        // A ledger made this tick is stored whatever the decision: its
        // active segment's age counts from now.
        let mut changed = ledger.is_new();
        if decision.roll_active && active.next_offset > active.base_offset {
            let age = Duration::from_millis(state.now_ms.saturating_sub(active.created_ms));
            if super::ledger::may_roll(
                age,
                active.bytes,
                settings.min_segment_age,
                settings.min_segment_bytes,
            ) {
                ledger.segments.push(super::ledger::Segment {
                    base: end,
                    created_ms: state.now_ms,
                });
                changed = true;
                tracing::info!(
                    topic = self.name,
                    base = active.base_offset,
                    "segment rolled: asked by retention plugin"
                );
            }
        }
        let delete = (decision.delete_oldest as usize).min(ledger.segments.len() - 1);
        if delete > 0 {
            let upto = ledger.segments[delete].base;
            // Purges every message before sequence upto + 1.
            super::block(async { self.stream.purge().sequence(upto + 1).await })
                .unwrap_or_else(|| {
                    Err(async_nats::jetstream::stream::PurgeError::new(
                        async_nats::jetstream::stream::PurgeErrorKind::Request,
                    ))
                })
                .map_err(|e| engine_error("purging")(e.into()))?;
            ledger.segments.drain(..delete);
            changed = true;
            tracing::info!(
                topic = self.name,
                upto,
                plugin = retention.plugin().name(),
                asked = decision.delete_oldest,
                "segments purged: retention plugin"
            );
        }
        if changed {
            let put = super::block(self.engine.ledgers.put(&self.name, &ledger))
                .unwrap_or(Ok(false))
                .map_err(engine_error("storing the ledger"))?;
            if !put {
                tracing::debug!(
                    topic = self.name,
                    "ledger moved by another front end: this tick's decision dropped"
                );
            }
        }
        Ok(())
    }

    /// What the retention plugin is shown, the ledger it was built from and
    /// the end offset.
    async fn retention_state(
        &self,
    ) -> Result<(crate::plugin::RetentionState, super::ledger::Ledger, u64), TopicError> {
        use crate::plugin::{RetentionState, ScannerState, SegmentState};
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| unavailable("reading the stream's state", e.to_string()))?;
        let (first, end) = (
            info.state.first_sequence.max(1) - 1,
            info.state.last_sequence,
        );
        let per_message = info
            .state
            .bytes
            .checked_div(info.state.messages)
            .unwrap_or(0);
        let ledger = self
            .engine
            .ledgers
            .get(&self.name, first)
            .await
            .map_err(|e| unavailable("reading the ledger", e.to_string()))?;
        let (scanners, _) = self
            .engine
            .cursors
            .list(&self.name, usize::MAX)
            .await
            .map_err(|e| unavailable("listing scanners", e.to_string()))?;
        let now_ms = super::ledger::now_ms();
        let segs = &ledger.segments;
        let segments = segs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let next = segs.get(i + 1).map_or(end.max(s.base), |n| n.base);
                SegmentState {
                    base_offset: s.base,
                    next_offset: next,
                    bytes: (next - s.base) * per_message,
                    created_ms: s.created_ms,
                    modified_ms: segs.get(i + 1).map_or(now_ms, |n| n.created_ms),
                }
            })
            .collect();
        let state = RetentionState {
            topic: self.name.clone(),
            segments,
            scanners: scanners
                .into_iter()
                .map(|(id, c)| ScannerState {
                    id: id.to_string(),
                    next_offset: c.next,
                    persistent: c.persistent,
                })
                .collect(),
            now_ms,
        };
        Ok((state, ledger, end))
    }

    pub(crate) fn sync_if_due(&self) -> Result<(), TopicError> {
        Ok(())
    }

    pub(crate) fn mark_deleted(&self) {
        self.gone.send_replace(true);
    }

    pub(crate) fn close(&self) -> Result<(), TopicError> {
        self.waker.abort();
        Ok(())
    }

    pub(crate) fn stats(&self) -> &TopicStats {
        &self.stats
    }

    pub(crate) fn gauges(&self) -> TopicGauges {
        TopicGauges {
            latest_offset: self.next_offset() as i64 - 1,
            segments: 0,
            disk_bytes: 0,
        }
    }

    pub(crate) fn scanner_lags(&self) -> Vec<(Uuid, u64)> {
        Vec::new()
    }

    pub(crate) fn plugin_stats(&self) -> Vec<PluginStats> {
        let hooks = self.hooks();
        let mut out = Vec::new();
        if let Some(v) = &hooks.validator {
            out.push(PluginStats {
                plugin: v.plugin().name().to_string(),
                hook: "validation",
                stats: v.stats(),
            });
        }
        out
    }
}

/// A stream's position on this engine.
pub struct JsSubscription {
    next: u64,
}

impl JsSubscription {
    /// The next messages within `limits`, waiting up to `wait`.
    pub(crate) async fn next(
        &mut self,
        topic: &JsTopic,
        limits: ReadLimits,
        wait: Duration,
        stop: &watch::Receiver<bool>,
    ) -> Result<Vec<Message>, TopicError> {
        let deadline = deadline_after(wait);
        let mut woken = topic.wake.subscribe();
        loop {
            woken.borrow_and_update();
            let messages = topic.read_from(self.next, limits).await?;
            if let Some(m) = messages.last() {
                self.next = m.offset + 1;
                topic.count_out(messages.len());
                return Ok(messages);
            }
            if !topic.wait_stored(&mut woken, deadline, stop).await? {
                return Ok(Vec::new());
            }
        }
    }
}

/// A stored message as a netlog message (see [`stored_message`]).
fn message(
    offset: u64,
    m: async_nats::jetstream::message::StreamMessage,
) -> Result<Message, TopicError> {
    stored_message(offset, &m.headers, m.payload)
}

/// A stored message's headers and payload as a netlog message: a v0 one's
/// payload is its bytes; a v1 one's record is rebuilt from its headers
/// (`headers.rs`). The CRC is computed here: the servers keep their own
/// checksums.
pub(crate) fn stored_message(
    offset: u64,
    headers: &async_nats::HeaderMap,
    payload: Bytes,
) -> Result<Message, TopicError> {
    let Some(record) =
        headers::record_of(headers, payload.clone()).map_err(|e| read_error(offset, e))?
    else {
        return Ok(Message {
            offset,
            crc: message::crc32(&payload),
            payload,
            format: message::FORMAT_VERSION,
        });
    };
    let mut bytes = Vec::with_capacity(record.encoded_len());
    record
        .encode(&mut bytes)
        .map_err(|e| read_error(offset, e.into()))?;
    Ok(Message {
        offset,
        crc: message::crc32(&bytes),
        payload: Bytes::from(bytes),
        format: message::FORMAT_RECORD,
    })
}

/// Stored headers that do not make a record, at `offset`.
fn read_error(offset: u64, e: HeaderError) -> TopicError {
    TopicError::Engine {
        what: "reading a message's v1 headers",
        source: format!("offset {offset}: {e}").into(),
    }
}

/// A publish as sent: what the stream said, the first message's id, and
/// the idempotency section of the request's first message.
struct Sent {
    acked: Acked,
    id: String,
    idempotency: Option<crate::record::Idempotency>,
}

/// The messages of a publish as sent, and the idempotency section of the
/// first (`None` without one). A v1 frame's record becomes headers, its
/// value the payload.
fn outgoing(
    batch: Batch,
) -> Result<(Vec<Outgoing>, Option<crate::record::Idempotency>), TopicError> {
    let plain = match batch {
        Batch::One(payload) => {
            let one = Outgoing {
                headers: Default::default(),
                payload,
            };
            return Ok((vec![one], None));
        }
        Batch::Framed { plain, .. } => plain,
    };
    let mut out = Vec::new();
    let mut idempotency = None;
    for frame in message::plain_frames(&plain) {
        let (header, payload) = frame.map_err(|e| TopicError::Engine {
            what: "splitting a batch",
            source: e.into(),
        })?;
        let payload = plain.slice_ref(payload);
        if header.format() != message::FORMAT_RECORD {
            out.push(Outgoing {
                headers: Default::default(),
                payload,
            });
            continue;
        }
        // Checked when the request was parsed.
        let record = Record::parse(&payload).map_err(|e| TopicError::Engine {
            what: "splitting a batch",
            source: e.into(),
        })?;
        if out.is_empty() {
            idempotency = record.idempotency.clone();
        }
        out.push(Outgoing {
            headers: headers::headers_of(&record),
            payload: record.value,
        });
    }
    Ok((out, idempotency))
}

/// Runs the topic's validator over `messages` on the blocking pool.
async fn validate(hooks: &Arc<Hooks>, messages: &[Outgoing]) -> Result<(), TopicError> {
    let Some(validator) = hooks.validator.clone() else {
        return Ok(());
    };
    let on_error = hooks.on_error;
    let owned: Vec<Bytes> = messages.iter().map(|m| m.payload.clone()).collect();
    let plugin = validator.plugin().name().to_string();
    let verdicts = crate::idle_spin::spawn_blocking(move || {
        let slices: Vec<&[u8]> = owned.iter().map(|b| &b[..]).collect();
        validator.validate(&slices)
    })
    .await?;
    match verdicts {
        Ok(v) => match v.into_iter().enumerate().find_map(|(i, v)| match v {
            Verdict::Reject(r) => Some((i, r)),
            Verdict::Accept => None,
        }) {
            Some((index, reason)) => Err(TopicError::Rejected {
                plugin,
                index,
                reason,
            }),
            None => Ok(()),
        },
        Err(e) if on_error == OnError::Accept => {
            tracing::warn!(plugin, error = %e, "validator failed; message accepted (on_error = accept)");
            Ok(())
        }
        Err(e) => Err(TopicError::PluginFailed {
            plugin,
            source: Arc::new(e),
        }),
    }
}

/// Whether `e` (or a cause of it) is JetStream saying the stream does not
/// exist. An error that holds JetStream's error in its kind instead of as
/// a cause (a message get on the leader) is read by its caller.
pub(crate) fn stream_gone(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(j) = c.downcast_ref::<async_nats::jetstream::Error>() {
            return j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND;
        }
        cause = c.source();
    }
    false
}

/// Whether no server answered a direct get.
fn no_responders(e: &async_nats::jetstream::stream::DirectGetError) -> bool {
    matches!(e.kind(), async_nats::jetstream::stream::DirectGetErrorKind::ErrorResponse(code, _)
        if code == async_nats::StatusCode::NO_RESPONDERS)
}

/// An engine that did not answer as an error.
fn unavailable(what: &str, detail: String) -> TopicError {
    TopicError::EngineUnavailable {
        reason: format!("{what}: {detail}"),
        publish: false,
    }
}

/// `wait` from now, or about a year for a wait too long to add.
fn deadline_after(wait: Duration) -> Instant {
    Instant::now()
        .checked_add(wait)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365))
}
