//! Keyed state in RocksDB behind a CLOCK cache of decoded values.
//!
//! A batch finds each record's cache entry once. The keys it lacks are read in
//! one multi-get before the batch is applied; updated values stay in the cache
//! (dirty) and reach RocksDB in one sorted write batch at every checkpoint, when
//! the CLOCK evicts them, or once they would fill [`DIRTY_MEMTABLES`] memtables
//! (so a checkpoint never has more than that to write on the task thread). The
//! cache's bytes count against the process's [`StateMemory`]: once all caches of
//! the process together pass its bound, each cache evicts its share of the
//! excess, so RocksDB sees per-batch work, never per-record calls.

use std::sync::{Arc, Mutex};

use serde::{de::DeserializeOwned, Serialize};

use crate::data::{Barrier, Batch, SavepointFormat, SnapshotKind};
use crate::error::{Error, Result};
use crate::keys::{KeyGroup, KeyGroupRange, StableHash};
use crate::state::cache::{ClockCache, Entry};
use crate::state::memory::StateMemory;
use crate::state::rocks::native::Incremental;
use crate::state::rocks::write_back::{encode_failed, WriteBack};
use crate::state::rocks::{encode_key, LocalDir, NativeFormat, NativeSnapshot, Registry, RocksDb};
use crate::state::OperatorSnapshot;

/// How many memtables' worth of dirty values (their encoded bytes) a cache
/// holds before it writes them all back.
pub const DIRTY_MEMTABLES: usize = 2;

/// How many cached values the first estimate of the bytes per entry encodes.
const SAMPLE: usize = 64;

/// The bytes of the key group before each RocksDB key.
const KEY_GROUP_PREFIX: u64 = std::mem::size_of::<u16>() as u64;

/// One operator subtask's keyed state in RocksDB, behind its cache.
pub struct CachedRocks<K, V> {
    cache: ClockCache<K, V>,
    db: RocksDb,
    registry: Arc<Mutex<Registry>>,
    memory: Arc<StateMemory>,
    /// The bytes this cache last reported to `memory`.
    reported: usize,
    /// Encoded bytes per entry (key and value, as RocksDB stores them): from
    /// a sample of the first values cached, then from each write-back; 0 until
    /// measured.
    encoded: usize,
    /// Estimated bytes per cached key, from `encoded`.
    entry_bytes: usize,
    /// How many cached entries are dirty.
    dirty: usize,
    attempt: u64,
    key_groups: KeyGroupRange,
    uid: String,
    max_parallelism: u32,
    /// Reused per batch: each record's entry, the entries of new keys, and
    /// their encoded keys.
    slots: Vec<usize>,
    missing: Vec<usize>,
    keys: Vec<u8>,
    offsets: Vec<usize>,
    write_back: WriteBack,
}

/// What [`CachedRocks::new`] needs besides the instance.
pub struct CachedRocksConfig {
    /// The operator's uid (in errors).
    pub uid: String,
    /// The job's number of key groups.
    pub max_parallelism: u32,
    /// The key groups the subtask owns.
    pub key_groups: KeyGroupRange,
    /// The attempt, which makes uploaded file names unique.
    pub attempt: u64,
}

