//! Authentication settings: the `[auth]` table of the operator's file, the
//! bearer tokens it declares and the rights each one carries.
//!
//! ```toml
//! [[auth.tokens]]
//! name = "orders-service"           # in logs and answers, never the secret
//! sha256 = "9f86d081…"              # hex SHA-256 of the secret (`netlog token hash`)
//! produce = ["orders", "orders.*"]  # topics it may publish to
//! consume = ["orders"]              # topics it may read
//! admin = false                     # create/delete topics, check, sync, reload, metrics
//!
//! [auth.anonymous]                  # rights without a token (default: none)
//! consume = ["public.*"]
//!
//! [auth]
//! public_metrics = false            # true: /_metrics needs no token
//! ```
//!
//! Authentication is off until the file declares a token, so a netlog set-up
//! without an `[auth]` table behaves as it always did. Only hashes are kept:
//! the secret itself never reaches the config, the logs or memory beyond the
//! request that carries it.
//!
//! Rights name topics exactly or by glob: `*` stands for any run of
//! characters (dots included, so `orders.*` covers `orders.eu.west`) and `?`
//! for exactly one. Everything is checked when the file loads: hashes are 64
//! hex digits, names are unique and well formed, every pattern could match a
//! topic name. The resolved [`AuthConfig`] is what the HTTP layer consults on
//! every request, so matching is kept allocation-free.

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::ConfigError;

/// Bytes of a SHA-256 digest.
pub const SHA256_BYTES: usize = 32;
/// Hex digits of a SHA-256 digest as written in the file.
pub const SHA256_HEX_CHARS: usize = 2 * SHA256_BYTES;
/// Longest token name, in characters.
pub const MAX_TOKEN_NAME_CHARS: usize = 64;
/// Longest topic pattern, in characters (the longest topic name).
pub const MAX_PATTERN_CHARS: usize = 255;

/// The resolved `[auth]` table. The default is "off": no token, no rights
/// needed anywhere.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthConfig {
    /// Declared tokens, in file order. Empty: authentication is off.
    pub tokens: Vec<TokenConfig>,
    /// Rights of requests without an `Authorization` header. Default: none.
    pub anonymous: Grants,
    /// Whether `/_metrics` answers without a token. Default `false`.
    pub public_metrics: bool,
}

impl AuthConfig {
    /// Whether requests are checked at all: as soon as one token is declared.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }
}

/// One `[[auth.tokens]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenConfig {
    /// Unique; 1 to [`MAX_TOKEN_NAME_CHARS`] letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// SHA-256 of the secret.
    pub sha256: [u8; SHA256_BYTES],
    /// What the token may do.
    pub grants: Grants,
}

/// What a caller may do. `admin` does not imply `produce` or `consume`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grants {
    /// Topics it may publish to. Default: none.
    pub produce: Vec<TopicPattern>,
    /// Topics it may read (scanners, scan, stream, payload read, topic info).
    /// Default: none.
    pub consume: Vec<TopicPattern>,
    /// Create and delete topics, check, sync, reload, metrics. Default `false`.
    pub admin: bool,
}

impl Grants {
    /// May publish to `topic`.
    pub fn may_produce(&self, topic: &str) -> bool {
        self.produce.iter().any(|p| p.matches(topic))
    }

    /// May read `topic`.
    pub fn may_consume(&self, topic: &str) -> bool {
        self.consume.iter().any(|p| p.matches(topic))
    }

    /// Sees `topic` in `GET /`: may produce to it or consume from it.
    pub fn may_list(&self, topic: &str) -> bool {
        self.may_produce(topic) || self.may_consume(topic)
    }

    /// Grants nothing at all.
    pub fn is_empty(&self) -> bool {
        self.produce.is_empty() && self.consume.is_empty() && !self.admin
    }
}

/// A topic name or a glob over topic names (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPattern {
    text: String,
    kind: PatternKind,
}

/// How a pattern is matched, decided once at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PatternKind {
    /// No wildcard: the name itself.
    Exact,
    /// One trailing `*` and no other wildcard (`orders.*`, `*`): a prefix.
    Prefix,
    /// Anything else with `*` or `?`.
    Glob,
}

