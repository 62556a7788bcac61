//! A topic's settings, and the one resolver every source goes through.
//!
//! Settings reach the broker from four places: netlog's command-line flags
//! (server defaults), the operator's TOML file (`[defaults]`, `[topics.*]`),
//! a topic's stored `settings.json`, and the JSON body of `POST /{topic}`.
//! Each source only *reads* its values into a [`SettingsInput`], whose fields
//! are raw [`RawValue`]s, numbers or text as written; [`resolve`] alone turns
//! one into [`Settings`], so the same input gives the same settings and the
//! same error whatever its source.
//!
//! Meaning of values, the same everywhere:
//! - Durations (`segment_age`, `batch_interval`): text is netlog's duration
//!   grammar (`"7day"`, `"150ms"`); a number is nanoseconds, as netlog's
//!   `settings.json` stores Go durations.
//! - Sizes (`segment_size`): text is a size (`"1MiB"`), a number is bytes.
//! - Compression (`compression_type` or `compression`): netlog's numbers 0-3,
//!   as a number or a digit string, or a name: `none`, `gzip`, `snappy`, or a
//!   declared codec plugin.
//! - A zero means "the default", as in netlog.
//!
//! What netlog took is taken: a `segment_size` of 1024 bytes or a
//! `segment_age` of a few nanoseconds worked in netlog (tiny segments, or
//! segments deleted at the next check), so they are accepted here too, with
//! a warning naming the value when it looks like a mistake: a `segment_age`
//! under [`MIN_SEGMENT_AGE`] (a number of seconds read as nanoseconds, most
//! likely), a `segment_size` under [`MIN_SEGMENT_SIZE`], a
//! `batch_num_messages` over [`MAX_BATCH_NUM_MESSAGES`] (group commit is
//! bounded by bytes anyway). A negative `segment_size` is netlog's
//! "never roll by size" and is stored as `u64::MAX`; a negative
//! `segment_age` (`"-1h"`) is its "never delete by age", stored as
//! [`SEGMENT_AGE_NEVER`]. Only what netlog could
//! not use either is refused: text that is no duration or size, a negative
//! `batch_num_messages` (netlog panics on it), a compression number other
//! than 0-3 (netlog panics when it batches), and the extensions' own floors
//! (`min_segment_age` of at least [`MIN_ROLL_AGE_FLOOR`]). A stored
//! `settings.json` is data already accepted, so there [`resolve`] runs with
//! [`Strictness::Stored`] and keeps even codec numbers it no longer declares.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::{format_duration, parse_duration, parse_size};
use crate::message::{SET_GZIP, SET_NONE, SET_SNAPPY};

/// Default `segment_age`: segments older than 30 days are deleted (netlog).
pub const DEFAULT_SEGMENT_AGE: Duration = Duration::from_secs(30 * 86_400);
/// The `segment_age` a negative one (netlog's "never delete by age", e.g.
/// `"-1h"`) is stored as: 36,500 days.
pub const SEGMENT_AGE_NEVER: Duration = Duration::from_secs(36_500 * 86_400);
/// Default `segment_size`: roll the active segment past 1 GiB (netlog).
pub const DEFAULT_SEGMENT_SIZE: u64 = 1 << 30;
/// Default `batch_num_messages`: most messages one group-commit write takes.
pub const DEFAULT_BATCH_NUM_MESSAGES: usize = 100;
/// Default `batch_interval` (netlog's; see [`Settings::batch_interval`]).
pub const DEFAULT_BATCH_INTERVAL: Duration = Duration::from_millis(200);
/// Default `min_segment_bytes`: a retention plugin may roll the active
/// segment only once it holds this much.
pub const DEFAULT_MIN_SEGMENT_BYTES: u64 = 1 << 20;
/// Default `min_segment_age`: or once it is this old.
pub const DEFAULT_MIN_SEGMENT_AGE: Duration = Duration::from_secs(60);
/// Smallest `min_segment_age`: a retention plugin rolls a topic at most
/// once a second, whatever it answers.
pub const MIN_ROLL_AGE_FLOOR: Duration = Duration::from_secs(1);
/// Smallest `segment_age` taken without a warning: below one second, a
/// number was almost surely seconds read as nanoseconds.
pub const MIN_SEGMENT_AGE: Duration = Duration::from_secs(1);
/// Smallest `segment_size` taken without a warning: one page. Smaller
/// segments roll on nearly every monitor tick.
pub const MIN_SEGMENT_SIZE: u64 = 4096;
/// Largest `batch_num_messages` taken without a warning; a larger one is
/// kept as written (group commit stays bounded by its byte budget).
pub const MAX_BATCH_NUM_MESSAGES: usize = 1_000_000;

