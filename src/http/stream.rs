//! Streaming subscription: `GET /{topic}/stream?from=X`, Server-Sent Events.
//!
//! Each message is one event whose `id` is its offset and whose `data` is the
//! payload (one `data:` line per payload line). A payload that is not UTF-8,
//! or holds a carriage return (which SSE would turn into a line break), comes
//! as `event: binary` with the payload in lowercase hex. A client that
//! reconnects with `Last-Event-ID: N` resumes at N + 1: no gap, no duplicate.
//! A stream ends when its client leaves, at once (the connection watches
//! for it: `serve.rs`), not at its next write.
//! A comment line (`: keep-alive`) goes out after every `heartbeat` (default
//! 15 s, `heartbeat=` to change, 10 ms to 10 min) of silence so proxies keep
//! the connection. A stream ends at shutdown and when its topic is deleted.
//! With `envelope=true` each event's `data` is the message's ndjson line
//! (as a batch scan gives it: key, headers and timestamp of a v1 message);
//! without, it is the value, v0 or v1 alike.
//! A read error (a damaged message, or a v1 record that does not parse)
//! ends it too, after one `event: error`
//! whose `data` is the API's error JSON, with the damaged message's
//! `offset`: reconnecting with `Last-Event-ID` would meet the same damage.
//!
//! Memory per stream is bounded: the body is pulled, so a new chunk (at most
//! [`CHUNK_BYTES`] plus one message) is read from the log only when the
//! previous one has gone to the socket. A consumer that stops reading holds
//! its position and at most one chunk, plus hyper's and the kernel's socket
//! buffers; the writer and other subscribers never wait for it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::watch;

use std::io::Write;

use super::envelope::View;
use super::serve::{LongPoll, Watched};
use super::{ApiError, AppState, Params, Path};
use crate::topic::{ReadLimits, Subscription, Topic, TopicError};

/// Largest chunk of events written at once.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Default silence before a keep-alive comment.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Shortest `heartbeat`: shorter ones are raised to it.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(10);
/// Longest `heartbeat`: longer ones are lowered to it (proxies drop
/// connections silent for minutes).
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(600);

struct Stream {
    topic: Arc<Topic>,
    sub: Subscription,
    stop: watch::Receiver<bool>,
    heartbeat: Duration,
    /// A read failed and its `error` event went out: the next call ends.
    ended: bool,
    /// `envelope=true`: each event's data is the message's ndjson line.
    envelope: bool,
    /// Counts the stream in `netlog_streams` while it is open.
    _open: super::metrics::OpenGuard,
    /// Ends the stream when its client leaves, even while nothing is
    /// written (see `serve.rs`).
    _watched: Option<Watched>,
}

/// `GET /{topic}/stream?from=X[&heartbeat=D]`.
pub async fn stream(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
    long_poll: Option<Extension<LongPoll>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    let from = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .and_then(|id| id.checked_add(1))
            .ok_or_else(|| ApiError::InvalidOffset("Last-Event-ID is not an offset".into()))?,
        None => super::resolve_offset(&topic, params.get("from").unwrap_or("")).await?,
    };
    let heartbeat = match params.get("heartbeat") {
        None => DEFAULT_HEARTBEAT,
        Some(h) => crate::duration::parse_duration(h)
            .map_err(|e| ApiError::InvalidDuration(e.to_string()))?
            .clamp(MIN_HEARTBEAT, MAX_HEARTBEAT),
    };
    let sub = topic.subscribe(from).await?;
    let stream = Stream {
        topic,
        sub,
        stop: state.shutdown.clone(),
        heartbeat,
        ended: false,
        envelope: params.get("envelope").is_some_and(super::topics::truthy),
        _open: super::metrics::OpenGuard::stream(&state.metrics),
        _watched: long_poll.map(|Extension(l)| l.watch()),
    };
    let hello =
        futures_util::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b": ok\n\n")) });
    let events = futures_util::stream::unfold(stream, next_chunk);
    let body = axum::body::Body::from_stream(futures_util::StreamExt::chain(hello, events));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response())
}

/// The next chunk of events, a keep-alive after `heartbeat` of silence, or
/// the end: at shutdown, when the topic is deleted, or on a read error.
async fn next_chunk(mut s: Stream) -> Option<(Result<Bytes, Infallible>, Stream)> {
    if s.ended {
        return None;
    }
    let limits = ReadLimits {
        messages: usize::MAX,
        bytes: CHUNK_BYTES,
        bound: None,
    };
    let messages = match s.sub.next(&s.topic, limits, s.heartbeat, &s.stop).await {
        Ok(m) => m,
        Err(TopicError::ShuttingDown | TopicError::Deleted) => return None,
        Err(e) => {
            tracing::error!(topic = %s.topic.name(), error = %crate::topic::ErrorChain(&e), "stream ended by a read error");
            // The last event says why, in the API's error shape (with the
            // offset of a damaged message), so a client does not take the
            // end for a dropped connection and reconnect into it forever.
            let body = ApiError::from(e).body().to_json();
            s.ended = true;
            return Some((
                Ok(Bytes::from(format!("event: error\ndata: {body}\n\n"))),
                s,
            ));
        }
    };
    if messages.is_empty() {
        return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), s));
    }
    let size: usize = messages.iter().map(|m| m.payload.len() * 2 + 64).sum();
    let mut buf = Vec::with_capacity(size);
    for m in &messages {
        match View::of(m) {
            Ok(v) if s.envelope => write_envelope(&mut buf, &v),
            Ok(v) => write_event(&mut buf, v.offset, &v.value),
            // A damaged record ends the stream as a damaged message does,
            // after the events before it.
            Err(e) => {
                tracing::error!(topic = %s.topic.name(), offset = m.offset, "stream ended by a record that does not parse");
                let _ = write!(buf, "event: error\ndata: {}\n\n", e.body().to_json());
                s.ended = true;
                break;
            }
        }
    }
    Some((Ok(Bytes::from(buf)), s))
}

/// Appends one SSE event whose data is `v`'s ndjson line (one line: JSON
/// escapes every line break).
fn write_envelope(buf: &mut Vec<u8>, v: &View) {
    let _ = write!(buf, "id: {}\ndata: ", v.offset);
    v.ndjson_line(buf);
    buf.extend_from_slice(b"\n\n");
}

/// Appends one SSE event for the message at `offset` whose value is
/// `payload`.
pub fn write_event(buf: &mut Vec<u8>, offset: u64, payload: &[u8]) {
    match std::str::from_utf8(payload) {
        Ok(text) if !text.contains('\r') => {
            let _ = writeln!(buf, "id: {}", offset);
            for line in text.split('\n') {
                buf.extend_from_slice(b"data: ");
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
            }
        }
        _ => {
            let _ = write!(buf, "event: binary\nid: {}\ndata: ", offset);
            crate::encode::hex_into(buf, payload);
            buf.push(b'\n');
        }
    }
    buf.push(b'\n');
}
