//! Scanners: create, delete, and scan (one message, or a batch with `max`).
//!
//! Batch consume (`max=N`) answers in one of two framings, chosen with
//! `Accept`: `application/x-ndjson` gives one JSON object per line,
//! `{"offset":N,"crc32":C,"message":"..."}` (non-UTF-8 payloads come as
//! `"message_bytes":[...]` instead); anything else gives the binary framing,
//! each message as its 8-byte big-endian offset followed by the message in
//! netlog's framing (compver, CRC-32, length, payload). Headers `X-Offset`
//! (first offset) and `X-Count` come with both.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::topics::truthy;
use super::{ApiError, AppState, Params, Path};
use crate::duration::parse_duration;
use crate::log::Message;
use crate::message::{self, PLAIN};

/// How long a scan waits when `wait` is not given (netlog's default).
pub const DEFAULT_WAIT: Duration = Duration::from_millis(5);
/// Most messages one batch scan returns.
pub const MAX_SCAN_BATCH: usize = 100_000;

/// `POST /{topic}/scanner?from=X&persist=true`.
pub async fn scanner_create(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    let from = super::resolve_offset(&topic, params.get("from").unwrap_or(""))?;
    let persistent = params.get("persist").is_some_and(truthy);
    let entry = tokio::task::spawn_blocking(move || {
        let entry = topic.create_scanner(from, persistent)?;
        tracing::info!(topic = topic.name(), id = %entry.id, from, persistent, "scanner created");
        Ok::<_, ApiError>(entry)
    })
    .await
    .map_err(|e| ApiError::Unknown(e.to_string()))??;
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
    topic.delete_scanner(id)?;
    Ok(super::ok_message(StatusCode::OK, "scanner deleted"))
}

/// `GET /{topic}/scan?id=X&wait=D[&max=N]`.
pub async fn scan(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    let id = params
        .get("id")
        .ok_or_else(|| ApiError::BadRequest("missing scanner id".into()))?;
    let wait = match params.get("wait") {
        None | Some("") => DEFAULT_WAIT,
        Some(w) => parse_duration(w).map_err(|e| ApiError::InvalidDuration(e.to_string()))?,
    };
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
    let entry = topic.scanner(id)?;
    let mut stop = state.shutdown.clone();
    let messages = topic
        .scan(&entry, max.unwrap_or(1), wait, &mut stop)
        .await?;
    let Some(first) = messages.first() else {
        return Err(ApiError::EndOfTopic);
    };
    if max.is_none() {
        return Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::HeaderName::from_static("x-offset"),
                    first.offset.to_string(),
                ),
                (
                    header::HeaderName::from_static("x-crc32"),
                    first.crc.to_string(),
                ),
            ],
            first.payload.clone(),
        )
            .into_response());
    }
    let ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    let (content_type, body) = if ndjson {
        ("application/x-ndjson", ndjson_body(&messages))
    } else {
        ("application/octet-stream", binary_body(&messages))
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
        body,
    )
        .into_response())
}

/// Offset-prefixed netlog frames, back to back.
pub(super) fn binary_body(messages: &[Message]) -> Vec<u8> {
    let size: usize = messages.iter().map(|m| 17 + m.payload.len()).sum();
    let mut out = Vec::with_capacity(size);
    for m in messages {
        out.extend_from_slice(&m.offset.to_be_bytes());
        message::encode(&mut out, PLAIN, &m.payload);
    }
    out
}

fn ndjson_body(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        let line = match std::str::from_utf8(&m.payload) {
            Ok(text) => json!({"offset": m.offset, "crc32": m.crc, "message": text}),
            Err(_) => json!({"offset": m.offset, "crc32": m.crc, "message_bytes": &m.payload[..]}),
        };
        serde_json::to_writer(&mut out, &line).expect("JSON to memory");
        out.push(b'\n');
    }
    out
}
