//! Tests of one RocksDB instance: key-group ranges, lookups, checkpoints and
//! the removal of directories stopped processes left.

use super::*;

fn open_db(tmp: &tempfile::TempDir) -> RocksDb {
    let memory = StateMemory::shared(1 << 20, 8 << 20);
    RocksDb::open(
        "sum",
        LocalDir::fresh(tmp.path().join("db")).unwrap(),
        &memory,
        None,
    )
    .unwrap()
}

fn put(db: &RocksDb, group: u32, key: &[u8], value: &[u8]) {
    let mut k = Vec::new();
    encode_key(KeyGroup(group), key, &mut k);
    let mut batch = WriteBatch::default();
    batch.put(&k, value);
    db.write(batch).unwrap();
}

fn groups(db: &RocksDb) -> Vec<u32> {
    let mut seen = Vec::new();
    let all = KeyGroupRange { start: 0, end: 128 };
    db.scan(all, |g, _, _| {
        seen.push(g.0);
        Ok(())
    })
    .unwrap();
    seen
}

/// The key of number `i` in key group 1.
fn numbered_key(i: u64) -> Vec<u8> {
    let mut k = Vec::new();
    encode_key(KeyGroup(1), &i.to_le_bytes(), &mut k);
    k
}

/// Writes the numbered keys `numbers` in one batch.
fn put_numbered(db: &RocksDb, numbers: impl Iterator<Item = u64>) {
    let mut batch = WriteBatch::default();
    for i in numbers {
        batch.put(numbered_key(i), b"v");
    }
    db.write(batch).unwrap();
}

#[test]
fn a_multi_get_of_keys_not_written_is_answered_by_the_memtables_bloom_filter() {
    use rocksdb::perf::{set_perf_stats, PerfContext, PerfMetric, PerfStatsLevel};
    let tmp = tempfile::tempdir().unwrap();
    let db = open_db(&tmp);
    put_numbered(&db, 0..100_000u64);
    set_perf_stats(PerfStatsLevel::EnableCount);
    let mut perf = PerfContext::default();
    perf.reset();
    let absent: Vec<Vec<u8>> = (1_000_000..1_010_000u64).map(numbered_key).collect();
    let found = db.multi_get(absent.iter().map(|k| k.as_slice())).unwrap();
    assert!(found.iter().all(Option::is_none));
    // Without the instance's options on its column family there was no
    // filter: every lookup walked the memtable's skip list.
    let skipped = perf.metric(PerfMetric::BloomMemtableMissCount);
    let comparisons = perf.metric(PerfMetric::UserKeyComparisonCount);
    set_perf_stats(PerfStatsLevel::Disable);
    assert!(
        skipped >= 9_900,
        "{skipped} of 10,000 lookups skipped the memtable"
    );
    assert!(comparisons < 10_000, "{comparisons} key comparisons");
}

#[test]
fn a_multi_get_of_keys_never_written_reads_no_block_of_the_last_level() {
    use rocksdb::perf::{set_perf_stats, PerfContext, PerfMetric, PerfStatsLevel};
    let tmp = tempfile::tempdir().unwrap();
    let db = open_db(&tmp);
    put_numbered(&db, (0..200_000u64).step_by(2));
    db.db.compact_range::<&[u8], &[u8]>(None, None);
    let levels: Vec<i32> = db
        .db
        .live_files()
        .unwrap()
        .iter()
        .map(|f| f.level)
        .collect();
    assert!(levels.iter().all(|&l| l == 6), "files at levels {levels:?}");
    set_perf_stats(PerfStatsLevel::EnableCount);
    let mut perf = PerfContext::default();
    perf.reset();
    // Keys between the written ones: within the file's key range, never written.
    let absent: Vec<Vec<u8>> = (1..20_001u64).step_by(2).map(numbered_key).collect();
    let found = db.multi_get(absent.iter().map(|k| k.as_slice())).unwrap();
    let blocks = perf.metric(PerfMetric::BlockReadCount);
    set_perf_stats(PerfStatsLevel::Disable);
    assert!(found.iter().all(Option::is_none));
    // With `optimize_filters_for_hits` the last level had no filter: each of
    // these lookups read a data block to find nothing there (a new key's first
    // record, a third of all records in keyed-sum with 20 M keys).
    assert!(blocks < 200, "{blocks} blocks read for 10,000 absent keys");
}

#[test]
fn key_groups_are_contiguous_ranges_that_scan_and_drop_cheaply() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open_db(&tmp);
    for g in [0u32, 3, 3, 7, 100, 127] {
        put(&db, g, &g.to_le_bytes(), b"v");
    }
    put(&db, 3, b"other", b"w");
    assert_eq!(groups(&db), [0, 3, 3, 7, 100, 127]);
    let mut mid = Vec::new();
    db.scan(KeyGroupRange { start: 3, end: 100 }, |g, k, v| {
        mid.push((g.0, k.to_vec(), v.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(mid.len(), 3);
    db.retain_groups(KeyGroupRange { start: 3, end: 8 })
        .unwrap();
    assert_eq!(groups(&db), [3, 3, 7]);
}

#[test]
fn a_checkpoint_holds_the_unflushed_writes_and_reopens_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open_db(&tmp);
    put(&db, 5, b"k", b"v");
    let chk = tmp.path().join("chk");
    db.checkpoint(&chk, false).unwrap();
    let names: Vec<String> = std::fs::read_dir(&chk)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".log")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".sst")), "{names:?}");
    let mut seen = Vec::new();
    scan_checkpoint(
        "sum",
        &chk,
        KeyGroupRange { start: 0, end: 128 },
        |g, k, v| {
            seen.push((g.0, k.to_vec(), v.to_vec()));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(seen, vec![(5, b"k".to_vec(), b"v".to_vec())]);
    let dir = db.dir().to_path_buf();
    drop(db);
    assert!(!dir.exists(), "the local instance is removed with it");
}

#[test]
fn only_directories_of_stopped_processes_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let names = [
        format!("weir-sum-0-1-{dead:x}"),
        format!("weir-sum-0-1-{dead:x}.chk-4"),
        format!("weir-sum-0-1-{:x}", std::process::id()),
        format!("other-{dead:x}"),
    ];
    for name in &names {
        std::fs::create_dir(tmp.path().join(name)).unwrap();
    }
    remove_stale(tmp.path());
    let left: Vec<bool> = names.iter().map(|n| tmp.path().join(n).exists()).collect();
    assert_eq!(left, [false, false, true, true]);
}