/// Default `dedup_window`: an `Idempotency-Key` is remembered for 2 minutes
/// after its request was answered.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(120);
/// Shortest `dedup_window`: 1 s.
pub const MIN_DEDUP_WINDOW: Duration = Duration::from_secs(1);
/// Longest `dedup_window`: 7 days.
pub const MAX_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 86_400);
/// Default `dedup_max_keys`: most idempotency keys a topic remembers.
pub const DEFAULT_DEDUP_MAX_KEYS: usize = 100_000;
/// Largest `dedup_max_keys`: 10 million.
pub const MAX_DEDUP_MAX_KEYS: usize = 10_000_000;

/// Which message formats a topic takes (`message_format`): `v0` refuses
/// keys, headers, timestamps and idempotency keys, so Go netlog can still
/// read the topic; `v1` is recorded before the first v1 message is written
/// (a build that does not know the field then refuses the topic rather than
/// cutting its log at the first v1 message). Unset: v1 allowed, none yet.
/// Set in a topic's settings (`POST /{topic}` body, `[topics.*]`) or in
/// `[defaults]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    /// netlog's format only.
    V0,
    /// v1 messages allowed, and (once recorded) present.
    V1,
}

/// What a hook does when its plugin traps, times out or errs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Fail closed: the publish fails and nothing is written.
    #[default]
    Reject,
    /// Fail open: the message is accepted; the failure is logged and counted.
    Accept,
}

/// A hook assignment: which declared plugin, with what config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSetting {
    /// Name of a plugin declared in `[plugins]`.
    pub plugin: String,
    /// The plugin's config, handed to its `init` as JSON.
    #[serde(default = "empty_object", skip_serializing_if = "is_empty_object")]
    pub config: serde_json::Value,
    /// Failure policy (validation only). Default `reject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

fn is_empty_object(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|o| o.is_empty())
}

/// A topic's settings, fully resolved (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Segments older than this are deleted by the monitor. Default 30 days.
    #[serde(with = "duration_text")]
    pub segment_age: Duration,
    /// The active segment is rolled once its data passes this many bytes.
    /// Default 1 GiB; under 4 KiB is taken with a warning; `u64::MAX` (a
    /// negative number in the input, as netlog wrote it) never rolls by size.
    pub segment_size: u64,
    /// Most messages written as one entry by group commit. Default 100.
    pub batch_num_messages: usize,
    /// netlog's batching window. Kept and stored for netlog compatibility,
    /// but nothing waits for it: group commit never delays a lone message,
    /// and publishes that arrive during a write share the next one.
    #[serde(with = "duration_text")]
    pub batch_interval: Duration,
    /// 1 none, 2 gzip, 3 snappy, 4..=15 a codec plugin (see `codecs`).
    pub compression_type: u8,
    /// Validation hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<HookSetting>,
    /// Retention hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<HookSetting>,
    /// Codec plugins this topic's data may use, by compression value
    /// (`"4": "lz4"`); kept even when no longer written so old data reads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub codecs: BTreeMap<u8, String>,
    /// A retention plugin may roll the active segment only once it holds
    /// this many bytes, or is `min_segment_age` old. Default 1 MiB.
    #[serde(
        default = "default_min_segment_bytes",
        skip_serializing_if = "is_default_min_segment_bytes"
    )]
    pub min_segment_bytes: u64,
    /// See `min_segment_bytes`. Default 1 min; at least 1 s.
    #[serde(
        default = "default_min_segment_age",
        with = "duration_text",
        skip_serializing_if = "is_default_min_segment_age"
    )]
    pub min_segment_age: Duration,
    /// `v0`, `v1` or unset (see [`MessageFormat`]). Default unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_format: Option<MessageFormat>,
    /// How long an `Idempotency-Key` is remembered after its request was
    /// answered. Default 2 min; 1 s to 7 days.
    #[serde(
        default = "default_dedup_window",
        with = "duration_text",
        skip_serializing_if = "is_default_dedup_window"
    )]
    pub dedup_window: Duration,
    /// Most idempotency keys remembered; past it the soonest-expiring one is
    /// forgotten. Default 100,000; 1 to 10,000,000.
    #[serde(
        default = "default_dedup_max_keys",
        skip_serializing_if = "is_default_dedup_max_keys"
    )]
    pub dedup_max_keys: usize,
}

