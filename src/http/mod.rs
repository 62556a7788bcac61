//! The HTTP API: netlog's routes, codes and JSON, and this broker's extensions
//! (batch publish and consume, streaming).
//!
//! One file per resource: `topics.rs` (list, create, info, delete),
//! `messages.rs` (payload write and read, batch publish, sync), `scanners.rs`
//! (scanner create and delete, scan; batch scans hold room in the answer
//! budget of `answers.rs`), `stream.rs` (Server-Sent Events) and
//! `admin.rs` (check), `reload.rs` (`POST /_reload`). `front.rs` runs
//! before and after the router on every request: the origin guard
//! (`origin.rs`), rights (`auth.rs`) and request counters (`metrics.rs`). Handlers are named `<resource>_<verb>`.
//!
//! Every failure is an [`ApiError`]; this module alone turns errors into
//! responses: `{"ok":false,"status":<code>,"error":"netlog: <text>"}` with
//! netlog's texts, plus `reason`/`index`/`plugin` fields where they help.
//! Bodies of 5xx answers stay generic; the details go to the log. The
//! extractors here ([`Path`], [`Params`], [`Body`]) reject with `ApiError`
//! too, so malformed input gets the same shape as everything else.

mod admin;
mod answers;
pub mod auth;
pub(crate) mod front;
pub mod health;
mod messages;
pub mod metrics;
pub(crate) mod origin;
mod reload;
mod scanners;
pub mod serve;
mod stream;
pub mod tls;
mod topics;

pub(crate) use reload::reload_all;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::json;
use tokio::sync::watch;

use crate::broker::{Broker, BrokerError};
use crate::message::FormatError;
use crate::rate_limit::LineLimit;
use crate::topic::{LogError, Topic, TopicError};

/// What every handler can reach: one pointer, so the per-request clone
/// axum makes for each `State` extractor is one atomic increment.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What an [`AppState`] points to.
pub struct Shared {
    /// The topics.
    pub broker: Arc<Broker>,
    /// Becomes `true` when the server shuts down; long waits end early.
    pub shutdown: watch::Receiver<bool>,
    /// The listener's certificates, when it speaks TLS (re-read on reload).
    pub tls: Option<Arc<tls::Tls>>,
    /// Tokens and rights in force; `swap` on reload.
    pub auth: auth::Gate,
    /// Request counters and open long polls and streams, for `/_metrics`.
    pub metrics: Arc<metrics::HttpMetrics>,
    /// Room for batch-scan answers in flight (`[server] answer_budget`).
    pub(crate) answers: Arc<answers::AnswerBudget>,
}

