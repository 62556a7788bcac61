//! Consumer groups over HTTP: list, create, info, delete, receive under a
//! lease, and settle (ack, nack, extend, reject), one lease or many.
//!
//! The group logic is in `crate::group`; this file reads requests and
//! writes answers. Receive answers in three framings: one message raw (no
//! `max`), with the headers of a scan plus `Netlog-Lease`,
//! `Netlog-Deliveries` and `Netlog-Lease-Expires` (milliseconds since the
//! epoch); with `max`, ndjson lines (`Accept: application/x-ndjson`) or
//! binary records, each `offset u64 | deliveries u32 | lease_expires i64 |
//! lease_len u16 | lease | frame` (big-endian, the frame in netlog's
//! message framing). A settle of one lease (`?lease=`) answers its result
//! or the lease's error; a settle of many (`{"leases":[…]}`, 1 to 10,000)
//! answers every result in request order and is never all or nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::envelope::View;
use super::scanners::{DEFAULT_WAIT, MAX_WAIT};
use super::serve::{LongPoll, WATCHED_WAIT};
use super::{ApiError, AppState, Body, Params, Path};
use crate::duration::{parse_duration, parse_size};
use crate::group::jetstream::{JsGroup, js_of};
use crate::group::{
    Delivered, Group, GroupError, GroupRef, MAX_LISTING, MAX_RECEIVE, MAX_SETTLE, Op,
    ReceiveRequest, SettleItem,
};
use crate::message::{self, PLAIN};
use crate::topic::Topic;

/// Default payload bytes of one receive: 1 MiB.
pub const DEFAULT_RECEIVE_BYTES: usize = 1 << 20;
/// Largest `max_bytes` of one receive: 64 MiB.
pub const MAX_RECEIVE_BYTES: usize = 64 << 20;

/// Topic `name`: 404 without it.
fn group_topic(state: &AppState, name: &str) -> Result<Arc<Topic>, ApiError> {
    Ok(state.broker.topic(name)?)
}

/// Group `name` of `topic`, on the topic's engine: the embedded one's from
/// the registry (404 without it), the JetStream one's a handle on its
/// consumer (whether it exists is known when it is used).
fn group_ref(state: &AppState, topic: &str, name: &str) -> Result<GroupRef, ApiError> {
    let t = group_topic(state, topic)?;
    Ok(match js_of(&t) {
        Some(js) => GroupRef::JetStream(JsGroup::of(t, js, name)),
        None => GroupRef::Embedded(state.broker.groups().get(topic, name)?),
    })
}

/// Group `name` of `topic` where only the embedded engine serves the
/// route (`what`): 501 on JetStream.
fn group(
    state: &AppState,
    topic: &str,
    name: &str,
    what: &'static str,
) -> Result<Arc<Group>, ApiError> {
    match group_ref(state, topic, name)? {
        GroupRef::Embedded(g) => Ok(g),
        GroupRef::JetStream(_) => Err(GroupError::NotOnEngine(what).into()),
    }
}

