//! Group commit and validation: how publishes become log entries.
//!
//! Every publish (a single message or a batch) becomes a job on the topic's
//! queue. When a job arrives and no drain is running, a drain starts; it
//! takes the first job, then every job already waiting (up to
//! `batch_num_messages` messages and [`GROUP_BYTES`] bytes), and writes them
//! as one entry: a lone message as a plain message, several as one message
//! set compressed with the topic's compression. It flushes once and answers
//! each job with its first offset, so a 201 means the message is in the log
//! and readable (and on disk with `fsync = always`). It goes on while jobs
//! wait and ends when the queue is empty, so an idle topic has no task:
//! writers scale with work, not with topics. A lone producer never waits for
//! company; producers that arrive during a write share the next one. A
//! request's messages always land in one entry, so a batch publish is all or
//! nothing even across a crash.
//!
//! **Where a drain runs.** A group of single-message publishes that cannot
//! block long is written on the async worker, with no thread hop (batch
//! publishes, which are few and large, measured faster on the blocking
//! pool, writing beside the workers that parse the next ones): no
//! validator (a wasm call), no
//! compression (a codec may be a plugin, and gzip of a large group is
//! slow), no `fsync = always`, at most [`INLINE_BYTES`], and the log's
//! writer lock free (a roll may hold it across an fsync). Writing such a
//! group costs one `pwrite` of data and one of index entries into the page
//! cache. The publisher that starts a drain writes the first group itself,
//! so a lone producer's answer needs no wake-up at all; the groups that
//! follow run in a task that yields to other requests between groups. A
//! group that may block goes to the blocking pool, and the drain goes on
//! there until the queue is empty.
//!
//! **Bounds.** At most [`QUEUE_JOBS`] jobs wait per topic; further
//! publishers wait for room. One entry holds at most [`GROUP_BYTES`] of
//! messages, except a single publish larger than that, which goes alone (its
//! size is bounded by `max_body`, at most 256 MiB); both stay far under the
//! 1 GiB the reader accepts.
//!
//! **Failures** answer every job of the group with the error. The `write
//! failed` line is logged at most once per [`WRITE_FAILURE_LOG_INTERVAL`]
//! per topic and kind of error, with the count held back since (see
//! `rate_limit`), so a full disk refusing every publish logs a few lines,
//! not one per request.
//!
//! **Panics.** Each group's work runs under `catch_unwind`: a panic (a bug,
//! in the broker or a codec) fails that group's publishes with
//! [`TopicError::Panicked`] (a 500), drops what the group staged in the
//! log, is logged once with its message and location, and the drain goes on
//! with the next group, so the topic keeps serving. "Once": while a group
//! runs, the process's panic hook (wrapped the first time a writer is made)
//! only notes where a panic happened, rather than printing it as well; any
//! other panic is printed as before.
//!
//! **Validation** runs in the drain too, once per group: the messages of
//! every job go to the plugin in one call, jobs holding a rejected message are
//! answered with the reason, and the others are written. When the plugin
//! fails on a group of several jobs (trap, timeout, error), each job is
//! validated again alone, so only the request that makes the plugin fail gets
//! the failure: a failing group costs at most one extra call per job, and a
//! group has at most `batch_num_messages` jobs.
//!
//! The hooks are loaded once per group from the topic's pointer (see
//! `topic`'s docs): a reload takes effect at the next group, and the group
//! being validated keeps the instance it started with.

use std::collections::VecDeque;
use std::mem::Discriminant;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{Hooks, TopicError};
use crate::config::{OnError, Settings};
use crate::lock::Recover;
use crate::log::{Log, LogError};
use crate::message::{self, PLAIN, SET_NONE};
use crate::plugin::{MessageView, Validator, Verdict};
use crate::rate_limit::LineLimit;
use crate::record::Record;

