//! `[engine]`: where topics are stored, chosen at start-up.
//!
//! `kind = "embedded"` (the default) keeps every topic in the data
//! directory. `kind = "jetstream"` keeps them in NATS JetStream streams
//! (`[engine.jetstream]`, see `docs/engines.md`): netlog then holds no
//! state of its own, and any number of processes serve the same topics.
//! The kind is start-only: a reload that changes `[engine]` is refused like
//! any change of a start-only key.
//!
//! Every key is checked here, right after loading, with errors that name the
//! file, the table and the key; paths (credentials, TLS files) are relative
//! to the config file. Whether the servers answer, and run a JetStream API
//! level the engine can use, is checked when the broker starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::duration::parse_duration;

/// Default `publish_timeout`: how long a publish is retried through
/// elections before `503 engine unavailable` (15 s).
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);
/// Range of `publish_timeout`: 100 ms to 5 min.
pub const PUBLISH_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(300));
/// Default `request_timeout`: one JetStream API request or acknowledgement
/// (2 s); a publish retries after it until `publish_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `connect_timeout`: connecting to a server at start-up (5 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Range of `request_timeout` and `connect_timeout`: 10 ms to 1 min.
pub const REQUEST_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(60));
/// Default `replicas` of a topic's stream and of the scanner bucket: 3.
pub const DEFAULT_REPLICAS: usize = 3;
/// Most `replicas` JetStream accepts: 5.
pub const MAX_REPLICAS: usize = 5;

/// The storage engine (`[engine]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum EngineConfig {
    /// Topics in the data directory.
    #[default]
    Embedded,
    /// Topics in NATS JetStream streams.
    JetStream(Box<JetStreamConfig>),
}

/// `[engine.jetstream]`.
#[derive(Clone, Debug, PartialEq)]
pub struct JetStreamConfig {
    /// Server URLs (`nats://host:port`, `tls://host:port`). Required, 1 to
    /// 64 of them.
    pub servers: Vec<String>,
    /// A `.creds` file (JWT and nkey seed). Default none.
    pub credentials: Option<PathBuf>,
    /// A user name, with `password_file`. Default none.
    pub user: Option<String>,
    /// A file holding the password of `user` (first line). Default none.
    pub password_file: Option<PathBuf>,
    /// A file holding a token (first line). Default none.
    pub token_file: Option<PathBuf>,
    /// A file holding an nkey seed (first line). Default none.
    pub nkey_file: Option<PathBuf>,
    /// PEM CA certificates to trust for `tls://` servers. Default: the
    /// system's roots.
    pub tls_ca: Option<PathBuf>,
    /// A PEM client certificate and its key, for mutual TLS. Default none.
    pub tls_cert: Option<PathBuf>,
    /// The key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Replicas of each topic's stream and of the scanner bucket. Default 3;
    /// 1 to 5 (odd numbers are what Raft wants).
    pub replicas: usize,
    /// How long a publish is retried with the same `Nats-Msg-Id` before
    /// `503 engine unavailable`. Default 15 s; 100 ms to 5 min.
    pub publish_timeout: Duration,
    /// One API request or acknowledgement. Default 2 s; 10 ms to 1 min.
    pub request_timeout: Duration,
    /// Connecting at start-up. Default 5 s; 10 ms to 1 min.
    pub connect_timeout: Duration,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            servers: Vec::new(),
            credentials: None,
            user: None,
            password_file: None,
            token_file: None,
            nkey_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            replicas: DEFAULT_REPLICAS,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// `[engine]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct EngineFile {
    kind: Option<String>,
    jetstream: Option<JetStreamFile>,
}

/// `[engine.jetstream]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct JetStreamFile {
    servers: Option<Vec<String>>,
    credentials: Option<String>,
    user: Option<String>,
    password_file: Option<String>,
    token_file: Option<String>,
    nkey_file: Option<String>,
    tls_ca: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    replicas: Option<i64>,
    publish_timeout: Option<String>,
    request_timeout: Option<String>,
    connect_timeout: Option<String>,
}

/// Most servers listed.
const MAX_SERVERS: usize = 64;

impl EngineFile {
    /// Checks every key; errors name `file`, the table and the key.
    pub(super) fn resolve(self, file: &Path) -> Result<EngineConfig, ConfigError> {
        let err = |table: &str, key: &str, message: String| ConfigError::Invalid {
            place: format!("{}: [{table}] {key}", file.display()),
            message,
        };
        match self.kind.as_deref() {
            None | Some("embedded") => match self.jetstream {
                None => Ok(EngineConfig::Embedded),
                Some(_) => Err(err(
                    "engine",
                    "kind",
                    "[engine.jetstream] is set but kind is not \"jetstream\"".into(),
                )),
            },
            Some("jetstream") => {
                let js = self.jetstream.ok_or_else(|| {
                    err(
                        "engine",
                        "kind",
                        "kind = \"jetstream\" needs an [engine.jetstream] table with servers"
                            .into(),
                    )
                })?;
                js.resolve(file, &|key, m| err("engine.jetstream", key, m))
                    .map(|c| EngineConfig::JetStream(Box::new(c)))
            }
            Some(other) => Err(err(
                "engine",
                "kind",
                format!("{other:?} is not an engine: \"embedded\" or \"jetstream\""),
            )),
        }
    }
}

