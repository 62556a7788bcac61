//! Scanners: create, delete, and scan (one message, or a batch with `max`).
//!
//! Batch consume (`max=N`) answers in one of two framings, chosen with
//! `Accept`: `application/x-ndjson` gives one JSON object per line,
//! `{"offset":N,"crc32":C,"message":"..."}` (a payload that is not UTF-8
//! comes as `"message_base64":"..."` instead, standard base64 with padding);
//! anything else gives the binary framing, each message as its 8-byte
//! big-endian offset followed by the message in netlog's framing (compver,
//! CRC-32, length, payload). Headers `X-Offset` (first offset) and `X-Count`
//! come with both. A v1 message's ndjson line adds `key`/`key_base64`,
//! `timestamp` and `headers`/`headers_base64` (`envelope.rs`); in the
//! binary framing it comes as a v0 frame of its value unless the scan asks
//! `format=1`, which gives every message as stored.
//!
//! A batch is bounded by count (`max`, at most [`MAX_SCAN_BATCH`]) and by
//! payload bytes (`max_bytes`, default [`DEFAULT_SCAN_BYTES`], at most
//! [`MAX_SCAN_BYTES`]); it always holds at least one message, whatever its
//! size. `wait` is at most [`MAX_WAIT`]: a longer one is clamped. A scan
//! waiting [`SHEDDABLE_WAIT`] or more may be shed by the connection cap (see
//! `serve.rs`): it then ends at once with the normal empty answer, `404 end
//! of topic`.
//!
//! Batch answers share the answer budget (`answers.rs`): a batch scan waits
//! for something to read holding nothing, then reserves room for its answer
//! and reads only what fits; past the budget it answers fewer messages, or
//! `503 server busy` when not even one fits within `answer_budget_wait`.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;

use super::answers::{BudgetedBody, FRAME_BYTES, Grant};
use super::envelope::View;
use super::serve::{LongPoll, WATCHED_WAIT};
use super::topics::truthy;
use super::{ApiError, AppState, Params, Path};
use crate::duration::{parse_duration, parse_size};
use crate::message::Message;
use crate::message::{self, PLAIN};
use crate::topic::{ReadLimits, ScannerEntry, Topic, TopicError};

/// How long a scan waits when `wait` is not given (netlog's default).
pub const DEFAULT_WAIT: Duration = Duration::from_millis(5);
/// Shortest `wait` that makes a scan a long poll the connection cap may
/// shed (see `serve.rs`): 1 s. Shorter waits end soon by themselves.
pub const SHEDDABLE_WAIT: Duration = Duration::from_secs(1);
// `unless_shed` sheds only the waits it watches.
const _: () = assert!(SHEDDABLE_WAIT.as_nanos() >= WATCHED_WAIT.as_nanos());
/// Longest `wait` honoured: 1 hour; longer ones are clamped to it.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Most messages one batch scan returns.
pub const MAX_SCAN_BATCH: usize = 100_000;
/// Default payload bytes of one batch scan: 16 MiB.
pub const DEFAULT_SCAN_BYTES: usize = 16 << 20;
/// Largest `max_bytes` of one batch scan: 64 MiB.
pub const MAX_SCAN_BYTES: usize = 64 << 20;

/// `POST /{topic}/scanner?from=X&persist=true`.
pub async fn scanner_create(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    let from = super::resolve_offset(&topic, params.get("from").unwrap_or("")).await?;
    let persistent = params.get("persist").is_some_and(truthy);
    let entry = topic.create_scanner(from, persistent).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": entry.id.to_string(),
            "next": entry.next(),
            "from": entry.from,
            "persistent": entry.persistent,
        })),
    )
        .into_response())
}

/// `DELETE /{topic}/scanner?id=X`.
pub async fn scanner_delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    let id = params
        .get("id")
        .ok_or_else(|| ApiError::BadRequest("missing scanner id".into()))?;
    topic.delete_scanner(id).await?;
    Ok(super::ok_message(StatusCode::OK, "scanner deleted"))
}

