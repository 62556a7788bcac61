//! `json-schema`: a validator that parses each message's value as JSON and
//! checks it against a JSON Schema (draft 2020-12) from its config, either
//! one schema for every message or one of several named schemas, picked per
//! message by a header. It targets `netlog:plugin@0.2.0`, whose validator is
//! shown the messages' headers.
//!
//! | key | value | default | effect |
//! |---|---|---|---|
//! | `schema` | a schema (object or boolean), or a string of JSON text holding one | none | the schema every message is checked against |
//! | `schemas` | object of name to schema (as for `schema`) | none | named schemas, one picked per message by `header` |
//! | `header` | header name | none; required with `schemas` | the message header whose value names the schema |
//! | `default` | a name from `schemas` | none | the schema for a message without the header |
//! | `max_size` | size, e.g. `"64KiB"` or `65536` | `"1MiB"` | largest message parsed, in bytes |
//!
//! Exactly one of `schema` and `schemas` is given; `header` and `default`
//! go with `schemas` only. A message without the header is checked against
//! `default`, and **rejected when there is no default**: a topic that names
//! its schemas per message takes no message that names none. A header
//! naming no schema of the map is rejected, never passed unchecked.
//!
//! Each message gets one verdict; the first failure is the reason, at most
//! [`MAX_REASON_BYTES`] long (cut on a character boundary, ending `…`):
//!
//! 1. `message is 2048 bytes, over max_size 1024`
//! 2. `no "schema" header and no default schema`, or `header "schema" names
//!    no schema: "order-v9" (known: order-v1, order-v2)`
//! 3. `invalid JSON at line 1 column 7: expected value`
//! 4. `at "/items/0/price": minimum: value is less than the minimum of 0`:
//!    the JSON pointer of the failing part of the document (`""` for the
//!    whole), the keyword that failed and what it says, with the instance's
//!    value masked (a reason never echoes message content back), prefixed
//!    `schema "order-v2": ` when the schema was picked by header.
//!
//! **Compiled once.** `init` compiles every schema; a schema that does not
//! compile (not valid against the 2020-12 meta-schema, a `$ref` that
//! resolves nowhere, a `$schema` naming another draft) makes `init` fail,
//! naming the schema and why, so the broker refuses the config at start-up.
//!
//! **Nothing is fetched.** A `$ref` resolves within the schema (`#/$defs/x`,
//! an `$id` or anchor the schema defines, the draft's own meta-schemas) or
//! not at all: any other document is refused by [`NoFetch`] without being
//! looked up, so `init` fails naming the URI. Plugins have neither network
//! nor files; the refusal says so instead of failing deep in a socket call.
//!
//! **Bounds.** `max_size` caps what is parsed; the JSON parser refuses
//! nesting deeper than 128 (an `invalid JSON ... recursion limit exceeded`
//! reject), which also bounds the validator's recursion. A parsed document
//! takes many times its text in memory (a long array of small numbers, more
//! than ten times): what `max_size` lets through must fit the plugin's
//! `memory_limit` together with the batch, or the call stops at the limit.

#[cfg(target_arch = "wasm32")]
mod component;

use std::collections::BTreeMap;
use std::error::Error;

use jsonschema::{Retrieve, Uri, ValidationError, Validator};
use plugin_config::Config;
use serde_json::Value;

/// The config keys this plugin accepts.
pub const KEYS: &[&str] = &["schema", "schemas", "header", "default", "max_size"];
/// `max_size` when the config does not set it: 1 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 20;
/// Longest reason (reject or `init` error), in bytes, `…` included.
pub const MAX_REASON_BYTES: usize = 512;
/// The draft this plugin checks: the `$schema` a schema may declare.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
/// Longest header name, in bytes, as netlog allows them.
const MAX_HEADER_NAME_BYTES: usize = 128;
/// Most schema names a reason lists.
const MAX_NAMES_LISTED: usize = 8;
/// Longest schema name, from a header, that a reason quotes whole.
const MAX_QUOTED_NAME_BYTES: usize = 64;