impl TopicPattern {
    /// Parses and checks a pattern: the characters of topic names plus `*`
    /// and `?`, and able to match at least one valid name.
    pub fn parse(text: &str) -> Result<TopicPattern, String> {
        if text.is_empty() || text.len() > MAX_PATTERN_CHARS {
            return Err(format!(
                "{text:?}: a topic pattern is 1 to {MAX_PATTERN_CHARS} characters long"
            ));
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*' | '?')))
        {
            return Err(format!(
                "{text:?}: a topic pattern holds letters, digits, '.', '_', '-' and the \
                 wildcards '*' and '?' only (found {c:?})"
            ));
        }
        if text.starts_with('.') || text.starts_with('_') {
            return Err(format!(
                "{text:?} matches no topic: topic names may not start with '.' or '_'"
            ));
        }
        let wild = |c: char| c == '*' || c == '?';
        let kind = match text.find(wild) {
            None => PatternKind::Exact,
            Some(i) if i == text.len() - 1 && text.ends_with('*') => PatternKind::Prefix,
            Some(_) => PatternKind::Glob,
        };
        Ok(TopicPattern {
            text: text.to_string(),
            kind,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `topic` matches. No allocation.
    pub fn matches(&self, topic: &str) -> bool {
        match self.kind {
            PatternKind::Exact => self.text == topic,
            PatternKind::Prefix => topic.starts_with(&self.text[..self.text.len() - 1]),
            PatternKind::Glob => glob_match(self.text.as_bytes(), topic.as_bytes()),
        }
    }
}

/// `*` and `?` matching over bytes (topic names are ASCII), in linear space:
/// on a mismatch after a `*`, the star takes one more byte and matching
/// resumes from just after it.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Pattern index just after the last `*`, and where in `name` it resumed.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((after, from)) => {
                    star = Some((after, from + 1));
                    p = after;
                    n = from + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The SHA-256 of a secret, as stored in `sha256`.
pub fn secret_digest(secret: &[u8]) -> [u8; SHA256_BYTES] {
    Sha256::digest(secret).into()
}

/// Lower-case hex of a digest, as written in `sha256`.
pub fn digest_hex(digest: &[u8; SHA256_BYTES]) -> String {
    crate::encode::hex(digest)
}

/// Parses `sha256`: exactly 64 hex digits, either case.
pub fn parse_digest_hex(text: &str) -> Result<[u8; SHA256_BYTES], String> {
    let digits = text.as_bytes();
    let what = "the secret's SHA-256 as 64 hex digits (`netlog token hash` prints it)";
    if digits.len() != SHA256_HEX_CHARS {
        return Err(format!(
            "must be {what}, not {} characters",
            text.chars().count()
        ));
    }
    if let Some(c) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("must be {what}; {c:?} is not a hex digit"));
    }
    let nibble = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    let mut out = [0u8; SHA256_BYTES];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0]) << 4 | nibble(pair[1]);
    }
    Ok(out)
}

/// Checks a token name: 1 to [`MAX_TOKEN_NAME_CHARS`] letters, digits, `.`,
/// `_` and `-`, so it prints safely in logs, answers and metric labels.
pub fn check_token_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > MAX_TOKEN_NAME_CHARS {
        return Err(format!(
            "{name:?}: a token name is 1 to {MAX_TOKEN_NAME_CHARS} characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{name:?}: a token name holds letters, digits, '.', '_' and '-' only (found {c:?})"
        ));
    }
    Ok(())
}

/// `[auth]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthFile {
    #[serde(default)]
    tokens: Vec<TokenFile>,
    anonymous: Option<AnonymousFile>,
    #[serde(default)]
    public_metrics: bool,
}

/// `[[auth.tokens]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    name: String,
    sha256: String,
    #[serde(default)]
    produce: Vec<String>,
    #[serde(default)]
    consume: Vec<String>,
    #[serde(default)]
    admin: bool,
}

/// `[auth.anonymous]` as written: no `admin`, on purpose.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnonymousFile {
    #[serde(default)]
    produce: Vec<String>,
    #[serde(default)]
    consume: Vec<String>,
}

/// Builds errors that name the file, the table and the key.
struct Place<'a> {
    file: &'a Path,
}

impl Place<'_> {
    fn err(&self, table: &str, key: &str, message: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            place: format!("{}: {table} {key}", self.file.display()),
            message: message.to_string(),
        }
    }
}

fn patterns(
    list: Vec<String>,
    at: &Place,
    table: &str,
    key: &str,
) -> Result<Vec<TopicPattern>, ConfigError> {
    list.iter()
        .map(|p| TopicPattern::parse(p).map_err(|e| at.err(table, key, e)))
        .collect()
}

