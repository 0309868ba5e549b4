//! Checkpoints and savepoints in S3 (a real `s3s-fs` server on 127.0.0.1).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::s3_server::{S3Server, BUCKET};
use crate::support::{
    assert_ok, check_keyed_sum, check_keyed_sum_prefix, committed_lines, stderr, weir,
};

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

/// The completed checkpoints of keyed-sum's deployments under `prefix` in the
/// bucket, oldest first: their ids and the key prefix of their directories.
fn checkpoints(s3: &S3Server, prefix: &str) -> Vec<(u64, String)> {
    let job = format!("{prefix}/keyed-sum/");
    let mut done: Vec<(u64, String)> = s3
        .keys(&job)
        .iter()
        .filter_map(|k| {
            let dir = k.strip_suffix("_metadata")?;
            let (_, chk) = dir.trim_end_matches('/').rsplit_once("/checkpoints/chk-")?;
            Some((chk.parse().ok()?, dir.to_string()))
        })
        .collect();
    done.sort();
    done
}

/// Ids of the completed checkpoints of keyed-sum under `prefix` in the bucket.
fn completed(s3: &S3Server, prefix: &str) -> Vec<u64> {
    checkpoints(s3, prefix)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// The key prefix of keyed-sum's newest completed checkpoint under `prefix`.
fn latest_dir(s3: &S3Server, prefix: &str) -> String {
    checkpoints(s3, prefix).pop().expect("a checkpoint").1
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

/// Runs keyed-sum on `backend` with checkpoints in S3 under `prefix`, kills it
/// after `checkpoints` completed, and returns the directory of its output.
fn killed_run(s3: &S3Server, dir: &Path, backend: &str, prefix: &str, checkpoints: usize) {
    killed_run_when(s3, dir, backend, prefix, checkpoints, |_| true)
}

/// [`killed_run`], killing it only once `ready(newest completed id)` also holds.
fn killed_run_when(
    s3: &S3Server,
    dir: &Path,
    backend: &str,
    prefix: &str,
    checkpoints: usize,
    ready: impl Fn(u64) -> bool,
) {
    let mut first = weir_s3(dir, s3);
    first
        .args([
            "run",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-interval",
            "200ms",
        ])
        .args(["--state-backend", backend])
        .args(["--checkpoint-dir", &s3.uri(prefix), "--"])
        .args(ARGS)
        .stderr(Stdio::null());
    let mut child = first.spawn().expect("weir starts");
    wait_for_completed(s3, prefix, checkpoints, &mut child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !completed(s3, prefix).last().is_some_and(|id| ready(*id)) {
        assert!(Instant::now() < deadline, "never ready to be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
}

/// Restores the latest checkpoint under `prefix` on `backend` and runs to the end.
fn restore_latest(s3: &S3Server, dir: &Path, backend: &str, prefix: &str) -> Output {
    let mut second = weir_s3(dir, s3);
    second
        .args([
            "run",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-interval",
            "200ms",
        ])
        .args(["--state-backend", backend])
        .args([
            "--checkpoint-dir",
            &s3.uri(prefix),
            "--restore",
            "latest",
            "--",
        ])
        .args(ARGS);
    output(second)
}

#[test]
fn checkpoints_in_s3_restore_a_killed_run_exactly_once() {
    for backend in ["heap", "rocksdb"] {
        let s3 = S3Server::start();
        let dir = tempfile::tempdir().expect("temp dir");
        killed_run(&s3, dir.path(), backend, "ckpt", 2);
        assert_ok(&restore_latest(&s3, dir.path(), backend, "ckpt"));
        check_keyed_sum(&committed_lines(&dir.path().join("out")), 200_000, 40)
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        let mut per_deployment = std::collections::BTreeMap::<String, usize>::new();
        for (_, dir) in checkpoints(&s3, "ckpt") {
            let deployment = dir.split("/checkpoints/").next().expect("a deployment");
            *per_deployment.entry(deployment.to_string()).or_default() += 1;
        }
        assert!(
            per_deployment.len() == 2 && per_deployment.values().all(|n| *n <= 3),
            "each deployment's retention keeps 3: {per_deployment:?}"
        );
    }
}

/// Shared files referred to by the `_metadata` of the checkpoints under `prefix`
/// (of its one deployment).
fn referenced_shared(s3: &S3Server, prefix: &str) -> std::collections::BTreeSet<String> {
    let mut referenced = std::collections::BTreeSet::new();
    for (_, dir) in checkpoints(s3, prefix) {
        let key = format!("{dir}_metadata");
        let deployment = dir.split("/checkpoints/").next().expect("a deployment");
        let meta: serde_json::Value =
            serde_json::from_slice(&s3.read(&key)).expect("_metadata is JSON");
        for op in meta["operators"].as_array().expect("operators") {
            for st in op["subtasks"].as_array().expect("subtasks") {
                for f in st["rocksdb"]["files"].as_array().into_iter().flatten() {
                    if f["shared"] == true {
                        let path = f["path"].as_str().expect("path");
                        referenced.insert(format!("{deployment}/shared/{path}"));
                    }
                }
            }
        }
    }
    referenced
}

#[test]
fn incremental_checkpoints_share_files_and_retention_deletes_the_rest() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = weir_s3(dir.path(), &s3);
    cmd.args(["run", "keyed-sum", "--checkpoint-interval", "100ms"])
        .args(["--state-backend", "rocksdb", "--retained", "3"])
        .args(["--checkpoint-dir", &s3.uri("ckpt"), "--"])
        .args(["--records", "300000", "--rate", "100000", "--keys", "5000"]);
    let out = output(cmd);
    assert_ok(&out);
    let err = stderr(&out);
    let made: u64 = err
        .split(" checkpoints (")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint count in {err}"));
    assert!(made >= 10, "many checkpoints: {made}");
    let retained = completed(&s3, "ckpt");
    assert_eq!(retained.len(), 3, "{retained:?}");
    let stored: std::collections::BTreeSet<String> = s3
        .keys("ckpt/keyed-sum/")
        .into_iter()
        .filter(|k| k.contains("/shared/"))
        .collect();
    let referenced = referenced_shared(&s3, "ckpt");
    assert!(!stored.is_empty());
    assert_eq!(
        stored, referenced,
        "shared/ holds exactly what retained checkpoints refer to"
    );
    // Incremental: some retained checkpoint uploaded less than it refers to.
    let reused = checkpoints(&s3, "ckpt").iter().any(|(_, dir)| {
        let key = format!("{dir}_metadata");
        let meta: serde_json::Value = serde_json::from_slice(&s3.read(&key)).expect("JSON");
        let uploaded = meta["uploaded_bytes"].as_u64().expect("uploaded_bytes");
        let total: u64 = meta["operators"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|op| op["subtasks"].as_array().into_iter().flatten())
            .flat_map(|st| st["rocksdb"]["files"].as_array().into_iter().flatten())
            .filter_map(|f| f["size"].as_u64())
            .sum();
        uploaded < total
    });
    assert!(reused, "no retained checkpoint reused a file");
}

#[test]
fn a_damaged_latest_checkpoint_is_never_passed_over_to_rewrite_committed_output() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    // Killed once the sink committed the newest checkpoint's output.
    let out = dir.path().join("out");
    let committed = |id: u64| {
        std::fs::read_dir(&out)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .ends_with(&format!("-{id:010}"))
            })
    };
    killed_run_when(&s3, dir.path(), "rocksdb", "ckpt", 3, committed);
    let before = committed_lines(&dir.path().join("out"));
    // Truncate a file only the latest checkpoint has: its MANIFEST.
    let manifest = s3
        .keys(&latest_dir(&s3, "ckpt"))
        .into_iter()
        .find(|k| k.contains("/rocksdb/MANIFEST-"))
        .expect("a MANIFEST in the latest checkpoint");
    s3.truncate(&manifest);
    let out = restore_latest(&s3, dir.path(), "rocksdb", "ckpt");
    let err = stderr(&out);
    // The damage is found and said; the previous checkpoint is older than output
    // the sink committed for the damaged one, so the job stops rather than write
    // those records again.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("skipping damaged checkpoint") && err.contains(&manifest),
        "a warning naming the file: {err}"
    );
    assert!(
        err.contains("replaying from there would write those records again"),
        "{err}"
    );
    assert_eq!(
        committed_lines(&dir.path().join("out")),
        before,
        "nothing written again"
    );
    check_keyed_sum_prefix(&before, 200_000, 40).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_get_that_fails_is_waited_for_never_taken_for_damage() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    killed_run(&s3, dir.path(), "heap", "ckpt", 3);
    // Every GET of the latest checkpoint's state fails (500s) while its listing
    // looks as always: storage trouble, not damage.
    let state = format!("{}sum/0/state", latest_dir(&s3, "ckpt"));
    s3.fail_reads(&state);
    let mut restore = weir_s3(dir.path(), &s3);
    restore
        .args([
            "run",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-interval",
            "200ms",
        ])
        .args(["--checkpoint-dir", &s3.uri("ckpt"), "--restore", "latest"])
        .args(["--storage-wait", "5m", "--"])
        .args(ARGS)
        .stderr(Stdio::piped());
    let mut child = restore.spawn().expect("weir starts");
    let log = StderrLog::follow(&mut child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !log.contains("waiting for checkpoint storage") {
        assert!(Instant::now() < deadline, "no wait: {}", log.text());
        assert!(child.try_wait().expect("wait").is_none(), "{}", log.text());
        std::thread::sleep(Duration::from_millis(50));
    }
    s3.mend_reads(&state);
    let status = child.wait().expect("weir exits");
    let err = log.finish();
    assert!(status.success(), "{err}");
    assert!(!err.contains("skipping damaged checkpoint"), "{err}");
    check_keyed_sum(&committed_lines(&dir.path().join("out")), 200_000, 40)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn an_explicitly_requested_damaged_savepoint_is_an_error() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = weir_s3(dir.path(), &s3);
    first
        .args(["run", "keyed-sum", "-p", "2", "--state-backend", "rocksdb"])
        .args([
            "--checkpoint-dir",
            &s3.uri("ckpt"),
            "--stop-with-savepoint-after",
            "1s",
            "--",
        ])
        .args(ARGS);
    let out = output(first);
    assert_ok(&out);
    let savepoint = stderr(&out)
        .lines()
        .find_map(|l| l.strip_prefix("weir: stopped with savepoint "))
        .expect("a savepoint")
        .to_string();
    let key = savepoint
        .strip_prefix(&format!("s3://{BUCKET}/"))
        .expect("in the bucket");
    let state = s3
        .keys(key)
        .into_iter()
        // A native savepoint is flushed: the sums are in its SST files.
        .find(|k| k.contains("/sum/0/rocksdb/") && k.ends_with(".sst"))
        .expect("a data file of the sum's native savepoint");
    s3.truncate(&state);
    let mut again = weir_s3(dir.path(), &s3);
    again
        .args(["run", "keyed-sum", "-p", "2", "--state-backend", "rocksdb"])
        .args(["--restore", &savepoint, "--"])
        .args(ARGS);
    let out = output(again);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // The S3 client or the file checksum catches the damage; either way the
    // message names the savepoint's file.
    assert!(
        err.contains("damaged checkpoint") && err.contains(&state),
        "{err}"
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
        .args(["--storage-wait", "1s"])
        .args(["--restore", "latest", "--", "--records", "10"]);
    let out = output(cmd);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("checkpoint store: listing s3://weir/ckpt/keyed-sum/"),
        "{err}"
    );
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) || err.contains("onnect"),
        "{err}"
    );
}

/// `weir bench state-size` over 50,000 keys of 1,000 bytes in S3: each heap
/// subtask's checkpoint file (25 MB) goes up in parts sent several at once,
/// and every phase restores it, checking its size and checksum.
#[test]
fn state_files_larger_than_a_part_go_up_in_parts_and_restore_intact() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = weir_s3(dir.path(), &s3);
    cmd.args([
        "bench",
        "state-size",
        "--keys",
        "50000",
        "--value-bytes",
        "1000",
    ])
    .args(["--checkpoint-dir", &s3.uri("parts")]);
    let out = output(cmd);
    assert_ok(&out);
    let results = String::from_utf8_lossy(&out.stdout);
    assert_eq!(results.matches("RESULT").count(), 5, "{results}");
    let largest = s3
        .keys("parts/")
        .iter()
        .map(|k| s3.read(k).len())
        .max()
        .unwrap_or(0);
    assert!(
        largest > 16 << 20,
        "no object beyond one part: {largest} bytes"
    );
}
