//! The on-disk cache of compiled plugins, so a restart maps machine code
//! instead of compiling again.
//!
//! One file per compiled component, `<key>.cwasm`, where the key is the
//! SHA-256 of, in order: a format tag ([`KEY_TAG`]), wasmtime's
//! `precompile_compatibility_hash` of the engine (which covers the wasmtime
//! version, the target and every setting that changes generated code), and
//! the component's bytes. A changed `.wasm`, another wasmtime or another
//! engine configuration therefore looks for another file; stale code is never
//! found, only left behind.
//!
//! A file is written under a temporary name, fsynced, renamed into place and
//! its directory fsynced (`durable::write_atomic`, the broker's one atomic
//! write), so a crash never leaves a truncated entry under a real key. Anything going wrong
//! with the cache (unreadable, unwritable, refused by wasmtime) is logged and
//! the component is compiled instead: the cache only ever saves time.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Versions the key derivation and file layout of this cache.
const KEY_TAG: &[u8] = b"netlog plugin code cache v1\0";
/// Extension of a cache entry.
const ENTRY_EXTENSION: &str = "cwasm";

/// A directory of compiled components.
#[derive(Debug)]
pub(crate) struct CodeCache {
    dir: PathBuf,
}

/// Where a compiled component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Compiled now (and, with a cache, stored for next time).
    Compiled,
    /// Mapped from the cache.
    Cached,
}

impl CodeCache {
    /// Opens (creating it if needed) the cache in `dir`.
    pub(crate) fn open(dir: &Path) -> std::io::Result<CodeCache> {
        std::fs::create_dir_all(dir)?;
        Ok(CodeCache {
            dir: dir.to_path_buf(),
        })
    }

    /// The file that holds (or would hold) the compiled form of `wasm`.
    pub(crate) fn entry_path(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        self.dir
            .join(format!("{}.{ENTRY_EXTENSION}", key(engine, wasm)))
    }

    /// The component for `wasm`: mapped from the cache when there, otherwise
    /// compiled and stored.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, Origin)> {
        let path = self.entry_path(engine, wasm);
        if path.exists() {
            // SAFETY: `deserialize_file` maps the file and runs its code, so it
            // must hold what wasmtime serialized and must not change while
            // mapped. Entries are only written by `store` below, from
            // `Component::serialize`, under a name derived from the input bytes
            // and the engine's compatibility hash, and renamed into place only
            // once complete; wasmtime checks the header (version and engine
            // settings) itself. The operator's part is to keep the directory
            // private to the broker (documented on `HostOptions::cache_dir`).
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, Origin::Cached)),
                Err(e) => tracing::warn!(path = %path.display(), error = %e,
                    "cached plugin code refused; compiling again"),
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e,
                "cannot write compiled plugin code to the cache");
        }
        Ok((component, Origin::Compiled))
    }

    fn store(&self, path: &Path, component: &Component) -> wasmtime::Result<()> {
        let code = component.serialize()?;
        crate::durable::write_atomic(path, &code)
            .map_err(|(at, e)| wasmtime::Error::new(e).context(format!("writing {}", at.display())))
    }
}

/// The cache key of `wasm` compiled by `engine`, as lowercase hex.
fn key(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = ShaHasher(Sha256::new());
    hasher.0.update(KEY_TAG);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.update((wasm.len() as u64).to_le_bytes());
    hasher.0.update(wasm);
    crate::encode::hex(&hasher.0.finalize())
}

/// Feeds what a `Hash` impl writes into SHA-256, so wasmtime's compatibility
/// hash (only offered as `impl Hash`) goes into the key unabridged.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Never asked for: the key is the SHA-256 digest.
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys differ when the component's bytes or the engine settings differ.
    #[test]
    fn key_covers_bytes_and_engine() {
        let engine = Engine::default();
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        let fuel_engine = Engine::new(&config).unwrap();
        let k = key(&engine, b"abc");
        assert_eq!(k.len(), 64);
        assert_eq!(k, key(&engine, b"abc"));
        assert_ne!(k, key(&engine, b"abd"));
        assert_ne!(k, key(&fuel_engine, b"abc"));
    }
}
