//! `weir bench` prints its RESULT line (what the line says is measured, not asserted:
//! benchmarks are run by hand, never timed in tests).

use crate::support::{assert_ok, run_in};

/// The value of `key=` in a RESULT line.
fn field<'l>(line: &'l str, key: &str) -> &'l str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

fn result_line(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run_in(dir.path(), args);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in {text}"))
        .to_string();
    line
}

#[test]
fn keyed_sum_on_two_worker_processes_reports_cpu_over_all_of_them() {
    let line = result_line(&[
        "bench",
        "keyed-sum",
        "--workers",
        "2",
        "--records",
        "200000",
    ]);
    assert_eq!(field(&line, "scenario"), "keyed-sum");
    assert_eq!(field(&line, "workers"), "2");
    assert_eq!(field(&line, "records"), "200000");
    let cpu: f64 = field(&line, "cpu_seconds").parse().expect("a number");
    assert!(cpu > 0.0, "{line}");
    let rps_per_core: f64 = field(&line, "rps_per_core").parse().expect("a number");
    assert!(rps_per_core > 0.0, "{line}");
}

#[test]
fn a_rated_run_reports_latency_percentiles() {
    let line = result_line(&[
        "bench",
        "keyed-sum",
        "--rate",
        "20000",
        "--records",
        "40000",
        "--buffer-timeout",
        "0",
    ]);
    let samples: u64 = field(&line, "latency_samples").parse().expect("a number");
    assert!(samples > 0 && samples < 40_000, "warm-up left out: {line}");
    let p50: f64 = field(&line, "p50_us").parse().expect("a number");
    let p99: f64 = field(&line, "p99_us").parse().expect("a number");
    let p999: f64 = field(&line, "p999_us").parse().expect("a number");
    assert!(p50 <= p99 && p99 <= p999, "{line}");
}

#[test]
fn grep_on_workers_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run_in(dir.path(), &["bench", "grep", "--workers", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let err = crate::support::stderr(&out);
    assert!(
        err.contains("--workers and --rate apply to keyed-sum only"),
        "{err}"
    );
}
