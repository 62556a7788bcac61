//! `GET /_metrics`: the Prometheus text exposition (format 0.0.4), and the
//! HTTP layer's own counters.
//!
//! Nothing is registered per topic. A scrape builds the exposition from the
//! topics as they are at that moment, through one custom `prometheus-client`
//! collector: per topic it reads [`Topic`]'s atomics and size, per bound
//! plugin the host's counters, so a scrape costs O(topics + plugins), keeps
//! no state for deleted topics, and takes no lock a publish waits on (see
//! `topic/stats.rs`). It runs on the blocking pool, so a scrape of many
//! topics does not stall an async worker.
//!
//! HTTP requests are counted by route pattern (`/{topic}/scan`, never the
//! topic's name) and status code in a fixed table of atomics, filled by
//! `front.rs` as each answer is ready. `netlog_long_polls` counts scan requests in
//! progress (a scan that waits is a long poll), `netlog_streams` open
//! Server-Sent Events streams, each held by an [`OpenGuard`];
//! `netlog_answer_bytes_in_flight` the room batch-scan answers hold in the
//! answer budget (`answers.rs`).
//!
//! `process_*` series are read from `/proc/self` at scrape time (Linux; on
//! other systems they are left out).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::routes::{Route, UNMATCHED};
use super::{ApiError, AppState};
use crate::broker::Broker;
use crate::histogram::HistogramSnapshot;
use crate::topic::{PluginStats, PublishRoute, Topic, TopicError, TopicGauges};

/// Status codes are 100 to 599.
const FIRST_CODE: u16 = 100;
const CODES: usize = 500;

/// The HTTP layer's counters. See the module docs.
pub struct HttpMetrics {
    /// `[route][code - 100]`.
    requests: Vec<[AtomicU64; CODES]>,
    long_polls: AtomicI64,
    streams: AtomicI64,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: (0..=UNMATCHED)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            long_polls: AtomicI64::new(0),
            streams: AtomicI64::new(0),
        }
    }
}

impl HttpMetrics {
    /// Answers counted for `route` with `code`.
    #[cfg(test)]
    pub(crate) fn answered(&self, route: usize, code: u16) -> u64 {
        self.requests[route][usize::from(code - FIRST_CODE)].load(Ordering::Relaxed)
    }

    /// Scan requests in progress.
    #[cfg(test)]
    pub(crate) fn long_polls(&self) -> i64 {
        self.long_polls.load(Ordering::Relaxed)
    }

