//! Authentication and rights: who is calling, and may they do this.
//!
//! [`Gate::check`] runs (from `front.rs`) on every request that a route
//! answers (404s for unknown paths and 405s for methods a route lacks stay
//! as they are). It reads the rights in force and decides from the route
//! and method what the request needs ([`Route::right`] in the route table,
//! where a new route cannot be added without saying what it needs):
//!
//! | route | needs |
//! |---|---|
//! | `POST /{topic}/payload`, `POST /{topic}/messages` | `produce` on the topic |
//! | `GET /{topic}`, payload read, browse (`GET /{topic}/messages`), scanner, scan, stream | `consume` on the topic |
//! | `POST`/`DELETE /{topic}`, `/{topic}/check`, `/{topic}/sync`, `/_reload` | `admin` |
//! | `/_metrics` | `admin`, unless `[auth] public_metrics` |
//! | `/_health`, `/_ready`, `/_whoami`, the console's files | nothing (`/_whoami` refuses an unknown token) |
//! | `GET /`, `GET /_stats` | any right; the list is cut to topics the caller may produce to or consume from |
//!
//! A request without an `Authorization` header is anonymous and gets
//! `[auth.anonymous]`'s rights; a token has its own rights plus those
//! (anything anyone may do, a token holder may do too). A header that is not
//! `Bearer <secret>`, an unknown secret, or an anonymous request without the
//! right, is a 401 with `WWW-Authenticate: Bearer`; a known token without the
//! right is a 403 whose `reason` says who may not do what.
//!
//! Cost per request: one lock-free load of the rights, one SHA-256 of the
//! presented secret, and a constant-time comparison against every declared
//! hash, without an early exit (so timing tells nothing about which token, or
//! how much of one, matched). With authentication off, one load and a branch.
//! Nothing is allocated unless the request is refused or is `GET /`.
//!
//! A reload replaces the rights whole with [`Gate::swap`]; requests already
//! past the check finish under the rights they were checked against.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use axum::http::{HeaderMap, HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::ApiError;
use super::routes::{Right, Route};
use crate::config::auth::{AuthConfig, Grants, SHA256_BYTES, secret_digest};

/// The rights in force, swapped whole on reload. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    rights: Arc<ArcSwap<AuthConfig>>,
}

impl Gate {
    /// A gate enforcing `config` (which lets everything through when it
    /// declares no token).
    pub fn new(config: &AuthConfig) -> Gate {
        Gate {
            rights: Arc::new(ArcSwap::from_pointee(config.clone())),
        }
    }

    /// Puts `config` in force for every request checked from now on;
    /// returns whether it differs from the rights it replaces.
    pub fn swap(&self, config: &AuthConfig) -> bool {
        let old = self.rights.swap(Arc::new(config.clone()));
        *old != *config
    }

    /// Whether requests are checked (a token is declared).
    #[cfg(test)]
    fn enabled(&self) -> bool {
        self.rights.load().enabled()
    }
}

/// The first segment of a path, percent-decoded (allocating only when it
/// holds a `%`), as axum hands it to the handlers as `{topic}`.
fn first_segment(path: &str) -> Cow<'_, str> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let segment = rest.split('/').next().unwrap_or("");
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy()
}

/// Who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Anonymous,
    /// Index into the declared tokens.
    Token(usize),
}

impl Caller {
    fn grants(self, rights: &AuthConfig) -> &Grants {
        match self {
            Caller::Anonymous => &rights.anonymous,
            Caller::Token(i) => &rights.tokens[i].grants,
        }
    }
}

/// The secret of an `Authorization: Bearer <secret>` value; `None` when the
/// value is not of that form.
fn bearer_secret(value: &HeaderValue) -> Option<&[u8]> {
    let bytes = value.as_bytes();
    let space = bytes.iter().position(|&b| b == b' ')?;
    if !bytes[..space].eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let secret = bytes[space..].trim_ascii();
    (!secret.is_empty() && !secret.contains(&b' ')).then_some(secret)
}