/// `GET /{topic}/groups`.
pub async fn groups_list(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> Result<Response, ApiError> {
    let t = group_topic(&state, &topic)?;
    let names = match js_of(&t) {
        Some(js) => JsGroup::names(&js).await?,
        None => state.broker.groups().names(&topic),
    };
    Ok(axum::Json(names).into_response())
}

/// `POST /{topic}/groups/{group}`: creates it from the JSON body.
pub async fn group_create(
    State(state): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let t = group_topic(&state, &topic)?;
    match js_of(&t) {
        Some(js) => {
            let resolve = state.broker.resolver();
            JsGroup::of(t, js, &name).create(&body, &resolve).await?;
        }
        None => state.broker.create_group(t, name, body).await?,
    }
    Ok(super::ok_message(StatusCode::CREATED, "group created"))
}

/// `GET /{topic}/groups/{group}`.
pub async fn group_info(
    State(state): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let info = match group_ref(&state, &topic, &name)? {
        GroupRef::Embedded(g) => g.info(),
        GroupRef::JetStream(g) => g.info().await?,
    };
    Ok(axum::Json(info).into_response())
}

/// `DELETE /{topic}/groups/{group}`: waiting receives end with 404.
pub async fn group_delete(
    State(state): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let t = group_topic(&state, &topic)?;
    match js_of(&t) {
        Some(js) => JsGroup::of(t, js, &name).delete().await?,
        None => state.broker.delete_group(topic, name).await?,
    }
    Ok(super::ok_message(StatusCode::OK, "group deleted"))
}

/// `POST /{topic}/groups/{group}/receive?max=N&max_bytes=B&wait=D&lease_time=D`.
pub async fn group_receive(
    State(state): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
    params: Params,
    long_poll: Option<Extension<LongPoll>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let g = group_ref(&state, &topic, &name)?;
    let max = match params.get("max") {
        None => None,
        Some(m) => Some(
            m.parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_RECEIVE).contains(n))
                .ok_or_else(|| ApiError::BadRequest(format!("max must be 1 to {MAX_RECEIVE}")))?,
        ),
    };
    let max_bytes = match params.get("max_bytes") {
        None => DEFAULT_RECEIVE_BYTES,
        Some(b) => parse_size(b)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_RECEIVE_BYTES).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("max_bytes must be 1 to {MAX_RECEIVE_BYTES} bytes"))
            })?,
    };
    let wait = match params.get("wait") {
        None => DEFAULT_WAIT,
        Some(w) => parse_duration(w)
            .map_err(|e| ApiError::InvalidDuration(format!("wait: {e}")))?
            .min(MAX_WAIT),
    };
    let lease_time = match params.get("lease_time") {
        None => None,
        Some(t) => Some(
            parse_duration(t)
                .ok()
                .filter(|d| *d >= Duration::from_secs(1))
                .ok_or_else(|| ApiError::InvalidDuration("lease_time: at least 1s".to_string()))?,
        ),
    };
    if let Some(c) = params.get("consumer")
        && !crate::group::valid_name(c)
    {
        return Err(ApiError::BadRequest(
            "consumer must be 1 to 64 of A-Z a-z 0-9 . _ -".into(),
        ));
    }
    let req = ReceiveRequest {
        consumer: params.get("consumer").map(str::to_string),
        max: max.unwrap_or(1),
        max_bytes,
        wait,
        lease_time,
    };
    // A wait of `WATCHED_WAIT` or more ends if its client leaves (see
    // `serve.rs`), so nothing is leased to a client that has gone.
    let _watched = long_poll
        .filter(|_| wait >= WATCHED_WAIT)
        .map(|Extension(l)| l.watch());
    let got = match g {
        GroupRef::Embedded(g) => g.receive(req, &state.shutdown).await?,
        GroupRef::JetStream(g) => g.receive(req, &state.shutdown).await?,
    };
    let Some(first) = got.first() else {
        return Err(ApiError::NothingToReceive("nothing available".into()));
    };
    if max.is_none() {
        return Ok(raw_answer(first));
    }
    let ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    let (body, kind) = if ndjson {
        (ndjson_body(&got), "application/x-ndjson")
    } else {
        (binary_body(&got), "application/octet-stream")
    };
    let mut answer = Response::new(axum::body::Body::from(body));
    let h = answer.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert("x-offset", HeaderValue::from(first.message.offset));
    h.insert("x-count", HeaderValue::from(got.len()));
    Ok(answer)
}

/// A delivered message as every read route shows it: the value, and for a
/// v1 message its key, timestamp and headers (`envelope.rs`). A v1 record
/// that does not parse is shown as stored.
fn view_of(d: &Delivered) -> View {
    View::of(&d.message).unwrap_or_else(|_| View {
        offset: d.message.offset,
        crc: d.message.crc,
        value: d.message.payload.clone(),
        record: None,
    })
}

fn raw_answer(d: &Delivered) -> Response {
    let mut answer = view_of(d).single_answer();
    let h = answer.headers_mut();
    if let Ok(lease) = HeaderValue::from_str(&d.lease) {
        h.insert("netlog-lease", lease);
    }
    h.insert("netlog-deliveries", HeaderValue::from(d.deliveries));
    h.insert("netlog-lease-expires", HeaderValue::from(d.expires_ms));
    answer
}

/// One line per message: the read routes' ndjson line with the lease, the
/// delivery count and the lease's expiry in front.
fn ndjson_body(got: &[Delivered]) -> Vec<u8> {
    let mut out = Vec::with_capacity(got.len() * 160);
    let mut line = Vec::new();
    let mut digits = itoa::Buffer::new();
    for d in got {
        line.clear();
        view_of(d).ndjson_line(&mut line);
        // Leases are made of digits, dots and a hex tag: no escaping.
        out.extend_from_slice(b"{\"lease\":\"");
        out.extend_from_slice(d.lease.as_bytes());
        out.extend_from_slice(b"\",\"deliveries\":");
        out.extend_from_slice(digits.format(d.deliveries).as_bytes());
        out.extend_from_slice(b",\"lease_expires\":");
        out.extend_from_slice(digits.format(d.expires_ms).as_bytes());
        out.push(b',');
        out.extend_from_slice(line.strip_prefix(b"{").unwrap_or(&line));
        out.push(b'\n');
    }
    out
}

