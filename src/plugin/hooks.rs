//! The three hooks as the broker calls them: [`Validator`], [`WasmCodec`] and
//! [`Retention`], each one plugin bound to one topic.
//!
//! Each wraps a runner (`runner.rs`) of its world and translates between the
//! broker's types and the generated bindings of the WIT version the plugin
//! was built against (`bindings.rs`): a `0.1.x` validator is shown a
//! message's value alone, a `0.2.x` one its key, headers and timestamp too,
//! borrowed from the caller's [`MessageView`]s. Answers are checked against the
//! WIT contract where the host can check it (one verdict per message); what a
//! retention policy asks for is returned raw, since bounding it against the
//! topic's segments is the broker's job.

use std::fmt;
use std::sync::Arc;

use wasmtime::Store;

use super::bindings::{ByVersion, v0_1, v0_2};
use super::guest_log::{MAX_LINE_BYTES, escape_and_cut};
use super::host::{Plugin, WorldPre};
use super::runner::{CallStats, Runner, World};
use super::sandbox::StoreData;
use super::{PluginError, PluginKind};
use crate::message::{Codec, CodecError, MAX_PAYLOAD_BYTES};

/// Binding a plugin to a topic: the hook it exports, as the broker calls it.
impl Plugin {
    /// Binds this validator plugin to `topic`: makes an instance and calls
    /// `init(config_json)`.
    pub fn validator(
        self: &Arc<Self>,
        topic: &str,
        config_json: &str,
    ) -> Result<Validator, PluginError> {
        Validator::bind(self.clone(), topic, config_json)
    }

    /// Binds this codec plugin to `topic`: makes an instance and calls
    /// `init(config_json)`.
    pub fn codec(
        self: &Arc<Self>,
        topic: &str,
        config_json: &str,
    ) -> Result<WasmCodec, PluginError> {
        WasmCodec::bind(self.clone(), topic, config_json)
    }

    /// Binds this retention plugin to `topic`: makes an instance and calls
    /// `init(config_json)`.
    pub fn retention(
        self: &Arc<Self>,
        topic: &str,
        config_json: &str,
    ) -> Result<Retention, PluginError> {
        Retention::bind(self.clone(), topic, config_json)
    }
}

/// An instance of a validator, of either version.
type ValidatorBindings = ByVersion<v0_1::validator::Validator, v0_2::validator::Validator>;
/// An instance of a codec, of either version.
type CodecBindings = ByVersion<v0_1::codec::Codec, v0_2::codec::Codec>;
/// An instance of a retention policy, of either version.
type RetentionBindings =
    ByVersion<v0_1::retention::RetentionPolicy, v0_2::retention::RetentionPolicy>;

/// One message as a validator is shown it, borrowed from the caller. A
/// validator built against `netlog:plugin@0.1.x` sees `value` alone; one
/// built against `0.2.x` sees every field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// The value: the bytes consumers read.
    pub value: &'a [u8],
    /// The key, if the message has one.
    pub key: Option<&'a [u8]>,
    /// The headers, in the producer's order.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// The producer's timestamp, ms since the Unix epoch.
    pub timestamp: Option<i64>,
}

impl<'a> MessageView<'a> {
    /// A plain message: a value without key, headers or timestamp.
    pub fn plain(value: &'a [u8]) -> Self {
        MessageView {
            value,
            ..MessageView::default()
        }
    }
}

/// What a validator decided about one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The message may be written.
    Accept,
    /// The message must not be written, for this reason.
    Reject(String),
}

// The reason goes to the client in JSON (which escapes it): kept as
// written, only cut to a bounded length.
impl From<v0_1::validator::exports::netlog::plugin::validation::Verdict> for Verdict {
    fn from(verdict: v0_1::validator::exports::netlog::plugin::validation::Verdict) -> Self {
        use v0_1::validator::exports::netlog::plugin::validation::Verdict as Wit;
        match verdict {
            Wit::Accept => Verdict::Accept,
            Wit::Reject(reason) => Verdict::Reject(cut(reason)),
        }
    }
}

