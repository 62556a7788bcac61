//! The config a plugin's `init` receives, read strictly.
//!
//! netlog passes each plugin its table from the operator's TOML as JSON text
//! (`{}` when there is none). Every first-party plugin reads it through
//! [`Config::parse`], which accepts only a JSON object whose keys the plugin
//! names, so a typo is refused at start-up instead of being silently ignored.
//! Typed getters then read each key; a value of the wrong shape is refused with
//! an error naming the key and the value as written.
//!
//! Sizes and durations are human-readable, as in netlog's own config:
//!
//! - a **size** is a non-negative JSON integer (bytes) or a string of digits
//!   followed by a unit: `B`, `KB` (1000), `KiB` (1024), `MB`, `MiB`, `GB`,
//!   `GiB`, case-insensitive, e.g. `"64MiB"`, `"500KB"`; no unit means bytes.
//! - a **duration** is a string of one or more `<digits><unit>` parts, e.g.
//!   `"7day"`, `"12h"`, `"1month2day3h"`, with units `year` (365 days), `month`
//!   (30 days), `day`, `h`, `m`, `s`, `ms` (plurals `years`, `months`, `days`
//!   also accepted). A bare number is refused: it would not say its unit.
//!
//! ```
//! use plugin_config::Config;
//!
//! let config = Config::parse(r#"{"max_age": "1day12h"}"#, &["max_age", "max_bytes"])?;
//! assert_eq!(config.duration_ms("max_age")?, Some(36 * 3_600_000));
//! assert_eq!(config.size("max_bytes")?, None);
//! # Ok::<(), plugin_config::ConfigError>(())
//! ```

use std::fmt;

use serde_json::{Map, Value};

/// Milliseconds in one second.
const MS_PER_SECOND: u64 = 1_000;
/// Milliseconds in one minute.
const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
/// Milliseconds in one hour.
const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;
/// Milliseconds in one day.
const MS_PER_DAY: u64 = 24 * MS_PER_HOUR;
/// Milliseconds in one `month`, which netlog counts as 30 days.
const MS_PER_MONTH: u64 = 30 * MS_PER_DAY;
/// Milliseconds in one `year`, which netlog counts as 365 days.
const MS_PER_YEAR: u64 = 365 * MS_PER_DAY;

/// Why a plugin's config was refused. Its `Display` is the text `init` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The text is not JSON at all.
    NotJson(String),
    /// The JSON is not an object; holds the kind of value found.
    NotObject(&'static str),
    /// A key the plugin does not know.
    UnknownKey {
        /// The key as written.
        key: String,
        /// The keys the plugin accepts.
        known: Vec<&'static str>,
    },
    /// A known key whose value does not fit.
    BadValue {
        /// The key.
        key: String,
        /// The value, rendered as compact JSON.
        value: String,
        /// What was expected, or what is wrong with it.
        why: String,
    },
    /// A rule spanning several keys, e.g. "at least one of".
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson(cause) => write!(f, "config is not valid JSON: {cause}"),
            Self::NotObject(kind) => write!(f, "config must be a JSON object, got {kind}"),
            Self::UnknownKey { key, known } if known.is_empty() => {
                write!(f, "unknown config key \"{key}\": this plugin takes no keys")
            }
            Self::UnknownKey { key, known } => write!(
                f,
                "unknown config key \"{key}\" (known keys: {})",
                known.join(", ")
            ),
            Self::BadValue { key, value, why } => {
                write!(f, "bad value for \"{key}\": {value} ({why})")
            }
            Self::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A plugin's config: a JSON object holding only keys the plugin knows.
#[derive(Debug, Clone)]
pub struct Config {
    entries: Map<String, Value>,
}

impl Config {
    /// Parses `text` as a JSON object whose keys are all in `known`.
    pub fn parse(text: &str, known: &[&'static str]) -> Result<Self, ConfigError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ConfigError::NotJson(e.to_string()))?;
        let Value::Object(entries) = value else {
            return Err(ConfigError::NotObject(kind_of(&value)));
        };
        if let Some(key) = entries.keys().find(|key| !known.contains(&key.as_str())) {
            return Err(ConfigError::UnknownKey {
                key: key.clone(),
                known: known.to_vec(),
            });
        }
        Ok(Self { entries })
    }

    /// Whether `key` is present (with any value, `null` included).
    pub fn has(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The value of `key` as written, for a plugin that reads a structured
    /// value (such as a JSON Schema) itself.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.entries.get(key)
    }

    /// Reads `key` as a size in bytes (integer or string like `"64MiB"`).
    pub fn size(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.read(key, |value| match value {
            Value::Number(n) => n
                .as_u64()
                .ok_or_else(|| "a size must be a non-negative integer".to_owned()),
            Value::String(s) => parse_size(s),
            _ => Err("expected a size like 1048576 or \"64MiB\"".to_owned()),
        })
    }

    /// Reads `key` as a duration string like `"7day"`, in milliseconds.
    pub fn duration_ms(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.read(key, |value| match value {
            Value::String(s) => parse_duration_ms(s),
            _ => Err("expected a duration string like \"7day\" or \"12h\"".to_owned()),
        })
    }

    /// Reads `key` as a non-negative integer.
    pub fn integer(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.read(key, |value| {
            value
                .as_u64()
                .ok_or_else(|| "expected a non-negative integer".to_owned())
        })
    }

    /// Reads `key` as a boolean.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.read(key, |value| {
            value
                .as_bool()
                .ok_or_else(|| "expected true or false".to_owned())
        })
    }

    /// Reads `key` as a string.
    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.read(key, |value| {
            value
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| "expected a string".to_owned())
        })
    }

    /// Reads `key` as an array of strings.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        self.read(key, |value| {
            let not_strings = || "expected an array of strings".to_owned();
            value
                .as_array()
                .ok_or_else(not_strings)?
                .iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or_else(not_strings))
                .collect()
        })
    }

    /// Looks `key` up and converts it, wrapping a failure with key and value.
    fn read<T>(
        &self,
        key: &str,
        convert: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(value) = self.entries.get(key) else {
            return Ok(None);
        };
        convert(value)
            .map(Some)
            .map_err(|why| ConfigError::BadValue {
                key: key.to_owned(),
                value: value.to_string(),
                why,
            })
    }
}