/// The binary records; a v1 message's frame carries its value (as binary
/// batch scans give it without `format=1`).
fn binary_body(got: &[Delivered]) -> Vec<u8> {
    let mut out = Vec::new();
    for d in got {
        out.extend_from_slice(&d.message.offset.to_be_bytes());
        out.extend_from_slice(&d.deliveries.to_be_bytes());
        out.extend_from_slice(&(d.expires_ms as i64).to_be_bytes());
        out.extend_from_slice(&(d.lease.len() as u16).to_be_bytes());
        out.extend_from_slice(d.lease.as_bytes());
        message::encode(&mut out, PLAIN, &view_of(d).value);
    }
    out
}

/// A batch settle's body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SettleBody {
    leases: Vec<String>,
    delay: Option<String>,
    lease_time: Option<String>,
    reason: Option<String>,
}

/// The longest `reason` a reject carries into its dead letters.
const MAX_REASON: usize = 1024;

async fn settle(
    state: AppState,
    topic: String,
    name: String,
    params: Params,
    body: bytes::Bytes,
    op: Op,
) -> Result<Response, ApiError> {
    let g = group_ref(&state, &topic, &name)?;
    let time_field = match op {
        Op::Nack => "delay",
        Op::Extend => "lease_time",
        _ => "",
    };
    let time = |text: Option<&str>| -> Result<Option<Duration>, ApiError> {
        text.map(|t| {
            parse_duration(t).map_err(|e| ApiError::InvalidDuration(format!("{time_field}: {e}")))
        })
        .transpose()
    };
    let single = params.get("lease").map(str::to_string);
    let mut reason = params.get("reason").map(str::to_string);
    let (items, batch) = match single {
        Some(lease) => {
            let t = time(params.get(time_field).filter(|_| !time_field.is_empty()))?;
            (vec![SettleItem { lease, time: t }], false)
        }
        None => {
            let parsed: SettleBody = serde_json::from_slice(&body).map_err(|e| {
                ApiError::BadRequest(format!(
                    "give ?lease=L, or a body {{\"leases\":[...]}}: {e}"
                ))
            })?;
            if parsed.leases.is_empty() || parsed.leases.len() > MAX_SETTLE {
                return Err(ApiError::BadRequest(format!(
                    "leases: 1 to {MAX_SETTLE} in one request, not {}",
                    parsed.leases.len()
                )));
            }
            let t = match op {
                Op::Nack => time(parsed.delay.as_deref())?,
                Op::Extend => time(parsed.lease_time.as_deref())?,
                _ => None,
            };
            if parsed.reason.is_some() {
                reason = parsed.reason;
            }
            let items = parsed
                .leases
                .into_iter()
                .map(|lease| SettleItem { lease, time: t })
                .collect();
            (items, true)
        }
    };
    if let Some(r) = &reason
        && r.len() > MAX_REASON
    {
        return Err(ApiError::BadRequest(format!(
            "reason: at most {MAX_REASON} bytes, not {}",
            r.len()
        )));
    }
    let reason = reason.as_deref().filter(|_| op == Op::Reject);
    let results = match g {
        GroupRef::JetStream(g) => {
            let resolve = state.broker.resolver();
            g.settle(op, &items, reason, &resolve).await?
        }
        GroupRef::Embedded(g) => {
            let results = g.settle(op, &items, reason)?;
            g.durable().await?;
            let dead: Vec<u64> = results
                .iter()
                .filter(|r| r.result == "dead_lettered")
                .filter_map(|r| crate::group::state::Lease::parse(&r.lease).map(|l| l.offset))
                .collect();
            if !dead.is_empty() {
                let resolve = state.broker.resolver();
                g.dead_letter(&dead, &resolve).await;
            }
            results
        }
    };
    if !batch {
        let r = &results[0];
        return match r.result {
            "invalid" => Err(GroupError::InvalidLease.into()),
            "not_found" => Err(GroupError::LeaseNotFound.into()),
            "expired" => Err(GroupError::LeaseExpired(r.reason.clone().unwrap_or_default()).into()),
            result => {
                let mut answer = json!({ "ok": true, "lease": r.lease, "result": result });
                if r.clamped {
                    answer["clamped"] = json!(true);
                }
                Ok(axum::Json(answer).into_response())
            }
        };
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let results: Vec<SettledOne> = results
        .iter()
        .map(|r| {
            *counts.entry(r.result).or_default() += 1;
            SettledOne {
                clamped: r.clamped,
                lease: &r.lease,
                reason: r.reason.as_deref(),
                result: r.result,
            }
        })
        .collect();
    Ok(axum::Json(Settled {
        counts,
        ok: true,
        results,
    })
    .into_response())
}

/// A batch settle's answer. Fields in the order a JSON map sorts them, as
/// the answer was first written (`json!`), with no map per lease.
#[derive(serde::Serialize)]
struct Settled<'a> {
    counts: BTreeMap<&'a str, usize>,
    ok: bool,
    results: Vec<SettledOne<'a>>,
}

