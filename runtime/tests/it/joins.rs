//! Two-input operators: an interval join of two keyed streams with out-of-order
//! event times gives exactly the pairs its definition names, each once, in one
//! process and across two data planes, through failures.

use std::path::Path;
use std::time::Duration;

use weir_runtime::api::{JobBuilder, JobGraph};
use weir_runtime::exec::runner::LocalRunner;
use weir_runtime::keys::mix;
use weir_runtime::operators::{FileSink, LineFormat, SequenceSource, WatermarkStrategy};

use crate::data_plane::run_on_two_workers;
use crate::engine::{config, PacedSource};
use crate::support::committed_lines;

const N: u64 = 4000;
const KEYS: u64 = 10;
/// Records of a side come up to this much out of order (ms).
const JITTER: u64 = 40;

/// Record `i` of a side with `spacing` ms between records: `(key, ts, i)`.
fn record(i: u64, spacing: i64, salt: u64) -> (u64, i64, u64) {
    let ts = i as i64 * spacing - (mix(i ^ salt) % JITTER) as i64;
    (i % KEYS, ts, i)
}

fn pair(p: &(u64, u64), out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{},{}", p.0, p.1).as_bytes());
}

/// Left records every 10 ms, right ones every 7 ms, joined where
/// `left.ts - 30 <= right.ts <= left.ts + 50`.
fn interval_join(out: &Path, parallelism: u32) -> JobGraph {
    let mut job = JobBuilder::new("interval-join");
    job.parallelism(parallelism);
    let strategy = || {
        WatermarkStrategy::bounded_out_of_orderness(
            Duration::from_millis(JITTER),
            |r: &(u64, i64, u64)| r.1,
        )
        .with_interval(Duration::from_millis(5))
    };
    let left = job
        .source("left", |_| {
            PacedSource::new(SequenceSource::new(0..N), Duration::from_millis(5))
        })
        .map("left-records", |i| record(i, 10, 1))
        .assign_watermarks("left-time", strategy())
        .key_by(|r: &(u64, i64, u64)| r.0);
    let right = job
        .source("right", |_| {
            PacedSource::new(SequenceSource::new(0..N), Duration::from_millis(5))
        })
        .map("right-records", |i| record(i, 7, 2))
        .assign_watermarks("right-time", strategy())
        .key_by(|r: &(u64, i64, u64)| r.0);
    let out = out.to_path_buf();
    left.connect(right)
        .interval_join(
            "join",
            Duration::from_millis(30),
            Duration::from_millis(50),
            |l: &(u64, i64, u64)| l.1,
            |r: &(u64, i64, u64)| r.1,
            |_, l, r| (l.2, r.2),
        )
        .sink("out", move |_| {
            FileSink::new(out.clone(), pair as LineFormat<(u64, u64)>)
        });
    job.build().unwrap()
}

/// Every pair the join's definition names, as sorted lines.
fn expected_pairs() -> Vec<String> {
    let left: Vec<_> = (0..N).map(|i| record(i, 10, 1)).collect();
    let right: Vec<_> = (0..N).map(|i| record(i, 7, 2)).collect();
    let mut lines = Vec::new();
    for l in &left {
        for r in right.iter().filter(|r| r.0 == l.0) {
            if l.1 - 30 <= r.1 && r.1 <= l.1 + 50 {
                lines.push(format!("{},{}", l.2, r.2));
            }
        }
    }
    lines.sort();
    lines
}

#[test]
fn an_interval_join_emits_each_matching_pair_once_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cfg = config(&dir.path().join("chk"));
    cfg.inject_failures = 2;
    cfg.exec.batch_size = 16;
    let summary = LocalRunner::new(interval_join(&out, 2), cfg)
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(summary.restarts, 2);
    let expected = expected_pairs();
    assert!(expected.len() > 1000, "{} pairs", expected.len());
    assert_eq!(committed_lines(&out), expected);
}

#[test]
fn an_interval_join_across_two_data_planes_survives_failures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    assert_eq!(
        run_on_two_workers(interval_join(&out, 2), dir.path(), 2, 16),
        2
    );
    assert_eq!(committed_lines(&out), expected_pairs());
}
