//! Keyed state of one operator subtask, on the heap or in RocksDB behind a cache.
//!
//! Operators see one interface, [`KeyedState::update`]: a batch of records, each
//! handed to a function with its key's value. On the heap the map is the state.
//! With RocksDB the map is a cache: the keys of a batch that it lacks are read in
//! one multi-get before the batch is applied, updated values stay in the cache
//! (dirty) and are written back in one batch at every checkpoint, or when they are
//! evicted (a quarter of the keys at a time, once the cache outgrows its bytes), so
//! RocksDB sees per-batch work, never per-record calls.
//!
//! Snapshots: the heap writes canonical key-group blobs; RocksDB hard-links a
//! local checkpoint that the uploader stores incrementally, or converts to
//! canonical blobs for a savepoint.

use std::borrow::Cow;
use std::hash::{BuildHasherDefault, Hash};
use std::sync::{Arc, Mutex};

use rocksdb::WriteBatch;
use rustc_hash::FxHasher;
use serde::{de::DeserializeOwned, Serialize};

use crate::data::{Barrier, Batch, SnapshotKind};
use crate::error::{Error, Result};
use crate::keys::{KeyGroup, KeyGroupRange, StableHash};
use crate::operator::OperatorContext;
use crate::state::backend::Backend;
use crate::state::codec::{decode_keyed, encode_keyed, entries};
use crate::state::lookup::{KeyOf, Query};
use crate::state::rocks::restore::{rebuild, BatchWriter};
use crate::state::rocks::{
    encode_key, LocalDir, NativeFormat, NativeSnapshot, Registry, RocksDb, MAX_KEY_GROUPS,
};
use crate::state::{OperatorSnapshot, RestoredState};

/// The hash map keyed operators keep their state in (a fast, unseeded hasher:
/// placement across subtasks uses [`StableHash`], not this).
pub type KeyedMap<K, V> = hashbrown::HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A key's value in the map, and whether RocksDB has yet to see it.
struct Slot<V> {
    value: Option<V>,
    dirty: bool,
}

/// One write-back entry: its encoded key and value in a shared buffer.
struct Write {
    start: usize,
    key_end: usize,
    end: usize,
    delete: bool,
}

/// What the RocksDB backend adds to the map.
struct Rocks {
    db: RocksDb,
    registry: Arc<Mutex<Registry>>,
    /// Memory the map may use, in bytes; past it a quarter of the keys are
    /// dropped (written back first if dirty).
    cache_bytes: usize,
    /// Estimated bytes per cached key, from the sizes seen at write-backs.
    entry_bytes: usize,
    attempt: u64,
    key_groups: KeyGroupRange,
    /// Reused buffers: the batch's keys, and encoded keys and values.
    keys: Vec<u8>,
    offsets: Vec<usize>,
    value: Vec<u8>,
    /// Reused buffers of write-backs.
    writes: Vec<Write>,
    buffer: Vec<u8>,
}

/// One operator subtask's keyed state.
pub struct KeyedState<K, V> {
    map: KeyedMap<K, Slot<V>>,
    rocks: Option<Rocks>,
    keys: Vec<K>,
    uid: String,
    max_parallelism: u32,
}

impl<K, V> Default for KeyedState<K, V> {
    fn default() -> Self {
        KeyedState {
            map: KeyedMap::default(),
            rocks: None,
            keys: Vec::new(),
            uid: String::new(),
            max_parallelism: 1,
        }
    }
}

