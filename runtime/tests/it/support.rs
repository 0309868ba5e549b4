//! Shared helpers: running the binary, reading outputs, the keyed-sum oracle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir_runtime::keys::mix;

/// This package's directory, as `cargo test` gives it to the tests it runs
/// (the path compiled in may be another checkout's: checkouts share a target
/// directory).
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The `weir` binary under test.
pub fn weir() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Runs `weir` with `args` in `dir` and returns its output.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    weir()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("weir runs")
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the run succeeded, showing stderr if not.
pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "weir failed: {}", stderr(out));
}

/// Every committed line in `dir`'s part files, sorted; hidden files are ignored.
pub fn committed_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("part-") {
            let text = std::fs::read_to_string(entry.path()).expect("part file");
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

/// Names of hidden (uncommitted) files left in `dir`.
pub fn hidden_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The number of restarts in `weir run`'s summary line.
pub fn restarts(out: &Output) -> u32 {
    let text = stderr(out);
    let line = text
        .lines()
        .find(|l| l.contains(" finished in "))
        .expect("summary line");
    let before = line.split(" restarts").next().expect("restarts field");
    before
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("restart count")
}

/// How many of a run's restarts resumed from a completed checkpoint (rather
/// than from the start), as its log says.
pub fn restarts_from_checkpoints(out: &Output) -> usize {
    stderr(out)
        .lines()
        .filter(|l| {
            l.contains("restarting from the latest checkpoint") && l.contains("from=checkpoint ")
        })
        .count()
}

/// Checks keyed-sum output against its definition: for every key, the emitted sums,
/// sorted, step up by exactly the values of that key's records, each once.
/// Returns a description of the first violation.
pub fn check_keyed_sum(lines: &[String], records: u64, keys: u64) -> Result<(), String> {
    let mut sums: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for line in lines {
        let (k, s) = line
            .split_once(',')
            .ok_or_else(|| format!("bad line {line:?}"))?;
        let k: u64 = k.parse().map_err(|_| format!("bad key in {line:?}"))?;
        let s: u64 = s.parse().map_err(|_| format!("bad sum in {line:?}"))?;
        sums.entry(k).or_default().push(s);
    }
    let mut values: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for i in 0..records {
        values.entry((mix(i) >> 1) % keys).or_default().push(i);
    }
    for (key, mut expected) in values {
        let mut got = sums.remove(&key).unwrap_or_default();
        got.sort_unstable();
        let mut steps: Vec<u64> = got
            .iter()
            .scan(0u64, |prev, s| {
                let step = s.wrapping_sub(*prev);
                *prev = *s;
                Some(step)
            })
            .collect();
        steps.sort_unstable();
        expected.sort_unstable();
        if steps != expected {
            return Err(format!(
                "key {key}: {} sums emitted for {} records (lost or repeated records)",
                got.len(),
                expected.len()
            ));
        }
    }
    if let Some(k) = sums.keys().next() {
        return Err(format!("sums for key {k}, which has no records"));
    }
    Ok(())
}

/// Checks keyed-sum output of a run that did not finish: for every key, the
/// emitted sums, sorted, step up by values of that key's records, each at most
/// once, and by nothing else (nothing duplicated, nothing invented).
/// Returns a description of the first violation.
pub fn check_keyed_sum_prefix(lines: &[String], records: u64, keys: u64) -> Result<(), String> {
    let mut sums: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for line in lines {
        let (k, s) = line
            .split_once(',')
            .ok_or_else(|| format!("bad line {line:?}"))?;
        let k: u64 = k.parse().map_err(|_| format!("bad key in {line:?}"))?;
        let s: u64 = s.parse().map_err(|_| format!("bad sum in {line:?}"))?;
        sums.entry(k).or_default().push(s);
    }
    let mut values: BTreeMap<u64, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for i in 0..records {
        values.entry((mix(i) >> 1) % keys).or_default().insert(i);
    }
    for (key, mut got) in sums {
        got.sort_unstable();
        let mut left = values.remove(&key).unwrap_or_default();
        let mut prev = 0u64;
        for s in got {
            let step = s.wrapping_sub(prev);
            if !left.remove(&step) {
                return Err(format!(
                    "key {key}: sum {s} steps up by {step}, which is not an unused value of the key (a duplicate or an invented record)"
                ));
            }
            prev = s;
        }
    }
    Ok(())
}

/// Completed checkpoint directories (`chk-N` with a `_metadata`) of every
/// deployment under the job directory `dir` (`{checkpoint dir}/{job}`), oldest first.
pub fn completed_checkpoints(dir: &Path) -> Vec<std::path::PathBuf> {
    let deployments: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join("checkpoints"))
                .collect()
        })
        .unwrap_or_default();
    let mut done: Vec<(u64, std::path::PathBuf)> = deployments
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.join("_metadata").exists())
        .filter_map(|p| {
            let id = p
                .file_name()?
                .to_str()?
                .strip_prefix("chk-")?
                .parse()
                .ok()?;
            Some((id, p))
        })
        .collect();
    done.sort();
    done.into_iter().map(|(_, p)| p).collect()
}

/// Waits (at most 30 s) until the job directory `dir` holds `n` completed
/// checkpoints; returns the newest.
pub fn wait_for_checkpoints(dir: &Path, n: usize) -> std::path::PathBuf {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let done = completed_checkpoints(dir);
        if done.len() >= n {
            return done.last().cloned().expect("n >= 1");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {n} checkpoints in {} after 30 s",
            dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `lines` as owned strings, sorted (as `committed_lines` returns them).
pub fn sorted_lines(lines: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    lines.sort();
    lines
}

/// Runs `weir` in `dir` with `args`, then `more`.
pub fn run_args(dir: &Path, args: &[String], more: &[&str]) -> Output {
    let all: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect();
    run_in(dir, &all)
}

/// The savepoint `weir` said it stopped with.
pub fn savepoint_of(out: &Output) -> String {
    let err = stderr(out);
    err.lines()
        .find_map(|l| l.strip_prefix("weir: stopped with savepoint "))
        .unwrap_or_else(|| panic!("no savepoint in: {err}"))
        .trim()
        .to_string()
}

/// Runs `weir` in `dir` with `args` at parallelism 1, checkpointing every
/// 200 ms, stopping with a savepoint after 1 s, then `more`; the savepoint.
pub fn stop_with_savepoint(dir: &Path, args: &[String], more: &[&str]) -> String {
    let mut all = vec![
        "-p",
        "1",
        "--checkpoint-interval",
        "200ms",
        "--stop-with-savepoint-after",
        "1s",
    ];
    all.extend_from_slice(more);
    let stopped = run_args(dir, args, &all);
    assert_ok(&stopped);
    savepoint_of(&stopped)
}