/// A `wait` parameter: netlog's duration grammar, clamped to [`MAX_WAIT`].
pub(super) fn wait_param(text: Option<&str>, default: Duration) -> Result<Duration, ApiError> {
    match text {
        None | Some("") => Ok(default),
        Some(w) => Ok(parse_duration(w)
            .map_err(|e| ApiError::InvalidDuration(e.to_string()))?
            .min(MAX_WAIT)),
    }
}

/// Runs `work`, a wait of up to `wait` ended early by the receiver it gets;
/// a wait that the connection cap sheds (see `serve.rs`) ends with the
/// default value (nothing read), which is the normal empty answer.
async fn unless_shed<T: Default>(
    state: &AppState,
    wait: Duration,
    long_poll: Option<Extension<LongPoll>>,
    work: impl AsyncFnOnce(watch::Receiver<bool>) -> Result<T, TopicError>,
) -> Result<T, ApiError> {
    // A wait of `WATCHED_WAIT` or more ends if its client leaves (see
    // `serve.rs`), so the scanner does not move past what nobody got.
    let long_poll = long_poll.filter(|_| wait >= WATCHED_WAIT);
    let _watched = long_poll.as_ref().map(|Extension(l)| l.watch());
    // A short wait ends soon by itself: only long polls pay for the signal.
    let Some(Extension(long_poll)) = long_poll.filter(|_| wait >= SHEDDABLE_WAIT) else {
        return Ok(work(state.shutdown.clone()).await?);
    };
    // The connection's own signal is the stop: a shed (made before the
    // request that displaced this poll is even read) is seen at once, so the
    // poll gets its empty answer rather than what that request publishes.
    // Shutdown ends the waits through the same signal.
    let (_waiting, stop) = long_poll.waiting();
    let mut shutdown = state.shutdown.clone();
    let ender = long_poll.clone();
    let forward = tokio::spawn(async move {
        let _ = shutdown.wait_for(|s| *s).await;
        ender.end_waits();
    });
    let done = work(stop).await;
    forward.abort();
    match done {
        Err(TopicError::ShuttingDown) if !*state.shutdown.borrow() => Ok(T::default()),
        other => Ok(other?),
    }
}

/// The 503 of a batch scan that got no room in the answer budget.
fn no_room() -> ApiError {
    ApiError::ServerBusy("too many answers in flight")
}

/// A batch scan within the answer budget (see the module docs): waits up to
/// `wait`, holding nothing, until the scanner has something to read, then
/// reads what the room it gets allows. `None` when nothing came in time.
async fn scan_batch(
    state: &AppState,
    topic: &Topic,
    entry: &Arc<ScannerEntry>,
    limits: ReadLimits,
    wait: Duration,
    long_poll: Option<Extension<LongPoll>>,
) -> Result<Option<(Vec<Message>, Grant)>, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let want = limits
        .bytes
        .saturating_add(limits.messages.saturating_mul(FRAME_BYTES));
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let readable = unless_shed(state, left, long_poll.clone(), async |stop| {
            topic.wait_readable(entry, left, &stop).await
        })
        .await?;
        if !readable {
            return Ok(None);
        }
        let mut grant = state
            .answers
            .reserve(want, true)
            .await
            .ok_or_else(no_room)?;
        let mut needed = None;
        loop {
            // Room held bounds the read; a message over the whole budget is
            // read alone, holding it all.
            let limits = match grant.bound(needed) {
                Some(bound) => ReadLimits {
                    bound: Some(bound),
                    ..limits
                },
                None => ReadLimits {
                    messages: 1,
                    ..limits
                },
            };
            match topic
                .scan(entry, limits, Duration::ZERO, &state.shutdown)
                .await
            {
                // Another request on this scanner took them: wait again,
                // if there is time left.
                Ok(messages) if messages.is_empty() => {
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(None);
                    }
                    break;
                }
                Ok(messages) => {
                    grant.shrink_to(&messages);
                    return Ok(Some((messages, grant)));
                }
                // Not even the next message fits: wait for room for it.
                Err(TopicError::OverBound { needed: n }) if needed.is_none() => {
                    drop(grant);
                    needed = Some(n);
                    grant = state.answers.reserve(n, false).await.ok_or_else(no_room)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// `GET /{topic}/scan?id=X&wait=D[&max=N][&max_bytes=S]`.
pub async fn scan(
    State(state): State<AppState>,
    Path(name): Path<String>,
    long_poll: Option<Extension<LongPoll>>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    // As netlog: no id names no scanner.
    let id = params.get("id").ok_or(ApiError::ScannerNotFound)?;
    let wait = wait_param(params.get("wait"), DEFAULT_WAIT)?;
    let max = match params.get("max") {
        None => None,
        Some(m) => Some(
            m.parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_SCAN_BATCH).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("max must be 1 to {MAX_SCAN_BATCH}"))
                })?,
        ),
    };
    let max_bytes = match params.get("max_bytes") {
        None => DEFAULT_SCAN_BYTES,
        Some(b) => parse_size(b)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_SCAN_BYTES).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("max_bytes must be 1 to {MAX_SCAN_BYTES} bytes"))
            })?,
    };
    let entry = topic.scanner(id)?;
    let limits = ReadLimits {
        messages: max.unwrap_or(1),
        bytes: max_bytes,
        bound: None,
    };
    if max.is_some() {
        let scanned = scan_batch(&state, &topic, &entry, limits, wait, long_poll).await?;
        let Some((messages, grant)) = scanned else {
            return Err(ApiError::EndOfTopic);
        };
        let format1 = params.get("format").is_some_and(|f| f == "1");
        return batch_answer(&messages, grant, &headers, format1);
    }
    let messages = unless_shed(&state, wait, long_poll, async |stop| {
        topic.scan(&entry, limits, wait, &stop).await
    })
    .await?;
    let Some(first) = messages.first() else {
        return Err(ApiError::EndOfTopic);
    };
    Ok(View::of(first)?.single_answer())
}

