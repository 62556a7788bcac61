//! Every error answer of the HTTP layer, built in one place.
//!
//! A failure is an [`ApiError`], whoever finds it: a handler, an extractor,
//! the rights check, the origin guard, or the serving layer refusing a
//! connection or a slow body before any handler runs. One `match`
//! ([`ApiError::status`]) gives its status, one ([`ApiError::body`]) its
//! JSON, netlog's shape: `{"ok":false,"status":<code>,"error":"netlog:
//! <text>"}` with netlog's texts, plus `reason`, `offset`, `index`, `plugin`,
//! `codec` or `errors` where they help. The body is a typed struct whose
//! fields are in alphabetical order, the order these answers have always
//! had, so clients comparing bytes see no change.
//!
//! Three ways out, one body: [`IntoResponse`] for handlers and the front,
//! [`ApiError::raw_answer`] for the serving layer, which writes whole
//! HTTP/1.1 answers itself, and [`ApiError::body`] for the last event of a
//! stream. Building a body has no side effect. Logging happens once, at the
//! edge: `into_response` logs what a 5xx answer leaves out (rate-limited per
//! kind and detail); a stream logs its own line.
//!
//! The layers below say what an answer needs through their own types
//! ([`BrokerError`], [`TopicError`] and its [`StorageFault`]); the mapping
//! from them is here and nowhere else.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::broker::BrokerError;
use crate::group::GroupError;
use crate::rate_limit::LineLimit;
use crate::topic::{ErrorChain, StorageFault, TopicError};

/// Everything a request can fail with. See the module docs.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unkwown error")]
    Unknown(String),
    #[error("invalid data directory")]
    InvalidDir(String),
    #[error("bad request")]
    BadRequest(String),
    #[error("invalid offset")]
    InvalidOffset(String),
    #[error("invalid duration")]
    InvalidDuration(String),
    #[error("invalid compression type")]
    InvalidCompression(String),
    #[error("topic exists")]
    TopicExists,
    #[error("end of topic")]
    EndOfTopic,
    #[error("topic not found")]
    TopicNotFound,
    #[error("scanner not found")]
    ScannerNotFound,
    #[error("offset not found")]
    OffsetNotFound,
    /// No message for a group receive, and why.
    #[error("end of topic")]
    NothingToReceive(String),
    #[error("group not found")]
    GroupNotFound,
    #[error("group exists")]
    GroupExists,
    #[error("invalid lease")]
    InvalidLease(String),
    #[error("lease not found")]
    LeaseNotFound,
    /// Not the current delivery; the reason names what replaced it.
    #[error("lease expired")]
    LeaseExpired(String),
    #[error("too many waiting receives")]
    TooManyWaiting(String),
    #[error("checksum error")]
    Checksum { offset: u64, detail: String },
    #[error("resource busy")]
    Busy(String),
    /// A v1 record that does not parse though its CRC passes.
    #[error("format error")]
    Format { offset: u64, detail: String },
    /// An `Idempotency-Key` recorded for a request with other messages.
    #[error("idempotency key reused")]
    IdempotencyReused(String),
    /// An `Idempotency-Key` whose first request is still being written.
    #[error("idempotency key in use")]
    IdempotencyInUse,

    #[error("payload too large")]
    TooLarge { limit: u64 },
    #[error("rejected by validator")]
    Rejected {
        plugin: String,
        index: usize,
        reason: String,
    },
    #[error("plugin failed")]
    PluginFailed { plugin: String, detail: String },
    #[error("plugin unavailable")]
    PluginUnavailable { plugin: String, reason: String },
    #[error("codec error")]
    CodecFailed { codec: String, detail: String },
    #[error("shutting down")]
    ShuttingDown,
    #[error("not ready")]
    NotReady(String),
    #[error("not found")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("insufficient storage")]
    InsufficientStorage,
    #[error("reload refused")]
    ReloadRefused { errors: Vec<String> },
    /// No usable token, or an anonymous request without the right.
    #[error("unauthorized")]
    Unauthorized {
        reason: String,
        /// A secret was presented but is not declared (said in the
        /// `WWW-Authenticate` challenge).
        invalid_token: bool,
    },
    /// A known token without the right, or a web origin not allowed.
    #[error("forbidden")]
    Forbidden { reason: String },
    /// The request body arrived too slowly.
    #[error("request timeout")]
    RequestTimeout(&'static str),
    /// A shared budget (request bodies or answers in flight) is spent,
    /// after waiting for room.
    #[error("server busy")]
    ServerBusy(&'static str),
    /// A connection past `max_connections`.
    #[error("too many connections")]
    TooManyConnections,
    /// The request target is over hyper's limit.
    #[error("uri too long")]
    UriTooLong,
    /// The request head is over hyper's limits.
    #[error("request header fields too large")]
    HeaderFieldsTooLarge,
    /// The storage engine did not answer in time; for a publish
    /// (`publish`), whether it was stored is unknown (`"stored":"unknown"`,
    /// with `Retry-After`).
    #[error("engine unavailable")]
    EngineUnavailable { reason: String, publish: bool },
    /// A publish over a limit of the storage engine, named in the reason.
    #[error("payload too large")]
    OverEngineLimit(String),
    /// A feature the topic's storage engine does not have yet, named in
    /// the reason.
    #[error("not implemented")]
    NotImplemented(String),
}

/// netlog's error body. The fields are in alphabetical order (see the
/// module docs); absent ones are left out.
#[derive(Serialize)]
pub(crate) struct ErrorBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    codec: Option<&'a str>,
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Cow<'a, str>>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    stored: Option<&'static str>,
}

