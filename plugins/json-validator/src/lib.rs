//! `json-validator`: a validator that accepts only well-formed JSON messages,
//! optionally objects carrying required top-level fields, up to a size cap.
//!
//! Each message of a batch is judged on its own and gets one verdict, in
//! order. The checks run cheapest first and the first failure is the reason the
//! producer sees:
//!
//! 1. size: `message is 2048 bytes, over max_size 1024`
//! 2. UTF-8: `message is not UTF-8: invalid byte at offset 17`
//! 3. JSON: `invalid JSON at line 1 column 7: expected value`
//! 4. shape, when `require_object` is true or `required` is not empty:
//!    `expected a JSON object, found an array`
//! 5. fields: `missing required field "id"` (or `missing required fields "id",
//!    "ts"` when several are missing)
//!
//! | key | value | default | effect |
//! |---|---|---|---|
//! | `required` | array of strings | `[]` | top-level fields every message must have; non-empty implies an object |
//! | `max_size` | size, e.g. `"64KiB"` or `65536` | `"1MiB"` | largest message accepted, in bytes |
//! | `require_object` | boolean | `false` | the document must be a JSON object |
//!
//! Unknown keys and malformed values are refused by `init`.

#[cfg(target_arch = "wasm32")]
mod component;

use plugin_config::{Config, ConfigError};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The config keys this plugin accepts.
pub const KEYS: &[&str] = &["required", "max_size", "require_object"];

/// `max_size` when the config does not set it: 1 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 20;

/// The validator's settings, read from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Top-level fields every message must have.
    pub required: Vec<String>,
    /// Largest message accepted, in bytes.
    pub max_size: u64,
    /// Whether the document must be a JSON object.
    pub require_object: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            required: Vec::new(),
            max_size: DEFAULT_MAX_SIZE,
            require_object: false,
        }
    }
}

impl Rules {
    /// Reads the rules from the JSON config `init` receives.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config = Config::parse(text, KEYS)?;
        Ok(Self {
            required: config.strings("required")?.unwrap_or_default(),
            max_size: config.size("max_size")?.unwrap_or(DEFAULT_MAX_SIZE),
            require_object: config.bool("require_object")?.unwrap_or(false),
        })
    }

    /// Judges a batch: one verdict per payload, in order; `Err` holds the
    /// reason for a rejection.
    pub fn judge_batch<'a>(
        &self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> Vec<Result<(), String>> {
        payloads
            .into_iter()
            .map(|payload| self.judge(payload))
            .collect()
    }

    /// Judges one message; `Err` holds the reason it is rejected.
    pub fn judge(&self, payload: &[u8]) -> Result<(), String> {
        let size = payload.len() as u64;
        if size > self.max_size {
            return Err(format!(
                "message is {size} bytes, over max_size {}",
                self.max_size
            ));
        }
        let text = std::str::from_utf8(payload).map_err(|e| {
            format!(
                "message is not UTF-8: invalid byte at offset {}",
                e.valid_up_to()
            )
        })?;
        // One pass over the text: syntax is checked in full, values are
        // skipped without being built, and only the top-level keys are
        // compared against the required names.
        let mut de = serde_json::Deserializer::from_str(text);
        let shape = ShapeSeed {
            required: &self.required,
        }
        .deserialize(&mut de)
        .and_then(|shape| de.end().map(|()| shape))
        .map_err(|e| describe_syntax_error(&e))?;
        if !self.require_object && self.required.is_empty() {
            return Ok(());
        }
        let found = match shape {
            Shape::Object(found) => found,
            Shape::Other(kind) => return Err(format!("expected a JSON object, found {kind}")),
        };
        let missing: Vec<String> = self
            .required
            .iter()
            .zip(&found)
            .filter(|(_, seen)| !**seen)
            .map(|(name, _)| format!("\"{name}\""))
            .collect();
        match missing.as_slice() {
            [] => Ok(()),
            [one] => Err(format!("missing required field {one}")),
            many => Err(format!("missing required fields {}", many.join(", "))),
        }
    }
}

/// What the top level of a document is: an object (with, for each required
/// name, whether it was present) or something else (named as in reasons).
enum Shape {
    Object(Vec<bool>),
    Other(&'static str),
}

/// Reads a document's shape without building it.
struct ShapeSeed<'r> {
    required: &'r [String],
}

impl<'de> DeserializeSeed<'de> for ShapeSeed<'_> {
    type Value = Shape;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Shape, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ShapeSeed<'_> {
    type Value = Shape;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut found = vec![false; self.required.len()];
        while let Some(hit) = map.next_key_seed(KeySeed {
            required: self.required,
        })? {
            if let Some(i) = hit {
                found[i] = true;
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(Shape::Object(found))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shape::Other("an array"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Other("a string"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Other("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Other("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Other("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Other("a number"))
    }

    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::Other("null"))
    }
}

/// Matches an object key against the required names without allocating
/// (escaped keys arrive unescaped through `visit_str`).
struct KeySeed<'r> {
    required: &'r [String],
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Option<usize>, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.required.iter().position(|name| name == key))
    }
}

