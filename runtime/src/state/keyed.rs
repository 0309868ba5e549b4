//! Heap keyed state: a hash map per operator subtask, encoded per key group at snapshots.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash};

use rustc_hash::FxHasher;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::keys::{KeyGroup, StableHash};
use crate::operator::OperatorContext;
use crate::state::{OperatorSnapshot, RestoredState};

/// The hash map keyed operators keep their state in (a fast, unseeded hasher:
/// placement across subtasks uses [`StableHash`], not this).
pub type KeyedMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// One operator subtask's keyed heap state: the map, and what it needs to
/// restore and snapshot itself by key group.
pub struct HeapState<K, V> {
    /// The state, by key.
    pub map: KeyedMap<K, V>,
    uid: String,
    max_parallelism: u32,
}

impl<K, V> Default for HeapState<K, V> {
    fn default() -> Self {
        HeapState {
            map: KeyedMap::default(),
            uid: String::new(),
            max_parallelism: 1,
        }
    }
}

impl<K, V> HeapState<K, V>
where
    K: StableHash + Serialize + DeserializeOwned + Eq + Hash,
    V: Serialize + DeserializeOwned,
{
    /// Takes the operator's identity and loads the key groups it restores.
    pub fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.uid = ctx.uid.0.clone();
        self.max_parallelism = ctx.max_parallelism;
        if let Some(restored) = restored {
            decode_keyed(&self.uid, &restored.keyed, &mut self.map)?;
        }
        Ok(())
    }

    /// The state as a snapshot, one blob per non-empty key group.
    pub fn snapshot(&self) -> Result<OperatorSnapshot> {
        Ok(OperatorSnapshot {
            keyed: encode_keyed(&self.uid, self.map.iter(), self.max_parallelism)?,
            ..Default::default()
        })
    }
}

/// Encodes `entries` as one blob per non-empty key group, in group order.
pub fn encode_keyed<'a, K, V>(
    uid: &str,
    entries: impl Iterator<Item = (&'a K, V)>,
    max_parallelism: u32,
) -> Result<Vec<(KeyGroup, Vec<u8>)>>
where
    K: StableHash + Serialize + 'a,
    V: Serialize,
{
    let mut groups: Vec<Vec<(&K, V)>> = (0..max_parallelism).map(|_| Vec::new()).collect();
    for (k, v) in entries {
        groups[KeyGroup::of(k, max_parallelism).0 as usize].push((k, v));
    }
    groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
        .map(|(i, g)| {
            let bytes = bincode::serialize(&g).map_err(|e| Error::State {
                uid: uid.to_string(),
                reason: format!("encoding key group {i}: {e}"),
            })?;
            Ok((KeyGroup(i as u32), bytes))
        })
        .collect()
}

/// Decodes blobs written by [`encode_keyed`] into `map`.
pub fn decode_keyed<K, V>(
    uid: &str,
    groups: &[(KeyGroup, Vec<u8>)],
    map: &mut KeyedMap<K, V>,
) -> Result<()>
where
    K: DeserializeOwned + Eq + Hash,
    V: DeserializeOwned,
{
    for (group, bytes) in groups {
        let entries: Vec<(K, V)> = bincode::deserialize(bytes).map_err(|e| Error::State {
            uid: uid.to_string(),
            reason: format!("decoding key group {}: {e}", group.0),
        })?;
        map.extend(entries);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_state_round_trips_by_group() {
        let mut map: KeyedMap<u64, i64> = KeyedMap::default();
        for k in 0..1000u64 {
            map.insert(k, k as i64 * 3);
        }
        let groups = encode_keyed("sum", map.iter(), 16).unwrap();
        assert!(groups.windows(2).all(|w| w[0].0 < w[1].0));
        let mut back = KeyedMap::default();
        decode_keyed("sum", &groups, &mut back).unwrap();
        assert_eq!(back, map);
    }

    #[test]
    fn decoding_garbage_names_the_operator_and_group() {
        let mut back: KeyedMap<u64, String> = KeyedMap::default();
        let err = decode_keyed("sum", &[(KeyGroup(3), vec![0xff; 3])], &mut back).unwrap_err();
        assert!(err.to_string().contains("sum") && err.to_string().contains("key group 3"));
    }
}
