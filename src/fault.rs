//! The fault seam: the points of the write path where tests make the disk
//! fail (`ENOSPC`, `EIO`, `EPERM`, ...) or the writer panic, on any machine
//! and without root.
//!
//! **Off, it is nothing.** Without the `fault-injection` cargo feature (off
//! in every build but the package's own tests, which turn it on through a
//! dev-dependency on the package itself) [`check`] is an inlined `Ok(())`
//! and [`panic_point`] an empty function: no branch, no load, no cost on the
//! hot path.
//!
//! **On**, every seam reads the rules file named by the `NETLOG_FAULTS`
//! environment variable (unset: no faults), again at every call, so a test
//! injects a fault and lifts it by rewriting that file while the broker runs.
//! One rule per line; `#` starts a comment:
//!
//! ```text
//! <topic | *> <file> <op> <error>
//! orders data write ENOSPC     # every write to orders' data files: no space
//! * index sync EIO             # every index fsync: an I/O error
//! orders drain panic -         # the writer panics while writing a group
//! ```
//!
//! - `file`: `data` (`*.data`), `index` (`*.index`), `settings`
//!   (`settings.json`) or `scanner` (`readers/*.scanner`), told apart by the
//!   path the operation is on (for an atomic replace, the path replaced);
//!   `drain` for [`panic_point`].
//! - `op`: `open` (create or open for writing), `write`, `sync` (fsync),
//!   `rename`; `panic` for `drain`.
//! - `error`: `ENOSPC`, `EDQUOT`, `EIO`, `EPERM`, `EACCES` or `EROFS`.
//! - `topic` matches a path with a component of that name (`*`: any).
//!
//! Lines that do not parse are ignored. The seam sits at the lowest level,
//! where the real system call is made, so what a fault exercises is exactly
//! the handling of a real failure there.

use std::io;
use std::path::Path;

/// An operation on a file of the write path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Creating or opening a file for writing.
    Open,
    /// A write.
    Write,
    /// An fsync (data or all).
    Sync,
    /// A rename (of an atomic replace).
    Rename,
}

/// Fails `op` on `path` if a rule says so (see the module docs).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn check(_op: Op, _path: &Path) -> io::Result<()> {
    Ok(())
}

/// Panics if a `drain panic` rule matches the topic directory `dir`.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn panic_point(_dir: &Path) {}

/// Fails `op` on `path` if a rule says so (see the module docs).
#[cfg(feature = "fault-injection")]
pub(crate) fn check(op: Op, path: &Path) -> io::Result<()> {
    // Without rules (every run but the fault tests), nothing to look at:
    // examples built beside the tests carry the seam too, and benchmarks
    // run them.
    if rules_file().is_none() {
        return Ok(());
    }
    let Some(file) = file_kind(path) else {
        return Ok(());
    };
    let op = match op {
        Op::Open => "open",
        Op::Write => "write",
        Op::Sync => "sync",
        Op::Rename => "rename",
    };
    match matching(path, file, op) {
        Some(errno) => Err(io::Error::from_raw_os_error(errno)),
        None => Ok(()),
    }
}

/// Panics if a `drain panic` rule matches the topic directory `dir`.
#[cfg(feature = "fault-injection")]
pub(crate) fn panic_point(dir: &Path) {
    if matching(dir, "drain", "panic").is_some() {
        panic!("injected fault: a panic in the drain");
    }
}

/// Which kind of file `path` is, by its name.
#[cfg(feature = "fault-injection")]
fn file_kind(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    if name == "settings.json" {
        return Some("settings");
    }
    match path.extension()?.to_str()? {
        "data" => Some("data"),
        "index" => Some("index"),
        "scanner" => Some("scanner"),
        _ => None,
    }
}

/// The errno of the first rule matching `path`, `file` and `op`.
/// The rules file `NETLOG_FAULTS` names, read from the environment once.
#[cfg(feature = "fault-injection")]
fn rules_file() -> Option<&'static Path> {
    static RULES: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    RULES
        .get_or_init(|| std::env::var_os("NETLOG_FAULTS").map(Into::into))
        .as_deref()
}

#[cfg(feature = "fault-injection")]
fn matching(path: &Path, file: &str, op: &str) -> Option<i32> {
    let text = std::fs::read_to_string(rules_file()?).ok()?;
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let words: Vec<&str> = line.split_whitespace().collect();
        let [topic, f, o, error] = words[..] else {
            return None;
        };
        let topic_matches = topic == "*" || path.iter().any(|c| c == topic);
        if !topic_matches || f != file || o != op {
            return None;
        }
        match error {
            "ENOSPC" => Some(libc::ENOSPC),
            "EDQUOT" => Some(libc::EDQUOT),
            "EIO" => Some(libc::EIO),
            "EPERM" => Some(libc::EPERM),
            "EACCES" => Some(libc::EACCES),
            "EROFS" => Some(libc::EROFS),
            _ if op == "panic" => Some(0),
            _ => None,
        }
    })
}
