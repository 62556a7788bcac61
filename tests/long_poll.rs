//! Long polls at scale: a thousand idle `wait=1h` scans cost (almost) no
//! CPU, and one publish answers every one of them.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Concurrent long polls, one scanner each (a scanner hands each message
/// out once, so sharing scanners would split the wake-up between polls).
const POLLS: usize = 1000;
/// How long the polls are held idle while CPU time is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(2);
/// Most CPU the whole test process (broker and client) may use while the
/// polls are idle, as a share of one core. Parked polls should use none: they
/// sleep on a channel and a 1 h timer. Anything that polls (even each waiter
/// checking every 10 ms) would cost 100,000 wake-ups a second here, many
/// times this budget; 20% leaves ample room for the runtime's housekeeping
/// and for measuring in clock ticks (10 ms each) on a busy machine.
const MAX_IDLE_SHARE: f64 = 0.20;

/// Raises this process's soft limit on open files to its hard limit (the
/// usual soft limit, 1,024, is too low for this test) and returns the limit
/// now in force.
fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if it cannot be asked).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU time of this process so far, user plus system, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold
    // spaces; utime and stime are fields 14 and 15 of the line.
    let rest = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

/// Established TCP connections whose local end is `port` on 127.0.0.1
/// (the broker's side of each client connection).
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == local && f[3] == "01"
        })
        .count()
}

/// A thousand idle `wait=1h` long polls cost little CPU; one publish answers them all.
#[tokio::test]
async fn thousand_idle_long_polls() {
    let needed = 2 * POLLS as u64 + 256;
    match raise_open_files_limit() {
        Ok(limit) if limit < needed => {
            skip(&format!(
                "{POLLS} long polls need about {needed} open files (client and broker \
                 sockets), the hard limit is {limit}"
            ));
            return;
        }
        Ok(_) => {}
        Err(e) => panic!("cannot raise the limit on open files: {e}"),
    }
    let dir = data_dir();
    // The monitor at its default pace: this test does not need it, and its
    // ticks are not what is measured.
    let broker = spawn_broker_with(netlog::config::Config {
        monitor_interval: Duration::from_secs(1),
        ..test_config(dir.path())
    });
    let http = client_builder()
        .pool_max_idle_per_host(POLLS + 16)
        .build()
        .unwrap();
    let api = Api::with_client(&broker.base_url(), http);
    api.create_topic("fan").await;
    let mut ids = Vec::with_capacity(POLLS);
    for _ in 0..POLLS {
        ids.push(api.scanner_id("fan", "0").await);
    }

    let polls: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let api = api.clone();
            tokio::spawn(async move { api.scan("fan", &id, "1h").await })
        })
        .collect();
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    while established_to(broker.addr().port()) < POLLS {
        assert!(Instant::now() < deadline, "{POLLS} connections in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every request parsed and counted as a long poll before measuring.
    until_long_polls(&api, POLLS).await;

    let ticks_per_second = clock_ticks_per_second();
    let (before, start) = (cpu_ticks(), Instant::now());
    tokio::time::sleep(IDLE_WINDOW).await;
    let (after, window) = (cpu_ticks(), start.elapsed());
    let cpu = (after - before) as f64 / ticks_per_second;
    let share = cpu / window.as_secs_f64();
    eprintln!(
        "{POLLS} idle long polls: {cpu:.2} s of CPU over {:.2} s = {:.1}% of one core",
        window.as_secs_f64(),
        share * 100.0
    );
    assert!(
        share < MAX_IDLE_SHARE,
        "idle long polls used {:.1}% of a core (budget {:.0}%)",
        share * 100.0,
        MAX_IDLE_SHARE * 100.0
    );
    assert!(
        polls.iter().all(|p| !p.is_finished()),
        "every poll is still waiting"
    );

    api.publish("fan", "wake up").await;
    let answers = tokio::time::timeout(REQUEST_TIMEOUT, futures_util::future::join_all(polls))
        .await
        .expect("every long poll is answered");
    for answer in answers {
        assert_eq!(
            expect_message(answer.unwrap()).await,
            (0, b"wake up".to_vec())
        );
    }
    broker.stop().await;
}
