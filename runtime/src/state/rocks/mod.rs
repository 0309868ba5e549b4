//! RocksDB as the keyed state backend: one instance per operator subtask on local disk.
//!
//! Keys are `[key group: u16 big-endian][key in bincode]` and values are the value
//! in bincode, so one key group is one contiguous key range: a range of groups is
//! extracted by iterating it and dropped by deleting it, which is what restoring
//! at another parallelism does. Writes go to the write-ahead log, unsynced: the
//! local instance is scratch space (what must survive a crash is in the last
//! completed checkpoint), but a checkpoint copies the log instead of flushing
//! the memtables on the task thread. A native savepoint flushes them instead,
//! so that a restore at another parallelism can take only the SST files of its
//! key groups (see [`restore`]).
//!
//! - [`native`]: snapshots (a local RocksDB checkpoint of hard links), their
//!   incremental upload to `shared/` (for checkpoints and native savepoints),
//!   and the conversion to canonical blobs for canonical savepoints.
//! - [`cached`]: the keyed state of an operator subtask, in its instance
//!   behind a CLOCK cache of decoded values.
//! - `write_back`: the cache's updated values, encoded and written in key order.
//! - `sst_files`: where a snapshot's SST files sit in the tree, and ingesting
//!   files that another instance wrote.
//! - [`restore`]: building a subtask's instance from the checkpoints of the old
//!   subtasks whose key groups it now owns.

pub mod cached;
pub mod native;
pub mod restore;
mod sst_files;
mod write_back;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, DBPinnableSlice, Direction, FlushOptions, IteratorMode, Options,
    ReadOptions, WriteBatch, DB,
};

use serde::de::DeserializeOwned;

use crate::checkpoint::metadata::SstPlace;
use crate::error::{Error, Result};
use crate::keys::{KeyGroup, KeyGroupRange};
use crate::state::memory::StateMemory;
use crate::state::ttl::Expiry;

pub use native::{NativeFormat, NativeSnapshot, Registry};
pub use restore::NativeRestore;

/// The most key groups a RocksDB key prefix can name.
pub const MAX_KEY_GROUPS: u32 = 1 << 16;

/// A local directory removed (with everything in it) when dropped.
#[derive(Debug)]
pub struct LocalDir(PathBuf);

impl LocalDir {
    /// Takes ownership of `path`, removing whatever an earlier run left there.
    pub fn fresh(path: PathBuf) -> Result<Self> {
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("clearing", &path, e))
            }
            _ => {}
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        Ok(LocalDir(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for LocalDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.0.display(), error = %e, "could not remove local state");
            }
        }
    }
}

/// Removes the instance directories under `dir` that processes no longer running
/// left behind (a killed process cannot remove its own). Instance directories are
/// named `weir-...-{pid in hex}`, checkpoint and restore scratch directories after
/// them with a `.` suffix; nothing else in `dir` is touched.
pub fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("weir-") {
            continue;
        }
        let base = name.split('.').next().unwrap_or_default();
        let Some(pid) = base
            .rsplit('-')
            .next()
            .and_then(|p| u32::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        let running =
            pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists();
        if !running {
            tracing::info!(dir = %entry.path().display(), "removing local state a stopped process left");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Writes the RocksDB key of `key` (already in bincode) in `group` into `out`.
#[inline]
pub fn encode_key(group: KeyGroup, key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(group.0 as u16).to_be_bytes());
    out.extend_from_slice(key);
}

/// The key group of a RocksDB key, and the key after its prefix.
#[inline]
pub fn split_key(key: &[u8]) -> Option<(KeyGroup, &[u8])> {
    let (group, rest) = key.split_first_chunk::<2>()?;
    Some((KeyGroup(u32::from(u16::from_be_bytes(*group))), rest))
}

/// The first RocksDB key of key group `group` (groups up to [`MAX_KEY_GROUPS`]).
pub fn group_start(group: u32) -> Vec<u8> {
    if group >= MAX_KEY_GROUPS {
        return vec![0xff, 0xff, 0xff];
    }
    (group as u16).to_be_bytes().to_vec()
}

fn failed(uid: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::State {
        uid: uid.to_string(),
        reason: format!("rocksdb: {what}: {e}"),
    }
}

/// Decodes a key and value read from RocksDB (both in bincode).
pub fn decode<K: DeserializeOwned, V: DeserializeOwned>(
    uid: &str,
    k: &[u8],
    v: &[u8],
) -> Result<(K, V)> {
    let bad = |e: bincode::Error| Error::State {
        uid: uid.to_string(),
        reason: format!("decoding keyed state: {e}"),
    };
    Ok((
        bincode::deserialize(k).map_err(bad)?,
        bincode::deserialize(v).map_err(bad)?,
    ))
}

/// One operator subtask's RocksDB instance. The directory is removed on drop,
/// after the database is closed (fields drop in order).
pub struct RocksDb {
    db: DB,
    uid: String,
    dir: LocalDir,
}

impl std::fmt::Debug for RocksDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RocksDb({})", self.dir.path().display())
    }
}