/// Turns serde_json's `"<what> at line L column C"` into
/// `"invalid JSON at line L column C: <what>"`.
fn describe_syntax_error(error: &serde_json::Error) -> String {
    let (line, column) = (error.line(), error.column());
    let full = error.to_string();
    let what = full
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&full);
    format!("invalid JSON at line {line} column {column}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(config: &str) -> Rules {
        Rules::from_json(config).unwrap()
    }

    /// Any well-formed JSON value passes the default rules.
    #[test]
    fn accepts_well_formed_json() {
        let rules = Rules::default();
        for doc in [
            "{}",
            "[1, 2]",
            "\"text\"",
            "42",
            "null",
            " {\"a\": {\"b\": []}} \n",
        ] {
            assert_eq!(rules.judge(doc.as_bytes()), Ok(()), "{doc}");
        }
    }

    /// A syntax error is reported with line, column and what was wrong.
    #[test]
    fn syntax_error_has_position() {
        let rules = Rules::default();
        assert_eq!(
            rules.judge(br#"{"a": }"#),
            Err("invalid JSON at line 1 column 7: expected value".to_owned())
        );
        assert_eq!(
            rules.judge(b"{\"a\": 1,\n \"b\" 2}"),
            Err("invalid JSON at line 2 column 6: expected `:`".to_owned())
        );
        assert_eq!(
            rules.judge(b"{} {}"),
            Err("invalid JSON at line 1 column 4: trailing characters".to_owned())
        );
        assert_eq!(
            rules.judge(b""),
            Err("invalid JSON at line 1 column 0: EOF while parsing a value".to_owned())
        );
    }

    /// Bytes that are not UTF-8 are rejected with the offset of the bad byte.
    #[test]
    fn rejects_non_utf8() {
        assert_eq!(
            Rules::default().judge(b"\"ab\xffcd\""),
            Err("message is not UTF-8: invalid byte at offset 3".to_owned())
        );
    }

    /// A message over `max_size` is rejected before it is parsed.
    #[test]
    fn rejects_oversize_messages() {
        let rules = rules(r#"{"max_size": 1024}"#);
        let big = vec![b' '; 2048];
        assert_eq!(
            rules.judge(&big),
            Err("message is 2048 bytes, over max_size 1024".to_owned())
        );
        let exact = format!("\"{}\"", "x".repeat(1022));
        assert_eq!(rules.judge(exact.as_bytes()), Ok(()));
    }

    /// The default cap is 1 MiB.
    #[test]
    fn default_max_size_is_one_mib() {
        let rules = Rules::default();
        let at_cap = format!("\"{}\"", "x".repeat((1 << 20) - 2));
        assert_eq!(rules.judge(at_cap.as_bytes()), Ok(()));
        let over = format!("\"{}\"", "x".repeat((1 << 20) - 1));
        assert_eq!(
            rules.judge(over.as_bytes()),
            Err("message is 1048577 bytes, over max_size 1048576".to_owned())
        );
    }

    /// Required fields imply an object and each missing one is named.
    #[test]
    fn required_fields_are_checked() {
        let rules = rules(r#"{"required": ["id", "ts"]}"#);
        assert_eq!(rules.judge(br#"{"id": 1, "ts": 2, "x": 3}"#), Ok(()));
        assert_eq!(
            rules.judge(br#"{"ts": 2}"#),
            Err("missing required field \"id\"".to_owned())
        );
        assert_eq!(
            rules.judge(br#"{"nested": {"id": 1, "ts": 2}}"#),
            Err("missing required fields \"id\", \"ts\"".to_owned())
        );
        assert_eq!(
            rules.judge(br#"[{"id": 1, "ts": 2}]"#),
            Err("expected a JSON object, found an array".to_owned())
        );
    }

    /// `require_object` refuses documents that are not objects.
    #[test]
    fn require_object_refuses_other_values() {
        let rules = rules(r#"{"require_object": true}"#);
        assert_eq!(rules.judge(b"{}"), Ok(()));
        assert_eq!(
            rules.judge(b"\"s\""),
            Err("expected a JSON object, found a string".to_owned())
        );
        assert_eq!(
            rules.judge(b"null"),
            Err("expected a JSON object, found null".to_owned())
        );
    }

    /// A batch gets one verdict per message, in order.
    #[test]
    fn batch_verdicts_keep_order() {
        let rules = rules(r#"{"required": ["id"]}"#);
        let batch: [&[u8]; 3] = [br#"{"id": 1}"#, b"nope", br#"{"id": 2}"#];
        let verdicts = rules.judge_batch(batch);
        assert_eq!(verdicts.len(), 3);
        assert_eq!(verdicts[0], Ok(()));
        assert!(
            verdicts[1]
                .as_ref()
                .unwrap_err()
                .starts_with("invalid JSON")
        );
        assert_eq!(verdicts[2], Ok(()));
        assert!(rules.judge_batch([]).is_empty());
    }

    /// `{}` gives the defaults; every key parses.
    #[test]
    fn config_reads_every_key() {
        assert_eq!(Rules::from_json("{}"), Ok(Rules::default()));
        assert_eq!(
            Rules::from_json(
                r#"{"required": ["id"], "max_size": "64KiB", "require_object": true}"#
            ),
            Ok(Rules {
                required: vec!["id".to_owned()],
                max_size: 64 << 10,
                require_object: true,
            })
        );
    }

    /// Unknown keys and bad values are refused, naming key (and value).
    #[test]
    fn config_errors_name_the_key() {
        let err = Rules::from_json(r#"{"schema": {}}"#).unwrap_err();
        assert!(err.to_string().contains("\"schema\""), "{err}");
        let err = Rules::from_json(r#"{"required": "id"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad value for \"required\": \"id\" (expected an array of strings)"
        );
        let err = Rules::from_json(r#"{"require_object": 1}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad value for \"require_object\": 1"),
            "{err}"
        );
        let err = Rules::from_json(r#"{"max_size": "big"}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad value for \"max_size\": \"big\""),
            "{err}"
        );
    }
}
