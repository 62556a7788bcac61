//! `netlog-load`: a load generator for a netlog broker at any URL.
//!
//! ```text
//! cargo run --release --example netlog-load -- --url http://127.0.0.1:7200 --scenario all
//! ```
//!
//! Each scenario creates a fresh topic, `<prefix>-<scenario>-<random>`, runs
//! for `--duration` seconds or until `--messages` messages went through
//! (whichever comes first), prints a progress line to stderr while it runs and
//! a result block to stdout at the end (plus one JSON object per line with
//! `--json`), then deletes its topic unless `--keep` is given. It talks to
//! the given URL only.
//!
//! Layout: `client.rs` is a minimal HTTP/1.1 keep-alive client (the cheap
//! part that lets one process push 100k requests a second), `stats.rs` the
//! histogram, counters, budget, progress line and report, `throughput.rs` the
//! `post`, `batch-post`, `scan` and `batch-scan` scenarios, and `latency.rs`
//! the `stream-latency` and `poll-latency` ones. `compare.rs` runs the
//! throughput scenarios alternately against two brokers (`--compare URL`).
//! `--also URL` loads two front ends of one cluster (the JetStream engine,
//! `docs/engines.md`) in the same scenario: every other connection goes to
//! it, and in the latency scenarios the subscribers read through it while
//! the publishers write to `--url`.

mod client;
mod compare;
mod group;
mod latency;
mod stats;
mod throughput;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use client::Target;
use latency::Subscribe;
use stats::{Budget, Counters, Progress, Report};
use throughput::{Publisher, Run};

/// Load generator for a netlog broker: publish and consume throughput, and
/// publish-to-receive latency.
#[derive(Parser, Debug, Clone)]
#[command(version)]
struct Args {
    /// Broker to load (http://host:port, optionally with a path prefix).
    #[arg(long, default_value = "http://127.0.0.1:7200")]
    url: String,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// Concurrent connections (throughput scenarios).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop a scenario after this many messages (if before the duration).
    #[arg(long)]
    messages: Option<u64>,
    /// Payload bytes per message (latency scenarios use at least 20: the stamp).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages per batch publish, and most messages per batch scan.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Messages published per second in the latency scenarios.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Publishing connections in the latency scenarios.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Subscribers in the latency scenarios, each receiving every message.
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Messages written before a scan scenario; every connection's scanner
    /// reads them all from offset 0.
    #[arg(long, default_value_t = 500_000)]
    prefill: u64,
    /// Start of the name of each scenario's topic.
    #[arg(long, default_value = "load")]
    topic_prefix: String,
    /// Runtime worker threads [default: number of CPUs].
    #[arg(long)]
    threads: Option<usize>,
    /// Also print each result as one JSON object on one line.
    #[arg(long)]
    json: bool,
    /// Keep the topics instead of deleting them afterwards.
    #[arg(long)]
    keep: bool,
    /// Bearer secret sent with every request (it needs admin to create and
    /// delete the scenario topics, produce and consume on them).
    #[arg(long)]
    token: Option<String>,
    /// A second broker: run the throughput scenarios alternately on --url
    /// (arm A) and this one (arm B) and report B's change (see compare.rs).
    #[arg(long, value_name = "URL")]
    compare: Option<String>,
    /// A second front end serving the same topics (JetStream engine): the
    /// throughput scenarios send every other connection to it, and the
    /// latency scenarios subscribe through it while publishing to --url.
    #[arg(long, value_name = "URL")]
    also: Option<String>,
    /// Bearer secret for the --compare broker.
    #[arg(long)]
    compare_token: Option<String>,
    /// Rounds of a comparison; each runs the scenario once on each arm.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Pid of the --url broker, to report its CPU time per request.
    #[arg(long)]
    pid: Option<u32>,
    /// Pid of the --compare broker, to report its CPU time per request.
    #[arg(long)]
    compare_pid: Option<u32>,
    /// The `group` scenario also runs its workload against this Redis
    /// (host:port), on a stream, in the same run.
    #[arg(long, value_name = "HOST:PORT")]
    redis: Option<String>,
    /// Read the --compare broker's /_metrics every this many seconds while
    /// its scenario runs (with --compare-token).
    #[arg(long, value_name = "SECS")]
    compare_scrape: Option<f64>,
    /// Leases the `group-deep` scenario holds (at most 1,000,000).
    #[arg(long, default_value_t = 1_000_000)]
    pending: u64,
    /// Single publishes as v1 messages: a `Netlog-Key` and 3
    /// `Netlog-Header-*` on every request.
    #[arg(long)]
    v1: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Scenario {
    Post,
    BatchPost,
    Scan,
    BatchScan,
    StreamLatency,
    PollLatency,
    /// Workers sharing the topic through a consumer group (not in `all`).
    Group,
    /// Receive and ack latency on a group with `--pending` leases held,
    /// against an empty one (not in `all`).
    GroupDeep,
    All,
}

impl Scenario {
    const EACH: [Scenario; 6] = [
        Scenario::Post,
        Scenario::BatchPost,
        Scenario::Scan,
        Scenario::BatchScan,
        Scenario::StreamLatency,
        Scenario::PollLatency,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Post => "post",
            Scenario::BatchPost => "batch-post",
            Scenario::Scan => "scan",
            Scenario::BatchScan => "batch-scan",
            Scenario::StreamLatency => "stream-latency",
            Scenario::PollLatency => "poll-latency",
            Scenario::Group => "group",
            Scenario::GroupDeep => "group-deep",
            Scenario::All => "all",
        }
    }
}