/// A batch scan's answer, its body holding the answer's room in the budget
/// until it is sent or dropped. v1 messages come as v0 frames of their
/// value in the binary framing, unless `format1` (then as stored).
fn batch_answer(
    messages: &[Message],
    grant: Grant,
    headers: &HeaderMap,
    format1: bool,
) -> Result<Response, ApiError> {
    let Some(first) = messages.first() else {
        return Err(ApiError::EndOfTopic);
    };
    // The topic hands out a damaged record alone (see `Topic::scan`).
    let views = messages
        .iter()
        .map(View::of)
        .collect::<Result<Vec<_>, _>>()?;
    let ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    let (content_type, body) = if ndjson {
        ("application/x-ndjson", ndjson_body(&views))
    } else if format1 {
        ("application/octet-stream", binary_body(messages))
    } else {
        ("application/octet-stream", binary_values(&views))
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::HeaderName::from_static("x-offset"),
                first.offset.to_string(),
            ),
            (
                header::HeaderName::from_static("x-count"),
                messages.len().to_string(),
            ),
        ],
        axum::body::Body::new(BudgetedBody::new(body, grant)),
    )
        .into_response())
}

/// Offset-prefixed netlog frames as stored (v1 ones with `compver`
/// `0x10`), back to back.
pub(super) fn binary_body(messages: &[Message]) -> Vec<u8> {
    let size: usize = messages.iter().map(|m| FRAME_BYTES + m.payload.len()).sum();
    let mut out = Vec::with_capacity(size);
    for m in messages {
        out.extend_from_slice(&m.offset.to_be_bytes());
        message::encode_with(&mut out, m.format << 4 | PLAIN, &m.payload);
    }
    out
}

/// Offset-prefixed v0 frames of the messages' values, back to back.
fn binary_values(views: &[View]) -> Vec<u8> {
    let size: usize = views.iter().map(|v| FRAME_BYTES + v.value.len()).sum();
    let mut out = Vec::with_capacity(size);
    for v in views {
        out.extend_from_slice(&v.offset.to_be_bytes());
        message::encode(&mut out, PLAIN, &v.value);
    }
    out
}

fn ndjson_body(views: &[View]) -> Vec<u8> {
    let size: usize = views.iter().map(|v| 64 + v.value.len() * 4 / 3).sum();
    let mut out = Vec::with_capacity(size);
    for v in views {
        v.ndjson_line(&mut out);
        out.push(b'\n');
    }
    out
}