impl AuthFile {
    /// Checks and resolves the table; `file` is named in every error.
    pub(super) fn resolve(self, file: &Path) -> Result<AuthConfig, ConfigError> {
        let at = Place { file };
        let empty_digest = secret_digest(b"");
        let mut tokens: Vec<TokenConfig> = Vec::with_capacity(self.tokens.len());
        for (i, t) in self.tokens.into_iter().enumerate() {
            let table = format!("[[auth.tokens]] #{} ({:?})", i + 1, t.name);
            check_token_name(&t.name).map_err(|e| at.err(&table, "name", e))?;
            if let Some((j, _)) = tokens.iter().enumerate().find(|(_, o)| o.name == t.name) {
                return Err(at.err(
                    &table,
                    "name",
                    format!("token #{} already has the name {:?}", j + 1, t.name),
                ));
            }
            let sha256 = parse_digest_hex(&t.sha256).map_err(|e| at.err(&table, "sha256", e))?;
            if sha256 == empty_digest {
                return Err(at.err(&table, "sha256", "is the SHA-256 of an empty secret"));
            }
            if let Some((j, o)) = tokens.iter().enumerate().find(|(_, o)| o.sha256 == sha256) {
                return Err(at.err(
                    &table,
                    "sha256",
                    format!(
                        "token #{} ({:?}) has the same hash: two tokens may not share a secret",
                        j + 1,
                        o.name
                    ),
                ));
            }
            let grants = Grants {
                produce: patterns(t.produce, &at, &table, "produce")?,
                consume: patterns(t.consume, &at, &table, "consume")?,
                admin: t.admin,
            };
            tokens.push(TokenConfig {
                name: t.name,
                sha256,
                grants,
            });
        }
        let mut anonymous = Grants::default();
        if let Some(a) = self.anonymous {
            let table = "[auth.anonymous]";
            anonymous.produce = patterns(a.produce, &at, table, "produce")?;
            anonymous.consume = patterns(a.consume, &at, table, "consume")?;
            if tokens.is_empty() && !anonymous.is_empty() {
                return Err(at.err(
                    table,
                    "",
                    "anonymous rights need at least one [[auth.tokens]]: without a token \
                     authentication is off and everyone may do everything",
                ));
            }
        }
        Ok(AuthConfig {
            tokens,
            anonymous,
            public_metrics: self.public_metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> TopicPattern {
        TopicPattern::parse(text).expect("a valid pattern")
    }

    fn resolve(text: &str) -> Result<AuthConfig, String> {
        #[derive(Deserialize)]
        struct Wrapper {
            auth: AuthFile,
        }
        let w: Wrapper = toml::from_str(text).map_err(|e| e.to_string())?;
        w.auth
            .resolve(Path::new("netlog.toml"))
            .map_err(|e| e.to_string())
    }

    /// SHA-256 of "test", the spec's example.
    const TEST_SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    /// Exact names, prefixes and globs match what they should and nothing else.
    #[test]
    fn patterns_match_names_and_globs() {
        let cases: &[(&str, &str, bool)] = &[
            ("orders", "orders", true),
            ("orders", "orders2", false),
            ("orders", "Orders", false),
            ("orders.*", "orders.eu", true),
            ("orders.*", "orders.eu.west", true),
            ("orders.*", "orders.", true),
            ("orders.*", "orders", false),
            ("orders.*", "ordersx", false),
            ("*", "anything", true),
            ("log-??", "log-01", true),
            ("log-??", "log-1", false),
            ("log-??", "log-001", false),
            ("*.eu", "orders.eu", true),
            ("*.eu", "orders.eu.x", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "abcbc", true),
            ("a*b*c", "aXXbYY", false),
            ("a*?", "a", false),
            ("a*?", "ab", true),
            ("*-*-*", "x-y-z", true),
            ("*-*-*", "x-y", false),
            ("**", "x", true),
        ];
        for &(p, name, want) in cases {
            assert_eq!(pattern(p).matches(name), want, "{p:?} against {name:?}");
        }
    }

    /// A star followed by a long mismatch does not blow up (linear backtracking).
    #[test]
    fn glob_matching_stays_linear_on_hostile_input() {
        let p = pattern(&format!("{}b", "*a".repeat(100)));
        let name = "a".repeat(255);
        let start = std::time::Instant::now();
        assert!(!p.matches(&name));
        // Generous bound: exponential backtracking would take far longer.
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    /// Patterns with characters outside topic names, empty ones, and ones no
    /// topic could match are refused.
    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "",
            "orders[0]",
            "a b",
            "_private",
            ".hidden",
            "ord/ers",
            "ünï",
        ] {
            assert!(TopicPattern::parse(bad).is_err(), "{bad:?} is refused");
        }
        assert!(TopicPattern::parse(&"a".repeat(256)).is_err());
        assert!(TopicPattern::parse("*_x").is_ok());
    }

    /// Digests parse from hex in either case and print back in lower case.
    #[test]
    fn digests_round_trip_through_hex() {
        let d = parse_digest_hex(&TEST_SHA.to_uppercase()).expect("valid hex");
        assert_eq!(d, secret_digest(b"test"));
        assert_eq!(digest_hex(&d), TEST_SHA);
        assert!(parse_digest_hex(&TEST_SHA[1..]).is_err());
        assert!(parse_digest_hex(&format!("{}g", &TEST_SHA[1..])).is_err());
        assert!(parse_digest_hex(&format!("{TEST_SHA}0")).is_err());
    }

    /// A full table resolves into tokens, grants and anonymous rights.
    #[test]
    fn a_full_table_resolves() {
        let auth = resolve(&format!(
            "[auth]\npublic_metrics = true\n\
             [[auth.tokens]]\nname = \"orders-service\"\nsha256 = \"{TEST_SHA}\"\n\
             produce = [\"orders\", \"orders.*\"]\nconsume = [\"orders\"]\n\
             [[auth.tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nadmin = true\n\
             [auth.anonymous]\nconsume = [\"public.*\"]\n",
            digest_hex(&secret_digest(b"other"))
        ))
        .expect("resolves");
        assert!(auth.enabled());
        assert!(auth.public_metrics);
        assert_eq!(auth.tokens.len(), 2);
        let orders = &auth.tokens[0].grants;
        assert!(orders.may_produce("orders.eu") && orders.may_consume("orders"));
        assert!(!orders.may_consume("orders.eu") && !orders.admin);
        assert!(auth.tokens[1].grants.admin && auth.tokens[1].grants.produce.is_empty());
        assert!(auth.anonymous.may_consume("public.news"));
        assert!(!auth.anonymous.may_produce("public.news"));
    }

    /// No `[auth]` table, or one without tokens, leaves authentication off.
    #[test]
    fn no_token_means_off() {
        assert!(!AuthConfig::default().enabled());
        let auth = resolve("[auth]\npublic_metrics = true\n").expect("resolves");
        assert!(!auth.enabled());
    }

    /// Every mistake names the file, the table (with the token's number and
    /// name) and the key.
    #[test]
    fn mistakes_name_file_table_and_key() {
        let token = |name: &str, sha: &str, extra: &str| {
            format!("[[auth.tokens]]\nname = {name:?}\nsha256 = {sha:?}\n{extra}\n")
        };
        let other = digest_hex(&secret_digest(b"other"));
        let cases = [
            (
                token("a", &TEST_SHA[2..], ""),
                vec![
                    "netlog.toml",
                    "[[auth.tokens]] #1 (\"a\") sha256",
                    "64 hex digits",
                    "not 62 characters",
                ],
            ),
            (
                token("a", &TEST_SHA.replace('9', "x"), ""),
                vec!["#1", "sha256", "'x' is not a hex digit"],
            ),
            (
                token("a", TEST_SHA, "") + &token("a", &other, ""),
                vec!["#2 (\"a\") name", "token #1 already has the name"],
            ),
            (
                token("a", TEST_SHA, "") + &token("b", TEST_SHA, ""),
                vec!["#2 (\"b\") sha256", "same hash"],
            ),
            (
                token("a", TEST_SHA, "produce = [\"orders[1]\"]"),
                vec!["#1 (\"a\") produce", "orders[1]"],
            ),
            (
                token("a", TEST_SHA, "consume = [\"_x\"]"),
                vec!["#1 (\"a\") consume", "matches no topic"],
            ),
            (
                token("bad name", TEST_SHA, ""),
                vec!["#1", "name", "letters"],
            ),
            (
                token("a", &digest_hex(&secret_digest(b"")), ""),
                vec!["sha256", "empty secret"],
            ),
            (
                "[auth.anonymous]\nconsume = [\"public.*\"]\n".to_string(),
                vec!["netlog.toml: [auth.anonymous]", "need at least one"],
            ),
            (
                token("a", TEST_SHA, "") + "[auth.anonymous]\nproduce = [\"x?[\"]\n",
                vec!["[auth.anonymous] produce", "x?["],
            ),
        ];
        for (text, parts) in cases {
            let err = resolve(&format!("[auth]\n{text}")).expect_err(&text);
            for part in parts {
                assert!(err.contains(part), "{part:?} is named in: {err}");
            }
        }
    }

    /// Unknown keys are refused, `admin` under `[auth.anonymous]` included.
    #[test]
    fn unknown_keys_are_refused() {
        let err = resolve("[auth.anonymous]\nadmin = true\n").expect_err("refused");
        assert!(err.contains("admin"), "{err}");
        let err = resolve(&format!(
            "[[auth.tokens]]\nname = \"a\"\nsha256 = \"{TEST_SHA}\"\nproduces = [\"x\"]\n"
        ))
        .expect_err("refused");
        assert!(err.contains("produces"), "{err}");
    }
}
