//! The window operator driven by hand: records, watermarks and the clock in a
//! chosen order, on both backends.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::data::{Batch, Watermark};
use crate::ids::{OperatorUid, Subtask};
use crate::keys::KeyGroupRange;
use crate::operator::{Operator, OperatorContext};
use crate::operators::window::{Aggregated, Count, WindowResult};
use crate::operators::KeyedProcessOperator;
use crate::state::{Backend, StateConfig};

type Record = (u64, EventTime);
type Out = Tagged<WindowResult<u64, u64>, Record>;

fn operator(
    windows: Windows<Record>,
    backend: Backend,
    dir: &std::path::Path,
) -> KeyedProcessOperator<WindowProcess<Record, u64, Aggregated<Count>>> {
    let process = WindowProcess::new(windows, Arc::new(Aggregated(Count)), true);
    let mut op =
        KeyedProcessOperator::new(Arc::new(process), Arc::new(|r: &Record| Cow::Owned(r.0)));
    let ctx = OperatorContext {
        job: "job".into(),
        uid: OperatorUid("w".into()),
        name: "w".into(),
        subtask: Subtask {
            index: 0,
            parallelism: 1,
        },
        max_parallelism: 8,
        key_groups: KeyGroupRange { start: 0, end: 8 },
        attempt: 1,
        state: StateConfig {
            backend,
            local_dir: dir.to_path_buf(),
            cache_bytes: 1 << 20,
            rocksdb_bytes: 8 << 20,
        },
        checkpoint_interval: None,
        metrics: Default::default(),
    };
    op.open(&ctx, None).unwrap();
    op
}

/// Feeds `records`, then the watermark `watermark`; returns what came out, as
/// `(key, start, count)` for results and `(key, -time, 0)` for late records.
fn step<O: Operator<In = Record, Out = Out>>(
    op: &mut O,
    records: &[Record],
    watermark: EventTime,
) -> Vec<(u64, i64, u64)> {
    let mut out: Batch<Out> = Vec::new();
    op.process(&mut records.to_vec(), &mut out).unwrap();
    op.on_watermark(Watermark(watermark), &mut out).unwrap();
    rows(out)
}

/// Output as `(key, start, count)` for results and `(key, -time, 0)` for late records.
fn rows(out: Batch<Out>) -> Vec<(u64, i64, u64)> {
    out.into_iter()
        .map(|t| match t {
            Tagged::Main(r) => (r.key, r.start_ms, r.value),
            Tagged::Side((k, t)) => (k, -t, 0),
        })
        .collect()
}

fn ts(f: fn(&Record) -> EventTime) -> impl Fn(&Record) -> EventTime + Send + Sync {
    f
}

#[test]
fn lateness_refires_windows_and_sends_later_records_aside() {
    for backend in [Backend::Heap, Backend::Rocksdb] {
        let dir = tempfile::tempdir().unwrap();
        let windows = Windows::tumbling(Duration::from_millis(10), ts(|r| r.1))
            .allowed_lateness(Duration::from_millis(5));
        let mut op = operator(windows, backend, dir.path());
        assert_eq!(step(&mut op, &[(1, 3), (1, 12), (2, 4)], 8), vec![]);
        let mut fired = step(&mut op, &[], 9);
        fired.sort();
        assert_eq!(fired, vec![(1, 0, 1), (2, 0, 1)], "{backend:?}: on time");
        // Late but within lateness: the window fires again with the new count.
        assert_eq!(step(&mut op, &[(1, 5)], 12), vec![(1, 0, 2)], "{backend:?}");
        // Past the lateness (the window is cleaned up at 9 + 5): to the side.
        assert_eq!(step(&mut op, &[], 14), vec![], "{backend:?}");
        assert_eq!(
            step(&mut op, &[(1, 6)], 14),
            vec![(1, -6, 0)],
            "{backend:?}"
        );
        assert_eq!(
            step(&mut op, &[], EventTime::MAX),
            vec![(1, 10, 1)],
            "{backend:?}"
        );
    }
}

#[test]
fn sessions_merge_when_a_record_bridges_them() {
    for backend in [Backend::Heap, Backend::Rocksdb] {
        let dir = tempfile::tempdir().unwrap();
        let windows = Windows::session(Duration::from_millis(10), ts(|r| r.1));
        let mut op = operator(windows, backend, dir.path());
        // Two sessions of key 1, [0, 10) and [15, 25), then 8 bridges them.
        assert_eq!(step(&mut op, &[(1, 0), (1, 15)], 5), vec![]);
        assert_eq!(
            step(&mut op, &[(1, 8)], 17),
            vec![],
            "{backend:?}: merged, not due"
        );
        assert_eq!(
            step(&mut op, &[(1, 40)], 24),
            vec![(1, 0, 3)],
            "{backend:?}"
        );
        assert_eq!(
            step(&mut op, &[], EventTime::MAX),
            vec![(1, 40, 1)],
            "{backend:?}"
        );
    }
}