/// Options for the instances, measured on keyed-sum with 20 M keys in 64 MiB:
/// - blocks stay uncompressed and are read through mmap: a point lookup that
///   misses the block cache reads its block in place, with no copy out of the
///   page cache and no decompression (LZ4 blocks cost a fifth of the time);
/// - index and filter blocks are held by the open files, outside the block
///   cache: in it, data blocks pushed them out and every lookup read a
///   file's whole filter again (partitioned, pinned at the top and cached at
///   high priority they still cost a third of keyed-sum's throughput);
/// - bloom filters on every level, the last included (about 1.25 bytes per
///   key, held by the open files): a key's first record looks for a value it
///   does not have, and without a filter there each such lookup read a block
///   for nothing (keyed-sum at 20 M keys: 30 % more records per CPU-second
///   with it); and a bloom filter over the memtable (lookups of keys not in
///   it skip its skip list);
/// - the block cache and the memtables' memory are the process's
///   ([`StateMemory`]); a checkpoint asks for a flush in the background, and
///   background flushes and compactions run on two threads.
fn options(memory: Option<&StateMemory>, expiry: Option<Expiry>) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(false);
    let mut options = Options::default();
    if let Some(memory) = memory {
        table.set_block_cache(memory.block_cache());
        options.set_write_buffer_manager(memory.write_buffers());
        options.set_write_buffer_size(memory.write_buffer_size());
    }
    options.create_if_missing(true);
    options.set_block_based_table_factory(&table);
    options.set_compression_type(rocksdb::DBCompressionType::None);
    options.set_allow_mmap_reads(true);
    options.set_memtable_whole_key_filtering(true);
    options.set_memtable_prefix_bloom_ratio(0.1);
    options.set_max_background_jobs(2);
    options.set_max_open_files(512);
    if let Some(expiry) = expiry {
        crate::state::ttl::drop_expired_in_compactions(&mut options, expiry);
    }
    options
}

impl RocksDb {
    /// Opens (or creates) the instance in `dir`, which it owns from now on,
    /// with the process's block cache and memtable memory; with an `expiry`,
    /// its compactions drop the values written longer ago than its TTL (see
    /// [`crate::state::ttl`]).
    pub fn open(
        uid: &str,
        dir: LocalDir,
        memory: &StateMemory,
        expiry: Option<Expiry>,
    ) -> Result<Self> {
        // Opened with the default column family named, so that its handle exists
        // for the batched multi-get, and with the options given to it: a
        // column family opened by name alone gets RocksDB's defaults (no
        // bloom filters, no LZ4, the default memtable), whatever the DB's.
        let db = DB::open_cf_with_opts(
            &options(Some(memory), expiry),
            dir.path(),
            [(
                rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
                options(Some(memory), expiry),
            )],
        )
        .map_err(|e| failed(uid, "opening", e))?;
        Ok(RocksDb {
            db,
            uid: uid.to_string(),
            dir,
        })
    }

