//! The WebAssembly plugin host: runs the components that operators assign to
//! a topic's hooks (validation, compression, retention) in a sandbox.
//!
//! A plugin is a component targeting one world of `wit/netlog-plugin.wit`
//! (`netlog:plugin@0.2.0`) or of its predecessor `wit/v0.1/netlog-plugin.wit`
//! (`0.1.0`, whose validator sees a message's value only; see
//! [`WIT_VERSIONS`]). Its life has three stages:
//!
//! 1. **Load** ([`PluginHost::load`]), once at start-up: the file is compiled
//!    (or its compiled code is read back from the on-disk cache), its hook is
//!    read from the interface it exports (`netlog:plugin/validation`,
//!    `compression` or `retention`), the WIT version of that interface is
//!    checked, and the component is linked against the host once, giving the
//!    `Pre` of the world at that version, which every later instance is made
//!    from.
//! 2. **Bind** ([`Plugin::validator`], [`Plugin::codec`],
//!    [`Plugin::retention`]), once per topic: an instance is made in a store
//!    of its own and `init` is called with the topic's config. Topics never
//!    share an instance, so no state leaks between them, and a config that
//!    `init` refuses is an error at start-up.
//! 3. **Call**: a bound hook keeps a few idle instances. A call takes one (or
//!    makes one, calling `init` again), arms the time limit (an epoch
//!    deadline), the fuel and the memory limit, calls, and puts the instance
//!    back. After a trap, a timeout or a memory-limit stop the instance is
//!    dropped: wasmtime refuses to enter an instance that trapped, and its
//!    state may be half-updated. Hooks are `Send + Sync`; concurrent calls use
//!    different instances and hold no lock while wasm runs.
//!
//! Invariants: one [`wasmtime::Engine`] (epoch interruption and fuel on) and
//! one linker per host; a background thread advances the epoch every
//! [`EPOCH_TICK`] for as long as the host or any plugin, hook or instance made
//! from it is alive. Calls block the calling thread and must be made off the
//! async reactor (`spawn_blocking`): WASI's blocking I/O enters a Tokio
//! runtime of its own.
//!
//! ```no_run
//! use netlog::plugin::{HostOptions, Limits, PluginHost, Verdict};
//! let host = PluginHost::new(HostOptions { cache_dir: None })?;
//! let plugin = host.load("json", "plugins/dist/json_validator.wasm".as_ref(), Limits::default())?;
//! let validator = plugin.validator("orders", r#"{"required": ["id"]}"#)?;
//! let verdicts = validator.validate(&[br#"{"id": 1}"#.as_slice(), b"{}"])?;
//! assert_eq!(verdicts[0], Verdict::Accept);
//! # Ok::<(), netlog::plugin::PluginError>(())
//! ```

mod bindings;
mod cache;
mod check;
mod error;
mod guest_log;
mod hooks;
mod host;
mod runner;
mod sandbox;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use check::{CheckReport, check_component};
pub use error::{Cause, PluginError};
pub use hooks::{
    MessageView, Retention, RetentionDecision, RetentionState, ScannerState, SegmentState,
    Validator, Verdict, WasmCodec,
};
pub use host::{MAX_COMPONENT_BYTES, Plugin, PluginHost, read_component};
pub use runner::CallStats;

/// The newest version of `netlog:plugin` this host implements: the one in
/// `wit/netlog-plugin.wit`, which `netlog plugin wit` writes out.
pub const WIT_VERSION: &str = "0.2.0";
/// The versions of `netlog:plugin` this host calls, oldest first. While the
/// package is below 1.0 each minor version is an interface of its own (the
/// component model does not match 0.1 against 0.2), so the host implements
/// both side by side: a component built against any `0.1.x` or `0.2.x`
/// (patch releases included, pre-releases not) loads, and any other version
/// is refused at load with an error naming these.
pub const WIT_VERSIONS: &[&str] = &["0.1.x", "0.2.x"];
/// How often the epoch advances: the granularity of every time limit.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Longest `time_per_call` accepted: a day (86.4 million ticks).
pub const MAX_TIME_PER_CALL: Duration = Duration::from_secs(86_400);
/// Default memory limit per instance: 32 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 32 << 20;
/// Smallest memory limit: one wasm page.
pub const MIN_MEMORY_BYTES: u64 = 64 * 1024;
/// Default time limit per call: 100 ms.
pub const DEFAULT_TIME_PER_CALL: Duration = Duration::from_millis(100);

