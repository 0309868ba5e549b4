//! Keyed state on both backends: caching in front of RocksDB, borrowed-key
//! lookups, and restoring checkpoints into any key-group range.

use std::sync::Arc;

use super::*;
use crate::checkpoint::paths::Paths;
use crate::checkpoint::store::FileStore;
use crate::data::{SavepointFormat, SnapshotKind};
use crate::ids::{CheckpointId, OperatorUid, Subtask};
use crate::keys::KeyGroupRange;
use crate::state::rocks::NativeFormat;
use crate::state::rocks::{native, NativeRestore};
use crate::state::StateConfig;

pub(crate) fn ctx(
    local: &std::path::Path,
    backend: Backend,
    range: KeyGroupRange,
    keys: usize,
) -> OperatorContext {
    OperatorContext {
        job: "job".into(),
        uid: OperatorUid("sum".into()),
        name: "sum".into(),
        subtask: Subtask {
            index: 0,
            parallelism: 1,
        },
        max_parallelism: 16,
        key_groups: range,
        attempt: 3,
        state: StateConfig {
            backend,
            local_dir: local.to_path_buf(),
            // Room for about `keys` keys of this test's types.
            cache_bytes: keys * crate::state::rocks::cached::entry_bytes::<u64, i64>(0),
            rocksdb_bytes: 8 << 20,
        },
        checkpoint_interval: None,
        metrics: Default::default(),
    }
}

pub(crate) const ALL: KeyGroupRange = KeyGroupRange { start: 0, end: 16 };

// How many `Counted` keys have been cloned, per test thread.
thread_local!(static CLONES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });

/// A string key that counts its clones.
#[derive(Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
struct Counted(String);

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.with(|c| c.set(c.get() + 1));
        Counted(self.0.clone())
    }
}

impl StableHash for Counted {
    fn stable_hash(&self) -> u64 {
        self.0.stable_hash()
    }
}

#[test]
fn a_borrowed_key_is_built_only_when_it_is_new_to_the_state() {
    for backend in [Backend::Heap, Backend::Rocksdb] {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = KeyedState::<Counted, i64>::default();
        state
            .open(&ctx(tmp.path(), backend, ALL, 1000), None)
            .unwrap();
        let words = ["a", "b", "a", "c", "b", "a"];
        let mut batch: Vec<(Counted, i64)> =
            words.iter().map(|w| (Counted(w.to_string()), 1)).collect();
        CLONES.with(|c| c.set(0));
        let mut sums = Vec::new();
        state
            .update(
                &mut batch,
                |r| Cow::Borrowed(&r.0),
                |k, sum, r| {
                    let sum = sum.get_or_insert(0);
                    *sum += r.1;
                    sums.push((k.0.clone(), *sum));
                    Ok(())
                },
            )
            .unwrap();
        // Each new key is built once (RocksDB reads it from its cache entry).
        assert_eq!(CLONES.with(|c| c.get()), 3, "{backend:?}");
        assert_eq!(
            sums,
            [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2), ("a", 3)]
                .map(|(w, s)| (w.to_string(), s))
        );
    }
}

/// Adds each record's value to its key's sum.
fn add(state: &mut KeyedState<u64, i64>, records: &[(u64, i64)]) {
    let mut batch = records.to_vec();
    state
        .update(
            &mut batch,
            |r| Cow::Owned(r.0),
            |_, sum, r| {
                *sum.get_or_insert(0) += r.1;
                Ok(())
            },
        )
        .unwrap();
}

/// The keys below `keys` that have a value, with it, in key order.
fn contents<V>(state: &mut KeyedState<u64, V>, keys: u64) -> Vec<(u64, V)>
where
    V: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut seen = Vec::new();
    let mut probe: Vec<u64> = (0..keys).collect();
    state
        .update(
            &mut probe,
            |k| Cow::Owned(*k),
            |k, value, _| {
                if let Some(v) = value {
                    seen.push((*k, v.clone()));
                }
                Ok(())
            },
        )
        .unwrap();
    seen
}

#[test]
fn rocksdb_behind_a_small_cache_keeps_every_update() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = KeyedState::<u64, i64>::default();
    state
        .open(&ctx(tmp.path(), Backend::Rocksdb, ALL, 10), None)
        .unwrap();
    for round in 0..5 {
        let records: Vec<(u64, i64)> = (0..100).map(|k| (k, round + k as i64)).collect();
        add(&mut state, &records);
        assert!(state.cached_keys() <= 100);
    }
    let expected: Vec<(u64, i64)> = (0..100).map(|k| (k, 10 + 5 * k as i64)).collect();
    assert_eq!(contents(&mut state, 100), expected);
    // Deleting a key through the cache reaches RocksDB too.
    let mut batch = vec![(7u64, 0i64)];
    state
        .update(
            &mut batch,
            |r| Cow::Owned(r.0),
            |_, v, _| {
                *v = None;
                Ok(())
            },
        )
        .unwrap();
    for filler in 0..4 {
        add(&mut state, &[(1000 + filler, 1); 1]);
        add(&mut state, &(200..260).map(|k| (k, 1)).collect::<Vec<_>>());
    }
    assert!(!contents(&mut state, 100).iter().any(|(k, _)| *k == 7));
}