impl From<v0_2::validator::exports::netlog::plugin::validation::Verdict> for Verdict {
    fn from(verdict: v0_2::validator::exports::netlog::plugin::validation::Verdict) -> Self {
        use v0_2::validator::exports::netlog::plugin::validation::Verdict as Wit;
        match verdict {
            Wit::Accept => Verdict::Accept,
            Wit::Reject(reason) => Verdict::Reject(cut(reason)),
        }
    }
}

/// A validator plugin bound to a topic.
pub struct Validator {
    runner: Runner<ValidatorWorld>,
}

impl Validator {
    pub(crate) fn bind(
        plugin: Arc<Plugin>,
        topic: &str,
        config: &str,
    ) -> Result<Self, PluginError> {
        Ok(Validator {
            runner: Runner::bind(plugin, topic, config)?,
        })
    }

    /// Judges a batch of plain messages: exactly one verdict per message, in
    /// order.
    pub fn validate(&self, batch: &[&[u8]]) -> Result<Vec<Verdict>, PluginError> {
        let views: Vec<MessageView<'_>> = batch.iter().map(|v| MessageView::plain(v)).collect();
        self.validate_messages(&views)
    }

    /// Judges a batch: exactly one verdict per message, in order. The views
    /// are lowered into the guest as they are, with no copy in between.
    pub fn validate_messages(
        &self,
        batch: &[MessageView<'_>],
    ) -> Result<Vec<Verdict>, PluginError> {
        let topic = self.runner.topic();
        let verdicts = self.runner.call(|bindings, store| match bindings {
            ByVersion::V0_1(instance) => {
                use v0_1::validator::exports::netlog::plugin::validation as wit;
                let messages: Vec<wit::Message<'_>> = batch
                    .iter()
                    .map(|m| wit::Message { payload: m.value })
                    .collect();
                let verdicts = instance
                    .netlog_plugin_validation()
                    .call_validate(store, topic, &messages)?;
                Ok(verdicts.into_iter().map(Verdict::from).collect::<Vec<_>>())
            }
            ByVersion::V0_2(instance) => {
                use v0_2::validator::exports::netlog::plugin::validation as wit;
                let messages: Vec<wit::Message<'_>> = batch
                    .iter()
                    .map(|m| wit::Message {
                        payload: m.value,
                        key: m.key,
                        headers: &m.headers,
                        timestamp: m.timestamp,
                    })
                    .collect();
                let verdicts = instance
                    .netlog_plugin_validation()
                    .call_validate(store, topic, &messages)?;
                Ok(verdicts.into_iter().map(Verdict::from).collect::<Vec<_>>())
            }
        })?;
        if verdicts.len() != batch.len() {
            return Err(self.runner.bad_answer(format!(
                "{} verdicts for {} messages",
                verdicts.len(),
                batch.len()
            )));
        }
        let rejected = verdicts.iter().filter(|v| **v != Verdict::Accept).count();
        self.runner.count_rejected(rejected as u64);
        Ok(verdicts)
    }

    /// The plugin behind this validator.
    pub fn plugin(&self) -> &Arc<Plugin> {
        self.runner.plugin()
    }

    /// The topic it serves.
    pub fn topic(&self) -> &str {
        self.runner.topic()
    }

    /// Its counters.
    pub fn stats(&self) -> CallStats {
        self.runner.stats()
    }
}

/// A codec plugin bound to a topic, usable wherever a built-in codec is.
/// Every failure, trap or error, becomes a [`CodecError`] naming the plugin.
pub struct WasmCodec {
    runner: Runner<CodecWorld>,
}

impl WasmCodec {
    pub(crate) fn bind(
        plugin: Arc<Plugin>,
        topic: &str,
        config: &str,
    ) -> Result<Self, PluginError> {
        Ok(WasmCodec {
            runner: Runner::bind(plugin, topic, config)?,
        })
    }

    /// The plugin behind this codec.
    pub fn plugin(&self) -> &Arc<Plugin> {
        self.runner.plugin()
    }

    /// The topic it serves.
    pub fn topic(&self) -> &str {
        self.runner.topic()
    }

    /// Its counters.
    pub fn stats(&self) -> CallStats {
        self.runner.stats()
    }

