//! Keyed state on the heap, in shards that a snapshot shares copy-on-write.
//!
//! The keys are spread over [`SHARDS`] hash tables, which the task owns. A
//! snapshot moves each into an `Arc` it shares (the synchronous part of a
//! checkpoint is that, not the state) and the uploader encodes the shards off
//! the task thread, dropping each once it is encoded. The first write to a
//! shared shard takes it back: the table itself if the uploader is done with
//! it, else a copy, so the task never waits for the encoding and the snapshot
//! never sees a later write. Writes to owned shards count no references.

use std::borrow::Cow;
use std::hash::Hash;
use std::sync::Arc;

use hashbrown::HashTable;
use serde::Serialize;

use crate::data::Batch;
use crate::error::Result;
use crate::keys::{KeyGroup, StableHash};
use crate::state::codec::KeyedEncoder;
use crate::state::lookup::{hash_of, KeyOf};
use crate::state::snapshot::DeferredKeyed;

/// Bits of a key's hash that pick its shard.
const SHARD_BITS: u32 = 6;

/// Number of shards: a write after a snapshot copies at most 1/64 of the state.
pub const SHARDS: usize = 1 << SHARD_BITS;

/// One shard: keys and values (`None` only inside an update).
type Shard<K, V> = HashTable<(K, Option<V>)>;

/// The shard of a hash: the top bits of its product with an odd constant,
/// which depend on every bit of the hash. Fixed bits of a weak hash (Fx on
/// integers) correlate with the bits a table finds buckets and control tags
/// by: picking shards by bits 32..38 put keys whose tags match into the same
/// probe groups four times as often as chance, and made lookups 3x slower.
#[inline]
fn shard_of(hash: u64) -> usize {
    (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARD_BITS)) as usize
}

/// A shard as the task holds it: its own, or shared with a snapshot until
/// the next write (owned shards cost a write no reference counting).
enum Slot<K, V> {
    Owned(Shard<K, V>),
    Shared(Arc<Shard<K, V>>),
}

impl<K, V> Slot<K, V> {
    fn table(&self) -> &Shard<K, V> {
        match self {
            Slot::Owned(shard) => shard,
            Slot::Shared(shard) => shard,
        }
    }
}

impl<K: Clone, V: Clone> Slot<K, V> {
    /// The table, the task's own again: the snapshot's once the uploader
    /// dropped it, else a copy.
    #[inline]
    fn owned(&mut self) -> &mut Shard<K, V> {
        if let Slot::Shared(_) = self {
            if let Slot::Shared(shared) = std::mem::replace(self, Slot::Owned(HashTable::new())) {
                *self = Slot::Owned(Arc::try_unwrap(shared).unwrap_or_else(|s| (*s).clone()));
            }
        }
        match self {
            Slot::Owned(shard) => shard,
            Slot::Shared(shard) => Arc::make_mut(shard),
        }
    }
}

/// One subtask's keyed state on the heap.
pub struct HeapState<K, V> {
    shards: Box<[Slot<K, V>; SHARDS]>,
    len: usize,
}

