//! State TTL as a user sets it (`weir run keyed-sum --state-ttl`, and
//! `state-machine` for a process function): a key idle for longer than its TTL
//! starts over, on either backend, while one written within it goes on; a TTL cannot be added to state restored from a
//! checkpoint that had none, and a TTL of zero is refused.

use std::path::Path;

use crate::support::{assert_ok, run_in, stderr};

/// The lines of `dir`'s part files in the order they were written (one
/// subtask: part files by number, lines in order).
fn lines_in_order(dir: &Path) -> Vec<String> {
    let mut parts: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    parts.sort();
    parts
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

/// keyed-sum over one key with a TTL of 700 ms: 200 records at 1,000/s (1 ms
/// apart: each adds to the sum), then 3 at 0.5/s (2 s apart: each starts over,
/// its value alone). Record `i`'s value is `i`.
#[test]
fn a_key_idle_for_longer_than_its_ttl_starts_a_new_sum_on_either_backend() {
    let mut expected: Vec<String> = (0..200u64)
        .map(|i| format!("0,{}", i * (i + 1) / 2))
        .collect();
    expected.extend((200..203).map(|i| format!("0,{i}")));
    for backend in ["heap", "rocksdb"] {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            &[
                "run",
                "--state-backend",
                backend,
                "keyed-sum",
                "--",
                "--keys",
                "1",
                "--records",
                "203",
                "--rate",
                "1000",
                "--rate-change-at",
                "200",
                "--then-rate",
                "0.5",
                "--state-ttl",
                "700ms",
                "--output",
                "out",
            ],
        );
        assert_ok(&out);
        assert_eq!(
            lines_in_order(&dir.path().join("out")),
            expected,
            "{backend}"
        );
    }
}

/// state-machine (a keyed `process`) at 200 events/s, an address's events
/// about 300 ms apart, and no invalid events: with a TTL of 50 ms each address
/// is forgotten between its events, so its next one is checked from "Initial"
/// (every alert names that state); with a TTL of an hour none is, and nothing
/// alerts. The state and the timers of a process function live side by side:
/// on RocksDB the stamp sits after the value's tag.
#[test]
fn a_process_function_forgets_a_key_idle_for_longer_than_its_ttl_on_either_backend() {
    for backend in ["heap", "rocksdb"] {
        let mut alerts = Vec::new();
        for ttl in ["50ms", "1h"] {
            let dir = tempfile::tempdir().unwrap();
            let out = run_in(
                dir.path(),
                &[
                    "run",
                    "--state-backend",
                    backend,
                    "state-machine",
                    "--",
                    "--records",
                    "400",
                    "--rate",
                    "200",
                    "--state-ttl",
                    ttl,
                    "--output",
                    "out",
                ],
            );
            assert_ok(&out);
            alerts.push(lines_in_order(&dir.path().join("out")));
        }
        let (forgot, kept) = (&alerts[0], &alerts[1]);
        assert!(forgot.len() > 20, "{backend}: {forgot:?}");
        assert!(
            forgot.iter().all(|a| a.contains("Initial")),
            "{backend}: {forgot:?}"
        );
        assert!(kept.is_empty(), "{backend}: {kept:?}");
    }
}

#[test]
fn a_ttl_cannot_be_added_to_state_restored_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let sums = ["keyed-sum", "--", "--keys", "5", "--records", "1000"];
    assert_ok(&run_in(
        dir.path(),
        &[&["run"][..], &sums, &["--output", "out"]].concat(),
    ));
    let checkpoints = dir.path().join(".weir/checkpoints/keyed-sum");
    let deployment = std::fs::read_dir(&checkpoints)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let checkpoint = deployment.path().join("checkpoints/chk-1");
    assert!(checkpoint.is_dir(), "{checkpoint:?}");
    let restore = checkpoint.to_string_lossy().to_string();
    let out = run_in(
        dir.path(),
        &[
            &["run", "--restore", &restore][..],
            &sums,
            &["--output", "out", "--state-ttl", "1h"],
        ]
        .concat(),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("state of sum: the checkpoint holds its state without a TTL"),
        "{err}"
    );
    assert!(!err.contains("restarting"), "a restart cannot help: {err}");
}

#[test]
fn a_ttl_of_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &["run", "keyed-sum", "--", "--state-ttl", "0s", "--discard"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the TTL must be longer than zero"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_ttl_on_an_operator_that_does_not_take_one_is_refused_naming_it() {
    use std::time::Duration;
    use weir_runtime::api::JobBuilder;
    use weir_runtime::operators::{DiscardSink, SequenceSource, Windows};
    let job = JobBuilder::new("ttl");
    job.source("numbers", |_| SequenceSource::new(0..10u64))
        .key_by(|n: &u64| n % 3)
        .state_ttl(Duration::from_secs(60))
        .window(Windows::count(5))
        .count("count")
        .sink("out", |_| DiscardSink::new());
    let err = job.build().unwrap_err().to_string();
    assert!(
        err.contains("state_ttl applies to reduce, sum and process, not to windows"),
        "{err}"
    );
}
