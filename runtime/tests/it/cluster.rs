//! A coordinator and workers as separate processes on 127.0.0.1.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{check_keyed_sum, committed_lines, stderr, weir};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn worker(dir: &std::path::Path, port: u16) -> Child {
    weir()
        .current_dir(dir)
        .args(["worker", "--coordinator", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn coordinator(dir: &std::path::Path, port: u16, records: &str) -> Command {
    let mut cmd = weir();
    cmd.current_dir(dir).args([
        "coordinator",
        "keyed-sum",
        "-p",
        "2",
        "--checkpoint-interval",
        "200ms",
        "--heartbeat-interval",
        "200ms",
        "--heartbeat-timeout",
        "2s",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--",
        "--records",
        records,
        "--rate",
        "100000",
        "--keys",
        "50",
        "--output",
        "out",
    ]);
    cmd
}

fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_coordinator_and_two_workers_run_a_job_exactly_once_and_exit() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let coord = coordinator(dir.path(), port, "200000")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut workers = [worker(dir.path(), port), worker(dir.path(), port)];
    let out = coord.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for w in &mut workers {
        assert!(
            wait(w, Duration::from_secs(10)).success(),
            "workers exit 0 when the job is done"
        );
    }
    check_keyed_sum(&committed_lines(&dir.path().join("out")), 200_000, 50)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_killed_worker_is_replaced_and_the_output_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut coord = coordinator(dir.path(), port, "400000")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = worker(dir.path(), port);
    let mut second = worker(dir.path(), port);
    let checkpoints = dir.path().join(".weir/checkpoints/keyed-sum/checkpoints");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(&checkpoints)
        .is_ok_and(|d| d.flatten().any(|e| e.path().join("_metadata").exists()))
    {
        assert!(Instant::now() < deadline, "no checkpoint within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let mut replacement = worker(dir.path(), port);
    let status = wait(&mut coord, Duration::from_secs(60));
    let mut err = String::new();
    std::io::Read::read_to_string(coord.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(
        err.contains("with 1 restarts"),
        "one recovery expected: {err}"
    );
    for w in [&mut second, &mut replacement] {
        assert!(wait(w, Duration::from_secs(10)).success());
    }
    check_keyed_sum(&committed_lines(&dir.path().join("out")), 400_000, 50)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_restarted_coordinator_resumes_from_storage_and_the_output_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = coordinator(dir.path(), port, "400000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut workers = [worker(dir.path(), port), worker(dir.path(), port)];
    let checkpoints = dir.path().join(".weir/checkpoints/keyed-sum/checkpoints");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(&checkpoints).is_ok_and(|d| {
        d.flatten()
            .filter(|e| e.path().join("_metadata").exists())
            .count()
            >= 2
    }) {
        assert!(Instant::now() < deadline, "no checkpoints within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let second = coordinator(dir.path(), port, "400000")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = second.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for w in &mut workers {
        assert!(
            wait(w, Duration::from_secs(10)).success(),
            "workers follow the new coordinator and exit 0"
        );
    }
    check_keyed_sum(&committed_lines(&dir.path().join("out")), 400_000, 50)
        .unwrap_or_else(|e| panic!("{e}"));
}