/// Jobs that may wait per topic before publishers are held back.
pub const QUEUE_JOBS: usize = 4096;
/// Most message bytes one group-commit entry takes from several publishes:
/// 64 MiB.
pub const GROUP_BYTES: usize = 64 << 20;
/// Largest group written on an async worker (see the module docs): 64 KiB.
/// Larger groups go to the blocking pool, where the write runs beside the
/// workers that parse the next requests.
pub const INLINE_BYTES: usize = 64 << 10;
/// A topic logs its `write failed` line at most once per this long per kind
/// of error (10 s), with the count of failures not logged since.
pub const WRITE_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What one publish carries.
pub enum Batch {
    /// One message's bytes.
    One(Bytes),
    /// `count` messages already encoded as plain messages back to back, their
    /// CRCs verified.
    Framed { plain: Bytes, count: u32 },
}

impl Batch {
    /// How many messages.
    pub fn count(&self) -> u32 {
        match self {
            Batch::One(_) => 1,
            Batch::Framed { count, .. } => *count,
        }
    }

    /// Bytes it adds to an entry.
    fn bytes(&self) -> usize {
        match self {
            Batch::One(p) => p.len() + message::HEADER_BYTES,
            Batch::Framed { plain, .. } => plain.len(),
        }
    }
}

type Reply = oneshot::Sender<Result<u64, TopicError>>;

struct Job {
    batch: Batch,
    /// Written by the broker itself (a dead letter): the validator is
    /// skipped.
    trusted: bool,
    reply: Reply,
    /// Its place in the queue, given back once answered.
    _permit: OwnedSemaphorePermit,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// A drain is running.
    draining: bool,
    /// No more jobs are taken.
    closed: bool,
}

/// The write side of one topic. See the module docs.
pub(crate) struct Writer {
    shared: Arc<WriterState>,
    room: Arc<Semaphore>,
}

struct WriterState {
    topic: String,
    log: Log,
    settings: Settings,
    /// Loaded once per group: a reload swaps it between two groups.
    hooks: Arc<ArcSwap<Hooks>>,
    queue: Mutex<Queue>,
    idle: Condvar,
    /// Rate limit of the `write failed` line, per kind of error.
    failures: LineLimit<Discriminant<LogError>>,
}

impl Writer {
    pub(crate) fn new(
        topic: &str,
        log: Log,
        settings: Settings,
        hooks: Arc<ArcSwap<Hooks>>,
    ) -> Writer {
        quiet_panics::install();
        Writer {
            shared: Arc::new(WriterState {
                topic: topic.to_string(),
                log,
                settings,
                hooks,
                queue: Mutex::new(Queue::default()),
                idle: Condvar::new(),
                failures: LineLimit::new(WRITE_FAILURE_LOG_INTERVAL),
            }),
            room: Arc::new(Semaphore::new(QUEUE_JOBS)),
        }
    }

    /// Queues `batch`; answers with its first offset once written. `closed`
    /// is the error for a writer that no longer takes jobs; a `trusted`
    /// batch skips the validator.
    pub(crate) async fn publish(
        &self,
        batch: Batch,
        trusted: bool,
        closed: impl Fn() -> TopicError,
    ) -> Result<u64, TopicError> {
        let permit = self
            .room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let (reply, answer) = oneshot::channel();
        let starts_drain = {
            let mut q = self.shared.queue.lock().recover();
            if q.closed {
                return Err(closed());
            }
            q.jobs.push_back(Job {
                batch,
                trusted,
                reply,
                _permit: permit,
            });
            !std::mem::replace(&mut q.draining, true)
        };
        if !starts_drain {
            return answered(answer.await, &self.shared, closed);
        }
        // This publisher starts the drain: its own job is the first group.
        let shared = self.shared.clone();
        let mut plain = Vec::new();
        match shared.next_group() {
            Some(jobs) if shared.can_write_inline(&jobs) => {
                shared.process(jobs, &mut plain);
                if shared.more() {
                    tokio::spawn(async move { shared.drain_async().await });
                }
            }
            Some(jobs) => {
                crate::idle_spin::spawn_blocking(move || shared.drain(Some(jobs)));
            }
            None => {}
        }
        answered(answer.await, &self.shared, closed)
    }

