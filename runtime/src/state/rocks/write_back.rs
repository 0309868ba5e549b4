//! The write-backs of a cache in front of RocksDB: updated values encoded into
//! one buffer, then written in one batch in key order.

use rocksdb::WriteBatch;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::keys::{KeyGroup, StableHash};
use crate::state::rocks::RocksDb;

/// One write-back entry: its encoded key and value in a shared buffer.
struct Write {
    start: usize,
    key_end: usize,
    end: usize,
    delete: bool,
}

/// The encoded write-backs of one batch, written to RocksDB in key order
/// (RocksDB's memtable inserts a sorted run from where the previous insert ended).
#[derive(Default)]
pub(super) struct WriteBack {
    writes: Vec<Write>,
    buffer: Vec<u8>,
    failure: Option<Error>,
}

impl WriteBack {
    /// Forgets what was added (and a failure to encode it).
    pub(super) fn clear(&mut self) {
        self.writes.clear();
        self.buffer.clear();
        self.failure = None;
    }

    /// Encodes `key`'s `value` (a deletion if `None`) in `uid`'s state.
    pub(super) fn add<K: StableHash + Serialize, V: Serialize>(
        &mut self,
        uid: &str,
        max_parallelism: u32,
        key: &K,
        value: Option<&V>,
    ) {
        if self.failure.is_some() {
            return;
        }
        let start = self.buffer.len();
        let group = KeyGroup::of(key, max_parallelism).0 as u16;
        self.buffer.extend_from_slice(&group.to_be_bytes());
        let encoded = bincode::serialize_into(&mut self.buffer, key).and_then(|()| {
            let key_end = self.buffer.len();
            if let Some(v) = value {
                bincode::serialize_into(&mut self.buffer, v)?;
            }
            Ok(key_end)
        });
        match encoded {
            Ok(key_end) => self.writes.push(Write {
                start,
                key_end,
                end: self.buffer.len(),
                delete: value.is_none(),
            }),
            Err(e) => self.failure = Some(encode_failed(uid, e)),
        }
    }

    /// Writes what was added in one sorted batch; the bytes per entry written.
    pub(super) fn write(&mut self, db: &RocksDb) -> Result<Option<usize>> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        if self.writes.is_empty() {
            return Ok(None);
        }
        let buffer = &self.buffer;
        self.writes
            .sort_unstable_by(|a, b| buffer[a.start..a.key_end].cmp(&buffer[b.start..b.key_end]));
        let mut batch = WriteBatch::default();
        for w in &self.writes {
            let key = &buffer[w.start..w.key_end];
            if w.delete {
                batch.delete(key);
            } else {
                batch.put(key, &buffer[w.key_end..w.end]);
            }
        }
        db.write(batch)?;
        Ok(Some(buffer.len() / self.writes.len()))
    }
}

/// The error of a key or value that does not encode.
pub(super) fn encode_failed(uid: &str, e: bincode::Error) -> Error {
    Error::State {
        uid: uid.to_string(),
        reason: format!("encoding keyed state: {e}"),
    }
}
