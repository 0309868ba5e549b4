//! Tests of restoring RocksDB state at another parallelism: which files a new
//! subtask downloads, and every entry it ends up with.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::native::{upload, Incremental};
use super::restore::rebuild;
use super::*;
use crate::checkpoint::paths::Paths;
use crate::checkpoint::store::{CheckpointStore, FileStore};
use crate::ids::{CheckpointId, JobId, OperatorUid};
use crate::state::memory::StateMemory;

/// Every entry an instance holds: encoded key to value.
type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

/// Every entry an instance should hold, and every key ever written.
#[derive(Default)]
struct Expected {
    entries: Entries,
    written: Vec<Vec<u8>>,
}

/// Writes four keys in each group of `groups` (values tagged `tag`), deleting
/// the even ones instead when `delete`, into `db` and into `expected`.
fn write(db: &RocksDb, expected: &mut Expected, groups: Range<u32>, tag: &str, delete: bool) {
    let mut batch = WriteBatch::default();
    for group in groups {
        for k in 0..4u32 {
            let mut key = Vec::new();
            encode_key(KeyGroup(group), &k.to_le_bytes(), &mut key);
            expected.written.push(key.clone());
            if delete && k % 2 == 0 {
                batch.delete(&key);
                expected.entries.remove(&key);
            } else {
                let value = format!("{tag}-{group}-{k}").into_bytes();
                batch.put(&key, &value);
                expected.entries.insert(key, value);
            }
        }
    }
    db.write(batch).unwrap();
}

/// An old subtask's instance of the key groups `[start, start + 64)`, its data
/// in files of several levels that overlap one another: two files on the last
/// level, a newer one of level 0 that overwrites and deletes across both, and
/// writes not yet flushed.
fn old_instance(dir: &Path, memory: &StateMemory, start: u32, expected: &mut Expected) -> RocksDb {
    let db = RocksDb::open(
        "sum",
        LocalDir::fresh(dir.to_path_buf()).unwrap(),
        memory,
        None,
    )
    .unwrap();
    let flush = |db: &RocksDb| db.db.flush().unwrap();
    write(&db, expected, start..start + 20, "first", false);
    flush(&db);
    db.compact();
    write(&db, expected, start + 20..start + 50, "second", false);
    flush(&db);
    db.compact();
    write(&db, expected, start + 10..start + 40, "third", true);
    flush(&db);
    write(&db, expected, start + 30..start + 64, "fourth", false);
    db
}

/// Checkpoints `db` (flushed or not) into `store` as subtask `subtask` of the
/// key groups `groups`: the handle a restore gets.
fn checkpointed(
    db: &RocksDb,
    store: &Arc<FileStore>,
    subtask: u32,
    groups: KeyGroupRange,
    flush: bool,
) -> NativeRestore {
    let local = db.dir().with_extension("chk");
    let places = db.checkpoint(&local, flush).unwrap();
    let incremental = Incremental {
        registry: Arc::new(Mutex::new(Registry::default())),
        attempt: 1,
        places,
    };
    let paths = Paths::new("job", &JobId("r".into()));
    let chk = paths.checkpoint_dir(CheckpointId(1));
    let uid = OperatorUid("sum".into());
    let uploaded = upload(
        store.as_ref(),
        &paths,
        &chk,
        CheckpointId(1),
        &uid,
        subtask,
        &local,
        &incremental,
    )
    .unwrap();
    let store: Arc<dyn CheckpointStore> = store.clone();
    NativeRestore::of_upload(&uploaded.state.files, &paths, &chk, groups, store, false)
}

