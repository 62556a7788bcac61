//! `--compare URL`: the same throughput scenario against two brokers in one
//! run, alternating, to measure what a setting costs (authentication,
//! metrics scrapes, a plugin) without the drift of a busy machine between
//! two separate runs.
//!
//! Arm A is `--url` (with `--token`), arm B is `--compare` (with
//! `--compare-token`). Each of `--rounds` rounds runs the scenario once on
//! each arm, A first in odd rounds and B first in even ones, so that a
//! machine warming up or cooling down favours neither. With `--pid` and
//! `--compare-pid` the brokers' own CPU time (from `/proc/<pid>/stat`) is
//! read around each run and reported per request: on a machine the load
//! tool shares with the broker, that is the steadier figure. With
//! `--compare-scrape SECS`, arm B's `/_metrics` is read every SECS seconds
//! while its scenario runs, as a Prometheus server would.
//!
//! Before the rounds, each arm runs the scenario once for a second,
//! uncounted, to warm up. The report gives each round, the means, and B's
//! change against A.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::Target;
use crate::stats::{Report, cpu_of};
use crate::{Args, Ctx, Scenario, run_scenario};

/// Seconds of the uncounted first run on each arm.
const WARMUP_SECONDS: f64 = 1.0;

/// One arm's figures for one round.
struct Sample {
    msgs_per_sec: f64,
    requests: u64,
    errors: u64,
    /// Broker CPU time per request, when its pid was given.
    cpu_per_request: Option<Duration>,
}

/// What one arm is.
struct Arm<'a> {
    label: &'static str,
    ctx: &'a Ctx,
    pid: Option<u32>,
    /// Seconds between two scrapes of `/_metrics` during a run.
    scrape_every: Option<f64>,
}

/// Scrapes made during one arm's runs.
#[derive(Default)]
struct Scrapes {
    count: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
    nanos: AtomicU64,
}

/// Runs `scenario` alternately on both arms; prints the comparison and
/// gives whether every run succeeded.
pub async fn compare(a: &Ctx, b: &Ctx, scenario: Scenario) -> Result<(), String> {
    let args = &a.args;
    let arms = [
        Arm {
            label: "A",
            ctx: a,
            pid: args.pid,
            scrape_every: None,
        },
        Arm {
            label: "B",
            ctx: b,
            pid: args.compare_pid,
            scrape_every: args.compare_scrape,
        },
    ];
    // A first run warms each broker (allocator, page cache, connection
    // setup); it is not counted.
    for arm in &arms {
        let warm = Ctx {
            args: Args {
                duration: WARMUP_SECONDS.min(arm.ctx.args.duration),
                ..arm.ctx.args.clone()
            },
            target: arm.ctx.target.clone(),
            also: None,
            origin: arm.ctx.origin,
        };
        run_scenario(&warm, scenario)
            .await
            .map_err(|e| format!("warm-up of arm {}: {e}", arm.label))?;
    }
    let scrapes = Arc::new(Scrapes::default());
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let sample = run_arm(&arms[i], scenario, &scrapes).await?;
            samples[i].push(sample);
        }
    }
    let report = Comparison {
        scenario,
        urls: [&a.args.url, &b.args.url],
        samples,
        scrapes: &scrapes,
        args,
    };
    println!("{}", report.text());
    if args.json {
        println!("{}", report.json());
    }
    Ok(())
}

async fn run_arm(
    arm: &Arm<'_>,
    scenario: Scenario,
    scrapes: &Arc<Scrapes>,
) -> Result<Sample, String> {
    let pid = arm.pid.map(|p| p.to_string());
    let cpu_before = pid.as_deref().and_then(cpu_of);
    let scraper = arm.scrape_every.map(|every| {
        let (target, scrapes) = (arm.ctx.target.clone(), scrapes.clone());
        tokio::spawn(scrape_loop(target, every, scrapes))
    });
    let report = run_scenario(arm.ctx, scenario).await;
    if let Some(task) = scraper {
        task.abort();
    }
    let cpu = pid
        .as_deref()
        .and_then(cpu_of)
        .zip(cpu_before)
        .map(|(end, start)| end.saturating_sub(start));
    let report: Report = report.map_err(|e| format!("arm {}: {e}", arm.label))?;
    eprintln!(
        "netlog-load: {} arm {}: {:.0} msgs/s",
        scenario.name(),
        arm.label,
        report.messages as f64 / report.elapsed.as_secs_f64().max(1e-9)
    );
    Ok(Sample {
        msgs_per_sec: report.messages as f64 / report.elapsed.as_secs_f64().max(1e-9),
        requests: report.requests,
        errors: report.errors,
        cpu_per_request: cpu.map(|c| c / u32::try_from(report.requests.max(1)).unwrap_or(u32::MAX)),
    })
}

