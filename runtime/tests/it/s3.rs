//! Checkpoints and savepoints in S3 (a real `s3s-fs` server on 127.0.0.1).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::s3_server::{S3Server, BUCKET};
use crate::support::{assert_ok, check_keyed_sum, committed_lines, stderr, weir};

/// `weir` in `dir` with its AWS client pointed at `s3`.
fn weir_s3(dir: &Path, s3: &S3Server) -> Command {
    let mut cmd = weir();
    cmd.current_dir(dir);
    s3.env(&mut cmd);
    cmd
}

/// A child's stderr, read as it is written.
struct StderrLog {
    text: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl StderrLog {
    fn follow(child: &mut Child) -> Self {
        use std::io::BufRead;
        let pipe = child.stderr.take().expect("stderr is piped");
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = text.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().expect("log lock");
                text.push_str(&line);
                text.push('\n');
            }
        });
        StderrLog { text, reader }
    }

    fn text(&self) -> String {
        self.text.lock().expect("log lock").clone()
    }

    fn contains(&self, needle: &str) -> bool {
        self.text.lock().expect("log lock").contains(needle)
    }

    /// Everything, once the child has exited and its stderr closed.
    fn finish(self) -> String {
        self.reader.join().expect("stderr reader");
        let text = self.text.lock().expect("log lock");
        text.clone()
    }
}

fn output(mut cmd: Command) -> Output {
    cmd.output().expect("weir runs")
}

/// Ids of the completed checkpoints of keyed-sum under `prefix` in the bucket.
fn completed(s3: &S3Server, prefix: &str) -> Vec<u64> {
    let dir = format!("{prefix}/keyed-sum/checkpoints/chk-");
    let mut ids: Vec<u64> = s3
        .keys(&dir)
        .iter()
        .filter_map(|k| {
            k.strip_prefix(&dir)?
                .strip_suffix("/_metadata")?
                .parse()
                .ok()
        })
        .collect();
    ids.sort_unstable();
    ids
}

fn wait_for_completed(s3: &S3Server, prefix: &str, n: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while completed(s3, prefix).len() < n {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the job ended before {n} checkpoints"
        );
        assert!(
            Instant::now() < deadline,
            "no {n} checkpoints in S3 after 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const ARGS: [&str; 8] = [
    "--records",
    "200000",
    "--rate",
    "50000",
    "--keys",
    "40",
    "--output",
    "out",
];

#[test]
fn checkpoints_in_s3_restore_a_killed_run_exactly_once() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let checkpoints = s3.uri("ckpt");
    let mut first = weir_s3(dir.path(), &s3);
    first
        .args([
            "run",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-interval",
            "200ms",
        ])
        .args(["--checkpoint-dir", &checkpoints, "--"])
        .args(ARGS)
        .stderr(Stdio::null());
    let mut child = first.spawn().expect("weir starts");
    wait_for_completed(&s3, "ckpt", 2, &mut child);
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    let mut second = weir_s3(dir.path(), &s3);
    second
        .args([
            "run",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-interval",
            "200ms",
        ])
        .args([
            "--checkpoint-dir",
            &checkpoints,
            "--restore",
            "latest",
            "--",
        ])
        .args(ARGS);
    assert_ok(&output(second));
    check_keyed_sum(&committed_lines(&dir.path().join("out")), 200_000, 40)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        completed(&s3, "ckpt").len() <= 3,
        "retention keeps 3: {:?}",
        completed(&s3, "ckpt")
    );
}

#[test]
fn an_s3_outage_declines_checkpoints_but_loses_nothing_and_checkpoints_resume() {
    let mut s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = weir_s3(dir.path(), &s3);
    cmd.args([
        "run",
        "keyed-sum",
        "-p",
        "2",
        "--checkpoint-interval",
        "300ms",
    ])
    .args(["--checkpoint-dir", &s3.uri("ckpt"), "--"])
    .args(["--records", "600000", "--rate", "50000", "--keys", "40"])
    .args(["--output", "out"])
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("weir starts");
    let log = StderrLog::follow(&mut child);
    wait_for_completed(&s3, "ckpt", 2, &mut child);
    let before = *completed(&s3, "ckpt").last().expect("a checkpoint");
    s3.stop();
    // Down until a checkpoint has been declined (the client's retries given up).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log.contains("checkpoint declined") {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the job keeps running while S3 is down: {}",
            log.text()
        );
        assert!(
            Instant::now() < deadline,
            "no checkpoint declined: {}",
            log.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s3.resume();
    let status = child.wait().expect("weir exits");
    let err = log.finish();
    assert!(status.success(), "{err}");
    assert!(err.contains(" 0 restarts"), "{err}");
    let after = *completed(&s3, "ckpt").last().expect("a checkpoint");
    assert!(
        after > before,
        "checkpoints complete again: {before} -> {after}"
    );
    check_keyed_sum(&committed_lines(&dir.path().join("out")), 600_000, 40)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_savepoint_in_s3_copied_to_another_prefix_restores_from_the_copy() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = weir_s3(dir.path(), &s3);
    first
        .args([
            "run",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-interval",
            "300ms",
        ])
        .args(["--checkpoint-dir", &s3.uri("ckpt")])
        .args(["--stop-with-savepoint-after", "1s"])
        .args(["--savepoint-dir", &s3.uri("savepoints"), "--"])
        .args(ARGS);
    let out = output(first);
    assert_ok(&out);
    let err = stderr(&out);
    let savepoint = err
        .lines()
        .find_map(|l| l.strip_prefix("weir: stopped with savepoint "))
        .unwrap_or_else(|| panic!("no savepoint in {err}"))
        .to_string();
    let prefix = format!("s3://{BUCKET}/savepoints/sp-");
    assert!(savepoint.starts_with(&prefix), "{savepoint}");
    // Copy every object of the savepoint to another prefix (on the server's disk).
    let key = savepoint
        .strip_prefix(&format!("s3://{BUCKET}/"))
        .expect("in the bucket");
    let copied = s3.copy_prefix(key, "moved/");
    assert!(copied >= 2, "_metadata and state files: {copied}");
    let mut second = weir_s3(dir.path(), &s3);
    second
        .args([
            "run",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-dir",
            &s3.uri("ckpt2"),
        ])
        .args(["--restore", &s3.uri("moved/"), "--"])
        .args(ARGS);
    assert_ok(&output(second));
    check_keyed_sum(&committed_lines(&dir.path().join("out")), 200_000, 40)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn unreachable_s3_for_restore_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s3 = S3Server::start();
    let mut cmd = weir_s3(dir.path(), &s3);
    let port = s3.port;
    drop(s3);
    cmd.args(["run", "keyed-sum", "--checkpoint-dir", "s3://weir/ckpt"])
        .args(["--restore", "latest", "--", "--records", "10"]);
    let out = output(cmd);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("checkpoint store: listing s3://weir/ckpt/keyed-sum/checkpoints/"),
        "{err}"
    );
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) || err.contains("onnect"),
        "{err}"
    );
}
