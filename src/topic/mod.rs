//! A topic: its log, settings, hooks, scanners and writer, behind one facade.
//!
//! [`Topic`] is the only thing the HTTP layer talks to for a topic: publish,
//! read one, scan, stream, sync, check, info, and scanner bookkeeping. The
//! log and the plugins stay behind it, so every per-topic feature lives here:
//! group commit and validation in `writer.rs`, consumer positions in
//! `scanners.rs`, rolling and deletion in `retention.rs`, errors in
//! `error.rs`.
//!
//! **The blocking rule.** Work that may wait for the disk or run long
//! (reads of files, fsyncs, wasm calls, codecs, file deletion) never runs on
//! an async worker: it goes to tokio's blocking pool through [`blocking`]
//! (or `spawn_blocking` where a value must come back), and waiting (for an
//! append, a deadline, a deletion) happens on the async side. What is
//! already in memory is served where the request is, with no thread hop:
//! a read the log's tail cache holds (a consumer near the end), and the
//! messages a scanner's parked reader holds in its chunk and index block
//! (a consumer reading older data sequentially); only the read that needs a
//! file goes to the pool. Small publishes with no plugin and no
//! `fsync = always` are written on the worker too (`writer.rs` says when).
//! Methods that are not `async` are either cheap (atomics, a brief lock) or
//! documented as blocking, for callers already on the blocking pool (the
//! broker's open, close and monitor).
//!
//! **Hooks swap whole.** A topic's hooks (validator, its `on_error`,
//! retention, or the plugin it lacks) sit behind one pointer
//! ([`arc_swap::ArcSwap`]), beside its settings. The writer's drain loads
//! it once per group and the monitor once per tick, so a publish takes no
//! lock for it; a reload ([`Topic::replace_hooks`]) stores a new [`Hooks`] and
//! settings between two groups, while calls already running finish on the
//! instances they hold. Codecs stay with the log and do not swap.
//!
//! **Deletion.** A topic has a `gone` signal. Deleting a topic raises it
//! before the files go: long polls waiting on it answer `TopicError::Deleted`
//! at once, streams end, and a publish that was on its way gets the same
//! error as any request on a topic that does not exist.

mod dedup;
mod engine;
mod error;
pub(crate) mod jetstream;
mod retention;
mod scanners;
mod stats;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

pub use dedup::{Dedup, Lookup, Ticket, fingerprint};
pub use engine::{Subscription, Topic};
pub use error::{StorageFault, TopicError};
pub use scanners::{READERS_DIR, ScannerEntry, set_scanner_idle_ttl};
pub use stats::{PluginStats, PublishRoute, TopicGauges, TopicStats};
pub use writer::{Batch, GROUP_BYTES, QUEUE_JOBS};

use crate::config::{MessageFormat, OnError, Settings};
use crate::duration::OffsetSpec;
use crate::lock::Recover;
use crate::log::{CheckError, SegmentInfo};
use crate::log::{Log, LogOptions, Reader};
use crate::message::Message;
use crate::plugin::CallStats;
use crate::plugin::{Retention, Validator};
use scanners::Scanners;
use writer::Writer;

pub(crate) use writer::ErrorChain;

/// Name of the settings file in a topic directory.
pub const SETTINGS_FILE: &str = "settings.json";

/// Rebuilds `dedup` from the idempotency sections of the messages written
/// within its window (by the index's time). Their window is counted from
/// now: a restart may lengthen a key's window, never shorten it. A read
/// error stops the replay with a warning (the keys found so far are kept).
/// Blocking.
fn rebuild_dedup(topic: &str, log: &Log, dedup: &Dedup) {
    let since = SystemTime::now()
        .checked_sub(dedup.window())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let from = log.offset_at(since).max(log.oldest_offset());
    if from >= log.next_offset() {
        return;
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut reader = match log.reader(log.existing_offset(from)) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(topic, error = %e, "idempotency keys not rebuilt");
            return;
        }
    };
    loop {
        match reader.next() {
            Ok(Some(m)) => {
                if let Ok(Some(r)) = crate::record::Record::of(&m)
                    && let Some(i) = r.idempotency
                {
                    dedup.recover(i.key, i.fingerprint, m.offset, i.request_count, now);
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(topic, error = %e, "idempotency keys rebuilt up to a read error");
                break;
            }
        }
    }
}

/// Adds `"message_format":"v1"` to the settings file at `path` as it is on
/// disk (a reload may have just rewritten it), under the settings file's
/// lock. Blocking.
fn record_v1(
    file: &std::sync::Mutex<()>,
    recorded: &AtomicBool,
    path: &Path,
) -> Result<(), TopicError> {
    let _file = file.lock().recover();
    if recorded.load(Ordering::Acquire) {
        return Ok(());
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => b"{}".to_vec(),
        Err(e) => return Err(TopicError::io(path)(e)),
    };
    let mut json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes)
        .map_err(|e| {
            TopicError::io(path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })?;
    json.insert("message_format".into(), "v1".into());
    let bytes = serde_json::to_vec_pretty(&json).expect("settings serialize");
    write_atomic(path, &bytes)?;
    recorded.store(true, Ordering::Release);
    Ok(())
}