fn default_dedup_window() -> Duration {
    DEFAULT_DEDUP_WINDOW
}

fn is_default_dedup_window(d: &Duration) -> bool {
    *d == DEFAULT_DEDUP_WINDOW
}

fn default_dedup_max_keys() -> usize {
    DEFAULT_DEDUP_MAX_KEYS
}

fn is_default_dedup_max_keys(n: &usize) -> bool {
    *n == DEFAULT_DEDUP_MAX_KEYS
}

fn default_min_segment_bytes() -> u64 {
    DEFAULT_MIN_SEGMENT_BYTES
}

fn is_default_min_segment_bytes(n: &u64) -> bool {
    *n == DEFAULT_MIN_SEGMENT_BYTES
}

fn default_min_segment_age() -> Duration {
    DEFAULT_MIN_SEGMENT_AGE
}

fn is_default_min_segment_age(d: &Duration) -> bool {
    *d == DEFAULT_MIN_SEGMENT_AGE
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            segment_age: DEFAULT_SEGMENT_AGE,
            segment_size: DEFAULT_SEGMENT_SIZE,
            batch_num_messages: DEFAULT_BATCH_NUM_MESSAGES,
            batch_interval: DEFAULT_BATCH_INTERVAL,
            compression_type: SET_NONE,
            validation: None,
            retention: None,
            codecs: BTreeMap::new(),
            min_segment_bytes: DEFAULT_MIN_SEGMENT_BYTES,
            min_segment_age: DEFAULT_MIN_SEGMENT_AGE,
            message_format: None,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            dedup_max_keys: DEFAULT_DEDUP_MAX_KEYS,
        }
    }
}

/// One value as its source wrote it: a number or text.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawValue {
    /// A whole number (JSON or TOML integer).
    Int(u64),
    /// A negative whole number (netlog's Go `int64` fields took them).
    Negative(i64),
    /// Text, from a flag or a quoted value.
    Text(String),
}

impl RawValue {
    /// The value as its source wrote it, for messages.
    pub(crate) fn show(&self) -> String {
        match self {
            RawValue::Int(n) => n.to_string(),
            RawValue::Negative(n) => n.to_string(),
            RawValue::Text(t) => format!("{t:?}"),
        }
    }
}

impl From<&str> for RawValue {
    fn from(t: &str) -> Self {
        RawValue::Text(t.to_string())
    }
}

impl From<u64> for RawValue {
    fn from(n: u64) -> Self {
        RawValue::Int(n)
    }
}

