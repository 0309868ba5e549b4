//! Rebuilding keyed state from RocksDB checkpoints, at the same or another parallelism.
//!
//! A new subtask owns a key-group range; the old subtasks whose ranges overlap it
//! each left a RocksDB checkpoint. The one that overlaps most is the base of the
//! new instance (at the same parallelism it is exactly the new range, and its
//! files stay shared with the checkpoint: the next checkpoint uploads only what
//! changed); key groups outside the range are deleted from it. The others go to
//! a scratch instance, and the new range's entries, read in key order, are
//! written into one SST file that the new instance ingests whole (no memtable,
//! flush or compaction of them on the way).
//!
//! At another parallelism, only the SST files whose keys reach into the new
//! range are downloaded and moved into the instance as they are (see
//! `sst_files`), when the checkpoint allows: its log is empty (a native
//! savepoint flushes first) and `_metadata` says where each file sat in the
//! tree. Otherwise the whole checkpoint is downloaded and opened.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rocksdb::{SstFileWriter, WriteBatch, DB};

use crate::checkpoint::metadata::NativeFile;
use crate::checkpoint::state_file::checksum;
use crate::checkpoint::store::CheckpointStore;
use crate::checkpoint::transfers::each_at_once;
use crate::error::{Error, Result};
use crate::keys::{KeyGroup, KeyGroupRange};
use crate::state::memory::StateMemory;
use crate::state::rocks::{
    encode_key, scan_checkpoint, scan_db, sst_files, LocalDir, Registry, RocksDb,
};
use crate::state::ttl::Expiry;

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
    /// checksum, several at once (see [`each_at_once`]); returns the bytes.
    pub fn download(&self, dir: &Path) -> Result<u64> {
        let all: Vec<&(NativeFile, String)> = self.files.iter().collect();
        self.download_files(&all, dir)
    }

    /// Downloads `files` (of this checkpoint's) into `dir`, as [`Self::download`].
    fn download_files(&self, files: &[&(NativeFile, String)], dir: &Path) -> Result<u64> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        each_at_once(files, |(file, key)| self.download_one(file, key, dir))?;
        Ok(files.iter().map(|(f, _)| f.size).sum())
    }

    /// The bytes of all its files.
    fn bytes(&self) -> u64 {
        self.files.iter().map(|(f, _)| f.size).sum()
    }

    /// The SST files with keys in `range`, oldest data first, if the files alone
    /// hold the state (the log is empty) and each one's place is known.
    fn files_for(&self, range: KeyGroupRange) -> Option<Vec<&(NativeFile, String)>> {
        let mut files = Vec::new();
        for entry in &self.files {
            let file = &entry.0;
            if file.name.ends_with(".log") && file.size > 0 {
                return None;
            }
            if !file.name.ends_with(".sst") {
                continue;
            }
            let place = file.place?;
            if !place.key_groups.intersect(range).is_empty() {
                files.push((place.rank, entry));
            }
        }
        files.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
        Some(files.into_iter().map(|(_, entry)| entry).collect())
    }

    /// Downloads `files` into `scratch` and moves them into `db` (empty so far),
    /// oldest data first; returns the bytes downloaded.
    fn ingest_into(
        &self,
        uid: &str,
        db: &DB,
        files: &[&(NativeFile, String)],
        scratch: &Path,
    ) -> Result<u64> {
        let dir = LocalDir::fresh(scratch.to_path_buf())?;
        let bytes = self.download_files(files, dir.path())?;
        let paths: Vec<PathBuf> = files
            .iter()
            .map(|(f, _)| dir.path().join(&f.name))
            .collect();
        sst_files::ingest_db_files(db, uid, &paths)?;
        Ok(bytes)
    }

    /// Downloads one file, or links it where the store allows: SST files are
    /// never changed in place, by RocksDB or in storage, so the two can share one.
    fn download_one(&self, file: &NativeFile, key: &str, dir: &Path) -> Result<()> {
        let uri = self.store.uri(key);
        let missing = |e| match e {
            Error::MissingObject { .. } => Error::CorruptCheckpoint {
                path: uri.clone(),
                reason: "RocksDB file listed in _metadata is missing".into(),
            },
            // Storage down or refusing: not damage, and never taken for it.
            other => other,
        };
        let path = dir.join(&file.name);
        let linked =
            file.name.ends_with(".sst") && self.store.link_to(key, &path).map_err(missing)?;
        let bytes = if linked {
            std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?
        } else {
            self.store.get(key).map_err(missing)?
        };
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
        if linked {
            return Ok(());
        }
        std::fs::write(&path, &bytes).map_err(|e| Error::io("writing", &path, e))
    }

    /// Downloads what of the checkpoint holds `range` to the scratch directory
    /// `scratch` and calls `each(group, key, value)` for its entries in `range`;
    /// returns the bytes downloaded.
    pub fn scan(
        &self,
        uid: &str,
        scratch: &Path,
        range: KeyGroupRange,
        mut each: impl FnMut(KeyGroup, &[u8], &[u8]) -> Result<()>,
    ) -> Result<u64> {
        let dir = LocalDir::fresh(scratch.to_path_buf())?;
        let Some(files) = self.files_for(range) else {
            let bytes = self.download(dir.path())?;
            scan_checkpoint(uid, dir.path(), range, each)?;
            return Ok(bytes);
        };
        let instance = dir.path().join("db");
        let db = DB::open(&super::options(None, None), &instance)
            .map_err(|e| super::failed(uid, "opening a scratch instance", e))?;
        let bytes = self.ingest_into(uid, &db, &files, &dir.path().join("files"))?;
        scan_db(&db, uid, range, &mut each)?;
        Ok(bytes)
    }
}

