//! State TTL beside timers: values expire after their key's last record,
//! timers stay and fire on expired keys, compactions drop only values, and
//! checkpoints say that their values carry stamps.

use super::*;
use crate::ids::CheckpointId;
use crate::keys::{KeyGroup, KeyGroupRange};
use crate::state::keyed::tests::{ctx, ALL};
use crate::state::memory::StateMemory;
use crate::state::rocks::{encode_key, LocalDir, RocksDb};
use crate::state::timers::{SortableTime, TimedKey, TimedValue};
use crate::state::Backend;

const TTL: Duration = Duration::from_secs(10);

/// A heap-backed state, opened.
fn opened(dir: &std::path::Path) -> ExpiringTimedState<u64, i64> {
    let mut state = ExpiringTimedState::new(TTL);
    TimedValues::open(&mut state, &ctx(dir, Backend::Heap, ALL, 100), None).unwrap();
    state
}

/// Adds 1 to the counts of `keys` at `now`, each registering a processing-time
/// timer at `timer`; the counts each record saw after.
fn count(
    state: &mut ExpiringTimedState<u64, i64>,
    now: i64,
    keys: &[u64],
    timer: Option<i64>,
) -> Vec<(u64, i64)> {
    let mut batch = keys.to_vec();
    let mut seen = Vec::new();
    state
        .update_at(
            now,
            &mut batch,
            |k| Cow::Owned(*k),
            |k, value, _, timers| {
                let n = value.get_or_insert(0);
                *n += 1;
                seen.push((*k, *n));
                if let Some(at) = timer {
                    timers.register_processing_time(at);
                }
                Ok(())
            },
        )
        .unwrap();
    seen
}

/// Fires the processing-time timers due at `now`, each adding 100 to its
/// key's value if it has one; the keys and values each timer found, by key
/// (timers at one time fire in the order the backend lists them).
fn fire(state: &mut ExpiringTimedState<u64, i64>, now: i64) -> Vec<(u64, Option<i64>)> {
    let mut found = Vec::new();
    TimedValues::advance_processing_time(state, now, |k, value, _, _| {
        found.push((*k, *value));
        if let Some(v) = value {
            *v += 100;
        }
        Ok(())
    })
    .unwrap();
    found.sort();
    found
}

#[test]
fn a_value_expires_a_ttl_after_its_key_s_last_record_and_timers_do_not_renew_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = opened(tmp.path());
    assert_eq!(
        count(&mut state, 0, &[1, 2], Some(15_000)),
        [(1, 1), (2, 1)]
    );
    // Key 2's record at 9 s renews it; key 1, idle since 0, starts over at 10 s.
    assert_eq!(count(&mut state, 9_000, &[2], None), [(2, 2)]);
    assert_eq!(count(&mut state, 10_000, &[1, 2], None), [(1, 1), (2, 3)]);
    // At 15 s both timers fire on live values and change them...
    assert_eq!(fire(&mut state, 15_000), [(1, Some(1)), (2, Some(3))]);
    // ...which does not renew them: at 20 s both have expired.
    assert_eq!(count(&mut state, 20_000, &[1, 2], None), [(1, 1), (2, 1)]);
}

#[test]
fn a_timer_outlives_its_key_s_value_and_finds_it_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = opened(tmp.path());
    count(&mut state, 0, &[7], Some(30_000));
    assert_eq!(fire(&mut state, 30_000), [(7, None)]);
    // Nothing was set, so nothing is left but the key's next record.
    assert_eq!(count(&mut state, 30_001, &[7], None), [(7, 1)]);
}

#[test]
fn the_heap_sweep_drops_expired_values_and_keeps_their_timers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = opened(tmp.path());
    let cold: Vec<u64> = (0..1_000).collect();
    count(&mut state, 0, &cold, Some(1_000_000));
    assert_eq!(
        state.cached_entries(),
        2_000,
        "1,000 values and their timers"
    );
    let mut now = TTL.as_millis() as i64;
    for _ in 0..crate::state::heap::SHARDS {
        count(&mut state, now, &[5_000], None);
        now += 78;
    }
    assert_eq!(
        state.cached_entries(),
        1_001,
        "the timers and the one value still written"
    );
    // Every cold key's timer still fires, on a value the sweep removed.
    let found = fire(&mut state, 1_000_000);
    assert_eq!(found.len(), 1_000);
    assert!(found.iter().all(|(_, v)| v.is_none()), "{found:?}");
}

