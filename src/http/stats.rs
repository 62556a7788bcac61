//! `GET /_stats`: one JSON document with every visible topic's counters, so
//! the console's topics page is one request however many topics there are.
//!
//! The figures are the ones `/_metrics` exposes, read by the same code
//! (`metrics.rs`'s `TopicRow`, from `Topic`'s atomics and sizes, on the
//! blocking pool): per topic, messages and bytes in, messages out, latest
//! offset, segments, disk bytes, scanners and the largest persistent
//! scanner's lag, the publish latency histogram (counts per bucket, the
//! bounds once at the top), and per bound plugin its counters and whether
//! it is unavailable; and, only for a topic that has consumer groups, each
//! group's backlog, unacked messages, pending entries by state, oldest
//! unacked age and consumers seen (the group's own info has the rest). All
//! are counters or gauges as of now: rates and
//! trends are the reader's to compute from two samples, and the broker keeps
//! no history.
//!
//! The topic list is cut by rights as `GET /` is (the front's
//! `ListFilter`); the `broker` part (answers by class, long polls, streams,
//! memory, CPU) is there only for a caller with `admin` (anyone, with
//! authentication off).

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::ListFilter;
use super::metrics::{ProcessFigures, TopicRow};
use super::{ApiError, AppState, rfc3339};
use crate::broker::Broker;
use crate::histogram::BUCKETS;
use crate::topic::TopicError;

/// `GET /_stats`.
pub async fn stats_get(
    State(state): State<AppState>,
    filter: Option<axum::Extension<ListFilter>>,
) -> Result<Response, ApiError> {
    let filter = filter.map(|f| f.0);
    let admin = filter.as_ref().is_none_or(ListFilter::admin);
    let for_admin = admin.then(|| state.clone());
    let broker = state.broker.clone();
    // Reading many topics, and /proc, is kept off the async workers.
    let (topics, broker_part) = crate::topic::blocking(move || {
        let mut groups = groups_by_topic(&broker);
        let rows: Vec<Value> = broker
            .topics()
            .into_iter()
            .filter(|t| filter.as_ref().is_none_or(|f| f.allows(t.name())))
            .map(|t| {
                let mut row = topic_json(&TopicRow::read(t));
                if let Some(list) = groups.remove(row["name"].as_str().unwrap_or_default()) {
                    row["groups"] = Value::Array(list);
                }
                row
            })
            .collect();
        Ok::<_, TopicError>((rows, for_admin.as_ref().map(broker_json)))
    })
    .await?;
    let bounds: Vec<f64> = crate::histogram::HistogramSnapshot::default()
        .seconds_buckets()
        .iter()
        .map(|(bound, _)| *bound)
        .filter(|b| b.is_finite())
        .collect();
    let mut doc = json!({
        "time": rfc3339(std::time::SystemTime::now()),
        "publish_bounds_seconds": bounds,
        "topics": topics,
    });
    if let Some(part) = broker_part {
        doc["broker"] = part;
    }
    Ok(axum::Json(doc).into_response())
}

/// One topic's figures.
fn topic_json(row: &TopicRow) -> Value {
    let topic = &row.topic;
    let stats = topic.stats();
    let mut publish = [0u64; BUCKETS];
    let (mut count, mut sum) = (0, 0.0);
    for (_, h) in &row.publish {
        for (total, n) in publish.iter_mut().zip(h.buckets) {
            *total += n;
        }
        count += h.count;
        sum += h.sum_seconds();
    }
    let plugins: Vec<Value> = row
        .plugins
        .iter()
        .map(|p| {
            let s = &p.stats;
            let failures: serde_json::Map<String, Value> = s
                .failures_by_kind()
                .iter()
                .map(|(kind, n)| (kind.to_string(), json!(n)))
                .collect();
            json!({
                "hook": p.hook, "plugin": p.plugin, "calls": s.calls,
                "rejections": s.rejected, "failures": failures,
                "call_seconds_sum": s.call_seconds.sum_seconds(),
                "call_count": s.call_seconds.count, "fuel": s.fuel_used,
                "memory_peak_bytes": s.peak_memory_bytes,
            })
        })
        .collect();
    let unavailable = topic
        .hooks()
        .unavailable
        .as_ref()
        .map(|(plugin, reason)| json!({"plugin": plugin, "reason": reason}));
    json!({
        "name": topic.name(),
        "messages_in": stats.messages_in(),
        "bytes_in": stats.bytes_in(),
        "messages_out": row.messages_out,
        "latest_offset": row.gauges.latest_offset,
        "segments": row.gauges.segments,
        "disk_bytes": row.gauges.disk_bytes,
        "scanners": topic.scanner_count(),
        "max_lag": row.lags.iter().map(|(_, lag)| *lag).max(),
        "publish": {"count": count, "sum_seconds": sum, "buckets": publish},
        "plugins": plugins,
        "unavailable": unavailable,
    })
}

/// Each topic's consumer groups, by name, for the topics that have any.
fn groups_by_topic(broker: &Broker) -> HashMap<String, Vec<Value>> {
    let mut by_topic: HashMap<String, Vec<(String, Value)>> = HashMap::new();
    for group in broker.groups().all() {
        let i = group.info();
        let figures = json!({
            "name": i.name, "backlog": i.backlog, "unacked": i.unacked, "pending": i.pending,
            "oldest_unacked_seconds": i.oldest_unacked.map(|o| o.age_seconds),
            "consumers": i.consumers.len(),
        });
        by_topic.entry(i.topic).or_default().push((i.name, figures));
    }
    by_topic
        .into_iter()
        .map(|(topic, mut list)| {
            list.sort_by(|a, b| a.0.cmp(&b.0));
            (topic, list.into_iter().map(|(_, v)| v).collect())
        })
        .collect()
}

/// The broker's own figures (admin only).
fn broker_json(state: &AppState) -> Value {
    let classes = state.metrics.by_class();
    let (long_polls, streams) = state.metrics.open();
    let process = ProcessFigures::read();
    json!({
        "answers": {
            "1xx": classes[0], "2xx": classes[1], "3xx": classes[2],
            "4xx": classes[3], "5xx": classes[4],
        },
        "long_polls": long_polls,
        "streams": streams,
        "answer_bytes_in_flight": state.answers.in_flight(),
        "resident_bytes": process.resident_bytes,
        "open_fds": process.open_fds,
        "cpu_seconds": process.cpu_seconds,
    })
}
