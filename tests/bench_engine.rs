//! Benchmark (not a test: it asserts nothing about time). A no-op run of the sample playbook
//! (5 files + 1 directory + a guarded command + a service per host: 64 resources on the
//! eight lab hosts), SSH connection setup included, with both transports. Run it on a lab
//! that is up:
//!
//!     pgha lab up && cargo test --release --test bench_engine -- --ignored --nocapture
#![allow(clippy::disallowed_methods)]

use std::process::Command;
use std::time::Instant;

fn run(args: &[&str]) -> (f64, String, String) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .env("CI", "true")
        .output()
        .expect("pgha runs");
    let secs = start.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (
        secs,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[ignore = "benchmark: needs the lab (pgha lab up) and prints figures"]
fn noop_sample_run() {
    let inv = std::env::var("PGHA_BENCH_INVENTORY").unwrap_or_else(|_| "inventory/lab.yaml".into());
    run(&["run", &inv, "sample"]); // converge first
    for transport in ["openssh", "russh"] {
        let mut times: Vec<f64> = Vec::new();
        let mut trips = String::new();
        for _ in 0..10 {
            let (secs, stdout, stderr) = run(&["run", &inv, "sample", "--transport", transport]);
            assert!(stdout.contains("changed=0"), "not a no-op: {stdout}");
            times.push(secs);
            trips = stderr
                .lines()
                .filter(|l| l.contains("round-trips="))
                .map(|l| l.split("round-trips=").nth(1).unwrap_or("?").to_string())
                .collect::<Vec<_>>()
                .join(",");
        }
        times.sort_by(f64::total_cmp);
        println!(
            "bench no-op sample ({transport}): min {:.3} s, median {:.3} s, max {:.3} s over {} runs; round trips per host: {trips}",
            times[0],
            times[times.len() / 2],
            times[times.len() - 1],
            times.len()
        );
    }
}