/// A digest as four words, so comparing one costs four XORs and one
/// constant-time test rather than 32 byte-wise ones.
fn words(digest: &[u8; SHA256_BYTES]) -> [u64; 4] {
    std::array::from_fn(|w| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest[w * 8..w * 8 + 8]);
        u64::from_ne_bytes(word)
    })
}

/// Finds the caller: anonymous without a header, else the token whose hash
/// matches, comparing with every declared hash in constant time.
fn identify(rights: &AuthConfig, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
    };
    let secret = bearer_secret(value).ok_or_else(|| ApiError::Unauthorized {
        reason: "the Authorization header is not \"Bearer <token>\"".into(),
        invalid_token: true,
    })?;
    let probe = words(&secret_digest(secret));
    let mut found = Choice::from(0);
    let mut index = 0u64;
    for (i, token) in rights.tokens.iter().enumerate() {
        let stored = words(&token.sha256);
        let diff = (0..4).fold(0, |d, w| d | (stored[w] ^ probe[w]));
        let same = diff.ct_eq(&0);
        index.conditional_assign(&(i as u64), same);
        found |= same;
    }
    if bool::from(found) {
        Ok(Caller::Token(index as usize))
    } else {
        Err(ApiError::Unauthorized {
            reason: "unknown token".into(),
            invalid_token: true,
        })
    }
}

/// What the check lets through.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    Pass,
    /// `GET /` for this caller: pass, then cut the answer to what it may see.
    List(Caller),
}

/// Decides one request against `rights`, which declare at least one token.
/// `need` is the route's right (the table of the module docs, from
/// [`Route::right`]); `topic` the topic it is about, if the right names one.
fn decide(
    rights: &AuthConfig,
    need: Right,
    topic: &str,
    headers: &HeaderMap,
) -> Result<Admission, ApiError> {
    if need == Right::Nothing || (need == Right::Metrics && rights.public_metrics) {
        return Ok(Admission::Pass);
    }
    let caller = identify(rights, headers)?;
    let (own, anyone) = (caller.grants(rights), &rights.anonymous);
    let allowed = match need {
        Right::Nothing => true,
        Right::List => caller != Caller::Anonymous || !anyone.is_empty(),
        Right::Produce => own.may_produce(topic) || anyone.may_produce(topic),
        Right::Consume => own.may_consume(topic) || anyone.may_consume(topic),
        Right::Admin(..) | Right::Metrics => own.admin,
    };
    if allowed {
        return Ok(match need {
            Right::List => Admission::List(caller),
            _ => Admission::Pass,
        });
    }
    let what = match need {
        Right::Produce => format!("produce to {topic}"),
        Right::Consume => format!("consume from {topic}"),
        Right::Admin(action, true) => format!("{action} {topic}"),
        Right::Admin(action, false) => action.to_string(),
        Right::Metrics => "read metrics".into(),
        Right::List | Right::Nothing => "list topics".into(),
    };
    Err(match caller {
        Caller::Anonymous => ApiError::Unauthorized {
            reason: format!("no token given, and anonymous callers may not {what}"),
            invalid_token: false,
        },
        Caller::Token(i) => ApiError::Forbidden {
            reason: format!("{} may not {what}", rights.tokens[i].name),
        },
    })
}

/// What [`Gate::check`] makes of a request.
pub(crate) enum Check {
    /// Go on.
    Pass,
    /// Answer this refusal (401 or 403) instead.
    Refuse(Response),
    /// `GET /`: go on, with the filter in the request for the handler.
    List(ListFilter),
}

impl Gate {
    /// Checks `request`, which the router will serve with `route` (a route
    /// that answers its method): see the module docs.
    pub(crate) fn check<B>(&self, route: Route, request: &Request<B>) -> Check {
        let rights = self.rights.load();
        if !rights.enabled() {
            return Check::Pass;
        }
        let topic = first_segment(request.uri().path());
        match decide(
            &rights,
            route.right(request.method()),
            &topic,
            request.headers(),
        ) {
            Ok(Admission::Pass) => Check::Pass,
            Ok(Admission::List(caller)) => Check::List(ListFilter {
                rights: Guard::into_inner(rights),
                caller,
            }),
            Err(refusal) => Check::Refuse(refusal.into_response()),
        }
    }
}

