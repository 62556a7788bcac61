//! A topic: its log, its settings, its scanners and its writer.
//!
//! **Group commit.** Every publish (a single message or a batch) becomes a job
//! on the topic's bounded queue. One writer thread per topic takes the first
//! job, then every job already waiting (up to `batch_num_messages` messages),
//! and writes them as one entry: a lone message as a plain message, several as
//! one message set compressed with the topic's compression. It flushes once
//! and answers each job with its first offset, so a 201 means the message is
//! in the log and readable (and on disk with `fsync = always`). A lone
//! producer never waits for company; producers that arrive while a write is in
//! progress share the next one. Because a request's messages always land in
//! one entry, a batch publish is all or nothing even across a crash.
//! The thread is a plain OS thread: writes, fsyncs and plugins never run on
//! the async reactor. A topic's validator runs there too, once per group: the
//! messages of every job in it go to the plugin in one call, jobs holding a
//! rejected message are answered with the reason, and the others are written.
//!
//! **Scanners** are consumer positions: a [`Scanner`] behind an async mutex,
//! so concurrent scans of one id hand each message out once. Persistent ones
//! save `readers/<uuid>.scanner` (the last offset returned, as netlog does) on
//! creation, on every monitor tick where they moved, and at shutdown; after a
//! crash they resume at most one tick behind: a message may be seen twice,
//! never skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::broker::BrokerError;
use crate::config::{OnError, Settings};
use crate::duration::OffsetSpec;
use crate::log::{Log, LogOptions, Message, Scanner};
use crate::message::{self, PLAIN, SET_NONE};
use crate::plugin::{Retention, Validator, Verdict};

/// Jobs that may wait for the writer before publishers are held back.
const WRITER_QUEUE: usize = 4096;
/// Name of the settings file in a topic directory.
pub const SETTINGS_FILE: &str = "settings.json";
/// Folder of persistent scanner files in a topic directory.
pub const READERS_DIR: &str = "readers";

/// Checks a topic name: 1-255 of `[A-Za-z0-9._-]`, not starting with `.` or
/// `_` (those are the broker's). Says why not.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("topic names are 1 to 255 characters long".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic names may only hold letters, digits, '.', '_' and '-' (found {c:?})"
        ));
    }
    if name.starts_with('.') || name.starts_with('_') {
        return Err("topic names may not start with '.' or '_'".into());
    }
    Ok(())
}

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
}

struct Job {
    batch: Batch,
    reply: oneshot::Sender<Result<u64, BrokerError>>,
}

/// One consumer position; see the module docs.
pub struct ScannerEntry {
    /// Its id.
    pub id: Uuid,
    /// Where it started.
    pub from: u64,
    /// Whether it survives restarts.
    pub persistent: bool,
    next: AtomicU64,
    saved: AtomicU64,
    scanner: tokio::sync::Mutex<Scanner>,
}

impl ScannerEntry {
    /// The next offset it will return.
    pub fn next(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }
}