/// Runs blocking work on the blocking pool and awaits it: the one place the
/// blocking rule (see the module docs) is applied.
pub(crate) async fn blocking<T, E, F>(work: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<tokio::task::JoinError> + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    crate::idle_spin::spawn_blocking(work).await?
}

/// The plugins assigned to a topic (its codecs live in the log's `Codecs`).
#[derive(Default)]
pub struct Hooks {
    /// Judges every publish before it is written.
    pub validator: Option<Arc<Validator>>,
    /// What a failing validator means for the publish.
    pub on_error: OnError,
    /// Decides deletions on the monitor's tick instead of `segment_age`.
    pub retention: Option<Retention>,
    /// A plugin the settings name but the broker cannot provide (not
    /// declared, or failing to load): publishes fail with its name and the
    /// reason, reads work.
    pub unavailable: Option<(String, String)>,
}

/// What a consumer reads at once: at most this many messages and, past the
/// first message, this many bytes.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// Most messages.
    pub messages: usize,
    /// Most payload bytes; the first message is returned whatever its size.
    pub bytes: usize,
    /// A hard bound on top of these, the first message included (room a
    /// scan reserved in a shared budget); `None`: none.
    pub bound: Option<ReadBound>,
}

/// A hard bound on what one scan hands out: the messages' payloads plus
/// `per_message` bytes each (the caller's framing) stay within `bytes`.
/// Messages past it are left for the next scan, so the scanner moves only
/// past what is handed out; if not even the first fits, the scan fails with
/// [`TopicError::OverBound`] and the scanner stays.
#[derive(Clone, Copy, Debug)]
pub struct ReadBound {
    /// Most bytes, framing included.
    pub bytes: usize,
    /// Framing bytes counted per message.
    pub per_message: usize,
}

impl ReadBound {
    /// What `m` takes of the bound.
    pub fn cost(&self, m: &Message) -> usize {
        m.payload.len().saturating_add(self.per_message)
    }

    /// Cuts `messages` (read from `at`, the reader stopping at `after`) to
    /// the longest prefix within the bound; returns the offset after what
    /// is kept.
    fn cut(&self, messages: &mut Vec<Message>, after: u64) -> Result<u64, TopicError> {
        let mut used = 0usize;
        let kept = messages
            .iter()
            .take_while(|m| {
                used = used.saturating_add(self.cost(m));
                used <= self.bytes
            })
            .count();
        match messages.get(kept) {
            None => Ok(after),
            Some(first) if kept == 0 => Err(TopicError::OverBound {
                needed: self.cost(first),
            }),
            Some(cut) => {
                let next = cut.offset;
                messages.truncate(kept);
                Ok(next)
            }
        }
    }
}

/// A topic on the embedded engine (the log in its directory). See the
/// module docs; [`Topic`] is the facade over it.
pub struct Embedded {
    name: String,
    dir: PathBuf,
    log: Log,
    /// Swapped with `hooks` on reload (hooks first).
    settings: ArcSwap<Settings>,
    /// Shared with the writer, which loads it once per group.
    hooks: Arc<ArcSwap<Hooks>>,
    scanners: Scanners,
    writer: Writer,
    gone: watch::Sender<bool>,
    /// `gone`'s value, for the checks on every publish and read: a load of
    /// it shares its cache line, where borrowing `gone` takes a lock that
    /// both workers write on each request.
    deleted: AtomicBool,
    /// `check` runs one at a time per topic.
    heavy: tokio::sync::Mutex<()>,
    /// Messages handed to consumers.
    messages_out: AtomicU64,
    /// Publish counters (`stats.rs`).
    stats: TopicStats,
    /// `"message_format":"v1"` is in `settings.json` (the downgrade guard,
    /// see [`Topic::allow_v1`]).
    v1_recorded: Arc<AtomicBool>,
    /// Serialises the writers of `settings.json`: the guard and a reload.
    settings_file: Arc<std::sync::Mutex<()>>,
    /// Recent idempotency keys (`dedup.rs`).
    dedup: Arc<Dedup>,
    /// The reader the last [`Embedded::read_run`] ended with: a consumer
    /// group reads its runs one after another, and the next one starts
    /// where it stopped, often inside the chunk or set it already holds.
    run_reader: Arc<std::sync::Mutex<Option<Reader>>>,
}

/// Facts about a topic for `GET /{topic}`.
pub struct TopicInfo {
    pub name: String,
    pub dir: PathBuf,
    pub oldest_offset: u64,
    pub latest_offset: i64,
    pub segments: Vec<SegmentInfo>,
    /// Up to the limit asked, sorted by id.
    pub scanners: Vec<ScannerInfo>,
    /// All scanners, listed or not.
    pub scanner_count: usize,
    pub settings: Settings,
    pub validation: Option<HookInfo>,
    pub retention: Option<HookInfo>,
    /// Sets whose codec output failed the write check and were stored
    /// uncompressed instead.
    pub compression_refused_sets: u64,
}