    /// Takes no more jobs and fails the queued ones that no write has
    /// started with `error()`; then waits like [`Writer::close`].
    pub(crate) fn abandon(&self, error: impl Fn() -> TopicError) {
        self.room.close();
        let queued: Vec<Job> = {
            let mut q = self.shared.queue.lock().recover();
            q.closed = true;
            q.jobs.drain(..).collect()
        };
        for job in queued {
            let _ = job.reply.send(Err(error()));
        }
        self.close();
    }

    /// Takes no more jobs and waits until every queued one is written.
    pub(crate) fn close(&self) {
        self.room.close();
        let mut q = self.shared.queue.lock().recover();
        q.closed = true;
        while q.draining {
            q = self.shared.idle.wait(q).recover();
        }
        // Jobs queued after the last drain ended (none should be) fail.
        q.jobs.clear();
    }
}

impl WriterState {
    /// The next group, or `None` (and the drain is over) when the queue is
    /// empty.
    fn next_group(&self) -> Option<Vec<Job>> {
        let mut q = self.queue.lock().recover();
        if q.jobs.is_empty() {
            q.draining = false;
            self.idle.notify_all();
            return None;
        }
        Some(take_group(&mut q.jobs, self.settings.batch_num_messages))
    }

    /// Whether jobs wait; if none do, the drain is over.
    fn more(&self) -> bool {
        let mut q = self.queue.lock().recover();
        if q.jobs.is_empty() {
            q.draining = false;
            self.idle.notify_all();
            return false;
        }
        true
    }

    /// Whether `jobs` may be written on an async worker (see the module
    /// docs).
    fn can_write_inline(&self, jobs: &[Job]) -> bool {
        let bytes: usize = jobs.iter().map(|j| j.batch.bytes()).sum();
        jobs.iter()
            .all(|j| matches!(j.batch, Batch::One(_) | Batch::Framed { count: 1, .. }))
            && bytes <= INLINE_BYTES
            && matches!(self.settings.compression_type, PLAIN | SET_NONE)
            && self.hooks.load().validator.is_none()
            && !self.log.write_may_block()
    }

    /// Drains on an async worker, yielding between groups; hands the drain
    /// to the blocking pool at the first group that may block.
    async fn drain_async(self: Arc<Self>) {
        // Dropped at a yield (the runtime shutting down), the drain must not
        // leave the topic "draining" with nobody draining.
        let mut reset = ResetDraining::new(&self);
        let mut plain = Vec::new();
        while let Some(jobs) = self.next_group() {
            if !self.can_write_inline(&jobs) {
                let shared = self.clone();
                crate::idle_spin::spawn_blocking(move || shared.drain(Some(jobs)));
                break;
            }
            self.process(jobs, &mut plain);
            tokio::task::yield_now().await;
        }
        reset.finished = true;
    }

    /// Writes `first` (if any), then groups until the queue is empty.
    /// Blocking.
    fn drain(&self, first: Option<Vec<Job>>) {
        let mut reset = ResetDraining::new(self);
        let mut plain = Vec::new();
        if let Some(jobs) = first {
            self.process(jobs, &mut plain);
        }
        while let Some(jobs) = self.next_group() {
            self.process(jobs, &mut plain);
        }
        reset.finished = true;
    }

    /// Validates and writes one group, and answers its jobs, under
    /// `catch_unwind` (see the module docs): a panic drops the group's jobs
    /// unanswered (their publishers get `Panicked`) and what it staged.
    fn process(&self, jobs: Vec<Job>, plain: &mut Vec<u8>) {
        let work = quiet_panics::catch(|| self.group(jobs, plain));
        if let Err((cause, at)) = work {
            self.log.discard_staged();
            *plain = Vec::new();
            tracing::error!(
                topic = %self.topic,
                cause = panic_text(cause.as_ref()),
                at = at.as_deref().unwrap_or("unknown"),
                "writer panicked: the group's publishes failed; the topic goes on"
            );
        }
    }

