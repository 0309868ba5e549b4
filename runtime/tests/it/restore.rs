//! Restore across processes: kill a run after some checkpoints, restore in a new process.

use std::path::Path;

use crate::support::{
    assert_ok, check_keyed_sum, committed_lines, hidden_files, run_in, wait_for_checkpoints, weir,
};

/// Where `weir run` keeps keyed-sum's checkpoints, under the test's directory.
const CHECKPOINTS: &str = ".weir/checkpoints/keyed-sum";

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
    wait_for_checkpoints(&dir.path().join(CHECKPOINTS), 2);
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the job ended before it was killed"
    );
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
fn a_checkpoint_copied_elsewhere_restores_from_its_new_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = [
        "--records",
        "100000",
        "--rate",
        "50000",
        "--keys",
        "20",
        "--output",
        "out",
    ];
    let mut child = weir()
        .current_dir(dir.path())
        .args(["run", "keyed-sum", "--checkpoint-interval", "200ms", "--"])
        .args(args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("weir starts");
    let latest = wait_for_checkpoints(&dir.path().join(CHECKPOINTS), 2);
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    let moved = dir.path().join("elsewhere/snapshot");
    copy_dir(&latest, &moved);
    std::fs::remove_dir_all(dir.path().join(".weir")).expect("old checkpoints removed");
    let mut restore = vec![
        "run",
        "keyed-sum",
        "--checkpoint-dir",
        "new-checkpoints",
        "--restore",
        moved.to_str().expect("utf-8"),
        "--",
    ];
    restore.extend_from_slice(&args);
    let out = run_in(dir.path(), &restore);
    assert_ok(&out);
    check_keyed_sum(&committed_lines(&dir.path().join("out")), 100_000, 20)
        .unwrap_or_else(|e| panic!("{e}"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
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