/// Settings as a source wrote them, before [`resolve`]. Every field is
/// optional; missing ones take the defaults. This is also the schema of the
/// JSON body of `POST /{topic}` and of a stored `settings.json`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    pub segment_age: Option<RawValue>,
    pub segment_size: Option<RawValue>,
    pub batch_num_messages: Option<RawValue>,
    pub batch_interval: Option<RawValue>,
    /// netlog's field: 0-3, or (extension) a name.
    pub compression_type: Option<RawValue>,
    /// Extension: a codec by name (`none`, `gzip`, `snappy`, or a codec plugin).
    pub compression: Option<String>,
    /// Extension: a validation hook naming a declared plugin.
    pub validation: Option<HookSetting>,
    /// Extension: a retention hook naming a declared plugin.
    pub retention: Option<HookSetting>,
    /// Stored files only: codec plugins bound to compression values.
    pub codecs: Option<BTreeMap<u8, String>>,
    /// Extension: least size before a retention plugin may roll.
    pub min_segment_bytes: Option<RawValue>,
    /// Extension: or least age.
    pub min_segment_age: Option<RawValue>,
    /// Extension: `v0` or `v1` (see [`MessageFormat`]).
    pub message_format: Option<MessageFormat>,
    /// Extension: how long idempotency keys are remembered.
    pub dedup_window: Option<RawValue>,
    /// Extension: most idempotency keys remembered.
    pub dedup_max_keys: Option<RawValue>,
}

/// Why settings were refused: the key and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingsError {
    /// The settings key (`segment_age`, `compression`, ...).
    pub key: &'static str,
    /// What is wrong, with a hint where one helps.
    pub message: String,
}

impl SettingsError {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        SettingsError {
            key,
            message: message.into(),
        }
    }

    /// Whether it is about the compression (netlog answers those with
    /// `invalid compression type`).
    pub fn is_compression(&self) -> bool {
        matches!(self.key, "compression" | "compression_type")
    }
}

/// How much [`resolve`] trusts its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// New input (flags, TOML, HTTP): codec numbers 4..=15 must name a
    /// declared codec plugin.
    Refuse,
    /// A stored `settings.json`, data already accepted: codec numbers it
    /// bound earlier are kept.
    Stored,
}

/// Resolves `input` against `defaults` (see the module docs). Codec names
/// other than the built-in ones must be in `codec_plugins`; each gets the
/// next free value 4..=15.
pub fn resolve(
    input: SettingsInput,
    defaults: &Settings,
    codec_plugins: &[String],
    strictness: Strictness,
) -> Result<Settings, SettingsError> {
    let mut s = Settings {
        segment_age: duration(input.segment_age.as_ref(), "segment_age")?
            .unwrap_or(defaults.segment_age),
        segment_size: size(input.segment_size.as_ref(), "segment_size")?
            .unwrap_or(defaults.segment_size),
        batch_num_messages: count(input.batch_num_messages.as_ref(), "batch_num_messages")?
            .unwrap_or(defaults.batch_num_messages),
        batch_interval: duration(input.batch_interval.as_ref(), "batch_interval")?
            .unwrap_or(defaults.batch_interval),
        compression_type: defaults.compression_type,
        validation: input.validation.or_else(|| defaults.validation.clone()),
        retention: input.retention.or_else(|| defaults.retention.clone()),
        codecs: input.codecs.unwrap_or_else(|| defaults.codecs.clone()),
        min_segment_bytes: match &input.min_segment_bytes {
            // Zero is a real value here: no size floor (the age floor stays).
            Some(RawValue::Int(0)) => 0,
            v => size(v.as_ref(), "min_segment_bytes")?.unwrap_or(defaults.min_segment_bytes),
        },
        min_segment_age: duration(input.min_segment_age.as_ref(), "min_segment_age")?
            .unwrap_or(defaults.min_segment_age),
        message_format: input.message_format.or(defaults.message_format),
        dedup_window: duration(input.dedup_window.as_ref(), "dedup_window")?
            .unwrap_or(defaults.dedup_window),
        dedup_max_keys: count(input.dedup_max_keys.as_ref(), "dedup_max_keys")?
            .unwrap_or(defaults.dedup_max_keys),
    };
    if let Some(h) = &s.retention
        && h.on_error.is_some()
    {
        return Err(SettingsError::new(
            "retention",
            "on_error applies to validation hooks only",
        ));
    }
    match &input.compression_type {
        None => {}
        Some(RawValue::Int(0)) => {}
        Some(RawValue::Int(n)) => match u8::try_from(*n) {
            Ok(c @ (SET_NONE | SET_GZIP | SET_SNAPPY)) => s.compression_type = c,
            Ok(c) if strictness == Strictness::Stored && s.codecs.contains_key(&c) => {
                s.compression_type = c
            }
            _ => {
                return Err(SettingsError::new(
                    "compression_type",
                    format!("{n} is not 0 to 3 (none, gzip, snappy)"),
                ));
            }
        },
        Some(RawValue::Negative(n)) => {
            return Err(SettingsError::new(
                "compression_type",
                format!("{n} is not 0 to 3 (none, gzip, snappy)"),
            ));
        }
        Some(RawValue::Text(t)) => s.set_compression(t, codec_plugins, "compression_type")?,
    }
    if let Some(name) = &input.compression {
        s.set_compression(name, codec_plugins, "compression")?;
    }
    check_floors(&s)?;
    for warning in mistakes(&s) {
        tracing::warn!(
            key = warning.key,
            "{}; taken as netlog took it",
            warning.message
        );
    }
    Ok(s)
}