    /// Validates and writes one group, and answers its jobs.
    fn group(&self, jobs: Vec<Job>, plain: &mut Vec<u8>) {
        // One load per group; the Arc keeps this group's validator alive
        // even if a reload swaps in another meanwhile.
        let hooks = self.hooks.load_full();
        let jobs = match &hooks.validator {
            Some(v) if jobs.iter().any(|j| j.trusted) => {
                let (mut kept, checked): (Vec<Job>, Vec<Job>) =
                    jobs.into_iter().partition(|j| j.trusted);
                if !checked.is_empty() {
                    kept.extend(self.validate(v, hooks.on_error, checked));
                }
                kept
            }
            Some(v) => self.validate(v, hooks.on_error, jobs),
            None => jobs,
        };
        if jobs.is_empty() {
            return;
        }
        let result = self.write(&jobs, plain).map_err(Arc::new);
        let mut offset = result.as_ref().copied().unwrap_or(0);
        if let Err(e) = &result
            && let Some(suppressed) = self.failures.allow(std::mem::discriminant(e.as_ref()))
        {
            tracing::error!(
                topic = %self.topic,
                error = %ErrorChain(e.as_ref()),
                suppressed,
                "write failed"
            );
        }
        for job in jobs {
            let n = u64::from(job.batch.count());
            let _ = job.reply.send(match &result {
                Ok(_) => Ok(offset),
                Err(e) => Err(TopicError::Write(e.clone())),
            });
            offset += n;
        }
    }

    /// Validates `jobs` (see the module docs); returns the ones to write.
    fn validate(&self, validator: &Validator, on_error: OnError, jobs: Vec<Job>) -> Vec<Job> {
        let plugin = validator.plugin().name().to_string();
        let verdicts = match run_validator(validator, &jobs) {
            Ok(v) => v,
            Err(e) if on_error == OnError::Accept => {
                tracing::warn!(topic = %self.topic, %plugin, error = %e, "validator failed, accepting (on_error = accept)");
                return jobs;
            }
            Err(_) if jobs.len() > 1 => {
                // Find the request that makes it fail: each alone.
                return jobs
                    .into_iter()
                    .flat_map(|job| self.validate(validator, on_error, vec![job]))
                    .collect();
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, %plugin, error = %e, "validator failed, rejecting the publish");
                let e = Arc::new(e);
                for job in jobs {
                    let _ = job.reply.send(Err(TopicError::PluginFailed {
                        plugin: plugin.clone(),
                        source: e.clone(),
                    }));
                }
                return Vec::new();
            }
        };
        let mut keep = Vec::with_capacity(jobs.len());
        let mut at = 0;
        for job in jobs {
            let n = job.batch.count() as usize;
            let own = &verdicts[at..at + n];
            at += n;
            let rejected = own.iter().enumerate().find_map(|(i, v)| match v {
                Verdict::Reject(reason) => Some((i, reason.clone())),
                Verdict::Accept => None,
            });
            match rejected {
                Some((index, reason)) => {
                    let _ = job.reply.send(Err(TopicError::Rejected {
                        plugin: plugin.clone(),
                        index,
                        reason,
                    }));
                }
                None => keep.push(job),
            }
        }
        keep
    }

    fn write(&self, jobs: &[Job], plain: &mut Vec<u8>) -> Result<u64, LogError> {
        let log = &self.log;
        let count: u32 = jobs.iter().map(|j| j.batch.count()).sum();
        let compression = self.settings.compression_type;
        let uncompressed = matches!(compression, PLAIN | SET_NONE);
        // Batch publishes arrive as plain messages already.
        let framed: Vec<&[u8]> = jobs
            .iter()
            .filter_map(|j| match &j.batch {
                Batch::Framed { plain, .. } => Some(&plain[..]),
                Batch::One(_) => None,
            })
            .collect();
        let first = match jobs {
            [
                Job {
                    batch: Batch::One(payload),
                    ..
                },
            ] => log.append(payload)?,
            [
                Job {
                    batch: Batch::Framed { plain, count: 1 },
                    ..
                },
            ] => log.append_encoded(plain, 1)?,
            // Straight into the write buffer, one copy.
            _ if uncompressed && framed.len() == jobs.len() => {
                log.append_plain_set(&framed, count)?
            }
            _ => {
                plain.clear();
                for job in jobs {
                    match &job.batch {
                        Batch::One(p) => message::encode(plain, PLAIN, p),
                        Batch::Framed { plain: p, .. } => plain.extend_from_slice(p),
                    }
                }
                if uncompressed {
                    log.append_plain_set(&[plain], count)?
                } else {
                    let (entry, err) = log.codecs().pack_set(plain, compression);
                    if let Some(e) = err {
                        tracing::warn!(topic = %self.topic, error = %e, "compression failed, set stored uncompressed");
                    }
                    // The plain messages go with it, for the tail cache.
                    log.append_packed(&entry, count, Bytes::from(std::mem::take(plain)))?
                }
            }
        };
        #[cfg(test)]
        if jobs
            .iter()
            .any(|j| matches!(&j.batch, Batch::One(p) if &p[..] == tests::PANIC_HOOK))
        {
            panic!("test hook: a panic in the drain");
        }
        crate::fault::panic_point(log.dir());
        log.flush()?;
        Ok(first)
    }
}