impl JetStreamFile {
    fn resolve(
        self,
        file: &Path,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<JetStreamConfig, ConfigError> {
        let base = file.parent().unwrap_or(Path::new("."));
        let path = |p: Option<String>, key: &str| -> Result<Option<PathBuf>, ConfigError> {
            match p {
                None => Ok(None),
                Some(p) if p.trim().is_empty() => Err(err(key, "an empty path".into())),
                Some(p) => Ok(Some(base.join(p))),
            }
        };
        let servers = self.servers.unwrap_or_default();
        if servers.is_empty() || servers.len() > MAX_SERVERS {
            return Err(err(
                "servers",
                format!("list 1 to {MAX_SERVERS} server URLs, e.g. [\"nats://127.0.0.1:4222\"]"),
            ));
        }
        for s in &servers {
            check_server_url(s).map_err(|m| err("servers", m))?;
        }
        let replicas = match self.replicas {
            None => DEFAULT_REPLICAS,
            Some(n) if (1..=MAX_REPLICAS as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(err(
                    "replicas",
                    format!("{n} is out of range: 1 to {MAX_REPLICAS}"),
                ));
            }
        };
        let duration = |v: Option<String>, key: &str, default, (lo, hi): (Duration, Duration)| {
            let Some(text) = v else { return Ok(default) };
            let d = parse_duration(&text).map_err(|e| err(key, e.to_string()))?;
            if d < lo || d > hi {
                return Err(err(
                    key,
                    format!("{text} is out of range: {lo:?} to {hi:?}"),
                ));
            }
            Ok(d)
        };
        let cfg = JetStreamConfig {
            servers,
            credentials: path(self.credentials, "credentials")?,
            user: self.user,
            password_file: path(self.password_file, "password_file")?,
            token_file: path(self.token_file, "token_file")?,
            nkey_file: path(self.nkey_file, "nkey_file")?,
            tls_ca: path(self.tls_ca, "tls_ca")?,
            tls_cert: path(self.tls_cert, "tls_cert")?,
            tls_key: path(self.tls_key, "tls_key")?,
            replicas,
            publish_timeout: duration(
                self.publish_timeout,
                "publish_timeout",
                DEFAULT_PUBLISH_TIMEOUT,
                PUBLISH_TIMEOUT_RANGE,
            )?,
            request_timeout: duration(
                self.request_timeout,
                "request_timeout",
                DEFAULT_REQUEST_TIMEOUT,
                REQUEST_TIMEOUT_RANGE,
            )?,
            connect_timeout: duration(
                self.connect_timeout,
                "connect_timeout",
                DEFAULT_CONNECT_TIMEOUT,
                REQUEST_TIMEOUT_RANGE,
            )?,
        };
        let methods = [
            cfg.credentials.is_some(),
            cfg.user.is_some() || cfg.password_file.is_some(),
            cfg.token_file.is_some(),
            cfg.nkey_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(err(
                "credentials",
                "give one way to authenticate: credentials, user with password_file, \
                 token_file or nkey_file"
                    .into(),
            ));
        }
        if cfg.user.is_some() != cfg.password_file.is_some() {
            return Err(err("user", "user and password_file go together".into()));
        }
        if cfg.tls_cert.is_some() != cfg.tls_key.is_some() {
            return Err(err("tls_cert", "tls_cert and tls_key go together".into()));
        }
        Ok(cfg)
    }
}

/// A server URL: `nats://`, `tls://` or a bare `host:port`.
fn check_server_url(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("nats://")
        .or_else(|| s.strip_prefix("tls://"))
        .unwrap_or(s);
    let hostport = rest.rsplit('@').next().unwrap_or(rest);
    match hostport.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!(
            "{s:?} is not a server URL: write nats://host:port or tls://host:port"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<EngineConfig, ConfigError> {
        let f: EngineFile = toml::from_str(text).unwrap();
        f.resolve(Path::new("/etc/netlog.toml"))
    }

    #[test]
    fn default_is_embedded_and_jetstream_needs_servers() {
        assert_eq!(resolve("").unwrap(), EngineConfig::Embedded);
        let e = resolve("kind = \"jetstream\"").unwrap_err().to_string();
        assert!(e.contains("[engine] kind"), "{e}");
        let e = resolve("kind = \"jetstream\"\n[jetstream]\nreplicas = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[engine.jetstream] servers"), "{e}");
        let e = resolve("kind = \"raft\"").unwrap_err().to_string();
        assert!(e.contains("\"raft\" is not an engine"), "{e}");
    }

    #[test]
    fn values_are_checked_naming_the_key() {
        let ok = resolve(
            "kind = \"jetstream\"\n[jetstream]\nservers = [\"nats://a:4222\", \"b:4223\"]\n\
             publish_timeout = \"3s\"\ncredentials = \"n.creds\"",
        )
        .unwrap();
        let EngineConfig::JetStream(js) = ok else {
            panic!("jetstream")
        };
        assert_eq!(js.publish_timeout, Duration::from_secs(3));
        assert_eq!(js.replicas, 3);
        assert_eq!(js.credentials, Some(PathBuf::from("/etc/n.creds")));
        for (body, key) in [
            ("servers = [\"nats://a\"]", "servers"),
            ("servers = [\"a:1\"]\nreplicas = 7", "replicas"),
            (
                "servers = [\"a:1\"]\npublish_timeout = \"1ms\"",
                "publish_timeout",
            ),
            ("servers = [\"a:1\"]\nuser = \"u\"", "user"),
            (
                "servers = [\"a:1\"]\ntoken_file = \"t\"\nnkey_file = \"k\"",
                "credentials",
            ),
        ] {
            let e = resolve(&format!("kind = \"jetstream\"\n[jetstream]\n{body}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("[engine.jetstream] {key}")), "{e}");
        }
    }
}
