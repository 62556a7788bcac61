//! A topic's counters and the facts a metrics scrape reads from it.
//!
//! [`TopicStats`] is bumped once per acknowledged publish (not per message):
//! two relaxed `fetch_add`s and one histogram observation, all atomics, so
//! the publish path takes no lock for metrics. Everything else a scrape
//! shows is read from the topic at scrape time, without a lock a publish
//! waits on: the latest offset is an atomic, the segment list is behind a
//! read lock that only a roll takes for writing, scanner positions are
//! atomics behind the scanner map's lock (never taken by a publish), and
//! plugin counters are the plugin host's atomics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use uuid::Uuid;

use super::{Batch, Embedded};
use crate::histogram::{Histogram, HistogramSnapshot};
use crate::message::HEADER_BYTES;
use crate::plugin::{CallStats, WasmCodec};

/// Which route a publish came through: `POST /{topic}/payload` carries one
/// message, `POST /{topic}/messages` a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishRoute {
    /// One message.
    Payload,
    /// A batch.
    Messages,
}

impl PublishRoute {
    /// The `route` label value.
    pub fn label(self) -> &'static str {
        match self {
            PublishRoute::Payload => "payload",
            PublishRoute::Messages => "messages",
        }
    }
}

/// Counters of one topic's publishes. See the module docs.
#[derive(Debug, Default)]
pub struct TopicStats {
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    publish_payload: Histogram,
    publish_messages: Histogram,
}

impl TopicStats {
    /// Counts one acknowledged publish of `messages` messages holding
    /// `bytes` payload bytes, which took `took` from call to answer.
    pub(crate) fn published(&self, route: PublishRoute, messages: u64, bytes: u64, took: Duration) {
        self.messages_in.fetch_add(messages, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        self.latency(route).observe(took);
    }

    fn latency(&self, route: PublishRoute) -> &Histogram {
        match route {
            PublishRoute::Payload => &self.publish_payload,
            PublishRoute::Messages => &self.publish_messages,
        }
    }

    /// Messages acknowledged since start.
    pub fn messages_in(&self) -> u64 {
        self.messages_in.load(Ordering::Relaxed)
    }

    /// Payload bytes acknowledged since start.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Publish latencies through `route`.
    pub fn publish_seconds(&self, route: PublishRoute) -> HistogramSnapshot {
        self.latency(route).snapshot()
    }
}

impl Batch {
    /// The route this kind of publish comes through.
    pub(crate) fn route(&self) -> PublishRoute {
        match self {
            Batch::One(_) => PublishRoute::Payload,
            Batch::Framed { .. } => PublishRoute::Messages,
        }
    }

    /// Payload bytes, message headers left out.
    pub(crate) fn payload_bytes(&self) -> u64 {
        match self {
            Batch::One(p) => p.len() as u64,
            Batch::Framed { plain, count } => {
                (plain.len() as u64).saturating_sub(u64::from(*count) * HEADER_BYTES as u64)
            }
        }
    }
}

/// A topic's size, read at scrape time.
#[derive(Clone, Copy, Debug)]
pub struct TopicGauges {
    /// The latest readable offset, -1 when empty.
    pub latest_offset: i64,
    /// Segments on disk.
    pub segments: u64,
    /// Data and index bytes on disk.
    pub disk_bytes: u64,
}

/// One plugin bound to a topic, and its counters.
#[derive(Clone, Debug)]
pub struct PluginStats {
    /// The plugin's name.
    pub plugin: String,
    /// `validation`, `compression` or `retention`.
    pub hook: &'static str,
    /// Its counters.
    pub stats: CallStats,
}

/// Compression values a plugin codec may take.
const PLUGIN_CODEC_VALUES: std::ops::RangeInclusive<u8> = 4..=15;

impl Embedded {
    /// The publish counters.
    pub fn stats(&self) -> &TopicStats {
        &self.stats
    }

    /// Latest offset, segment count and disk use.
    pub fn gauges(&self) -> TopicGauges {
        let segments = self.log().segment_list();
        TopicGauges {
            latest_offset: self.log().latest_offset(),
            segments: segments.len() as u64,
            disk_bytes: segments.iter().map(|s| s.disk_size()).sum(),
        }
    }

    /// Each persistent scanner and the messages between its next offset and
    /// the end of the topic.
    pub fn scanner_lags(&self) -> Vec<(Uuid, u64)> {
        let end = self.next_offset();
        self.scanners()
            .iter()
            .filter(|s| s.persistent)
            .map(|s| (s.id, end.saturating_sub(s.next())))
            .collect()
    }

    /// Every plugin bound to the topic, with its counters.
    pub fn plugin_stats(&self) -> Vec<PluginStats> {
        let mut out = Vec::new();
        let hooks = self.hooks();
        if let Some(v) = &hooks.validator {
            out.push(PluginStats {
                plugin: v.plugin().name().to_string(),
                hook: "validation",
                stats: v.stats(),
            });
        }
        for value in PLUGIN_CODEC_VALUES {
            let codec = self.log().codecs().get(value);
            let wasm = codec.and_then(|c| c.as_any()?.downcast_ref::<WasmCodec>());
            if let Some(c) = wasm {
                out.push(PluginStats {
                    plugin: c.plugin().name().to_string(),
                    hook: "compression",
                    stats: c.stats(),
                });
            }
        }
        if let Some(r) = &hooks.retention {
            out.push(PluginStats {
                plugin: r.plugin().name().to_string(),
                hook: "retention",
                stats: r.stats(),
            });
        }
        out
    }
}
