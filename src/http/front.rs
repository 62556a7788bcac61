//! The front of each listener: one tower service in front of the router that
//! does, per request, what every route shares, before and after routing.
//!
//! In order: it names the request's route pattern (by reading the path, the
//! way the router will match it); on the main listener refuses a `Host` the
//! broker does not answer as (`hosts.rs`, against DNS rebinding); answers a
//! browser whose `Origin` is neither allowed nor the console's own
//! (`hosts.rs`), or a CORS preflight, itself (`origin.rs`); checks the caller's
//! rights for that route and method (`auth.rs`); then calls the router, and
//! when the answer is ready counts it by route and status code
//! (`metrics.rs`) and adds the CORS headers an allowed origin gets, and
//! `X-Content-Type-Options: nosniff` to every answer, its own too. For
//! `GET /` with authentication on it hands the handler the caller's
//! [`super::auth::ListFilter`] in the request's extensions, so the list is
//! cut before it is written. No future is boxed here.
//!
//! Why not three `axum::middleware::from_fn` layers: each boxes the inner
//! service and a future per request, and the origin guard needed a router
//! of its own, so a request was routed twice. Here a request costs one
//! classification of its path (a few byte comparisons), one lock-free load
//! of the rights, and on the way out one relaxed `fetch_add`.
//!
//! The path is classified from the route table (`routes.rs`), from which
//! the routers are built too; a unit test sends every pattern and a set of
//! tricky paths through the real routers and compares.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tower::Service;

use super::auth::{Check, Gate};
use super::hosts::Hosts;
use super::hot::{self, HotFuture};
use super::metrics::{HttpMetrics, OpenGuard};
use super::origin::{self, Origins};
use super::routes::{Listener, Route, classify};
use super::{ApiError, AppState};

/// What a front holds; shared by every connection of its listener.
struct FrontState {
    listener: Listener,
    origins: Option<Origins>,
    hosts: Option<Hosts>,
    gate: Gate,
    metrics: Arc<HttpMetrics>,
    /// The state the hot routes (`hot.rs`) are served with, on the main
    /// listener; `None` sends every request to the router.
    hot: Option<AppState>,
}

/// The front service around `inner` (the listener's router). Cheap to clone.
#[derive(Clone)]
pub(crate) struct Front<S> {
    inner: S,
    shared: Arc<FrontState>,
}

impl<S> Front<S> {
    /// `inner` behind the front. `origins` is `None` on the admin listener,
    /// which browsers have no business calling (their requests pass as any
    /// other; rights still apply). With `hot`, the hot routes are served
    /// without `inner` (see `hot.rs`).
    pub(crate) fn new(
        inner: S,
        listener: Listener,
        origins: Option<Origins>,
        gate: Gate,
        metrics: Arc<HttpMetrics>,
        hot: Option<AppState>,
    ) -> Front<S> {
        Front {
            inner,
            shared: Arc::new(FrontState {
                listener,
                origins,
                hosts: None,
                gate,
                metrics,
                hot,
            }),
        }
    }

    /// Whether this front serves the hot routes itself (the main listener).
    pub(crate) fn serves_hot(&self) -> bool {
        self.shared.hot.is_some()
    }

    /// Checks the `Host` of every request against `hosts`, and lets the
    /// console's own origin through (see `hosts.rs`). Only on a fresh front.
    pub(crate) fn with_hosts(mut self, hosts: Hosts) -> Front<S> {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.hosts = Some(hosts);
        }
        self
    }
}

