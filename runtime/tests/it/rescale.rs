//! Rescaling: savepoints and retained checkpoints restored at another parallelism,
//! on the heap and on RocksDB, and savepoints moved between the two backends.

use std::path::Path;
use std::process::Stdio;

use crate::s3_server::S3Server;
use crate::support::{
    assert_ok, check_keyed_sum, committed_lines, stderr, wait_for_checkpoints, weir,
};

/// Where checkpoints and savepoints go: local files, or a real S3 server.
enum Storage {
    Local,
    S3(S3Server),
}

impl Storage {
    /// `weir` in `dir`, with its checkpoint directory (and AWS client) set.
    fn weir(&self, dir: &Path) -> std::process::Command {
        let mut cmd = weir();
        cmd.current_dir(dir);
        if let Storage::S3(s3) = self {
            s3.env(&mut cmd);
        }
        cmd
    }

    fn options(&self) -> Vec<String> {
        match self {
            Storage::Local => Vec::new(),
            Storage::S3(s3) => vec!["--checkpoint-dir".into(), s3.uri("ckpt")],
        }
    }
}

fn run_in(storage: &Storage, dir: &Path, args: &[&str]) -> std::process::Output {
    storage.weir(dir).args(args).output().expect("weir runs")
}

const RECORDS: u64 = 200_000;
const KEYS: u64 = 50;

/// keyed-sum's pipeline arguments, writing to `out`.
fn args(out: &str) -> Vec<String> {
    [
        "--records",
        &RECORDS.to_string(),
        "--rate",
        "60000",
        "--keys",
        &KEYS.to_string(),
        "--output",
        out,
    ]
    .map(str::to_string)
    .to_vec()
}

