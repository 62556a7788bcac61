//! Every route of both listeners, as data: the one place a route's pattern,
//! methods, listener and needed right are written.
//!
//! Everything that depends on the set of routes is built from [`Route::ALL`]:
//! the routers (`super::router`, which attaches each route's handlers), the
//! front's classification of a path ([`classify`], which must name the
//! pattern the router will match, for the metric label and the rights
//! check), the metric rows of `netlog_http_requests_total` (a route's row is
//! its place in [`Route::ALL`]; [`UNMATCHED`] is the row after the last), the
//! rights table (`auth.rs` asks [`Route::right`]) and the OpenAPI test (which
//! reads [`table`]). A route added here is served, counted, checked and
//! documented, or a test says which of those is missing.
//!
//! Matching follows the router's rules, which a unit test of `front.rs`
//! checks against the real routers: a route without parameters matches its
//! path exactly and wins over one with parameters; a `{param}` matches one
//! segment, which may be empty only if more of the path follows. Matching
//! allocates nothing: the patterns are cut into segments once, and a path
//! is compared with the fixed patterns, then cut once and compared segment
//! by segment with the others.

use axum::http::Method;

/// Which listener serves a route: the main one, or `[server] admin_listen`
/// (fixed, conventional paths for scrapers and probes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// `[server] listen`: topics, and the operator routes under `/_`.
    Main,
    /// `[server] admin_listen`: `/metrics`, `/health`, `/ready`, `/reload`.
    Admin,
}

/// Methods a route answers, as a bit set; `GET` routes answer `HEAD` too.
const GET: u8 = 1;
const POST: u8 = 2;
const DELETE: u8 = 4;
const PATCH: u8 = 8;

/// One route of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the topic list.
    TopicList,
    /// `/{topic}`: info, create, delete.
    Topic,
    /// `POST /{topic}/payload`.
    PayloadWrite,
    /// `GET /{topic}/payload/{offset}`.
    PayloadRead,
    /// `/{topic}/messages`: batch publish (`POST`), and the stateless range
    /// read the console browses with (`GET`).
    Messages,
    /// `GET /{topic}/sync`.
    Sync,
    /// `POST`/`DELETE /{topic}/scanner`.
    Scanner,
    /// `GET /{topic}/scan`.
    Scan,
    /// `GET /{topic}/stream`.
    Stream,
    /// `GET /{topic}/check`.
    Check,
    /// `GET /{topic}/groups`: the topic's consumer groups.
    GroupList,
    /// `/{topic}/groups/{group}`: info, create, delete.
    Group,
    /// `POST /{topic}/groups/{group}/receive`.
    GroupReceive,
    /// `POST /{topic}/groups/{group}/ack`.
    GroupAck,
    /// `POST /{topic}/groups/{group}/nack`.
    GroupNack,
    /// `POST /{topic}/groups/{group}/extend`.
    GroupExtend,
    /// `POST /{topic}/groups/{group}/reject`.
    GroupReject,
    /// `POST /{topic}/groups/{group}/seek?to=X`.
    GroupSeek,
    /// `GET /{topic}/groups/{group}/pending?from=O&max=N&state=S`.
    GroupPending,
    /// `GET /_metrics`.
    Metrics,
    /// `GET /_health`.
    Health,
    /// `GET /_ready`.
    Ready,
    /// `POST /_reload`.
    Reload,
    /// `GET /metrics` on the admin listener.
    AdminMetrics,
    /// `GET /health` on the admin listener.
    AdminHealth,
    /// `GET /ready` on the admin listener.
    AdminReady,
    /// `POST /reload` on the admin listener.
    AdminReload,
    /// `GET /_console`: redirects to the console.
    Console,
    /// `GET /_console/`: the console's page.
    ConsoleIndex,
    /// `GET /_console/{file}`: the console's other files.
    ConsoleFile,
    /// `GET /_whoami`: who the caller is, and their rights.
    Whoami,
    /// `GET /_stats`: every visible topic's counters, as JSON.
    Stats,
}

/// What a request needs, by route and method (the table of `auth.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Right {
    /// Anyone may.
    Nothing,
    /// Some right on some topic; the answer is cut to what the caller may see.
    List,
    /// `produce` on the route's topic.
    Produce,
    /// `consume` on the route's topic.
    Consume,
    /// `admin`; the action as it reads in a refusal, and whether it is about
    /// the route's topic.
    Admin(&'static str, bool),
    /// `admin`, unless `[auth] public_metrics`.
    Metrics,
}

/// The metric row of requests no route matched (`route="unmatched"`).
pub(crate) const UNMATCHED: usize = Route::ALL.len();