/// The extensions' floors, which netlog never had: refused.
fn check_floors(s: &Settings) -> Result<(), SettingsError> {
    if !(MIN_DEDUP_WINDOW..=MAX_DEDUP_WINDOW).contains(&s.dedup_window) {
        return Err(SettingsError::new(
            "dedup_window",
            format!("{} is outside 1s to 7day", format_duration(s.dedup_window)),
        ));
    }
    if s.dedup_max_keys > MAX_DEDUP_MAX_KEYS {
        return Err(SettingsError::new(
            "dedup_max_keys",
            format!("{} is over {MAX_DEDUP_MAX_KEYS}", s.dedup_max_keys),
        ));
    }
    if s.min_segment_age < MIN_ROLL_AGE_FLOOR {
        return Err(SettingsError::new(
            "min_segment_age",
            format!(
                "{} is under the floor of 1s, which bounds how often a retention plugin may roll",
                format_duration(s.min_segment_age)
            ),
        ));
    }
    Ok(())
}

/// Values netlog took that look like mistakes (see the module docs), each
/// with a hint. They are kept; the caller logs them.
pub(crate) fn mistakes(s: &Settings) -> Vec<SettingsError> {
    let mut out = Vec::new();
    if s.segment_age < MIN_SEGMENT_AGE {
        let nanos = s.segment_age.as_nanos();
        out.push(SettingsError::new(
            "segment_age",
            format!(
                "{} is under 1s; a number is read as nanoseconds (netlog's meaning): \
                 did you mean \"{nanos}s\"? Write units, e.g. \"7day\" or \"12h\"",
                format_duration(s.segment_age)
            ),
        ));
    }
    if s.segment_size < MIN_SEGMENT_SIZE {
        out.push(SettingsError::new(
            "segment_size",
            format!(
                "{} bytes is under {MIN_SEGMENT_SIZE}, so segments roll at nearly every check: \
                 did you mean \"{}MiB\"? Write units, e.g. \"64MiB\"",
                s.segment_size, s.segment_size
            ),
        ));
    }
    if s.batch_num_messages > MAX_BATCH_NUM_MESSAGES {
        out.push(SettingsError::new(
            "batch_num_messages",
            format!(
                "{} is over {MAX_BATCH_NUM_MESSAGES}, the most one write takes",
                s.batch_num_messages
            ),
        ));
    }
    out
}