/// Reads `/_metrics` every `every` seconds until aborted.
async fn scrape_loop(target: Target, every: f64, scrapes: Arc<Scrapes>) {
    let period = Duration::from_secs_f64(every);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = Instant::now();
        match target.call("GET", "/_metrics", b"").await {
            Ok(answer) if answer.status == 200 => {
                scrapes.count.fetch_add(1, Ordering::Relaxed);
                scrapes
                    .bytes
                    .fetch_add(answer.body.len() as u64, Ordering::Relaxed);
                scrapes
                    .nanos
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
            _ => {
                scrapes.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct Comparison<'a> {
    scenario: Scenario,
    urls: [&'a str; 2],
    samples: [Vec<Sample>; 2],
    scrapes: &'a Scrapes,
    args: &'a Args,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

fn change(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => Some((b - a) / a * 100.0),
        _ => None,
    }
}

impl Comparison<'_> {
    fn throughput(&self, arm: usize) -> Option<f64> {
        mean(self.samples[arm].iter().map(|s| s.msgs_per_sec))
    }

    /// Mean broker CPU per request in microseconds, if every run had it.
    fn cpu_us(&self, arm: usize) -> Option<f64> {
        let runs = &self.samples[arm];
        if runs.iter().any(|s| s.cpu_per_request.is_none()) {
            return None;
        }
        mean(
            runs.iter()
                .filter_map(|s| s.cpu_per_request)
                .map(|d| d.as_secs_f64() * 1e6),
        )
    }

    fn text(&self) -> String {
        let args = self.args;
        let mut out = format!(
            "compare {}: {} rounds of {} s, {} connections, {} B messages, batch {}\n  A {}\n  B {}{}\n",
            self.scenario.name(),
            args.rounds,
            args.duration,
            args.connections,
            args.size,
            if self.scenario == Scenario::BatchPost || self.scenario == Scenario::BatchScan {
                args.batch
            } else {
                1
            },
            self.urls[0],
            self.urls[1],
            args.compare_scrape
                .map(|s| format!(" (scraped every {s} s)"))
                .unwrap_or_default(),
        );
        out.push_str("  round   A msgs/s    B msgs/s    A µs CPU/req  B µs CPU/req\n");
        let cpu = |s: &Sample| {
            s.cpu_per_request
                .map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64() * 1e6))
        };
        for (i, (a, b)) in self.samples[0].iter().zip(&self.samples[1]).enumerate() {
            out.push_str(&format!(
                "  {:<5}   {:<10.0}  {:<10.0}  {:<12}  {}\n",
                i + 1,
                a.msgs_per_sec,
                b.msgs_per_sec,
                cpu(a),
                cpu(b)
            ));
        }
        let pct = |c: Option<f64>| c.map_or("-".into(), |c| format!("{c:+.1}%"));
        let num = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
        out.push_str(&format!(
            "  mean    {:<10}  {:<10}  {:<12}  {}\n  B vs A: throughput {}, broker CPU per request {}\n",
            num(self.throughput(0), 0),
            num(self.throughput(1), 0),
            num(self.cpu_us(0), 2),
            num(self.cpu_us(1), 2),
            pct(change(self.throughput(0), self.throughput(1))),
            pct(change(self.cpu_us(0), self.cpu_us(1))),
        ));
        let errors: u64 = self.samples.iter().flatten().map(|s| s.errors).sum();
        out.push_str(&format!("  errors  {errors}\n"));
        let n = self.scrapes.count.load(Ordering::Relaxed);
        if args.compare_scrape.is_some() {
            out.push_str(&format!(
                "  scrapes {n} of B's /_metrics, {} failed, mean {} bytes, mean {:.1} ms\n",
                self.scrapes.failed.load(Ordering::Relaxed),
                self.scrapes.bytes.load(Ordering::Relaxed) / n.max(1),
                self.scrapes.nanos.load(Ordering::Relaxed) as f64 / n.max(1) as f64 / 1e6,
            ));
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        let arm = |i: usize| {
            serde_json::json!({
                "url": self.urls[i],
                "msgs_per_sec": self.samples[i].iter().map(|s| s.msgs_per_sec.round()).collect::<Vec<_>>(),
                "requests": self.samples[i].iter().map(|s| s.requests).collect::<Vec<_>>(),
                "errors": self.samples[i].iter().map(|s| s.errors).sum::<u64>(),
                "broker_cpu_us_per_request": self.samples[i].iter()
                    .map(|s| s.cpu_per_request.map(|d| d.as_secs_f64() * 1e6))
                    .collect::<Vec<_>>(),
                "mean_msgs_per_sec": self.throughput(i),
                "mean_broker_cpu_us_per_request": self.cpu_us(i),
            })
        };
        serde_json::json!({
            "compare": self.scenario.name(),
            "rounds": self.args.rounds,
            "duration_s": self.args.duration,
            "a": arm(0),
            "b": arm(1),
            "throughput_change_pct": change(self.throughput(0), self.throughput(1)),
            "cpu_per_request_change_pct": change(self.cpu_us(0), self.cpu_us(1)),
            "scrapes": self.scrapes.count.load(Ordering::Relaxed),
            "scrape_failures": self.scrapes.failed.load(Ordering::Relaxed),
        })
    }
}
