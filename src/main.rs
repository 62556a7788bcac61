//! The `netlog` binary: flags and config in, [`netlog::run`] out.
//!
//! netlog's single-dash flags (`-listen :7200`, `-dir data`, ...) keep working
//! beside the usual `--flag` spelling; `netlog plugin check FILE` inspects a
//! plugin component, and `netlog plugin wit DIR` writes out the plugin
//! interface so a plugin can be written without a copy of this repository.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use netlog::config::{Config, LogFormat, Overrides, RawValue, SettingsInput};

/// netlog: an HTTP-centric, Kafka-style message queue.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// TOML config file (flags given here override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [default: :7200].
    #[arg(long)]
    listen: Option<String>,
    /// Data directory [default: ./data].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Default segment age before deletion, e.g. 30day [default: 30day].
    #[arg(long = "segment_age", alias = "segment-age")]
    segment_age: Option<String>,
    /// Default segment size before rolling, e.g. 1GiB [default: 1GiB].
    #[arg(long = "segment_size", alias = "segment-size")]
    segment_size: Option<String>,
    /// Default most messages per group-commit write [default: 100].
    #[arg(long = "batch_num_messages", alias = "batch-num-messages")]
    batch_num_messages: Option<u64>,
    /// Default longest wait of a message for a shared write [default: 200ms].
    #[arg(long = "batch_interval", alias = "batch-interval")]
    batch_interval: Option<String>,
    /// Default compression: 1 or none, 2 or gzip, 3 or snappy [default: none].
    #[arg(long)]
    compression: Option<String>,
    /// How often the segment monitor runs [default: 1s].
    #[arg(long = "monitor_interval", alias = "monitor-interval")]
    monitor_interval: Option<String>,
    /// Log level: trace, debug, info, warn, error [default: info; RUST_LOG wins].
    #[arg(long = "log_level", alias = "loglevel", alias = "log-level")]
    log_level: Option<String>,
    /// When to fsync: always, never, or an interval such as 1s [default: 1s].
    #[arg(long)]
    fsync: Option<String>,
    /// Largest request body, e.g. 64MiB [default: 64MiB].
    #[arg(long = "max_body", alias = "max-body")]
    max_body: Option<String>,
    /// Log line format: `text` (coloured only on a terminal) or `json`, one
    /// object per line for collectors.
    #[arg(long = "log-format", alias = "log_format")]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Make bearer secrets and the hashes `[[auth.tokens]]` stores.
    #[command(subcommand)]
    Token(netlog::token::TokenCommand),
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Tells which hook a component implements, its WIT version, and
    /// whether its init accepts a config.
    Check {
        /// The .wasm component.
        file: PathBuf,
        /// The plugin config, as JSON.
        #[arg(long)]
        config: Option<String>,
    },
    /// Writes the plugin interface, `netlog-plugin.wit` (the newest version,
    /// netlog:plugin@0.2.0), into a directory (created if missing), for
    /// wit-bindgen or any other bindings generator.
    Wit {
        /// The directory [default: wit, where wit-bindgen looks].
        #[arg(default_value = "wit")]
        dir: PathBuf,
    },
}

/// The newest plugin interface this binary implements, as `wit/` holds it
/// (0.1.0, in `wit/v0.1/`, is still loaded but no longer handed out).
const PLUGIN_WIT: &str = include_str!("../wit/netlog-plugin.wit");
/// The file name `plugin wit` writes.
const PLUGIN_WIT_FILE: &str = "netlog-plugin.wit";

/// Rewrites netlog's single-dash long flags (`-listen`) to `--listen`.
fn netlog_args() -> Vec<String> {
    const NETLOG_FLAGS: &[&str] = &[
        "listen",
        "dir",
        "segment_age",
        "segment_size",
        "batch_num_messages",
        "batch_interval",
        "compression",
        "monitor_interval",
        "loglevel",
        "log_level",
        "config",
        "fsync",
        "max_body",
        "help",
        "version",
    ];
    std::env::args()
        .map(|a| {
            let flag = a.strip_prefix('-').filter(|f| !f.starts_with('-'));
            match flag {
                Some(f) if NETLOG_FLAGS.contains(&f.split('=').next().unwrap_or("")) => {
                    format!("-{a}")
                }
                _ => a,
            }
        })
        .collect()
}

/// What the flags say, for [`netlog::config::load`].
fn overrides(cli: &Cli) -> Overrides {
    let text = |v: &Option<String>| v.as_deref().map(RawValue::from);
    let server = [
        ("listen", cli.listen.clone()),
        (
            "data_dir",
            cli.dir.as_ref().map(|d| d.display().to_string()),
        ),
        ("monitor_interval", cli.monitor_interval.clone()),
        ("log_level", cli.log_level.clone()),
        ("fsync", cli.fsync.clone()),
        ("max_body", cli.max_body.clone()),
        ("log_format", cli.log_format.clone()),
    ];
    Overrides {
        config: cli.config.clone(),
        server: server
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
        defaults: SettingsInput {
            segment_age: text(&cli.segment_age),
            segment_size: text(&cli.segment_size),
            batch_num_messages: cli.batch_num_messages.as_ref().map(|n| RawValue::Int(*n)),
            batch_interval: text(&cli.batch_interval),
            compression_type: text(&cli.compression),
            ..SettingsInput::default()
        },
    }
}

fn build_config(cli: &Cli) -> Result<Config, String> {
    netlog::config::load(&overrides(cli)).map_err(|e| e.to_string())
}

fn init_tracing(level: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().init(),
        // Colour codes only where a person reads them.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// One item per `SIGHUP`: the config file is read again and reloaded.
fn hangups() -> impl futures_util::Stream<Item = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let hup = signal(SignalKind::hangup())
        .map_err(|e| eprintln!("netlog: SIGHUP will not reload: {e}"))
        .ok();
    futures_util::stream::unfold(hup, |hup| async move {
        let mut hup = hup?;
        hup.recv().await.map(|()| ((), Some(hup)))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(netlog_args());
    if let Some(Command::Plugin(PluginCommand::Check { file, config })) = &cli.command {
        return plugin_check(file, config.as_deref());
    }
    if let Some(Command::Plugin(PluginCommand::Wit { dir })) = &cli.command {
        return plugin_wit(dir);
    }
    if let Some(Command::Token(command)) = &cli.command {
        return netlog::token::run(command);
    }
    let cfg = match build_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("netlog: config error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&cfg.log_level, cfg.log_format);
    let runtime = match netlog::idle_spin::runtime(cfg.server.idle_spin) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netlog: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let addr = cfg.listen_addr();
        let listener = match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("netlog: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        match netlog::run_with_reloads(listener, cfg, shutdown_signal(), hangups()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("netlog: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn plugin_check(file: &std::path::Path, config: Option<&str>) -> ExitCode {
    if let Some(text) = config
        && let Err(e) = serde_json::from_str::<serde_json::Value>(text)
    {
        eprintln!(
            "netlog: --config is not JSON ({e}); give the plugin config as a JSON object, \
             e.g. --config '{{\"max_bytes\": 1024}}'"
        );
        return ExitCode::from(2);
    }
    match netlog::plugin::check_component(file, config) {
        Ok(report) => {
            println!("{report}");
            if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("netlog: {}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn plugin_wit(dir: &std::path::Path) -> ExitCode {
    let path = dir.join(PLUGIN_WIT_FILE);
    match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, PLUGIN_WIT)) {
        Ok(()) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netlog: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