/// A duration value; zero means "the default" (`None`).
fn duration(v: Option<&RawValue>, key: &'static str) -> Result<Option<Duration>, SettingsError> {
    let d = match v {
        None => return Ok(None),
        Some(RawValue::Int(n)) => Duration::from_nanos(*n),
        Some(RawValue::Negative(n)) => {
            return Err(SettingsError::new(
                key,
                format!("{n} is negative; write a duration such as \"7day\""),
            ));
        }
        // netlog's "never delete by age": a negative `segment_age`.
        Some(RawValue::Text(t))
            if key == "segment_age"
                && t.trim()
                    .strip_prefix('-')
                    .is_some_and(|rest| parse_duration(rest).is_ok()) =>
        {
            SEGMENT_AGE_NEVER
        }
        // A bare number as text (a flag) means what a number means.
        Some(RawValue::Text(t)) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
            let n = t.parse::<u64>().map_err(|_| {
                SettingsError::new(key, format!("{t:?} is too large a number of nanoseconds"))
            })?;
            Duration::from_nanos(n)
        }
        Some(RawValue::Text(t)) => {
            parse_duration(t).map_err(|e| SettingsError::new(key, e.to_string()))?
        }
    };
    Ok((!d.is_zero()).then_some(d))
}

/// A size value; zero means "the default".
fn size(v: Option<&RawValue>, key: &'static str) -> Result<Option<u64>, SettingsError> {
    let n = match v {
        None => return Ok(None),
        Some(RawValue::Int(n)) => *n,
        // netlog's "never roll by size" (its `int64` field).
        Some(RawValue::Negative(_)) if key == "segment_size" => u64::MAX,
        Some(RawValue::Negative(n)) => {
            return Err(SettingsError::new(key, format!("{n} is negative")));
        }
        Some(RawValue::Text(t)) => {
            parse_size(t).map_err(|e| SettingsError::new(key, e.to_string()))?
        }
    };
    Ok((n != 0).then_some(n))
}

/// A count value; zero means "the default".
fn count(v: Option<&RawValue>, key: &'static str) -> Result<Option<usize>, SettingsError> {
    let n = match v {
        None => return Ok(None),
        Some(RawValue::Int(n)) => *n,
        Some(RawValue::Negative(n)) => {
            return Err(SettingsError::new(
                key,
                format!("{n} is negative (netlog could not use it either)"),
            ));
        }
        Some(RawValue::Text(t)) => t
            .trim()
            .parse::<u64>()
            .map_err(|_| SettingsError::new(key, format!("{:?} is not a whole number", t)))?,
    };
    let n = usize::try_from(n)
        .map_err(|_| SettingsError::new(key, format!("{n} is too large a number")))?;
    Ok((n != 0).then_some(n))
}

impl Settings {
    /// Sets the compression by name or netlog number, binding a codec plugin
    /// to a value.
    fn set_compression(
        &mut self,
        name: &str,
        codec_plugins: &[String],
        key: &'static str,
    ) -> Result<(), SettingsError> {
        self.compression_type = match name.trim() {
            "0" => return Ok(()),
            "none" | "1" => SET_NONE,
            "gzip" | "2" => SET_GZIP,
            "snappy" | "3" => SET_SNAPPY,
            plugin if codec_plugins.iter().any(|p| p == plugin) => {
                match self.codecs.iter().find(|(_, p)| *p == plugin) {
                    Some((value, _)) => *value,
                    None => {
                        let value = (4..=15u8)
                            .find(|v| !self.codecs.contains_key(v))
                            .ok_or_else(|| {
                                SettingsError::new(key, "all 12 codec plugin values are used")
                            })?;
                        self.codecs.insert(value, plugin.to_string());
                        value
                    }
                }
            }
            other => {
                return Err(SettingsError::new(
                    key,
                    format!("{other:?} is not none, gzip, snappy or a declared codec plugin"),
                ));
            }
        };
        Ok(())
    }

    /// The name of the compression in use.
    pub fn compression_name(&self) -> &str {
        match self.compression_type {
            SET_GZIP => "gzip",
            SET_SNAPPY => "snappy",
            v => self.codecs.get(&v).map_or("none", String::as_str),
        }
    }

    /// The plugin names these settings' hooks and codecs refer to.
    pub fn plugin_names(&self) -> impl Iterator<Item = &str> {
        self.validation
            .iter()
            .chain(self.retention.iter())
            .map(|h| h.plugin.as_str())
            .chain(self.codecs.values().map(String::as_str))
    }
}

