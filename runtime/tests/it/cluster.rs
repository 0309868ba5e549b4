//! A coordinator and workers as separate processes on 127.0.0.1.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{check_keyed_sum, committed_lines, stderr, wait_for_checkpoints, weir};

/// Where the coordinators of these tests keep keyed-sum's checkpoints.
const CHECKPOINTS: &str = ".weir/checkpoints/keyed-sum";

/// A port `p` such that `p` and `p + 1` are free (gRPC and HTTP).
pub fn free_port() -> u16 {
    loop {
        let p = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// GETs `path` from the HTTP endpoint on `port`; returns the status code and body.
pub fn get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    (
        code,
        text.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    )
}

/// A `weir worker` of the coordinator on `port`, started in `dir`.
pub fn worker(dir: &std::path::Path, port: u16) -> Child {
    weir()
        .current_dir(dir)
        .args(["worker", "--coordinator", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `weir coordinator` running keyed-sum (50 keys, 100,000 records/s, into `out`)
/// at parallelism 2 on `port` (gRPC) and `port + 1` (HTTP).
fn coordinator(dir: &std::path::Path, port: u16, records: &str) -> Command {
    coordinator_with(dir, port, records, &[])
}

/// [`coordinator`] with `extra` coordinator options.
pub fn coordinator_with(
    dir: &std::path::Path,
    port: u16,
    records: &str,
    extra: &[&str],
) -> Command {
    let mut cmd = weir();
    cmd.current_dir(dir)
        .args(["coordinator", "keyed-sum"])
        .args(extra)
        .args([
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
            "--http",
            &format!("127.0.0.1:{}", port + 1),
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

/// Waits for the coordinator to succeed and the workers to exit 0, then checks the output.
pub fn finish_and_check(
    coord: Child,
    workers: &mut [Child],
    dir: &std::path::Path,
    records: u64,
) -> String {
    let out = coord.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for w in workers {
        assert!(
            wait(w, Duration::from_secs(10)).success(),
            "workers exit 0 when the job is done"
        );
    }
    check_keyed_sum(&committed_lines(&dir.join("out")), records, 50)
        .unwrap_or_else(|e| panic!("{e}"));
    err
}

/// Waits up to `limit` for `child` to exit.
pub fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
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
    finish_and_check(coord, &mut workers, dir.path(), 200_000);
}

#[test]
fn the_coordinator_reports_health_metrics_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut coord = coordinator(dir.path(), port, "300000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port + 1)).is_err() {
        assert!(Instant::now() < deadline, "no HTTP endpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(port + 1, "/healthz").0, 200);
    let (code, body) = get(port + 1, "/readyz");
    assert_eq!(code, 503, "not ready without workers");
    assert!(
        body.contains("waiting for worker slots: 0 registered, 2 needed"),
        "{body}"
    );
    let mut workers = [worker(dir.path(), port), worker(dir.path(), port)];
    while get(port + 1, "/v1/status")
        .1
        .contains("\"latest_checkpoint\":null")
    {
        assert!(Instant::now() < deadline, "no checkpoint reported");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(port + 1, "/readyz").0, 200);
    let status: serde_json::Value = serde_json::from_str(&get(port + 1, "/v1/status").1).unwrap();
    assert_eq!(status["state"], "running");
    assert_eq!(status["slots"]["registered"], 2);
    assert!(status["latest_checkpoint"]["id"].as_u64().is_some());
    let cli = weir()
        .args(["status", "--coordinator", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cli.stdout);
    assert!(
        text.contains("job keyed-sum: running") && text.contains("latest checkpoint: "),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = get(port + 1, "/metrics").1;
    for name in [
        "weir_checkpoints_completed_total",
        "weir_restarts_total 0",
        "weir_records_in_total{operator=\"sum\",subtask=\"1\"}",
        "weir_job_state{state=\"running\"} 1",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    assert!(wait(&mut coord, Duration::from_secs(30)).success());
    for w in &mut workers {
        assert!(wait(w, Duration::from_secs(10)).success());
    }
}

#[test]
fn a_killed_worker_is_replaced_and_the_output_stays_exact() {
    killed_worker_is_replaced(&[]);
}

#[test]
fn a_killed_worker_on_rocksdb_is_replaced_and_the_output_stays_exact() {
    killed_worker_is_replaced(&["--state-backend", "rocksdb"]);
}

/// Kills one of two workers after a checkpoint, starts a replacement, and checks
/// the job recovers once and its output is exact.
fn killed_worker_is_replaced(options: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut coord = coordinator_with(dir.path(), port, "400000", options)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = worker(dir.path(), port);
    let mut second = worker(dir.path(), port);
    wait_for_checkpoints(&dir.path().join(CHECKPOINTS), 1);
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
    // The same deployment identity, as the operator gives a coordinator pod and
    // its replacement.
    let ha = ["--job-id", "ha"];
    let mut first = coordinator_with(dir.path(), port, "400000", &ha)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut workers = [worker(dir.path(), port), worker(dir.path(), port)];
    wait_for_checkpoints(&dir.path().join(CHECKPOINTS), 2);
    first.kill().unwrap();
    first.wait().unwrap();
    let second = coordinator_with(dir.path(), port, "400000", &ha)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish_and_check(second, &mut workers, dir.path(), 400_000);
}

#[test]
fn a_coordinator_restores_what_it_is_told_not_another_deployments_newer_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = ["--records", "400000", "--rate", "100000", "--keys", "50"];
    // Deployment `a` checkpoints for a while in the shared storage, then dies.
    let mut run = weir()
        .current_dir(dir.path())
        .args([
            "run",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-interval",
            "200ms",
        ])
        .args(["--checkpoint-dir", "storage", "--job-id", "a", "--"])
        .args(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let job = dir.path().join("storage/keyed-sum");
    wait_for_checkpoints(&job, 3);
    run.kill().unwrap();
    run.wait().unwrap();
    let older = crate::support::completed_checkpoints(&job)
        .first()
        .cloned()
        .unwrap();
    let older_id: u64 = older
        .to_str()
        .unwrap()
        .rsplit("chk-")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Deployment `b`, in the same storage, told to start from an older one.
    let port = free_port();
    let mut coord = weir()
        .current_dir(dir.path())
        .args([
            "coordinator",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-interval",
            "200ms",
        ])
        .args(["--checkpoint-dir", "storage", "--job-id", "b"])
        .args(["--restore", older.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--http", &format!("127.0.0.1:{}", port + 1), "--"])
        .args(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut workers = [worker(dir.path(), port), worker(dir.path(), port)];
    let b = dir.path().join("storage/keyed-sum/b/checkpoints");
    let deadline = Instant::now() + Duration::from_secs(30);
    let first_of_b = loop {
        let ids: Vec<u64> = std::fs::read_dir(&b)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("_metadata").exists())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
            .collect();
        if let Some(first) = ids.iter().min() {
            break *first;
        }
        assert!(Instant::now() < deadline, "b never checkpointed");
        std::thread::sleep(Duration::from_millis(20));
    };
    coord.kill().unwrap();
    coord.wait().unwrap();
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    assert_eq!(
        first_of_b,
        older_id + 1,
        "b restored checkpoint {older_id}, not a's newer ones"
    );
}

#[test]
fn a_worker_speaking_another_protocol_version_is_refused_with_both_versions_named() {
    use weir_proto::v1;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut coord = coordinator(dir.path(), port, "1000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut client = loop {
            match v1::coordination_client::CoordinationClient::connect(endpoint.clone()).await {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("coordinator unreachable: {e}"),
            }
        };
        let register = v1::WorkerMessage {
            body: Some(v1::worker_message::Body::Register(v1::Register {
                protocol_version: 999,
                worker_id: "old".into(),
                slots: 1,
                data_address: "127.0.0.1:1".into(),
            })),
        };
        client
            .session(tokio_stream::iter(vec![register]))
            .await
            .expect_err("refused")
    });
    coord.kill().unwrap();
    coord.wait().unwrap();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let message = status.message();
    assert!(
        message.contains("protocol version 999")
            && message.contains(&weir_proto::PROTOCOL_VERSION.to_string()),
        "{message}"
    );
}

#[test]
fn a_coordinator_starts_from_a_checkpoint_given_with_restore() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--records",
        "300000",
        "--rate",
        "100000",
        "--keys",
        "50",
        "--output",
        "out",
    ];
    let mut run = weir()
        .current_dir(dir.path())
        .args([
            "run",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-interval",
            "200ms",
            "--checkpoint-dir",
            "first",
            "--",
        ])
        .args(args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let latest = wait_for_checkpoints(&dir.path().join("first/keyed-sum"), 2);
    run.kill().unwrap();
    run.wait().unwrap();
    let port = free_port();
    let coord = weir()
        .current_dir(dir.path())
        .args([
            "coordinator",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-interval",
            "200ms",
            "--checkpoint-dir",
            "second",
            "--restore",
            latest.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--http",
            &format!("127.0.0.1:{}", port + 1),
            "--",
        ])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut workers = [worker(dir.path(), port), worker(dir.path(), port)];
    finish_and_check(coord, &mut workers, dir.path(), 300_000);
}
