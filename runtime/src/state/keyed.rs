//! Keyed state of one operator subtask, on the heap or in RocksDB behind a cache.
//!
//! Operators see one interface, [`KeyedState::update`]: a batch of records, each
//! handed to a function with its key's value. On the heap the map is the state;
//! with RocksDB a CLOCK cache of decoded values stands in front of the instance
//! ([`CachedRocks`]), bounded with every other cache of the process.
//!
//! Snapshots: the heap writes canonical key-group blobs; RocksDB hard-links a
//! local checkpoint that the uploader stores incrementally (for a checkpoint or a
//! native savepoint), or converts to canonical blobs for a canonical savepoint.

use std::borrow::Cow;
use std::hash::{BuildHasherDefault, Hash};

use rustc_hash::FxHasher;
use serde::{de::DeserializeOwned, Serialize};

use crate::data::{Barrier, Batch};
use crate::error::{Error, Result};
use crate::keys::{KeyGroup, StableHash};
use crate::operator::OperatorContext;
use crate::state::backend::Backend;
use crate::state::codec::{decode_keyed, entries};
use crate::state::heap::{HeapState, SHARDS};
use crate::state::lookup::KeyOf;
use crate::state::memory::StateMemory;
use crate::state::rocks::cached::{CachedRocks, CachedRocksConfig};
use crate::state::rocks::restore::{rebuild, BatchWriter};
use crate::state::rocks::{decode, LocalDir, MAX_KEY_GROUPS};
use crate::state::ttl::{check_stamps, Expiry};
use crate::state::{OperatorSnapshot, RestoredState};

/// The hash map keyed operators keep their state in (a fast, unseeded hasher:
/// placement across subtasks uses [`StableHash`], not this).
pub type KeyedMap<K, V> = hashbrown::HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The keyed values of an operator: [`KeyedState`], or with a TTL
/// [`crate::state::ttl::ExpiringState`].
pub trait KeyedValues<K, V>: Send + 'static {
    /// Opens the backend the context asks for and loads the key groups it restores.
    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()>;

    /// Hands each record of `input` (emptied) to `f` with its key and that key's
    /// value (`None` if it has none; set it to `None` to delete it), in order;
    /// see [`KeyedState::update`].
    fn update<T, Q>(
        &mut self,
        input: &mut Batch<T>,
        key: impl for<'a> Fn(&'a T) -> Cow<'a, Q>,
        f: impl FnMut(&K, &mut Option<V>, T) -> Result<()>,
    ) -> Result<()>
    where
        K: KeyOf<Q>,
        Q: Hash + Clone;

    /// Snapshots the values for `barrier`.
    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot>;
}

impl<K, V> KeyedValues<K, V> for KeyedState<K, V>
where
    K: StableHash + Serialize + DeserializeOwned + Eq + Hash + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        check_stamps(&ctx.uid.0, restored.as_ref(), false)?;
        KeyedState::open(self, ctx, restored)
    }

    fn update<T, Q>(
        &mut self,
        input: &mut Batch<T>,
        key: impl for<'a> Fn(&'a T) -> Cow<'a, Q>,
        f: impl FnMut(&K, &mut Option<V>, T) -> Result<()>,
    ) -> Result<()>
    where
        K: KeyOf<Q>,
        Q: Hash + Clone,
    {
        KeyedState::update(self, input, key, f)
    }

    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        KeyedState::snapshot(self, barrier)
    }
}

/// Where one subtask's keyed state lives.
enum Store<K, V> {
    /// On the heap: the map is the state.
    Heap(HeapState<K, V>),
    /// In RocksDB, behind a cache.
    Rocks(Box<CachedRocks<K, V>>),
}

/// One operator subtask's keyed state.
pub struct KeyedState<K, V> {
    store: Store<K, V>,
    uid: String,
    max_parallelism: u32,
    /// How RocksDB's compactions drop old values (set by the states whose
    /// values carry their age: see [`crate::state::ttl`]).
    expiry: Option<Expiry>,
}

impl<K, V> Default for KeyedState<K, V> {
    fn default() -> Self {
        KeyedState {
            store: Store::Heap(HeapState::default()),
            uid: String::new(),
            max_parallelism: 1,
            expiry: None,
        }
    }
}

impl<K, V> KeyedState<K, V> {
    /// State whose values hold the time they were written (ms since the Unix
    /// epoch, as [`crate::state::ttl::Stamped`] encodes it, where `expiry`
    /// says), dropped by RocksDB's compactions once older than its TTL.
    pub(crate) fn expiring(expiry: Expiry) -> Self {
        KeyedState {
            expiry: Some(expiry),
            ..KeyedState::default()
        }
    }
}