impl AppState {
    /// The state of a server of `broker`, with fresh request counters.
    pub fn new(
        broker: Arc<Broker>,
        shutdown: watch::Receiver<bool>,
        tls: Option<Arc<tls::Tls>>,
        auth: auth::Gate,
    ) -> AppState {
        let server = &broker.config().server;
        let answers = answers::AnswerBudget::new(server.answer_budget, server.answer_budget_wait);
        AppState(Arc::new(Shared {
            answers: Arc::new(answers),
            broker,
            shutdown,
            tls,
            auth,
            metrics: Default::default(),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The main listener's service: [`router`] behind its [`front::Front`]
/// (origin guard, rights, request counters).
pub type App = front::Front<Router>;

/// The main listener's service for `state`, letting browsers from
/// `allowed_origins` in (see `origin.rs`).
pub fn app(state: AppState, allowed_origins: &[String]) -> App {
    let (gate, metrics) = (state.auth.clone(), state.metrics.clone());
    front::Front::new(
        router(state),
        front::Listener::Main,
        Some(origin::Origins::new(allowed_origins)),
        gate,
        metrics,
    )
}

/// The router for every route of the main listener. What every route
/// shares (rights, counters, the origin guard) is in `front.rs`, which
/// must list any route added here.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(topics::topics_list))
        .route("/_reload", axum::routing::post(reload::reload_post))
        .route(
            "/{topic}",
            get(topics::topic_info)
                .post(topics::topic_create)
                .delete(topics::topic_delete),
        )
        .route(
            "/{topic}/payload",
            axum::routing::post(messages::payload_write),
        )
        .route("/{topic}/payload/{offset}", get(messages::payload_read))
        .route(
            "/{topic}/messages",
            axum::routing::post(messages::messages_publish),
        )
        .route("/{topic}/sync", get(messages::topic_sync))
        .route(
            "/{topic}/scanner",
            axum::routing::post(scanners::scanner_create).delete(scanners::scanner_delete),
        )
        .route("/{topic}/scan", get(scanners::scan))
        .route("/{topic}/stream", get(stream::stream))
        .route("/{topic}/check", get(admin::check))
        .route("/_metrics", get(metrics::metrics_get))
        .route("/_health", get(health::health_get))
        .route("/_ready", get(health::ready_get))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

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
    #[error("checksum error")]
    Checksum { offset: u64, detail: String },
    #[error("resource busy")]
    Busy(String),
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
    /// Out of a shared budget (answers in flight), after waiting for room.
    #[error("server busy")]
    ServerBusy(String),
    #[error("reload refused")]
    ReloadRefused { errors: Vec<String> },
}

impl ApiError {
    fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Unknown(_) | InvalidDir(_) | Checksum { .. } | CodecFailed { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            BadRequest(_)
            | InvalidOffset(_)
            | InvalidDuration(_)
            | InvalidCompression(_)
            | TopicExists
            | ReloadRefused { .. } => StatusCode::BAD_REQUEST,
            EndOfTopic | TopicNotFound | ScannerNotFound | OffsetNotFound | NoRoute => {
                StatusCode::NOT_FOUND
            }
            Busy(_) => StatusCode::CONFLICT,
            TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            PluginFailed { .. }
            | PluginUnavailable { .. }
            | ShuttingDown
            | NotReady(_)
            | ServerBusy(_) => StatusCode::SERVICE_UNAVAILABLE,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (self.status(), axum::Json(body)).into_response();
        if matches!(self, ApiError::TooLarge { .. } | ApiError::ShuttingDown) {
            // The rest of the body stays unread (or the server is going):
            // say so, or a client reuses the connection and its next request
            // fails.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl ApiError {
    /// The JSON of the answer (see the module docs); logs what a 5xx
    /// answer leaves out.
    pub(crate) fn body(&self) -> serde_json::Value {
        use ApiError::*;
        let status = self.status();
        let mut body = json!({
            "ok": false,
            "status": status.as_u16(),
            "error": format!("netlog: {self}"),
        });
        let extra = match &self {
            BadRequest(r)
            | InvalidOffset(r)
            | InvalidDuration(r)
            | InvalidCompression(r)
            | NotReady(r)
            | ServerBusy(r)
            | Busy(r) => {
                json!({ "reason": r })
            }
            TooLarge { limit } => json!({ "reason": format!("the body is over {limit} bytes") }),
            // The log layer logs full disks, rate-limited.
            InsufficientStorage => json!({
                "reason": "no space left on device; writes resume once space is freed"
            }),
            Rejected {
                plugin,
                index,
                reason,
            } => json!({ "plugin": plugin, "index": index, "reason": reason }),
            PluginFailed { plugin, detail } => {
                if let Some(suppressed) = repeated("plugin", detail) {
                    tracing::error!(
                        plugin,
                        detail,
                        suppressed,
                        "plugin failure answered with 503"
                    );
                }
                json!({ "plugin": plugin })
            }
            PluginUnavailable { plugin, reason } => json!({ "plugin": plugin, "reason": reason }),
            ReloadRefused { errors } => json!({ "errors": errors }),
            CodecFailed { codec, detail } => {
                if let Some(suppressed) = repeated("codec", detail) {
                    tracing::error!(codec, detail, suppressed, "read failed in a codec");
                }
                json!({ "codec": codec })
            }
            Checksum { offset, detail } => {
                if let Some(suppressed) = repeated("checksum", detail) {
                    tracing::error!(
                        status = status.as_u16(),
                        detail,
                        suppressed,
                        "request failed"
                    );
                }
                // The offset is what a consumer needs to go on past the
                // damage; the CRCs and file details stay in the log.
                json!({
                    "offset": offset,
                    "reason": format!(
                        "the stored message at offset {offset} fails its checksum; \
                         GET /<topic>/check lists every damaged offset; a scanner or \
                         stream opened from offset {} reads on",
                        offset.saturating_add(1)
                    ),
                })
            }
            Unknown(detail) | InvalidDir(detail) => {
                if let Some(suppressed) = repeated("unknown", detail) {
                    tracing::error!(
                        status = status.as_u16(),
                        detail,
                        suppressed,
                        "request failed"
                    );
                }
                json!({})
            }
            _ => json!({}),
        };
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    }
}

/// The one mapping from the layers' errors to answers. 5xx details keep
/// their whole chain of causes, for the log.
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
            e @ (BrokerError::Io { .. } | BrokerError::Task(_) | BrokerError::DirLocked { .. }) => {
                ApiError::Unknown(chain(&e))
            }
        }
    }
}

impl From<TopicError> for ApiError {
    fn from(e: TopicError) -> Self {
        match e {
            TopicError::Deleted => ApiError::TopicNotFound,
            TopicError::ShuttingDown => ApiError::ShuttingDown,
            TopicError::ScannerNotFound => ApiError::ScannerNotFound,
            TopicError::Busy { scanners } => ApiError::Busy(format!(
                "{scanners} scanner(s) attached: delete them, or delete the topic with ?force=true"
            )),
            TopicError::Log(e) => e.into(),
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
            TopicError::Write(e) if matches!(*e, LogError::NoSpace { .. }) => {
                ApiError::InsufficientStorage
            }
            // A settings or scanner file that cannot be written for lack
            // of space is the same full disk as a refused publish.
            e @ TopicError::Io { .. } if e.is_no_space() => ApiError::InsufficientStorage,
            TopicError::Write(e) if matches!(*e, LogError::EntryTooLarge { .. }) => {
                ApiError::BadRequest(chain(e.as_ref()))
            }
            TopicError::OverBound { .. } => {
                ApiError::ServerBusy("too many answers in flight".into())
            }
            e @ (TopicError::Write(_)
            | TopicError::Io { .. }
            | TopicError::Task(_)
            | TopicError::Panicked) => ApiError::Unknown(chain(&e)),
        }
    }
}

/// A failing request's log line repeats for every request that meets the
/// same failure (a disk refusing every write, a damaged message read in a
/// loop): the same kind and detail are logged at most once per
/// [`REQUEST_FAILURE_LOG_INTERVAL`], the next line with the count of the
/// rest. `Some(count held back)` when this one is to be logged.
fn repeated(kind: &'static str, detail: &str) -> Option<u64> {
    static LIMIT: LineLimit<(&'static str, String)> = LineLimit::new(REQUEST_FAILURE_LOG_INTERVAL);
    LIMIT.allow((kind, detail.to_string()))
}

/// How often one kind of failing request (with the same detail, which names
/// the topic's file or plugin) is logged: once per 10 s.
pub const REQUEST_FAILURE_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::OffsetNotFound(_) => ApiError::OffsetNotFound,
            LogError::NoSpace { .. } => ApiError::InsufficientStorage,
            LogError::Corrupt {
                source: FormatError::Codec(c),
                ..
            } => ApiError::CodecFailed {
                codec: c.codec,
                detail: c.reason,
            },
            e @ LogError::Corrupt {
                source: crate::message::FormatError::UnknownCodec(_),
                ..
            } => ApiError::CodecFailed {
                codec: "unknown".into(),
                detail: e.to_string(),
            },
            e @ LogError::Corrupt { offset, .. } => ApiError::Checksum {
                offset,
                detail: chain(&e),
            },
            e => ApiError::Unknown(chain(&e)),
        }
    }
}

/// An error and its causes, for the log.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::topic::ErrorChain(e).to_string()
}

