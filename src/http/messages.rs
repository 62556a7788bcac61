//! Messages: write one (`/payload`), read one by offset, publish a batch
//! (`/messages`), and `sync`.
//!
//! Batch publish takes two framings. The binary one (any content type but
//! ndjson) is netlog's own message framing, plain messages back to back, each
//! CRC-checked here: a bad CRC or a truncated frame refuses the whole request,
//! naming the frame. `application/x-ndjson` is one message per line (a final
//! newline does not make an empty message; empty lines are skipped). Either
//! way the messages become one entry in the log: all or nothing. With
//! `?envelope=true`, each ndjson line is an envelope carrying a key, headers
//! and a timestamp beside the message (`envelope.rs`); binary frames may be
//! v1 (`0x10`) as stored, without the broker's idempotency section.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use super::envelope::{self, View};
use super::{ApiError, AppState, Body, Params, Path};
use crate::message::{self, FormatError, PLAIN};
use crate::record::{Idempotency, MAX_IDEMPOTENCY_KEY_BYTES, Record};
use crate::topic::{Batch, Keyed, Lookup, Topic, fingerprint};

/// Most messages one batch request may carry.
pub const MAX_BATCH_MESSAGES: usize = 1_000_000;

/// `POST /{topic}/payload`: one message, the body's bytes; with `Netlog-*`
/// headers, a v1 message whose value is the body (see `envelope.rs`).
///
/// Not an `async fn`: its checks run before the future is made, so the
/// future holds only what the write needs. An `async fn` keeps its
/// arguments (the header map, the name) alive across every await, which
/// made this, the hottest future of all, too large for the allocators'
/// fast path (over 1 KiB).
pub fn payload_write(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> impl Future<Output = Result<Response, ApiError>> + Send {
    let prepared = prepare_write(&state, &name, &headers, body);
    async move {
        match prepared? {
            Write::Plain(topic, batch) => Ok(offset_answer(topic.publish(batch).await?)),
            // Boxed: the keyed and v1 paths' futures are larger and rarer,
            // and unboxed they would size (and be copied with) every plain
            // publish's.
            Write::Keyed(topic, key, frames) => {
                let (offset, _, duplicate) = Box::pin(publish_once(&topic, key, frames, 1)).await?;
                Ok(published(
                    format!("{{\"offset\":{offset}{}}}", duplicate_field(duplicate)),
                    duplicate,
                ))
            }
            Write::V1(topic, frame) => {
                Box::pin(topic.allow_v1()).await?;
                let batch = Batch::Framed {
                    plain: Bytes::from(frame),
                    count: 1,
                };
                Ok(offset_answer(topic.publish(batch).await?))
            }
        }
    }
}

/// What a `POST /{topic}/payload` writes, checked.
enum Write {
    /// A plain message.
    Plain(Arc<Topic>, Batch),
    /// One framed message, at most once per idempotency key.
    Keyed(Arc<Topic>, Bytes, Vec<u8>),
    /// One framed v1 message, once the topic lets v1 in.
    V1(Arc<Topic>, Vec<u8>),
}

/// The checks of [`payload_write`], before any await.
fn prepare_write(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Write, ApiError> {
    let topic = state.broker.topic(name)?;
    let record = envelope::record_from_headers(headers)?;
    let key = idempotency_key(headers)?;
    if record.is_none() && body.is_empty() {
        return Err(ApiError::BadRequest(
            "empty body: nothing to publish".into(),
        ));
    }
    if let Some(key) = key {
        let frame = match record {
            None => {
                let mut frame = Vec::with_capacity(body.len() + message::HEADER_BYTES);
                message::encode(&mut frame, PLAIN, &body);
                frame
            }
            Some(mut record) => {
                record.value = body;
                v1_frame(&record)?
            }
        };
        return Ok(Write::Keyed(topic, key, frame));
    }
    Ok(match record {
        None => Write::Plain(topic, Batch::One(body)),
        Some(mut record) => {
            record.value = body;
            Write::V1(topic, v1_frame(&record)?)
        }
    })
}

/// `201 {"offset":N}`, the hottest answer of all: written and assembled
/// directly, no JSON map, formatter or header tuple per request, and the
/// header map sized once for the three headers it gets (its type, then its
/// length and `nosniff` on the way out).
fn offset_answer(offset: u64) -> Response {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(offset).as_bytes();
    let mut text = Vec::with_capacity(OFFSET_OPEN.len() + digits.len() + 1);
    text.extend_from_slice(OFFSET_OPEN);
    text.extend_from_slice(digits);
    text.push(b'}');
    let mut answer = Response::new(axum::body::Body::from(text));
    *answer.status_mut() = StatusCode::CREATED;
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    *answer.headers_mut() = headers;
    answer
}

/// The start of a publish's answer, `{"offset":N}`.
const OFFSET_OPEN: &[u8] = b"{\"offset\":";

/// `GET /{topic}/payload/{offset}`: one message's bytes.
pub async fn payload_read(
    State(state): State<AppState>,
    Path((name, offset)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    let offset = super::resolve_offset(&topic, &offset).await?;
    let m = topic.read(offset).await?.ok_or(ApiError::OffsetNotFound)?;
    Ok(View::of(&m)?.single_answer())
}

/// `POST /{topic}/messages`: many messages, all or nothing.
pub async fn messages_publish(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let topic = state.broker.topic(&name)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let ndjson = content_type.is_some_and(|v| v.starts_with("application/x-ndjson"));
    let envelopes = ndjson && params.get("envelope").is_some_and(super::topics::truthy);
    let mut v1 = false;
    let (plain, count) = if envelopes {
        let (plain, count, any_v1) = envelope::envelope_lines(&body)?;
        v1 = any_v1;
        (plain, count)
    } else if ndjson {
        frame_lines(&body)
    } else {
        let (count, any_v1) = check_frames(&body, content_type)?;
        v1 = any_v1;
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
    if let Some(key) = idempotency_key(&headers)? {
        let (first, count, duplicate) =
            publish_once(&topic, key, plain.to_vec(), count as u32).await?;
        let body = format!(
            "{{\"count\":{count}{},\"first_offset\":{first}}}",
            duplicate_field(duplicate)
        );
        return Ok(published(body, duplicate));
    }
    if v1 {
        topic.allow_v1().await?;
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

/// The v1 frame of `record`; a bound broken is a 400.
fn v1_frame(record: &Record) -> Result<Vec<u8>, ApiError> {
    let mut frame = Vec::with_capacity(record.encoded_len() + message::HEADER_BYTES);
    record
        .encode_frame(&mut frame)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(frame)
}

/// The request's `Idempotency-Key`: 1 to 255 bytes of 0x21-0x7E.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<Bytes>, ApiError> {
    static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if values.next().is_some()
        || bytes.is_empty()
        || bytes.len() > MAX_IDEMPOTENCY_KEY_BYTES
        || !bytes.iter().all(|b| (0x21..=0x7e).contains(b))
    {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key: one value of 1 to {MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII \
             characters (0x21-0x7E)"
        )));
    }
    Ok(Some(Bytes::copy_from_slice(bytes)))
}

/// Publishes `frames` (`count` messages back to back, validated) at most
/// once per `key` within the topic's window (see `topic/dedup.rs`; on
/// JetStream the stream's duplicate window, [`Topic::publish_keyed`]):
/// returns the first offset, the count, and whether it is a replay.
async fn publish_once(
    topic: &Topic,
    key: Bytes,
    frames: Vec<u8>,
    count: u32,
) -> Result<(u64, u32, bool), ApiError> {
    let fingerprint = fingerprint(&frames);
    let Some(dedup) = topic.dedup() else {
        let plain = with_idempotency(&frames, &key, fingerprint, count)?;
        topic.allow_v1().await?;
        let batch = Batch::Framed {
            plain: Bytes::from(plain),
            count,
        };
        return match topic.publish_keyed(batch).await? {
            Keyed::Stored(first) => Ok((first, count, false)),
            Keyed::Replayed { first, count } => Ok((first, count, true)),
            Keyed::Conflict { first } => Err(reused(first)),
        };
    };
    let ticket = match dedup.begin(key, fingerprint) {
        Ok(ticket) => ticket,
        Err(Lookup::Replay { first, count }) => return Ok((first, count, true)),
        Err(Lookup::InFlight) => return Err(ApiError::IdempotencyInUse),
        Err(Lookup::Conflict { first }) => return Err(reused(first)),
    };
    let plain = with_idempotency(&frames, ticket.key(), ticket.fingerprint(), count)?;
    topic.allow_v1().await?;
    let first = topic
        .publish(Batch::Framed {
            plain: Bytes::from(plain),
            count,
        })
        .await?;
    ticket.done(first, count);
    Ok((first, count, false))
}

/// `422 idempotency key reused`, naming the original's first offset.
fn reused(first: u64) -> ApiError {
    ApiError::IdempotencyReused(format!(
        "this Idempotency-Key was used within the window for other messages, \
         written at offset {first}"
    ))
}

/// `frames` with the idempotency section in the first message (made v1 if
/// it was v0).
fn with_idempotency(
    frames: &[u8],
    key: &Bytes,
    fingerprint: u64,
    count: u32,
) -> Result<Vec<u8>, ApiError> {
    let (header, payload) =
        message::decode(frames).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let payload = Bytes::copy_from_slice(payload);
    let mut record = match crate::record::Record::of(&crate::message::Message {
        offset: 0,
        crc: header.crc,
        payload: payload.clone(),
        format: header.format(),
    }) {
        Ok(Some(r)) => r,
        Ok(None) => Record {
            value: payload,
            ..Record::default()
        },
        Err(e) => return Err(ApiError::BadRequest(e.to_string())),
    };
    record.idempotency = Some(Idempotency {
        key: key.clone(),
        request_count: count,
        fingerprint,
    });
    let mut out = v1_frame(&record)?;
    out.extend_from_slice(&frames[header.total_len()..]);
    Ok(out)
}

/// `,"duplicate":true` for a replay.
fn duplicate_field(duplicate: bool) -> &'static str {
    if duplicate { ",\"duplicate\":true" } else { "" }
}

/// A publish's `201` with `body`; a replay adds `Idempotent-Replayed`.
fn published(body: String, duplicate: bool) -> Response {
    let mut response = (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if duplicate {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// Verifies binary frames in one pass (each CRC computed once): returns how
/// many there are and whether any is v1. A frame that does not decode (bad
/// CRC, truncated) is the error, naming the first and saying the body was
/// read as binary framing because of `content_type`. Only when every frame
/// decodes is the first bad v1 record the error
/// ([`envelope::check_v1_frame`]).
fn check_frames(body: &Bytes, content_type: Option<&str>) -> Result<(usize, bool), ApiError> {
    let (mut count, mut v1) = (0, false);
    let mut bad_record = None;
    for (i, frame) in message::plain_frames(body).enumerate() {
        let (header, payload) = frame.map_err(|e| {
            let why = match e {
                FormatError::Truncated { .. } => format!("frame {i} is truncated: {e}"),
                FormatError::Checksum { .. } => format!("frame {i} has a bad CRC: {e}"),
                e => format!("frame {i}: {e}"),
            };
            ApiError::BadRequest(format!(
                "{why} (the body was read as netlog's binary message framing, because its \
                 Content-Type is {}; for one message per line send \
                 Content-Type: application/x-ndjson)",
                content_type.map_or("missing".to_string(), |t| format!("{t:?}"))
            ))
        })?;
        if header.format() == message::FORMAT_RECORD {
            v1 = true;
            if bad_record.is_none() {
                bad_record = envelope::check_v1_frame(i, &body.slice_ref(payload)).err();
            }
        }
        count += 1;
    }
    bad_record.map_or(Ok((count, v1)), Err)
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
