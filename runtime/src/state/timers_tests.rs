//! Tests of timers in both backends: order, re-registration while firing,
//! deletion, and a savepoint restored at another key-group range.

use super::*;
use crate::data::{SavepointFormat, SnapshotKind};
use crate::ids::{CheckpointId, OperatorUid, Subtask};
use crate::keys::{KeyGroup, KeyGroupRange};
use crate::state::rocks::{native, NativeFormat};
use crate::state::{Backend, StateConfig};
use std::borrow::Cow;

const ALL: KeyGroupRange = KeyGroupRange { start: 0, end: 16 };

fn ctx(local: &std::path::Path, backend: Backend, range: KeyGroupRange) -> OperatorContext {
    OperatorContext {
        job: "job".into(),
        uid: OperatorUid("timers".into()),
        name: "timers".into(),
        subtask: Subtask {
            index: 0,
            parallelism: 1,
        },
        max_parallelism: 16,
        key_groups: range,
        attempt: 1,
        state: StateConfig {
            backend,
            local_dir: local.to_path_buf(),
            cache_bytes: 4096,
            rocksdb_bytes: 8 << 20,
        },
        checkpoint_interval: None,
        metrics: Default::default(),
    }
}

/// Each record `(key, time)` adds one to its key's count and sets a timer at `time`.
fn register(state: &mut TimedState<u64, u64>, records: &[(u64, EventTime)]) {
    let mut batch = records.to_vec();
    state
        .update(
            &mut batch,
            |r| Cow::Owned(r.0),
            |_, value, (_, time), timers| {
                *value.get_or_insert(0) += 1;
                timers.register_event_time(time);
                Ok(())
            },
        )
        .unwrap();
}

/// Fires what is due at `watermark`: `(time, key, count)` per timer.
fn fire(state: &mut TimedState<u64, u64>, watermark: EventTime) -> Vec<(EventTime, u64, u64)> {
    let mut fired = Vec::new();
    state
        .advance_watermark(watermark, |key, value, time, _| {
            fired.push((time, *key, value.unwrap_or(0)));
            Ok(())
        })
        .unwrap();
    fired.sort();
    fired
}

#[test]
fn sortable_times_sort_as_their_encoding() {
    let times = [EventTime::MIN, -5, -1, 0, 1, 1000, EventTime::MAX];
    for pair in times.windows(2) {
        let a =
            bincode::serialize(&TimedKey::EventTimer(SortableTime::new(pair[0]), 7u64)).unwrap();
        let b =
            bincode::serialize(&TimedKey::EventTimer(SortableTime::new(pair[1]), 0u64)).unwrap();
        assert!(a < b, "{} before {}", pair[0], pair[1]);
        assert_eq!(SortableTime::new(pair[0]).time(), pair[0]);
    }
    let value = bincode::serialize(&TimedKey::Value(0u64)).unwrap();
    let processing =
        bincode::serialize(&TimedKey::ProcessingTimer(SortableTime::new(0), 0u64)).unwrap();
    let event = bincode::serialize(&TimedKey::EventTimer(
        SortableTime::new(EventTime::MAX),
        u64::MAX,
    ))
    .unwrap();
    assert!(event < processing && processing < value);
    assert!(prefix(TimeDomain::EventTime, None) <= processing);
}

#[test]
fn timers_fire_once_in_time_order_in_both_backends() {
    for backend in [Backend::Heap, Backend::Rocksdb] {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = TimedState::<u64, u64>::default();
        state.open(&ctx(tmp.path(), backend, ALL), None).unwrap();
        // 300 keys (more than the small cache holds), timers at 10..=40 and a repeat.
        let records: Vec<(u64, EventTime)> =
            (0..300).map(|k| (k, 10 + (k % 4) as i64 * 10)).collect();
        register(&mut state, &records);
        register(&mut state, &[(5, 20)]);
        assert_eq!(fire(&mut state, 9), vec![], "{backend:?}");
        let fired = fire(&mut state, 20);
        let expected: Vec<(EventTime, u64, u64)> = (0..300u64)
            .filter(|k| k % 4 < 2)
            .map(|k| (10 + (k % 4) as i64 * 10, k, if k == 5 { 2 } else { 1 }))
            .collect();
        let mut expected = expected;
        expected.sort();
        assert_eq!(fired, expected, "{backend:?}");
        assert_eq!(fire(&mut state, 20), vec![], "{backend:?}: fired twice");
        assert_eq!(fire(&mut state, 40).len(), 150, "{backend:?}");
    }
}