impl Route {
    /// Every route, in the order of their metric rows.
    pub const ALL: [Route; 32] = [
        Route::TopicList,
        Route::Topic,
        Route::PayloadWrite,
        Route::PayloadRead,
        Route::Messages,
        Route::Sync,
        Route::Scanner,
        Route::Scan,
        Route::Stream,
        Route::Check,
        Route::GroupList,
        Route::Group,
        Route::GroupReceive,
        Route::GroupAck,
        Route::GroupNack,
        Route::GroupExtend,
        Route::GroupReject,
        Route::GroupSeek,
        Route::GroupPending,
        Route::Metrics,
        Route::Health,
        Route::Ready,
        Route::Reload,
        Route::AdminMetrics,
        Route::AdminHealth,
        Route::AdminReady,
        Route::AdminReload,
        Route::Console,
        Route::ConsoleIndex,
        Route::ConsoleFile,
        Route::Whoami,
        Route::Stats,
    ];

    /// The pattern, in the router's syntax; also the metric label.
    pub fn pattern(self) -> &'static str {
        self.spec().0
    }

    /// The listener that serves it.
    pub fn listener(self) -> Listener {
        self.spec().2
    }

    /// The methods it answers (`HEAD` with `GET`).
    pub fn methods(self) -> Vec<Method> {
        let bits = self.spec().1;
        [
            (GET, Method::GET),
            (POST, Method::POST),
            (DELETE, Method::DELETE),
            (PATCH, Method::PATCH),
        ]
        .into_iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, m)| m)
        .collect()
    }

    /// Pattern, methods and listener: the table itself.
    const fn spec(self) -> (&'static str, u8, Listener) {
        use Listener::{Admin, Main};
        match self {
            Route::TopicList => ("/", GET, Main),
            Route::Topic => ("/{topic}", GET | POST | DELETE, Main),
            Route::PayloadWrite => ("/{topic}/payload", POST, Main),
            Route::PayloadRead => ("/{topic}/payload/{offset}", GET, Main),
            Route::Messages => ("/{topic}/messages", GET | POST, Main),
            Route::Sync => ("/{topic}/sync", GET, Main),
            Route::Scanner => ("/{topic}/scanner", POST | DELETE, Main),
            Route::Scan => ("/{topic}/scan", GET, Main),
            Route::Stream => ("/{topic}/stream", GET, Main),
            Route::Check => ("/{topic}/check", GET, Main),
            Route::GroupList => ("/{topic}/groups", GET, Main),
            Route::Group => ("/{topic}/groups/{group}", GET | POST | DELETE | PATCH, Main),
            Route::GroupPending => ("/{topic}/groups/{group}/pending", GET, Main),
            Route::GroupReceive => ("/{topic}/groups/{group}/receive", POST, Main),
            Route::GroupAck => ("/{topic}/groups/{group}/ack", POST, Main),
            Route::GroupNack => ("/{topic}/groups/{group}/nack", POST, Main),
            Route::GroupExtend => ("/{topic}/groups/{group}/extend", POST, Main),
            Route::GroupReject => ("/{topic}/groups/{group}/reject", POST, Main),
            Route::GroupSeek => ("/{topic}/groups/{group}/seek", POST, Main),
            Route::Metrics => ("/_metrics", GET, Main),
            Route::Health => ("/_health", GET, Main),
            Route::Ready => ("/_ready", GET, Main),
            Route::Reload => ("/_reload", POST, Main),
            Route::AdminMetrics => ("/metrics", GET, Admin),
            Route::AdminHealth => ("/health", GET, Admin),
            Route::AdminReady => ("/ready", GET, Admin),
            Route::AdminReload => ("/reload", POST, Admin),
            Route::Console => ("/_console", GET, Main),
            Route::ConsoleIndex => ("/_console/", GET, Main),
            Route::ConsoleFile => ("/_console/{file}", GET, Main),
            Route::Whoami => ("/_whoami", GET, Main),
            Route::Stats => ("/_stats", GET, Main),
        }
    }

    /// What `method` on this route needs (see `auth.rs`). A method the
    /// route does not answer never gets here: the router answers 405.
    pub(crate) fn right(self, method: &Method) -> Right {
        match self {
            Route::TopicList | Route::Stats => Right::List,
            Route::Health | Route::Ready | Route::AdminHealth | Route::AdminReady => Right::Nothing,
            // The console's files are public; `/_whoami` reads the token
            // itself, and refuses only one it does not know.
            Route::Console | Route::ConsoleIndex | Route::ConsoleFile | Route::Whoami => {
                Right::Nothing
            }
            Route::Metrics | Route::AdminMetrics => Right::Metrics,
            Route::Reload | Route::AdminReload => Right::Admin("reload the config", false),
            Route::Topic if method == Method::POST => Right::Admin("create topic", true),
            Route::Topic if method == Method::DELETE => Right::Admin("delete topic", true),
            Route::Messages if method == Method::GET || method == Method::HEAD => Right::Consume,
            Route::PayloadWrite | Route::Messages => Right::Produce,
            Route::Topic | Route::PayloadRead | Route::Scanner | Route::Scan | Route::Stream => {
                Right::Consume
            }
            Route::Group if method == Method::POST => Right::Admin("create group", true),
            Route::Group if method == Method::DELETE => Right::Admin("delete group", true),
            Route::Group if method == Method::PATCH => Right::Admin("change group", true),
            Route::GroupSeek => Right::Admin("seek group", true),
            Route::GroupList
            | Route::Group
            | Route::GroupReceive
            | Route::GroupAck
            | Route::GroupNack
            | Route::GroupExtend
            | Route::GroupReject
            | Route::GroupPending => Right::Consume,
            Route::Sync => Right::Admin("sync topic", true),
            Route::Check => Right::Admin("check topic", true),
        }
    }

    /// Its metric row.
    pub(crate) fn row(self) -> usize {
        self as usize
    }

    /// The route of metric row `row`, if it is not [`UNMATCHED`].
    pub(crate) fn of_row(row: usize) -> Option<Route> {
        Route::ALL.get(row).copied()
    }

    /// Whether it answers `method` (else the router answers 405).
    pub(crate) fn answers(self, method: &Method) -> bool {
        let bit = match *method {
            Method::GET | Method::HEAD => GET,
            Method::POST => POST,
            Method::DELETE => DELETE,
            Method::PATCH => PATCH,
            _ => 0,
        };
        self.spec().1 & bit != 0
    }
}