/// What one caller of `GET /` may see: the handler keeps only the names
/// it allows. Put in the request's extensions by [`Gate::check`]'s caller.
#[derive(Clone)]
pub(crate) struct ListFilter {
    rights: Arc<AuthConfig>,
    caller: Caller,
}

impl ListFilter {
    /// Whether the caller may do what needs `admin`.
    pub(crate) fn admin(&self) -> bool {
        self.caller.grants(&self.rights).admin
    }

    /// Whether the caller may see topic `name`: it may produce to it or
    /// consume from it, on its own rights or anyone's.
    pub(crate) fn allows(&self, name: &str) -> bool {
        let (own, anyone) = (self.caller.grants(&self.rights), &self.rights.anonymous);
        own.may_list(name) || anyone.may_list(name)
    }
}

/// Who a caller is and what they may do, as `GET /_whoami` tells it: never
/// a secret, only the token's name and its patterns.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Whether authentication is on.
    pub(crate) auth: bool,
    /// The token's name; `None` for an anonymous caller (or auth off).
    pub(crate) token: Option<String>,
    /// Whether it may do what needs `admin`.
    pub(crate) admin: bool,
    /// Topic patterns it may publish to (its own, then the anonymous ones).
    pub(crate) produce: Vec<String>,
    /// Topic patterns it may read.
    pub(crate) consume: Vec<String>,
}

impl Gate {
    /// The caller of a request with `headers`: with authentication off,
    /// anyone may do anything; an `Authorization` that names no token is a
    /// 401, as everywhere.
    pub(crate) fn identity(&self, headers: &HeaderMap) -> Result<Identity, ApiError> {
        let rights = self.rights.load();
        if !rights.enabled() {
            return Ok(Identity {
                auth: false,
                token: None,
                admin: true,
                produce: vec!["*".into()],
                consume: vec!["*".into()],
            });
        }
        let caller = identify(&rights, headers)?;
        let (own, anyone) = (caller.grants(&rights), &rights.anonymous);
        let patterns = |pick: fn(&Grants) -> &Vec<crate::config::auth::TopicPattern>| {
            let mut all: Vec<String> = Vec::new();
            for p in pick(own).iter().chain(pick(anyone)) {
                if !all.iter().any(|a| a == p.as_str()) {
                    all.push(p.as_str().to_string());
                }
            }
            all
        };
        Ok(Identity {
            auth: true,
            token: match caller {
                Caller::Anonymous => None,
                Caller::Token(i) => Some(rights.tokens[i].name.clone()),
            },
            admin: own.admin,
            produce: patterns(|g| &g.produce),
            consume: patterns(|g| &g.consume),
        })
    }
}

/// Logs a warning when the broker listens beyond loopback with
/// authentication off: anyone who reaches the port may delete every topic.
pub fn warn_if_exposed(addr: SocketAddr, config: &AuthConfig) {
    if exposed(addr, config) {
        tracing::warn!(
            %addr,
            "authentication is off on a non-loopback address: anyone who can reach it may \
             publish, read and delete every topic; declare [[auth.tokens]] (`netlog token new`) \
             or listen on 127.0.0.1"
        );
    }
}