/// Every entry of the instance in `range`, as a scan and as point reads of
/// every key ever written there (`written`) see them: a scan takes each key's
/// newest write whatever its file's level, a read the first it finds going
/// down the levels, so only a tree whose levels hold newer writes above older
/// ones agrees with both.
fn entries(db: &RocksDb, range: KeyGroupRange, written: &[Vec<u8>]) -> Entries {
    let read: Entries = written
        .iter()
        .zip(db.multi_get(written.iter().map(Vec::as_slice)).unwrap())
        .filter_map(|(key, value)| Some((key.clone(), value?.to_vec())))
        .collect();
    let mut seen = Entries::new();
    db.scan(range, |group, key, value| {
        let mut full = Vec::new();
        encode_key(group, key, &mut full);
        assert!(seen.insert(full, value.to_vec()).is_none(), "a key twice");
        Ok(())
    })
    .unwrap();
    assert_same(&read, &seen, "point reads and the scan");
    seen
}

/// Fails, naming the first key they disagree on, unless `a` and `b` are equal.
fn assert_same(a: &Entries, b: &Entries, what: &str) {
    let keys: std::collections::BTreeSet<&Vec<u8>> = a.keys().chain(b.keys()).collect();
    let differ: Vec<_> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .collect();
    if let Some(first) = differ.first() {
        panic!(
            "{what} disagree on {} keys, first {first:?}: {:?} against {:?}",
            differ.len(),
            a.get(*first).map(|v| String::from_utf8_lossy(v)),
            b.get(*first).map(|v| String::from_utf8_lossy(v)),
        );
    }
}

/// Two old subtasks (key groups 0-63 and 64-127) checkpointed, and the new
/// subtask of groups 43-85 rebuilt from them.
fn rescaled(flush: bool, remove_unneeded: bool) -> (Entries, Entries, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let memory = StateMemory::shared(1 << 20, 8 << 20);
    let store = Arc::new(FileStore::new(tmp.path().join("store")));
    let mut expected = Expected::default();
    let old: Vec<NativeRestore> = [0u32, 64]
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let db = old_instance(
                &tmp.path().join(format!("old-{i}")),
                &memory,
                start,
                &mut expected,
            );
            let groups = KeyGroupRange {
                start,
                end: start + 64,
            };
            checkpointed(&db, &store, i as u32, groups, flush)
        })
        .collect();
    let range = KeyGroupRange { start: 43, end: 86 };
    // The files whose keys lie wholly outside the new range: a restore that
    // needs them fails, since they are gone.
    let mut removed = 0;
    if remove_unneeded {
        for restore in &old {
            for (file, key) in restore
                .files
                .iter()
                .filter(|(f, _)| f.name.ends_with(".sst"))
            {
                let place = file.place.expect("every SST file's place is known");
                if place.key_groups.intersect(range).is_empty() {
                    std::fs::remove_file(tmp.path().join("store").join(key)).unwrap();
                    removed += 1;
                }
            }
        }
    }
    let dir = LocalDir::fresh(tmp.path().join("new")).unwrap();
    let (db, _) = rebuild("sum", dir, range, &old, &memory, None).unwrap();
    let all = KeyGroupRange { start: 0, end: 128 };
    let start = group_start(range.start);
    let end = group_start(range.end);
    let inside = |key: &Vec<u8>| key[..] >= start[..] && key[..] < end[..];
    expected.entries.retain(|key, _| inside(key));
    expected.written.retain(inside);
    expected.written.sort();
    expected.written.dedup();
    (
        entries(&db, all, &expected.written),
        expected.entries,
        removed,
    )
}

#[test]
fn a_rescale_from_flushed_checkpoints_downloads_only_the_files_of_its_key_groups() {
    let (restored, expected, removed) = rescaled(true, true);
    assert!(
        removed >= 2,
        "the test removes a file of each old subtask: {removed}"
    );
    assert!(!expected.is_empty());
    assert_eq!(
        restored, expected,
        "every entry of groups 43-85, each once, newest write"
    );
}

#[test]
fn a_rescale_from_checkpoints_with_a_log_reads_them_whole_and_restores_every_entry() {
    let (restored, expected, _) = rescaled(false, false);
    assert_same(
        &restored,
        &expected,
        "the restored and the written entries of groups 43-85",
    );
}
