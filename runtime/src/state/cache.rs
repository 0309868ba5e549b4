//! The decoded keys and values a RocksDB-backed operator keeps in memory: a hash
//! table in which a batch finds each record's entry once, and a CLOCK sweep that
//! picks what to evict (an entry used since the hand last passed it is spared
//! once), so the keys a job uses often stay while those it used once go.

use std::hash::Hash;

use hashbrown::HashTable;

use crate::state::lookup::{hash_of, KeyOf};

/// One cached key: its value (`None`: it has none, or it is deleted), whether
/// RocksDB has yet to see it, and whether it was used since the hand passed.
#[derive(Debug)]
pub struct Entry<K, V> {
    /// The key.
    pub key: K,
    /// Its value; `None` when it has none (or it was deleted).
    pub value: Option<V>,
    /// Whether the value differs from RocksDB's.
    pub dirty: bool,
    referenced: bool,
}

/// A CLOCK-evicted cache of keyed values.
pub struct ClockCache<K, V> {
    table: HashTable<Entry<K, V>>,
    hand: usize,
}

impl<K, V> Default for ClockCache<K, V> {
    fn default() -> Self {
        ClockCache {
            table: HashTable::new(),
            hand: 0,
        }
    }
}

impl<K: Eq + Hash, V> ClockCache<K, V> {
    /// Makes room for `additional` new keys, so that the indices [`ClockCache::slot`]
    /// returns for them stay valid until the next reserve or eviction.
    pub fn reserve(&mut self, additional: usize) {
        self.table
            .reserve(additional, |e: &Entry<K, V>| hash_of(&e.key));
    }

    /// The index of the entry `query` names, and whether it is new: a new key
    /// gets an entry without a value, for the caller to load. Call
    /// [`ClockCache::reserve`] for the batch first.
    pub fn slot<Q: Hash + ?Sized>(&mut self, query: &Q) -> (usize, bool)
    where
        K: KeyOf<Q>,
    {
        let hash = hash_of(query);
        if let Some(index) = self.table.find_bucket_index(hash, |e| e.key.is(query)) {
            return (index, false);
        }
        let entry = Entry {
            key: K::from_query(query),
            value: None,
            dirty: false,
            referenced: true,
        };
        let index = self
            .table
            .insert_unique(hash, entry, |e| hash_of(&e.key))
            .bucket_index();
        (index, true)
    }

    /// The entry at `index` (from [`ClockCache::slot`]), marked as used.
    #[inline]
    pub fn entry(&mut self, index: usize) -> Option<&mut Entry<K, V>> {
        let entry = self.table.get_bucket_mut(index)?;
        entry.referenced = true;
        Some(entry)
    }

    /// Sets `key`'s value, dirty, without reading the old one; whether the
    /// key was not dirty before.
    pub fn put(&mut self, key: K, value: Option<V>) -> bool {
        let hash = hash_of(&key);
        match self.table.find_mut(hash, |e| e.key == key) {
            Some(entry) => {
                entry.value = value;
                entry.referenced = true;
                !std::mem::replace(&mut entry.dirty, true)
            }
            None => {
                let entry = Entry {
                    key,
                    value,
                    dirty: true,
                    referenced: true,
                };
                self.table.insert_unique(hash, entry, |e| hash_of(&e.key));
                true
            }
        }
    }

    /// Number of cached keys.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Every entry, for writing the dirty ones back.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry<K, V>> {
        self.table.iter_mut()
    }

    /// Drops the entries of deleted keys that RocksDB has seen.
    pub fn forget_deleted(&mut self) {
        self.table.retain(|e| e.dirty || e.value.is_some());
    }

    /// Removes `count` entries (or all), handing each to `victim`: the hand sweeps
    /// the table, sparing an entry used since it last passed once (clearing its
    /// mark) and removing one that was not.
    pub fn evict(&mut self, count: usize, mut victim: impl FnMut(Entry<K, V>)) {
        let buckets = self.table.num_buckets();
        let mut removed = 0;
        // Two turns suffice: the first clears every mark it spares.
        let mut steps = 2 * buckets;
        while removed < count && steps > 0 && !self.table.is_empty() {
            steps -= 1;
            let index = self.hand;
            self.hand = (self.hand + 1) % buckets.max(1);
            let Some(entry) = self.table.get_bucket_mut(index) else {
                continue;
            };
            if entry.referenced {
                entry.referenced = false;
                continue;
            }
            if let Ok(occupied) = self.table.get_bucket_entry(index) {
                victim(occupied.remove().0);
                removed += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_of(keys: std::ops::Range<u64>) -> ClockCache<u64, u64> {
        let mut cache = ClockCache::default();
        cache.reserve((keys.end - keys.start) as usize);
        for k in keys {
            let (index, new) = cache.slot(&k);
            assert!(new);
            cache.entry(index).unwrap().value = Some(k * 10);
        }
        cache
    }

    #[test]
    fn a_batch_finds_each_key_once_and_its_indices_stay_valid() {
        let mut cache = cache_of(0..100);
        cache.reserve(3);
        let (seven, new) = cache.slot(&7);
        assert!(!new);
        let (fresh, new) = cache.slot(&1000);
        assert!(new);
        assert_eq!(cache.entry(seven).unwrap().value, Some(70));
        assert_eq!(cache.entry(fresh).unwrap().value, None);
        assert_eq!(cache.entry(fresh).unwrap().key, 1000);
        assert_eq!(cache.len(), 101);
    }

    #[test]
    fn the_clock_spares_the_keys_used_since_it_last_passed() {
        let mut cache = cache_of(0..1000);
        // A first turn clears every mark (all were used when loaded) and takes one.
        let mut first = Vec::new();
        cache.evict(1, |e| first.push(e.key));
        let mut gone = Vec::new();
        for _ in 0..3 {
            // The hot keys are used between evictions, the cold ones never.
            cache.reserve(10);
            for k in 0..10u64 {
                let (index, _) = cache.slot(&k);
                cache.entry(index).unwrap();
            }
            cache.evict(200, |e| gone.push(e.key));
        }
        assert_eq!(gone.len(), 600);
        assert!(gone.iter().all(|k| *k >= 10), "a hot key was evicted");
        let reloaded = usize::from(first[0] < 10);
        assert_eq!(cache.len(), 1000 - 1 + reloaded - 600);
    }

    #[test]
    fn eviction_hands_over_dirty_values_and_ends_when_the_cache_is_empty() {
        let mut cache = cache_of(0..5);
        cache.put(3, Some(33));
        cache.put(9, None);
        let mut gone = Vec::new();
        cache.evict(usize::MAX, |e| gone.push((e.key, e.value, e.dirty)));
        gone.sort();
        assert_eq!(gone.len(), 6);
        assert!(gone.contains(&(3, Some(33), true)));
        assert!(gone.contains(&(9, None, true)));
        assert!(gone.contains(&(4, Some(40), false)));
        assert_eq!(cache.len(), 0);
    }
}
