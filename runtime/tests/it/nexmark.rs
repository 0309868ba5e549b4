//! Nexmark's event-time queries (windows of every kind, joins, timers) as users
//! run them: the same results, sorted, at any parallelism and batch size, on
//! either backend, through failures, and across a rescale from a savepoint
//! taken while windows, join buffers and timers were pending.

use std::path::Path;
use std::process::Output;

use crate::support::{assert_ok, committed_lines, restarts, run_in, stderr};

/// Events per run: 30 s of event time at 10,000 events per event-time second,
/// with one event in twenty set back by up to two seconds (out of order).
const EVENTS: &str = "300000";

/// `weir run` of `query` with `run_args`, writing to `out` under `dir`.
fn run(dir: &Path, query: &str, out: &str, run_args: &[&str], rate: Option<&str>) -> Output {
    let mut args = vec!["run", "--checkpoint-dir", "chk"];
    args.extend_from_slice(run_args);
    args.extend_from_slice(&[
        "nexmark",
        "--",
        "--query",
        query,
        "--records",
        EVENTS,
        "--event-rate",
        "10000",
        "--delayed-per-mille",
        "50",
        "--output",
        out,
    ]);
    if let Some(rate) = rate {
        args.extend_from_slice(&["--rate", rate]);
    }
    run_in(dir, &args)
}

/// The uninterrupted run at parallelism 1 on the heap: the expected output.
fn reference(dir: &Path, query: &str) -> Vec<String> {
    assert_ok(&run(dir, query, "reference", &[], None));
    let lines = committed_lines(&dir.join("reference"));
    assert!(
        lines.len() >= 3,
        "{query}: too little output to compare: {lines:?}"
    );
    lines
}

const QUERIES: [&str; 5] = ["q3", "q5", "q7", "q8", "q11"];

#[test]
fn event_time_results_do_not_depend_on_parallelism_batches_backend_or_failures() {
    for query in QUERIES {
        let dir = tempfile::tempdir().unwrap();
        let expected = reference(dir.path(), query);
        let args = [
            "-p",
            "2",
            "--state-backend",
            "rocksdb",
            "--batch-size",
            "64",
            "--checkpoint-interval",
            "100ms",
            "--inject-failures",
            "2",
        ];
        let out = run(dir.path(), query, "out", &args, Some("300000"));
        assert_ok(&out);
        assert_eq!(restarts(&out), 2, "{query}: {}", stderr(&out));
        assert_eq!(
            committed_lines(&dir.path().join("out")),
            expected,
            "{query}"
        );
    }
}

/// Copies the committed part files of `from` into a new directory `to`.
fn copy_output(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("part-") {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn pending_windows_joins_and_timers_rescale_through_a_savepoint() {
    for (query, backend) in [
        ("q7", "heap"),
        ("q11", "rocksdb"),
        ("q8", "rocksdb"),
        ("q3", "heap"),
        ("q5", "rocksdb"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let expected = reference(dir.path(), query);
        let stop = [
            "-p",
            "2",
            "--state-backend",
            backend,
            "--checkpoint-interval",
            "300ms",
            "--stop-with-savepoint-after",
            "1s",
        ];
        let out = run(dir.path(), query, "out", &stop, Some("100000"));
        assert_ok(&out);
        let err = stderr(&out);
        let savepoint = err
            .lines()
            .find_map(|l| l.strip_prefix("weir: stopped with savepoint "))
            .unwrap_or_else(|| panic!("{query}: no savepoint in: {err}"))
            .trim()
            .to_string();
        let before = committed_lines(&dir.path().join("out"));
        assert!(
            before.len() < expected.len(),
            "{query}: stopped before the end: {} of {} lines",
            before.len(),
            expected.len()
        );
        copy_output(&dir.path().join("out"), &dir.path().join("out-1"));
        for (parallelism, out) in [("3", "out"), ("1", "out-1")] {
            let restore = [
                "-p",
                parallelism,
                "--state-backend",
                backend,
                "--restore",
                savepoint.as_str(),
            ];
            assert_ok(&run(dir.path(), query, out, &restore, None));
            assert_eq!(
                committed_lines(&dir.path().join(out)),
                expected,
                "{query} restored at parallelism {parallelism}"
            );
        }
    }
}
