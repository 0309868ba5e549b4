//! Exactly-once through injected failures: 20 seeds at parallelism 2, checked against
//! the pipelines' definitions and against failure-free runs.

use crate::support::{
    assert_ok, check_keyed_sum, committed_lines, hidden_files, restarts, run_in, stderr,
};

const SEEDS: u64 = 20;
const FAILURES: u32 = 3;

fn run_with_failures(
    pipeline: &str,
    seed: u64,
    failures: u32,
    pipeline_args: &[&str],
) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (seed_s, failures_s) = (seed.to_string(), failures.to_string());
    let mut args = vec![
        "run",
        pipeline,
        "--parallelism",
        "2",
        "--checkpoint-interval",
        "100ms",
        "--inject-failures",
        &failures_s,
        "--seed",
        &seed_s,
        "--",
        "--output",
        "out",
    ];
    args.extend_from_slice(pipeline_args);
    let out = run_in(dir.path(), &args);
    assert_ok(&out);
    assert_eq!(
        restarts(&out),
        failures,
        "seed {seed}: every injected failure must happen: {}",
        stderr(&out)
    );
    let output = dir.path().join("out");
    assert!(
        hidden_files(&output).is_empty(),
        "uncommitted files left: {:?}",
        hidden_files(&output)
    );
    committed_lines(&output)
}

#[test]
fn keyed_sum_is_exactly_once_through_injected_failures() {
    for seed in 1..=SEEDS {
        let lines = run_with_failures(
            "keyed-sum",
            seed,
            FAILURES,
            &["--records", "60000", "--rate", "60000", "--keys", "50"],
        );
        if let Err(e) = check_keyed_sum(&lines, 60_000, 50) {
            panic!("seed {seed}: {e}");
        }
    }
}

#[test]
fn state_machine_alerts_match_a_failure_free_run() {
    let args = [
        "--records",
        "60000",
        "--rate",
        "60000",
        "--error-rate",
        "0.01",
        "--seed",
        "9",
    ];
    let expected = run_with_failures("state-machine", 0, 0, &args);
    assert!(
        expected.len() > 100,
        "the reference run must raise alerts, got {}",
        expected.len()
    );
    for seed in 1..=SEEDS {
        let alerts = run_with_failures("state-machine", seed, FAILURES, &args);
        assert_eq!(
            alerts.len(),
            expected.len(),
            "seed {seed}: alert count differs"
        );
        assert!(
            alerts == expected,
            "seed {seed}: alerts differ from the failure-free run"
        );
    }
}

#[test]
fn state_machine_without_errors_never_alerts_whatever_fails() {
    for seed in 1..=SEEDS {
        let alerts = run_with_failures(
            "state-machine",
            seed,
            FAILURES,
            &["--records", "60000", "--rate", "60000", "--error-rate", "0"],
        );
        assert!(
            alerts.is_empty(),
            "seed {seed}: {} alerts, first {:?}",
            alerts.len(),
            alerts.first()
        );
    }
}