#[test]
fn the_operators_of_a_process_share_one_cache_bound_and_keep_every_update() {
    // A bound of 137 keys (no other test uses it, so no other state counts
    // against it) for two operators writing 1,000 keys each.
    let (tmp_a, tmp_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, mut b) = (KeyedState::default(), KeyedState::default());
    a.open(&ctx(tmp_a.path(), Backend::Rocksdb, ALL, 137), None)
        .unwrap();
    b.open(&ctx(tmp_b.path(), Backend::Rocksdb, ALL, 137), None)
        .unwrap();
    for round in 0..3i64 {
        for chunk in (0..1000u64).collect::<Vec<_>>().chunks(50) {
            let records: Vec<(u64, i64)> = chunk.iter().map(|&k| (k, round + 1)).collect();
            add(&mut a, &records);
            add(&mut b, &records);
            let cached = a.cached_keys() + b.cached_keys();
            // Each evicts its share of the excess after its batch: within the
            // bound and a batch of new keys.
            assert!(cached <= 137 + 50, "{cached} keys cached");
        }
    }
    let expected: Vec<(u64, i64)> = (0..1000).map(|k| (k, 6)).collect();
    assert_eq!(contents(&mut a, 1000), expected);
    assert_eq!(contents(&mut b, 1000), expected);
}

/// Each of `keys` with its string of `len` bytes.
fn strings(keys: std::ops::Range<u64>, len: usize) -> Vec<(u64, String)> {
    keys.map(|k| (k, format!("{k:0len$}"))).collect()
}

/// Sets each key to its value in one batch, without reading it.
fn put_all(state: &mut KeyedState<u64, String>, mut entries: Vec<(u64, String)>) {
    state
        .update(
            &mut entries,
            |e| Cow::Owned(e.0),
            |_, v, e| {
                *v = Some(e.1);
                Ok(())
            },
        )
        .unwrap();
}

/// The bytes of the files under `dir`, in all.
fn bytes_under(dir: &std::path::Path) -> u64 {
    files_under(dir)
        .iter()
        .map(|p| p.metadata().map_or(0, |m| m.len()))
        .sum()
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_cache_of_large_values_counts_their_bytes_before_its_first_write_back() {
    // Room for 2,011 entries of a small value; counted at their in-place size,
    // 1,000 values of 1,000 bytes each would all fit (1 MB in a 75 KB bound).
    let tmp = tempfile::tempdir().unwrap();
    let mut state = KeyedState::<u64, String>::default();
    state
        .open(&ctx(tmp.path(), Backend::Rocksdb, ALL, 2011), None)
        .unwrap();
    put_all(&mut state, strings(0..1000, 1000));
    let cached = state.cached_keys();
    assert!(cached <= 100, "{cached} values of 1,000 bytes cached");
    // Evicted or not, every value is whole.
    assert_eq!(contents(&mut state, 1000), strings(0..1000, 1000));
}

#[test]
fn dirty_values_are_written_back_before_they_would_fill_two_memtables() {
    // A cache with room for every key, and memtables of 2 MiB (a quarter of
    // RocksDB's 8 MiB): 10 MB of updates must not wait for the checkpoint.
    let tmp = tempfile::tempdir().unwrap();
    let mut state = KeyedState::<u64, String>::default();
    state
        .open(&ctx(tmp.path(), Backend::Rocksdb, ALL, 1_000_003), None)
        .unwrap();
    for chunk in 0..10 {
        put_all(&mut state, strings(chunk * 1000..(chunk + 1) * 1000, 1000));
    }
    assert_eq!(state.cached_keys(), 10_000, "nothing was evicted");
    let written = bytes_under(tmp.path());
    assert!(
        written > 4 << 20,
        "{written} bytes reached RocksDB of 10 MB of dirty values"
    );
    assert_eq!(contents(&mut state, 10_000), strings(0..10_000, 1000));
}

/// A RocksDB instance of the key groups `range` holding `k -> k` for the keys
/// below 200 in it, checkpointed into `store` under `dir`: the restore handle.
fn checkpointed(
    dir: &std::path::Path,
    store: &Arc<FileStore>,
    range: KeyGroupRange,
) -> NativeRestore {
    let paths = Paths::new("job", &crate::ids::JobId("r".into()));
    let mut state = KeyedState::<u64, i64>::default();
    state
        .open(&ctx(dir, Backend::Rocksdb, range, 1000), None)
        .unwrap();
    let keys: Vec<(u64, i64)> = (0..200u64)
        .filter(|k| range.contains(KeyGroup::of(k, 16)))
        .map(|k| (k, k as i64))
        .collect();
    add(&mut state, &keys);
    let snapshot = state
        .snapshot(&Barrier::checkpoint(CheckpointId(1), None))
        .unwrap();
    let native_snapshot = snapshot.native.unwrap();
    let NativeFormat::Incremental(incremental) = &native_snapshot.format else {
        panic!("a checkpoint is incremental");
    };
    let uid = OperatorUid("sum".into());
    let chk = paths.checkpoint_dir(CheckpointId(1));
    let subtask = range.start;
    let uploaded = native::upload(
        store.as_ref(),
        &paths,
        &chk,
        CheckpointId(1),
        &uid,
        subtask,
        native_snapshot.dir.path(),
        incremental,
    )
    .unwrap();
    assert!(uploaded.bytes > 0);
    let store: Arc<dyn crate::checkpoint::store::CheckpointStore> = store.clone();
    NativeRestore::of_upload(&uploaded.state.files, &paths, &chk, range, store, true)
}

/// `k -> k` for the keys below 200 in `part`, in key order.
fn expected_in(part: KeyGroupRange) -> Vec<(u64, i64)> {
    (0..200u64)
        .filter(|k| part.contains(KeyGroup::of(k, 16)))
        .map(|k| (k, k as i64))
        .collect()
}

#[test]
fn a_rocksdb_checkpoint_restores_any_key_group_range_into_either_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::new(tmp.path().join("store")));
    let handle = checkpointed(&tmp.path().join("old"), &store, ALL);
    let part = KeyGroupRange { start: 4, end: 11 };
    for backend in [Backend::Rocksdb, Backend::Heap] {
        let restored = RestoredState {
            native: vec![handle.clone()],
            key_groups: part,
            ..Default::default()
        };
        let mut back = KeyedState::<u64, i64>::default();
        let local = tmp.path().join(format!("{backend:?}"));
        back.open(&ctx(&local, backend, part, 1000), Some(restored))
            .unwrap();
        assert_eq!(contents(&mut back, 200), expected_in(part), "{backend:?}");
    }
}