    /// The instance's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Applies `batch` atomically.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.db
            .write(batch)
            .map_err(|e| failed(&self.uid, "writing", e))
    }

    /// Reads the values of `keys` in one multi-get.
    pub fn multi_get<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> Result<Vec<Option<DBPinnableSlice<'_>>>> {
        let cf = self.db.cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME);
        let cf = cf.ok_or_else(|| failed(&self.uid, "reading", "no default column family"))?;
        self.db
            .batched_multi_get_cf(&cf, keys, false)
            .into_iter()
            .map(|r| r.map_err(|e| failed(&self.uid, "reading", e)))
            .collect()
    }

    /// Writes a checkpoint into `to` (which must not exist yet), what the caller
    /// uploads from there: the SST files hard-linked and the write-ahead log
    /// copied, which holds what the memtables hold, so the task does not wait
    /// for a flush. Then it asks for one in the background (unless one is
    /// running), so that the next checkpoint's log holds only newer writes.
    /// With `flush`, the memtables are flushed first instead (the caller waits),
    /// so that the files alone hold the state.
    ///
    /// Returns where each SST file of the checkpoint sits in the tree, or
    /// nothing if a compaction changed the files before they could be listed.
    pub fn checkpoint(&self, to: &Path, flush: bool) -> Result<HashMap<String, SstPlace>> {
        let log_size_for_flush = if flush { 0 } else { u64::MAX };
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint_with_log_size(to, log_size_for_flush))
            .map_err(|e| failed(&self.uid, "creating a checkpoint", e))?;
        let places = sst_files::places(&self.db, &self.uid, to)?;
        let flushing = self.db.property_int_value("rocksdb.num-running-flushes");
        if flushing.map_err(|e| failed(&self.uid, "reading a property", e))? == Some(0) {
            let mut flush = FlushOptions::default();
            flush.set_wait(false);
            self.db
                .flush_opt(&flush)
                .map_err(|e| failed(&self.uid, "flushing", e))?;
        }
        Ok(places)
    }

    /// Moves the SST file at `path` (keys in order, none in the instance's
    /// memtable or files) into the instance without rewriting it.
    pub fn ingest(&self, path: &Path) -> Result<()> {
        let mut ingest = rocksdb::IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        self.db
            .ingest_external_file_opts(&ingest, vec![path])
            .map_err(|e| failed(&self.uid, "ingesting restored entries", e))
    }

    /// Deletes every key outside `keep` (key groups below and above it).
    pub fn retain_groups(&self, keep: KeyGroupRange) -> Result<()> {
        let mut batch = WriteBatch::default();
        if keep.start > 0 {
            batch.delete_range(group_start(0), group_start(keep.start));
        }
        batch.delete_range(group_start(keep.end), group_start(MAX_KEY_GROUPS));
        self.write(batch)
    }

    /// Calls `each(group, key, value)` for every entry of the key groups in
    /// `range`, in key order.
    pub fn scan(
        &self,
        range: KeyGroupRange,
        mut each: impl FnMut(KeyGroup, &[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        scan_db(&self.db, &self.uid, range, &mut each)
    }

    /// Compacts every file now (tests of what compactions drop).
    #[cfg(test)]
    pub fn compact(&self) {
        self.db.compact_range::<&[u8], &[u8]>(None, None);
    }
}

impl RocksDb {
    /// Calls `each(key, value)` (the key after its key group) for the entries
    /// with keys in `[from, to)`, in order, while it returns true.
    pub fn scan_keys(
        &self,
        from: &[u8],
        to: &[u8],
        mut each: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(to.to_vec());
        for item in self
            .db
            .iterator_opt(IteratorMode::From(from, Direction::Forward), read)
        {
            let (key, value) = item.map_err(|e| failed(&self.uid, "iterating", e))?;
            let (_, key) = split_key(&key)
                .ok_or_else(|| failed(&self.uid, "iterating", "a key without its key group"))?;
            if !each(key, &value)? {
                break;
            }
        }
        Ok(())
    }
}

/// What a scan calls for each entry: its key group, key and value (raw bytes).
type EachEntry<'a> = dyn FnMut(KeyGroup, &[u8], &[u8]) -> Result<()> + 'a;

/// Iterates the entries of `range` in `db`.
fn scan_db(db: &DB, uid: &str, range: KeyGroupRange, each: &mut EachEntry<'_>) -> Result<()> {
    let mut read = ReadOptions::default();
    read.set_iterate_upper_bound(group_start(range.end));
    read.fill_cache(false);
    let start = group_start(range.start);
    for item in db.iterator_opt(IteratorMode::From(&start, Direction::Forward), read) {
        let (key, value) = item.map_err(|e| failed(uid, "iterating", e))?;
        let (group, key) = split_key(&key)
            .ok_or_else(|| failed(uid, "iterating", "a key without its key group"))?;
        each(group, key, &value)?;
    }
    Ok(())
}

/// Opens the RocksDB checkpoint in `dir` read-only and iterates the key groups in
/// `range` (see [`RocksDb::scan`]).
pub fn scan_checkpoint(
    uid: &str,
    dir: &Path,
    range: KeyGroupRange,
    mut each: impl FnMut(KeyGroup, &[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    let db = DB::open_for_read_only(&options(None, None), dir, false)
        .map_err(|e| failed(uid, "opening a checkpoint", e))?;
    scan_db(&db, uid, range, &mut each)
}

#[cfg(test)]
mod rescale_tests;
#[cfg(test)]
mod tests;
