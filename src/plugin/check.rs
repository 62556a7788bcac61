//! `netlog plugin check FILE [--config JSON]`: loads one component the way
//! the broker would and says what it is and whether `init` takes the config.
//!
//! Everything that would stop the broker from loading the file (not a
//! component, unknown hook, incompatible WIT version, missing import) is an
//! `Err`. A component that loads is reported, with the outcome of `init`
//! inside the report, so an author sees both at once.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{HostOptions, Limits, PluginError, PluginHost, PluginKind, WIT_VERSIONS};

/// The topic name a checked plugin is bound to.
const CHECK_TOPIC: &str = "(check)";

/// What `check_component` found out about a component.
#[derive(Debug)]
pub struct CheckReport {
    /// The file checked.
    pub path: PathBuf,
    /// The hook it implements.
    pub kind: PluginKind,
    /// The version of `netlog:plugin` it was built against.
    pub wit_version: String,
    /// Whether it imports `netlog:plugin/host`.
    pub imports_host: bool,
    /// The config `init` was given (`{}` when none was).
    pub config: String,
    /// What `init` made of it.
    pub init: Result<(), PluginError>,
}

impl CheckReport {
    /// Whether the component loads and accepts the config.
    pub fn is_ok(&self) -> bool {
        self.init.is_ok()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "component: {}", self.path.display())?;
        writeln!(
            f,
            "hook:      {} (exports netlog:plugin/{}@{})",
            self.kind,
            self.kind.interface(),
            self.wit_version
        )?;
        writeln!(
            f,
            "wit:       netlog:plugin@{}, compatible with this broker ({})",
            self.wit_version,
            WIT_VERSIONS.join(" and ")
        )?;
        let host = if self.imports_host {
            "imports netlog:plugin/host (log, now-ms)"
        } else {
            "does not import netlog:plugin/host"
        };
        writeln!(f, "host:      {host}")?;
        writeln!(f, "config:    {}", self.config)?;
        match &self.init {
            Ok(()) => write!(f, "init:      accepted"),
            Err(PluginError::Init { reason, .. }) => write!(f, "init:      refused: {reason}"),
            Err(e) => write!(f, "init:      failed: {e}"),
        }
    }
}

/// Loads the component at `path` with default limits and calls `init` with
/// `config_json` (or `{}`). Load failures are errors; `init`'s outcome is in
/// the report.
pub fn check_component(path: &Path, config_json: Option<&str>) -> Result<CheckReport, PluginError> {
    let host = PluginHost::new(HostOptions { cache_dir: None })?;
    let name = path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let plugin = host.load(&name, path, Limits::default())?;
    let config = config_json.unwrap_or("{}");
    let init = match plugin.kind() {
        PluginKind::Validator => plugin.validator(CHECK_TOPIC, config).map(drop),
        PluginKind::Codec => plugin.codec(CHECK_TOPIC, config).map(drop),
        PluginKind::Retention => plugin.retention(CHECK_TOPIC, config).map(drop),
    };
    Ok(CheckReport {
        path: path.to_path_buf(),
        kind: plugin.kind(),
        wit_version: plugin.wit_version().to_string(),
        imports_host: plugin.imports_host(),
        config: config.to_string(),
        init,
    })
}
