//! The grammar fuzzer of `examples/fuzz_http.rs`, at CI size: about 2,000
//! generated requests against a real broker within 30 s. The full size runs
//! on demand with `cargo run --release --example fuzz_http -- --requests
//! 20000 --seconds 300`.

#[allow(dead_code)]
#[path = "../../examples/fuzz_http.rs"]
mod fuzzer;

use std::time::Duration;

use fuzzer::{FuzzOptions, run};

/// Requests of the CI run.
const CI_REQUESTS: usize = 2_000;
/// Time the CI run may send for.
const CI_TIME: Duration = Duration::from_secs(30);

/// Generated requests never panic the broker, every answer is a success or
/// netlog's error shape, and every topic is healthy at the end.
#[test]
fn grammar_fuzz_keeps_the_oracle() {
    let report = run(&FuzzOptions {
        seed: 13,
        requests: CI_REQUESTS,
        time: CI_TIME,
        workers: 8,
    });
    println!("{report}");
    assert!(report.findings.is_empty(), "{report}");
    // The run did real work: enough requests, several kinds of answer, and
    // topics created to check (a fuzzer that only gets 404s finds nothing).
    assert!(report.requests >= CI_REQUESTS / 4, "{report}");
    assert!(report.topics_checked >= 1, "{report}");
    assert!(report.statuses.keys().any(|s| *s == 201), "{report}");
    assert!(report.statuses.keys().any(|s| *s == 400), "{report}");
}
