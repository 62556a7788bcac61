//! [`PluginError`]: everything that can go wrong loading or calling a plugin.
//!
//! Every message names the plugin, and the topic when the failure happened
//! while serving one, so a line in the broker's log is enough to tell which
//! operator setting to look at. Causes from wasmtime are kept as the error's
//! `source` (their own chain carries the wasm backtrace).

use std::path::PathBuf;
use std::time::Duration;

use super::PluginKind;

/// A failure from wasmtime, kept as the `source` of a [`PluginError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the plugin layer.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The WebAssembly engine or the host's linker could not be set up.
    #[error("cannot set up the WebAssembly engine: {source}")]
    Engine {
        #[source]
        source: Cause,
    },
    /// The compiled-code cache directory could not be created.
    #[error("cannot create the plugin cache directory {}: {source}", path.display())]
    CacheDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The component file could not be read.
    #[error("plugin {plugin}: cannot read {}: {source}", path.display())]
    Io {
        plugin: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The limits given for the plugin make no sense.
    #[error("plugin {plugin}: bad limits: {reason}")]
    BadLimits { plugin: String, reason: String },
    /// The file is not a WebAssembly component (`found` says what it is).
    #[error("plugin {plugin}: {} is {found}, not a WebAssembly component (build it for wasm32-wasip2)", path.display())]
    NotAComponent {
        plugin: String,
        path: PathBuf,
        found: &'static str,
    },
    /// wasmtime refused to compile the component.
    #[error("plugin {plugin}: cannot compile {}: {source}", path.display())]
    Compile {
        plugin: String,
        path: PathBuf,
        #[source]
        source: Cause,
    },
    /// The component exports none of netlog's hook interfaces.
    #[error(
        "plugin {plugin}: {} exports no netlog hook (netlog:plugin/validation, compression or retention); it exports: {}",
        path.display(), exports.join(", ")
    )]
    UnknownKind {
        plugin: String,
        path: PathBuf,
        exports: Vec<String>,
    },
    /// The component exports more than one of netlog's hook interfaces.
    #[error("plugin {plugin}: {} exports several netlog hooks ({kinds:?}); a plugin is exactly one of them", path.display())]
    SeveralKinds {
        plugin: String,
        path: PathBuf,
        kinds: Vec<PluginKind>,
    },
    /// The component was built against a version of the WIT package this
    /// broker cannot call.
    #[error(
        "plugin {plugin}: built against netlog:plugin@{found}, but this broker supports {supported}"
    )]
    Version {
        plugin: String,
        found: String,
        supported: String,
    },
    /// The component needs an import the host does not give, or lacks an
    /// export its world requires (such as `init`).
    #[error("plugin {plugin}: cannot link: {source}")]
    Link {
        plugin: String,
        #[source]
        source: Cause,
    },
    /// The component imports an interface the broker does not provide (such
    /// as `wasi:http`, which a default componentize-js build imports).
    #[error(
        "plugin {plugin}: imports {interface}, which netlog does not provide to plugins; {hint}"
    )]
    MissingImport {
        plugin: String,
        interface: String,
        hint: &'static str,
    },
    /// The plugin was assigned to a hook it does not implement.
    #[error("plugin {plugin} is a {found} plugin, not a {expected}")]
    WrongKind {
        plugin: String,
        expected: PluginKind,
        found: PluginKind,
    },
    /// `init` refused the configuration.
    #[error("plugin {plugin} refused its config for topic {topic}: {reason}")]
    Init {
        plugin: String,
        topic: String,
        reason: String,
    },
    /// Instantiating the component failed for a reason other than a trap.
    #[error("plugin {plugin} (topic {topic}): cannot instantiate: {source}")]
    Instantiate {
        plugin: String,
        topic: String,
        #[source]
        source: Cause,
    },
    /// The plugin trapped (a panic, `unreachable`, an out-of-bounds access...).
    #[error("plugin {plugin} (topic {topic}) trapped: {detail}")]
    Trap {
        plugin: String,
        topic: String,
        detail: String,
        #[source]
        source: Cause,
    },
    /// A call ran past the plugin's time limit and was interrupted.
    #[error("plugin {plugin} (topic {topic}) ran past its time limit of {limit:?} and was stopped")]
    Timeout {
        plugin: String,
        topic: String,
        limit: Duration,
        #[source]
        source: Cause,
    },
    /// The plugin asked for more memory than its limit and then trapped.
    #[error(
        "plugin {plugin} (topic {topic}) hit its memory limit of {limit} bytes and was stopped"
    )]
    MemoryLimit {
        plugin: String,
        topic: String,
        limit: u64,
        #[source]
        source: Cause,
    },
    /// A call used up its fuel and was stopped.
    #[error("plugin {plugin} (topic {topic}) used up its fuel of {fuel} and was stopped")]
    FuelExhausted {
        plugin: String,
        topic: String,
        fuel: u64,
        #[source]
        source: Cause,
    },
    /// The plugin answered something the WIT contract forbids (such as a
    /// verdict count that does not match the batch).
    #[error("plugin {plugin} (topic {topic}) gave a bad answer: {reason}")]
    BadAnswer {
        plugin: String,
        topic: String,
        reason: String,
    },
}

impl PluginError {
    /// Whether the failure ended the instance (trap, timeout, memory or fuel),
    /// so that a fresh instance serves the next call.
    pub fn is_trap(&self) -> bool {
        matches!(
            self,
            PluginError::Trap { .. }
                | PluginError::Timeout { .. }
                | PluginError::MemoryLimit { .. }
                | PluginError::FuelExhausted { .. }
        )
    }
}