#[test]
fn count_windows_and_count_triggers_fire_by_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut op = operator(Windows::count(3), Backend::Heap, dir.path());
    let records: Vec<Record> = (0..7).map(|i| (1, i)).collect();
    assert_eq!(step(&mut op, &records, 0), vec![(1, 0, 3), (1, 3, 3)]);
    assert_eq!(
        step(&mut op, &[], EventTime::MAX),
        vec![],
        "a partial count window stays"
    );
    let early = Windows::tumbling(Duration::from_millis(100), ts(|r| r.1)).early_every_count(2);
    let mut op = operator(early, Backend::Heap, dir.path());
    assert_eq!(
        step(&mut op, &records, 99),
        vec![(1, 0, 2), (1, 0, 4), (1, 0, 6), (1, 0, 7)],
        "three early firings, then the one on time"
    );
}

#[test]
fn sliding_windows_count_a_record_in_each_window() {
    let dir = tempfile::tempdir().unwrap();
    let windows = Windows::sliding(
        Duration::from_millis(10),
        Duration::from_millis(5),
        ts(|r| r.1),
    );
    let mut op = operator(windows, Backend::Rocksdb, dir.path());
    let mut fired = step(&mut op, &[(1, 7), (1, 12)], EventTime::MAX);
    fired.sort();
    assert_eq!(fired, vec![(1, 0, 1), (1, 5, 2), (1, 10, 1)]);
}

/// Runs the operator's processing-time timers due by now.
fn tick<O: Operator<In = Record, Out = Out>>(op: &mut O) -> Vec<(u64, i64, u64)> {
    let mut out: Batch<Out> = Vec::new();
    op.on_time(std::time::Instant::now(), &mut out).unwrap();
    rows(out)
}

#[test]
fn early_firings_follow_the_wall_clock_once_per_period_until_the_window_fires() {
    for backend in [Backend::Heap, Backend::Rocksdb] {
        let dir = tempfile::tempdir().unwrap();
        let every = Duration::from_millis(200);
        let windows = Windows::tumbling(Duration::from_millis(100), ts(|r| r.1)).early_every(every);
        let mut op = operator(windows, backend, dir.path());
        assert_eq!(step(&mut op, &[(1, 3), (1, 5)], 0), vec![]);
        let due = op.next_wakeup().expect("an early firing is scheduled");
        assert!(due <= std::time::Instant::now() + every, "{backend:?}");
        // Two periods pass: one firing with what the window holds, not two.
        std::thread::sleep(every * 2 + Duration::from_millis(5));
        assert_eq!(tick(&mut op), vec![(1, 0, 2)], "{backend:?}");
        assert_eq!(
            tick(&mut op),
            vec![],
            "{backend:?}: the next is a period away"
        );
        assert_eq!(step(&mut op, &[(1, 7)], 0), vec![]);
        std::thread::sleep(every + Duration::from_millis(5));
        assert_eq!(tick(&mut op), vec![(1, 0, 3)], "{backend:?}");
        // On time, by the watermark; then no early firing is left.
        assert_eq!(step(&mut op, &[], 99), vec![(1, 0, 3)], "{backend:?}");
        std::thread::sleep(every + Duration::from_millis(5));
        assert_eq!(tick(&mut op), vec![], "{backend:?}: the window has fired");
    }
}

#[test]
fn at_the_end_of_input_a_window_without_watermarks_fires_early_once() {
    for backend in [Backend::Heap, Backend::Rocksdb] {
        let dir = tempfile::tempdir().unwrap();
        let windows = Windows::tumbling(Duration::from_millis(100), ts(|r| r.1))
            .early_every(Duration::from_secs(3600));
        let mut op = operator(windows, backend, dir.path());
        assert_eq!(step(&mut op, &[(1, 3), (1, 5)], EventTime::MIN), vec![]);
        let mut out: Batch<Out> = Vec::new();
        op.end_of_input(&mut out).unwrap();
        let counts: Vec<u64> = out
            .iter()
            .filter_map(|t| match t {
                Tagged::Main(r) => Some(r.value),
                Tagged::Side(_) => None,
            })
            .collect();
        assert_eq!(counts, vec![2], "{backend:?}: one firing, and it ends");
    }
}
