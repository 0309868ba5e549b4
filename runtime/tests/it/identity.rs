//! Job identity through the `weir` binary: a run restores only what it is told to
//! or what its own deployment wrote; `--restore latest` honours a stop savepoint;
//! reads that fail are waited for, never taken for damage; `weir checkpoints`
//! shows what a restore would pick.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    assert_ok, check_keyed_sum, committed_lines, completed_checkpoints, restarts, run_in, stderr,
    wait_for_checkpoints, weir,
};

/// Where `weir run` keeps keyed-sum's deployments, under the test's directory.
const JOB_DIR: &str = ".weir/checkpoints/keyed-sum";

/// keyed-sum at parallelism 2 with `options`, then `-- pipeline` arguments.
fn keyed_sum(dir: &Path, options: &[&str], pipeline: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "keyed-sum", "-p", "2"];
    args.extend_from_slice(options);
    args.push("--");
    args.extend_from_slice(pipeline);
    run_in(dir, &args)
}

#[test]
fn a_rerun_that_fails_before_its_first_checkpoint_starts_over_from_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = ["--records", "20000", "--keys", "10"];
    let first = keyed_sum(
        dir.path(),
        &["--checkpoint-interval", "100ms"],
        &[&data[..], &["--output", "first"]].concat(),
    );
    assert_ok(&first);
    // The same job again in the same checkpoint directory: a failure comes before
    // its only (final) checkpoint. It must not resume from the first run's.
    let second = keyed_sum(
        dir.path(),
        &[
            "--checkpoint-interval",
            "off",
            "--inject-failures",
            "1",
            "--seed",
            "3",
        ],
        &[&data[..], &["--rate", "10000", "--output", "second"]].concat(),
    );
    assert_ok(&second);
    assert_eq!(restarts(&second), 1, "{}", stderr(&second));
    check_keyed_sum(&committed_lines(&dir.path().join("second")), 20_000, 10)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn restore_latest_resumes_from_the_stop_savepoint_not_an_older_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = [
        "--records",
        "200000",
        "--rate",
        "50000",
        "--keys",
        "40",
        "--output",
        "out",
    ];
    let stopped = keyed_sum(
        dir.path(),
        &[
            "--checkpoint-interval",
            "200ms",
            "--stop-with-savepoint-after",
            "1500ms",
        ],
        &data,
    );
    assert_ok(&stopped);
    assert!(
        stderr(&stopped).contains("stopped with savepoint"),
        "{}",
        stderr(&stopped)
    );
    let resumed = keyed_sum(
        dir.path(),
        &["--checkpoint-interval", "200ms", "--restore", "latest"],
        &data,
    );
    assert_ok(&resumed);
    check_keyed_sum(&committed_lines(&dir.path().join("out")), 200_000, 40)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_fresh_run_into_a_directory_with_committed_output_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = ["--records", "5000", "--keys", "10", "--output", "out"];
    assert_ok(&keyed_sum(dir.path(), &[], &data));
    let before = committed_lines(&dir.path().join("out"));
    let again = keyed_sum(dir.path(), &[], &data);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    let err = stderr(&again);
    assert!(
        err.contains("holds committed output") && err.contains("--restore latest"),
        "{err}"
    );
    assert_eq!(
        committed_lines(&dir.path().join("out")),
        before,
        "nothing added"
    );
}

#[test]
fn restoring_a_checkpoint_of_another_job_is_refused_naming_both() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert_ok(&keyed_sum(
        dir.path(),
        &[],
        &["--records", "1000", "--keys", "5"],
    ));
    let chk = completed_checkpoints(&dir.path().join(JOB_DIR))
        .pop()
        .expect("a checkpoint");
    std::fs::write(dir.path().join("words.txt"), "a b a\n").expect("input");
    let out = run_in(
        dir.path(),
        &[
            "run",
            "wordcount",
            "--restore",
            chk.to_str().expect("utf-8"),
            "--",
            "--input",
            "words.txt",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("checkpoint of job \"keyed-sum\", not of \"wordcount\""),
        "{err}"
    );
}

/// Starts keyed-sum as deployment `id`, kills it once `n` checkpoints completed.
fn killed_after(dir: &Path, id: &str, n: usize, data: &[&str]) {
    let mut child = weir()
        .current_dir(dir)
        .args([
            "run",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-interval",
            "200ms",
        ])
        .args(["--job-id", id, "--"])
        .args(data)
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    wait_for_checkpoints(&dir.join(JOB_DIR), n);
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
}

/// Follows a child's stderr until it contains `needle` (at most 30 s).
fn wait_for_log(child: &mut Child, needle: &str) -> std::sync::mpsc::Receiver<String> {
    let pipe = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return rx,
            Ok(_) => {}
            Err(_) => panic!("no log line with {needle:?} within 30 s"),
        }
    }
}

#[test]
fn a_state_file_that_cannot_be_read_is_waited_for_never_taken_for_damage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = [
        "--records",
        "200000",
        "--rate",
        "50000",
        "--keys",
        "40",
        "--output",
        "out",
    ];
    killed_after(dir.path(), "first", 3, &data);
    let latest = completed_checkpoints(&dir.path().join(JOB_DIR))
        .pop()
        .expect("a checkpoint");
    // Reading the latest checkpoint's state fails (EISDIR, as a refused or broken
    // read would), though nothing says the file is damaged.
    let state = latest.join("sum/0/state");
    let aside = dir.path().join("state.aside");
    std::fs::rename(&state, &aside).expect("move aside");
    std::fs::create_dir(&state).expect("a directory in its place");
    let mut restore = weir()
        .current_dir(dir.path())
        .args([
            "run",
            "keyed-sum",
            "-p",
            "2",
            "--checkpoint-interval",
            "200ms",
        ])
        .args(["--restore", "latest", "--"])
        .args(data)
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let log = wait_for_log(&mut restore, "waiting for checkpoint storage");
    // The read works again: the restore goes on from the latest checkpoint.
    std::fs::remove_dir(&state).expect("the directory goes");
    std::fs::rename(&aside, &state).expect("move back");
    let status = restore.wait().expect("weir exits");
    let rest: Vec<String> = log.try_iter().collect();
    assert!(status.success(), "{}", rest.join("\n"));
    assert!(
        !rest
            .iter()
            .any(|l| l.contains("skipping damaged checkpoint")),
        "a read that failed is no damage: {}",
        rest.join("\n")
    );
    check_keyed_sum(&committed_lines(&dir.path().join("out")), 200_000, 40)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn weir_checkpoints_lists_deployments_and_what_latest_picks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = ["--records", "200000", "--rate", "50000", "--keys", "40"];
    killed_after(dir.path(), "killed", 2, &data);
    let stopped = keyed_sum(
        dir.path(),
        &["--job-id", "stopped", "--stop-with-savepoint-after", "1s"],
        &data,
    );
    assert_ok(&stopped);
    let listing = run_in(dir.path(), &["checkpoints", "keyed-sum"]);
    assert_ok(&listing);
    let text = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(text.contains("deployment killed\n  chk-"), "{text}");
    assert!(
        text.contains("deployment stopped   <- --restore latest\n  stopped with savepoint"),
        "{text}"
    );
    let unknown = run_in(
        dir.path(),
        &["checkpoints", "keyed-sum", "--job-id", "nope"],
    );
    assert_eq!(unknown.status.code(), Some(2));
    let err = stderr(&unknown);
    assert!(
        err.contains("no deployment nope") && err.contains("killed, stopped"),
        "{err}"
    );
}