/// What every scenario reads.
struct Ctx {
    args: Args,
    target: Target,
    /// `--also`: a second front end of the same topics.
    also: Option<Target>,
    /// The clock of latency stamps.
    origin: Instant,
}

impl Ctx {
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.args.duration)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = check(&args) {
        eprintln!("netlog-load: {e}");
        return ExitCode::from(2);
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netlog-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

fn check(args: &Args) -> Result<(), String> {
    let positive = [
        ("--connections", args.connections as u64),
        ("--size", args.size as u64),
        ("--batch", args.batch),
        ("--rate", args.rate),
        ("--publishers", args.publishers as u64),
        ("--subscribers", args.subscribers as u64),
        ("--prefill", args.prefill),
    ];
    if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
        return Err(format!("{flag} must be at least 1"));
    }
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        return Err("--duration must be a positive number of seconds".into());
    }
    if args.messages == Some(0) {
        return Err("--messages must be at least 1".into());
    }
    if args.rounds == 0 || args.rounds > 1000 {
        return Err("--rounds must be 1 to 1000".into());
    }
    if args
        .compare_scrape
        .is_some_and(|every| !(0.01..=86_400.0).contains(&every))
    {
        return Err("--compare-scrape must be 0.01 to 86400 seconds".into());
    }
    if args.compare.is_none()
        && (args.compare_token.is_some()
            || args.compare_pid.is_some()
            || args.compare_scrape.is_some())
    {
        return Err("--compare-token, --compare-pid and --compare-scrape need --compare".into());
    }
    if args.compare.is_some() && args.also.is_some() {
        return Err("--also and --compare cannot be combined".into());
    }
    if args.compare.is_some()
        && matches!(
            args.scenario,
            Scenario::StreamLatency | Scenario::PollLatency | Scenario::Group | Scenario::GroupDeep
        )
    {
        return Err("--compare measures the throughput scenarios only".into());
    }
    Ok(())
}

