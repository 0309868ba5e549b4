//! Bad input gets one clear line on stderr, a non-zero exit, and no visible output.

use std::fs;
use std::path::Path;

use crate::support::{assert_ok, committed_lines, run_in, stderr};

/// Asserts a failed run printed exactly one line containing every one of `needles`.
fn assert_one_line_error(out: &std::process::Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected, got: {err}"
    );
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
}

fn no_visible_output(dir: &Path) {
    let out = dir.join("out");
    if out.exists() {
        assert!(
            committed_lines(&out).is_empty(),
            "records visible in --output"
        );
    }
}

/// Runs wordcount on `input` with the file sink in `out`.
fn wordcount(dir: &Path, input: &str) -> std::process::Output {
    run_in(
        dir,
        &[
            "run",
            "wordcount",
            "--",
            "--input",
            input,
            "--output",
            "out",
        ],
    )
}

#[test]
fn a_missing_input_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = wordcount(dir.path(), "nope.txt");
    assert_one_line_error(&out, 2, &["nope.txt", "No such file"]);
    no_visible_output(dir.path());
}

#[test]
fn an_input_that_is_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("texts")).unwrap();
    let out = wordcount(dir.path(), "texts");
    assert_one_line_error(&out, 2, &["texts", "directory"]);
    no_visible_output(dir.path());
}

#[test]
fn an_input_that_is_not_text_fails_without_retrying_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("bin.txt"),
        [b'o', b'k', b'\n', 0xff, 0xfe, b'\n'],
    )
    .unwrap();
    let out = wordcount(dir.path(), "bin.txt");
    assert_one_line_error(&out, 1, &["bin.txt", "UTF-8"]);
    no_visible_output(dir.path());
}

#[test]
fn an_unknown_pipeline_lists_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["run", "nope"]);
    assert_one_line_error(&out, 2, &["unknown pipeline \"nope\"", "keyed-sum"]);
}

#[test]
fn an_unknown_pipeline_argument_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["run", "keyed-sum", "--", "--bogus", "1"]);
    assert_one_line_error(&out, 2, &["keyed-sum", "--bogus"]);
    let out = run_in(dir.path(), &["run", "keyed-sum", "--", "--rate", "0"]);
    assert_one_line_error(&out, 2, &["--rate", "positive"]);
}

/// Runs keyed-sum once so that `dir` holds a retained checkpoint; returns its directory.
fn checkpointed_run(dir: &Path) -> std::path::PathBuf {
    let out = run_in(
        dir,
        &[
            "run",
            "keyed-sum",
            "--",
            "--records",
            "5000",
            "--keys",
            "10",
            "--output",
            "out",
        ],
    );
    assert_ok(&out);
    let latest = crate::support::completed_checkpoints(&dir.join(".weir/checkpoints/keyed-sum"))
        .pop()
        .unwrap();
    assert!(latest.join("_metadata").exists());
    latest
}

#[test]
fn a_damaged_metadata_given_explicitly_is_named_with_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let chk = checkpointed_run(dir.path());
    let meta = chk.join("_metadata");
    let text = fs::read_to_string(&meta).unwrap();
    fs::write(&meta, &text[..text.len() / 2]).unwrap();
    let out = run_in(
        dir.path(),
        &[
            "run",
            "keyed-sum",
            "--restore",
            chk.to_str().unwrap(),
            "--",
            "--records",
            "5000",
            "--keys",
            "10",
            "--output",
            "out2",
        ],
    );
    assert_one_line_error(&out, 1, &["_metadata", "not valid checkpoint metadata"]);
    no_visible_output(&dir.path().join("out2"));
}

#[test]
fn a_truncated_state_file_given_explicitly_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let chk = checkpointed_run(dir.path());
    let state = chk.join("sum/0/state");
    let bytes = fs::read(&state).unwrap();
    fs::write(&state, &bytes[..bytes.len() / 2]).unwrap();
    let out = run_in(
        dir.path(),
        &[
            "run",
            "keyed-sum",
            "--restore",
            chk.to_str().unwrap(),
            "--",
            "--records",
            "5000",
            "--keys",
            "10",
        ],
    );
    assert_one_line_error(&out, 1, &["sum/0/state", "truncated"]);
}

#[test]
fn a_directory_without_metadata_is_not_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &[
            "run",
            "keyed-sum",
            "--restore",
            "somewhere",
            "--",
            "--records",
            "10",
        ],
    );
    assert_one_line_error(&out, 1, &["somewhere", "no _metadata"]);
}