/// The plugin's settings, its schemas compiled.
pub struct Rules {
    max_size: u64,
    pick: Pick,
}

/// How a message's schema is chosen.
enum Pick {
    /// Every message is checked against this schema.
    One(Validator),
    /// The schema is named by the message's `header`.
    ByHeader {
        header: String,
        schemas: BTreeMap<String, Validator>,
        default: Option<String>,
    },
}

impl Rules {
    /// Reads the config `init` receives and compiles its schemas.
    pub fn from_json(text: &str) -> Result<Rules, String> {
        let config = Config::parse(text, KEYS).map_err(|e| e.to_string())?;
        let max_size = config
            .size("max_size")
            .map_err(|e| e.to_string())?
            .unwrap_or(DEFAULT_MAX_SIZE);
        let header = config.string("header").map_err(|e| e.to_string())?;
        let default = config.string("default").map_err(|e| e.to_string())?;
        let pick = match (config.value("schema"), config.value("schemas")) {
            (Some(_), Some(_)) => {
                return Err("give either \"schema\" or \"schemas\", not both".into());
            }
            (None, None) => {
                return Err("no schema: give \"schema\" (one for every message) or \"schemas\" with \"header\" (one per message, by header)".into());
            }
            (Some(schema), None) => {
                if header.is_some() || default.is_some() {
                    return Err("\"header\" and \"default\" pick among \"schemas\"; with a single \"schema\" leave them out".into());
                }
                Pick::One(compile(None, schema)?)
            }
            (None, Some(schemas)) => by_header(schemas, header, default)?,
        };
        Ok(Rules { max_size, pick })
    }

    /// Judges one message, given its value and headers; `Err` holds the
    /// reason it is rejected.
    pub fn judge(&self, payload: &[u8], headers: &[(String, Vec<u8>)]) -> Result<(), String> {
        let size = payload.len() as u64;
        if size > self.max_size {
            return Err(format!(
                "message is {size} bytes, over max_size {}",
                self.max_size
            ));
        }
        let (label, validator) = self.pick(headers)?;
        let document: Value = serde_json::from_slice(payload).map_err(|e| invalid_json(&e))?;
        validator.validate(&document).map_err(|error| {
            let prefix = label
                .map(|name| format!("schema {name:?}: "))
                .unwrap_or_default();
            bounded(format!("{prefix}{}", describe(&error)))
        })
    }

    /// The schema for a message with `headers`, and its name when it was
    /// picked by header.
    fn pick(&self, headers: &[(String, Vec<u8>)]) -> Result<(Option<&str>, &Validator), String> {
        let (header, schemas, default) = match &self.pick {
            Pick::One(validator) => return Ok((None, validator)),
            Pick::ByHeader {
                header,
                schemas,
                default,
            } => (header, schemas, default),
        };
        let named = headers.iter().find(|(name, _)| name == header);
        let name = match (named, default) {
            (Some((_, value)), _) => {
                std::str::from_utf8(value).map_err(|_| format!("header {header:?} is not UTF-8"))?
            }
            (None, Some(default)) => default,
            (None, None) => return Err(format!("no {header:?} header and no default schema")),
        };
        match schemas.get_key_value(name) {
            Some((name, validator)) => Ok((Some(name), validator)),
            None => Err(bounded(format!(
                "header {header:?} names no schema: {:?} (known: {})",
                cut(name, MAX_QUOTED_NAME_BYTES),
                listed(schemas.keys())
            ))),
        }
    }
}

