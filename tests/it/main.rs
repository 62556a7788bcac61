//! netlog's integration tests in one binary, one module per surface: the
//! wasmtime-heavy library and the test harness link once, not once per file.
//!
//! Tests here share one process: anything process-wide (the environment,
//! the working directory, resource limits, the plugin host of
//! `common::host`, the log layer's caches) is shared with whatever runs
//! beside them, so no test here changes the environment, the working
//! directory or a limit. Tests that measure the whole process (the CPU of
//! idle long polls, the descriptors of a roll storm) or mount filesystems
//! keep binaries of their own: `long_poll.rs`, `plugin_bounds.rs`,
//! `disk_full.rs`.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod big_publishes;
mod broker_safety;
mod codec_trust;
mod config;
mod config_hostile;
mod console;
mod extensions;
mod faults;
mod fuzz_http;
mod groups;
mod http_api;
mod idempotency;
mod jetstream;
mod lane;
mod layers;
mod limits;
mod log_format;
mod log_props;
mod messages_v1;
mod metrics;
mod netlog_layout;
mod no_panic;
mod openapi;
mod plugin_host;
mod plugin_json_schema;
mod plugin_wit;
mod plugins_e2e;
mod plugins_langs;
mod read_bounds;
mod readme;
mod recovery;
mod reload;
mod restart;
mod tls;
mod topic_layer;
