//! Savepoints as users take them: `weir run --stop-with-savepoint-after`, and
//! `weir savepoint` / `weir cancel` against a coordinator and its workers.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::cluster::{coordinator_with, finish_and_check, free_port, wait, worker};
use crate::support::{
    assert_ok, check_keyed_sum, committed_lines, run_in, stderr, wait_for_checkpoints, weir,
};

/// Where keyed-sum's checkpoints go by default, under the test's directory.
const CHECKPOINTS: &str = ".weir/checkpoints/keyed-sum";

/// The local directory of a `file://` savepoint URI.
fn local(uri: &str) -> PathBuf {
    PathBuf::from(uri.trim().strip_prefix("file://").expect("a file:// URI"))
}

/// The savepoint path `weir run` printed when it stopped.
fn stopped_with(out: &Output) -> String {
    let err = stderr(out);
    err.lines()
        .find_map(|l| l.strip_prefix("weir: stopped with savepoint "))
        .unwrap_or_else(|| panic!("no savepoint in: {err}"))
        .to_string()
}

#[test]
fn run_stops_with_a_savepoint_and_a_restore_from_it_finishes_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = [
        "--records",
        "150000",
        "--rate",
        "50000",
        "--keys",
        "30",
        "--output",
        "out",
    ];
    let mut first = vec![
        "run",
        "keyed-sum",
        "-p",
        "2",
        "--checkpoint-interval",
        "300ms",
        "--stop-with-savepoint-after",
        "1s",
        "--",
    ];
    first.extend_from_slice(&args);
    let out = run_in(dir.path(), &first);
    assert_ok(&out);
    let savepoint = stopped_with(&out);
    assert!(
        savepoint.contains("/keyed-sum/") && savepoint.contains("/savepoints/sp-"),
        "{savepoint}"
    );
    let committed = committed_lines(&dir.path().join("out"));
    assert!(
        !committed.is_empty() && committed.len() < 150_000,
        "stopped mid-run with its output committed: {} lines",
        committed.len()
    );
    // The savepoint is self-contained: moved elsewhere, it still restores.
    let moved = dir.path().join("moved-savepoint");
    std::fs::rename(local(&savepoint), &moved).expect("move the savepoint");
    let mut second = vec![
        "run",
        "keyed-sum",
        "-p",
        "2",
        "--restore",
        moved.to_str().expect("utf-8"),
        "--",
    ];
    second.extend_from_slice(&args);
    assert_ok(&run_in(dir.path(), &second));
    check_keyed_sum(&committed_lines(&dir.path().join("out")), 150_000, 30)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Runs `weir savepoint` against the coordinator on `port`; returns the savepoint's URI.
fn savepoint(dir: &Path, port: u16, extra: &[&str]) -> String {
    let address = format!("127.0.0.1:{port}");
    let mut args = vec!["savepoint", "--coordinator", &address];
    args.extend_from_slice(extra);
    let out = run_in(dir, &args);
    assert_ok(&out);
    let uri = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        local(&uri).join("_metadata").is_file(),
        "{uri} holds a _metadata"
    );
    uri
}