/// Reads `schemas`, `header` and `default` into a [`Pick::ByHeader`].
fn by_header(
    schemas: &Value,
    header: Option<String>,
    default: Option<String>,
) -> Result<Pick, String> {
    let Value::Object(map) = schemas else {
        return Err("\"schemas\" must be an object of schema name to schema".into());
    };
    if map.is_empty() {
        return Err("\"schemas\" names no schema".into());
    }
    let header = header
        .ok_or("\"schemas\" needs \"header\": the message header that names a message's schema")?
        .to_ascii_lowercase();
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if header.is_empty() || header.len() > MAX_HEADER_NAME_BYTES || !header.chars().all(token) {
        return Err(format!(
            "\"header\" {header:?} is not a header name (1 to {MAX_HEADER_NAME_BYTES} HTTP token characters)"
        ));
    }
    let schemas = map
        .iter()
        .map(|(name, schema)| Ok((name.clone(), compile(Some(name), schema)?)))
        .collect::<Result<BTreeMap<_, _>, String>>()?;
    if let Some(default) = &default
        && !schemas.contains_key(default)
    {
        return Err(bounded(format!(
            "\"default\" {default:?} is not in \"schemas\" (known: {})",
            listed(schemas.keys())
        )));
    }
    Ok(Pick::ByHeader {
        header,
        schemas,
        default,
    })
}

/// Compiles one schema from the config (`name` is its key in `schemas`).
fn compile(name: Option<&str>, schema: &Value) -> Result<Validator, String> {
    let label = match name {
        Some(name) => format!("schema {name:?}"),
        None => "\"schema\"".to_owned(),
    };
    let parsed;
    let schema = match schema {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| bounded(format!("{label} is a string but not JSON text: {e}")))?;
            &parsed
        }
        other => other,
    };
    if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
        return Err(format!("{label} must be a JSON object or a boolean"));
    }
    if let Some(declared) = schema.get("$schema") {
        let declared = declared.as_str().unwrap_or_default();
        if declared.trim_end_matches('#') != DRAFT_2020_12 {
            return Err(bounded(format!(
                "{label} declares $schema {declared:?}; this plugin checks draft 2020-12 ({DRAFT_2020_12})"
            )));
        }
    }
    jsonschema::draft202012::options()
        .with_retriever(NoFetch)
        .build(schema)
        .map_err(|error| bounded(format!("{label} does not compile: {}", describe(&error))))
}

/// The retriever every schema is compiled with: it refuses every document
/// without looking for it (see the module docs).
pub struct NoFetch;

impl Retrieve for NoFetch {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn Error + Send + Sync>> {
        Err(format!(
            "{uri} is not fetched: a plugin has no network and no files; copy that schema under \"$defs\" and refer to it as \"#/$defs/<name>\""
        )
        .into())
    }
}

/// `at "<pointer>": <keyword>: <message>`, the instance's values masked.
fn describe(error: &ValidationError<'_>) -> String {
    format!(
        "at \"{}\": {}: {}",
        error.instance_path(),
        error.kind().keyword(),
        error.masked()
    )
}

/// Turns serde_json's `"<what> at line L column C"` into
/// `"invalid JSON at line L column C: <what>"`.
fn invalid_json(error: &serde_json::Error) -> String {
    let (line, column) = (error.line(), error.column());
    let full = error.to_string();
    let what = full
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&full);
    bounded(format!(
        "invalid JSON at line {line} column {column}: {what}"
    ))
}

/// Up to [`MAX_NAMES_LISTED`] names, comma-separated, then `…` if there
/// are more.
fn listed<'a>(names: impl ExactSizeIterator<Item = &'a String>) -> String {
    let more = names.len() > MAX_NAMES_LISTED;
    let mut text = names
        .take(MAX_NAMES_LISTED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if more {
        text.push_str(", …");
    }
    text
}

/// `text` cut to at most [`MAX_REASON_BYTES`].
fn bounded(text: String) -> String {
    if text.len() <= MAX_REASON_BYTES {
        return text;
    }
    cut(&text, MAX_REASON_BYTES)
}

/// `text` cut to at most `max` bytes on a character boundary, ending `…`
/// when cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests;
