//! RocksDB snapshots on their way to storage: incremental uploads (checkpoints and
//! native savepoints) and canonical savepoints.
//!
//! At the barrier the task only flushes and hard-links the instance's files into a
//! local checkpoint directory (a [`NativeSnapshot`]); the uploader then, off the
//! task thread, either
//! - uploads it incrementally ([`upload`]): SST files are immutable, so one the
//!   newest completed checkpoint already holds is referred to instead of uploaded
//!   again; new ones go to `shared/` under a name unique to the attempt; the small
//!   descriptor files go to the checkpoint's own directory (a native savepoint is
//!   uploaded so too, and the savepoint writer then copies what it refers to); or
//! - turns it into canonical key-group blobs ([`to_canonical`]) for a canonical
//!   savepoint, independent of RocksDB's file format.
//!
//! The [`Registry`] remembers which SST files are in storage. Files uploaded for
//! checkpoint `n` become reusable only once a barrier says `n` completed
//! ([`crate::data::Barrier::last_completed`]): retention never deletes the newest
//! completed checkpoint's files, and nothing else completes while a checkpoint is
//! in flight, so a referred-to file cannot vanish before its checkpoint completes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::checkpoint::metadata::{NativeFile, NativeState, SstPlace};
use crate::checkpoint::paths::{native_private, native_shared, Paths};
use crate::checkpoint::state_file::checksum;
use crate::checkpoint::store::CheckpointStore;
use crate::checkpoint::transfers::each_at_once;
use crate::error::{Error, Result};
use crate::ids::{CheckpointId, OperatorUid};
use crate::keys::{KeyGroup, KeyGroupRange};
use crate::state::codec::put_entry;
use crate::state::rocks::{scan_checkpoint, LocalDir};

/// Which SST files of one RocksDB instance are in storage.
#[derive(Debug, Default)]
pub struct Registry {
    /// Files of the newest completed checkpoint this instance knows, by file name.
    confirmed: HashMap<String, NativeFile>,
    /// Files uploaded for checkpoints not yet known to be complete.
    pending: BTreeMap<CheckpointId, HashMap<String, NativeFile>>,
}

impl Registry {
    /// A registry that starts from the shared files of a restored checkpoint.
    pub fn restored(files: impl IntoIterator<Item = NativeFile>) -> Self {
        Registry {
            confirmed: files
                .into_iter()
                .filter(|f| f.shared)
                .map(|f| (f.name.clone(), f))
                .collect(),
            pending: BTreeMap::new(),
        }
    }

    /// Checkpoint `completed` is complete: its files become the reusable ones, and
    /// files of checkpoints up to it that never completed are forgotten.
    pub fn completed(&mut self, completed: Option<CheckpointId>) {
        let Some(id) = completed else { return };
        if let Some(files) = self.pending.remove(&id) {
            self.confirmed = files;
        }
        self.pending.retain(|pending, _| *pending > id);
    }
}

/// How the uploader stores a [`NativeSnapshot`].
#[derive(Debug)]
pub enum NativeFormat {
    /// A checkpoint (or native savepoint): new SST files to `shared/`, known ones
    /// referred to.
    Incremental(Incremental),
    /// A savepoint: canonical key-group blobs of the key groups in the range.
    Canonical {
        /// The key groups the subtask owns.
        key_groups: KeyGroupRange,
    },
}

/// What an incremental upload needs besides the files.
#[derive(Debug)]
pub struct Incremental {
    /// The instance's registry.
    pub registry: Arc<Mutex<Registry>>,
    /// The attempt, which makes uploaded names unique.
    pub attempt: u64,
    /// Where each SST file sat in the instance's tree (see
    /// [`crate::state::rocks::RocksDb::checkpoint`]), by file name.
    pub places: HashMap<String, SstPlace>,
}

/// A local RocksDB checkpoint (hard links, removed when dropped) to be stored.
#[derive(Debug)]
pub struct NativeSnapshot {
    /// The checkpoint directory.
    pub dir: LocalDir,
    /// How to store it.
    pub format: NativeFormat,
}

/// What an incremental upload stored.
#[derive(Debug)]
pub struct Uploaded {
    /// The handle for `_metadata`.
    pub state: NativeState,
    /// Bytes written (reused files cost nothing).
    pub bytes: u64,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("reading a RocksDB checkpoint file", path, e))
}