impl<K, V> Default for HeapState<K, V> {
    fn default() -> Self {
        HeapState {
            shards: Box::new(std::array::from_fn(|_| Slot::Owned(HashTable::new()))),
            len: 0,
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> HeapState<K, V> {
    /// The shard of `hash`, copied first if a snapshot still holds it.
    #[inline]
    fn shard_mut(&mut self, hash: u64) -> &mut Shard<K, V> {
        self.shards[shard_of(hash)].owned()
    }

    /// Sets `k`'s value to `value` (`None` deletes it).
    pub fn put(&mut self, k: K, value: Option<V>) {
        let hash = hash_of(&k);
        let shard = self.shard_mut(hash);
        match (shard.find_entry(hash, |e| e.0 == k), value) {
            (Ok(mut entry), Some(value)) => entry.get_mut().1 = Some(value),
            (Ok(entry), None) => {
                entry.remove();
                self.len -= 1;
            }
            (Err(absent), Some(value)) => {
                let shard = absent.into_table();
                shard.insert_unique(hash, (k, Some(value)), |e| hash_of(&e.0));
                self.len += 1;
            }
            (Err(_), None) => {}
        }
    }

    /// Hands each record of `input` (emptied) to `f` with its key and that key's
    /// value, in order; a key is built only when it is new.
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
        for record in input.drain(..) {
            let query = key(&record);
            let hash = hash_of(&*query);
            let shard = self.shard_mut(hash);
            match shard.find_entry(hash, |e| e.0.is(&query)) {
                Ok(mut entry) => {
                    drop(query);
                    let (k, value) = entry.get_mut();
                    f(k, value, record)?;
                    if value.is_none() {
                        entry.remove();
                        self.len -= 1;
                    }
                }
                Err(absent) => {
                    let k = K::from_query(&query);
                    drop(query);
                    let mut value = None;
                    f(&k, &mut value, record)?;
                    if value.is_some() {
                        let shard = absent.into_table();
                        shard.insert_unique(hash, (k, value), |e| hash_of(&e.0));
                        self.len += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Drops the entries of shard `shard` that `keep` refuses.
    pub fn retain_shard(&mut self, shard: usize, mut keep: impl FnMut(&K, &V) -> bool) {
        let slot = &mut self.shards[shard];
        let any_gone = slot
            .table()
            .iter()
            .any(|(k, v)| v.as_ref().is_some_and(|v| !keep(k, v)));
        if !any_gone {
            // A shard shared with a snapshot is not copied for nothing.
            return;
        }
        let table = slot.owned();
        let before = table.len();
        table.retain(|(k, v)| v.as_ref().is_some_and(|v| keep(k, v)));
        self.len -= before - table.len();
    }

    /// Every key and value.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards
            .iter()
            .flat_map(|slot| slot.table().iter())
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl<K, V> HeapState<K, V>
where
    K: Eq + Hash + Clone + StableHash + Serialize + Send + Sync + 'static,
    V: Clone + Serialize + Send + Sync + 'static,
{
    /// The state as it is now, to be encoded as key-group blobs off the task
    /// thread: costs a reference count per shard here.
    pub fn snapshot(&mut self, uid: &str, max_parallelism: u32) -> DeferredKeyed {
        let shards: Vec<Arc<Shard<K, V>>> = self.shards.iter_mut().map(share).collect();
        let uid = uid.to_string();
        DeferredKeyed::new(move || {
            let mut encoder = KeyedEncoder::new(&uid, max_parallelism);
            for shard in shards {
                for (k, v) in shard.iter() {
                    if let Some(v) = v {
                        encoder.add(k, v)?;
                    }
                }
                // Writes to this shard need not copy it any more.
                drop(shard);
            }
            Ok::<Vec<(KeyGroup, Vec<u8>)>, crate::error::Error>(encoder.finish())
        })
    }
}

/// Shares `slot`'s table with a snapshot: the `Arc` the snapshot keeps.
fn share<K, V>(slot: &mut Slot<K, V>) -> Arc<Shard<K, V>> {
    let shared = match std::mem::replace(slot, Slot::Owned(HashTable::new())) {
        Slot::Owned(shard) => Arc::new(shard),
        Slot::Shared(shard) => shard,
    };
    *slot = Slot::Shared(shared.clone());
    shared
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::codec::decode_keyed;

    fn add(state: &mut HeapState<u64, i64>, keys: std::ops::Range<u64>, by: i64) {
        let mut batch: Vec<(u64, i64)> = keys.map(|k| (k, by)).collect();
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

    fn decoded(blobs: &[(KeyGroup, Vec<u8>)]) -> Vec<(u64, i64)> {
        let mut all = Vec::new();
        decode_keyed("sum", blobs, |k: u64, v: i64| all.push((k, v))).unwrap();
        all.sort();
        all
    }

    #[test]
    fn a_snapshot_sees_the_state_at_its_barrier_whatever_is_written_after_it() {
        let mut state = HeapState::default();
        add(&mut state, 0..10_000, 1);
        let snapshot = state.snapshot("sum", 128);
        // Written after the barrier, before the uploader encodes: copies, not changes.
        add(&mut state, 0..10_000, 5);
        state.put(3, None);
        state.put(20_000, Some(7));
        let blobs = snapshot.encode().unwrap();
        assert_eq!(
            decoded(&blobs),
            (0..10_000).map(|k| (k, 1)).collect::<Vec<_>>()
        );
        assert_eq!(state.len(), 10_000);
        let now = state.snapshot("sum", 128).encode().unwrap();
        let mut expected: Vec<(u64, i64)> =
            (0..10_000).filter(|k| *k != 3).map(|k| (k, 6)).collect();
        expected.push((20_000, 7));
        assert_eq!(decoded(&now), expected);
    }

    #[test]
    fn a_snapshot_shares_every_shard_until_the_next_write_to_it() {
        let owned = |state: &HeapState<u64, i64>| {
            state
                .shards
                .iter()
                .filter(|s| matches!(s, Slot::Owned(_)))
                .count()
        };
        let mut state = HeapState::default();
        add(&mut state, 0..1000, 1);
        assert_eq!(owned(&state), SHARDS);
        let snapshot = state.snapshot("sum", 128);
        assert_eq!(owned(&state), 0, "every shard shared with the snapshot");
        add(&mut state, 0..1000, 1);
        assert_eq!(
            owned(&state),
            SHARDS,
            "every shard written is the task's again"
        );
        let blobs = snapshot.encode().unwrap();
        assert_eq!(
            decoded(&blobs),
            (0..1000).map(|k| (k, 1)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn keys_of_one_shard_collide_in_its_probe_groups_no_more_than_chance() {
        // A table of 256 buckets (about 156 keys per shard) probes groups of
        // 16 control bytes from the hash's low bits and tells keys apart by
        // its top 7 bits; count pairs of one shard that share both.
        let mut shards = vec![Vec::new(); SHARDS];
        for k in 0..10_000u64 {
            let hash = hash_of(&k);
            shards[shard_of(hash)].push(hash);
        }
        let group_and_tag = |h: &u64| ((h & 255) >> 4, h >> 57);
        let colliding: usize = shards
            .iter()
            .map(|shard| {
                let mut seen = std::collections::HashMap::new();
                for h in shard {
                    *seen.entry(group_and_tag(h)).or_insert(0usize) += 1;
                }
                seen.values().map(|n| n * (n - 1)).sum::<usize>()
            })
            .sum();
        // By chance: 64 shards x 16 groups x ~9.8 keys x ~8.8 others / 128 tags.
        let chance = 64 * 16 * 98 * 88 / 100 / 128;
        assert!(
            colliding < 2 * chance,
            "{colliding} colliding pairs, {chance} by chance"
        );
    }

    #[test]
    fn deleting_a_key_in_an_update_removes_it() {
        let mut state = HeapState::default();
        add(&mut state, 0..10, 1);
        let mut batch = vec![(4u64, 0i64)];
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
        assert_eq!(state.len(), 9);
        assert!(state.iter().all(|(k, _)| *k != 4));
    }
}