/// How a [`PluginHost`] is set up.
#[derive(Clone, Debug, Default)]
pub struct HostOptions {
    /// Directory where compiled code is cached, so a restart does not compile
    /// again; created if missing. `None`: compile at every start. Only this
    /// process should write there: cached code is mapped and run as is.
    pub cache_dir: Option<PathBuf>,
}

/// The resource limits of one plugin, applied to each of its instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory an instance may grow to, in bytes. Default 32 MiB.
    pub memory_bytes: u64,
    /// Wall-clock time one call may run before it is interrupted (rounded up
    /// to [`EPOCH_TICK`]). Default 100 ms.
    pub time_per_call: Duration,
    /// Fuel (roughly, wasm instructions) one call may use; `None`: unlimited.
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            time_per_call: DEFAULT_TIME_PER_CALL,
            fuel: None,
        }
    }
}

impl Limits {
    /// Refuses limits no plugin could run under.
    fn check(&self, plugin: &str) -> Result<(), PluginError> {
        let bad = |reason: &str| {
            Err(PluginError::BadLimits {
                plugin: plugin.to_string(),
                reason: reason.to_string(),
            })
        };
        if self.memory_bytes < MIN_MEMORY_BYTES {
            return bad("memory_bytes must be at least one wasm page (64 KiB)");
        }
        if self.time_per_call.is_zero() {
            return bad("time_per_call must be more than zero");
        }
        if self.time_per_call > MAX_TIME_PER_CALL {
            return bad("time_per_call must be at most a day");
        }
        if self.fuel == Some(0) {
            return bad("fuel must be more than zero (or unset for no limit)");
        }
        Ok(())
    }

    /// Epoch ticks a call may run: the limit rounded up to whole ticks, plus
    /// one because the call may start just before a tick. At most a day's
    /// worth ([`Limits::check`] refuses more), so the engine's deadline
    /// arithmetic cannot overflow.
    fn deadline_ticks(&self) -> u64 {
        let ticks = self
            .time_per_call
            .as_nanos()
            .div_ceil(EPOCH_TICK.as_nanos());
        u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1
    }
}

/// Which hook a plugin implements, read from the interface it exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// Exports `netlog:plugin/validation` (world `validator`).
    Validator,
    /// Exports `netlog:plugin/compression` (world `codec`).
    Codec,
    /// Exports `netlog:plugin/retention` (world `retention-policy`).
    Retention,
}

impl PluginKind {
    /// The name of the interface that marks this kind, without package or
    /// version.
    pub fn interface(self) -> &'static str {
        match self {
            PluginKind::Validator => "validation",
            PluginKind::Codec => "compression",
            PluginKind::Retention => "retention",
        }
    }

    /// The kind whose interface is `name`, if any.
    fn from_interface(name: &str) -> Option<PluginKind> {
        [
            PluginKind::Validator,
            PluginKind::Codec,
            PluginKind::Retention,
        ]
        .into_iter()
        .find(|k| k.interface() == name)
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Validator => "validator",
            PluginKind::Codec => "codec",
            PluginKind::Retention => "retention",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time limit becomes whole epoch ticks, rounded up, plus one.
    #[test]
    fn deadline_rounds_up_and_adds_a_tick() {
        let at = |time_per_call| {
            Limits {
                time_per_call,
                ..Limits::default()
            }
            .deadline_ticks()
        };
        assert_eq!(at(Duration::from_millis(100)), 101);
        assert_eq!(at(Duration::from_micros(1500)), 3);
        assert_eq!(at(Duration::from_nanos(1)), 2);
    }

    /// Limits no plugin could run under are refused, naming the plugin.
    #[test]
    fn refuses_unusable_limits() {
        let zero_time = Limits {
            time_per_call: Duration::ZERO,
            ..Limits::default()
        };
        let err = zero_time.check("p").unwrap_err();
        assert!(err.to_string().contains("plugin p"), "{err}");
        assert!(Limits::default().check("p").is_ok());
    }

    /// Kinds display as the hook names the config uses.
    #[test]
    fn kinds_display_and_map_from_interfaces() {
        assert_eq!(PluginKind::Retention.to_string(), "retention");
        assert_eq!(
            PluginKind::from_interface("compression"),
            Some(PluginKind::Codec)
        );
        assert_eq!(PluginKind::from_interface("host"), None);
    }
}