async fn run(args: Args) -> ExitCode {
    let target = match Target::parse(&args.url).await {
        Ok(t) => Target {
            token: args.token.clone(),
            ..t
        },
        Err(e) => {
            eprintln!("netlog-load: --url: {e}");
            return ExitCode::from(2);
        }
    };
    let scenarios = match args.scenario {
        Scenario::All => Scenario::EACH.to_vec(),
        one => vec![one],
    };
    if let Some(url) = args.compare.clone() {
        return run_comparison(args, target, &url, scenarios).await;
    }
    let also = match &args.also {
        None => None,
        Some(url) => match Target::parse(url).await {
            Ok(t) => Some(Target {
                token: args.token.clone(),
                ..t
            }),
            Err(e) => {
                eprintln!("netlog-load: --also: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let ctx = Ctx {
        args,
        target,
        also,
        origin: Instant::now(),
    };
    let mut failed = false;
    for scenario in scenarios {
        match run_scenario(&ctx, scenario).await {
            Ok(report) => {
                println!("{}", report.text());
                if ctx.args.json {
                    println!("{}", report.json());
                }
            }
            Err(e) => {
                eprintln!("netlog-load: {}: {e}", scenario.name());
                failed = true;
            }
        }
    }
    exit_code(failed)
}

/// The tool's exit status: failure if any scenario failed.
fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `--compare`: each throughput scenario of `scenarios` on both brokers.
async fn run_comparison(
    args: Args,
    target: Target,
    url: &str,
    scenarios: Vec<Scenario>,
) -> ExitCode {
    let other = match Target::parse(url).await {
        Ok(t) => Target {
            token: args.compare_token.clone(),
            ..t
        },
        Err(e) => {
            eprintln!("netlog-load: --compare: {e}");
            return ExitCode::from(2);
        }
    };
    let origin = Instant::now();
    let b = Ctx {
        args: Args {
            url: url.to_string(),
            ..args.clone()
        },
        target: other,
        also: None,
        origin,
    };
    let a = Ctx {
        args,
        target,
        also: None,
        origin,
    };
    let mut failed = false;
    for scenario in scenarios {
        if matches!(
            scenario,
            Scenario::StreamLatency | Scenario::PollLatency | Scenario::Group | Scenario::GroupDeep
        ) {
            continue;
        }
        if let Err(e) = compare::compare(&a, &b, scenario).await {
            eprintln!("netlog-load: {}: {e}", scenario.name());
            failed = true;
        }
    }
    exit_code(failed)
}

/// Creates the scenario's topic, runs it, deletes the topic.
async fn run_scenario(ctx: &Ctx, scenario: Scenario) -> Result<Report, String> {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let topic: Arc<str> = format!(
        "{}-{}-{}",
        ctx.args.topic_prefix,
        scenario.name(),
        &suffix[..8]
    )
    .into();
    let answer = ctx
        .target
        .call("POST", &format!("/{topic}"), b"")
        .await
        .map_err(|e| format!("cannot reach {}: {e}", ctx.args.url))?;
    if answer.status != 201 {
        return Err(format!("creating topic {topic}: {}", answer.describe()));
    }
    let report = match scenario {
        Scenario::StreamLatency => latency_scenario(ctx, scenario, &topic, Subscribe::Stream).await,
        Scenario::PollLatency => latency_scenario(ctx, scenario, &topic, Subscribe::Poll).await,
        Scenario::Group => group_scenario(ctx, &topic).await,
        Scenario::GroupDeep => group_deep_scenario(ctx, &topic).await,
        _ => throughput_scenario(ctx, scenario, &topic).await,
    };
    if !ctx.args.keep {
        match ctx
            .target
            .call("DELETE", &format!("/{topic}?force=true"), b"")
            .await
        {
            Ok(r) if r.status == 200 => {}
            Ok(r) => eprintln!("netlog-load: deleting topic {topic}: {}", r.describe()),
            Err(e) => eprintln!("netlog-load: deleting topic {topic}: {e}"),
        }
    }
    let mut report = report?;
    report.topic = topic.to_string();
    Ok(report)
}

async fn throughput_scenario(
    ctx: &Ctx,
    scenario: Scenario,
    topic: &Arc<str>,
) -> Result<Report, String> {
    let args = &ctx.args;
    let scan = matches!(scenario, Scenario::Scan | Scenario::BatchScan);
    if scan {
        throughput::prefill(&ctx.target, topic, args.size, args.prefill).await?;
    }
    let batch = matches!(scenario, Scenario::BatchPost | Scenario::BatchScan).then_some(args.batch);
    let counters = Arc::new(Counters::default());
    let run = Arc::new(Run {
        target: ctx.target.clone(),
        budget: Arc::new(Budget::new(ctx.duration(), args.messages)),
        counters: counters.clone(),
    });
    // With --also, every other connection goes to the second front end,
    // under the same budget and counters.
    let run_also = ctx.also.as_ref().map(|also| {
        Arc::new(Run {
            target: also.clone(),
            budget: run.budget.clone(),
            counters: counters.clone(),
        })
    });
    let publisher = Arc::new(Publisher {
        topic: topic.clone(),
        payload: throughput::payload(args.size).into(),
        batch,
        headers: if args.v1 {
            throughput::v1_headers()
        } else {
            Vec::new()
        },
    });
    let progress = Progress::start(scenario.name().to_string(), counters.clone());
    let cpu = stats::process_cpu();
    let start = Instant::now();
    let latency = throughput::run_tasks(args.connections, run.budget.deadline(), &counters, |i| {
        let run = match &run_also {
            Some(also) if i % 2 == 1 => also.clone(),
            _ => run.clone(),
        };
        let (topic, publisher) = (topic.clone(), publisher.clone());
        async move {
            if scan {
                throughput::scan(run, topic, batch).await
            } else {
                publisher.run(run).await
            }
        }
    })
    .await;
    let elapsed = start.elapsed();
    let cpu = stats::process_cpu()
        .zip(cpu)
        .map(|(end, start)| end - start);
    drop(progress);
    let mut report = Report::from_counters(scenario.name(), &counters);
    report.connections = args.connections;
    report.size = args.size;
    report.batch = batch.unwrap_or(1) as usize;
    report.elapsed = elapsed;
    report.latency = latency;
    report.client_cpu = cpu;
    if scan {
        report.notes.push(format!(
            "each connection's scanner reads the {} pre-filled messages from offset 0",
            args.prefill
        ));
    }
    if let Some(also) = &args.also {
        report.notes.push(format!(
            "every other connection through the second front end {also}"
        ));
    }
    Ok(report)
}

/// `group`: see `group.rs`.
async fn group_scenario(ctx: &Ctx, topic: &Arc<str>) -> Result<Report, String> {
    let args = &ctx.args;
    throughput::prefill(&ctx.target, topic, args.size, args.prefill).await?;
    group::create(
        &ctx.target,
        topic,
        "load",
        r#"{"from":"oldest","max_pending":1000000,"lease_time":"30s"}"#,
    )
    .await?;
    group::create(
        &ctx.target,
        topic,
        "expiry",
        r#"{"from":"oldest","lease_time":"1s"}"#,
    )
    .await?;
    let run = |counters: Arc<Counters>| {
        Arc::new(group::Work {
            target: ctx.target.clone(),
            topic: topic.clone(),
            batch: args.batch,
            deadline: Instant::now() + ctx.duration(),
            cap: args.messages,
            counters,
        })
    };
    let counters = Arc::new(Counters::default());
    let work = run(counters.clone());
    let progress = Progress::start("group".to_string(), counters.clone());
    let cpu = stats::process_cpu();
    let start = Instant::now();
    let latency = throughput::run_tasks(args.connections, work.deadline, &counters, |_| {
        group::worker(work.clone(), "load".to_string())
    })
    .await;
    let elapsed = start.elapsed();
    let cpu = stats::process_cpu()
        .zip(cpu)
        .map(|(end, start)| end - start);
    drop(progress);
    let mut report = Report::from_counters("group", &counters);
    report.connections = args.connections;
    report.size = args.size;
    report.batch = args.batch as usize;
    report.elapsed = elapsed;
    report.latency = latency;
    report.latency_kind = "per receive and ack";
    report.client_cpu = cpu;
    let rate = report.messages as f64 / elapsed.as_secs_f64();
    report.notes.push(format!(
        "each message received under a lease and acked: {rate:.0} deliveries/s plus as many acks"
    ));
    let delays = group::redelivery_delays(&ctx.target, topic, "expiry").await?;
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    report.notes.push(format!(
        "redelivery after a lease ran out (nobody polling in between): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms(delays.quantile(0.5)),
        ms(delays.quantile(0.99)),
        ms(delays.max())
    ));
    if let Some(addr) = &args.redis {
        let key = format!("{topic}-redis");
        group::redis_fill(addr, &key, &throughput::payload(args.size), args.prefill).await?;
        let counters = Arc::new(Counters::default());
        let work = run(counters.clone());
        let start = Instant::now();
        throughput::run_tasks(args.connections, work.deadline, &counters, |i| {
            group::redis_worker(addr.clone(), key.clone(), work.clone(), i)
        })
        .await;
        let redis_rate = counters.messages.load(std::sync::atomic::Ordering::Relaxed) as f64
            / start.elapsed().as_secs_f64();
        report.notes.push(format!(
            "Redis Streams at {addr}, same workers and batches (XREADGROUP COUNT {} + XACK): {redis_rate:.0} deliveries/s; netlog/Redis {:.2}",
            args.batch,
            rate / redis_rate.max(1.0)
        ));
        if let Some(e) = counters.first_error() {
            report.notes.push(format!("Redis errors: {e}"));
        }
    }
    Ok(report)
}

/// `group-deep`: see `group::deep`. Prefills `--pending` messages plus
/// room for the samples.
async fn group_deep_scenario(ctx: &Ctx, topic: &Arc<str>) -> Result<Report, String> {
    const SAMPLES: usize = 2000;
    let args = &ctx.args;
    if args.pending == 0 || args.pending > 1_000_000 {
        return Err("--pending: 1 to 1,000,000 (a group's max_pending)".into());
    }
    throughput::prefill(
        &ctx.target,
        topic,
        args.size,
        args.pending + 2 * SAMPLES as u64,
    )
    .await?;
    let start = Instant::now();
    let notes = group::deep(&ctx.target, topic, args.pending, SAMPLES).await?;
    let mut report = Report::from_counters("group-deep", &Counters::default());
    report.size = args.size;
    report.elapsed = start.elapsed();
    report.notes = notes;
    Ok(report)
}

async fn latency_scenario(
    ctx: &Ctx,
    scenario: Scenario,
    topic: &Arc<str>,
    how: Subscribe,
) -> Result<Report, String> {
    let args = &ctx.args;
    let setup = latency::Setup {
        target: ctx.target.clone(),
        read_target: ctx.also.clone().unwrap_or_else(|| ctx.target.clone()),
        topic: topic.clone(),
        origin: ctx.origin,
        size: args.size,
        rate: args.rate,
        publishers: args.publishers,
        subscribers: args.subscribers,
        duration: ctx.duration(),
        cap: args.messages,
    };
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(scenario.name().to_string(), counters.clone());
    let cpu = stats::process_cpu();
    let outcome = latency::run(setup, how, counters.clone()).await;
    let cpu = stats::process_cpu()
        .zip(cpu)
        .map(|(end, start)| end - start);
    drop(progress);
    let outcome = outcome?;
    let mut report = Report::from_counters(scenario.name(), &counters);
    report.connections = args.publishers + args.subscribers;
    report.size = args.size.max(latency::STAMP_DIGITS);
    report.elapsed = outcome.elapsed;
    report.latency = outcome.latency;
    report.latency_kind = "publish to receive";
    report.notes = outcome.notes;
    if let Some(also) = &args.also {
        report.notes.push(format!(
            "published through {}, received through the second front end {also}",
            args.url
        ));
    }
    report.client_cpu = cpu;
    Ok(report)
}

/// Opens a scanner on `topic` at `from`; gives its id.
async fn create_scanner(target: &Target, topic: &str, from: &str) -> Result<String, String> {
    let answer = target
        .call("POST", &format!("/{topic}/scanner?from={from}"), b"")
        .await
        .map_err(|e| format!("creating a scanner: {e}"))?;
    if answer.status != 201 {
        return Err(format!("creating a scanner: {}", answer.describe()));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&answer.body).map_err(|e| format!("creating a scanner: {e}"))?;
    json["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("creating a scanner: no id in {json}"))
}