impl<K, V> KeyedState<K, V>
where
    K: StableHash + Serialize + DeserializeOwned + Eq + Hash + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Opens the backend the context asks for and loads the key groups it restores.
    pub fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.uid = ctx.uid.0.clone();
        self.max_parallelism = ctx.max_parallelism;
        let restored = restored.unwrap_or_default();
        self.store = match ctx.state.backend {
            Backend::Heap => Store::Heap(self.restore_heap(ctx, &restored)?),
            Backend::Rocksdb => Store::Rocks(Box::new(self.restore_rocks(ctx, &restored)?)),
        };
        Ok(())
    }

    /// The heap map of the key groups `restored` holds (canonical blobs, or
    /// RocksDB checkpoints of a job that ran on RocksDB).
    fn restore_heap(
        &self,
        ctx: &OperatorContext,
        restored: &RestoredState,
    ) -> Result<HeapState<K, V>> {
        let mut map = HeapState::default();
        decode_keyed(&self.uid, &restored.keyed, |k, v| {
            map.put(k, Some(v));
        })?;
        let scratch = ctx.state.local_dir.join(scratch_name(ctx));
        for native in &restored.native {
            let range = native.key_groups.intersect(ctx.key_groups);
            native.scan(&self.uid, &scratch, range, |_, k, v| {
                let (key, value) = decode(&self.uid, k, v)?;
                map.put(key, Some(value));
                Ok(())
            })?;
        }
        Ok(map)
    }

    /// A RocksDB instance holding the key groups `restored` holds.
    fn restore_rocks(
        &self,
        ctx: &OperatorContext,
        restored: &RestoredState,
    ) -> Result<CachedRocks<K, V>> {
        if ctx.max_parallelism > MAX_KEY_GROUPS {
            return Err(Error::InvalidJob(format!(
                "the RocksDB backend supports at most {MAX_KEY_GROUPS} key groups, the job has {}",
                ctx.max_parallelism
            )));
        }
        let memory = StateMemory::shared(ctx.state.cache_bytes, ctx.state.rocksdb_bytes);
        let dir = LocalDir::fresh(ctx.state.local_dir.join(scratch_name(ctx)))?;
        let (db, registry) = rebuild(
            &self.uid,
            dir,
            ctx.key_groups,
            &restored.native,
            &memory,
            self.expiry,
        )?;
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
        let config = CachedRocksConfig {
            uid: self.uid.clone(),
            max_parallelism: ctx.max_parallelism,
            key_groups: ctx.key_groups,
            attempt: ctx.attempt,
        };
        Ok(CachedRocks::new(db, registry, memory, config))
    }

    /// Hands each record of `input` (emptied) to `f` with its key and that key's
    /// value (`None` if it has none; set it to `None` to delete it), in order.
    /// `key` gives a record's key as the record lends it (`Q` names a `K`), so
    /// a key is built only when it is new to the state.
    pub fn update<T, Q>(
        &mut self,
        input: &mut Batch<T>,
        key: impl for<'a> Fn(&'a T) -> Cow<'a, Q>,
        f: impl FnMut(&K, &mut Option<V>, T) -> Result<()>,
    ) -> Result<()>
    where
        K: KeyOf<Q>,
        Q: Hash + Clone,
    {
        match &mut self.store {
            Store::Rocks(rocks) => rocks.update(input, key, f),
            Store::Heap(heap) => heap.update(input, key, f),
        }
    }

    /// Sets `k`'s value to `value` (`None` deletes it) without reading the old one.
    pub fn put(&mut self, k: K, value: Option<V>) -> Result<()> {
        match &mut self.store {
            Store::Rocks(rocks) => rocks.put(k, value),
            Store::Heap(heap) => {
                heap.put(k, value);
                Ok(())
            }
        }
    }

    /// Heap backend only: drops the entries of one of its [`SHARDS`] shards
    /// (`shard` modulo their number) that `keep` refuses.
    pub fn retain_heap_shard(&mut self, shard: usize, keep: impl FnMut(&K, &V) -> bool) {
        if let Store::Heap(heap) = &mut self.store {
            heap.retain_shard(shard % SHARDS, keep);
        }
    }

    /// Whether the state is in RocksDB (else on the heap).
    pub fn in_rocksdb(&self) -> bool {
        matches!(self.store, Store::Rocks(_))
    }

    /// Every key and value, heap backend only (RocksDB yields nothing: use
    /// [`KeyedState::scan_between`]).
    pub fn heap_entries(&self) -> impl Iterator<Item = (&K, &V)> {
        let map = match &self.store {
            Store::Heap(map) => Some(map),
            Store::Rocks(_) => None,
        };
        map.into_iter().flat_map(|m| m.iter())
    }

    /// RocksDB backend only: in each key group of the subtask, the entries whose
    /// encoded key (after the key group) lies in `[from, to)`, in order, handed to
    /// `each` until it returns false for that group. Updates are written back first.
    pub fn scan_between(
        &mut self,
        from: &[u8],
        to: &[u8],
        each: impl FnMut(KeyGroup, K, V) -> Result<bool>,
    ) -> Result<()> {
        match &mut self.store {
            Store::Rocks(rocks) => rocks.scan_between(from, to, each),
            Store::Heap(_) => Ok(()),
        }
    }

    /// Snapshots the state for `barrier`.
    pub fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        match &mut self.store {
            Store::Rocks(rocks) => rocks.snapshot(barrier),
            Store::Heap(heap) => Ok(OperatorSnapshot {
                deferred: Some(heap.snapshot(&self.uid, self.max_parallelism)),
                ..Default::default()
            }),
        }
    }

    /// Number of keys in memory (all of them on the heap; the cache with RocksDB).
    pub fn cached_keys(&self) -> usize {
        match &self.store {
            Store::Heap(heap) => heap.len(),
            Store::Rocks(rocks) => rocks.cached_keys(),
        }
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

#[cfg(test)]
#[path = "keyed_tests.rs"]
pub(crate) mod tests;
