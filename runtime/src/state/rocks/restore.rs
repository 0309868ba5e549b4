//! Rebuilding keyed state from RocksDB checkpoints, at the same or another parallelism.
//!
//! A new subtask owns a key-group range; the old subtasks whose ranges overlap it
//! each left a RocksDB checkpoint. The one that overlaps most is downloaded as the
//! base of the new instance (at the same parallelism it is exactly the new range,
//! and its files stay shared with the checkpoint: the next checkpoint uploads only
//! what changed); key groups outside the range are deleted from it. The others
//! are downloaded to a scratch directory and only the new range is copied over.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rocksdb::WriteBatch;

use crate::checkpoint::metadata::NativeFile;
use crate::checkpoint::state_file::checksum;
use crate::checkpoint::store::CheckpointStore;
use crate::error::{Error, Result};
use crate::keys::{KeyGroup, KeyGroupRange};
use crate::state::memory::StateMemory;
use crate::state::rocks::parallel::each_at_once;
use crate::state::rocks::{encode_key, scan_checkpoint, LocalDir, Registry, RocksDb};

/// The RocksDB checkpoint of one old subtask, as a restore finds it.
#[derive(Clone)]
pub struct NativeRestore {
    /// Key groups the old subtask owned.
    pub key_groups: KeyGroupRange,
    /// Its files, each with its key in `store`.
    pub files: Vec<(NativeFile, String)>,
    /// Where the files are.
    pub store: Arc<dyn CheckpointStore>,
    /// Whether the files are the running deployment's own (see
    /// [`crate::checkpoint::restore::RestorePoint::owned`]): only then do later
    /// checkpoints refer to them instead of uploading them again.
    pub owned: bool,
}

impl std::fmt::Debug for NativeRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeRestore")
            .field("key_groups", &self.key_groups)
            .field("files", &self.files.len())
            .finish()
    }
}

impl NativeRestore {
    /// Downloads every file into `dir`, checking each against its size and
    /// checksum, several at once (see [`each_at_once`]).
    pub fn download(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        each_at_once(&self.files, |(file, key)| self.download_one(file, key, dir))?;
        Ok(())
    }

    fn download_one(&self, file: &NativeFile, key: &str, dir: &Path) -> Result<()> {
        let uri = self.store.uri(key);
        let bytes = self.store.get(key).map_err(|e| match e {
            Error::MissingObject { .. } => Error::CorruptCheckpoint {
                path: uri.clone(),
                reason: "RocksDB file listed in _metadata is missing".into(),
            },
            // Storage down or refusing: not damage, and never taken for it.
            other => other,
        })?;
        if bytes.len() as u64 != file.size {
            return Err(Error::CorruptCheckpoint {
                path: uri,
                reason: format!(
                    "RocksDB file is {} bytes, _metadata says {} (truncated or overwritten)",
                    bytes.len(),
                    file.size
                ),
            });
        }
        let sum = checksum(&bytes);
        if sum != file.checksum {
            return Err(Error::CorruptCheckpoint {
                path: uri,
                reason: format!("checksum {sum} does not match {}", file.checksum),
            });
        }
        let path = dir.join(&file.name);
        std::fs::write(&path, &bytes).map_err(|e| Error::io("writing", &path, e))
    }

    /// Downloads the checkpoint to a scratch directory under `scratch` and calls
    /// `each(group, key, value)` for its entries in `range`.
    pub fn scan(
        &self,
        uid: &str,
        scratch: &Path,
        range: KeyGroupRange,
        each: impl FnMut(KeyGroup, &[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let dir = LocalDir::fresh(scratch.to_path_buf())?;
        self.download(dir.path())?;
        scan_checkpoint(uid, dir.path(), range, each)
    }
}

/// Writes entries into a RocksDB instance in batches of about 4 MiB.
pub struct BatchWriter<'d> {
    db: &'d RocksDb,
    batch: WriteBatch,
    key: Vec<u8>,
}

impl<'d> BatchWriter<'d> {
    /// A writer into `db`.
    pub fn new(db: &'d RocksDb) -> Self {
        BatchWriter {
            db,
            batch: WriteBatch::default(),
            key: Vec::new(),
        }
    }