/// Checks a topic name: 1-255 of `[A-Za-z0-9._-]`, not starting with `.` or
/// `_` (those are the broker's). Says why not.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("topic names are 1 to 255 characters long".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic names may only hold letters, digits, '.', '_' and '-' (found {c:?})"
        ));
    }
    if name.starts_with('.') || name.starts_with('_') {
        return Err("topic names may not start with '.' or '_'".into());
    }
    Ok(())
}

mod duration_text {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match RawValue::deserialize(d)? {
            RawValue::Text(s) => parse_duration(&s).map_err(serde::de::Error::custom),
            RawValue::Int(n) => Ok(Duration::from_nanos(n)),
            RawValue::Negative(n) => Err(serde::de::Error::custom(format!(
                "{n} is a negative duration"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> SettingsInput {
        serde_json::from_str(json).unwrap()
    }

    /// Zeros mean the defaults, as in netlog.
    #[test]
    fn zeros_take_the_defaults() {
        let s = resolve(
            input(
                r#"{"segment_age":0,"segment_size":0,"batch_num_messages":0,"compression_type":0}"#,
            ),
            &Settings::default(),
            &[],
            Strictness::Refuse,
        )
        .unwrap();
        assert_eq!(s, Settings::default());
    }

    /// A number of seconds where netlog expects nanoseconds is taken, as
    /// netlog took it, with a hint in the warning.
    #[test]
    fn seconds_as_nanoseconds_are_taken_with_a_hint() {
        for strictness in [Strictness::Refuse, Strictness::Stored] {
            let s = resolve(
                input(r#"{"segment_age":86400}"#),
                &Settings::default(),
                &[],
                strictness,
            )
            .unwrap();
            assert_eq!(s.segment_age, Duration::from_nanos(86400));
            let hints = mistakes(&s);
            assert_eq!(hints.len(), 1);
            assert!(
                hints[0].message.contains("did you mean \"86400s\""),
                "{}",
                hints[0]
            );
        }
    }

    /// netlog's values are taken: a tiny segment, a huge batch, a negative
    /// size (never roll); what netlog could not use is refused.
    #[test]
    fn netlog_values_are_taken_and_unusable_ones_refused() {
        let take = |json: &str| resolve(input(json), &Settings::default(), &[], Strictness::Refuse);
        let s = take(
            r#"{"segment_age":"1day","segment_size":1024,"batch_num_messages":1,"compression_type":2}"#,
        )
        .unwrap();
        assert_eq!(
            (s.segment_size, s.batch_num_messages, s.compression_type),
            (1024, 1, SET_GZIP)
        );
        assert_eq!(mistakes(&s)[0].key, "segment_size");
        assert_eq!(take(r#"{"segment_size":1}"#).unwrap().segment_size, 1);
        assert_eq!(
            take(r#"{"segment_size":-1}"#).unwrap().segment_size,
            u64::MAX
        );
        let big = take(r#"{"batch_num_messages":5000000}"#).unwrap();
        assert_eq!(big.batch_num_messages, 5_000_000);
        assert_eq!(mistakes(&big)[0].key, "batch_num_messages");
        assert_eq!(
            take(r#"{"segment_age":"1ns"}"#).unwrap().segment_age,
            Duration::from_nanos(1)
        );
        for (json, key) in [
            (r#"{"batch_num_messages":-1}"#, "batch_num_messages"),
            (r#"{"compression_type":4}"#, "compression_type"),
            (r#"{"compression_type":-2}"#, "compression_type"),
            (r#"{"segment_age":-5}"#, "segment_age"),
            (r#"{"segment_size":"lots"}"#, "segment_size"),
            (r#"{"min_segment_bytes":-1}"#, "min_segment_bytes"),
            (r#"{"min_segment_age":"10ms"}"#, "min_segment_age"),
        ] {
            assert_eq!(take(json).unwrap_err().key, key, "{json}");
        }
    }
}
