//! Count windows through failures: each key's records, in the order its one
//! upstream channel delivers them, cut into windows of `n`; the output is
//! identical to what the definition gives, each window once, in one process
//! and across two data planes.

use std::path::Path;
use std::time::Duration;

use weir_runtime::api::{JobBuilder, JobGraph};
use weir_runtime::exec::runner::LocalRunner;
use weir_runtime::operators::{FileSink, LineFormat, SequenceSource, WindowResult, Windows};

use crate::data_plane::run_on_two_workers;
use crate::engine::{config, PacedSource};
use crate::support::committed_lines;

const N: u64 = 4000;
const KEYS: u64 = 7;
const SIZE: u64 = 5;

fn window_line(w: &WindowResult<u64, i64>, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{},{},{},{}", w.key, w.start_ms, w.end_ms, w.value).as_bytes());
}

/// Numbers from one source subtask (so each key's order is its channel's),
/// summed per key in count windows of `SIZE` at parallelism 2.
fn count_windows(out: &Path) -> JobGraph {
    let mut job = JobBuilder::new("count-windows");
    job.parallelism(2);
    let out = out.to_path_buf();
    job.source("numbers", |_| {
        PacedSource::new(SequenceSource::new(0..N), Duration::from_millis(2))
    })
    .parallelism(1)
    .key_by(|n: &u64| n % KEYS)
    .window(Windows::count(SIZE))
    .sum("sums", |n: &u64| *n as i64)
    .sink("out", move |_| {
        FileSink::new(
            out.clone(),
            window_line as LineFormat<WindowResult<u64, i64>>,
        )
    });
    job.build().unwrap()
}

/// The full windows of each key: its `k`-th holds its records `k*SIZE ..`.
fn expected() -> Vec<String> {
    let mut lines = Vec::new();
    for key in 0..KEYS {
        let records: Vec<u64> = (0..N).filter(|n| n % KEYS == key).collect();
        for (k, window) in records.chunks_exact(SIZE as usize).enumerate() {
            let (start, end) = (k as u64 * SIZE, (k as u64 + 1) * SIZE);
            let sum: u64 = window.iter().sum();
            lines.push(format!("{key},{start},{end},{sum}"));
        }
    }
    lines.sort();
    lines
}

#[test]
fn count_windows_are_exactly_once_through_failures_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cfg = config(&dir.path().join("chk"));
    cfg.inject_failures = 2;
    cfg.exec.batch_size = 8;
    let summary = LocalRunner::new(count_windows(&out), cfg)
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(summary.restarts, 2);
    assert_eq!(committed_lines(&out), expected());
}

#[test]
fn count_windows_across_two_data_planes_survive_failures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    assert_eq!(run_on_two_workers(count_windows(&out), dir.path(), 2, 8), 2);
    assert_eq!(committed_lines(&out), expected());
}
