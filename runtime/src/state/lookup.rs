//! Finding a record's state by its key as the record lends it: a hit builds no
//! key (no `String` clone per record), a new key is built once, to be stored.

use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use hashbrown::Equivalent;
use rustc_hash::FxHasher;

/// The hash state tables find keys by: of a key, or of what names it (a fast,
/// unseeded hash; placement across subtasks uses [`crate::keys::StableHash`]).
#[inline]
pub fn hash_of<Q: Hash + ?Sized>(q: &Q) -> u64 {
    BuildHasherDefault::<FxHasher>::default().hash_one(q)
}

/// A state map's key that a borrowed key `Q` names: `K` names itself, and an
/// operator with timers stores a key's value under a [`TimedKey`] that `K`
/// names. Hashing a `Q` must give the hash of the map key it names.
///
/// [`TimedKey`]: crate::state::timers::TimedKey
pub trait KeyOf<Q: ?Sized>: Eq + Hash {
    /// Whether this is the map key `query` names.
    fn is(&self, query: &Q) -> bool;
    /// The map key `query` names, built when a key is new.
    fn from_query(query: &Q) -> Self;
}

impl<K: Eq + Hash + Clone> KeyOf<K> for K {
    #[inline]
    fn is(&self, query: &K) -> bool {
        self == query
    }

    fn from_query(query: &K) -> Self {
        query.clone()
    }
}

/// A borrowed key, as a probe of a map keyed by any `KeyOf<Q>`.
pub struct Query<'a, Q: ?Sized>(pub &'a Q);

impl<Q: Hash + ?Sized> Hash for Query<'_, Q> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl<Q: ?Sized, K: KeyOf<Q>> Equivalent<K> for Query<'_, Q> {
    #[inline]
    fn equivalent(&self, key: &K) -> bool {
        key.is(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KeyedMap;

    #[test]
    fn a_borrowed_key_finds_its_entry_and_no_other() {
        let mut map: KeyedMap<String, u32> = KeyedMap::default();
        map.insert("alpha".to_string(), 1);
        map.insert("beta".to_string(), 2);
        let alpha = "alpha".to_string();
        assert_eq!(map.get(&Query(&alpha)), Some(&1));
        assert_eq!(map.get(&Query(&"gamma".to_string())), None);
        let (key, value) = map.get_key_value_mut(&Query(&alpha)).expect("present");
        assert_eq!((key.as_str(), *value), ("alpha", 1));
    }
}
