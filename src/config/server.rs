//! The connection layer's settings: the `[server]` keys that bound what one
//! client can hold (time, descriptors, memory) and that turn on TLS and
//! browser access.
//!
//! Every value has a default chosen to serve long polls and event streams,
//! which wait on purpose and are never counted as idle. The values are
//! checked when the file is read: a zero where zero makes no sense, an origin
//! that is not `scheme://host[:port]`, or only one of the two TLS files is an
//! error that names the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::parse_duration;

/// Default [`ServerOptions::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServerOptions::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`ServerOptions::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ServerOptions::body_min_rate`], in bytes per second (16 KiB/s).
pub const DEFAULT_BODY_MIN_RATE: u64 = 16 << 10;
/// Default [`ServerOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default [`ServerOptions::body_budget`], in bytes (512 MiB).
pub const DEFAULT_BODY_BUDGET: u64 = 512 << 20;
/// Default [`ServerOptions::body_budget_wait`].
pub const DEFAULT_BODY_BUDGET_WAIT: Duration = Duration::from_secs(10);
/// Default [`ServerOptions::answer_budget`], in bytes (64 MiB).
pub const DEFAULT_ANSWER_BUDGET: u64 = 64 << 20;
/// Smallest [`ServerOptions::answer_budget`]: 64 KiB.
pub const MIN_ANSWER_BUDGET: u64 = 64 << 10;
/// Largest [`ServerOptions::answer_budget`]: 2 GiB.
pub const MAX_ANSWER_BUDGET: u64 = 2 << 30;
/// Default [`ServerOptions::answer_budget_wait`].
pub const DEFAULT_ANSWER_BUDGET_WAIT: Duration = Duration::from_secs(1);
/// Default [`ServerOptions::shutdown_timeout`].
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How the listener treats connections (the `[server]` keys named on each
/// field).
#[derive(Clone, Debug, PartialEq)]
pub struct ServerOptions {
    /// `header_timeout`: longest a client may take to send a complete request
    /// head, counted from the connection's start (for its first request) or
    /// from the first byte of a later one. A silent connection is closed
    /// after it. Default 10s; must be above zero.
    pub header_timeout: Duration,
    /// `idle_timeout`: longest a keep-alive connection may sit with no
    /// request in flight before it is closed. A long poll or an event stream
    /// is in flight, so it is never idle. Default 60s; must be above zero.
    pub idle_timeout: Duration,
    /// `body_timeout`: longest a request body may pause between two pieces
    /// (and the grace before `body_min_rate` applies). A body that stalls
    /// for longer, or that has sent fewer than `body_min_rate` bytes per
    /// second since this grace ran out, fails with 408 and its connection is
    /// closed. Default 30s; must be above zero.
    pub body_timeout: Duration,
    /// `body_min_rate`: the slowest a request body may arrive, in bytes per
    /// second, after `body_timeout`. Default 16KiB (a 64 MiB body may take an
    /// hour); must be at least 1.
    pub body_min_rate: u64,
    /// `max_connections`: most connections served at once. At the cap, a new
    /// connection first displaces the oldest one with no request in flight,
    /// then the oldest one waiting in a long poll (which gets its normal
    /// empty answer at once); when every connection is busy otherwise it
    /// gets a fast 503 and is closed. The
    /// cap in force is also held to three quarters of the descriptor limit
    /// (after raising it to the hard limit), leaving the rest for topic files.
    /// Default 10000; must be at least 1.
    pub max_connections: usize,
    /// `body_budget`: bytes of request bodies held in memory at once, across
    /// all requests. A body that needs more waits up to `body_budget_wait`,
    /// then gets 503. The broker's resident memory then stays within its
    /// idle size plus this budget plus read buffers (30 stalled 63 MiB
    /// uploads against a 256 MiB budget peaked at idle + 279 MiB).
    /// Default 512MiB; must be at least `max_body`.
    pub body_budget: u64,
    /// `body_budget_wait`: longest a body waits for room in `body_budget`,
    /// in all, before its request gets 503; zero answers 503 at once.
    /// Default 10s.
    pub body_budget_wait: Duration,
    /// `answer_budget`: bytes of batch-scan answers held in memory at once,
    /// across all requests (each message counted as its payload plus its
    /// 17 bytes of binary framing). Past it a batch scan waits up to
    /// `answer_budget_wait` for room, then answers with the messages that
    /// fit in what is free, or 503 if not even one does (see
    /// `http/answers.rs`). Default 64MiB; 64KiB to 2GiB.
    pub answer_budget: u64,
    /// `answer_budget_wait`: longest a batch scan waits for room in
    /// `answer_budget` before it makes do with less; zero does not wait.
    /// Default 1s; at most 1day.
    pub answer_budget_wait: Duration,
    /// `shutdown_timeout`: on shutdown, longest the server waits for
    /// requests in flight to finish before it closes their connections.
    /// Default 30s; must be above zero.
    pub shutdown_timeout: Duration,
    /// `allowed_origins`: web origins (`https://app.example.com`, or `*` for
    /// any) whose pages may call the API. A request with an `Origin` header
    /// from any other origin is refused with 403 before it does anything.
    /// Default: none, so no browser page can use the broker.
    pub allowed_origins: Vec<String>,
    /// `tls_cert`: PEM certificate chain; with `tls_key`, the listener speaks
    /// HTTPS only. Relative to the config file. Default: unset (plain HTTP).
    pub tls_cert: Option<PathBuf>,
    /// `tls_key`: PEM private key for `tls_cert`. Default: unset.
    pub tls_key: Option<PathBuf>,
    /// `tail_cache`: bytes of the messages each topic wrote last that it
    /// keeps in memory for consumers near the end (the bytes of its
    /// flushes plus 16 bytes per message; see the log's `tail.rs`). Default 2MiB; 0 turns the
    /// cache off; at most `tail_cache_total`.
    pub tail_cache: u64,
    /// `tail_cache_total`: bytes of every topic's tail cache together; past
    /// it the topic being written drops its own oldest messages. Default
    /// 128MiB.
    pub tail_cache_total: u64,
    /// `allowed_hosts`: host names (`broker.example.com`, no port) the main
    /// listener answers as, against DNS rebinding (see `http/hosts.rs`).
    /// When set, a request whose `Host` names any other host is refused
    /// with 403 before it does anything; IP literals, `localhost` and the
    /// names of `[console] hosts` are always accepted (a rebound page
    /// always has a DNS name of its own). Default: unset, any `Host` (as
    /// before); `["*"]` is the same. Set it (`["localhost"]` will do on a
    /// machine reached by IP) when authentication is off and a browser can
    /// reach the broker.
    pub allowed_hosts: Vec<String>,
    /// `idle_spin`: longest a worker that runs out of work watches for new
    /// work before it sleeps, so that a client sending one request at a
    /// time does not pay for waking it each time (see `idle_spin.rs`). At
    /// most one worker spins at once. Read at start only. Default 50us; at
    /// most 1ms; 0 turns it off.
    pub idle_spin: Duration,
}

/// The web console (`[console]`), served by the main listener at
/// `/_console/` (see `http/console.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct ConsoleOptions {
    /// `enabled`: serve the console's files. Default true. Its data routes
    /// (`/_whoami`, `/_stats`) are served either way.
    pub enabled: bool,
    /// `hosts`: host names (no port) besides IP literals and `localhost`
    /// that the broker answers as, whose pages are the console's own: a
    /// request whose `Origin` is the same host and port as its `Host`, with
    /// that host one of these, passes the origin guard. Also accepted as
    /// `Host` (see `[server] allowed_hosts`). Default: none.
    pub hosts: Vec<String>,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            enabled: true,
            hosts: Vec::new(),
        }
    }
}