#[cfg(test)]
impl NativeRestore {
    /// The handle of `files`, which an upload stored for the checkpoint
    /// directory `chk` of `paths` in `store`.
    pub fn of_upload(
        files: &[NativeFile],
        paths: &crate::checkpoint::paths::Paths,
        chk: &str,
        key_groups: KeyGroupRange,
        store: Arc<dyn CheckpointStore>,
        owned: bool,
    ) -> Self {
        let keyed = files.iter().map(|f| {
            let key = if f.shared {
                format!("{}{}", paths.shared(), f.path)
            } else {
                format!("{chk}{}", f.path)
            };
            (f.clone(), key)
        });
        NativeRestore {
            key_groups,
            files: keyed.collect(),
            store,
            owned,
        }
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
/// (`expiry`: see [`RocksDb::open`]).
pub fn rebuild(
    uid: &str,
    dir: LocalDir,
    range: KeyGroupRange,
    native: &[NativeRestore],
    memory: &StateMemory,
    expiry: Option<Expiry>,
) -> Result<(RocksDb, Registry)> {
    let overlap = |n: &NativeRestore| n.key_groups.intersect(range).len();
    let base = native
        .iter()
        .enumerate()
        .filter(|(_, n)| overlap(n) > 0)
        .max_by_key(|(_, n)| overlap(n));
    let Some((base_index, base)) = base else {
        return Ok((
            RocksDb::open(uid, dir, memory, expiry)?,
            Registry::default(),
        ));
    };
    let started = Instant::now();
    let mut downloaded = 0;
    let (db, registry) = if base.key_groups == range {
        downloaded += base.download(dir.path())?;
        let registry = if base.owned {
            Registry::restored(base.files.iter().map(|(f, _)| f.clone()))
        } else {
            Registry::default()
        };
        (RocksDb::open(uid, dir, memory, expiry)?, registry)
    } else {
        let db = match base.files_for(range) {
            Some(files) => {
                let db = RocksDb::open(uid, dir, memory, expiry)?;
                let scratch = db.dir().with_extension(format!("restore-{base_index}"));
                downloaded += base.ingest_into(uid, &db.db, &files, &scratch)?;
                db
            }
            None => {
                downloaded += base.download(dir.path())?;
                RocksDb::open(uid, dir, memory, expiry)?
            }
        };
        db.retain_groups(range)?;
        (db, Registry::default())
    };
    for (i, other) in native.iter().enumerate() {
        let mine = other.key_groups.intersect(range);
        if i == base_index || mine.is_empty() {
            continue;
        }
        let scratch = db.dir().with_extension(format!("restore-{i}"));
        let file = db.dir().with_extension(format!("restore-{i}.sst"));
        let ingested = copy_range(uid, other, &scratch, mine, &file).and_then(|(any, bytes)| {
            downloaded += bytes;
            if any {
                db.ingest(&file)
            } else {
                Ok(())
            }
        });
        let _ = std::fs::remove_file(&file);
        ingested?;
    }
    let overlapping = native.iter().filter(|n| overlap(n) > 0);
    tracing::info!(
        operator = uid,
        key_groups = %format!("{}-{}", range.start, range.end.saturating_sub(1)),
        from_subtasks = overlapping.clone().count(),
        downloaded_mb = downloaded / 1_000_000,
        of_mb = overlapping.map(NativeRestore::bytes).sum::<u64>() / 1_000_000,
        seconds = started.elapsed().as_secs_f64(),
        "rebuilt RocksDB state from checkpoints"
    );
    Ok((db, registry))
}

/// Writes the entries of `range` in the checkpoint `from` into a new SST file
/// at `file`, in key order; says whether there were any, and the bytes it
/// downloaded.
fn copy_range(
    uid: &str,
    from: &NativeRestore,
    scratch: &Path,
    range: KeyGroupRange,
    file: &Path,
) -> Result<(bool, u64)> {
    let options = super::options(None, None);
    let mut writer = SstFileWriter::create(&options);
    let sst = |e| super::failed(uid, "writing restored entries", e);
    writer.open(file).map_err(sst)?;
    let (mut key, mut any) = (Vec::new(), false);
    let bytes = from.scan(uid, scratch, range, |group, k, v| {
        encode_key(group, k, &mut key);
        any = true;
        writer.put(&key, v).map_err(sst)
    })?;
    if any {
        writer.finish().map_err(sst)?;
    }
    Ok((any, bytes))
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
            place: None,
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

    #[test]
    fn sst_files_on_the_same_file_system_are_linked_and_others_copied() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn CheckpointStore> = Arc::new(FileStore::new(tmp.path().join("s")));
        store.put("shared/a.sst", b"0123456789").unwrap();
        store.put("chk-1/MANIFEST-000001", b"0123456789").unwrap();
        let mut restore = restore_of(&store, "shared/a.sst", 10);
        let mut manifest = restore.files[0].0.clone();
        manifest.name = "MANIFEST-000001".into();
        restore
            .files
            .push((manifest, "chk-1/MANIFEST-000001".to_string()));
        let local = tmp.path().join("local");
        restore.download(&local).unwrap();
        let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let stored = tmp.path().join("s");
        assert_eq!(
            inode(&local.join("000009.sst")),
            inode(&stored.join("shared/a.sst"))
        );
        assert_ne!(
            inode(&local.join("MANIFEST-000001")),
            inode(&stored.join("chk-1/MANIFEST-000001")),
            "RocksDB may write to its MANIFEST: never shared"
        );
        assert_eq!(
            std::fs::read(local.join("MANIFEST-000001")).unwrap(),
            b"0123456789"
        );
    }
}
