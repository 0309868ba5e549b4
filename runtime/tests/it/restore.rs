//! Restore across processes: kill a run after some checkpoints, restore in a new process.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{assert_ok, check_keyed_sum, committed_lines, hidden_files, run_in, weir};

fn completed_checkpoints(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(".weir/checkpoints/keyed-sum/checkpoints"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("_metadata").exists())
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_new_process_restores_the_latest_checkpoint_and_finishes_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = [
        "--records",
        "200000",
        "--rate",
        "50000",
        "--keys",
        "100",
        "--output",
        "out",
    ];
    let mut child = weir()
        .current_dir(dir.path())
        .args([
            "run",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-interval",
            "200ms",
            "--",
        ])
        .args(args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("weir starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed_checkpoints(dir.path()) < 2 {
        assert!(Instant::now() < deadline, "no checkpoints after 30 s");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the job ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    let partial = committed_lines(&dir.path().join("out"));
    assert!(
        !partial.is_empty() && partial.len() < 200_000,
        "killed mid-run: {} lines",
        partial.len()
    );

    let mut restore = vec![
        "run",
        "keyed-sum",
        "-p",
        "2",
        "--checkpoint-interval",
        "200ms",
        "--restore",
        "latest",
        "--",
    ];
    restore.extend_from_slice(&args);
    let out = run_in(dir.path(), &restore);
    assert_ok(&out);
    let lines = committed_lines(&dir.path().join("out"));
    assert!(hidden_files(&dir.path().join("out")).is_empty());
    check_keyed_sum(&lines, 200_000, 100).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn restore_latest_without_checkpoints_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run_in(
        dir.path(),
        &[
            "run",
            "keyed-sum",
            "--restore",
            "latest",
            "--",
            "--records",
            "10",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = crate::support::stderr(&out);
    assert!(err.contains("no completed checkpoint under"), "{err}");
}