impl<K, V> KeyedState<K, V>
where
    K: StableHash + Serialize + DeserializeOwned + Eq + Hash + Clone,
    V: Serialize + DeserializeOwned,
{
    /// Opens the backend the context asks for and loads the key groups it restores.
    pub fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.uid = ctx.uid.0.clone();
        self.max_parallelism = ctx.max_parallelism;
        let restored = restored.unwrap_or_default();
        match ctx.state.backend {
            Backend::Heap => {
                let map = &mut self.map;
                decode_keyed(&self.uid, &restored.keyed, |k, v| {
                    map.insert(
                        k,
                        Slot {
                            value: Some(v),
                            dirty: false,
                        },
                    );
                })?;
                let scratch = ctx.state.local_dir.join(scratch_name(ctx));
                for native in &restored.native {
                    let range = native.key_groups.intersect(ctx.key_groups);
                    native.scan(&self.uid, &scratch, range, |_, k, v| {
                        let (key, value) = decode(&self.uid, k, v)?;
                        map.insert(
                            key,
                            Slot {
                                value: Some(value),
                                dirty: false,
                            },
                        );
                        Ok(())
                    })?;
                }
            }
            Backend::Rocksdb => {
                if ctx.max_parallelism > MAX_KEY_GROUPS {
                    return Err(Error::InvalidJob(format!(
                        "the RocksDB backend supports at most {MAX_KEY_GROUPS} key groups, the job has {}",
                        ctx.max_parallelism
                    )));
                }
                let dir = LocalDir::fresh(ctx.state.local_dir.join(scratch_name(ctx)))?;
                let (db, registry) = rebuild(&self.uid, dir, ctx.key_groups, &restored.native)?;
                let mut writer = BatchWriter::new(&db);
                for (group, blob) in &restored.keyed {
                    for entry in entries(blob) {
                        let (k, v) = entry.map_err(|e| Error::State {
                            uid: self.uid.clone(),
                            reason: format!("decoding key group {}: {e}", group.0),
                        })?;
                        writer.put(*group, k, v)?;
                    }
                }
                writer.finish()?;
                self.rocks = Some(Rocks {
                    db,
                    registry: Arc::new(Mutex::new(registry)),
                    cache_bytes: ctx.state.cache_bytes.max(1),
                    entry_bytes: std::mem::size_of::<(K, Slot<V>)>() + 16,
                    attempt: ctx.attempt,
                    key_groups: ctx.key_groups,
                    keys: Vec::new(),
                    offsets: Vec::new(),
                    value: Vec::new(),
                    writes: Vec::new(),
                    buffer: Vec::new(),
                });
            }
        }
        Ok(())
    }

    /// Hands each record of `input` (emptied) to `f` with its key and that key's
    /// value (`None` if it has none; set it to `None` to delete it), in order.
    /// `key` gives a record's key as the record lends it (`Q` names a `K`), so
    /// a key is built only when it is new to the state.
    pub fn update<T, Q>(
        &mut self,
        input: &mut Batch<T>,
        key: impl for<'a> Fn(&'a T) -> Cow<'a, Q>,
        mut f: impl FnMut(&K, &mut Option<V>, T) -> Result<()>,
    ) -> Result<()>
    where
        K: KeyOf<Q>,
        Q: Hash + Clone,
    {
        if self.rocks.is_none() {
            for record in input.drain(..) {
                let query = key(&record);
                match self.map.get_key_value_mut(&Query(&*query)) {
                    Some((k, slot)) => {
                        drop(query);
                        f(k, &mut slot.value, record)?;
                        if slot.value.is_none() {
                            let k = k.clone();
                            self.map.remove(&k);
                        }
                    }
                    None => {
                        let k = K::from_query(&query);
                        drop(query);
                        let mut value = None;
                        f(&k, &mut value, record)?;
                        if value.is_some() {
                            self.map.insert(
                                k,
                                Slot {
                                    value,
                                    dirty: false,
                                },
                            );
                        }
                    }
                }
            }
            return Ok(());
        }
        self.keys.clear();
        for record in input.iter() {
            let query = key(record);
            if !self.map.contains_key(&Query(&*query)) {
                // A placeholder, so that the key is read once however often
                // the batch names it.
                let k = K::from_query(&query);
                self.map.insert(
                    k.clone(),
                    Slot {
                        value: None,
                        dirty: false,
                    },
                );
                self.keys.push(k);
            }
        }
        self.load_missing()?;
        for record in input.drain(..) {
            let query = key(&record);
            let (k, slot) = self.map.get_key_value_mut(&Query(&*query)).ok_or_else(|| {
                Error::Internal(format!(
                    "state of {}: a loaded key left the cache",
                    self.uid
                ))
            })?;
            drop(query);
            f(k, &mut slot.value, record)?;
            slot.dirty = true;
        }
        let over = self
            .rocks
            .as_ref()
            .is_some_and(|r| self.map.len() > r.cache_bytes / r.entry_bytes);
        if over {
            self.evict()?;
        }
        Ok(())
    }

    /// Sets `k`'s value to `value` (`None` deletes it) without reading the old one.
    pub fn put(&mut self, k: K, value: Option<V>) -> Result<()> {
        let Some(rocks) = self.rocks.as_ref() else {
            match value {
                Some(value) => {
                    self.map.insert(
                        k,
                        Slot {
                            value: Some(value),
                            dirty: false,
                        },
                    );
                }
                None => {
                    self.map.remove(&k);
                }
            }
            return Ok(());
        };
        let capacity = rocks.cache_bytes / rocks.entry_bytes;
        self.map.insert(k, Slot { value, dirty: true });
        if self.map.len() > capacity {
            self.evict()?;
        }
        Ok(())
    }

    /// Whether the state is in RocksDB (else on the heap).
    pub fn in_rocksdb(&self) -> bool {
        self.rocks.is_some()
    }

    /// Every key and value, heap backend only (RocksDB yields nothing: use
    /// [`KeyedState::scan_between`]).
    pub fn heap_entries(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map
            .iter()
            .filter(|_| self.rocks.is_none())
            .filter_map(|(k, s)| s.value.as_ref().map(|v| (k, v)))
    }

    /// RocksDB backend only: in each key group of the subtask, the entries whose
    /// encoded key (after the key group) lies in `[from, to)`, in order, handed to
    /// `each` until it returns false for that group. Updates are written back first.
    pub fn scan_between(
        &mut self,
        from: &[u8],
        to: &[u8],
        mut each: impl FnMut(KeyGroup, K, V) -> Result<bool>,
    ) -> Result<()> {
        if self.rocks.is_none() {
            return Ok(());
        }
        self.write_back()?;
        let Some(rocks) = self.rocks.as_ref() else {
            return Ok(());
        };
        let (mut lower, mut upper) = (Vec::new(), Vec::new());
        for group in rocks.key_groups.start..rocks.key_groups.end {
            encode_key(KeyGroup(group), from, &mut lower);
            encode_key(KeyGroup(group), to, &mut upper);
            let mut more = true;
            rocks.db.scan_keys(&lower, &upper, |k, v| {
                if !more {
                    return Ok(false);
                }
                let (key, value) = decode(&self.uid, k, v)?;
                more = each(KeyGroup(group), key, value)?;
                Ok(more)
            })?;
        }
        Ok(())
    }

    /// Reads the keys of `self.keys` (in the cache with no value yet) from
    /// RocksDB, in one multi-get.
    fn load_missing(&mut self) -> Result<()> {
        let Some(rocks) = self.rocks.as_mut() else {
            return Ok(());
        };
        if self.keys.is_empty() {
            return Ok(());
        }
        rocks.keys.clear();
        rocks.offsets.clear();
        for k in &self.keys {
            rocks.value.clear();
            bincode::serialize_into(&mut rocks.value, k)
                .map_err(|e| encode_failed(&self.uid, e))?;
            rocks.offsets.push(rocks.keys.len());
            rocks
                .keys
                .extend_from_slice(&(KeyGroup::of(k, self.max_parallelism).0 as u16).to_be_bytes());
            rocks.keys.extend_from_slice(&rocks.value);
        }
        rocks.offsets.push(rocks.keys.len());
        let buffer = &rocks.keys;
        let slices = rocks.offsets.windows(2).map(|w| &buffer[w[0]..w[1]]);
        let values = rocks.db.multi_get(slices)?;
        for (k, value) in self.keys.iter().zip(values) {
            if let Some(bytes) = value {
                let v = bincode::deserialize(&bytes).map_err(|e| Error::State {
                    uid: self.uid.clone(),
                    reason: format!("decoding a value read from RocksDB: {e}"),
                })?;
                if let Some(slot) = self.map.get_mut(k) {
                    slot.value = Some(v);
                }
            }
        }
        Ok(())
    }

    /// Writes every dirty value back to RocksDB in one batch and forgets deleted keys.
    fn write_back(&mut self) -> Result<()> {
        self.write_back_some(usize::MAX)
    }

    /// Drops a quarter of the cached keys (whichever the map yields first:
    /// eviction is random, not least-recently-used), writing the dirty ones back
    /// in one batch.
    fn evict(&mut self) -> Result<()> {
        let capacity = self
            .rocks
            .as_ref()
            .map_or(usize::MAX, |r| r.cache_bytes / r.entry_bytes);
        let keep = capacity - capacity / 4;
        let excess = self.map.len().saturating_sub(keep);
        self.write_back_some(excess)
    }

    /// Writes back the dirty values of the first `drop` keys the map yields and
    /// drops those keys (all dirty values, dropping only deleted keys, when `drop`
    /// is `usize::MAX`); updates the estimate of the bytes per key.
    fn write_back_some(&mut self, drop: usize) -> Result<()> {
        let Some(rocks) = self.rocks.as_mut() else {
            return Ok(());
        };
        let everything = drop == usize::MAX;
        // Entries are encoded into one buffer and written in key order: RocksDB's
        // memtable inserts a sorted run from where the previous insert ended.
        let writes = &mut rocks.writes;
        let buffer = &mut rocks.buffer;
        writes.clear();
        buffer.clear();
        let (mut dropped, mut encoded) = (0usize, 0usize);
        let mut failure = None;
        let (uid, max_parallelism) = (&self.uid, self.max_parallelism);
        self.map.retain(|k, slot| {
            let victim = !everything && dropped < drop;
            if victim {
                dropped += 1;
            }
            if slot.dirty && (everything || victim) && failure.is_none() {
                let start = buffer.len();
                buffer
                    .extend_from_slice(&(KeyGroup::of(k, max_parallelism).0 as u16).to_be_bytes());
                if let Err(e) = bincode::serialize_into(&mut *buffer, k) {
                    failure = Some(encode_failed(uid, e));
                    return true;
                }
                let key_end = buffer.len();
                if let Some(v) = &slot.value {
                    if let Err(e) = bincode::serialize_into(&mut *buffer, v) {
                        failure = Some(encode_failed(uid, e));
                        return true;
                    }
                }
                writes.push(Write {
                    start,
                    key_end,
                    end: buffer.len(),
                    delete: slot.value.is_none(),
                });
                encoded += buffer.len() - start;
                slot.dirty = false;
            }
            // Keep what is not a victim, unless it is a deletion RocksDB has seen.
            !victim && (slot.dirty || slot.value.is_some())
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let buffer = &rocks.buffer;
        rocks
            .writes
            .sort_unstable_by(|a, b| buffer[a.start..a.key_end].cmp(&buffer[b.start..b.key_end]));
        let mut batch = WriteBatch::default();
        for w in &rocks.writes {
            let key = &buffer[w.start..w.key_end];
            if w.delete {
                batch.delete(key);
            } else {
                batch.put(key, &buffer[w.key_end..w.end]);
            }
        }
        rocks.db.write(batch)?;
        let written = rocks.writes.len();
        if written > 0 && encoded > 0 {
            // Heap bytes beyond the entry itself (strings, vectors) show up as
            // encoded bytes beyond the types' in-place size.
            let in_place = std::mem::size_of::<K>() + std::mem::size_of::<V>();
            let heap = (encoded / written).saturating_sub(in_place);
            rocks.entry_bytes = std::mem::size_of::<(K, Slot<V>)>() + 16 + heap;
        }
        Ok(())
    }

    /// Snapshots the state for `barrier`.
    pub fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        if self.rocks.is_none() {
            let entries = self
                .map
                .iter()
                .filter_map(|(k, s)| s.value.as_ref().map(|v| (k, v)));
            return Ok(OperatorSnapshot {
                keyed: encode_keyed(&self.uid, entries, self.max_parallelism)?,
                ..Default::default()
            });
        }
        self.write_back()?;
        let Some(rocks) = self.rocks.as_ref() else {
            return Err(Error::Internal("the RocksDB backend went away".into()));
        };
        let dir = LocalDir::fresh(
            rocks
                .db
                .dir()
                .with_extension(format!("chk-{}", barrier.id.0)),
        )?;
        rocks.db.checkpoint(dir.path())?;
        let format = match barrier.kind {
            SnapshotKind::Checkpoint => {
                rocks
                    .registry
                    .lock()
                    .map_err(|_| Error::Internal("a RocksDB registry lock was poisoned".into()))?
                    .completed(barrier.last_completed);
                NativeFormat::Incremental {
                    registry: rocks.registry.clone(),
                    attempt: rocks.attempt,
                }
            }
            SnapshotKind::Savepoint => NativeFormat::Canonical {
                key_groups: rocks.key_groups,
            },
        };
        Ok(OperatorSnapshot {
            native: Some(NativeSnapshot { dir, format }),
            ..Default::default()
        })
    }

    /// Number of keys in memory (all of them on the heap; the cache with RocksDB).
    pub fn cached_keys(&self) -> usize {
        self.map.len()
    }
}

/// The directory name of an operator subtask's RocksDB instance.
fn scratch_name(ctx: &OperatorContext) -> String {
    let safe: String = ctx
        .uid
        .0
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "weir-{}-{}-{:x}-{:x}",
        safe,
        ctx.subtask.index,
        ctx.attempt,
        std::process::id()
    )
}

fn encode_failed(uid: &str, e: bincode::Error) -> Error {
    Error::State {
        uid: uid.to_string(),
        reason: format!("encoding keyed state: {e}"),
    }
}

fn decode<K: DeserializeOwned, V: DeserializeOwned>(
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

#[cfg(test)]
#[path = "keyed_tests.rs"]
mod tests;
