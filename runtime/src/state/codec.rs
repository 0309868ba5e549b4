//! The canonical encoding of keyed state: one blob per key group, entries of raw bytes.
//!
//! A key group's blob is a sequence of entries, each
//! `[key length: u32 LE][key][value length: u32 LE][value]`, where key and value
//! are the operator's types in bincode. Every backend writes and reads this
//! format without knowing the types (RocksDB stores exactly these key and value
//! bytes), which is what makes savepoints restorable into either backend and
//! re-splittable by key group.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::keys::{KeyGroup, StableHash};

/// Appends one entry to a key group's blob.
#[inline]
pub fn put_entry(blob: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    blob.extend_from_slice(&(key.len() as u32).to_le_bytes());
    blob.extend_from_slice(key);
    blob.extend_from_slice(&(value.len() as u32).to_le_bytes());
    blob.extend_from_slice(value);
}

/// The entries of a blob, as `(key, value)` byte slices; damage is an error.
pub fn entries(blob: &[u8]) -> Entries<'_> {
    Entries { rest: blob }
}

/// Iterator over the entries of a blob (see [`entries`]).
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Entries<'a> {
    fn field(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let (field, rest) = rest.split_at_checked(len)?;
        self.rest = rest;
        Some(field)
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(&'a [u8], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let entry = self.field().and_then(|k| Some((k, self.field()?)));
        Some(entry.ok_or_else(|| {
            self.rest = &[];
            Error::Internal("a keyed state entry runs past the end of its blob".into())
        }))
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
    let mut encoder = KeyedEncoder::new(uid, max_parallelism);
    for (k, v) in entries {
        encoder.add(k, &v)?;
    }
    Ok(encoder.finish())
}

/// Builds the blobs of [`encode_keyed`] one entry at a time.
pub struct KeyedEncoder<'u> {
    uid: &'u str,
    max_parallelism: u32,
    groups: Vec<Vec<u8>>,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl<'u> KeyedEncoder<'u> {
    /// An encoder of `uid`'s state over `max_parallelism` key groups.
    pub fn new(uid: &'u str, max_parallelism: u32) -> Self {
        KeyedEncoder {
            uid,
            max_parallelism,
            groups: vec![Vec::new(); max_parallelism as usize],
            key: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Adds one entry to its key group's blob.
    pub fn add<K: StableHash + Serialize, V: Serialize>(&mut self, k: &K, v: &V) -> Result<()> {
        let fail = |e: bincode::Error| Error::State {
            uid: self.uid.to_string(),
            reason: format!("encoding keyed state: {e}"),
        };
        self.key.clear();
        self.value.clear();
        bincode::serialize_into(&mut self.key, k).map_err(fail)?;
        bincode::serialize_into(&mut self.value, v).map_err(fail)?;
        put_entry(
            &mut self.groups[KeyGroup::of(k, self.max_parallelism).0 as usize],
            &self.key,
            &self.value,
        );
        Ok(())
    }

    /// The non-empty key groups' blobs, in group order.
    pub fn finish(self) -> Vec<(KeyGroup, Vec<u8>)> {
        self.groups
            .into_iter()
            .enumerate()
            .filter(|(_, blob)| !blob.is_empty())
            .map(|(i, blob)| (KeyGroup(i as u32), blob))
            .collect()
    }
}

/// Decodes the entries of blobs written by [`encode_keyed`] (or by any backend)
/// and hands each to `insert`.
pub fn decode_keyed<K, V>(
    uid: &str,
    groups: &[(KeyGroup, Vec<u8>)],
    mut insert: impl FnMut(K, V),
) -> Result<()>
where
    K: DeserializeOwned,
    V: DeserializeOwned,
{
    for (group, blob) in groups {
        let bad = |what: String| Error::State {
            uid: uid.to_string(),
            reason: format!("decoding key group {}: {what}", group.0),
        };
        for entry in entries(blob) {
            let (k, v) = entry.map_err(|e| bad(e.to_string()))?;
            let key = bincode::deserialize(k).map_err(|e| bad(e.to_string()))?;
            let value = bincode::deserialize(v).map_err(|e| bad(e.to_string()))?;
            insert(key, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keyed_state_round_trips_by_group() {
        let map: HashMap<u64, i64> = (0..1000u64).map(|k| (k, k as i64 * 3)).collect();
        let groups = encode_keyed("sum", map.iter().map(|(k, v)| (k, *v)), 16).unwrap();
        assert!(groups.windows(2).all(|w| w[0].0 < w[1].0));
        let mut back = HashMap::new();
        decode_keyed("sum", &groups, |k: u64, v: i64| {
            back.insert(k, v);
        })
        .unwrap();
        assert_eq!(back, map);
    }

    #[test]
    fn decoding_garbage_names_the_operator_and_group() {
        let err = decode_keyed(
            "sum",
            &[(KeyGroup(3), vec![0xff; 3])],
            |_: u64, _: String| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sum") && err.contains("key group 3"), "{err}");
    }

    #[test]
    fn entries_are_raw_key_and_value_bytes() {
        let mut blob = Vec::new();
        put_entry(&mut blob, b"k1", b"value");
        put_entry(&mut blob, b"", b"v");
        let all: Vec<_> = entries(&blob).collect::<Result<_>>().unwrap();
        assert_eq!(
            all,
            vec![(&b"k1"[..], &b"value"[..]), (&b""[..], &b"v"[..])]
        );
        assert!(entries(&blob[..blob.len() - 1]).any(|e| e.is_err()));
    }
}
