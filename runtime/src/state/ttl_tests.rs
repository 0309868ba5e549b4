//! State TTL: expiry on access, the heap's sweep, RocksDB's compactions, and
//! checkpoints that say whether their values carry stamps.

use super::*;
use crate::keys::{KeyGroup, KeyGroupRange};
use crate::state::memory::StateMemory;
use crate::state::rocks::{encode_key, LocalDir, RocksDb};
use crate::state::UnionState;

const TTL: Duration = Duration::from_secs(10);

/// Adds `by` to the sums of `keys` at `now`; the sums each record saw after.
fn add(state: &mut ExpiringState<u64, i64>, now: i64, keys: &[u64], by: i64) -> Vec<(u64, i64)> {
    let mut batch: Vec<u64> = keys.to_vec();
    let mut seen = Vec::new();
    state
        .update_at(
            now,
            &mut batch,
            |k| Cow::Owned(*k),
            |k, sum, _| {
                let sum = sum.get_or_insert(0);
                *sum += by;
                seen.push((*k, *sum));
                Ok(())
            },
        )
        .unwrap();
    seen
}

#[test]
fn a_key_idle_for_its_ttl_starts_over_and_one_written_within_it_goes_on() {
    let mut state = ExpiringState::new(TTL);
    assert_eq!(add(&mut state, 0, &[1, 2], 5), [(1, 5), (2, 5)]);
    // Key 1 is written again just before it would expire, which restarts its TTL.
    assert_eq!(add(&mut state, 9_999, &[1], 5), [(1, 10)]);
    // At 10 s, key 2 (last written at 0) has expired; key 1 has not.
    assert_eq!(add(&mut state, 10_000, &[2, 1], 1), [(2, 1), (1, 11)]);
    assert_eq!(add(&mut state, 19_998, &[1], 1), [(1, 12)]);
    assert_eq!(add(&mut state, 29_998, &[1, 1], 1), [(1, 1), (1, 2)]);
}

#[test]
fn the_heap_sweep_drops_expired_keys_that_no_record_touches() {
    let mut state = ExpiringState::new(TTL);
    let cold: Vec<u64> = (0..1_000).collect();
    add(&mut state, 0, &cold, 1);
    assert_eq!(state.cached_keys(), 1_000);
    // One record a millisecond after the TTL: each batch sweeps one shard
    // once its turn comes (every TTL / 2 / SHARDS = 78 ms).
    let mut now = TTL.as_millis() as i64;
    for _ in 0..SHARDS {
        add(&mut state, now, &[5_000], 1);
        now += 78;
    }
    assert_eq!(state.cached_keys(), 1, "only the key still written is left");
}

#[test]
fn a_sweep_keeps_what_has_not_expired() {
    let mut state = ExpiringState::new(TTL);
    let keys: Vec<u64> = (0..1_000).collect();
    add(&mut state, 0, &keys, 1);
    let mut now = 1;
    for _ in 0..SHARDS {
        add(&mut state, now, &[5_000], 1);
        now += 78;
    }
    assert_eq!(state.cached_keys(), 1_001);
    assert_eq!(add(&mut state, now, &[7], 1), [(7, 2)]);
}

#[test]
fn rocksdb_compactions_drop_values_written_longer_ago_than_the_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let memory = StateMemory::shared(1 << 20, 8 << 20);
    let dir = LocalDir::fresh(tmp.path().join("db")).unwrap();
    let db = RocksDb::open("sum", dir, &memory, Some(Expiry::plain(TTL))).unwrap();
    let now = wall_clock_ms();
    let ttl_ms = TTL.as_millis() as i64;
    // Keys 0..100 written 11 s ago, 100..200 9 s ago.
    let mut batch = rocksdb::WriteBatch::default();
    for k in 0..200u64 {
        let written_ms = if k < 100 {
            now - ttl_ms - 1_000
        } else {
            now - ttl_ms + 1_000
        };
        let mut key = Vec::new();
        encode_key(KeyGroup(0), &bincode::serialize(&k).unwrap(), &mut key);
        let value = bincode::serialize(&Stamped {
            written_ms,
            value: k as i64,
        })
        .unwrap();
        assert_eq!(
            value[..8],
            written_ms.to_le_bytes(),
            "the stamp comes first"
        );
        batch.put(&key, &value);
    }
    db.write(batch).unwrap();
    db.compact();
    let mut left = Vec::new();
    db.scan(KeyGroupRange { start: 0, end: 1 }, |_, k, _| {
        left.push(bincode::deserialize::<u64>(k).unwrap());
        Ok(())
    })
    .unwrap();
    assert_eq!(left, (100..200).collect::<Vec<u64>>());
}

