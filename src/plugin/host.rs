//! [`PluginHost`] (the engine, the linker, the epoch ticker and the code
//! cache) and [`Plugin`] (one loaded component, pre-linked, not yet bound to
//! a topic).
//!
//! Loading reads the file, checks its preamble (so a core module or a random
//! file gets a plain answer instead of a parser error), compiles it or maps it
//! from the cache, finds its hook among its exports, checks the WIT version of
//! that export, and links it. Everything a component can get wrong is found
//! here, at start-up, rather than at its first call.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{ByVersion, v0_1, v0_2};
use super::cache::{CodeCache, Origin};
use super::sandbox::{self, StoreData};
use super::{EPOCH_TICK, HostOptions, Limits, PluginError, PluginKind, WIT_VERSIONS};

/// The WIT package every hook interface belongs to.
const PACKAGE: &str = "netlog:plugin";
/// Largest component file read: 64 MiB (the config refuses larger files
/// too, by their size, before anything reads them).
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;
/// The first bytes of every WebAssembly binary.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// The layer field of a core module's preamble (a component's is 1).
const LAYER_CORE_MODULE: u16 = 0;
/// The layer field of a component's preamble.
const LAYER_COMPONENT: u16 = 1;

/// Loads plugins. Holds the one engine and linker of the process and the
/// thread that advances the epoch.
pub struct PluginHost {
    shared: Arc<Runtime>,
}

/// What the host and every plugin loaded from it share. The epoch ticker
/// stops when the last of them is dropped.
pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    linker: Linker<StoreData>,
    cache: Option<CodeCache>,
    _ticker: Ticker,
}

/// A loaded component: compiled, kind and version checked, pre-linked.
/// Bind it to a topic with [`Plugin::validator`], [`Plugin::codec`] or
/// [`Plugin::retention`].
pub struct Plugin {
    name: String,
    path: PathBuf,
    kind: PluginKind,
    wit_version: String,
    version: WitVersion,
    imports_host: bool,
    from_cache: bool,
    limits: Limits,
    pub(crate) pre: WorldPre,
    pub(crate) shared: Arc<Runtime>,
}

/// The pre-linked component, typed by its world and WIT version.
pub(crate) enum WorldPre {
    Validator(
        ByVersion<
            v0_1::validator::ValidatorPre<StoreData>,
            v0_2::validator::ValidatorPre<StoreData>,
        >,
    ),
    Codec(ByVersion<v0_1::codec::CodecPre<StoreData>, v0_2::codec::CodecPre<StoreData>>),
    Retention(
        ByVersion<
            v0_1::retention::RetentionPolicyPre<StoreData>,
            v0_2::retention::RetentionPolicyPre<StoreData>,
        >,
    ),
}

/// The WIT versions this host implements (see [`WIT_VERSIONS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WitVersion {
    /// `netlog:plugin@0.1.x`.
    V0_1,
    /// `netlog:plugin@0.2.x`.
    V0_2,
}

impl WitVersion {
    /// The version line `version` (e.g. `0.1.7`) belongs to, if this host
    /// implements it: `0.1.x` or `0.2.x`, build metadata ignored,
    /// pre-releases refused.
    pub(crate) fn of(version: &str) -> Option<WitVersion> {
        let v = version.split('+').next()?;
        let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
        let (major, minor, _patch) = (it.next()??, it.next()??, it.next()??);
        if it.next().is_some() {
            return None;
        }
        match (major, minor) {
            (0, 1) => Some(WitVersion::V0_1),
            (0, 2) => Some(WitVersion::V0_2),
            _ => None,
        }
    }
}