    /// Runs one direction, turning every failure into a [`CodecError`].
    fn run(
        &self,
        call: impl FnOnce(
            &CodecBindings,
            &mut Store<StoreData>,
        ) -> wasmtime::Result<Result<Vec<u8>, String>>,
    ) -> Result<Vec<u8>, CodecError> {
        let error = |reason: String| CodecError {
            codec: self.name().to_string(),
            reason,
        };
        match self.runner.call(call) {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(reason)) => {
                self.runner.count_error();
                let reason = escape_and_cut(&reason);
                Err(error(format!("topic {}: {reason}", self.topic())))
            }
            Err(e) => Err(error(e.to_string())),
        }
    }
}

impl Codec for WasmCodec {
    fn name(&self) -> &str {
        self.runner.plugin().name()
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn compress(&self, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        self.run(|bindings, store| match bindings {
            ByVersion::V0_1(instance) => instance
                .netlog_plugin_compression()
                .call_compress(store, data),
            ByVersion::V0_2(instance) => instance
                .netlog_plugin_compression()
                .call_compress(store, data),
        })
    }

    fn decompress(&self, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let out = self.run(|bindings, store| match bindings {
            ByVersion::V0_1(instance) => instance
                .netlog_plugin_compression()
                .call_decompress(store, data),
            ByVersion::V0_2(instance) => instance
                .netlog_plugin_compression()
                .call_decompress(store, data),
        })?;
        if out.len() > MAX_PAYLOAD_BYTES {
            self.runner.count_error();
            return Err(CodecError {
                codec: self.name().to_string(),
                reason: format!(
                    "decompressed set of {} bytes is over the size limit",
                    out.len()
                ),
            });
        }
        Ok(out)
    }
}

/// What a retention policy is shown on each tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionState {
    /// The topic's name.
    pub topic: String,
    /// Its segments, oldest first; the last is the active one.
    pub segments: Vec<SegmentState>,
    /// Its open scanners.
    pub scanners: Vec<ScannerState>,
    /// The broker's clock, in ms since the Unix epoch.
    pub now_ms: u64,
}

/// One segment, as a retention policy sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentState {
    /// Offset of its first message.
    pub base_offset: u64,
    /// Offset one past its last message.
    pub next_offset: u64,
    /// Bytes on disk (data and index).
    pub bytes: u64,
    /// Creation time, in ms since the Unix epoch.
    pub created_ms: u64,
    /// Last write, in ms since the Unix epoch.
    pub modified_ms: u64,
}

/// One scanner, as a retention policy sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScannerState {
    /// Its UUID.
    pub id: String,
    /// The next offset it will return.
    pub next_offset: u64,
    /// Whether it survives a restart.
    pub persistent: bool,
}

/// What a retention policy asked for, unbounded: the broker clamps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionDecision {
    /// How many of the oldest segments to delete.
    pub delete_oldest: u32,
    /// Whether to roll the active segment first.
    pub roll_active: bool,
}

/// Calls `evaluate` on an instance built against WIT version `$version`
/// (`v0_1` or `v0_2`, whose retention interfaces have the same types under
/// different paths), lending it `$state` without copying its strings.
macro_rules! evaluate {
    ($version:ident, $instance:expr, $store:expr, $state:expr) => {{
        use $version::retention::exports::netlog::plugin::retention as wit;
        let state: &RetentionState = $state;
        let segments: Vec<wit::Segment> = state
            .segments
            .iter()
            .map(|s| wit::Segment {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                bytes: s.bytes,
                created_ms: s.created_ms,
                modified_ms: s.modified_ms,
            })
            .collect();
        let scanners: Vec<wit::Scanner<'_>> = state
            .scanners
            .iter()
            .map(|s| wit::Scanner {
                id: &s.id,
                next_offset: s.next_offset,
                persistent: s.persistent,
            })
            .collect();
        let wit_state = wit::State {
            topic: &state.topic,
            segments: &segments,
            scanners: &scanners,
            now_ms: state.now_ms,
        };
        $instance
            .netlog_plugin_retention()
            .call_evaluate($store, wit_state)
            .map(|decision| RetentionDecision {
                delete_oldest: decision.delete_oldest,
                roll_active: decision.roll_active,
            })
    }};
}