/// Checks one host name of `allowed_hosts` or `[console] hosts` and
/// returns it lower case: a DNS name (letters, digits, `-`, `.`), or `*`.
pub fn normalize_host(text: &str) -> Result<String, String> {
    let host = text.trim().trim_end_matches('.').to_ascii_lowercase();
    if host == "*" {
        return Ok(host);
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if host.is_empty() || host.len() > 253 || !host.chars().all(ok) {
        return Err(format!(
            "{text:?} is not a host name (letters, digits, '-' and '.', no port)"
        ));
    }
    Ok(host)
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            body_min_rate: DEFAULT_BODY_MIN_RATE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            body_budget: DEFAULT_BODY_BUDGET,
            body_budget_wait: DEFAULT_BODY_BUDGET_WAIT,
            answer_budget: DEFAULT_ANSWER_BUDGET,
            answer_budget_wait: DEFAULT_ANSWER_BUDGET_WAIT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            allowed_origins: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tail_cache: crate::log::TAIL_CACHE_BYTES as u64,
            tail_cache_total: crate::log::TAIL_CACHE_TOTAL_BYTES as u64,
            allowed_hosts: Vec::new(),
            idle_spin: crate::idle_spin::DEFAULT_IDLE_SPIN,
        }
    }
}

/// The `[server]` keys of this module as written in the file (sizes already
/// turned into bytes), before they are checked.
#[derive(Default)]
pub(super) struct ServerKeys {
    pub header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub body_min_rate: Option<u64>,
    pub max_connections: Option<usize>,
    pub body_budget: Option<u64>,
    pub body_budget_wait: Option<String>,
    pub answer_budget: Option<u64>,
    pub answer_budget_wait: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub allowed_origins: Option<Vec<String>>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tail_cache: Option<u64>,
    pub tail_cache_total: Option<u64>,
    pub allowed_hosts: Option<Vec<String>>,
    pub idle_spin: Option<String>,
}