#[test]
fn rocksdb_compactions_drop_expired_values_beside_timers_but_never_the_timers() {
    let tmp = tempfile::tempdir().unwrap();
    let memory = StateMemory::shared(1 << 20, 8 << 20);
    let dir = LocalDir::fresh(tmp.path().join("db")).unwrap();
    let expiry = Expiry {
        ttl: TTL,
        stamp_at: STAMP_AFTER_TAG,
    };
    let db = RocksDb::open("process", dir, &memory, Some(expiry)).unwrap();
    let ttl_ms = TTL.as_millis() as i64;
    let long_ago = wall_clock_ms() - ttl_ms - 1_000;
    let recently = wall_clock_ms() - ttl_ms + 60_000;
    let entry = |key: &TimedKey<u64>, value: &TimedValue<Stamped<i64>>| {
        let mut encoded = Vec::new();
        encode_key(KeyGroup(0), &bincode::serialize(key).unwrap(), &mut encoded);
        (encoded, bincode::serialize(value).unwrap())
    };
    let mut batch = rocksdb::WriteBatch::default();
    for k in 0..200u64 {
        let written_ms = if k < 100 { long_ago } else { recently };
        let stamped = TimedValue::Value(Stamped {
            written_ms,
            value: k as i64,
        });
        let (key, value) = entry(&TimedKey::Value(k), &stamped);
        assert_eq!(
            value[STAMP_AFTER_TAG..STAMP_AFTER_TAG + 8],
            written_ms.to_le_bytes()
        );
        batch.put(&key, &value);
        // A timer, however old, holds no stamp: compactions keep it.
        let timer = TimedKey::ProcessingTimer(SortableTime::new(long_ago), k);
        let (key, value) = entry(&timer, &TimedValue::Timer);
        batch.put(&key, &value);
    }
    db.write(batch).unwrap();
    db.compact();
    let (mut values, mut timers) = (Vec::new(), 0);
    db.scan(KeyGroupRange { start: 0, end: 1 }, |_, k, _| {
        match bincode::deserialize::<TimedKey<u64>>(k).unwrap() {
            TimedKey::Value(k) => values.push(k),
            _ => timers += 1,
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(values, (100..200).collect::<Vec<u64>>());
    assert_eq!(timers, 200);
}

#[test]
fn stamps_and_timers_survive_a_checkpoint_marked_as_stamped() {
    let tmp = tempfile::tempdir().unwrap();
    let context = ctx(tmp.path(), Backend::Heap, ALL, 100);
    let mut state = opened(tmp.path());
    count(&mut state, 0, &[1], Some(50_000));
    count(&mut state, 5_000, &[2], None);
    let barrier = Barrier::checkpoint(CheckpointId(1), None);
    let snapshot = TimedValues::snapshot(&mut state, &barrier)
        .unwrap()
        .encoded()
        .unwrap();
    let restored = RestoredState {
        keyed: snapshot.keyed,
        operator_state: snapshot.operator_state,
        key_groups: ALL,
        ..Default::default()
    };
    let mut again = ExpiringTimedState::new(TTL);
    TimedValues::open(&mut again, &context, Some(restored.clone())).unwrap();
    // Key 1 was counted at 0, key 2 at 5 s: at 10 s only key 1 has expired.
    assert_eq!(count(&mut again, 10_000, &[1, 2], None), [(1, 1), (2, 2)]);
    assert_eq!(fire(&mut again, 50_000), [(1, None)]);
    // The checkpoint refuses to restore into state without a TTL.
    let mut plain = TimedState::<u64, i64>::default();
    let refused = TimedValues::open(&mut plain, &context, Some(restored)).unwrap_err();
    assert!(refused.to_string().contains("with a TTL"), "{refused}");
}
