//! The hosts the main listener answers as, against DNS rebinding (run by
//! `front.rs` before the origin guard of `origin.rs`).
//!
//! A rebinding page lives at a DNS name of the attacker's (`evil.test`)
//! that is made to resolve to the broker's address: the browser then treats
//! the broker as the page's own origin and sends plain `GET`s without an
//! `Origin` header, but with `Host: evil.test`. So once `[server]
//! allowed_hosts` is set, the `Host` of every request must be a name the
//! broker answers as: an IP literal (a rebound page always has a name of
//! its own), `localhost` or a name under it, a name of `allowed_hosts` or
//! of `[console] hosts`. Any other is refused with 403 before anything
//! runs. Unset (the default, so that clients that send any `Host` keep
//! working) or `["*"]`, every `Host` passes: with authentication off, set
//! it on any broker a browser can reach. A request without a host
//! (HTTP/1.0) passes.
//!
//! The same list decides which pages are the console's own: a request
//! whose `Origin` is `http(s)://` plus exactly its own `Host`, with that
//! host one of the above (never by `*`), comes from a page the broker
//! served, and passes the origin guard without being in
//! `[server] allowed_origins`. Browsers send `Origin` on module scripts and
//! on same-origin `POST`s, so the console needs this; a rebinding page has
//! `Origin` and `Host` both `evil.test`, which is not on the list.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, Uri, header};

use crate::config::{ConsoleOptions, ServerOptions};

/// The names the listener answers as. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Hosts {
    /// `allowed_hosts` is unset or holds `*`: any `Host` passes (the
    /// console's origin rule still needs a known host).
    any: bool,
    /// `allowed_hosts` and `[console] hosts`, lower case, without `*`.
    names: Arc<HashSet<String>>,
    /// The listener speaks TLS: the console's origin is `https://`.
    tls: bool,
}

impl Hosts {
    /// The hosts of `server` and `console`; `tls` when the listener speaks it.
    pub(crate) fn new(server: &ServerOptions, console: &ConsoleOptions, tls: bool) -> Hosts {
        let names = server
            .allowed_hosts
            .iter()
            .chain(&console.hosts)
            .filter(|h| *h != "*")
            .cloned()
            .collect();
        Hosts {
            any: server.allowed_hosts.is_empty() || server.allowed_hosts.iter().any(|h| h == "*"),
            names: Arc::new(names),
            tls,
        }
    }

    /// Whether the name part of `host` (`name[:port]`, `[v6][:port]`) is
    /// one the broker answers as, `*` aside.
    fn known(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
            || self.names.contains(name)
    }

    /// The host a request names, from its URI (HTTP/2) or `Host` header.
    fn of<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
        match uri.authority() {
            Some(a) => Some(a.as_str()),
            None => headers
                .get(header::HOST)
                .map(|h| h.to_str().unwrap_or("\u{0}")),
        }
    }

    /// `Err(host)` when the request names a host the broker does not answer as.
    pub(crate) fn check<'a>(&self, uri: &'a Uri, headers: &'a HeaderMap) -> Result<(), &'a str> {
        match Hosts::of(uri, headers) {
            Some(host) if !self.any && !self.known(host) => Err(host),
            _ => Ok(()),
        }
    }

    /// Whether `origin` is the console's own: the request's own scheme and
    /// host, that host one the broker answers as.
    pub(crate) fn own_origin(&self, origin: &HeaderValue, uri: &Uri, headers: &HeaderMap) -> bool {
        let (Ok(origin), Some(host)) = (origin.to_str(), Hosts::of(uri, headers)) else {
            return false;
        };
        let scheme = if self.tls { "https://" } else { "http://" };
        let authority = origin
            .get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .map(|_| &origin[scheme.len()..]);
        authority.is_some_and(|a| a.eq_ignore_ascii_case(host)) && self.known(host)
    }
}

/// The name of `host` without its port: `[::1]:80` -> `::1`, `a.b:80` -> `a.b`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(allowed: &[&str], console: &[&str]) -> Hosts {
        let server = ServerOptions {
            allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
            ..ServerOptions::default()
        };
        let console = ConsoleOptions {
            hosts: console.iter().map(|s| s.to_string()).collect(),
            ..ConsoleOptions::default()
        };
        Hosts::new(&server, &console, false)
    }

    fn with_host(host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        h
    }

    /// IP literals, localhost and the listed names pass; other names do
    /// not, unless `*` is listed or nothing is; no host at all passes.
    #[test]
    fn hosts_the_broker_answers_as() {
        let h = hosts(&["broker.example"], &["console.example"]);
        let uri = Uri::from_static("/t");
        for ok in [
            "127.0.0.1:7200",
            "[::1]:7200",
            "10.1.2.3",
            "localhost:7200",
            "app.localhost",
            "Broker.Example:80",
            "console.example",
        ] {
            assert!(h.check(&uri, &with_host(ok)).is_ok(), "{ok}");
        }
        for bad in ["evil.test", "evil.test:7200", "broker.example.evil.test"] {
            assert!(h.check(&uri, &with_host(bad)).is_err(), "{bad}");
        }
        assert!(h.check(&uri, &HeaderMap::new()).is_ok());
        let any = hosts(&["*"], &[]);
        assert!(any.check(&uri, &with_host("evil.test")).is_ok());
        let unset = hosts(&[], &["console.example"]);
        assert!(unset.check(&uri, &with_host("evil.test")).is_ok());
    }

    /// The console's origin is the request's own scheme and host, for a
    /// host the broker answers as only (never by `*`).
    #[test]
    fn own_origin_needs_the_same_known_host() {
        let h = hosts(&["*"], &["console.example"]);
        let uri = Uri::from_static("/t");
        let own = |origin: &str, host: &str| {
            h.own_origin(
                &HeaderValue::from_str(origin).unwrap(),
                &uri,
                &with_host(host),
            )
        };
        assert!(own("http://127.0.0.1:7200", "127.0.0.1:7200"));
        assert!(own("http://console.example", "console.example"));
        assert!(!own("http://127.0.0.1:7201", "127.0.0.1:7200"));
        assert!(!own("https://127.0.0.1:7200", "127.0.0.1:7200"));
        assert!(!own("http://evil.test:7200", "evil.test:7200"));
        assert!(!own("null", "127.0.0.1:7200"));
    }
}