/// Names the kind of a JSON value for error messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a size string like `"64MiB"` or `"500KB"` into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err("a size starts with digits, e.g. \"64MiB\"".to_owned());
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit \"{other}\"; use B, KB, KiB, MB, MiB, GB or GiB"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| "size too large".to_owned())
}

/// Parses a duration string like `"1month2day3h"` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty duration".to_owned());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        let unit_end = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        if digits.is_empty() {
            return Err(format!("expected a number before \"{rest}\""));
        }
        if unit.is_empty() {
            return Err(format!(
                "\"{digits}\" has no unit; use year, month, day, h, m, s or ms"
            ));
        }
        let per_unit = unit_ms(unit)?;
        total = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(per_unit))
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| "duration too large".to_owned())?;
        rest = after.trim_start();
    }
    Ok(total)
}

/// Milliseconds in one `unit` of a duration string.
fn unit_ms(unit: &str) -> Result<u64, String> {
    match unit.to_ascii_lowercase().as_str() {
        "year" | "years" => Ok(MS_PER_YEAR),
        "month" | "months" => Ok(MS_PER_MONTH),
        "day" | "days" => Ok(MS_PER_DAY),
        "h" => Ok(MS_PER_HOUR),
        "m" => Ok(MS_PER_MINUTE),
        "s" => Ok(MS_PER_SECOND),
        "ms" => Ok(1),
        other => Err(format!(
            "unknown duration unit \"{other}\"; use year, month, day, h, m, s or ms"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binary and decimal size units differ, and a bare number is bytes.
    #[test]
    fn sizes_use_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("500KB"), Ok(500_000));
        assert_eq!(parse_size("2kib"), Ok(2048));
        assert_eq!(parse_size("3 MB"), Ok(3_000_000));
        assert_eq!(parse_size("12B"), Ok(12));
        assert_eq!(parse_size("4096"), Ok(4096));
    }

    /// Malformed or overflowing sizes are refused with a reason.
    #[test]
    fn bad_sizes_are_refused() {
        assert!(parse_size("MiB").unwrap_err().contains("digits"));
        assert!(
            parse_size("1.5GiB")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_size("10TB").unwrap_err().contains("\"tb\""));
        assert!(
            parse_size("99999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    /// Duration parts add up, with month = 30 days and year = 365 days.
    #[test]
    fn durations_add_their_parts() {
        assert_eq!(parse_duration_ms("7day"), Ok(7 * MS_PER_DAY));
        assert_eq!(parse_duration_ms("12h"), Ok(12 * MS_PER_HOUR));
        assert_eq!(parse_duration_ms("30m"), Ok(30 * MS_PER_MINUTE));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(
            parse_duration_ms("1month2day3h"),
            Ok(30 * MS_PER_DAY + 2 * MS_PER_DAY + 3 * MS_PER_HOUR)
        );
        assert_eq!(parse_duration_ms("1year"), Ok(365 * MS_PER_DAY));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90 * MS_PER_SECOND));
        assert_eq!(
            parse_duration_ms("2days 4h"),
            Ok(2 * MS_PER_DAY + 4 * MS_PER_HOUR)
        );
    }

    /// Durations without a unit, with an unknown unit or empty are refused.
    #[test]
    fn bad_durations_are_refused() {
        assert!(parse_duration_ms("").unwrap_err().contains("empty"));
        assert!(parse_duration_ms("7").unwrap_err().contains("no unit"));
        assert!(
            parse_duration_ms("7dayz")
                .unwrap_err()
                .contains("unknown duration unit \"dayz\"")
        );
        assert!(parse_duration_ms("day").unwrap_err().contains("number"));
        assert!(parse_duration_ms("7day-").unwrap_err().contains("number"));
        assert!(
            parse_duration_ms("999999999999year")
                .unwrap_err()
                .contains("too large")
        );
    }

    /// `{}` is a valid config with every key absent.
    #[test]
    fn empty_object_is_valid() {
        let config = Config::parse("{}", &["max_age"]).unwrap();
        assert_eq!(config.duration_ms("max_age"), Ok(None));
        assert!(!config.has("max_age"));
    }

    /// An unknown key is refused and named, with the keys that are known.
    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse(r#"{"max_agee": "1day"}"#, &["max_age", "max_bytes"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown config key \"max_agee\" (known keys: max_age, max_bytes)"
        );
        let err = Config::parse(r#"{"level": 9}"#, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown config key \"level\": this plugin takes no keys"
        );
    }

    /// Text that is not a JSON object is refused with what it was.
    #[test]
    fn non_object_config_is_refused() {
        assert_eq!(
            Config::parse("[1]", &[]).unwrap_err().to_string(),
            "config must be a JSON object, got an array"
        );
        assert!(
            Config::parse("{", &[])
                .unwrap_err()
                .to_string()
                .starts_with("config is not valid JSON: ")
        );
    }

    /// A bad value names both the key and the value as written.
    #[test]
    fn bad_value_names_key_and_value() {
        let config = Config::parse(
            r#"{"max_age": "7dayz", "max_bytes": -1, "strict": "yes", "fields": [1]}"#,
            &["max_age", "max_bytes", "strict", "fields"],
        )
        .unwrap();
        assert_eq!(
            config.duration_ms("max_age").unwrap_err().to_string(),
            "bad value for \"max_age\": \"7dayz\" (unknown duration unit \"dayz\"; \
             use year, month, day, h, m, s or ms)"
        );
        assert_eq!(
            config.size("max_bytes").unwrap_err().to_string(),
            "bad value for \"max_bytes\": -1 (a size must be a non-negative integer)"
        );
        assert!(
            config
                .bool("strict")
                .unwrap_err()
                .to_string()
                .starts_with("bad value for \"strict\": \"yes\"")
        );
        assert!(
            config
                .strings("fields")
                .unwrap_err()
                .to_string()
                .starts_with("bad value for \"fields\": [1]")
        );
    }

    /// Sizes may be JSON integers or strings; durations must be strings.
    #[test]
    fn typed_getters_read_values() {
        let config = Config::parse(
            r#"{"a": 1024, "b": "1KiB", "c": "2h", "d": true, "e": ["x", "y"], "f": "s", "g": 7}"#,
            &["a", "b", "c", "d", "e", "f", "g"],
        )
        .unwrap();
        assert_eq!(config.size("a"), Ok(Some(1024)));
        assert_eq!(config.size("b"), Ok(Some(1024)));
        assert_eq!(config.duration_ms("c"), Ok(Some(2 * MS_PER_HOUR)));
        assert_eq!(config.bool("d"), Ok(Some(true)));
        assert_eq!(
            config.strings("e"),
            Ok(Some(vec!["x".to_owned(), "y".to_owned()]))
        );
        assert_eq!(config.string("f"), Ok(Some("s".to_owned())));
        assert_eq!(config.integer("g"), Ok(Some(7)));
        assert!(config.duration_ms("a").is_err());
    }
}