/// Should a drain end before the queue is empty (a panic outside a group's
/// work, or a drain task dropped by a runtime shutting down), the topic must
/// not stay "draining" with nobody draining: the next publish starts one,
/// and `close` does not wait forever.
struct ResetDraining<'a> {
    shared: &'a WriterState,
    /// The drain ended as it should (the queue empty, or handed over).
    finished: bool,
}

impl<'a> ResetDraining<'a> {
    fn new(shared: &'a WriterState) -> Self {
        ResetDraining {
            shared,
            finished: false,
        }
    }
}

impl Drop for ResetDraining<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.queue.lock().recover().draining = false;
            self.shared.idle.notify_all();
        }
    }
}

/// Panics the writer catches and logs itself, kept out of the process's
/// panic output so that each is reported once.
mod quiet_panics {
    use std::cell::{Cell, RefCell};
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Once;

    thread_local! {
        /// Whether this thread is inside [`catch`].
        static CATCHING: Cell<bool> = const { Cell::new(false) };
        /// Where the last panic inside [`catch`] happened.
        static WHERE: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    /// Wraps the process's panic hook, once: inside [`catch`] a panic's
    /// location is noted; anywhere else the previous hook runs.
    pub(super) fn install() {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if CATCHING.with(Cell::get) {
                    let at = info
                        .location()
                        .map(|l| format!("{}:{}", l.file(), l.line()));
                    WHERE.with(|w| *w.borrow_mut() = at);
                } else {
                    previous(info);
                }
            }));
        });
    }

    /// A panic's payload and location.
    pub(super) type Caught = (Box<dyn std::any::Any + Send>, Option<String>);

    /// Runs `work`, catching a panic without printing it.
    pub(super) fn catch<T>(work: impl FnOnce() -> T) -> Result<T, Caught> {
        let outer = CATCHING.with(|c| c.replace(true));
        let result = catch_unwind(AssertUnwindSafe(work));
        CATCHING.with(|c| c.set(outer));
        result.map_err(|cause| (cause, WHERE.with(|w| w.borrow_mut().take())))
    }
}