impl PluginHost {
    /// Builds the engine (epoch interruption and fuel on), the linker and
    /// the epoch ticker, and opens the code cache if there is one.
    pub fn new(opts: HostOptions) -> Result<PluginHost, PluginError> {
        let engine_error = |e: wasmtime::Error| PluginError::Engine {
            source: e.into_boxed_dyn_error(),
        };
        let mut config = Config::new();
        config.epoch_interruption(true).consume_fuel(true);
        let engine = Engine::new(&config).map_err(engine_error)?;
        let linker = sandbox::linker(&engine).map_err(engine_error)?;
        let cache = match &opts.cache_dir {
            Some(dir) => Some(
                CodeCache::open(dir).map_err(|source| PluginError::CacheDir {
                    path: dir.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        let ticker = Ticker::start(engine.clone()).map_err(|e| PluginError::Engine {
            source: Box::new(e),
        })?;
        Ok(PluginHost {
            shared: Arc::new(Runtime {
                engine,
                linker,
                cache,
                _ticker: ticker,
            }),
        })
    }

    /// Compiles (or maps from the cache) the component at `path`, finds its
    /// hook from its exports, checks its WIT version and pre-links it. `name`
    /// is the operator's name for it, used in every log line and error.
    pub fn load(
        &self,
        name: &str,
        path: &Path,
        limits: Limits,
    ) -> Result<Arc<Plugin>, PluginError> {
        let started = Instant::now();
        limits.check(name)?;
        let wasm = read_component(name, path)?;
        check_preamble(&wasm).map_err(|found| PluginError::NotAComponent {
            plugin: name.to_string(),
            path: path.to_path_buf(),
            found,
        })?;
        let (component, origin) = self.compile(&wasm).map_err(|e| PluginError::Compile {
            plugin: name.to_string(),
            path: path.to_path_buf(),
            source: e.into_boxed_dyn_error(),
        })?;
        check_imports(&self.shared.engine, &component, name)?;
        let (kind, wit_version) = detect_kind(&self.shared.engine, &component, name, path)?;
        let version = WitVersion::of(&wit_version).expect("detect_kind checked the version");
        let pre = self
            .link(&component, kind, version)
            .map_err(|e| PluginError::Link {
                plugin: name.to_string(),
                source: e.into_boxed_dyn_error(),
            })?;
        let imports_host = component
            .component_type()
            .imports(&self.shared.engine)
            .any(|(import, _)| import.starts_with(&format!("{PACKAGE}/host@")));
        let from_cache = origin == Origin::Cached;
        tracing::info!(plugin = name, path = %path.display(), %kind, wit_version, from_cache,
            ms = started.elapsed().as_millis() as u64, "loaded plugin");
        Ok(Arc::new(Plugin {
            name: name.to_string(),
            path: path.to_path_buf(),
            kind,
            wit_version,
            version,
            imports_host,
            from_cache,
            limits,
            pre,
            shared: self.shared.clone(),
        }))
    }

    fn compile(&self, wasm: &[u8]) -> wasmtime::Result<(Component, Origin)> {
        match &self.shared.cache {
            Some(cache) => cache.load_or_compile(&self.shared.engine, wasm),
            None => Ok((Component::new(&self.shared.engine, wasm)?, Origin::Compiled)),
        }
    }

    fn link(
        &self,
        component: &Component,
        kind: PluginKind,
        version: WitVersion,
    ) -> wasmtime::Result<WorldPre> {
        use WitVersion::{V0_1, V0_2};
        let pre = self.shared.linker.instantiate_pre(component)?;
        Ok(match (kind, version) {
            (PluginKind::Validator, V0_1) => {
                WorldPre::Validator(ByVersion::V0_1(v0_1::validator::ValidatorPre::new(pre)?))
            }
            (PluginKind::Validator, V0_2) => {
                WorldPre::Validator(ByVersion::V0_2(v0_2::validator::ValidatorPre::new(pre)?))
            }
            (PluginKind::Codec, V0_1) => {
                WorldPre::Codec(ByVersion::V0_1(v0_1::codec::CodecPre::new(pre)?))
            }
            (PluginKind::Codec, V0_2) => {
                WorldPre::Codec(ByVersion::V0_2(v0_2::codec::CodecPre::new(pre)?))
            }
            (PluginKind::Retention, V0_1) => WorldPre::Retention(ByVersion::V0_1(
                v0_1::retention::RetentionPolicyPre::new(pre)?,
            )),
            (PluginKind::Retention, V0_2) => WorldPre::Retention(ByVersion::V0_2(
                v0_2::retention::RetentionPolicyPre::new(pre)?,
            )),
        })
    }
}

impl fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginHost")
            .field("cache", &self.shared.cache)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The operator's name for the plugin.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hook it implements.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// The version of `netlog:plugin` it was built against (e.g. `0.1.0`).
    pub fn wit_version(&self) -> &str {
        &self.wit_version
    }

    /// Whether it was built against a version whose validator sees a
    /// message's key, headers and timestamp (`0.2.x`), rather than its value
    /// alone (`0.1.x`).
    pub fn sees_message_metadata(&self) -> bool {
        self.version == WitVersion::V0_2
    }

    /// Its resource limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it imports `netlog:plugin/host` (logging, clock).
    pub fn imports_host(&self) -> bool {
        self.imports_host
    }

    /// Whether its code was mapped from the cache rather than compiled.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("wit_version", &self.wit_version)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The packages whose interfaces the linker provides (see `sandbox.rs`):
/// WASI 0.2 without HTTP, and netlog's host interface.
const PROVIDED_PACKAGES: &[&str] = &[
    "wasi:io",
    "wasi:clocks",
    "wasi:random",
    "wasi:cli",
    "wasi:filesystem",
    "wasi:sockets",
    PACKAGE,
];

/// What to tell the author of a component that imports `interface`, which
/// no plugin gets.
fn missing_import_hint(interface: &str) -> &'static str {
    if interface.starts_with("wasi:http/") {
        "plugins get no network: build without it (componentize-js: \
         `--disable http fetch-event`, i.e. `-d http fetch-event`; componentize-py and \
         Rust: do not use wasi:http or a library that does)"
    } else {
        "build the component against netlog's WIT worlds only (validator, codec, \
         retention-policy), which import netlog:plugin/host and WASI 0.2 without HTTP"
    }
}

/// Refuses a component that imports from a package the broker does not
/// provide, naming the first such import and how to build without it, so the
/// author gets that rather than the linker's generic "cannot link".
fn check_imports(engine: &Engine, component: &Component, plugin: &str) -> Result<(), PluginError> {
    let ty = component.component_type();
    let missing = ty.imports(engine).map(|(name, _)| name).find(|name| {
        let package = name.split('/').next().unwrap_or(name);
        let package = package.split('@').next().unwrap_or(package);
        !PROVIDED_PACKAGES.contains(&package)
    });
    match missing {
        Some(interface) => Err(PluginError::MissingImport {
            plugin: plugin.to_string(),
            interface: interface.to_string(),
            hint: missing_import_hint(interface),
        }),
        None => Ok(()),
    }
}

/// Checks the 8-byte preamble: magic, version, layer. On failure, says what
/// the bytes are instead.
fn check_preamble(wasm: &[u8]) -> Result<(), &'static str> {
    let Some((magic, rest)) = wasm.split_first_chunk::<4>() else {
        return Err("not WebAssembly (too short)");
    };
    if magic != WASM_MAGIC || rest.len() < 4 {
        return Err("not WebAssembly");
    }
    match u16::from_le_bytes([rest[2], rest[3]]) {
        LAYER_COMPONENT => Ok(()),
        LAYER_CORE_MODULE => Err("a core WebAssembly module"),
        _ => Err("WebAssembly of an unknown layer"),
    }
}

/// Finds the hook `component` implements from its exports, and the WIT
/// version of that export.
fn detect_kind(
    engine: &Engine,
    component: &Component,
    plugin: &str,
    path: &Path,
) -> Result<(PluginKind, String), PluginError> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let mut found: Vec<(PluginKind, &str)> = exports
        .iter()
        .filter_map(|name| {
            let (interface, version) = name
                .strip_prefix(PACKAGE)?
                .strip_prefix('/')?
                .split_once('@')?;
            Some((PluginKind::from_interface(interface)?, version))
        })
        .collect();
    found.dedup_by_key(|(kind, _)| *kind);
    match found[..] {
        [] => Err(PluginError::UnknownKind {
            plugin: plugin.to_string(),
            path: path.to_path_buf(),
            exports: exports.iter().map(|e| e.to_string()).collect(),
        }),
        [(kind, version)] if WitVersion::of(version).is_some() => Ok((kind, version.to_string())),
        [(_, version)] => Err(PluginError::Version {
            plugin: plugin.to_string(),
            found: version.to_string(),
            supported: WIT_VERSIONS
                .iter()
                .map(|v| format!("netlog:plugin@{v}"))
                .collect::<Vec<_>>()
                .join(" and "),
        }),
        _ => Err(PluginError::SeveralKinds {
            plugin: plugin.to_string(),
            path: path.to_path_buf(),
            kinds: found.iter().map(|(kind, _)| *kind).collect(),
        }),
    }
}

/// The thread that advances the engine's epoch every [`EPOCH_TICK`], until
/// dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("netlog-plugin-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads the component file at `path` for plugin `name`: a regular file of
/// at most [`MAX_COMPONENT_BYTES`]. The kind is checked before opening (a
/// FIFO would block the open), the open does not block, and the read stops
/// one byte past the limit, so `/dev/zero`, a FIFO or a file that grows
/// cannot hang or exhaust the caller.
pub fn read_component(name: &str, path: &Path) -> Result<Vec<u8>, PluginError> {
    use crate::bounded::Unfit;
    let io = |source| PluginError::Io {
        plugin: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let unfit = |what: String| io(std::io::Error::new(std::io::ErrorKind::InvalidInput, what));
    crate::bounded::read_regular_file(path, MAX_COMPONENT_BYTES).map_err(|e| match e {
        Unfit::Io(source) => io(source),
        Unfit::NotAFile(kind) => unfit(format!("not a regular file ({kind})")),
        Unfit::TooLarge(size) => unfit(format!(
            "{size} bytes, more than the {MAX_COMPONENT_BYTES} a component may have"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any patch release of 0.1 and 0.2 is implemented; other versions,
    /// pre-releases and malformed ones are not.
    #[test]
    fn implemented_versions() {
        assert_eq!(WitVersion::of("0.1.0"), Some(WitVersion::V0_1));
        assert_eq!(WitVersion::of("0.1.7"), Some(WitVersion::V0_1));
        assert_eq!(WitVersion::of("0.2.0"), Some(WitVersion::V0_2));
        assert_eq!(WitVersion::of("0.2.3+build.5"), Some(WitVersion::V0_2));
        for refused in [
            "0.3.0",
            "1.1.0",
            "1.2.0",
            "0.0.9",
            "0.1.0-rc1",
            "0.2",
            "0.2.0.1",
        ] {
            assert_eq!(WitVersion::of(refused), None, "{refused}");
        }
    }

    /// The preamble tells components from core modules and non-wasm files.
    #[test]
    fn preamble_kinds() {
        assert_eq!(
            check_preamble(b"\0asm\x01\0\0\0"),
            Err("a core WebAssembly module")
        );
        assert_eq!(check_preamble(b"\0asm\x0d\0\x01\0"), Ok(()));
        assert_eq!(check_preamble(b"hello world"), Err("not WebAssembly"));
        assert_eq!(check_preamble(b"\0a"), Err("not WebAssembly (too short)"));
    }

    /// A component importing `wasi:http` is refused with the interface named
    /// and the componentize-js flag that leaves it out.
    #[test]
    fn wasi_http_import_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("http.wasm");
        std::fs::write(&path, component_importing("wasi:http/types@0.2.3")).unwrap();
        let host = PluginHost::new(HostOptions::default()).unwrap();
        let err = host.load("web", &path, Limits::default()).unwrap_err();
        assert!(matches!(err, PluginError::MissingImport { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("plugin web: imports wasi:http/types@0.2.3"),
            "{text}"
        );
        assert!(text.contains("--disable http"), "{text}");
    }

    /// An import from an unknown package gets the generic hint; WASI 0.2
    /// packages and netlog's host are not refused by the import check.
    #[test]
    fn unknown_packages_are_refused_known_ones_pass() {
        let host = PluginHost::new(HostOptions::default()).unwrap();
        let engine = &host.shared.engine;
        let check = |name: &str| {
            let component = Component::new(engine, component_importing(name)).unwrap();
            check_imports(engine, &component, "p")
        };
        let err = check("acme:kv/store@1.0.0").unwrap_err().to_string();
        assert!(err.contains("imports acme:kv/store@1.0.0"), "{err}");
        assert!(err.contains("WASI 0.2 without HTTP"), "{err}");
        for provided in ["wasi:io/streams@0.2.3", "netlog:plugin/host@0.1.0"] {
            assert!(check(provided).is_ok(), "{provided}");
        }
    }

    /// The smallest component that imports an instance `name` (of an empty
    /// instance type) and does nothing else, encoded by hand.
    pub(crate) fn component_importing(name: &str) -> Vec<u8> {
        const TYPE_SECTION: u8 = 7;
        const IMPORT_SECTION: u8 = 10;
        let mut wasm = b"\0asm\x0d\0\x01\0".to_vec();
        // One type: an instance type with no declarations.
        wasm.extend([TYPE_SECTION, 3, 1, 0x42, 0]);
        let mut import = vec![1, 0, u8::try_from(name.len()).unwrap()];
        import.extend(name.as_bytes());
        // Extern description: an instance of type 0.
        import.extend([0x05, 0]);
        wasm.extend([IMPORT_SECTION, u8::try_from(import.len()).unwrap()]);
        wasm.extend(import);
        wasm
    }
}