/// One scanner, for topic info.
pub struct ScannerInfo {
    pub id: Uuid,
    pub next: u64,
    pub from: u64,
    pub persistent: bool,
}

/// One hook, for topic info.
pub struct HookInfo {
    pub plugin: String,
    pub on_error: Option<OnError>,
    pub stats: CallStats,
}

impl Embedded {
    /// Opens (or, with `create`, creates, writing `settings.json`) the topic
    /// in `dir`: recovers its log and restores its persistent scanners.
    /// Blocking.
    pub(crate) fn open(
        name: &str,
        dir: &Path,
        settings: Settings,
        log_opts: LogOptions,
        hooks: Hooks,
        create: bool,
    ) -> Result<Arc<Embedded>, TopicError> {
        let readers = dir.join(READERS_DIR);
        std::fs::create_dir_all(&readers).map_err(TopicError::io(&readers))?;
        if create {
            let json = serde_json::to_vec_pretty(&settings).expect("settings serialize");
            // Syncs the topic directory (its `readers` and settings names)...
            write_atomic(&dir.join(SETTINGS_FILE), &json)?;
            // ...and the data directory, which names the topic's.
            let parent = crate::durable::parent(dir);
            crate::durable::sync_dir(parent).map_err(TopicError::io(parent))?;
        }
        let log = Log::open(dir, log_opts)?;
        let hooks = Arc::new(ArcSwap::from_pointee(hooks));
        let writer = Writer::new(name, log.clone(), settings.clone(), hooks.clone());
        let v1 = settings.message_format == Some(MessageFormat::V1);
        let dedup = Arc::new(Dedup::new(settings.dedup_window, settings.dedup_max_keys));
        if v1 {
            rebuild_dedup(name, &log, &dedup);
        }
        let topic = Arc::new(Embedded {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            scanners: Scanners::new(dir),
            log,
            settings: ArcSwap::from_pointee(settings),
            hooks,
            writer,
            gone: watch::Sender::new(false),
            deleted: AtomicBool::new(false),
            heavy: tokio::sync::Mutex::new(()),
            messages_out: AtomicU64::new(0),
            stats: TopicStats::default(),
            v1_recorded: Arc::new(AtomicBool::new(v1)),
            settings_file: Arc::default(),
            dedup,
            run_reader: Arc::default(),
        });
        topic.scanners.load(name, &topic.log)?;
        Ok(topic)
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The topic's log, for the topic layer and the broker's loops only.
    pub(crate) fn log(&self) -> &Log {
        &self.log
    }

    /// The topic's settings, as of now (a reload may change its hooks).
    /// The segment size it rolls at, without copying the settings.
    pub(crate) fn segment_size(&self) -> u64 {
        self.settings.load().segment_size
    }

    pub fn settings(&self) -> Settings {
        Settings::clone(&self.settings.load())
    }

    /// The topic's plugins, as of now. Holding the `Arc` keeps these
    /// instances alive across a reload.
    pub fn hooks(&self) -> Arc<Hooks> {
        self.hooks.load_full()
    }

    /// Replaces the topic's hooks and the settings that name them, one
    /// pointer store each (hooks first). Groups already being validated
    /// finish on the old instances. The caller has stored `settings` with
    /// [`Topic::store_settings`].
    pub(crate) fn replace_hooks(&self, settings: Settings, hooks: Hooks) {
        self.hooks.store(Arc::new(hooks));
        self.settings.store(Arc::new(self.with_format(settings)));
    }

    /// Writes `settings` to the topic's `settings.json` atomically (the file
    /// only; see [`Topic::replace_hooks`]), keeping the downgrade guard's
    /// field once it is recorded. Blocking.
    pub(crate) fn store_settings(&self, settings: &Settings) -> Result<(), TopicError> {
        let _file = self.settings_file.lock().recover();
        let settings = self.with_format(settings.clone());
        let json = serde_json::to_vec_pretty(&settings).expect("settings serialize");
        write_atomic(&self.dir.join(SETTINGS_FILE), &json)
    }

    /// The topic's idempotency keys.
    pub fn dedup(&self) -> &Arc<Dedup> {
        &self.dedup
    }

    /// `settings` with `message_format` v1 if the topic recorded it.
    fn with_format(&self, mut settings: Settings) -> Settings {
        if self.v1_recorded.load(Ordering::Acquire) {
            settings.message_format = Some(MessageFormat::V1);
        }
        settings
    }

    /// Makes sure the topic may take v1 messages: refuses a `v0` topic
    /// ([`TopicError::V0Only`]), and before the first v1 message records
    /// `"message_format":"v1"` in `settings.json` (atomic replace, fsync).
    /// A build that does not know the field refuses the topic instead of
    /// cutting its log at the first v1 message, which it would take for a
    /// torn tail. Costs an atomic load once recorded.
    pub async fn allow_v1(&self) -> Result<(), TopicError> {
        if self.v1_recorded.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.settings.load().message_format == Some(MessageFormat::V0) {
            return Err(TopicError::V0Only);
        }
        let (file, recorded) = (self.settings_file.clone(), self.v1_recorded.clone());
        let path = self.dir.join(SETTINGS_FILE);
        blocking(move || record_v1(&file, &recorded, &path)).await?;
        self.settings.rcu(|s| self.with_format(Settings::clone(s)));
        Ok(())
    }

    /// The offset the next message will get.
    pub fn next_offset(&self) -> u64 {
        self.log.next_offset()
    }

    /// Messages handed to consumers since start.
    pub fn messages_out(&self) -> u64 {
        self.messages_out.load(Ordering::Relaxed)
    }

    fn count_out(&self, n: usize) {
        self.messages_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Appends `batch` through group commit (validating it first, if the
    /// topic has a validator); returns its first offset once it is readable.
    pub async fn publish(&self, batch: Batch) -> Result<u64, TopicError> {
        self.append(batch, false).await
    }

    /// Appends `batch` as [`Topic::publish`] does but without the
    /// validator: for what the broker writes itself (dead letters), which a
    /// validator of the topic's producers has no say over.
    pub(crate) async fn publish_trusted(&self, batch: Batch) -> Result<u64, TopicError> {
        self.append(batch, true).await
    }

    async fn append(&self, batch: Batch, trusted: bool) -> Result<u64, TopicError> {
        if let Some((plugin, reason)) = &self.hooks.load().unavailable {
            return Err(TopicError::PluginUnavailable {
                plugin: plugin.clone(),
                reason: reason.clone(),
            });
        }
        if self.is_gone() {
            return Err(TopicError::Deleted);
        }
        let (started, route) = (std::time::Instant::now(), batch.route());
        let (count, bytes) = (u64::from(batch.count()), batch.payload_bytes());
        let offset = self
            .writer
            .publish(batch, trusted, || self.closed_error())
            .await?;
        self.stats.published(route, count, bytes, started.elapsed());
        Ok(offset)
    }

    fn is_gone(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    fn closed_error(&self) -> TopicError {
        if self.is_gone() {
            TopicError::Deleted
        } else {
            TopicError::ShuttingDown
        }
    }

    /// Resolves an offset spec against this topic's log.
    pub async fn resolve(&self, spec: OffsetSpec) -> Result<u64, TopicError> {
        Ok(match spec {
            OffsetSpec::Oldest => self.log.oldest_offset(),
            OffsetSpec::Latest => self
                .log
                .next_offset()
                .saturating_sub(1)
                .max(self.log.oldest_offset()),
            OffsetSpec::End => self.log.next_offset(),
            OffsetSpec::At(n) => n,
            OffsetSpec::Ago(d) => {
                let log = self.log.clone();
                let at = SystemTime::now()
                    .checked_sub(d)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                blocking(move || Ok::<_, TopicError>(log.offset_at(at))).await?
            }
        })
    }

    /// The message at exactly `offset`, or `None` if none is stored there.
    /// From the tail cache when it holds it, without leaving this task.
    pub async fn read(&self, offset: u64) -> Result<Option<Message>, TopicError> {
        let m = match self.log.read_cached(offset, 1, 1) {
            Some(mut v) => v.pop(),
            None => {
                let log = self.log.clone();
                blocking(move || Ok::<_, TopicError>(log.reader(offset)?.next()?)).await?
            }
        };
        // Only the offset asked for: never a neighbour.
        let m = m.filter(|m| m.offset == offset);
        if m.is_some() {
            self.count_out(1);
        }
        Ok(m)
    }

    /// The messages from `from` on, at most `max` and `max_bytes` of payload
    /// (at least one): for a consumer that takes a run of offsets at once
    /// (a consumer group's receive). From the tail cache when it holds
    /// them; else with the reader the last run ended with, if this run
    /// starts where it stopped, first from what it holds in memory and then,
    /// if more is needed, in one trip to the blocking pool; else with a new
    /// reader there. Offsets the log no longer holds are passed over; the
    /// caller matches by offset. A read that fails after some messages ends
    /// the run with them.
    pub async fn read_run(
        &self,
        from: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, TopicError> {
        if let Some(run) = self.log.read_cached(from, max, max_bytes)
            && !run.is_empty()
        {
            self.count_out(run.len());
            return Ok(run);
        }
        let limits = ReadLimits {
            messages: max,
            bytes: max_bytes,
            bound: None,
        };
        let mut run = Vec::new();
        let parked = self
            .run_reader
            .lock()
            .recover()
            .take()
            .filter(|r| r.next_offset() == from && from >= self.log.oldest_offset());
        let reader = match parked {
            Some(mut reader) => match read_some(&mut reader, &mut run, limits, false) {
                Ok(true) => {
                    *self.run_reader.lock().recover() = Some(reader);
                    self.count_out(run.len());
                    return Ok(run);
                }
                Ok(false) => Some(reader),
                Err(_) => None,
            },
            None => None,
        };
        let log = self.log.clone();
        let parking = self.run_reader.clone();
        // About half a KiB a message to start with; larger ones read more
        // as they come.
        let read_ahead = max.saturating_mul(512).min(max_bytes.max(16 << 10));
        let run = blocking(move || {
            let mut reader = match reader {
                Some(reader) => reader,
                None => {
                    run.clear();
                    log.reader_for_run(from, read_ahead)?
                }
            };
            read_some(&mut reader, &mut run, limits, true)?;
            *parking.lock().recover() = Some(reader);
            Ok::<_, TopicError>(run)
        })
        .await?;
        self.count_out(run.len());
        Ok(run)
    }

    /// When the message at each of `offsets` was written, to the second;
    /// `None` where the index holds none (see `Log::write_time`). Index
    /// reads, so on the blocking pool; for the console's browsing, a page
    /// at a time.
    pub async fn write_times(
        &self,
        offsets: Vec<u64>,
    ) -> Result<Vec<Option<SystemTime>>, TopicError> {
        let log = self.log.clone();
        blocking(move || {
            offsets
                .into_iter()
                .map(|o| log.write_time(o).map_err(TopicError::from))
                .collect()
        })
        .await
    }

    /// Opens a scanner at `from`.
    pub async fn create_scanner(
        self: &Arc<Self>,
        from: u64,
        persistent: bool,
    ) -> Result<Arc<ScannerEntry>, TopicError> {
        let topic = self.clone();
        blocking(move || {
            // A delete may be removing the directory meanwhile: answer as
            // for any request on a deleted topic, not with its I/O error.
            if topic.is_gone() {
                return Err(TopicError::Deleted);
            }
            let added = topic
                .scanners
                .add(&topic.log, Uuid::new_v4(), from, from, persistent, false);
            let entry = match added {
                Err(_) | Ok(_) if topic.is_gone() => return Err(TopicError::Deleted),
                r => r?,
            };
            tracing::info!(topic = %topic.name, id = %entry.id, from, persistent, "scanner created");
            Ok(entry)
        })
        .await
    }

    /// Looks up a scanner.
    pub fn scanner(&self, id: &str) -> Result<Arc<ScannerEntry>, TopicError> {
        self.scanners.get(id)
    }

    /// How many scanners are attached.
    pub fn scanner_count(&self) -> usize {
        self.scanners.len()
    }

    /// Every scanner, sorted by id.
    pub fn scanners(&self) -> Vec<Arc<ScannerEntry>> {
        self.scanners.all()
    }

    /// Removes a scanner (and its file).
    pub async fn delete_scanner(self: &Arc<Self>, id: &str) -> Result<(), TopicError> {
        let (topic, id) = (self.clone(), id.to_string());
        blocking(move || topic.scanners.remove(&id)).await
    }

    /// Up to `limits` messages from scanner `entry`, waiting up to `wait` for
    /// the first. Empty at the end of the topic. `stop` is the server's
    /// shutdown signal: a wait it ends answers [`TopicError::ShuttingDown`].
    ///
    /// The scanner's position moves by compare-and-swap: each request reads
    /// from the position it saw and claims what it read only if nobody moved
    /// the position meanwhile (else it reads again), so every message is
    /// handed out once. Reads from the tail cache happen right here, with no
    /// lock. Older data comes from the scanner's parked reader: what it holds
    /// in memory is handed out right here too, under a lock held for just
    /// that; a read that needs the disk takes the reader to the blocking
    /// pool, and the other requests on this scanner wait for it to come back
    /// (they would read the same bytes), while cached reads go on.
    pub async fn scan(
        &self,
        entry: &Arc<ScannerEntry>,
        limits: ReadLimits,
        wait: Duration,
        stop: &watch::Receiver<bool>,
    ) -> Result<Vec<Message>, TopicError> {
        let deadline = deadline_after(wait);
        let mut appended = self.log.subscribe();
        entry.touch();
        let _done = TouchOnDrop(entry);
        loop {
            // Seen before reading: an append after this wakes the wait.
            appended.borrow_and_update();
            let at = entry.next();
            if at < self.log.next_offset() {
                let (messages, after) =
                    match self.log.read_cached(at, limits.messages, limits.bytes) {
                        Some(v) => {
                            entry.unpark();
                            let after = v.last().map_or(at, |m| m.offset + 1);
                            (v, after)
                        }
                        None => match self.read_parked_reader(entry, at, limits).await? {
                            Some(read) => read,
                            // The position moved, or a read from disk just
                            // gave the reader back: look again.
                            None => continue,
                        },
                    };
                // Past the bound, the rest is left for the next scan (a
                // parked reader that read past it is replaced then).
                let (mut messages, mut after) = (messages, after);
                if let Some(bound) = limits.bound {
                    after = bound.cut(&mut messages, after)?;
                }
                after = cut_damaged(&mut messages, after);
                if after != at && !entry.advance(at, after) {
                    // Another request on this scanner took these first.
                    continue;
                }
                if !messages.is_empty() {
                    self.count_out(messages.len());
                    return Ok(messages);
                }
            }
            if !self.wait_appended(&mut appended, deadline, stop).await? {
                return Ok(Vec::new());
            }
            // Stopped and appended at once: the stop wins, so a wait that
            // was ended (a shed long poll) reads nothing more.
            if *stop.borrow() {
                return Err(TopicError::ShuttingDown);
            }
        }
    }

    /// Waits up to `wait` (or until `stop`) until `entry` has a message to
    /// read, reading nothing; `Ok(false)` at the deadline. For a scan that
    /// reserves room for its answer before it reads.
    pub async fn wait_readable(
        &self,
        entry: &Arc<ScannerEntry>,
        wait: Duration,
        stop: &watch::Receiver<bool>,
    ) -> Result<bool, TopicError> {
        let deadline = deadline_after(wait);
        let mut appended = self.log.subscribe();
        entry.touch();
        let _done = TouchOnDrop(entry);
        loop {
            // Seen before looking: an append after this wakes the wait.
            appended.borrow_and_update();
            if entry.next() < self.log.next_offset() {
                return Ok(true);
            }
            if !self.wait_appended(&mut appended, deadline, stop).await? {
                return Ok(false);
            }
        }
    }

    /// Reads from `at` with `entry`'s parked reader (see [`Topic::scan`]):
    /// the messages and the offset after them, or `None` when the position
    /// moved or the reader was out and the caller must look again.
    async fn read_parked_reader(
        &self,
        entry: &Arc<ScannerEntry>,
        at: u64,
        limits: ReadLimits,
    ) -> Result<Option<(Vec<Message>, u64)>, TopicError> {
        let mut out = Vec::new();
        let step = {
            let mut parked = entry.parked.lock().recover();
            if parked.out {
                ParkedStep::Wait(entry.returned.notified())
            } else if entry.next() != at {
                return Ok(None);
            } else {
                match read_in_memory(&mut parked.reader, at, &mut out, limits)? {
                    InMemory::Done(after) => return Ok(Some((out, after))),
                    InMemory::Disk(reader) => {
                        parked.out = true;
                        ParkedStep::Disk(reader)
                    }
                }
            }
        };
        let reader = match step {
            ParkedStep::Wait(back) => {
                back.await;
                return Ok(None);
            }
            ParkedStep::Disk(reader) => reader,
        };
        // The blocking task gives the reader back itself, so a request
        // dropped meanwhile (its client gone) cannot leave it out.
        let (log, entry) = (self.log.clone(), entry.clone());
        let read = crate::idle_spin::spawn_blocking(move || {
            let mut back = GiveBack(entry, None);
            let (reader, read) = read_from_disk(&log, at, reader, out, limits);
            let after = reader.as_ref().map_or(at, Reader::next_offset);
            back.1 = reader;
            read.map(|v| (v, after))
        })
        .await;
        match read {
            Ok(r) => r.map(Some),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// A subscription from `from`, for streams.
    pub async fn subscribe(&self, from: u64) -> Result<LogSubscription, TopicError> {
        let log = self.log.clone();
        let reader = blocking(move || Ok::<_, TopicError>(log.reader(from)?)).await?;
        Ok(LogSubscription {
            next: from,
            parked: Some(reader),
        })
    }

    /// Reads from `at` with the reader `parked` there (or a new one),
    /// leaving it parked where it stopped: first what the reader holds in
    /// memory, right here; then, if that is not all `limits` allow and the
    /// rest needs the disk or a codec, the rest on the blocking pool.
    /// Returns the messages and the offset after them (past a hole, if the
    /// read stepped over one).
    async fn read_parked(
        &self,
        at: u64,
        parked: &mut Option<Reader>,
        limits: ReadLimits,
    ) -> Result<(Vec<Message>, u64), TopicError> {
        let mut out = Vec::new();
        let reader = match read_in_memory(parked, at, &mut out, limits)? {
            InMemory::Done(after) => return Ok((out, after)),
            InMemory::Disk(reader) => reader,
        };
        let log = self.log.clone();
        let read =
            crate::idle_spin::spawn_blocking(move || read_from_disk(&log, at, reader, out, limits))
                .await;
        let (reader, out) = match read {
            Ok(r) => r,
            // A panic in a read: the parked reader is lost with it.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let after = reader.as_ref().map_or(at, Reader::next_offset);
        *parked = reader;
        out.map(|v| (v, after))
    }

    /// Waits for an append after the last `borrow_and_update` of
    /// `appended`, the deadline, shutdown or deletion; `Ok(false)` at the
    /// deadline.
    async fn wait_appended(
        &self,
        appended: &mut watch::Receiver<u64>,
        deadline: Instant,
        stop: &watch::Receiver<bool>,
    ) -> Result<bool, TopicError> {
        if self.is_gone() {
            return Err(TopicError::Deleted);
        }
        let mut stop = stop.clone();
        let mut gone = self.gone.subscribe();
        tokio::select! {
            more = tokio::time::timeout_at(deadline, appended.changed()) => Ok(matches!(more, Ok(Ok(())))),
            _ = stop.wait_for(|s| *s) => Err(TopicError::ShuttingDown),
            _ = gone.wait_for(|g| *g) => Err(TopicError::Deleted),
        }
    }

    /// Flushes and fsyncs the topic.
    pub async fn sync(&self) -> Result<(), TopicError> {
        let log = self.log.clone();
        blocking(move || Ok::<_, TopicError>(log.sync()?)).await
    }

    /// The integrity check from `from`; one at a time per topic.
    pub async fn check(&self, from: u64) -> Result<Vec<CheckError>, TopicError> {
        let _one = self.heavy.lock().await;
        let log = self.log.clone();
        blocking(move || Ok::<_, TopicError>(log.check(from)?)).await
    }

    /// Facts for topic info, listing at most `max_scanners` scanners.
    pub async fn info(self: &Arc<Self>, max_scanners: usize) -> Result<TopicInfo, TopicError> {
        let topic = self.clone();
        blocking(move || Ok::<_, TopicError>(topic.info_now(max_scanners))).await
    }

    fn info_now(&self, max_scanners: usize) -> TopicInfo {
        let (listed, scanner_count) = self.scanners.first(max_scanners);
        let hooks = self.hooks.load();
        let hook = |plugin: &str, on_error, stats| HookInfo {
            plugin: plugin.to_string(),
            on_error,
            stats,
        };
        TopicInfo {
            name: self.name.clone(),
            dir: self.dir.clone(),
            oldest_offset: self.log.oldest_offset(),
            latest_offset: self.log.latest_offset(),
            segments: self.log.segments(),
            scanner_count,
            scanners: listed
                .iter()
                .map(|s| ScannerInfo {
                    id: s.id,
                    next: s.next(),
                    from: s.from,
                    persistent: s.persistent,
                })
                .collect(),
            settings: self.settings(),
            validation: hooks
                .validator
                .as_ref()
                .map(|v| hook(v.plugin().name(), Some(hooks.on_error), v.stats())),
            retention: hooks
                .retention
                .as_ref()
                .map(|r| hook(r.plugin().name(), None, r.stats())),
            compression_refused_sets: self.log.codecs().refused_sets(),
        }
    }

    /// fsyncs what was flushed since the last sync (interval policy).
    /// Blocking.
    pub(crate) fn sync_if_due(&self) -> Result<(), TopicError> {
        Ok(self.log.sync_if_due()?)
    }

    /// Removes the scanners idle past the idle TTL (see `scanners.rs`).
    pub(crate) fn expire_idle_scanners(&self) {
        for id in self.scanners.expire_idle() {
            tracing::info!(topic = %self.name, %id, "scanner expired: unused for scanner_idle_ttl");
        }
    }

    /// Saves every persistent scanner that moved. Blocking.
    pub(crate) fn save_scanners(&self) -> Result<(), TopicError> {
        self.scanners.save_moved()
    }

    /// Ends every consumer at once and refuses new publishes (see the
    /// module docs); the caller then closes and removes the topic.
    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        self.gone.send_replace(true);
        self.writer.abandon(|| TopicError::Deleted);
    }

    /// Writes everything queued, saves the scanners and fsyncs. Publishing
    /// afterwards fails. Blocking.
    pub(crate) fn close(&self) -> Result<(), TopicError> {
        self.writer.close();
        self.save_scanners()?;
        self.log.sync()?;
        Ok(())
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.writer.close();
    }
}

/// A stream's position: reads forward from where it started, waiting for
/// appends. See [`Topic::subscribe`].
pub struct LogSubscription {
    next: u64,
    /// The reader for reads from disk, parked at `next` (or dropped while
    /// the stream reads from the tail cache).
    parked: Option<Reader>,
}

impl LogSubscription {
    /// The next messages within `limits`, waiting up to `wait`; empty when
    /// the wait ended with nothing new.
    pub async fn next(
        &mut self,
        topic: &Embedded,
        limits: ReadLimits,
        wait: Duration,
        stop: &watch::Receiver<bool>,
    ) -> Result<Vec<Message>, TopicError> {
        let deadline = deadline_after(wait);
        let mut appended = topic.log.subscribe();
        loop {
            appended.borrow_and_update();
            let at = self.next;
            if at < topic.log.next_offset() {
                let messages = match topic.log.read_cached(at, limits.messages, limits.bytes) {
                    Some(v) => {
                        self.parked = None;
                        self.next = v.last().map_or(at, |m| m.offset + 1);
                        v
                    }
                    None => {
                        let (v, after) = topic.read_parked(at, &mut self.parked, limits).await?;
                        self.next = after;
                        v
                    }
                };
                if !messages.is_empty() {
                    topic.count_out(messages.len());
                    return Ok(messages);
                }
            }
            if !topic.wait_appended(&mut appended, deadline, stop).await? {
                return Ok(Vec::new());
            }
        }
    }
}

/// `wait` from now, or about a year for a wait too long to add.
fn deadline_after(wait: Duration) -> Instant {
    Instant::now()
        .checked_add(wait)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365))
}

/// What [`read_in_memory`] did.
enum InMemory {
    /// It answered the read; the reader is back in its slot, and the
    /// messages end before this offset.
    Done(u64),
    /// The rest needs the disk (or a codec): read on with this reader, or a
    /// new one if it did not stand at the offset.
    Disk(Option<Reader>),
}

/// Takes `slot`'s reader if it stands at `at`, and reads into `out` what it
/// holds in memory, on the caller's thread. An error puts the reader back.
fn read_in_memory(
    slot: &mut Option<Reader>,
    at: u64,
    out: &mut Vec<Message>,
    limits: ReadLimits,
) -> Result<InMemory, TopicError> {
    let mut reader = slot.take().filter(|r| r.next_offset() == at);
    if let Some(r) = reader.as_mut() {
        let done = read_some(r, out, limits, false);
        if !matches!(done, Ok(false)) {
            let after = r.next_offset();
            *slot = reader;
            return done.map(|_| InMemory::Done(after));
        }
    }
    Ok(InMemory::Disk(reader))
}

/// Reads from `at` into `out` (which holds what was read from memory
/// already) with `reader`, or a new reader there if it has none: a position
/// no longer stored (retention trimmed it, or a hole) reads on from the next
/// stored offset. Returns the reader, where it stopped. Blocking.
fn read_from_disk(
    log: &Log,
    at: u64,
    reader: Option<Reader>,
    mut out: Vec<Message>,
    limits: ReadLimits,
) -> (Option<Reader>, Result<Vec<Message>, TopicError>) {
    let mut reader = match reader {
        Some(r) => r,
        None => match log.reader(log.existing_offset(at.max(log.oldest_offset()))) {
            Ok(r) => r,
            Err(e) => return (None, Err(e.into())),
        },
    };
    let done = read_some(&mut reader, &mut out, limits, true);
    (Some(reader), done.map(|_| out))
}

/// Marks a scanner used again when its scan ends, so a long poll longer
/// than the idle TTL does not leave it expiring right after.
struct TouchOnDrop<'a>(&'a ScannerEntry);

impl Drop for TouchOnDrop<'_> {
    fn drop(&mut self) {
        self.0.touch();
    }
}

/// What a request does when the tail cache does not hold its offset.
enum ParkedStep<'a> {
    /// Another request's read from disk has the reader: wait for it.
    Wait(tokio::sync::futures::Notified<'a>),
    /// Read from disk, with the parked reader if it stands at the offset.
    Disk(Option<Reader>),
}

/// Gives a scanner's reader back when dropped, also when the read that had
/// it panicked.
struct GiveBack(Arc<ScannerEntry>, Option<Reader>);

impl Drop for GiveBack {
    fn drop(&mut self) {
        self.0.give_back(self.1.take());
    }
}

/// Reads what is readable now into `out`, up to `limits` with what `out`
/// already holds. With `io`, reads files and calls codecs as needed
/// (blocking); without, only what the reader holds in memory, and answers
/// `Ok(false)` when the next message needs more. `Ok(true)` when the limits
/// are reached or the log has no more.
///
/// A read that fails after some messages were read ends the batch with
/// them: the reader has moved past them, so failing the whole batch would
/// lose them for this consumer. It stays at the message that failed, so the
/// next read reports the error.
fn read_some(
    reader: &mut Reader,
    out: &mut Vec<Message>,
    limits: ReadLimits,
    io: bool,
) -> Result<bool, TopicError> {
    let mut bytes: usize = out.iter().map(|m| m.payload.len()).sum();
    while out.len() < limits.messages.max(1) && (out.is_empty() || bytes < limits.bytes) {
        let next = if io {
            Some(reader.next())
        } else {
            reader.next_buffered()
        };
        match next {
            None => return Ok(false),
            Some(Ok(Some(m))) => {
                bytes += m.payload.len();
                out.push(m);
            }
            Some(Ok(None)) => break,
            Some(Err(_)) if !out.is_empty() => break,
            Some(Err(e)) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Cuts `messages` (the reader stopping at `after`) so that a v1 message
/// whose record does not parse is alone in its answer (which reports it at
/// its offset, and the scanner reads on after it): the messages before it
/// are handed out first. Returns the offset after what is kept.
fn cut_damaged(messages: &mut Vec<Message>, after: u64) -> u64 {
    let damaged = messages
        .iter()
        .position(|m| crate::record::Record::of(m).is_err());
    match damaged {
        None => after,
        Some(0) => {
            messages.truncate(1);
            messages[0].offset + 1
        }
        Some(i) => {
            let next = messages[i].offset;
            messages.truncate(i);
            next
        }
    }
}

/// Writes a file so that a crash leaves either the old or the new content,
/// fsynced with its directory (see `durable`).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TopicError> {
    crate::durable::write_atomic(path, bytes).map_err(|(at, e)| TopicError::io(&at)(e))
}

/// What [`Topic::publish_keyed`] did. Kept here, not in `engine.rs`:
/// both engines answer it, and `jetstream/` does not use the seam above it.
#[derive(Debug, PartialEq, Eq)]
pub enum Keyed {
    /// Stored now, from this first offset.
    Stored(u64),
    /// The key was used within the window by the same request: its
    /// original answer.
    Replayed { first: u64, count: u32 },
    /// The key was used within the window by other messages, written from
    /// `first`.
    Conflict { first: u64 },
}