#[test]
fn savepoints_through_the_api_keep_the_job_running_or_stop_it_and_a_new_cluster_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    // Every coordinator here is the same deployment, as a pod and its replacements.
    let ha = ["--job-id", "ha"];
    let mut coord = coordinator_with(dir.path(), port, "400000", &ha)
        .stderr(Stdio::piped())
        .spawn()
        .expect("coordinator starts");
    let mut workers = [worker(dir.path(), port), worker(dir.path(), port)];
    wait_for_checkpoints(&dir.path().join(CHECKPOINTS), 1);

    let intermediate = savepoint(dir.path(), port, &[]);
    assert!(
        intermediate.contains("/keyed-sum/ha/savepoints/sp-"),
        "{intermediate}"
    );
    assert!(
        coord.try_wait().expect("wait").is_none(),
        "a savepoint without --stop leaves the job running"
    );

    let target = format!("file://{}", dir.path().join("kept").display());
    let stopped = savepoint(dir.path(), port, &["--stop", "--target", &target]);
    assert!(stopped.starts_with(&format!("{target}/sp-")), "{stopped}");
    assert!(wait(&mut coord, Duration::from_secs(20)).success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut coord.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert!(err.contains("stopped with savepoint"), "{err}");
    for w in &mut workers {
        assert!(wait(w, Duration::from_secs(10)).success());
    }
    let committed = committed_lines(&dir.path().join("out")).len();
    assert!(committed > 0 && committed < 400_000, "{committed} lines");

    // A coordinator started again without that savepoint (a pod restarted after
    // the stop) holds: it must not resume from the older checkpoints.
    let held = |dir: &Path| {
        let port = free_port();
        let held = coordinator_with(dir, port, "400000", &ha)
            .output()
            .expect("coordinator runs");
        let err = stderr(&held);
        assert!(held.status.success(), "{err}");
        assert!(
            err.contains("was stopped with savepoint") && err.contains("/kept/sp-"),
            "{err}"
        );
    };
    held(dir.path());
    assert_eq!(committed_lines(&dir.path().join("out")).len(), committed);

    // Started from the savepoint, then lost before it checkpointed (no worker
    // ever came): the hold stays, so a start without the savepoint still holds.
    let restore = local(&stopped);
    let port = free_port();
    let mut early = coordinator_with(
        dir.path(),
        port,
        "400000",
        &[
            "--job-id",
            "ha",
            "--restore",
            restore.to_str().expect("utf-8"),
        ],
    )
    .stderr(Stdio::null())
    .spawn()
    .expect("coordinator starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::net::TcpStream::connect(("127.0.0.1", port + 1)).is_ok_and(|_| {
        crate::cluster::get(port + 1, "/v1/status")
            .1
            .contains("waiting-for-slots")
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "the coordinator never waited for slots"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    early.kill().expect("kill -9");
    early.wait().expect("reaped");
    held(dir.path());

    // The old run's checkpoints are still in storage, older than the savepoint:
    // the new coordinator must start from the savepoint, not from them.
    let port = free_port();
    let coord = coordinator_with(
        dir.path(),
        port,
        "400000",
        &[
            "--job-id",
            "ha",
            "--restore",
            restore.to_str().expect("utf-8"),
            "--log-level",
            "info",
        ],
    )
    .stderr(Stdio::piped())
    .spawn()
    .expect("coordinator starts");
    let mut workers = [worker(dir.path(), port), worker(dir.path(), port)];
    let err = finish_and_check(coord, &mut workers, dir.path(), 400_000);
    let restored = err
        .lines()
        .find(|l| l.contains("restoring"))
        .unwrap_or_else(|| panic!("no restore logged: {err}"));
    assert!(restored.contains("/kept/sp-"), "{restored}");
}

#[test]
fn cancel_stops_the_job_and_its_workers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let coord = coordinator_with(dir.path(), port, "100000000", &[])
        .stderr(Stdio::piped())
        .spawn()
        .expect("coordinator starts");
    let mut workers = [worker(dir.path(), port), worker(dir.path(), port)];
    wait_for_checkpoints(&dir.path().join(CHECKPOINTS), 1);
    assert_ok(&run_in(
        dir.path(),
        &["cancel", "--coordinator", &format!("127.0.0.1:{port}")],
    ));
    let out = coord.wait_with_output().expect("coordinator exits");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("cancelled"), "{}", stderr(&out));
    for w in &mut workers {
        assert!(wait(w, Duration::from_secs(10)).success());
    }
}

#[test]
fn savepoint_against_no_coordinator_names_the_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let out = weir()
        .current_dir(dir.path())
        .args(["savepoint", "--coordinator", &format!("127.0.0.1:{port}")])
        .output()
        .expect("weir runs");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot reach the coordinator at http://127.0.0.1:{port}"
        )),
        "{err}"
    );
}