/// A bad key: its name and what is wrong.
pub(super) type KeyError = (&'static str, String);

impl ServerKeys {
    /// Checks the keys and fills in defaults. `base` is the config file's
    /// folder (for the TLS paths); `max_body` is the largest body in force.
    pub(super) fn resolve(self, base: &Path, max_body: u64) -> Result<ServerOptions, KeyError> {
        let mut o = ServerOptions::default();
        // Every duration here is at most a day: longer is a mistake, and
        // an absurd one would overflow the clock arithmetic of the listener.
        let within_a_day = |key: &'static str, t: &str| {
            let d = parse_duration(t).map_err(|e| (key, e.to_string()))?;
            if d > super::MAX_INTERVAL {
                return Err((key, "must be at most 1day".to_string()));
            }
            Ok(d)
        };
        let positive = |key: &'static str, text: Option<String>, into: &mut Duration| {
            if let Some(t) = text {
                let d = within_a_day(key, &t)?;
                if d.is_zero() {
                    return Err((key, "must be above zero".to_string()));
                }
                *into = d;
            }
            Ok(())
        };
        positive("header_timeout", self.header_timeout, &mut o.header_timeout)?;
        positive("idle_timeout", self.idle_timeout, &mut o.idle_timeout)?;
        positive("body_timeout", self.body_timeout, &mut o.body_timeout)?;
        positive(
            "shutdown_timeout",
            self.shutdown_timeout,
            &mut o.shutdown_timeout,
        )?;
        if let Some(w) = self.body_budget_wait {
            o.body_budget_wait = within_a_day("body_budget_wait", &w)?;
        }
        if let Some(t) = self.idle_spin {
            let d = within_a_day("idle_spin", &t)?;
            if d > crate::idle_spin::MAX_IDLE_SPIN {
                return Err(("idle_spin", "must be at most 1ms".to_string()));
            }
            o.idle_spin = d;
        }
        if let Some(w) = self.answer_budget_wait {
            o.answer_budget_wait = within_a_day("answer_budget_wait", &w)?;
        }
        if let Some(b) = self.answer_budget {
            if !(MIN_ANSWER_BUDGET..=MAX_ANSWER_BUDGET).contains(&b) {
                return Err(("answer_budget", "must be 64KiB to 2GiB".into()));
            }
            o.answer_budget = b;
        }
        if let Some(r) = self.body_min_rate {
            if r == 0 {
                return Err(("body_min_rate", "must be at least 1".into()));
            }
            o.body_min_rate = r;
        }
        if let Some(n) = self.max_connections {
            if n == 0 {
                return Err(("max_connections", "must be at least 1".into()));
            }
            o.max_connections = n;
        }
        if let Some(b) = self.body_budget {
            o.body_budget = b;
        }
        if o.body_budget < max_body {
            return Err((
                "body_budget",
                format!("must be at least max_body ({max_body} bytes)"),
            ));
        }
        o.tail_cache_total = self.tail_cache_total.unwrap_or(o.tail_cache_total);
        o.tail_cache = self.tail_cache.unwrap_or(o.tail_cache);
        if o.tail_cache > o.tail_cache_total {
            return Err((
                "tail_cache",
                format!(
                    "must be at most tail_cache_total ({} bytes)",
                    o.tail_cache_total
                ),
            ));
        }
        if let Some(list) = self.allowed_origins {
            o.allowed_origins = list
                .iter()
                .map(|origin| normalize_origin(origin))
                .collect::<Result<_, _>>()
                .map_err(|e| ("allowed_origins", e))?;
        }
        if let Some(list) = self.allowed_hosts {
            o.allowed_hosts = list
                .iter()
                .map(|host| normalize_host(host))
                .collect::<Result<_, _>>()
                .map_err(|e| ("allowed_hosts", e))?;
        }
        match (self.tls_cert, self.tls_key) {
            (Some(c), Some(k)) => {
                for (key, file) in [("tls_cert", &c), ("tls_key", &k)] {
                    if !base.join(file).is_file() {
                        return Err((key, format!("no such file: {file}")));
                    }
                }
                o.tls_cert = Some(base.join(c));
                o.tls_key = Some(base.join(k));
            }
            (Some(_), None) => return Err(("tls_key", "tls_cert needs tls_key too".into())),
            (None, Some(_)) => return Err(("tls_cert", "tls_key needs tls_cert too".into())),
            (None, None) => {}
        }
        Ok(o)
    }
}

