//! The demo benchmark: times `imagegen demo`, the README's first command, as a newcomer runs
//! it (the binary already built). Target: the whole story in under 30 seconds, every run.
//!
//! Run: `cargo bench --bench demo` (option: `-- --runs R`). Exits with status 1 when a run
//! misses the target or the demo itself fails, so it can serve as a check.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TARGET: Duration = Duration::from_secs(30);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|arg| arg == "--runs")
        .and_then(|index| args.get(index + 1))
        .map(|runs| runs.parse().expect("--runs needs a whole number"))
        .unwrap_or(5usize);
    let folder = tempfile::tempdir().expect("a folder to run the demo from");
    let mut times = Vec::with_capacity(runs);
    for run in 1..=runs {
        let started = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_imagegen"))
            .args(["demo", "--quiet", "--color", "never"])
            .current_dir(folder.path())
            .env_remove("TF_BUILD")
            .env_remove("GITHUB_ACTIONS")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the demo starts");
        let took = started.elapsed();
        println!("run {run}: {} ms, {status}", took.as_millis());
        if !status.success() {
            eprintln!("FAIL: the demo exited {status}; run `imagegen demo` to see why");
            std::process::exit(1);
        }
        times.push(took);
    }
    times.sort();
    let median = times[times.len() / 2];
    let slowest = times[times.len() - 1];
    let verdict = if slowest < TARGET { "PASS" } else { "FAIL" };
    println!(
        "imagegen demo: median {} ms, slowest {} ms of {runs} runs (target: every run under {} s): {verdict}",
        median.as_millis(),
        slowest.as_millis(),
        TARGET.as_secs()
    );
    if verdict == "FAIL" {
        std::process::exit(1);
    }
}