/// A topic. See the module docs.
pub struct Topic {
    name: String,
    dir: PathBuf,
    log: Log,
    settings: Settings,
    hooks: Hooks,
    scanners: Mutex<HashMap<Uuid, Arc<ScannerEntry>>>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Topic {
    /// Opens (or creates, writing `settings.json`) the topic in `dir`.
    pub fn open(
        name: &str,
        dir: &Path,
        settings: Settings,
        log_opts: LogOptions,
        hooks: Hooks,
        write_settings: bool,
    ) -> Result<Arc<Topic>, BrokerError> {
        std::fs::create_dir_all(dir.join(READERS_DIR)).map_err(BrokerError::io(dir))?;
        if write_settings {
            let json = serde_json::to_vec_pretty(&settings).expect("settings serialize");
            write_atomic(&dir.join(SETTINGS_FILE), &json)?;
        }
        let log = Log::open(dir, log_opts)?;
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let writer = {
            let log = log.clone();
            let settings = settings.clone();
            let name = name.to_string();
            let check = hooks.validator.clone().map(|v| (v, hooks.on_error));
            std::thread::Builder::new()
                .name(format!("netlog-writer-{name}"))
                .spawn(move || write_loop(&name, rx, &log, &settings, check))
                .map_err(BrokerError::io(dir))?
        };
        let topic = Arc::new(Topic {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            log,
            settings,
            hooks,
            scanners: Mutex::new(HashMap::new()),
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        });
        topic.load_scanners()?;
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

    /// The topic's log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The topic's settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The topic's plugins.
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Appends `batch` through group commit (validating it first, if the
    /// topic has a validator); returns its first offset once it is readable.
    pub async fn publish(&self, batch: Batch) -> Result<u64, BrokerError> {
        let jobs = lock(&self.jobs).clone().ok_or(BrokerError::TopicNotFound)?;
        let (reply, answer) = oneshot::channel();
        jobs.send(Job { batch, reply })
            .await
            .map_err(|_| BrokerError::TopicNotFound)?;
        answer.await.map_err(|_| BrokerError::TopicNotFound)?
    }

    /// Resolves an offset spec against this topic's log.
    pub fn resolve(&self, spec: OffsetSpec) -> u64 {
        match spec {
            OffsetSpec::Oldest => self.log.oldest_offset(),
            OffsetSpec::Latest => self
                .log
                .next_offset()
                .saturating_sub(1)
                .max(self.log.oldest_offset()),
            OffsetSpec::End => self.log.next_offset(),
            OffsetSpec::At(n) => n,
            OffsetSpec::Ago(d) => self.log.offset_at(
                SystemTime::now()
                    .checked_sub(d)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            ),
        }
    }

    /// Opens a scanner at `from`.
    pub fn create_scanner(
        &self,
        from: u64,
        persistent: bool,
    ) -> Result<Arc<ScannerEntry>, BrokerError> {
        self.add_scanner(Uuid::new_v4(), from, from, persistent)
    }

    fn add_scanner(
        &self,
        id: Uuid,
        from: u64,
        at: u64,
        persistent: bool,
    ) -> Result<Arc<ScannerEntry>, BrokerError> {
        let scanner = self.log.scanner(at)?;
        let entry = Arc::new(ScannerEntry {
            id,
            from,
            persistent,
            next: AtomicU64::new(at),
            saved: AtomicU64::new(u64::MAX),
            scanner: tokio::sync::Mutex::new(scanner),
        });
        if persistent {
            self.save_scanner(&entry)?;
        }
        lock(&self.scanners).insert(id, entry.clone());
        Ok(entry)
    }

    /// Looks up a scanner.
    pub fn scanner(&self, id: &str) -> Result<Arc<ScannerEntry>, BrokerError> {
        let id = Uuid::parse_str(id).map_err(|_| BrokerError::ScannerNotFound)?;
        lock(&self.scanners)
            .get(&id)
            .cloned()
            .ok_or(BrokerError::ScannerNotFound)
    }

    /// Every scanner, for topic info and retention.
    pub fn scanners(&self) -> Vec<Arc<ScannerEntry>> {
        let mut all: Vec<_> = lock(&self.scanners).values().cloned().collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// Removes a scanner (and its file).
    pub fn delete_scanner(&self, id: &str) -> Result<(), BrokerError> {
        let entry = self.scanner(id)?;
        lock(&self.scanners).remove(&entry.id);
        if entry.persistent {
            let path = self.scanner_path(&entry.id);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(BrokerError::io(&path)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Up to `max` messages from scanner `entry`, waiting up to `wait` for the
    /// first, or until `stop` fires. Empty at the end of the topic.
    pub async fn scan(
        &self,
        entry: &ScannerEntry,
        max: usize,
        wait: Duration,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Vec<Message>, BrokerError> {
        let mut scanner = entry.scanner.lock().await;
        let first = tokio::select! {
            m = scanner.next(wait) => m?,
            _ = stop.wait_for(|s| *s) => None,
        };
        let mut out = Vec::new();
        if let Some(m) = first {
            out.push(m);
            while out.len() < max {
                match scanner.try_next()? {
                    Some(m) => out.push(m),
                    None => break,
                }
            }
        }
        entry.next.store(scanner.next_offset(), Ordering::Release);
        Ok(out)
    }

    fn scanner_path(&self, id: &Uuid) -> PathBuf {
        self.dir.join(READERS_DIR).join(format!("{id}.scanner"))
    }

    fn save_scanner(&self, entry: &ScannerEntry) -> Result<(), BrokerError> {
        let next = entry.next();
        if entry.saved.load(Ordering::Acquire) == next {
            return Ok(());
        }
        let last = next as i64 - 1;
        write_atomic(&self.scanner_path(&entry.id), &last.to_be_bytes())?;
        entry.saved.store(next, Ordering::Release);
        Ok(())
    }

    /// Saves every persistent scanner that moved since it was last saved.
    pub fn save_scanners(&self) -> Result<(), BrokerError> {
        for s in self.scanners() {
            if s.persistent {
                self.save_scanner(&s)?;
            }
        }
        Ok(())
    }

    fn load_scanners(&self) -> Result<(), BrokerError> {
        let dir = self.dir.join(READERS_DIR);
        for entry in std::fs::read_dir(&dir).map_err(BrokerError::io(&dir))? {
            let path = entry.map_err(BrokerError::io(&dir))?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".scanner"))
                .and_then(|n| Uuid::parse_str(n).ok())
            else {
                continue;
            };
            let bytes = std::fs::read(&path).map_err(BrokerError::io(&path))?;
            let Ok(last) = <[u8; 8]>::try_from(bytes.as_slice()).map(i64::from_be_bytes) else {
                tracing::warn!(path = %path.display(), "ignoring scanner file that is not 8 bytes");
                continue;
            };
            let wanted = last.saturating_add(1).max(0) as u64;
            // A position in a hole (a segment that lost its tail) moves to
            // the next stored offset.
            let at = self
                .log
                .existing_offset(wanted.clamp(self.log.oldest_offset(), self.log.next_offset()));
            if at != wanted {
                tracing::warn!(topic = %self.name, %id, wanted, at, "scanner position no longer stored, moved");
            }
            self.add_scanner(id, at, at, true)?;
        }
        Ok(())
    }

    /// Stops the writer after it has written everything queued, saves the
    /// scanners and fsyncs. Publishing afterwards fails.
    pub fn close(&self) -> Result<(), BrokerError> {
        lock(&self.jobs).take();
        if let Some(w) = lock(&self.writer).take() {
            let _ = w.join();
        }
        self.save_scanners()?;
        self.log.sync()?;
        Ok(())
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        lock(&self.jobs).take();
        if let Some(w) = lock(&self.writer).take() {
            let _ = w.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes a file so that a crash leaves either the old or the new content.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BrokerError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(BrokerError::io(&tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_data())
        .map_err(BrokerError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(BrokerError::io(path))
}

/// The writer thread: group commit, as described in the module docs.
fn write_loop(
    name: &str,
    mut rx: mpsc::Receiver<Job>,
    log: &Log,
    settings: &Settings,
    validator: Option<(Arc<Validator>, OnError)>,
) {
    let mut plain = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    while let Some(job) = rx.blocking_recv() {
        let mut count = job.batch.count() as usize;
        jobs.push(job);
        while count < settings.batch_num_messages {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.batch.count() as usize;
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        if let Some((validator, on_error)) = &validator {
            jobs = validate_jobs(name, validator, *on_error, std::mem::take(&mut jobs));
            if jobs.is_empty() {
                continue;
            }
        }
        let result = write_jobs(name, log, settings, &jobs, &mut plain);
        let mut offset = result.as_ref().copied().unwrap_or(0);
        for job in jobs.drain(..) {
            let n = u64::from(job.batch.count());
            let _ = job.reply.send(match &result {
                Ok(_) => Ok(offset),
                Err(e) => Err(BrokerError::WriteFailed(e.to_string())),
            });
            offset += n;
        }
    }
}

/// Validates every message of `jobs` in one plugin call. Jobs with a rejected
/// message, or all of them when the plugin fails and `on_error` is `reject`,
/// are answered here; the jobs that may be written are returned.
fn validate_jobs(name: &str, validator: &Validator, on_error: OnError, jobs: Vec<Job>) -> Vec<Job> {
    let mut messages: Vec<&[u8]> = Vec::new();
    for job in &jobs {
        match &job.batch {
            Batch::One(p) => messages.push(p),
            Batch::Framed { plain, .. } => {
                messages.extend(message::plain_messages(plain).filter_map(Result::ok))
            }
        }
    }
    let plugin = validator.plugin().name().to_string();
    let verdicts = match validator.validate(&messages) {
        Ok(v) => v,
        Err(e) if on_error == OnError::Accept => {
            tracing::warn!(topic = name, %plugin, error = %e, "validator failed, accepting (on_error = accept)");
            return jobs;
        }
        Err(e) => {
            tracing::error!(topic = name, %plugin, error = %e, "validator failed, rejecting the publish");
            for job in jobs {
                let _ = job.reply.send(Err(BrokerError::PluginFailed {
                    plugin: plugin.clone(),
                    detail: e.to_string(),
                }));
            }
            return Vec::new();
        }
    };
    drop(messages);
    let mut keep = Vec::with_capacity(jobs.len());
    let mut at = 0;
    for job in jobs {
        let n = job.batch.count() as usize;
        // Frames are verified before they are queued, so every job has its
        // verdicts; should one not, its publish fails rather than the thread.
        let Some(own) = verdicts.get(at..at + n) else {
            let _ = job.reply.send(Err(BrokerError::PluginFailed {
                plugin: plugin.clone(),
                detail: format!("no verdicts for messages {at}..{}", at + n),
            }));
            continue;
        };
        at += n;
        let rejected = own.iter().enumerate().find_map(|(i, v)| match v {
            Verdict::Reject(reason) => Some((i, reason.clone())),
            Verdict::Accept => None,
        });
        match rejected {
            Some((index, reason)) => {
                let _ = job.reply.send(Err(BrokerError::Rejected {
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

fn write_jobs(
    name: &str,
    log: &Log,
    settings: &Settings,
    jobs: &[Job],
    plain: &mut Vec<u8>,
) -> Result<u64, crate::log::LogError> {
    let count: u32 = jobs.iter().map(|j| j.batch.count()).sum();
    let uncompressed = matches!(settings.compression_type, PLAIN | SET_NONE);
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
        _ if uncompressed && framed.len() == jobs.len() => log.append_plain_set(&framed, count)?,
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
                let (entry, err) = log.codecs().pack_set(plain, settings.compression_type);
                if let Some(e) = err {
                    tracing::warn!(topic = name, error = %e, "compression failed, set stored uncompressed");
                }
                log.append_encoded(&entry, count)?
            }
        }
    };
    log.flush()?;
    Ok(first)
}