    /// Counts one answer with `status` to a request of `route` (a row of
    /// [`Route::ALL`], or [`UNMATCHED`]).
    pub(crate) fn count(&self, route: usize, status: StatusCode) {
        let code = usize::from(status.as_u16().saturating_sub(FIRST_CODE));
        if let Some(slot) = self.requests.get(route).and_then(|row| row.get(code)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl HttpMetrics {
    /// Answers so far by class: `[1xx, 2xx, 3xx, 4xx, 5xx]`, for `/_stats`.
    pub(super) fn by_class(&self) -> [u64; 5] {
        let mut classes = [0; 5];
        for codes in &self.requests {
            for (c, n) in codes.iter().enumerate() {
                classes[c / 100] += n.load(Ordering::Relaxed);
            }
        }
        classes
    }

    /// Scan requests in progress and open streams, for `/_stats`.
    pub(super) fn open(&self) -> (i64, i64) {
        (
            self.long_polls.load(Ordering::Relaxed),
            self.streams.load(Ordering::Relaxed),
        )
    }
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

/// Holds a gauge up by one while alive.
pub struct OpenGuard {
    gauge: Arc<HttpMetrics>,
    which: fn(&HttpMetrics) -> &AtomicI64,
}

impl OpenGuard {
    fn new(gauge: Arc<HttpMetrics>, which: fn(&HttpMetrics) -> &AtomicI64) -> OpenGuard {
        which(&gauge).fetch_add(1, Ordering::Relaxed);
        OpenGuard { gauge, which }
    }

    /// Counts a scan request in progress (a long poll) until dropped.
    pub(crate) fn long_poll(metrics: &Arc<HttpMetrics>) -> OpenGuard {
        OpenGuard::new(metrics.clone(), |m| &m.long_polls)
    }

    /// Counts an open stream until dropped.
    pub fn stream(metrics: &Arc<HttpMetrics>) -> OpenGuard {
        OpenGuard::new(metrics.clone(), |m| &m.streams)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        (self.which)(&self.gauge).fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /_metrics`.
pub async fn metrics_get(State(state): State<AppState>) -> Result<Response, ApiError> {
    let collector = Scrape {
        broker: state.broker.clone(),
        http: state.metrics.clone(),
        answers: state.answers.clone(),
    };
    let text = crate::topic::blocking(move || Ok::<_, TopicError>(render(collector))).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}

/// Encodes one scrape.
fn render(scrape: Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String does not fail");
    out
}

/// The collector behind one scrape.
struct Scrape {
    broker: Arc<Broker>,
    http: Arc<HttpMetrics>,
    answers: Arc<super::answers::AnswerBudget>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

/// The label set of a series without labels.
const NO_LABELS: [(&str, &str); 0] = [];

/// What a scrape reads from one topic, read once.
pub(super) struct TopicRow {
    pub(super) topic: Arc<Topic>,
    pub(super) messages_out: u64,
    pub(super) publish: [(PublishRoute, HistogramSnapshot); 2],
    pub(super) gauges: TopicGauges,
    pub(super) lags: Vec<(String, u64)>,
    pub(super) plugins: Vec<PluginStats>,
}

impl TopicRow {
    pub(super) fn read(topic: Arc<Topic>) -> TopicRow {
        let stats = topic.stats();
        TopicRow {
            messages_out: topic.messages_out(),
            publish: [PublishRoute::Payload, PublishRoute::Messages]
                .map(|r| (r, stats.publish_seconds(r))),
            gauges: topic.gauges(),
            lags: topic
                .scanner_lags()
                .into_iter()
                .map(|(id, lag)| (id.to_string(), lag))
                .collect(),
            plugins: topic.plugin_stats(),
            topic,
        }
    }
}

type Enc<'a> = DescriptorEncoder<'a>;
type Fmt = Result<(), std::fmt::Error>;

/// One family of counters or gauges: a descriptor, then one line per label
/// set.
fn family<L: EncodeLabelSet>(
    enc: &mut Enc<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (L, f64)>,
) -> Fmt {
    let mut metric = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        let mut m = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => m.encode_counter::<NoLabelSet, _, u64>(&value, None)?,
            _ => m.encode_gauge(&value)?,
        }
    }
    Ok(())
}

/// One family of histograms, those with observations only.
fn histograms<L: EncodeLabelSet>(
    enc: &mut Enc<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, HistogramSnapshot)>,
) -> Fmt {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    // An empty histogram is 19 lines of zeros; with a route most topics
    // never use, leaving it out halves a large exposition.
    for (labels, h) in rows.into_iter().filter(|(_, h)| h.count > 0) {
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(h.sum_seconds(), h.count, &h.seconds_buckets(), None)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: Enc<'_>) -> Fmt {
        let rows: Vec<TopicRow> = self
            .broker
            .topics()
            .into_iter()
            .map(TopicRow::read)
            .collect();
        encode_topics(&mut enc, &rows)?;
        encode_plugins(&mut enc, &rows)?;
        let groups: Vec<_> = self
            .broker
            .groups()
            .all()
            .iter()
            .map(|g| g.metrics())
            .collect();
        encode_groups(&mut enc, &groups)?;
        self.encode_http(&mut enc)?;
        encode_process(&mut enc)
    }
}

fn encode_topics(enc: &mut Enc<'_>, rows: &[TopicRow]) -> Fmt {
    use MetricType::{Counter, Gauge};
    let per_topic = |f: fn(&TopicRow) -> f64| {
        rows.iter()
            .map(move |r| ([("topic", r.topic.name())], f(r)))
    };
    family(
        enc,
        "netlog_messages_in",
        "Messages acknowledged.",
        Counter,
        per_topic(|r| r.topic.stats().messages_in() as f64),
    )?;
    family(
        enc,
        "netlog_bytes_in",
        "Payload bytes acknowledged.",
        Counter,
        per_topic(|r| r.topic.stats().bytes_in() as f64),
    )?;
    family(
        enc,
        "netlog_messages_out",
        "Messages handed to consumers (scan, stream, payload read).",
        Counter,
        per_topic(|r| r.messages_out as f64),
    )?;
    histograms(
        enc,
        "netlog_publish_seconds",
        "Publish latency, from the request's body to its acknowledgment.",
        rows.iter().flat_map(|r| {
            r.publish
                .iter()
                .map(|(route, h)| ([("topic", r.topic.name()), ("route", route.label())], *h))
        }),
    )?;
    family(
        enc,
        "netlog_latest_offset",
        "Latest readable offset (-1 when empty).",
        Gauge,
        per_topic(|r| r.gauges.latest_offset as f64),
    )?;
    family(
        enc,
        "netlog_segments",
        "Segments on disk.",
        Gauge,
        per_topic(|r| r.gauges.segments as f64),
    )?;
    family(
        enc,
        "netlog_disk_bytes",
        "Data and index bytes on disk.",
        Gauge,
        per_topic(|r| r.gauges.disk_bytes as f64),
    )?;
    family(
        enc,
        "netlog_scanner_lag",
        "Messages between a persistent scanner's next offset and the end of its topic.",
        Gauge,
        rows.iter().flat_map(|r| {
            r.lags.iter().map(|(id, lag)| {
                (
                    [("topic", r.topic.name()), ("scanner", id.as_str())],
                    *lag as f64,
                )
            })
        }),
    )?;
    encode_dedup(enc, rows)
}

/// The idempotency families (`topic/dedup.rs`).
fn encode_dedup(enc: &mut Enc<'_>, rows: &[TopicRow]) -> Fmt {
    use MetricType::{Counter, Gauge};
    let per_topic = |f: fn(&TopicRow) -> f64| {
        rows.iter()
            .map(move |r| ([("topic", r.topic.name())], f(r)))
    };
    family(
        enc,
        "netlog_dedup_keys",
        "Idempotency keys remembered.",
        Gauge,
        per_topic(|r| r.topic.dedup().map_or(0.0, |d| d.keys() as f64)),
    )?;
    family(
        enc,
        "netlog_dedup_hits",
        "Retries answered with the original answer.",
        Counter,
        per_topic(|r| r.topic.dedup().map_or(0.0, |d| d.hits() as f64)),
    )?;
    family(
        enc,
        "netlog_dedup_conflicts",
        "Idempotency keys refused: reused for other messages (payload) or in flight.",
        Counter,
        rows.iter().flat_map(|r| {
            let (payload, in_flight) = r.topic.dedup().map_or((0, 0), |d| d.conflicts());
            [
                (
                    [("topic", r.topic.name()), ("kind", "payload")],
                    payload as f64,
                ),
                (
                    [("topic", r.topic.name()), ("kind", "in_flight")],
                    in_flight as f64,
                ),
            ]
        }),
    )?;
    family(
        enc,
        "netlog_dedup_evicted",
        "Idempotency keys forgotten at dedup_max_keys before their window ended.",
        Counter,
        per_topic(|r| r.topic.dedup().map_or(0.0, |d| d.evicted() as f64)),
    )
}

fn encode_groups(enc: &mut Enc<'_>, groups: &[crate::group::GroupMetrics]) -> Fmt {
    use MetricType::{Counter, Gauge};
    let per = |f: fn(&crate::group::GroupMetrics) -> f64| {
        groups.iter().map(move |g| {
            (
                [("topic", g.topic.as_str()), ("group", g.group.as_str())],
                f(g),
            )
        })
    };
    let labelled = |g: &'_ crate::group::GroupMetrics, key: &'static str, value: &'static str| {
        [
            ("topic", g.topic.clone()),
            ("group", g.group.clone()),
            (key, value.to_string()),
        ]
    };
    family(
        enc,
        "netlog_group_backlog_messages",
        "Messages of the topic the group has not delivered yet.",
        Gauge,
        per(|g| g.info.backlog as f64),
    )?;
    family(
        enc,
        "netlog_group_pending_messages",
        "Pending entries of a group, by state.",
        Gauge,
        groups.iter().flat_map(|g| {
            g.info
                .pending
                .iter()
                .map(move |(state, n)| (labelled(g, "state", state), *n as f64))
        }),
    )?;
    family(
        enc,
        "netlog_group_unacked_messages",
        "Backlog plus pending entries.",
        Gauge,
        per(|g| g.info.unacked as f64),
    )?;
    family(
        enc,
        "netlog_group_oldest_unacked_age_seconds",
        "Age of the oldest delivery not yet settled (0 when none).",
        Gauge,
        per(|g| {
            g.info
                .oldest_unacked
                .as_ref()
                .map_or(0.0, |o| o.age_seconds)
        }),
    )?;
    family(
        enc,
        "netlog_group_receive_waiting",
        "Receives waiting for a message.",
        Gauge,
        per(|g| g.info.waiting_receives as f64),
    )?;
    family(
        enc,
        "netlog_group_deliveries",
        "Deliveries, first ones and redeliveries.",
        Counter,
        groups.iter().flat_map(|g| {
            [
                (
                    labelled(g, "kind", "first"),
                    g.info.counters.delivered as f64,
                ),
                (
                    labelled(g, "kind", "redelivery"),
                    g.info.counters.redelivered as f64,
                ),
            ]
        }),
    )?;
    family(
        enc,
        "netlog_group_settles",
        "Settled leases by operation and result.",
        Counter,
        groups.iter().flat_map(|g| {
            g.settles.iter().map(move |((op, result), n)| {
                (
                    [
                        ("topic", g.topic.clone()),
                        ("group", g.group.clone()),
                        ("op", op.to_string()),
                        ("result", result.to_string()),
                    ],
                    *n as f64,
                )
            })
        }),
    )?;
    family(
        enc,
        "netlog_group_lease_expirations",
        "Leases that ran out.",
        Counter,
        per(|g| g.info.counters.expired as f64),
    )?;
    family(
        enc,
        "netlog_group_dead_lettered",
        "Messages written to the dead-letter topic, by reason.",
        Counter,
        groups.iter().flat_map(|g| {
            g.dead_lettered
                .iter()
                .map(move |(reason, n)| (labelled(g, "reason", reason), *n as f64))
        }),
    )?;
    family(
        enc,
        "netlog_group_dead_letter_failures",
        "Dead-letter writes that failed (the entry stays parked and is retried).",
        Counter,
        per(|g| g.dead_letter_failures as f64),
    )?;
    family(
        enc,
        "netlog_group_receive_empty",
        "Receives that ended with nothing, by reason.",
        Counter,
        groups.iter().flat_map(|g| {
            g.empty
                .iter()
                .map(move |(reason, n)| (labelled(g, "reason", reason), *n as f64))
        }),
    )
}

fn encode_plugins(enc: &mut Enc<'_>, rows: &[TopicRow]) -> Fmt {
    use MetricType::{Counter, Gauge};
    let plugins = || {
        rows.iter().flat_map(|r| {
            r.plugins.iter().map(move |p| {
                let labels = [
                    ("plugin", p.plugin.as_str()),
                    ("topic", r.topic.name()),
                    ("hook", p.hook),
                ];
                (labels, &p.stats)
            })
        })
    };
    family(
        enc,
        "netlog_plugin_calls",
        "Calls into a plugin.",
        Counter,
        plugins().map(|(l, s)| (l, s.calls as f64)),
    )?;
    family(
        enc,
        "netlog_plugin_rejections",
        "Messages a validator rejected.",
        Counter,
        plugins()
            .filter(|(l, _)| l[2].1 == "validation")
            .map(|(l, s)| (l, s.rejected as f64)),
    )?;
    family(
        enc,
        "netlog_plugin_failures",
        "Failed plugin calls, by kind (trap, timeout, memory, error, bad_answer).",
        Counter,
        plugins().flat_map(|(l, s)| {
            s.failures_by_kind()
                .map(|(kind, n)| ([l[0], l[1], l[2], ("kind", kind)], n as f64))
        }),
    )?;
    histograms(
        enc,
        "netlog_plugin_call_seconds",
        "Time per plugin call, instance creation included.",
        plugins().map(|(l, s)| (l, s.call_seconds)),
    )?;
    family(
        enc,
        "netlog_plugin_fuel",
        "Fuel used by calls (plugins with a fuel limit).",
        Counter,
        plugins().map(|(l, s)| (l, s.fuel_used as f64)),
    )?;
    family(
        enc,
        "netlog_plugin_memory_peak_bytes",
        "Largest linear memory an instance grew to.",
        Gauge,
        plugins().map(|(l, s)| (l, s.peak_memory_bytes as f64)),
    )
}

impl Scrape {
    fn encode_http(&self, enc: &mut Enc<'_>) -> Fmt {
        let mut rows = Vec::new();
        for (i, codes) in self.http.requests.iter().enumerate() {
            let route = Route::of_row(i).map_or("unmatched", Route::pattern);
            for (c, n) in codes.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let code = (c as u16 + FIRST_CODE).to_string();
                    rows.push(([("route", route.to_string()), ("code", code)], n as f64));
                }
            }
        }
        family(
            enc,
            "netlog_http_requests",
            "HTTP requests answered, by route pattern and status code.",
            MetricType::Counter,
            rows,
        )?;
        let gauge = |a: &AtomicI64| [(NO_LABELS, a.load(Ordering::Relaxed) as f64)];
        family(
            enc,
            "netlog_long_polls",
            "Scan requests in progress (long polls included).",
            MetricType::Gauge,
            gauge(&self.http.long_polls),
        )?;
        family(
            enc,
            "netlog_streams",
            "Open Server-Sent Events streams.",
            MetricType::Gauge,
            gauge(&self.http.streams),
        )?;
        family(
            enc,
            "netlog_answer_bytes_in_flight",
            "Bytes batch-scan answers hold in the answer budget.",
            MetricType::Gauge,
            [(NO_LABELS, self.answers.in_flight() as f64)],
        )?;
        let (spins, catches, seconds) = crate::idle_spin::figures();
        family(
            enc,
            "netlog_idle_spins",
            "Times a worker out of work watched for new work before it slept ([server] idle_spin).",
            MetricType::Counter,
            [(NO_LABELS, spins as f64)],
        )?;
        family(
            enc,
            "netlog_idle_spin_catches",
            "Idle spins during which new work came.",
            MetricType::Counter,
            [(NO_LABELS, catches as f64)],
        )?;
        family(
            enc,
            "netlog_idle_spin_seconds",
            "Time workers spent in idle spins.",
            MetricType::Counter,
            [(NO_LABELS, seconds)],
        )
    }
}

/// Linux's clock ticks per second for `/proc/self/stat` (USER_HZ, 100 on
/// every mainstream architecture).
const USER_HZ: f64 = 100.0;

/// The process's own figures, read from `/proc/self` (each `None` where
/// it cannot be read): for `process_*` and `/_stats`.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ProcessFigures {
    /// Resident memory, in bytes.
    pub(super) resident_bytes: Option<u64>,
    /// Open file descriptors.
    pub(super) open_fds: Option<usize>,
    /// User and system CPU time, in seconds.
    pub(super) cpu_seconds: Option<f64>,
}

impl ProcessFigures {
    /// Reads them now.
    pub(super) fn read() -> ProcessFigures {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(Iterator::count);
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name (which may hold spaces) in parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime and stime are fields 14 and 15; `fields` starts at field 3.
        let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
        let cpu_seconds = match (ticks(14), ticks(15)) {
            (Some(user), Some(system)) => Some((user + system) as f64 / USER_HZ),
            _ => None,
        };
        ProcessFigures {
            resident_bytes: rss_kib.map(|kib| kib * 1024),
            open_fds,
            cpu_seconds,
        }
    }
}

/// `process_*` from `/proc/self`; absent where that cannot be read.
fn encode_process(enc: &mut Enc<'_>) -> Fmt {
    let figures = ProcessFigures::read();
    if let Some(bytes) = figures.resident_bytes {
        family(
            enc,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            MetricType::Gauge,
            [(NO_LABELS, bytes as f64)],
        )?;
    }
    if let Some(n) = figures.open_fds {
        family(
            enc,
            "process_open_fds",
            "Open file descriptors.",
            MetricType::Gauge,
            [(NO_LABELS, n as f64)],
        )?;
    }
    if let Some(seconds) = figures.cpu_seconds {
        family(
            enc,
            "process_cpu_seconds",
            "User and system CPU time, in seconds.",
            MetricType::Counter,
            [(NO_LABELS, seconds)],
        )?;
    }
    Ok(())
}
