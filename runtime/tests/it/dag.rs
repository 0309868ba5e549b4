//! Dataflow graphs beyond a line: a stream feeding several consumers (fan-out)
//! and streams of one type read as one (union), exactly once through failures,
//! in one process and across two data planes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use weir_runtime::api::{JobBuilder, JobGraph};
use weir_runtime::exec::runner::LocalRunner;
use weir_runtime::operators::{FileSink, LineFormat, SequenceSource};

use crate::data_plane::run_on_two_workers;
use crate::engine::{config, PacedSource};
use crate::support::{committed_lines, hidden_files};

fn number(n: &u64, out: &mut Vec<u8>) {
    out.extend_from_slice(n.to_string().as_bytes());
}

fn key_sum(r: &(u64, i64), out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{},{}", r.0, r.1).as_bytes());
}

/// The committed lines in `dir` as numbers, sorted; no hidden file may be left.
fn numbers(dir: &Path) -> Vec<u64> {
    assert!(hidden_files(dir).is_empty(), "{:?}", hidden_files(dir));
    let mut n: Vec<u64> = committed_lines(dir)
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    n.sort_unstable();
    n
}

/// Every key's sums, sorted, step up by exactly the values of its records, each once.
fn check_sums(lines: &[String], values: impl Iterator<Item = u64>, key: impl Fn(u64) -> u64) {
    let mut sums: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for line in lines {
        let (k, s) = line.split_once(',').unwrap();
        sums.entry(k.parse().unwrap())
            .or_default()
            .push(s.parse().unwrap());
    }
    let mut expected: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for v in values {
        expected.entry(key(v)).or_default().push(v as i64);
    }
    for (k, mut values) in expected {
        let mut got = sums.remove(&k).unwrap_or_default();
        got.sort_unstable();
        let mut steps: Vec<i64> = got
            .iter()
            .scan(0, |prev, s| {
                let step = s - *prev;
                *prev = *s;
                Some(step)
            })
            .collect();
        steps.sort_unstable();
        values.sort_unstable();
        assert_eq!(steps, values, "key {k}: records lost or repeated");
    }
    assert!(
        sums.is_empty(),
        "sums of keys without records: {:?}",
        sums.keys()
    );
}

/// Numbers 0..n, fanned out: evens to one sink, odds to another, all to a third.
fn fan_out(out: &Path, n: u64, parallelism: u32) -> JobGraph {
    let mut job = JobBuilder::new("fan-out");
    job.parallelism(parallelism);
    let numbers = job.source("numbers", move |_| {
        PacedSource::new(SequenceSource::new(0..n), Duration::from_millis(1))
    });
    let (evens, odds, all) = (out.join("evens"), out.join("odds"), out.join("all"));
    numbers
        .clone()
        .filter("keep-evens", |n: &u64| n.is_multiple_of(2))
        .sink("evens", move |_| {
            FileSink::new(evens.clone(), number as LineFormat<u64>)
        });
    numbers
        .clone()
        .filter("keep-odds", |n: &u64| !n.is_multiple_of(2))
        .rebalance()
        .sink("odds", move |_| {
            FileSink::new(odds.clone(), number as LineFormat<u64>)
        });
    numbers.sink("all", move |_| {
        FileSink::new(all.clone(), number as LineFormat<u64>)
    });
    job.build().unwrap()
}

fn check_fan_out(out: &Path, n: u64) {
    assert_eq!(
        numbers(&out.join("evens")),
        (0..n).filter(|x| x.is_multiple_of(2)).collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(&out.join("odds")),
        (0..n).filter(|x| !x.is_multiple_of(2)).collect::<Vec<_>>()
    );
    assert_eq!(numbers(&out.join("all")), (0..n).collect::<Vec<_>>());
}

/// Two sources of numbers, unioned, summed per key (`n % 10`).
fn union(out: &Path, parallelism: u32) -> JobGraph {
    let mut job = JobBuilder::new("union");
    job.parallelism(parallelism);
    let low = job.source("low", |_| {
        PacedSource::new(SequenceSource::new(0..20_000), Duration::from_millis(1))
    });
    let high = job
        .source("high", |_| {
            PacedSource::new(
                SequenceSource::new(100_000..110_000),
                Duration::from_millis(1),
            )
        })
        .map("shift", |n: u64| n + 1);
    let out = out.to_path_buf();
    low.union(high)
        .key_by(|n: &u64| n % 10)
        .sum("sum", |n: &u64| *n as i64)
        .sink("out", move |_| {
            FileSink::new(out.clone(), key_sum as LineFormat<(u64, i64)>)
        });
    job.build().unwrap()
}

fn check_union(out: &Path) {
    assert!(hidden_files(out).is_empty(), "{:?}", hidden_files(out));
    check_sums(
        &committed_lines(out),
        (0..20_000).chain(100_001..110_001),
        |n| n % 10,
    );
}

#[test]
fn a_stream_fanned_out_to_three_sinks_reaches_each_exactly_once_through_failures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cfg = config(dir.path());
    cfg.inject_failures = 3;
    cfg.seed = 5;
    cfg.exec.batch_size = 64;
    let summary = LocalRunner::new(fan_out(&out, 20_000, 2), cfg)
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(summary.restarts, 3);
    check_fan_out(&out, 20_000);
}

#[test]
fn a_union_of_two_sources_is_summed_exactly_once_through_failures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cfg = config(dir.path());
    cfg.inject_failures = 3;
    cfg.seed = 9;
    cfg.exec.batch_size = 64;
    let summary = LocalRunner::new(union(&out, 2), cfg)
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(summary.restarts, 3);
    check_union(&out);
}

#[test]
fn fan_out_and_union_across_two_data_planes_are_exactly_once_through_failures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fan");
    assert_eq!(
        run_on_two_workers(fan_out(&out, 20_000, 2), &dir.path().join("f"), 2, 16),
        2
    );
    check_fan_out(&out, 20_000);
    let out = dir.path().join("union");
    assert_eq!(
        run_on_two_workers(union(&out, 2), &dir.path().join("u"), 2, 16),
        2
    );
    check_union(&out);
}
