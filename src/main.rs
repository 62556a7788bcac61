//! The `netlog` binary: flags and config in, [`netlog::run`] out.
//!
//! netlog's single-dash flags (`-listen :7200`, `-dir data`, ...) keep working
//! beside the usual `--flag` spelling; `netlog plugin check FILE` inspects a
//! plugin component.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use netlog::config::{Config, SettingsInput};
use netlog::duration::{parse_duration, parse_size};

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
    batch_num_messages: Option<usize>,
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
    #[arg(long)]
    loglevel: Option<String>,
    /// When to fsync: always, never, or an interval such as 1s [default: 1s].
    #[arg(long)]
    fsync: Option<String>,
    /// Largest request body, e.g. 64MiB [default: 64MiB].
    #[arg(long = "max_body", alias = "max-body")]
    max_body: Option<String>,
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
}

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

fn build_config(cli: &Cli) -> Result<Config, String> {
    let mut cfg = match &cli.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let flag = |name: &str, e: &dyn std::fmt::Display| format!("-{name}: {e}");
    if let Some(l) = &cli.listen {
        cfg.listen = l.clone();
    }
    if let Some(d) = &cli.dir {
        cfg.data_dir = d.clone();
    }
    let mut input = SettingsInput::default();
    if let Some(a) = &cli.segment_age {
        input.segment_age = Some(parse_duration(a).map_err(|e| flag("segment_age", &e))?);
    }
    if let Some(s) = &cli.segment_size {
        input.segment_size = Some(parse_size(s).map_err(|e| flag("segment_size", &e))?);
    }
    input.batch_num_messages = cli.batch_num_messages;
    if let Some(b) = &cli.batch_interval {
        input.batch_interval = Some(parse_duration(b).map_err(|e| flag("batch_interval", &e))?);
    }
    if let Some(c) = &cli.compression {
        input.compression = Some(
            match c.as_str() {
                "0" | "1" => "none",
                "2" => "gzip",
                "3" => "snappy",
                other => other,
            }
            .to_string(),
        );
    }
    cfg.defaults = netlog::config::Settings::resolve(input, &cfg.defaults, &cfg.plugin_names())
        .map_err(|e| flag("compression", &e))?;
    if let Some(m) = &cli.monitor_interval {
        cfg.monitor_interval = parse_duration(m).map_err(|e| flag("monitor_interval", &e))?;
        if cfg.monitor_interval.is_zero() {
            return Err("-monitor_interval: must be above zero".into());
        }
    }
    if let Some(l) = &cli.loglevel {
        cfg.log_level = l.clone();
    }
    if let Some(f) = &cli.fsync {
        cfg.fsync = Config::parse_fsync(f).map_err(|e| flag("fsync", &e))?;
    }
    if let Some(m) = &cli.max_body {
        cfg.max_body = parse_size(m).map_err(|e| flag("max_body", &e))?;
    }
    Ok(cfg)
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
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

fn main() -> ExitCode {
    let cli = Cli::parse_from(netlog_args());
    if let Some(Command::Plugin(PluginCommand::Check { file, config })) = &cli.command {
        return plugin_check(file, config.as_deref());
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
    init_tracing(&cfg.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
        match netlog::run(listener, cfg, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("netlog: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn plugin_check(file: &std::path::Path, config: Option<&str>) -> ExitCode {
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
