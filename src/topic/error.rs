//! Errors of the topic layer.
//!
//! Every variant keeps its cause as a `#[source]`, so the HTTP layer can log
//! the whole chain and answer with the right status. One write answers many
//! publishes (group commit), so a write's cause is shared as an `Arc`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::log::LogError;
use crate::message::FormatError;
use crate::plugin::PluginError;

/// Errors of one topic's operations.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The topic was deleted while the request was on its way; answered like
    /// any request on a topic that does not exist.
    #[error("topic deleted")]
    Deleted,
    /// The topic no longer takes writes because the broker is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// No scanner of that id (or the id is not a UUID).
    #[error("scanner not found")]
    ScannerNotFound,
    /// A v1 message (key, headers, timestamp, idempotency key) for a topic
    /// whose `message_format` is `v0`.
    #[error(
        "this topic's message_format is v0: keys, headers, timestamps and idempotency keys are refused so Go netlog can still read it"
    )]
    V0Only,
    /// Deleting the topic needs `force`: consumers are attached.
    #[error("topic has {scanners} scanner(s) attached")]
    Busy { scanners: usize },
    /// A read or bookkeeping operation of the log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The write that carried this publish failed; nothing of it is readable.
    #[error("write failed")]
    Write(#[source] Arc<LogError>),
    /// The validator rejected message `index` of the publish.
    #[error("message {index} rejected by {plugin}: {reason}")]
    Rejected {
        plugin: String,
        index: usize,
        reason: String,
    },
    /// The validator failed (trap, timeout, error) and its policy is reject.
    #[error("plugin {plugin} failed")]
    PluginFailed {
        plugin: String,
        #[source]
        source: Arc<PluginError>,
    },
    /// The topic names a plugin the broker cannot provide: its publishes
    /// fail, its reads work.
    #[error("plugin {plugin} unavailable: {reason}")]
    PluginUnavailable { plugin: String, reason: String },
    /// A file operation of the topic (settings, scanner files) failed.
    #[error("I/O error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The writer panicked while writing the group that held this publish;
    /// nothing of it is readable, and the topic goes on.
    #[error("the writer panicked on this publish's group")]
    Panicked,
    /// The next message does not fit a scan's [`ReadBound`](super::ReadBound)
    /// (`needed` bytes, framing included): nothing was handed out and the
    /// scanner did not move.
    #[error("the next message needs {needed} bytes, over the read's bound")]
    OverBound { needed: usize },
    /// Blocking work panicked or was cancelled on the blocking pool.
    #[error("background task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The storage engine did not answer in time (JetStream: no leader, no
    /// quorum, no connection). For a publish (`publish`), whether it was
    /// stored is unknown: a retry with the same idempotency key is safe.
    #[error("engine unavailable: {reason}")]
    EngineUnavailable { reason: String, publish: bool },
    /// A publish over a limit of the storage engine (JetStream: the
    /// servers' `max_payload`, or the messages of one atomic batch).
    #[error("over the engine's limit of {limit} {what}")]
    TooLarge { limit: u64, what: &'static str },
    /// The storage engine answered with an error.
    #[error("engine error while {what}: {source}")]
    Engine {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TopicError {
    /// Whether this is a full disk (or quota): a refused write, or a
    /// settings or scanner file that could not be written for lack of space.
    pub fn is_no_space(&self) -> bool {
        match self {
            TopicError::Write(e) => e.is_no_space(),
            TopicError::Log(e) => e.is_no_space(),
            TopicError::Io { source, .. } => crate::log::is_no_space(source),
            _ => false,
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TopicError + '_ {
        move |source| TopicError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What a storage failure means to a client: the distinctions an answer
/// makes, so that callers above the topic layer never match the log's
/// errors themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageFault<'a> {
    /// The offset is before the oldest or past the newest message.
    OffsetNotFound,
    /// The disk or quota is full; writes resume once space is freed.
    NoSpace,
    /// One entry was over the log's size limit.
    EntryTooLarge,
    /// The stored message at `offset` fails its checksum or framing.
    Corrupt { offset: u64 },
    /// A codec (`codec`, or `"unknown"` for a compression value no codec
    /// handles) failed on stored data; `detail` is the codec's own reason,
    /// when it gave one (else the error's text says it all).
    Codec {
        codec: &'a str,
        detail: Option<&'a str>,
    },
    /// Anything else: an internal error, whose chain goes to the log.
    Other,
}

impl TopicError {
    /// The storage fault behind this error, if it is one of the log's.
    pub fn storage_fault(&self) -> Option<StorageFault<'_>> {
        let log = match self {
            TopicError::Log(e) => e,
            TopicError::Write(e) => e.as_ref(),
            _ => return None,
        };
        Some(match log {
            LogError::OffsetNotFound(_) => StorageFault::OffsetNotFound,
            LogError::NoSpace { .. } => StorageFault::NoSpace,
            LogError::EntryTooLarge { .. } => StorageFault::EntryTooLarge,
            LogError::Corrupt {
                source: FormatError::Codec(c),
                ..
            } => StorageFault::Codec {
                codec: &c.codec,
                detail: Some(&c.reason),
            },
            LogError::Corrupt {
                source: FormatError::UnknownCodec(_),
                ..
            } => StorageFault::Codec {
                codec: "unknown",
                detail: None,
            },
            LogError::Corrupt { offset, .. } => StorageFault::Corrupt { offset: *offset },
            _ => StorageFault::Other,
        })
    }
}