/// One lease of a [`Settled`].
#[derive(serde::Serialize)]
struct SettledOne<'a> {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    clamped: bool,
    lease: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    result: &'a str,
}

/// `POST /{topic}/groups/{group}/ack`.
pub async fn group_ack(
    State(state): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
    params: Params,
    Body(body): Body,
) -> Result<Response, ApiError> {
    settle(state, topic, name, params, body, Op::Ack).await
}

/// `POST /{topic}/groups/{group}/nack`.
pub async fn group_nack(
    State(state): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
    params: Params,
    Body(body): Body,
) -> Result<Response, ApiError> {
    settle(state, topic, name, params, body, Op::Nack).await
}

/// `POST /{topic}/groups/{group}/extend`.
pub async fn group_extend(
    State(state): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
    params: Params,
    Body(body): Body,
) -> Result<Response, ApiError> {
    settle(state, topic, name, params, body, Op::Extend).await
}

/// `POST /{topic}/groups/{group}/reject`.
pub async fn group_reject(
    State(state): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
    params: Params,
    Body(body): Body,
) -> Result<Response, ApiError> {
    settle(state, topic, name, params, body, Op::Reject).await
}

/// `POST /{topic}/groups/{group}/seek?to=X`: pending cleared, delivery
/// starts again at `X` (the offset grammar); answers the group's info.
pub async fn group_seek(
    State(state): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let g = group(&state, &topic, &name, "seek is")?;
    let to = params
        .get("to")
        .ok_or_else(|| ApiError::BadRequest("seek needs ?to=<offset>".into()))?;
    let t = group_topic(&state, &topic)?;
    let to = super::resolve_offset(&t, to).await?;
    state.broker.seek_group(g.clone(), to).await?;
    Ok(axum::Json(g.info()).into_response())
}

/// `PATCH /{topic}/groups/{group}`: changes settings (all but `from` and
/// `ordering`); answers the group's info.
pub async fn group_patch(
    State(state): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let g = group(&state, &topic, &name, "changing a group's settings is")?;
    state.broker.update_group(topic, name, body).await?;
    Ok(axum::Json(g.info()).into_response())
}

/// `GET /{topic}/groups/{group}/pending?from=O&max=N&state=S`: ndjson, one
/// line per pending entry (`max` default 100, at most 10,000).
pub async fn group_pending(
    State(state): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let g = group(&state, &topic, &name, "the pending listing is")?;
    let from = match params.get("from") {
        None => 0,
        Some(f) => f
            .parse::<u64>()
            .map_err(|_| ApiError::InvalidOffset(format!("from: {f:?} is not an offset")))?,
    };
    let max = match params.get("max") {
        None => 100,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LISTING).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("max must be 1 to {MAX_LISTING}")))?,
    };
    let wanted = params.get("state");
    if let Some(s) = wanted
        && !["leased", "waiting", "parked", "blocked"].contains(&s)
    {
        return Err(ApiError::BadRequest(
            "state must be leased, waiting or parked".into(),
        ));
    }
    let body = g.pending_lines(from, max, wanted);
    let mut answer = Response::new(axum::body::Body::from(body));
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch answer, written from structs, is the bytes the maps of
    /// `json!` gave.
    #[test]
    fn settled_answers_are_the_maps_bytes() {
        let mut counts = BTreeMap::new();
        counts.insert("acked", 1);
        counts.insert("extended", 1);
        let answer = Settled {
            counts: counts.clone(),
            ok: true,
            results: vec![
                SettledOne {
                    clamped: false,
                    lease: "1.1.0.ab",
                    reason: None,
                    result: "acked",
                },
                SettledOne {
                    clamped: true,
                    lease: "2.1.0.ab",
                    reason: Some("held \"too\" long"),
                    result: "extended",
                },
            ],
        };
        let maps = json!({
            "ok": true,
            "results": [
                {"lease": "1.1.0.ab", "result": "acked"},
                {"lease": "2.1.0.ab", "result": "extended", "clamped": true, "reason": "held \"too\" long"},
            ],
            "counts": counts,
        });
        assert_eq!(
            serde_json::to_vec(&answer).expect("json"),
            serde_json::to_vec(&maps).expect("json")
        );
    }
}