impl<K, V> CachedRocks<K, V>
where
    K: StableHash + Serialize + DeserializeOwned + Eq + std::hash::Hash,
    V: Serialize + DeserializeOwned,
{
    /// Keyed state in `db` (opened with `memory`'s block cache), with the
    /// registry of its restored files.
    pub fn new(
        db: RocksDb,
        registry: Registry,
        memory: Arc<StateMemory>,
        config: CachedRocksConfig,
    ) -> Self {
        CachedRocks {
            cache: ClockCache::default(),
            db,
            registry: Arc::new(Mutex::new(registry)),
            memory,
            reported: 0,
            encoded: 0,
            entry_bytes: entry_bytes::<K, V>(0),
            dirty: 0,
            attempt: config.attempt,
            key_groups: config.key_groups,
            uid: config.uid,
            max_parallelism: config.max_parallelism,
            slots: Vec::new(),
            missing: Vec::new(),
            keys: Vec::new(),
            offsets: Vec::new(),
            write_back: WriteBack::default(),
        }
    }

    /// Hands each record of `input` (emptied) to `f` with its key's entry,
    /// reading the keys the cache lacks in one multi-get first; `key` names a
    /// record's key.
    pub fn update<T, Q>(
        &mut self,
        input: &mut Batch<T>,
        key: impl for<'a> Fn(&'a T) -> std::borrow::Cow<'a, Q>,
        mut f: impl FnMut(&K, &mut Option<V>, T) -> Result<()>,
    ) -> Result<()>
    where
        K: crate::state::KeyOf<Q>,
        Q: std::hash::Hash + Clone,
    {
        let (cache, slots, missing) = (&mut self.cache, &mut self.slots, &mut self.missing);
        slots.clear();
        missing.clear();
        cache.reserve(input.len());
        for record in input.iter() {
            let (index, new) = cache.slot(&*key(record));
            slots.push(index);
            if new {
                missing.push(index);
            }
        }
        self.load_missing()?;
        for (record, &index) in input.drain(..).zip(&self.slots) {
            let entry = self.cache.entry(index).ok_or_else(|| lost(&self.uid))?;
            f(&entry.key, &mut entry.value, record)?;
            self.dirty += usize::from(!std::mem::replace(&mut entry.dirty, true));
        }
        self.account()
    }

    /// Sets `k`'s value to `value` (`None` deletes it) without reading the old one.
    pub fn put(&mut self, k: K, value: Option<V>) -> Result<()> {
        self.dirty += usize::from(self.cache.put(k, value));
        self.account()
    }

    /// Number of cached keys.
    pub fn cached_keys(&self) -> usize {
        self.cache.len()
    }

    /// Reads the keys of the entries in `self.missing` from RocksDB, in one multi-get.
    fn load_missing(&mut self) -> Result<()> {
        if self.missing.is_empty() {
            return Ok(());
        }
        self.keys.clear();
        self.offsets.clear();
        for &index in &self.missing {
            let entry = self.cache.entry(index).ok_or_else(|| lost(&self.uid))?;
            self.offsets.push(self.keys.len());
            let group = KeyGroup::of(&entry.key, self.max_parallelism).0 as u16;
            self.keys.extend_from_slice(&group.to_be_bytes());
            bincode::serialize_into(&mut self.keys, &entry.key)
                .map_err(|e| encode_failed(&self.uid, e))?;
        }
        self.offsets.push(self.keys.len());
        let buffer = &self.keys;
        let slices = self.offsets.windows(2).map(|w| &buffer[w[0]..w[1]]);
        let values = self.db.multi_get(slices)?;
        for (&index, value) in self.missing.iter().zip(values) {
            if let Some(bytes) = value {
                let v = bincode::deserialize(&bytes).map_err(|e| Error::State {
                    uid: self.uid.clone(),
                    reason: format!("decoding a value read from RocksDB: {e}"),
                })?;
                let entry = self.cache.entry(index).ok_or_else(|| lost(&self.uid))?;
                entry.value = Some(v);
            }
        }
        Ok(())
    }

    /// Reports the cache's size to the process, evicts the share the process
    /// asks back, and writes the dirty values back once they would fill
    /// [`DIRTY_MEMTABLES`] memtables.
    fn account(&mut self) -> Result<()> {
        if self.encoded == 0 {
            self.measure();
        }
        self.report();
        let give = self.memory.over(self.reported);
        if give > 0 {
            let count = give.div_ceil(self.entry_bytes.max(1));
            let (uid, max_parallelism) = (&self.uid, self.max_parallelism);
            let (write_back, dirty) = (&mut self.write_back, &mut self.dirty);
            write_back.clear();
            self.cache.evict(count, |e: Entry<K, V>| {
                if e.dirty {
                    *dirty -= 1;
                    write_back.add(uid, max_parallelism, &e.key, e.value.as_ref());
                }
            });
            self.written()?;
            self.report();
        }
        if self.dirty * self.encoded > self.memory.write_buffer_size() * DIRTY_MEMTABLES {
            self.write_back()?;
        }
        Ok(())
    }

    /// Estimates the bytes per entry from up to [`SAMPLE`] cached values,
    /// encoded: before the first write-back, the cache's size would otherwise
    /// count each value as its in-place size, however many bytes it owns.
    fn measure(&mut self) {
        let (mut bytes, mut values) = (0, 0);
        for entry in self.cache.iter_mut().take(SAMPLE) {
            if let Some(value) = &entry.value {
                // The key group's prefix, the key and the value, as `WriteBack` encodes them.
                let key = bincode::serialized_size(&entry.key).unwrap_or(0);
                bytes += KEY_GROUP_PREFIX + key + bincode::serialized_size(value).unwrap_or(0);
                values += 1;
            }
        }
        if let Some(average) = bytes.checked_div(values) {
            self.learn_size(average as usize);
        }
    }

    /// Tells the process the cache's size now.
    fn report(&mut self) {
        let bytes = self.cache.len() * self.entry_bytes;
        if bytes > self.reported {
            self.memory.grow(bytes - self.reported);
        } else {
            self.memory.shrink(self.reported - bytes);
        }
        self.reported = bytes;
    }

    /// Writes the encoded write-backs and updates the bytes per entry.
    fn written(&mut self) -> Result<()> {
        if let Some(encoded) = self.write_back.write(&self.db)? {
            self.learn_size(encoded);
        }
        Ok(())
    }

    /// Takes `encoded` bytes as the size of an entry in RocksDB.
    fn learn_size(&mut self, encoded: usize) {
        self.encoded = encoded.max(1);
        self.entry_bytes = entry_bytes::<K, V>(encoded);
    }

    /// Writes every dirty value back to RocksDB in one batch and forgets deleted keys.
    pub fn write_back(&mut self) -> Result<()> {
        let (uid, max_parallelism) = (&self.uid, self.max_parallelism);
        let write_back = &mut self.write_back;
        write_back.clear();
        for entry in self.cache.iter_mut().filter(|e| e.dirty) {
            write_back.add(uid, max_parallelism, &entry.key, entry.value.as_ref());
            entry.dirty = false;
        }
        self.dirty = 0;
        self.written()?;
        self.cache.forget_deleted();
        self.report();
        Ok(())
    }

    /// In each key group of the subtask, the entries whose encoded key (after the
    /// key group) lies in `[from, to)`, in order, handed to `each` until it
    /// returns false for that group. Updates are written back first.
    pub fn scan_between(
        &mut self,
        from: &[u8],
        to: &[u8],
        mut each: impl FnMut(KeyGroup, K, V) -> Result<bool>,
    ) -> Result<()> {
        self.write_back()?;
        let (mut lower, mut upper) = (Vec::new(), Vec::new());
        for group in self.key_groups.start..self.key_groups.end {
            encode_key(KeyGroup(group), from, &mut lower);
            encode_key(KeyGroup(group), to, &mut upper);
            let mut more = true;
            self.db.scan_keys(&lower, &upper, |k, v| {
                if !more {
                    return Ok(false);
                }
                let (key, value) = super::decode(&self.uid, k, v)?;
                more = each(KeyGroup(group), key, value)?;
                Ok(more)
            })?;
        }
        Ok(())
    }

    /// Snapshots the state for `barrier`: writes the dirty values back and
    /// hard-links a local RocksDB checkpoint, which the uploader stores.
    pub fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        self.write_back()?;
        let dir = LocalDir::fresh(
            self.db
                .dir()
                .with_extension(format!("chk-{}", barrier.id.0)),
        )?;
        // A native savepoint is what rescales restore from: flushed, its files
        // alone hold the state, and a new subtask takes only those of its key
        // groups (see `restore`). A checkpoint copies the log instead, so that
        // the task never waits for a flush.
        let savepoint = barrier.kind == SnapshotKind::Savepoint(SavepointFormat::Native);
        let places = self.db.checkpoint(dir.path(), savepoint)?;
        let format = match barrier.kind {
            // A native savepoint stores the files as a checkpoint would; the
            // savepoint writer then copies them all into its own directory.
            SnapshotKind::Checkpoint | SnapshotKind::Savepoint(SavepointFormat::Native) => {
                self.registry
                    .lock()
                    .map_err(|_| Error::Internal("a RocksDB registry lock was poisoned".into()))?
                    .completed(barrier.last_completed);
                NativeFormat::Incremental(Incremental {
                    registry: self.registry.clone(),
                    attempt: self.attempt,
                    places,
                })
            }
            SnapshotKind::Savepoint(SavepointFormat::Canonical) => NativeFormat::Canonical {
                key_groups: self.key_groups,
            },
        };
        Ok(OperatorSnapshot {
            native: Some(NativeSnapshot { dir, format }),
            ..Default::default()
        })
    }
}

impl<K, V> Drop for CachedRocks<K, V> {
    fn drop(&mut self) {
        self.memory.shrink(self.reported);
    }
}

/// The estimated bytes a cached key takes: the entry in the table (which is at
/// most seven eighths full) and, for values that own heap memory, the encoded
/// bytes beyond the types' in-place size (`encoded` bytes per written entry).
pub fn entry_bytes<K, V>(encoded: usize) -> usize {
    let in_table = (std::mem::size_of::<Entry<K, V>>() + 1) * 8 / 7;
    let in_place = std::mem::size_of::<K>() + std::mem::size_of::<V>();
    in_table + encoded.saturating_sub(in_place)
}

fn lost(uid: &str) -> Error {
    Error::Internal(format!("state of {uid}: a loaded key left the cache"))
}
