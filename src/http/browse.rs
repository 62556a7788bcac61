//! `GET /{topic}/messages?from=X&max=N`: a stateless range read, for the
//! console's messages page. Looking creates no scanner and moves nothing:
//! it reads with a subscription that lives as long as the request (as the
//! stream does), never waits for new messages, and leaves no trace but the
//! `messages_out` counter.
//!
//! The answer is ndjson, one line per message in offset order:
//! `{"offset":N,"size":S,"text":"..."}` for a UTF-8 payload, or
//! `{"offset":N,"size":S,"hex":"..."}` for any other, with `"time"`, when
//! it was written (RFC 3339, to the second, from the index; absent for a
//! message the index does not hold yet), and `"truncated":true`
//! when the payload was longer than [`PREVIEW_BYTES`] and only its first
//! bytes are shown (the whole message is at `GET /{topic}/payload/{offset}`).
//! A v1 message is previewed by its value, with `"key"`, `"timestamp"` and
//! `"headers"` (as text, invalid UTF-8 replaced) beside it.
//! `X-Next-Offset` says where the next page starts. Bounds: at most
//! [`MAX_MESSAGES`] messages (default [`DEFAULT_MESSAGES`]) and about
//! [`READ_BYTES`] of payloads read per request (one message always, however
//! large), so an answer holds at most `MAX_MESSAGES` previews.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState, Params, Path};
use crate::topic::ReadLimits;

/// Messages per page when `max` is not given.
pub const DEFAULT_MESSAGES: usize = 50;
/// Most messages per page; a larger `max` is lowered to it.
pub const MAX_MESSAGES: usize = 200;
/// Payload bytes read per request, past the first message: 4 MiB.
pub const READ_BYTES: usize = 4 << 20;
/// Bytes of each payload shown; longer ones are cut and marked: 64 KiB.
pub const PREVIEW_BYTES: usize = 64 << 10;

/// `GET /{topic}/messages`.
pub async fn messages_browse(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    let from = super::resolve_offset(&topic, params.get("from").unwrap_or("")).await?;
    let max = match params.get("max") {
        None => DEFAULT_MESSAGES,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| ApiError::BadRequest(format!("max {m:?} is not a count above 0")))?
            .min(MAX_MESSAGES),
    };
    let limits = ReadLimits {
        messages: max,
        bytes: READ_BYTES,
        bound: None,
    };
    let mut sub = topic.subscribe(from).await?;
    let messages = sub
        .next(&topic, limits, std::time::Duration::ZERO, &state.shutdown)
        .await?;
    let next = messages.last().map_or(from, |m| m.offset + 1);
    let times = topic
        .write_times(messages.iter().map(|m| m.offset).collect())
        .await?;
    let mut body = Vec::new();
    for (m, time) in messages.iter().zip(times) {
        // A v1 message shows its value, and its key and headers beside it.
        let view = super::envelope::View::of(m).ok();
        let value = view.as_ref().map_or(&m.payload, |v| &v.value);
        let shown = &value[..value.len().min(PREVIEW_BYTES)];
        let mut line = json!({"offset": m.offset, "size": value.len()});
        match std::str::from_utf8(shown) {
            Ok(text) => line["text"] = json!(text),
            // A cut may split a character: show what decodes.
            Err(e) if shown.len() < value.len() && e.error_len().is_none() => {
                let text = std::str::from_utf8(&shown[..e.valid_up_to()]).unwrap_or_default();
                line["text"] = json!(text);
            }
            Err(_) => line["hex"] = json!(crate::encode::hex(shown)),
        }
        if shown.len() < value.len() {
            line["truncated"] = json!(true);
        }
        if let Some(r) = view.as_ref().and_then(|v| v.record.as_ref()) {
            if let Some(k) = &r.key {
                line["key"] = json!(String::from_utf8_lossy(k));
            }
            if let Some(t) = r.timestamp {
                line["timestamp"] = json!(t);
            }
            if !r.headers.is_empty() {
                let headers: serde_json::Map<String, serde_json::Value> = r
                    .headers
                    .iter()
                    .map(|(n, v)| (n.clone(), json!(String::from_utf8_lossy(v))))
                    .collect();
                line["headers"] = json!(headers);
            }
        }
        if let Some(t) = time {
            line["time"] = json!(super::rfc3339(t));
        }
        body.extend_from_slice(line.to_string().as_bytes());
        body.push(b'\n');
    }
    let mut answer = ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response();
    answer
        .headers_mut()
        .insert("x-next-offset", HeaderValue::from(next));
    Ok(answer)
}
