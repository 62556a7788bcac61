//! The instances behind one bound hook (one plugin serving one topic): a
//! small pool of idle instances, the limits armed before every call, the
//! classification of failures, and the counters.
//!
//! A call takes an idle instance out of the pool (the pool's lock is held
//! only for that), or makes a new one and calls `init` on it; sets the epoch
//! deadline, the fuel and clears the limiter's memory flag; calls; forwards
//! the guest's stdout and stderr to the log; and returns the instance to the
//! pool, unless the call failed inside wasm, in which case it is dropped.
//! The pool keeps at most [`MAX_IDLE_INSTANCES`]; more are made when more
//! threads call at once, and the surplus is dropped when they return.
//!
//! Plugins therefore must not rely on state kept between calls: any call may
//! run on a fresh instance that has only seen `init`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap};

use super::guest_log::GuestLog;
use super::host::{Plugin, WorldPre};
use super::sandbox::StoreData;
use super::{PluginError, PluginKind};
use crate::histogram::{Histogram, HistogramSnapshot};
use crate::lock::Recover;

/// Idle instances kept per bound hook.
pub(crate) const MAX_IDLE_INSTANCES: usize = 4;

/// A world seen from the runner: how to make its instances and call `init`.
pub(crate) trait World: 'static {
    /// The kind of plugin this world is.
    const KIND: PluginKind;
    /// The generated bindings of an instance.
    type Bindings: Send + Sync + 'static;
    /// Makes an instance in `store`.
    fn instantiate(
        pre: &WorldPre,
        store: &mut Store<StoreData>,
    ) -> wasmtime::Result<Self::Bindings>;
    /// Calls the instance's `init`.
    fn init(
        bindings: &Self::Bindings,
        store: &mut Store<StoreData>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>>;
}

/// Counters of one bound hook (one plugin on one topic), for the logs and for
/// metrics. Every field only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Calls made (validate, compress, decompress or evaluate).
    pub calls: u64,
    /// Calls that failed, for any reason: traps and timeouts included, as
    /// well as errors the plugin returned and answers that broke the contract.
    pub errors: u64,
    /// Calls ended by a trap, including a memory-limit or fuel stop (not
    /// timeouts, which are counted apart).
    pub traps: u64,
    /// Calls stopped by the time limit.
    pub timeouts: u64,
    /// Of the traps, those caused by the memory limit.
    pub memory_limits: u64,
    /// Of the traps, those caused by running out of fuel.
    pub fuel_exhausted: u64,
    /// Messages a validator rejected.
    pub rejected: u64,
    /// Instances made (the first one, one per concurrent caller, and one after
    /// every trap).
    pub instances: u64,
    /// Wall-clock time spent in calls, instance creation included, in ns.
    pub busy_ns: u64,
    /// Fuel used by calls, when the plugin has a fuel limit.
    pub fuel_used: u64,
    /// Largest linear memory any instance grew to, in bytes.
    pub peak_memory_bytes: u64,
    /// Of the errors, answers that broke the contract.
    pub bad_answers: u64,
    /// Time per call, instance creation included.
    pub call_seconds: HistogramSnapshot,
}