/// A range that two old instances held parts of: one is the base, the other's
/// part arrives as one ingested SST file; every key of the range, none outside.
#[test]
fn a_range_of_two_rocksdb_checkpoints_restores_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::new(tmp.path().join("store")));
    let low = checkpointed(
        &tmp.path().join("low"),
        &store,
        KeyGroupRange { start: 0, end: 8 },
    );
    let high = checkpointed(
        &tmp.path().join("high"),
        &store,
        KeyGroupRange { start: 8, end: 16 },
    );
    let part = KeyGroupRange { start: 3, end: 14 };
    let restored = RestoredState {
        native: vec![low, high],
        key_groups: part,
        ..Default::default()
    };
    let mut back = KeyedState::<u64, i64>::default();
    back.open(
        &ctx(&tmp.path().join("new"), Backend::Rocksdb, part, 10),
        Some(restored),
    )
    .unwrap();
    let expected = expected_in(part);
    assert!(expected.len() > 100, "{}", expected.len());
    assert_eq!(contents(&mut back, 200), expected);
}

#[test]
fn a_rocksdb_savepoint_is_canonical() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = KeyedState::<u64, i64>::default();
    state
        .open(&ctx(tmp.path(), Backend::Rocksdb, ALL, 1000), None)
        .unwrap();
    add(
        &mut state,
        &(0..50).map(|k| (k, 2 * k as i64)).collect::<Vec<_>>(),
    );
    let barrier = Barrier {
        id: CheckpointId(2),
        kind: SnapshotKind::Savepoint(SavepointFormat::Canonical),
        last_completed: None,
    };
    let snapshot = state.snapshot(&barrier).unwrap().native.unwrap();
    let NativeFormat::Canonical { key_groups } = snapshot.format else {
        panic!("a savepoint is canonical");
    };
    let blobs =
        native::to_canonical(&OperatorUid("sum".into()), snapshot.dir.path(), key_groups).unwrap();
    let mut heap = KeyedState::<u64, i64>::default();
    let restored = RestoredState {
        keyed: blobs,
        key_groups: ALL,
        ..Default::default()
    };
    heap.open(&ctx(tmp.path(), Backend::Heap, ALL, 1), Some(restored))
        .unwrap();
    let expected: Vec<(u64, i64)> = (0..50).map(|k| (k, 2 * k as i64)).collect();
    assert_eq!(contents(&mut heap, 50), expected);
}