#[test]
fn a_timer_set_while_firing_fires_in_the_same_advance_if_due() {
    for backend in [Backend::Heap, Backend::Rocksdb] {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = TimedState::<u64, u64>::default();
        state.open(&ctx(tmp.path(), backend, ALL), None).unwrap();
        register(&mut state, &[(1, 10), (2, 10)]);
        let mut fired = Vec::new();
        state
            .advance_watermark(100, |key, _, time, timers| {
                fired.push((time, *key));
                if time < 30 {
                    timers.register_event_time(time + 10);
                }
                if *key == 2 {
                    timers.delete_event_time(time + 10);
                }
                Ok(())
            })
            .unwrap();
        fired.sort();
        assert_eq!(
            fired,
            vec![(10, 1), (10, 2), (20, 1), (30, 1)],
            "{backend:?}"
        );
        assert_eq!(state.next_processing_timer(), None);
    }
}

#[test]
fn processing_time_timers_are_their_own_queue() {
    for backend in [Backend::Heap, Backend::Rocksdb] {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = TimedState::<u64, u64>::default();
        state.open(&ctx(tmp.path(), backend, ALL), None).unwrap();
        let mut batch = vec![3u64, 4];
        state
            .update(
                &mut batch,
                |k| Cow::Borrowed(k),
                |_, _, k, timers| {
                    timers.register_processing_time(1000 + k as i64);
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(state.next_processing_timer(), Some(1003));
        assert_eq!(fire(&mut state, EventTime::MAX), vec![]);
        let mut fired = Vec::new();
        state
            .advance_processing_time(1003, |k, _, t, _| {
                fired.push((t, *k));
                Ok(())
            })
            .unwrap();
        assert_eq!(fired, vec![(1003, 3)], "{backend:?}");
        assert_eq!(state.next_processing_timer(), Some(1004), "{backend:?}");
    }
}

#[test]
fn a_savepoint_restores_timers_by_key_group_into_either_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = TimedState::<u64, u64>::default();
    state
        .open(&ctx(tmp.path(), Backend::Rocksdb, ALL), None)
        .unwrap();
    let records: Vec<(u64, EventTime)> = (0..100).map(|k| (k, 50 + k as i64)).collect();
    register(&mut state, &records);
    let barrier = Barrier {
        id: CheckpointId(1),
        kind: SnapshotKind::Savepoint(SavepointFormat::Canonical),
        last_completed: None,
    };
    let snapshot = state.snapshot(&barrier).unwrap().native.unwrap();
    let NativeFormat::Canonical { key_groups } = snapshot.format else {
        panic!("a savepoint is canonical");
    };
    let blobs = native::to_canonical(
        &OperatorUid("timers".into()),
        snapshot.dir.path(),
        key_groups,
    )
    .unwrap();
    let part = KeyGroupRange { start: 3, end: 9 };
    let mut expected: Vec<(EventTime, u64, u64)> = (0..100u64)
        .filter(|k| part.contains(KeyGroup::of(k, 16)))
        .map(|k| (50 + k as i64, k, 1))
        .collect();
    expected.sort();
    for backend in [Backend::Heap, Backend::Rocksdb] {
        let restored = RestoredState {
            keyed: blobs
                .iter()
                .filter(|(g, _)| part.contains(*g))
                .cloned()
                .collect(),
            key_groups: part,
            ..Default::default()
        };
        let mut back = TimedState::<u64, u64>::default();
        let local = tmp.path().join(backend.name());
        back.open(&ctx(&local, backend, part), Some(restored))
            .unwrap();
        assert_eq!(fire(&mut back, 49), vec![], "{backend:?}");
        assert_eq!(fire(&mut back, 200), expected, "{backend:?}");
    }
}