impl<S, B> Service<Request<B>> for Front<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = FrontFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let req = req.map(Body::new);
        let shared = &self.shared;
        let route = classify(shared.listener, req.uri().path());
        let counted = |answer: Response| FrontFuture::ready(answer, route, &shared.metrics);
        let mut cors = None;
        if let Some(hosts) = &shared.hosts
            && let Err(host) = hosts.check(req.uri(), req.headers())
        {
            tracing::debug!(host, "request for a host the broker does not answer as");
            let reason = format!("host {host:?} is not in [server] allowed_hosts");
            return counted(ApiError::Forbidden { reason }.into_response());
        }
        let own = |origin| {
            (shared.hosts.as_ref()).is_some_and(|h| h.own_origin(origin, req.uri(), req.headers()))
        };
        if let (Some(origins), Some(origin)) = (&shared.origins, req.headers().get(header::ORIGIN))
            && !own(origin)
        {
            match origins.check(origin, req.method(), req.headers()) {
                origin::OriginCheck::Pass => cors = Some(origin.clone()),
                origin::OriginCheck::Answer(answer) => return counted(answer),
            }
        }
        let mut req = req;
        let matched = Route::of_row(route).filter(|r| r.answers(req.method()));
        if let Some(matched) = matched {
            match shared.gate.check(matched, &req) {
                Check::Pass => {}
                Check::Refuse(answer) => return counted(origin::decorate(answer, cors)),
                // `topics_list` reads it and lists only what it allows.
                Check::List(filter) => {
                    req.extensions_mut().insert(filter);
                }
            }
        }
        let poll = (route == Route::Scan.row()).then(|| OpenGuard::long_poll(&shared.metrics));
        let state = match (matched, &shared.hot) {
            (Some(matched), Some(app)) if hot::takes(matched, &req) => State::Hot {
                hot: hot::serve(matched, req, app),
            },
            _ => State::Inner {
                inner: self.inner.call(req),
            },
        };
        FrontFuture {
            state,
            route,
            metrics: shared.metrics.clone(),
            cors,
            _poll: poll,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer to one request, counted when it is ready.
    pub(crate) struct FrontFuture<F> {
        #[pin]
        state: State<F>,
        route: usize,
        metrics: Arc<HttpMetrics>,
        cors: Option<HeaderValue>,
        _poll: Option<OpenGuard>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Ready { answer: Option<Response> },
        Inner { #[pin] inner: F },
        Hot { hot: HotFuture },
    }
}

impl<F> FrontFuture<F> {
    fn ready(answer: Response, route: usize, metrics: &Arc<HttpMetrics>) -> FrontFuture<F> {
        FrontFuture {
            state: State::Ready {
                answer: Some(answer),
            },
            route,
            metrics: metrics.clone(),
            cors: None,
            _poll: None,
        }
    }
}

impl<F> Future for FrontFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = match this.state.project() {
            StateProj::Ready { answer } => match answer.take() {
                Some(answer) => answer,
                None => panic!("FrontFuture polled after completion"),
            },
            StateProj::Inner { inner } => {
                let Ok(answer) = ready!(inner.poll(cx));
                answer
            }
            StateProj::Hot { hot } => ready!(hot.as_mut().poll(cx)),
        };
        this.metrics.count(*this.route, answer.status());
        let mut answer = origin::decorate(answer, this.cors.take());
        answer.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        Poll::Ready(Ok(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Broker;
    use crate::config::Config;
    use crate::http::AppState;
    use crate::http::routes::UNMATCHED;
    use axum::extract::MatchedPath;
    use axum::http::Method;
    use tower::ServiceExt;

    /// What the real `router` makes of `path` for each of GET, POST and
    /// DELETE: the pattern it matched (`None`: no route), and whether it
    /// answered 405 (a route that does not answer the method).
    async fn routed(router: &axum::Router, path: &str) -> Vec<(Method, Option<String>, bool)> {
        let tagged = router.clone().route_layer(axum::middleware::from_fn(
            |req: Request, next: axum::middleware::Next| async move {
                let pattern = req.extensions().get::<MatchedPath>().cloned();
                let mut answer = next.run(req).await;
                if let Some(p) = pattern {
                    let value = HeaderValue::from_str(p.as_str()).expect("pattern");
                    answer.headers_mut().insert("x-pattern", value);
                }
                answer
            },
        ));
        let mut out = Vec::new();
        for method in [Method::GET, Method::POST, Method::DELETE] {
            let req = Request::builder()
                .method(method.clone())
                .uri(path)
                .body(Body::empty())
                .expect("request");
            let answer = tagged.clone().oneshot(req).await.expect("infallible");
            let pattern = answer
                .headers()
                .get("x-pattern")
                .map(|v| v.to_str().expect("ascii").to_string());
            let refused = answer.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED;
            out.push((method, pattern, refused));
        }
        out
    }

    /// The front's table agrees with the routers: for every pattern and a
    /// set of awkward paths, the same route, and the same methods answered.
    #[tokio::test]
    async fn classification_agrees_with_the_routers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let state = AppState::new(
            Arc::new(Broker::open(config).expect("open")),
            tokio::sync::watch::channel(false).1,
            None,
            Gate::new(&Default::default()),
        );
        let mut paths: Vec<String> = [
            "/",
            "/t",
            "/t/",
            "//",
            "//payload",
            "//scan",
            "//payload/1",
            "///",
            "/t//",
            "/t/payload//",
            "//payload//",
            "/_metrics/",
            "/_reload/",
            "/t/payload",
            "/t/payload/",
            "/t/payload/7",
            "/t/payload/7/",
            "/t/payload/7/x",
            "/t/messages",
            "/t/messages/1",
            "/t/sync",
            "/t/scanner",
            "/t/scanner/x",
            "/t/scan",
            "/t/stream",
            "/t/check",
            "/t/nothing",
            "/t/x/y",
            "/a%2Fb/scan",
            "/_metrics",
            "/_health",
            "/_ready",
            "/_reload",
            "/_other",
            "/_metrics/scan",
            "/_reload/payload",
            "/metrics",
            "/health",
            "/ready",
            "/reload",
            "/metrics/x",
            "/health/",
            "/_console",
            "/_console/",
            "/_console/app.js",
            "/_console/payload",
            "/_console/messages",
            "/_console/payload/7",
            "/_console//",
            "/_whoami",
            "/_stats",
            "/_stats/scan",
            "/_console/groups",
            "/_console/groups/g",
            "/_stats/groups",
            "/_whoami/groups/g/ack",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        // And every route of the table, its parameters filled in.
        for route in Route::ALL {
            let mut path = String::new();
            for segment in route.pattern().split('/').skip(1) {
                path.push('/');
                path.push_str(if segment.starts_with('{') {
                    "p"
                } else {
                    segment
                });
            }
            paths.push(if path.is_empty() { "/".into() } else { path });
        }
        let main = crate::http::router(state.clone(), Listener::Main);
        let admin = crate::http::router(state, Listener::Admin);
        let mut wrong = Vec::new();
        for (listener, router) in [(Listener::Main, &main), (Listener::Admin, &admin)] {
            for path in &paths {
                let row = classify(listener, path);
                for (method, pattern, refused) in routed(router, path).await {
                    let ours = Route::of_row(row).map(|r| r.pattern().to_string());
                    if ours != pattern {
                        wrong.push(format!(
                            "{listener:?} {method} {path}: {ours:?}, router {pattern:?}"
                        ));
                    } else if Route::of_row(row).is_some_and(|r| r.answers(&method) == refused) {
                        wrong.push(format!("{listener:?} {method} {path}: answered {refused}"));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// Every answer is counted once under its route, the ones the front
    /// gives itself too (an origin refused, a token refused, a preflight);
    /// a request dropped while it waits (a client gone from a long poll)
    /// gives its long-poll slot back.
    #[tokio::test]
    async fn every_answer_is_counted_and_long_polls_released() {
        use crate::config::auth::{AuthConfig, Grants, TokenConfig, TopicPattern, secret_digest};
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let rights = AuthConfig {
            tokens: vec![TokenConfig {
                name: "ops".into(),
                sha256: secret_digest(b"ops-secret"),
                grants: Grants {
                    produce: vec![TopicPattern::parse("*").expect("glob")],
                    consume: vec![TopicPattern::parse("*").expect("glob")],
                    admin: true,
                },
            }],
            anonymous: Grants::default(),
            public_metrics: false,
        };
        // The sender lives as long as the test: a dropped one means shutdown.
        let (_running, shutdown) = tokio::sync::watch::channel(false);
        let state = AppState::new(
            Arc::new(Broker::open(config).expect("open")),
            shutdown,
            None,
            Gate::new(&rights),
        );
        let metrics = state.metrics.clone();
        let app = crate::http::app(state, &["https://ok.example".to_string()]);
        let send = |method: Method, path: &str, headers: &[(&str, &str)]| {
            let mut req = Request::builder().method(method).uri(path);
            for (name, value) in headers {
                req = req.header(*name, *value);
            }
            app.clone()
                .oneshot(req.body(Body::empty()).expect("request"))
        };
        let ops = [("authorization", "Bearer ops-secret")];
        let status = |r: Result<Response, Infallible>| r.expect("infallible").status().as_u16();
        assert_eq!(status(send(Method::POST, "/t", &ops).await), 201);
        assert_eq!(status(send(Method::POST, "/t/payload", &[]).await), 401);
        let bad_origin = [("origin", "https://evil.example")];
        assert_eq!(status(send(Method::GET, "/t", &bad_origin).await), 403);
        let preflight = [
            ("origin", "https://ok.example"),
            ("access-control-request-method", "POST"),
        ];
        assert_eq!(
            status(send(Method::OPTIONS, "/t/payload", &preflight).await),
            204
        );
        let allowed = send(
            Method::GET,
            "/t",
            &[("origin", "https://ok.example"), ops[0]],
        )
        .await
        .expect("infallible");
        assert_eq!(allowed.status(), 200);
        assert_eq!(
            allowed.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://ok.example"
        );
        assert_eq!(status(send(Method::GET, "/a/b/c/d", &ops).await), 404);
        assert_eq!(status(send(Method::PUT, "/t", &[]).await), 405);
        let row = |route: Route| route.row();
        for (route, code, want) in [
            (row(Route::Topic), 201, 1),
            (row(Route::PayloadWrite), 401, 1),
            (row(Route::Topic), 403, 1),
            (row(Route::PayloadWrite), 204, 1),
            (row(Route::Topic), 200, 1),
            (UNMATCHED, 404, 1),
            (row(Route::Topic), 405, 1),
        ] {
            assert_eq!(
                metrics.answered(route, code),
                want,
                "{} {code}",
                Route::of_row(route).map_or("unmatched", Route::pattern)
            );
        }

        // A long poll holds its slot while it waits and gives it back when
        // the client goes away.
        let created = send(Method::POST, "/t/scanner", &ops)
            .await
            .expect("infallible");
        assert_eq!(created.status(), 201);
        let body = axum::body::to_bytes(created.into_body(), 1 << 16)
            .await
            .expect("body");
        let id = serde_json::from_slice::<serde_json::Value>(&body).expect("json")["id"]
            .as_str()
            .expect("id")
            .to_string();
        let mut poll = Box::pin(send(
            Method::GET,
            &format!("/t/scan?id={id}&wait=30s"),
            &ops,
        ));
        let waited = tokio::time::timeout(std::time::Duration::from_millis(300), &mut poll).await;
        if let Ok(answer) = waited {
            let answer = answer.expect("infallible");
            let status = answer.status();
            let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
                .await
                .expect("body");
            panic!("nothing to read, so the scan waits; it answered {status} {body:?}");
        }
        assert_eq!(metrics.long_polls(), 1, "the waiting scan is a long poll");
        drop(poll);
        assert_eq!(
            metrics.long_polls(),
            0,
            "the dropped poll gave its slot back"
        );
    }
}