impl ErrorBody<'_> {
    /// The body as JSON text.
    pub(crate) fn to_json(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl ApiError {
    /// The answer's status.
    pub(crate) fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Unknown(_) | InvalidDir(_) | Checksum { .. } | CodecFailed { .. } | Format { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }

            BadRequest(_)
            | InvalidOffset(_)
            | InvalidDuration(_)
            | InvalidCompression(_)
            | TopicExists
            | GroupExists
            | InvalidLease(_)
            | ReloadRefused { .. } => StatusCode::BAD_REQUEST,
            EndOfTopic | NothingToReceive(_) | TopicNotFound | ScannerNotFound | OffsetNotFound
            | GroupNotFound | LeaseNotFound | NoRoute => StatusCode::NOT_FOUND,
            Busy(_) | LeaseExpired(_) | IdempotencyInUse => StatusCode::CONFLICT,
            IdempotencyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            TooManyWaiting(_) => StatusCode::TOO_MANY_REQUESTS,
            TooLarge { .. } | OverEngineLimit(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            PluginFailed { .. }
            | PluginUnavailable { .. }
            | ShuttingDown
            | NotReady(_)
            | ServerBusy(_)
            | EngineUnavailable { .. }
            | TooManyConnections => StatusCode::SERVICE_UNAVAILABLE,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Forbidden { .. } => StatusCode::FORBIDDEN,
            RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            UriTooLong => StatusCode::URI_TOO_LONG,
            HeaderFieldsTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// The JSON of the answer (see the module docs). No side effect.
    pub(crate) fn body(&self) -> ErrorBody<'_> {
        use ApiError::*;
        let mut body = ErrorBody {
            codec: None,
            error: format!("netlog: {self}"),
            errors: None,
            index: None,
            offset: None,
            ok: false,
            plugin: None,
            reason: None,
            status: self.status().as_u16(),
            stored: None,
        };
        match self {
            BadRequest(r)
            | InvalidOffset(r)
            | InvalidDuration(r)
            | InvalidCompression(r)
            | NotReady(r)
            | OverEngineLimit(r)
            | NotImplemented(r)
            | Busy(r)
            | NothingToReceive(r)
            | InvalidLease(r)
            | LeaseExpired(r)
            | TooManyWaiting(r)
            | Unauthorized { reason: r, .. }
            | IdempotencyReused(r)
            | Forbidden { reason: r } => body.reason = Some(Cow::Borrowed(r)),
            IdempotencyInUse => {
                body.reason = Some(Cow::Borrowed(
                    "a request with this key is being written; retry once it is answered",
                ));
            }
            Format { offset, .. } => {
                body.offset = Some(*offset);
                body.reason = Some(Cow::Owned(format!(
                    "the stored message at offset {offset} passes its checksum but its \
                     v1 record does not parse; GET /<topic>/check lists it; a scanner or \
                     stream opened from offset {} reads on",
                    offset.saturating_add(1)
                )));
            }
            RequestTimeout(r) | ServerBusy(r) => body.reason = Some(Cow::Borrowed(r)),
            TooLarge { limit } => {
                body.reason = Some(Cow::Owned(format!("the body is over {limit} bytes")));
            }
            // The log layer logs full disks, rate-limited.
            InsufficientStorage => {
                body.reason = Some(Cow::Borrowed(
                    "no space left on device; writes resume once space is freed",
                ));
            }
            Rejected {
                plugin,
                index,
                reason,
            } => {
                body.plugin = Some(plugin);
                body.index = Some(*index);
                body.reason = Some(Cow::Borrowed(reason));
            }
            PluginFailed { plugin, .. } => body.plugin = Some(plugin),
            PluginUnavailable { plugin, reason } => {
                body.plugin = Some(plugin);
                body.reason = Some(Cow::Borrowed(reason));
            }
            ReloadRefused { errors } => body.errors = Some(errors),
            // The details (which server, which error) go to the log.
            EngineUnavailable { publish, .. } => {
                body.reason = Some(Cow::Borrowed(
                    "the storage engine did not answer in time; retry later",
                ));
                if *publish {
                    body.stored = Some("unknown");
                }
            }
            CodecFailed { codec, .. } => body.codec = Some(codec),
            Checksum { offset, .. } => {
                // The offset is what a consumer needs to go on past the
                // damage; the CRCs and file details stay in the log.
                body.offset = Some(*offset);
                body.reason = Some(Cow::Owned(format!(
                    "the stored message at offset {offset} fails its checksum; \
                     GET /<topic>/check lists every damaged offset; a scanner or \
                     stream opened from offset {} reads on",
                    offset.saturating_add(1)
                )));
            }
            UriTooLong => body.reason = Some(Cow::Borrowed("the request target is too long")),
            HeaderFieldsTooLarge => {
                body.reason = Some(Cow::Borrowed(
                    "the request head is too large or has too many fields",
                ));
            }
            Unknown(_) | InvalidDir(_) | TopicExists | EndOfTopic | TopicNotFound
            | ScannerNotFound | OffsetNotFound | ShuttingDown | NoRoute | MethodNotAllowed
            | TooManyConnections | GroupNotFound | GroupExists | LeaseNotFound => {}
        }
        body
    }

    /// Logs what the answer leaves out, for the failures that have details
    /// (an internal error, a plugin or codec failing, damaged data); at most
    /// once per [`REQUEST_FAILURE_LOG_INTERVAL`] for the same kind and
    /// detail, the next line with the count of the rest.
    fn log_details(&self) {
        use ApiError::*;
        let status = self.status().as_u16();
        match self {
            PluginFailed { plugin, detail } => {
                if let Some(suppressed) = repeated("plugin", detail) {
                    tracing::error!(
                        plugin,
                        detail,
                        suppressed,
                        "plugin failure answered with 503"
                    );
                }
            }
            CodecFailed { codec, detail } => {
                if let Some(suppressed) = repeated("codec", detail) {
                    tracing::error!(codec, detail, suppressed, "read failed in a codec");
                }
            }
            Checksum { detail, .. } | Format { detail, .. } => {
                if let Some(suppressed) = repeated("checksum", detail) {
                    tracing::error!(status, detail, suppressed, "request failed");
                }
            }
            EngineUnavailable { reason, .. } => {
                if let Some(suppressed) = repeated("engine", reason) {
                    tracing::warn!(status, reason, suppressed, "engine unavailable");
                }
            }
            Unknown(detail) | InvalidDir(detail) => {
                if let Some(suppressed) = repeated("unknown", detail) {
                    tracing::error!(status, detail, suppressed, "request failed");
                }
            }
            _ => {}
        }
    }

    /// The whole HTTP/1.1 answer, closing the connection, for the serving
    /// layer's answers written without hyper.
    pub(crate) fn raw_answer(&self) -> Vec<u8> {
        let status = self.status();
        let body = self.body().to_json();
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_details();
        let mut response = Response::new(axum::body::Body::from(self.body().to_json()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match &self {
            // The rest of the body stays unread (or the server is going):
            // say so, or a client reuses the connection and its next request
            // fails.
            ApiError::TooLarge { .. } | ApiError::ShuttingDown => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::EngineUnavailable { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Unauthorized { invalid_token, .. } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(if *invalid_token {
                        r#"Bearer realm="netlog", error="invalid_token""#
                    } else {
                        r#"Bearer realm="netlog""#
                    }),
                );
            }
            _ => {}
        }
        response
    }
}

/// The one mapping from the broker's errors to answers. 5xx details keep
/// their whole chain of causes, for the log.
impl From<GroupError> for ApiError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::NotFound => ApiError::GroupNotFound,
            GroupError::Exists => ApiError::GroupExists,
            GroupError::Invalid(why) | GroupError::Limit(why) => ApiError::BadRequest(why),
            GroupError::InvalidLease => ApiError::InvalidLease(
                "a lease reads offset.deliveries.generation.tag, as receive gave it".into(),
            ),
            GroupError::LeaseNotFound => ApiError::LeaseNotFound,
            GroupError::LeaseExpired(why) => ApiError::LeaseExpired(why),
            GroupError::TooManyWaiting => ApiError::TooManyWaiting(
                "the group's max_waiting receives are already waiting".into(),
            ),
            GroupError::Empty(why) => ApiError::NothingToReceive(why),
            GroupError::ShuttingDown => ApiError::ShuttingDown,
            e @ GroupError::NotOnEngine(_) => ApiError::NotImplemented(e.to_string()),
            GroupError::Topic(e) => e.into(),
            e @ GroupError::Io(_) => ApiError::Unknown(chain(&e)),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::TopicNotFound => ApiError::TopicNotFound,
            BrokerError::TopicExists => ApiError::TopicExists,
            BrokerError::InvalidName(why) => {
                ApiError::BadRequest(format!("invalid topic name: {why}"))
            }
            BrokerError::Settings(e) if e.is_compression() => {
                ApiError::InvalidCompression(format!("settings: {e}"))
            }
            e @ (BrokerError::Settings(_) | BrokerError::SettingsJson(_)) => {
                ApiError::BadRequest(e.to_string())
            }
            BrokerError::Topic(e) => e.into(),
            e @ BrokerError::InvalidDir { .. } => ApiError::InvalidDir(chain(&e)),
            e @ (BrokerError::Hook { .. } | BrokerError::Plugin(_)) => {
                ApiError::BadRequest(e.to_string())
            }
            BrokerError::ReloadRefused { errors } => ApiError::ReloadRefused { errors },
            BrokerError::GroupsBusy(why) => ApiError::Busy(why),
            e @ (BrokerError::Io { .. } | BrokerError::Task(_) | BrokerError::DirLocked { .. }) => {
                ApiError::Unknown(chain(&e))
            }
        }
    }
}