/// Whether `addr` is reachable from other hosts while no token is declared.
fn exposed(addr: SocketAddr, config: &AuthConfig) -> bool {
    !config.enabled() && !addr.ip().to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::auth::{TokenConfig, TopicPattern};
    use axum::http::Method;

    fn patterns(list: &[&str]) -> Vec<TopicPattern> {
        list.iter()
            .map(|p| TopicPattern::parse(p).expect("pattern"))
            .collect()
    }

    fn token(name: &str, secret: &str, produce: &[&str], consume: &[&str]) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            sha256: secret_digest(secret.as_bytes()),
            grants: Grants {
                produce: patterns(produce),
                consume: patterns(consume),
                admin: false,
            },
        }
    }

    fn rights() -> AuthConfig {
        AuthConfig {
            tokens: vec![
                token("producer", "p-secret", &["orders.*"], &[]),
                token("reader", "r-secret", &[], &["orders.*"]),
            ],
            anonymous: Grants {
                consume: patterns(&["public"]),
                ..Grants::default()
            },
            public_metrics: false,
        }
    }

    fn bearer(secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {secret}")).expect("header"),
        );
        h
    }

    fn reason(e: ApiError) -> String {
        match e {
            ApiError::Unauthorized { reason, .. } | ApiError::Forbidden { reason } => reason,
            other => panic!("a refusal, not {other:?}"),
        }
    }

    /// Each route asks for the right the spec gives it.
    #[test]
    fn routes_need_their_rights() {
        use Right::*;
        let (get, post, delete) = (&Method::GET, &Method::POST, &Method::DELETE);
        let patch = &Method::PATCH;
        assert_eq!(Route::PayloadWrite.right(post), Produce);
        assert_eq!(Route::Messages.right(post), Produce);
        assert_eq!(Route::Messages.right(get), Consume);
        assert_eq!(Route::Messages.right(&Method::HEAD), Consume);
        assert_eq!(Route::PayloadRead.right(get), Consume);
        assert_eq!(Route::Scanner.right(post), Consume);
        assert_eq!(Route::Scanner.right(delete), Consume);
        assert_eq!(Route::Scan.right(get), Consume);
        assert_eq!(Route::Stream.right(get), Consume);
        assert_eq!(Route::Topic.right(get), Consume);
        assert_eq!(Route::Topic.right(post), Admin("create topic", true));
        assert_eq!(Route::Topic.right(delete), Admin("delete topic", true));
        assert_eq!(Route::Check.right(get), Admin("check topic", true));
        assert_eq!(Route::Sync.right(get), Admin("sync topic", true));
        assert_eq!(Route::Group.right(post), Admin("create group", true));
        assert_eq!(Route::Group.right(delete), Admin("delete group", true));
        assert_eq!(Route::Group.right(patch), Admin("change group", true));
        assert_eq!(Route::GroupSeek.right(post), Admin("seek group", true));
        assert_eq!(Route::GroupList.right(get), Consume);
        assert_eq!(Route::Group.right(get), Consume);
        assert_eq!(Route::GroupPending.right(get), Consume);
        for member in [
            Route::GroupReceive,
            Route::GroupAck,
            Route::GroupNack,
            Route::GroupExtend,
            Route::GroupReject,
        ] {
            assert_eq!(member.right(post), Consume);
        }
        for reload in [Route::Reload, Route::AdminReload] {
            assert_eq!(reload.right(post), Admin("reload the config", false));
        }
        for metrics in [Route::Metrics, Route::AdminMetrics] {
            assert_eq!(metrics.right(get), Metrics);
        }
        for free in [
            Route::Health,
            Route::Ready,
            Route::AdminHealth,
            Route::AdminReady,
            Route::Console,
            Route::ConsoleIndex,
            Route::ConsoleFile,
            Route::Whoami,
        ] {
            assert_eq!(free.right(get), Nothing);
        }
        assert_eq!(Route::TopicList.right(get), List);
        assert_eq!(Route::Stats.right(get), List);
    }

    /// The topic is the path's first segment, percent-decoded like axum does.
    #[test]
    fn topic_comes_from_the_first_segment() {
        assert_eq!(first_segment("/orders/payload/3"), "orders");
        assert_eq!(first_segment("/orders"), "orders");
        assert_eq!(first_segment("/"), "");
        assert_eq!(first_segment("/%6Frders/scan"), "orders");
        assert_eq!(first_segment("/a%2eb"), "a.b");
        assert_eq!(first_segment("/a%zz"), "a%zz");
    }

    /// Only `Bearer <secret>` (scheme in any case) yields a secret.
    #[test]
    fn bearer_header_is_parsed_strictly() {
        let v = |s: &str| HeaderValue::from_str(s).expect("header");
        assert_eq!(bearer_secret(&v("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer_secret(&v("bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(bearer_secret(&v("Basic abc")), None);
        assert_eq!(bearer_secret(&v("Bearer")), None);
        assert_eq!(bearer_secret(&v("Bearer ")), None);
        assert_eq!(bearer_secret(&v("Bearer a b")), None);
        assert_eq!(bearer_secret(&v("Bearerabc")), None);
    }

    /// Tokens are found by secret whatever their position; unknown and
    /// malformed ones are 401s.
    #[test]
    fn callers_are_identified_by_secret() {
        let r = rights();
        assert_eq!(
            identify(&r, &HeaderMap::new()).ok(),
            Some(Caller::Anonymous)
        );
        assert_eq!(
            identify(&r, &bearer("p-secret")).ok(),
            Some(Caller::Token(0))
        );
        assert_eq!(
            identify(&r, &bearer("r-secret")).ok(),
            Some(Caller::Token(1))
        );
        for bad in ["p-secre", "p-secret2", "P-SECRET"] {
            let e = identify(&r, &bearer(bad)).expect_err(bad);
            assert!(matches!(
                e,
                ApiError::Unauthorized {
                    invalid_token: true,
                    ..
                }
            ));
        }
    }

    /// Refusals say who may not do what; anonymous ones are 401s.
    #[test]
    fn refusals_name_caller_and_action() {
        let r = rights();
        let e = decide(&r, Right::Consume, "orders.eu", &bearer("p-secret")).expect_err("403");
        assert!(matches!(e, ApiError::Forbidden { .. }));
        assert_eq!(reason(e), "producer may not consume from orders.eu");
        let e = decide(
            &r,
            Right::Admin("delete topic", true),
            "orders.eu",
            &bearer("p-secret"),
        )
        .expect_err("403");
        assert_eq!(reason(e), "producer may not delete topic orders.eu");
        let e = decide(&r, Right::Produce, "public", &HeaderMap::new()).expect_err("401");
        assert!(matches!(
            e,
            ApiError::Unauthorized {
                invalid_token: false,
                ..
            }
        ));
        assert_eq!(
            reason(e),
            "no token given, and anonymous callers may not produce to public"
        );
        assert_eq!(
            decide(&r, Right::Produce, "orders.eu", &bearer("p-secret")).ok(),
            Some(Admission::Pass)
        );
        assert_eq!(
            decide(&r, Right::Consume, "public", &HeaderMap::new()).ok(),
            Some(Admission::Pass)
        );
    }

    /// Health needs nothing, even with a bad token; metrics need admin unless public.
    #[test]
    fn health_is_open_and_metrics_follow_public_metrics() {
        let mut r = rights();
        assert_eq!(
            decide(&r, Right::Nothing, "", &bearer("nope")).ok(),
            Some(Admission::Pass)
        );
        assert!(decide(&r, Right::Metrics, "", &bearer("p-secret")).is_err());
        r.public_metrics = true;
        assert_eq!(
            decide(&r, Right::Metrics, "", &HeaderMap::new()).ok(),
            Some(Admission::Pass)
        );
    }

    /// A swap puts new rights in force for the next check.
    #[test]
    fn swap_changes_rights_at_once() {
        let gate = Gate::new(&rights());
        let check = |gate: &Gate| {
            decide(
                &gate.rights.load(),
                Right::Consume,
                "orders.x",
                &bearer("p-secret"),
            )
        };
        assert!(check(&gate).is_err());
        let mut more = rights();
        more.tokens[0].grants.consume = patterns(&["orders.*"]);
        gate.swap(&more);
        assert_eq!(check(&gate).ok(), Some(Admission::Pass));
        gate.swap(&AuthConfig::default());
        assert!(!gate.enabled());
    }

    /// The warning fires off loopback with auth off, and only then.
    #[test]
    fn exposure_is_non_loopback_without_tokens() {
        let off = AuthConfig::default();
        let addr = |s: &str| s.parse::<SocketAddr>().expect("address");
        assert!(exposed(addr("0.0.0.0:7200"), &off));
        assert!(exposed(addr("[::]:7200"), &off));
        assert!(exposed(addr("10.1.2.3:7200"), &off));
        assert!(!exposed(addr("127.0.0.1:7200"), &off));
        assert!(!exposed(addr("[::1]:7200"), &off));
        assert!(!exposed(addr("[::ffff:127.0.0.1]:7200"), &off));
        assert!(!exposed(addr("0.0.0.0:7200"), &rights()));
    }
}