/// A retention plugin bound to a topic.
pub struct Retention {
    runner: Runner<RetentionWorld>,
}

impl Retention {
    pub(crate) fn bind(
        plugin: Arc<Plugin>,
        topic: &str,
        config: &str,
    ) -> Result<Self, PluginError> {
        Ok(Retention {
            runner: Runner::bind(plugin, topic, config)?,
        })
    }

    /// Asks the policy what to do given `state`; the answer is returned as
    /// the plugin gave it.
    pub fn evaluate(&self, state: &RetentionState) -> Result<RetentionDecision, PluginError> {
        self.runner.call(|bindings, store| match bindings {
            ByVersion::V0_1(instance) => evaluate!(v0_1, instance, store, state),
            ByVersion::V0_2(instance) => evaluate!(v0_2, instance, store, state),
        })
    }

    /// The plugin behind this policy.
    pub fn plugin(&self) -> &Arc<Plugin> {
        self.runner.plugin()
    }

    /// The topic it serves.
    pub fn topic(&self) -> &str {
        self.runner.topic()
    }

    /// Its counters.
    pub fn stats(&self) -> CallStats {
        self.runner.stats()
    }
}

macro_rules! debug_hook {
    ($($hook:ty),*) => {$(
        impl fmt::Debug for $hook {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($hook))
                    .field("plugin", &self.runner.plugin().name())
                    .field("topic", &self.runner.topic())
                    .field("stats", &self.runner.stats())
                    .finish()
            }
        }
    )*};
}

debug_hook!(Validator, WasmCodec, Retention);

/// The broker shares every hook between threads.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Validator>();
    shareable::<WasmCodec>();
    shareable::<Retention>();
    shareable::<Plugin>();
};

/// Defines the runner's view of a world: which `WorldPre` variant makes it
/// and its generated bindings type.
macro_rules! world {
    ($world:ident, $kind:ident, $bindings:ty) => {
        pub(crate) struct $world;

        impl World for $world {
            const KIND: PluginKind = PluginKind::$kind;
            type Bindings = $bindings;

            fn instantiate(
                pre: &WorldPre,
                store: &mut Store<StoreData>,
            ) -> wasmtime::Result<$bindings> {
                match pre {
                    WorldPre::$kind(ByVersion::V0_1(pre)) => {
                        pre.instantiate(store).map(ByVersion::V0_1)
                    }
                    WorldPre::$kind(ByVersion::V0_2(pre)) => {
                        pre.instantiate(store).map(ByVersion::V0_2)
                    }
                    _ => wasmtime::bail!("the plugin is not a {}", PluginKind::$kind),
                }
            }

            fn init(
                bindings: &$bindings,
                store: &mut Store<StoreData>,
                config: &str,
            ) -> wasmtime::Result<Result<(), String>> {
                match bindings {
                    ByVersion::V0_1(instance) => instance.call_init(store, config),
                    ByVersion::V0_2(instance) => instance.call_init(store, config),
                }
            }
        }
    };
}

world!(ValidatorWorld, Validator, ValidatorBindings);
world!(CodecWorld, Codec, CodecBindings);
world!(RetentionWorld, Retention, RetentionBindings);

/// `reason` cut to [`MAX_LINE_BYTES`] on a character boundary, saying how
/// much was cut.
fn cut(mut reason: String) -> String {
    if reason.len() <= MAX_LINE_BYTES {
        return reason;
    }
    let total = reason.len();
    let mut end = MAX_LINE_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.truncate(end);
    reason.push_str(&format!("… [cut {} bytes]", total - end));
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reason within the bound is kept exactly (escapes included); a
    /// longer one is cut on a character boundary and says by how much.
    #[test]
    fn reasons_are_cut_not_rewritten() {
        let regex = r"does not match /^[a-z]+=\d+$/".to_string();
        assert_eq!(cut(regex.clone()), regex);
        let long = "é".repeat(MAX_LINE_BYTES); // two bytes each
        let cut_one = cut(long.clone());
        assert!(cut_one.len() < MAX_LINE_BYTES + 32, "{}", cut_one.len());
        assert!(cut_one.ends_with(&format!("… [cut {} bytes]", long.len() - MAX_LINE_BYTES)));
    }
}