/// The one mapping from a topic's errors to answers.
impl From<TopicError> for ApiError {
    fn from(e: TopicError) -> Self {
        match e.storage_fault() {
            // A failed write: only a full disk and an oversized entry are
            // the client's to know about.
            Some(fault) if matches!(e, TopicError::Write(_)) => {
                return match fault {
                    StorageFault::NoSpace => ApiError::InsufficientStorage,
                    StorageFault::EntryTooLarge => ApiError::BadRequest(
                        std::error::Error::source(&e).map_or_else(|| e.to_string(), chain),
                    ),
                    _ => ApiError::Unknown(chain(&e)),
                };
            }
            Some(StorageFault::OffsetNotFound) => return ApiError::OffsetNotFound,
            Some(StorageFault::NoSpace) => return ApiError::InsufficientStorage,
            Some(StorageFault::Codec { codec, detail }) => {
                return ApiError::CodecFailed {
                    codec: codec.to_string(),
                    detail: detail.map_or_else(|| chain(&e), str::to_string),
                };
            }
            Some(StorageFault::Corrupt { offset }) => {
                return ApiError::Checksum {
                    offset,
                    detail: chain(&e),
                };
            }
            Some(StorageFault::EntryTooLarge | StorageFault::Other) => {
                return ApiError::Unknown(chain(&e));
            }
            None => {}
        }
        match e {
            TopicError::Deleted => ApiError::TopicNotFound,
            TopicError::ShuttingDown => ApiError::ShuttingDown,
            TopicError::ScannerNotFound => ApiError::ScannerNotFound,
            e @ TopicError::V0Only => ApiError::BadRequest(e.to_string()),
            TopicError::Busy { scanners } => ApiError::Busy(format!(
                "{scanners} scanner(s) attached: delete them, or delete the topic with ?force=true"
            )),
            TopicError::Rejected {
                plugin,
                index,
                reason,
            } => ApiError::Rejected {
                plugin,
                index,
                reason,
            },
            TopicError::PluginFailed { plugin, source } => ApiError::PluginFailed {
                plugin,
                detail: chain(source.as_ref()),
            },
            TopicError::PluginUnavailable { plugin, reason } => {
                ApiError::PluginUnavailable { plugin, reason }
            }
            // A settings or scanner file that cannot be written for lack
            // of space is the same full disk as a refused publish.
            e @ TopicError::Io { .. } if e.is_no_space() => ApiError::InsufficientStorage,
            TopicError::OverBound { .. } => ApiError::ServerBusy("too many answers in flight"),
            TopicError::EngineUnavailable { reason, publish } => {
                ApiError::EngineUnavailable { reason, publish }
            }
            e @ TopicError::TooLarge { .. } => ApiError::OverEngineLimit(e.to_string()),
            e @ (TopicError::Log(_)
            | TopicError::Write(_)
            | TopicError::Io { .. }
            | TopicError::Task(_)
            | TopicError::Panicked
            | TopicError::Engine { .. }) => ApiError::Unknown(chain(&e)),
        }
    }
}