/// Runs keyed-sum at `parallelism` on `backend` and stops it with a savepoint
/// in `format` after a second; returns the savepoint's directory URI.
fn stop_with_savepoint(
    storage: &Storage,
    dir: &Path,
    backend: &str,
    parallelism: &str,
    format: &str,
) -> String {
    let mut cmd: Vec<String> = [
        "run",
        "keyed-sum",
        "-p",
        parallelism,
        "--state-backend",
        backend,
        "--checkpoint-interval",
        "300ms",
        "--stop-with-savepoint-after",
        "1s",
        "--savepoint-format",
        format,
    ]
    .map(str::to_string)
    .to_vec();
    cmd.extend(storage.options());
    cmd.push("--".into());
    cmd.extend(args("out"));
    let out = run_in(
        storage,
        dir,
        &cmd.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_ok(&out);
    let err = stderr(&out);
    let uri = err
        .lines()
        .find_map(|l| l.strip_prefix("weir: stopped with savepoint "))
        .unwrap_or_else(|| panic!("no savepoint in: {err}"));
    uri.trim().to_string()
}

/// Restores `from` at `parallelism` on `backend`, writing into `out` under `dir`, to the end.
fn restore(
    storage: &Storage,
    dir: &Path,
    backend: &str,
    parallelism: &str,
    from: &str,
    out: &str,
) -> String {
    let mut cmd: Vec<String> = [
        "run",
        "keyed-sum",
        "-p",
        parallelism,
        "--state-backend",
        backend,
        "--checkpoint-interval",
        "300ms",
        "--restore",
        from,
    ]
    .map(str::to_string)
    .to_vec();
    cmd.extend(storage.options());
    cmd.push("--".into());
    cmd.extend(args(out));
    let result = run_in(
        storage,
        dir,
        &cmd.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_ok(&result);
    stderr(&result)
}

/// Copies the committed part files of `from` into a new directory `to`.
fn copy_output(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("output").flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("part-") {
            std::fs::copy(entry.path(), to.join(name)).expect("copy");
        }
    }
}

fn check(dir: &Path) {
    check_keyed_sum(&committed_lines(dir), RECORDS, KEYS).unwrap_or_else(|e| panic!("{e}"));
}

/// Parallelism 2 → savepoint in `format` → 3, and the same savepoint → 1.
fn rescale_through_a_savepoint(storage: &Storage, backend: &str, format: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let savepoint = stop_with_savepoint(storage, dir.path(), backend, "2", format);
    let first = committed_lines(&dir.path().join("out"));
    assert!(
        !first.is_empty() && first.len() < RECORDS as usize,
        "stopped mid-run: {} lines",
        first.len()
    );
    copy_output(&dir.path().join("out"), &dir.path().join("out-1"));
    restore(storage, dir.path(), backend, "3", &savepoint, "out");
    check(&dir.path().join("out"));
    restore(storage, dir.path(), backend, "1", &savepoint, "out-1");
    check(&dir.path().join("out-1"));
}

#[test]
fn a_heap_savepoint_restores_at_three_and_at_one_exactly_once() {
    rescale_through_a_savepoint(&Storage::Local, "heap", "native");
}

#[test]
fn a_native_rocksdb_savepoint_in_s3_restores_at_three_and_at_one_exactly_once() {
    rescale_through_a_savepoint(&Storage::S3(S3Server::start()), "rocksdb", "native");
}

#[test]
fn a_canonical_rocksdb_savepoint_restores_at_three_and_at_one_exactly_once() {
    rescale_through_a_savepoint(&Storage::Local, "rocksdb", "canonical");
}

/// The RocksDB files `_metadata` in savepoint directory `dir` lists, as
/// (shared, path) pairs.
fn rocksdb_files(dir: &Path) -> Vec<(bool, String)> {
    let text = std::fs::read_to_string(dir.join("_metadata")).expect("_metadata");
    let metadata: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let mut files = Vec::new();
    for op in metadata["operators"].as_array().expect("operators") {
        for st in op["subtasks"].as_array().expect("subtasks") {
            for f in st["rocksdb"]["files"].as_array().into_iter().flatten() {
                let path = f["path"].as_str().expect("path").to_string();
                files.push((f["shared"].as_bool().expect("shared"), path));
            }
        }
    }
    files
}

/// A native savepoint holds RocksDB's files, the ones copied from the job's
/// `shared/` included: moved elsewhere, with the job's checkpoints (and so its
/// shared files) deleted, it restores at parallelism 3 exactly once.
#[test]
fn a_native_rocksdb_savepoint_is_self_contained() {
    let dir = tempfile::tempdir().expect("temp dir");
    let uri = stop_with_savepoint(&Storage::Local, dir.path(), "rocksdb", "2", "native");
    let original = Path::new(uri.strip_prefix("file://").expect("a file URI")).to_path_buf();
    let files = rocksdb_files(&original);
    assert!(
        files.iter().any(|(_, p)| p.ends_with(".sst")),
        "no SST file in {files:?}"
    );
    assert!(
        files
            .iter()
            .all(|(shared, p)| !shared && original.join(p).is_file()),
        "a file outside the savepoint: {files:?}"
    );
    let moved = dir.path().join("moved-savepoint");
    std::fs::rename(&original, &moved).expect("move the savepoint");
    std::fs::remove_dir_all(dir.path().join(".weir/checkpoints")).expect("delete checkpoints");
    restore(
        &Storage::Local,
        dir.path(),
        "rocksdb",
        "3",
        moved.to_str().expect("UTF-8"),
        "out",
    );
    check(&dir.path().join("out"));
}

#[test]
fn a_canonical_savepoint_holds_no_rocksdb_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let uri = stop_with_savepoint(&Storage::Local, dir.path(), "rocksdb", "2", "canonical");
    let files = rocksdb_files(Path::new(uri.strip_prefix("file://").expect("a file URI")));
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn savepoints_move_between_the_heap_and_rocksdb() {
    for (from, to) in [("heap", "rocksdb"), ("rocksdb", "heap")] {
        let dir = tempfile::tempdir().expect("temp dir");
        let savepoint = stop_with_savepoint(&Storage::Local, dir.path(), from, "2", "native");
        restore(&Storage::Local, dir.path(), to, "2", &savepoint, "out");
        check(&dir.path().join("out"));
    }
}

#[test]
fn a_retained_rocksdb_checkpoint_restores_at_another_parallelism_after_a_kill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd: Vec<String> = [
        "run",
        "keyed-sum",
        "-p",
        "2",
        "--state-backend",
        "rocksdb",
        "--checkpoint-interval",
        "200ms",
        "--",
    ]
    .map(str::to_string)
    .to_vec();
    cmd.extend(args("out"));
    let mut child = weir()
        .current_dir(dir.path())
        .args(&cmd)
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    let checkpoints = dir.path().join(".weir/checkpoints/keyed-sum");
    wait_for_checkpoints(&checkpoints, 3);
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    let err = restore(&Storage::Local, dir.path(), "rocksdb", "3", "latest", "out");
    assert!(err.contains(" 0 restarts"), "{err}");
    check(&dir.path().join("out"));
}