/// One route's pattern, cut into segments once: `None` is a `{param}`.
struct Compiled {
    route: Route,
    /// The whole pattern, for a route without parameters.
    fixed: Option<&'static str>,
    segments: Vec<Option<&'static str>>,
}

/// Most segments a pattern has (`/{topic}/groups/{group}/receive`).
const MAX_SEGMENTS: usize = 4;

/// The patterns of [`Route::ALL`], cut once.
static COMPILED: std::sync::LazyLock<Vec<Compiled>> = std::sync::LazyLock::new(|| {
    Route::ALL
        .iter()
        .map(|&route| {
            let pattern = route.pattern();
            let segments: Vec<Option<&'static str>> = match pattern.strip_prefix('/') {
                Some("") | None => Vec::new(),
                Some(rest) => rest
                    .split('/')
                    .map(|s| (!s.starts_with('{')).then_some(s))
                    .collect(),
            };
            Compiled {
                route,
                fixed: segments.iter().all(Option::is_some).then_some(pattern),
                segments,
            }
        })
        .collect()
});

/// The metric row of the route the router will match `path` with on
/// `listener`, or [`UNMATCHED`]: a route without parameters by equality
/// first, then the others segment by segment (see the module docs); of
/// two that match, the one with a literal where the other has a parameter,
/// earliest segment first (`/_console/payload` is a console file, as the
/// router has it, not a publish to `_console`).
pub(crate) fn classify(listener: Listener, path: &str) -> usize {
    let shapes = &SHAPES[listener as usize];
    if let Some(&(_, row)) = shapes.fixed.iter().find(|(fixed, _)| *fixed == path) {
        return row;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return UNMATCHED;
    };
    let mut got = [""; MAX_SEGMENTS];
    let mut n = 0;
    for segment in rest.split('/') {
        if n == MAX_SEGMENTS {
            return UNMATCHED;
        }
        got[n] = segment;
        n += 1;
    }
    let got = &got[..n];
    // Most literal first, so the first match is the one the router takes.
    shapes.by_len[n]
        .iter()
        .find(|c| {
            c.segments
                .iter()
                .zip(got)
                .enumerate()
                .all(|(i, (want, g))| match want {
                    Some(literal) => literal == g,
                    // A parameter may be empty only if more of the path follows.
                    None => !g.is_empty() || i + 1 < n,
                })
        })
        .map_or(UNMATCHED, |c| c.route.row())
}

/// The routes of one listener sorted for [`classify`]: those without
/// parameters by their whole path, the others by their number of segments,
/// most literal first (literal segments as bits, the first the highest).
struct Shapes {
    fixed: Vec<(&'static str, usize)>,
    by_len: [Vec<&'static Compiled>; MAX_SEGMENTS + 1],
}

static SHAPES: std::sync::LazyLock<[Shapes; 2]> = std::sync::LazyLock::new(|| {
    [Listener::Main, Listener::Admin].map(|listener| {
        let ours = || {
            COMPILED
                .iter()
                .filter(move |c| c.route.listener() == listener)
        };
        let fixed = ours()
            .filter_map(|c| c.fixed.map(|f| (f, c.route.row())))
            .collect();
        let by_len = std::array::from_fn(|n| {
            let mut same: Vec<&'static Compiled> = ours()
                .filter(|c| c.fixed.is_none() && c.segments.len() == n)
                .collect();
            let literal_bits = |c: &Compiled| {
                c.segments
                    .iter()
                    .fold(0u32, |key, s| (key << 1) | u32::from(s.is_some()))
            };
            same.sort_by_key(|c| std::cmp::Reverse(literal_bits(c)));
            same
        });
        Shapes { fixed, by_len }
    })
});

/// Every route with its methods and listener, for tests that compare the
/// routes with the documentation.
pub fn table() -> Vec<(&'static str, Vec<Method>, Listener)> {
    Route::ALL
        .iter()
        .map(|r| (r.pattern(), r.methods(), r.listener()))
        .collect()
}