/// A failing request's log line repeats for every request that meets the
/// same failure (a disk refusing every write, a damaged message read in a
/// loop): the same kind and detail are logged at most once per
/// [`REQUEST_FAILURE_LOG_INTERVAL`]. `Some(count held back)` when this one
/// is to be logged.
fn repeated(kind: &'static str, detail: &str) -> Option<u64> {
    static LIMIT: LineLimit<(&'static str, String)> = LineLimit::new(REQUEST_FAILURE_LOG_INTERVAL);
    LIMIT.allow((kind, detail.to_string()))
}

/// How often one kind of failing request (with the same detail, which names
/// the topic's file or plugin) is logged: once per 10 s.
pub(crate) const REQUEST_FAILURE_LOG_INTERVAL: std::time::Duration =
    std::time::Duration::from_secs(10);

/// An error and its causes, for the log.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    ErrorChain(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body keeps netlog's shape and the key order answers always had,
    /// on every way out.
    #[test]
    fn one_body_on_every_way_out() {
        let e = ApiError::Rejected {
            plugin: "schema".into(),
            index: 2,
            reason: "no id".into(),
        };
        let json = e.body().to_json();
        assert_eq!(
            json,
            r#"{"error":"netlog: rejected by validator","index":2,"ok":false,"plugin":"schema","reason":"no id","status":422}"#
        );
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        let old = serde_json::json!({
            "ok": false, "status": 422, "error": "netlog: rejected by validator",
            "plugin": "schema", "index": 2, "reason": "no id",
        });
        assert_eq!(value, old);
        assert_eq!(json, old.to_string(), "byte for byte as before");
        let raw = String::from_utf8(ApiError::TooManyConnections.raw_answer()).expect("utf8");
        assert!(
            raw.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{raw}"
        );
        assert!(
            raw.ends_with(r#"{"error":"netlog: too many connections","ok":false,"status":503}"#)
        );
        let answer = ApiError::Unauthorized {
            reason: "unknown token".into(),
            invalid_token: true,
        }
        .into_response();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        assert!(
            answer.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .expect("ascii")
                .contains("invalid_token")
        );
    }
}