impl CallStats {
    /// Failed calls by kind, each counted once: a trap that was a memory
    /// or fuel stop counts as `memory`, and `error` is what no other kind
    /// explains (the counters overlap: `traps` includes memory stops,
    /// `errors` includes everything).
    pub fn failures_by_kind(&self) -> [(&'static str, u64); 5] {
        let trap = self.traps.saturating_sub(self.memory_limits);
        let error = self
            .errors
            .saturating_sub(self.traps + self.timeouts + self.bad_answers);
        [
            ("trap", trap),
            ("timeout", self.timeouts),
            ("memory", self.memory_limits),
            ("error", error),
            ("bad_answer", self.bad_answers),
        ]
    }

    /// Mean time per call, if there was any call.
    pub fn mean_call_time(&self) -> Option<Duration> {
        (self.calls > 0).then(|| Duration::from_nanos(self.busy_ns / self.calls))
    }
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    errors: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    memory_limits: AtomicU64,
    fuel_exhausted: AtomicU64,
    rejected: AtomicU64,
    instances: AtomicU64,
    busy_ns: AtomicU64,
    fuel_used: AtomicU64,
    peak_memory_bytes: AtomicU64,
    bad_answers: AtomicU64,
    call_seconds: Histogram,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// One live instance and its store.
struct Live<B> {
    store: Store<StoreData>,
    bindings: B,
}

/// The instances of one plugin bound to one topic.
pub(crate) struct Runner<W: World> {
    plugin: Arc<Plugin>,
    topic: Arc<str>,
    config: String,
    idle: Mutex<Vec<Live<W::Bindings>>>,
    counters: Counters,
    /// Shared by every instance, so a fresh one after a trap starts with
    /// the same log budget.
    log: Arc<GuestLog>,
}

impl<W: World> Runner<W> {
    /// Binds `plugin` to `topic`: checks its kind and makes the first
    /// instance, so a refused config is reported now.
    pub(crate) fn bind(
        plugin: Arc<Plugin>,
        topic: &str,
        config: &str,
    ) -> Result<Self, PluginError> {
        if plugin.kind() != W::KIND {
            return Err(PluginError::WrongKind {
                plugin: plugin.name().to_string(),
                expected: W::KIND,
                found: plugin.kind(),
            });
        }
        let topic: Arc<str> = Arc::from(topic);
        let log = Arc::new(GuestLog::new(Arc::from(plugin.name()), topic.clone()));
        let runner = Runner {
            plugin,
            topic,
            log,
            config: config.to_string(),
            idle: Mutex::new(Vec::new()),
            counters: Counters::default(),
        };
        let first = runner.spawn()?;
        runner.put_back(first);
        Ok(runner)
    }

    pub(crate) fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Calls into an instance with `f`, under the plugin's limits.
    pub(crate) fn call<R>(
        &self,
        f: impl FnOnce(&W::Bindings, &mut Store<StoreData>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        off_reactor(|| self.call_here(f))
    }

    fn call_here<R>(
        &self,
        f: impl FnOnce(&W::Bindings, &mut Store<StoreData>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let started = Instant::now();
        bump(&self.counters.calls, 1);
        let idle = self.idle.lock().recover().pop();
        let live = match idle {
            Some(live) => Ok(live),
            None => self.spawn(),
        };
        let result = live.and_then(|mut live| {
            self.arm(&mut live.store);
            let result = f(&live.bindings, &mut live.store);
            self.finish(&mut live.store);
            match result {
                Ok(value) => {
                    self.put_back(live);
                    Ok(value)
                }
                Err(e) => Err(self.classify(e, &live.store)),
            }
        });
        let took = started.elapsed();
        bump(&self.counters.busy_ns, took.as_nanos() as u64);
        self.counters.call_seconds.observe(took);
        if result.is_err() {
            bump(&self.counters.errors, 1);
        }
        result
    }

    /// Counts a failure found after a successful call (a bad answer, or an
    /// error the plugin returned).
    pub(crate) fn count_error(&self) {
        bump(&self.counters.errors, 1);
    }

    /// Counts messages a validator rejected.
    pub(crate) fn count_rejected(&self, n: u64) {
        bump(&self.counters.rejected, n);
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> CallStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CallStats {
            calls: get(&c.calls),
            errors: get(&c.errors),
            traps: get(&c.traps),
            timeouts: get(&c.timeouts),
            memory_limits: get(&c.memory_limits),
            fuel_exhausted: get(&c.fuel_exhausted),
            rejected: get(&c.rejected),
            instances: get(&c.instances),
            busy_ns: get(&c.busy_ns),
            fuel_used: get(&c.fuel_used),
            peak_memory_bytes: get(&c.peak_memory_bytes),
            bad_answers: get(&c.bad_answers),
            call_seconds: c.call_seconds.snapshot(),
        }
    }

    /// A bad-answer error for this plugin and topic.
    pub(crate) fn bad_answer(&self, reason: String) -> PluginError {
        self.count_error();
        bump(&self.counters.bad_answers, 1);
        PluginError::BadAnswer {
            plugin: self.plugin.name().to_string(),
            topic: self.topic.to_string(),
            reason,
        }
    }

    /// Makes a new instance and calls `init` on it.
    fn spawn(&self) -> Result<Live<W::Bindings>, PluginError> {
        bump(&self.counters.instances, 1);
        let plugin: Arc<str> = Arc::from(self.plugin.name());
        let data = StoreData::new(
            plugin,
            self.topic.clone(),
            self.log.clone(),
            self.plugin.limits(),
        );
        let mut store = Store::new(&self.plugin.shared.engine, data);
        store.limiter(|data| &mut data.limiter);
        store.epoch_deadline_trap();
        self.arm(&mut store);
        let bindings = W::instantiate(&self.plugin.pre, &mut store);
        let bindings = bindings.map_err(|e| self.classify_instantiate(e, &store))?;
        self.arm(&mut store);
        let init = W::init(&bindings, &mut store, &self.config);
        self.finish(&mut store);
        match init {
            Ok(Ok(())) => Ok(Live { store, bindings }),
            Ok(Err(reason)) => Err(PluginError::Init {
                plugin: self.plugin.name().to_string(),
                topic: self.topic.to_string(),
                // The guest's own text: escaped and cut, as its log lines.
                reason: super::guest_log::escape_and_cut(&reason),
            }),
            Err(e) => Err(self.classify(e, &store)),
        }
    }

    /// Sets the limits for the next call into `store`.
    fn arm(&self, store: &mut Store<StoreData>) {
        let limits = self.plugin.limits();
        store.set_epoch_deadline(limits.deadline_ticks());
        // Fuel is always on in the engine; without a limit, give all there is.
        let fuel = limits.fuel.unwrap_or(u64::MAX);
        store.set_fuel(fuel).expect("fuel is enabled on the engine");
        store.data_mut().limiter.memory_refused = false;
        store.data_mut().last_stderr = None;
    }

    /// Accounts for a call that just ended and forwards the guest's output.
    fn finish(&self, store: &mut Store<StoreData>) {
        store.data_mut().forward_output();
        if let Some(fuel) = self.plugin.limits().fuel {
            let left = store.get_fuel().unwrap_or(0);
            bump(&self.counters.fuel_used, fuel.saturating_sub(left));
        }
        let peak = store.data().limiter.peak_memory as u64;
        self.counters
            .peak_memory_bytes
            .fetch_max(peak, Ordering::Relaxed);
    }

    fn put_back(&self, live: Live<W::Bindings>) {
        let mut idle = self.idle.lock().recover();
        if idle.len() < MAX_IDLE_INSTANCES {
            idle.push(live);
        }
    }

    /// Instantiation failures are traps when they are (a start function that
    /// trapped, memory over the limit), and otherwise their own error.
    fn classify_instantiate(&self, e: wasmtime::Error, store: &Store<StoreData>) -> PluginError {
        if e.downcast_ref::<Trap>().is_some() || store.data().limiter.memory_refused {
            return self.classify(e, store);
        }
        PluginError::Instantiate {
            plugin: self.plugin.name().to_string(),
            topic: self.topic.to_string(),
            source: e.into_boxed_dyn_error(),
        }
    }

    /// Turns a failure inside wasm into the error that says what happened,
    /// and counts it.
    fn classify(&self, e: wasmtime::Error, store: &Store<StoreData>) -> PluginError {
        let plugin = self.plugin.name().to_string();
        let topic = self.topic.to_string();
        let limits = self.plugin.limits();
        let trap = e.downcast_ref::<Trap>().copied();
        let data = store.data();
        if trap == Some(Trap::Interrupt) {
            bump(&self.counters.timeouts, 1);
            return PluginError::Timeout {
                plugin,
                topic,
                limit: limits.time_per_call,
                source: e.into_boxed_dyn_error(),
            };
        }
        bump(&self.counters.traps, 1);
        if trap == Some(Trap::OutOfFuel) {
            bump(&self.counters.fuel_exhausted, 1);
            return PluginError::FuelExhausted {
                plugin,
                topic,
                fuel: limits.fuel.unwrap_or(u64::MAX),
                source: e.into_boxed_dyn_error(),
            };
        }
        if data.limiter.memory_refused {
            bump(&self.counters.memory_limits, 1);
            return PluginError::MemoryLimit {
                plugin,
                topic,
                limit: limits.memory_bytes,
                source: e.into_boxed_dyn_error(),
            };
        }
        let mut detail = match trap {
            Some(trap) => trap.to_string(),
            None => e.to_string(),
        };
        if let Some(bare) = detail.strip_prefix("wasm trap: ") {
            detail = bare.to_string();
        }
        if let Some(line) = &data.last_stderr {
            detail.push_str(&format!(" (guest stderr: {line})"));
        }
        PluginError::Trap {
            plugin,
            topic,
            detail,
            source: e.into_boxed_dyn_error(),
        }
    }
}

/// Runs `f`, a wasm call, where it may block: WASI's synchronous bindings
/// enter a Tokio runtime of their own, which panics on an async worker, and a
/// long call must not stall other tasks. On a multi-threaded runtime's worker
/// the call runs under `block_in_place` (the worker's other tasks move to
/// another thread); anywhere else (a plain thread, the blocking pool) it runs
/// as is. Callers on a current-thread runtime must use `spawn_blocking`.
fn off_reactor<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
