//! Keys and key groups: the stable hash that places a key, and the ranges subtasks own.
//!
//! A job's keyed state is split into `max_parallelism` key groups. A key's group
//! is `stable_hash(key) % max_parallelism`, and subtask `i` of `p` owns the
//! contiguous range `[i*max/p, (i+1)*max/p)`. The hash must never change across
//! versions or machines, so it is defined here (splitmix64 for integers, xxh3 for
//! bytes) rather than borrowed from std's seeded hasher.

use serde::{Deserialize, Serialize};

/// The default number of key groups, fixed for the life of a job's state.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// The splitmix64 finalizer: a cheap, well-mixing bijection on `u64`.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash of a key that is the same on every machine and in every version.
pub trait StableHash {
    /// The key's stable 64-bit hash.
    fn stable_hash(&self) -> u64;
}

macro_rules! stable_hash_int {
    ($($t:ty),*) => {$(
        impl StableHash for $t {
            #[inline]
            fn stable_hash(&self) -> u64 {
                // Sign-extension keeps -1i32 and -1i64 on the same group.
                mix(*self as i64 as u64)
            }
        }
    )*};
}
stable_hash_int!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

impl StableHash for str {
    #[inline]
    fn stable_hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(self.as_bytes())
    }
}

impl StableHash for String {
    #[inline]
    fn stable_hash(&self) -> u64 {
        self.as_str().stable_hash()
    }
}

impl StableHash for [u8] {
    #[inline]
    fn stable_hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(self)
    }
}

impl StableHash for Vec<u8> {
    #[inline]
    fn stable_hash(&self) -> u64 {
        self.as_slice().stable_hash()
    }
}

impl<A: StableHash, B: StableHash> StableHash for (A, B) {
    #[inline]
    fn stable_hash(&self) -> u64 {
        mix(self.0.stable_hash() ^ self.1.stable_hash().rotate_left(32))
    }
}

/// A key group: the unit in which keyed state is partitioned and moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyGroup(pub u32);

impl KeyGroup {
    /// The key group of a key with hash `hash` when there are `max_parallelism` groups.
    #[inline]
    pub fn of_hash(hash: u64, max_parallelism: u32) -> Self {
        KeyGroup((hash % u64::from(max_parallelism)) as u32)
    }

    /// The key group of `key`.
    #[inline]
    pub fn of<K: StableHash + ?Sized>(key: &K, max_parallelism: u32) -> Self {
        Self::of_hash(key.stable_hash(), max_parallelism)
    }

    /// The index of the subtask (of `parallelism`) that owns this key group.
    #[inline]
    pub fn owner(self, max_parallelism: u32, parallelism: u32) -> u32 {
        // The largest i with floor(i*max/p) <= kg, i.e. i*max < (kg+1)*p.
        let (kg, max, p) = (
            u64::from(self.0),
            u64::from(max_parallelism),
            u64::from(parallelism),
        );
        (((kg + 1) * p - 1) / max) as u32
    }
}

/// A contiguous range of key groups `[start, end)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupRange {
    /// First key group in the range.
    pub start: u32,
    /// One past the last key group.
    pub end: u32,
}

impl KeyGroupRange {
    /// The range owned by subtask `index` of `parallelism`.
    pub fn for_subtask(index: u32, parallelism: u32, max_parallelism: u32) -> Self {
        let (i, p, max) = (
            u64::from(index),
            u64::from(parallelism),
            u64::from(max_parallelism),
        );
        KeyGroupRange {
            start: (i * max / p) as u32,
            end: ((i + 1) * max / p) as u32,
        }
    }

    /// Whether `group` lies in the range.
    pub fn contains(&self, group: KeyGroup) -> bool {
        self.start <= group.0 && group.0 < self.end
    }

    /// The key groups of the range, in order.
    pub fn iter(&self) -> impl Iterator<Item = KeyGroup> {
        (self.start..self.end).map(KeyGroup)
    }

    /// The key groups in both ranges (empty when they do not overlap).
    pub fn intersect(&self, other: KeyGroupRange) -> KeyGroupRange {
        let start = self.start.max(other.start);
        KeyGroupRange {
            start,
            end: self.end.min(other.end).max(start),
        }
    }

    /// Number of key groups in the range.
    pub fn len(&self) -> u32 {
        self.end - self.start
    }

    /// Whether the range has no key group.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_agrees_with_ranges_for_every_group_and_parallelism() {
        for max in [1u32, 7, 128, 1000] {
            for p in 1..=max.min(40) {
                for kg in 0..max {
                    let owner = KeyGroup(kg).owner(max, p);
                    let range = KeyGroupRange::for_subtask(owner, p, max);
                    assert!(range.contains(KeyGroup(kg)), "max {max} p {p} kg {kg}");
                }
            }
        }
    }

    #[test]
    fn ranges_cover_all_groups_without_overlap() {
        let (max, p) = (128, 3);
        let mut next = 0;
        for i in 0..p {
            let r = KeyGroupRange::for_subtask(i, p, max);
            assert_eq!(r.start, next);
            next = r.end;
        }
        assert_eq!(next, max);
    }

    #[test]
    fn stable_hash_is_fixed_across_versions() {
        // These values are part of the state format: changing them breaks restores.
        assert_eq!(mix(0), 0);
        assert_eq!(42u64.stable_hash(), 0xa759_ea27_d472_7622);
        assert_eq!("weir".stable_hash(), xxhash_rust::xxh3::xxh3_64(b"weir"));
        assert_eq!(
            KeyGroup::of(&42u64, 128),
            KeyGroup((0xa759_ea27_d472_7622u64 % 128) as u32)
        );
    }
}