    /// Adds the entry `key` (without its group prefix) in `group`.
    pub fn put(&mut self, group: KeyGroup, key: &[u8], value: &[u8]) -> Result<()> {
        encode_key(group, key, &mut self.key);
        self.batch.put(&self.key, value);
        if self.batch.size_in_bytes() >= 4 << 20 {
            self.db.write(std::mem::take(&mut self.batch))?;
        }
        Ok(())
    }

    /// Writes what is left.
    pub fn finish(self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.db.write(self.batch)
    }
}

/// Builds the instance of a subtask owning `range` in `dir` from the RocksDB
/// checkpoints `native` of the old subtasks, and the registry to go with it
/// (`ttl`: see [`RocksDb::open`]).
pub fn rebuild(
    uid: &str,
    dir: LocalDir,
    range: KeyGroupRange,
    native: &[NativeRestore],
    memory: &StateMemory,
    ttl: Option<Duration>,
) -> Result<(RocksDb, Registry)> {
    let overlap = |n: &NativeRestore| n.key_groups.intersect(range).len();
    let base = native
        .iter()
        .enumerate()
        .filter(|(_, n)| overlap(n) > 0)
        .max_by_key(|(_, n)| overlap(n));
    let Some((base_index, base)) = base else {
        return Ok((RocksDb::open(uid, dir, memory, ttl)?, Registry::default()));
    };
    base.download(dir.path())?;
    let db = RocksDb::open(uid, dir, memory, ttl)?;
    if base.key_groups != range {
        db.retain_groups(range)?;
    }
    let registry = if base.key_groups == range && base.owned {
        Registry::restored(base.files.iter().map(|(f, _)| f.clone()))
    } else {
        Registry::default()
    };
    for (i, other) in native.iter().enumerate() {
        let mine = other.key_groups.intersect(range);
        if i == base_index || mine.is_empty() {
            continue;
        }
        let scratch = db.dir().with_extension(format!("restore-{i}"));
        let mut writer = BatchWriter::new(&db);
        other.scan(uid, &scratch, mine, |g, k, v| writer.put(g, k, v))?;
        writer.finish()?;
    }
    Ok((db, registry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::store::FileStore;

    fn restore_of(store: &Arc<dyn CheckpointStore>, key: &str, size: u64) -> NativeRestore {
        let file = NativeFile {
            name: "000009.sst".into(),
            path: "op/a-0-000009.sst".into(),
            shared: true,
            size,
            checksum: checksum(b"0123456789"),
        };
        NativeRestore {
            key_groups: KeyGroupRange { start: 0, end: 8 },
            files: vec![(file, key.to_string())],
            store: store.clone(),
            owned: true,
        }
    }

    #[test]
    fn a_download_that_fails_is_no_damage_but_a_missing_or_wrong_file_is() {
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn CheckpointStore> = Arc::new(FileStore::new(tmp.path().join("s")));
        let target = tmp.path().join("local");
        // A read that fails (a directory where the file is): storage trouble, which
        // a restart may cure, never a reason to give the checkpoint up.
        std::fs::create_dir_all(tmp.path().join("s/shared/x.sst")).unwrap();
        let err = restore_of(&store, "shared/x.sst", 10)
            .download(&target)
            .unwrap_err();
        assert!(matches!(err, Error::Store { .. }), "{err:?}");
        assert_eq!(err.class(), crate::error::ErrorClass::External);
        // Missing, or another size: damage.
        let err = restore_of(&store, "shared/gone.sst", 10)
            .download(&target)
            .unwrap_err();
        assert!(matches!(err, Error::CorruptCheckpoint { .. }), "{err:?}");
        store.put("shared/short.sst", b"01234").unwrap();
        let err = restore_of(&store, "shared/short.sst", 10)
            .download(&target)
            .unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        store.put("shared/ok.sst", b"0123456789").unwrap();
        restore_of(&store, "shared/ok.sst", 10)
            .download(&target)
            .unwrap();
    }
}