/// Checks one allowed origin and returns it in the form browsers send:
/// lower case, no trailing slash. `*` stands for any origin.
pub fn normalize_origin(text: &str) -> Result<String, String> {
    let origin = text.trim().trim_end_matches('/').to_ascii_lowercase();
    if origin == "*" {
        return Ok(origin);
    }
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("{text:?} is not http://host[:port] or https://host[:port]"))?;
    let bad = |c: char| !(c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    if rest.is_empty() || rest.contains(bad) {
        return Err(format!(
            "{text:?} must be a scheme and a host, with no path, query or user"
        ));
    }
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unset keys give the documented defaults.
    #[test]
    fn empty_keys_give_defaults() {
        let o = ServerKeys::default().resolve(Path::new("."), 1).unwrap();
        assert_eq!(o, ServerOptions::default());
        assert_eq!(o.idle_spin, Duration::from_micros(50));
    }

    /// `idle_spin` takes zero (off) up to its bound, 1ms, inclusive.
    #[test]
    fn idle_spin_within_its_bound() {
        for (text, d) in [
            ("0", Duration::ZERO),
            ("40us", Duration::from_micros(40)),
            ("1ms", Duration::from_millis(1)),
        ] {
            let keys = ServerKeys {
                idle_spin: Some(text.to_string()),
                ..Default::default()
            };
            assert_eq!(keys.resolve(Path::new("."), 1).unwrap().idle_spin, d);
        }
    }

    /// Zeros, a budget below max_body, half a TLS pair and odd origins are
    /// refused with the key named.
    #[test]
    fn refuses_nonsense() {
        let base = Path::new(".");
        let key = |k: ServerKeys| k.resolve(base, 64 << 20).unwrap_err().0;
        let zero = || Some("0s".to_string());
        assert_eq!(
            key(ServerKeys {
                tail_cache: Some(2 << 30),
                tail_cache_total: Some(1 << 30),
                ..Default::default()
            }),
            "tail_cache"
        );
        assert_eq!(
            key(ServerKeys {
                tail_cache: Some(u64::MAX),
                ..Default::default()
            }),
            "tail_cache"
        );
        for bytes in [MIN_ANSWER_BUDGET - 1, MAX_ANSWER_BUDGET + 1] {
            assert_eq!(
                key(ServerKeys {
                    answer_budget: Some(bytes),
                    ..Default::default()
                }),
                "answer_budget"
            );
        }
        assert_eq!(
            key(ServerKeys {
                header_timeout: zero(),
                ..Default::default()
            }),
            "header_timeout"
        );
        assert_eq!(
            key(ServerKeys {
                idle_timeout: zero(),
                ..Default::default()
            }),
            "idle_timeout"
        );
        for spin in ["1001us", "2ms", "1day", "300000000000year", "-1us", "fast"] {
            assert_eq!(
                key(ServerKeys {
                    idle_spin: Some(spin.to_string()),
                    ..Default::default()
                }),
                "idle_spin",
                "{spin}"
            );
        }
        let absurd = || Some("300000000000year".to_string());
        for (keys, name) in [
            (
                ServerKeys {
                    header_timeout: absurd(),
                    ..Default::default()
                },
                "header_timeout",
            ),
            (
                ServerKeys {
                    idle_timeout: absurd(),
                    ..Default::default()
                },
                "idle_timeout",
            ),
            (
                ServerKeys {
                    body_timeout: absurd(),
                    ..Default::default()
                },
                "body_timeout",
            ),
            (
                ServerKeys {
                    shutdown_timeout: absurd(),
                    ..Default::default()
                },
                "shutdown_timeout",
            ),
            (
                ServerKeys {
                    body_budget_wait: Some("2day".into()),
                    ..Default::default()
                },
                "body_budget_wait",
            ),
            (
                ServerKeys {
                    answer_budget_wait: Some("2day".into()),
                    ..Default::default()
                },
                "answer_budget_wait",
            ),
        ] {
            assert_eq!(
                keys.resolve(base, 64 << 20).unwrap_err(),
                (name, "must be at most 1day".to_string())
            );
        }
        assert_eq!(
            key(ServerKeys {
                max_connections: Some(0),
                ..Default::default()
            }),
            "max_connections"
        );
        assert_eq!(
            key(ServerKeys {
                body_budget: Some(1 << 20),
                ..Default::default()
            }),
            "body_budget"
        );
        assert_eq!(
            key(ServerKeys {
                tls_cert: Some("c.pem".into()),
                ..Default::default()
            }),
            "tls_key"
        );
        for bad in ["example.com", "https://a.com/path", "ftp://a", "https://"] {
            assert_eq!(
                key(ServerKeys {
                    allowed_origins: Some(vec![bad.into()]),
                    ..Default::default()
                }),
                "allowed_origins",
                "{bad}"
            );
        }
    }

    /// Origins are kept in the form browsers send them.
    #[test]
    fn normalizes_origins() {
        assert_eq!(
            normalize_origin("HTTPS://App.Example.com/").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(normalize_origin("*").unwrap(), "*");
    }
}