/// Restored keyed state, marked as stamped or not, at the same parallelism
/// (`union` false) or another.
fn restored(marked: bool, union: bool) -> RestoredState {
    let marker = marked.then(|| TTL_MARKER.to_vec());
    RestoredState {
        keyed: vec![(KeyGroup(0), vec![1, 2, 3])],
        operator_state: if union { None } else { marker.clone() },
        union: union.then(|| UnionState {
            parallelism: 2,
            states: marker.into_iter().map(|m| (1, m)).collect(),
        }),
        ..Default::default()
    }
}

#[test]
fn a_checkpoint_restores_only_into_state_that_stamps_its_values_as_it_did() {
    for union in [false, true] {
        for (marked, stamped) in [(false, false), (true, true)] {
            check_stamps("sum", Some(&restored(marked, union)), stamped).unwrap();
        }
        let added = check_stamps("sum", Some(&restored(false, union)), true).unwrap_err();
        assert!(added.to_string().contains("without a TTL"), "{added}");
        let dropped = check_stamps("sum", Some(&restored(true, union)), false).unwrap_err();
        assert!(dropped.to_string().contains("with a TTL"), "{dropped}");
    }
    // Nothing keyed to decode: any operator may take it.
    let empty = RestoredState::default();
    check_stamps("sum", Some(&empty), true).unwrap();
}

#[test]
fn values_read_back_from_rocksdb_expire_as_on_the_heap() {
    use crate::state::keyed::tests::{ctx, ALL};
    use crate::state::Backend;
    let tmp = tempfile::tempdir().unwrap();
    let mut state = ExpiringState::new(TTL);
    // A cache of 10 keys: most of the 100 are read back from RocksDB.
    KeyedValues::open(
        &mut state,
        &ctx(tmp.path(), Backend::Rocksdb, ALL, 10),
        None,
    )
    .unwrap();
    let keys: Vec<u64> = (0..100).collect();
    add(&mut state, 0, &keys, 1);
    add(&mut state, 5_000, &keys[50..], 1);
    let seen = add(&mut state, 10_000, &keys, 1);
    let expected: Vec<(u64, i64)> = keys
        .iter()
        .map(|&k| (k, if k < 50 { 1 } else { 3 }))
        .collect();
    assert_eq!(seen, expected);
    assert!(state.cached_keys() < 100, "values were evicted to RocksDB");
}

#[test]
fn stamps_survive_a_checkpoint_and_mark_it_as_stamped() {
    use crate::ids::CheckpointId;
    use crate::state::keyed::tests::{ctx, ALL};
    use crate::state::Backend;
    let tmp = tempfile::tempdir().unwrap();
    let context = ctx(tmp.path(), Backend::Heap, ALL, 100);
    let mut state = ExpiringState::new(TTL);
    KeyedValues::open(&mut state, &context, None).unwrap();
    add(&mut state, 0, &[1], 1);
    add(&mut state, 5_000, &[2], 1);
    let snapshot = KeyedValues::snapshot(&mut state, &Barrier::checkpoint(CheckpointId(1), None))
        .unwrap()
        .encoded()
        .unwrap();
    let restored = RestoredState {
        keyed: snapshot.keyed,
        operator_state: snapshot.operator_state,
        key_groups: ALL,
        ..Default::default()
    };
    let mut again = ExpiringState::new(TTL);
    KeyedValues::open(&mut again, &context, Some(restored.clone())).unwrap();
    // Key 1 was written at 0, key 2 at 5 s: at 10 s only key 1 has expired.
    assert_eq!(add(&mut again, 10_000, &[1, 2], 1), [(1, 1), (2, 2)]);
    // The same checkpoint refuses to restore into state without a TTL.
    let mut plain = KeyedState::<u64, Stamped<i64>>::default();
    let refused = KeyedValues::open(&mut plain, &context, Some(restored)).unwrap_err();
    assert!(refused.to_string().contains("with a TTL"), "{refused}");
}
