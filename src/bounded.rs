//! Reading a file the operator names, with a bound: the one copy.
//!
//! The config file, plugin components and TLS certificates are read whole,
//! from paths an operator (or a mistake) chose. [`read_regular_file`] makes
//! that safe: the path's metadata is checked before opening (opening a FIFO
//! for reading blocks until a writer comes), the open does not block in case
//! the path was swapped in between, the opened file is checked again, and
//! the read stops one byte past the limit in case the file grows. So
//! `/dev/zero`, a FIFO, a directory or a file that grows cannot hang or
//! exhaust the caller; each is refused with what it is.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a file was not read.
#[derive(Debug)]
pub(crate) enum Unfit {
    /// The metadata, the open or the read failed.
    Io(std::io::Error),
    /// Not a regular file: what it is instead ("a FIFO", "a directory", ...).
    NotAFile(&'static str),
    /// More than the limit: its size (or what was read of it, when it grew).
    TooLarge(u64),
}

/// What kind of file `meta` describes, as it reads in an error.
pub(crate) fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    match () {
        _ if t.is_file() => "a regular file",
        _ if t.is_dir() => "a directory",
        _ if t.is_fifo() => "a FIFO",
        _ if t.is_socket() => "a socket",
        _ if t.is_char_device() => "a character device",
        _ if t.is_block_device() => "a block device",
        _ => "not a file",
    }
}

/// The size of `meta`'s file, if it is a regular file of at most `limit`
/// bytes.
pub(crate) fn check(meta: &std::fs::Metadata, limit: u64) -> Result<u64, Unfit> {
    if !meta.is_file() {
        return Err(Unfit::NotAFile(file_kind(meta)));
    }
    if meta.len() > limit {
        return Err(Unfit::TooLarge(meta.len()));
    }
    Ok(meta.len())
}

/// Reads the regular file at `path`, of at most `limit` bytes (see the
/// module docs).
pub(crate) fn read_regular_file(path: &Path, limit: u64) -> Result<Vec<u8>, Unfit> {
    check(&std::fs::metadata(path).map_err(Unfit::Io)?, limit)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(Unfit::Io)?;
    let size = check(&file.metadata().map_err(Unfit::Io)?, limit)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(Unfit::Io)?;
    if bytes.len() as u64 > limit {
        return Err(Unfit::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file within the bound reads whole; a larger one, a directory and
    /// a character device that never ends are refused with what they are.
    #[test]
    fn reads_only_small_regular_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").expect("write");
        assert_eq!(read_regular_file(&path, 5).expect("fits"), b"12345");
        assert!(matches!(
            read_regular_file(&path, 4),
            Err(Unfit::TooLarge(5))
        ));
        assert!(matches!(
            read_regular_file(dir.path(), 1 << 20),
            Err(Unfit::NotAFile("a directory"))
        ));
        assert!(matches!(
            read_regular_file(Path::new("/dev/zero"), 1 << 20),
            Err(Unfit::NotAFile("a character device"))
        ));
        assert!(matches!(
            read_regular_file(&dir.path().join("none"), 1),
            Err(Unfit::Io(_))
        ));
    }
}