/// Uploads the checkpoint `id` of operator `uid`'s `subtask` from `dir`: new SST
/// files to `shared/`, descriptor files under the checkpoint directory `chk_dir`,
/// several at once. Each SST file is described with its place in the tree at
/// this snapshot, whether uploaded now or before (a compaction may have moved
/// it to another level since).
#[allow(clippy::too_many_arguments)]
pub fn upload(
    store: &dyn CheckpointStore,
    paths: &Paths,
    chk_dir: &str,
    id: CheckpointId,
    uid: &OperatorUid,
    subtask: u32,
    dir: &Path,
    incremental: &Incremental,
) -> Result<Uploaded> {
    let Incremental {
        registry,
        attempt,
        places,
    } = incremental;
    let attempt = *attempt;
    let known = registry
        .lock()
        .map_err(|_| Error::Internal("a RocksDB registry lock was poisoned".into()))?
        .confirmed
        .clone();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("listing a RocksDB checkpoint", dir, e))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io("listing a RocksDB checkpoint", dir, e))?;
    names.sort();
    // New files go up several at once; files the registry knows are reused.
    let stored = each_at_once(&names, |name| {
        let path = dir.join(name);
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::io("reading a RocksDB checkpoint file", &path, e))?
            .len();
        let shared = name.ends_with(".sst");
        let place = places.get(name).copied();
        if let Some(file) = known.get(name).filter(|f| shared && f.size == size) {
            return Ok((
                NativeFile {
                    place,
                    ..file.clone()
                },
                0,
            ));
        }
        let contents = read(&path)?;
        let (path, key) = if shared {
            let key = native_shared(uid, attempt, subtask, name);
            (format!("{}{key}", paths.shared()), key)
        } else {
            let key = native_private(uid, subtask, name);
            (format!("{chk_dir}{key}"), key)
        };
        store.put(&path, &contents)?;
        let file = NativeFile {
            name: name.clone(),
            path: key,
            shared,
            size,
            checksum: checksum(&contents),
            place,
        };
        Ok((file, size))
    })?;
    let (mut files, mut uploaded, mut bytes) = (Vec::new(), HashMap::new(), 0u64);
    for (file, written) in stored {
        bytes += written;
        if file.shared {
            uploaded.insert(file.name.clone(), file.clone());
        }
        files.push(file);
    }
    registry
        .lock()
        .map_err(|_| Error::Internal("a RocksDB registry lock was poisoned".into()))?
        .pending
        .insert(id, uploaded);
    Ok(Uploaded {
        state: NativeState { files },
        bytes,
    })
}

/// The key groups of `key_groups` in the RocksDB checkpoint in `dir`, as canonical
/// blobs (one per non-empty group, in group order).
pub fn to_canonical(
    uid: &OperatorUid,
    dir: &Path,
    key_groups: KeyGroupRange,
) -> Result<Vec<(KeyGroup, Vec<u8>)>> {
    let mut blobs: Vec<(KeyGroup, Vec<u8>)> = Vec::new();
    scan_checkpoint(&uid.0, dir, key_groups, |group, key, value| {
        match blobs.last_mut() {
            Some((last, blob)) if *last == group => put_entry(blob, key, value),
            _ => {
                let mut blob = Vec::new();
                put_entry(&mut blob, key, value);
                blobs.push((group, blob));
            }
        }
        Ok(())
    })?;
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, path: &str) -> NativeFile {
        NativeFile {
            name: name.into(),
            path: path.into(),
            shared: true,
            size: 1,
            checksum: "00".into(),
            place: None,
        }
    }

    #[test]
    fn files_become_reusable_only_once_their_checkpoint_is_known_complete() {
        let mut r = Registry::restored([file("1.sst", "a-1")]);
        r.pending.insert(
            CheckpointId(5),
            [("2.sst".to_string(), file("2.sst", "b-2"))].into(),
        );
        r.pending.insert(
            CheckpointId(6),
            [("3.sst".to_string(), file("3.sst", "b-3"))].into(),
        );
        r.completed(Some(CheckpointId(4)));
        assert!(
            r.confirmed.contains_key("1.sst"),
            "4 was not ours: keep what we had"
        );
        r.completed(Some(CheckpointId(6)));
        assert_eq!(r.confirmed.keys().collect::<Vec<_>>(), ["3.sst"]);
        assert!(r.pending.is_empty(), "5 never completed and is forgotten");
    }
}