/// The path parameters; a path that does not decode (a topic name that is
/// not UTF-8, say) is a 400.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// The query string as a map; a malformed one is a 400.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))
    }
}

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// The request body, up to the configured limit (413 beyond).
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.broker.config().max_body;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(ApiError::TooLarge { limit });
        }
        axum::body::to_bytes(req.into_body(), limit as usize)
            .await
            .map(Body)
            .map_err(|e| {
                if std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                {
                    ApiError::TooLarge { limit }
                } else {
                    ApiError::BadRequest(format!("could not read the body: {e}"))
                }
            })
    }
}

/// The offset `text` names (netlog's grammar), resolved against `topic`.
async fn resolve_offset(topic: &Topic, text: &str) -> Result<u64, ApiError> {
    let spec =
        crate::duration::parse_offset(text).map_err(|e| ApiError::InvalidOffset(e.to_string()))?;
    Ok(topic.resolve(spec).await?)
}

/// `{"ok":true,"message":...}` with a status.
fn ok_message(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "ok": true, "message": message })),
    )
        .into_response()
}

/// Formats a time as RFC 3339 in UTC with nanoseconds, as netlog (Go) does.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Times print as Go's RFC 3339 with nanoseconds in UTC.
    #[test]
    fn formats_rfc3339_like_go() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_795_556_797, 44_244_919);
        assert_eq!(rfc3339(t), "2026-11-24T21:46:37.044244919Z");
        assert_eq!(
            rfc3339(std::time::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
    }
}
