//! Messages: write one (`/payload`), read one by offset, publish a batch
//! (`/messages`), and `sync`.
//!
//! Batch publish takes two framings. The binary one (any content type but
//! ndjson) is netlog's own message framing, plain messages back to back, each
//! CRC-checked here: a bad CRC or a truncated frame refuses the whole request,
//! naming the frame. `application/x-ndjson` is one message per line (a final
//! newline does not make an empty message; empty lines are skipped). Either
//! way the messages become one entry in the log: all or nothing.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use super::{ApiError, AppState, Body, Path};
use crate::message::{self, FormatError, PLAIN};
use crate::topic::Batch;

/// Most messages one batch request may carry.
pub const MAX_BATCH_MESSAGES: usize = 1_000_000;

/// `POST /{topic}/payload`: one message, the body's bytes.
pub async fn payload_write(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "empty body: nothing to publish".into(),
        ));
    }
    let offset = topic.publish(Batch::One(body)).await?;
    // The hottest answer of all: formatted and assembled directly, no JSON
    // map or header tuple per request.
    let mut answer = Response::new(axum::body::Body::from(format!("{{\"offset\":{offset}}}")));
    *answer.status_mut() = StatusCode::CREATED;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(answer)
}

/// `GET /{topic}/payload/{offset}`: one message's bytes.
pub async fn payload_read(
    State(state): State<AppState>,
    Path((name, offset)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    let offset = super::resolve_offset(&topic, &offset).await?;
    let m = topic.read(offset).await?.ok_or(ApiError::OffsetNotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::HeaderName::from_static("x-offset"),
                m.offset.to_string(),
            ),
            (
                header::HeaderName::from_static("x-crc32"),
                m.crc.to_string(),
            ),
        ],
        m.payload,
    )
        .into_response())
}

/// `POST /{topic}/messages`: many messages, all or nothing.
pub async fn messages_publish(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let ndjson = content_type.is_some_and(|v| v.starts_with("application/x-ndjson"));
    let (plain, count) = if ndjson {
        frame_lines(&body)
    } else {
        let count = check_frames(&body).map_err(|e| match e {
            ApiError::BadRequest(why) => ApiError::BadRequest(format!(
                "{why} (the body was read as netlog's binary message framing, because its \
                 Content-Type is {}; for one message per line send \
                 Content-Type: application/x-ndjson)",
                content_type.map_or("missing".to_string(), |t| format!("{t:?}"))
            )),
            other => other,
        })?;
        (body.clone(), count)
    };
    if count == 0 {
        return Err(ApiError::BadRequest("no messages in the body".into()));
    }
    if count > MAX_BATCH_MESSAGES {
        return Err(ApiError::BadRequest(format!(
            "{count} messages in one request, over the limit of {MAX_BATCH_MESSAGES}"
        )));
    }
    let first = topic
        .publish(Batch::Framed {
            plain,
            count: count as u32,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "first_offset": first, "count": count })),
    )
        .into_response())
}

/// Verifies binary frames; the error names the first bad one.
fn check_frames(body: &[u8]) -> Result<usize, ApiError> {
    let mut count = 0;
    for (i, frame) in message::plain_messages(body).enumerate() {
        if let Err(e) = frame {
            let why = match e {
                FormatError::Truncated { .. } => format!("frame {i} is truncated: {e}"),
                FormatError::Checksum { .. } => format!("frame {i} has a bad CRC: {e}"),
                e => format!("frame {i}: {e}"),
            };
            return Err(ApiError::BadRequest(why));
        }
        count += 1;
    }
    Ok(count)
}

/// Encodes ndjson lines as plain messages.
fn frame_lines(body: &[u8]) -> (Bytes, usize) {
    let mut out = Vec::with_capacity(body.len() + body.len() / 8);
    let mut count = 0;
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        message::encode(&mut out, PLAIN, line);
        count += 1;
    }
    (Bytes::from(out), count)
}

/// `GET /{topic}/sync`: flushes and fsyncs the topic.
pub async fn topic_sync(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.broker.topic(&name)?.sync().await?;
    Ok(super::ok_message(StatusCode::OK, "synced"))
}
