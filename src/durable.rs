//! Durable changes to the file system: replacing a file atomically, and
//! syncing the directory that names a file.
//!
//! A file's bytes survive a power cut only once the file is fsynced; its
//! *name* (a create, a rename) survives only once the directory holding it is
//! fsynced. Every change a restart depends on goes through here:
//!
//! - [`replace`] writes a new version of a file beside it (under a temporary
//!   name unique to this process and call), fsyncs it,
//!   renames it over the old one and fsyncs the directory. A crash at any
//!   point leaves the old file or the new one, never a mix; a failure removes
//!   the temporary file and leaves the old one as it was. The temporary name
//!   is the target's with its extension replaced (`settings.tmp.<pid>.<n>`,
//!   `<uuid>.tmp.<pid>.<n>`): that is what the broker recognises as a
//!   crash's leftover when it deletes a topic.
//! - [`sync_dir`] fsyncs a directory after a file or directory in it was
//!   created, renamed or removed.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::fault::{self, Op};

/// Replaces `path` with `bytes` atomically and durably (see the module docs).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), (PathBuf, io::Error)> {
    replace(path, |f| f.write_all(bytes))
}

/// Replaces `path` atomically and durably with a file that `fill` writes
/// (see the module docs). On error, says which file failed.
pub(crate) fn replace(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), (PathBuf, io::Error)> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    // The fault seam sees the path replaced, not the temporary name.
    let written = fault::check(Op::Open, path)
        .and_then(|()| File::create(&tmp))
        .and_then(|mut f| {
            fault::check(Op::Write, path)?;
            fill(&mut f)?;
            fault::check(Op::Sync, path)?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err((tmp, e));
    }
    if let Err(e) = fault::check(Op::Rename, path).and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err((path.to_path_buf(), e));
    }
    let dir = parent(path);
    sync_dir(dir).map_err(|e| (dir.to_path_buf(), e))
}

/// fsyncs the directory `dir`, making the names in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replace leaves the new content and no temporary file; a failing
    /// fill leaves the old content and no temporary file either.
    #[test]
    fn replace_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let failed = replace(&path, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk trouble"))
        });
        let (at, _) = failed.unwrap_err();
        assert!(at.to_string_lossy().contains("settings.tmp."), "{at:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["settings.json"], "no temporary file is left");
    }
}