/// A panic's message, when it has one.
fn panic_text(cause: &(dyn std::any::Any + Send)) -> &str {
    cause
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| cause.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// A publisher's answer: a reply dropped by an open writer means the
/// drain panicked on its group.
fn answered(
    reply: Result<Result<u64, TopicError>, oneshot::error::RecvError>,
    shared: &WriterState,
    closed: impl Fn() -> TopicError,
) -> Result<u64, TopicError> {
    match reply {
        Ok(answer) => answer,
        Err(_) if !shared.queue.lock().recover().closed => Err(TopicError::Panicked),
        Err(_) => Err(closed()),
    }
}

/// Takes the next group: the first job, then those that fit the count and
/// byte bounds (see the module docs).
fn take_group(queue: &mut VecDeque<Job>, max_messages: usize) -> Vec<Job> {
    let first = queue.pop_front().expect("a non-empty queue");
    let mut count = first.batch.count() as usize;
    let mut bytes = first.batch.bytes();
    let mut group = vec![first];
    while let Some(next) = queue.front() {
        let (n, b) = (next.batch.count() as usize, next.batch.bytes());
        if count + n > max_messages.max(1) || bytes + b > GROUP_BYTES {
            break;
        }
        count += n;
        bytes += b;
        group.push(queue.pop_front().expect("a front job"));
    }
    group
}

/// One validator call over every message of `jobs`; checks that the plugin
/// answered for each.
fn run_validator(
    validator: &Validator,
    jobs: &[Job],
) -> Result<Vec<Verdict>, crate::plugin::PluginError> {
    // A v1 message is shown as its record's parts, each a slice of the
    // request's bytes (`netlog:plugin@0.1.x` sees the value as its payload).
    let mut records: Vec<Record> = Vec::new();
    for job in jobs {
        match &job.batch {
            Batch::One(p) => records.push(Record {
                value: p.clone(),
                ..Record::default()
            }),
            Batch::Framed { plain, .. } => {
                for (header, payload) in message::plain_frames(plain).filter_map(Result::ok) {
                    let payload = plain.slice_ref(payload);
                    if header.format() == message::FORMAT_RECORD {
                        // Checked when the request was parsed.
                        if let Ok(r) = Record::parse(&payload) {
                            records.push(r);
                        }
                    } else {
                        records.push(Record {
                            value: payload,
                            ..Record::default()
                        });
                    }
                }
            }
        }
    }
    let messages: Vec<MessageView<'_>> = records
        .iter()
        .map(|r| MessageView {
            value: &r.value,
            key: r.key.as_deref(),
            headers: r
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), &value[..]))
                .collect(),
            timestamp: r.timestamp,
        })
        .collect();
    let expected: usize = jobs.iter().map(|j| j.batch.count() as usize).sum();
    let verdicts = validator.validate_messages(&messages)?;
    // The host checks the count; frames are verified before they are
    // queued. Should they still disagree, the group fails as a plugin error
    // rather than the drain panicking.
    if verdicts.len() != expected || messages.len() != expected {
        return Err(crate::plugin::PluginError::BadAnswer {
            plugin: validator.plugin().name().to_string(),
            topic: validator.topic().to_string(),
            reason: format!("{} verdicts for {expected} messages", verdicts.len()),
        });
    }
    Ok(verdicts)
}

/// Displays an error with its whole chain of causes, each once.
pub(crate) struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let part = c.to_string();
            if !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            cause = c.source();
        }
        f.write_str(&text)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::log::LogOptions;

    /// A publish of exactly these bytes makes the drain panic after staging
    /// it (test builds only).
    pub(crate) const PANIC_HOOK: &[u8] = b"test hook: panic in the drain";

    /// A panic in the drain fails that group's publish (500, `Panicked`),
    /// stages nothing visible, and the topic goes on writing at the next
    /// offset; the drain is not left stuck.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_the_drain_fails_its_group_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let writer = Writer::new(
            "t",
            log.clone(),
            Settings::default(),
            Arc::new(ArcSwap::from_pointee(Hooks::default())),
        );
        let closed = || TopicError::ShuttingDown;
        let one = |p: &'static [u8]| Batch::One(Bytes::from_static(p));
        assert_eq!(
            writer.publish(one(b"before"), false, closed).await.unwrap(),
            0
        );
        for _ in 0..3 {
            let failed = writer.publish(one(PANIC_HOOK), false, closed).await;
            assert!(matches!(failed, Err(TopicError::Panicked)), "{failed:?}");
        }
        assert_eq!(
            writer.publish(one(b"after"), false, closed).await.unwrap(),
            1
        );
        let mut r = log.reader(0).unwrap();
        let got: Vec<(u64, Bytes)> = std::iter::from_fn(|| r.next().unwrap())
            .map(|m| (m.offset, m.payload))
            .collect();
        assert_eq!(
            got,
            [
                (0, Bytes::from_static(b"before")),
                (1, Bytes::from_static(b"after"))
            ]
        );
        // The drain ends (it is not left "draining" after the panics).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while writer.shared.queue.lock().recover().draining {
            assert!(
                std::time::Instant::now() < deadline,
                "the drain never ended"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        writer.close();
        drop(log);
        // Nothing of the failed publishes reached the disk either.
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        assert_eq!(log.next_offset(), 2);
    }
}
