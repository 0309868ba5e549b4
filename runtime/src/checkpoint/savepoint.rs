//! Writing a savepoint: a checkpoint made self-contained under its own directory.
//!
//! Step by step:
//! 1. A savepoint is taken like checkpoint `n` (the same barriers and snapshots),
//!    its state files staged in `chk-n/`, which never gets a `_metadata` and so is
//!    never a restore candidate.
//! 2. Once every task has acknowledged, each state file is copied into the
//!    savepoint's directory `sp-{n}-{suffix}/` under the target (by the store itself
//!    when the target is in the checkpoint store: S3's CopyObject, a hard link on a
//!    file system), several at once, and `_metadata` is written there last. A native
//!    savepoint's RocksDB files include those in the job's `shared/` that the newest
//!    checkpoint uploaded: they are copied too, and become the savepoint's own.
//!    Paths in `_metadata` are relative to it, so the directory can be copied
//!    anywhere and restored from there, and the job's retention never touches it.
//! 3. The staging directory is deleted; the copied shared files stay as long as a
//!    retained checkpoint refers to them (see `collect_shared`).

use crate::checkpoint::metadata::CheckpointMetadata;
use crate::checkpoint::paths::{native_private, Paths, METADATA};
use crate::checkpoint::store::{open_store, CheckpointStore};
use crate::checkpoint::transfers::each_at_once;
use crate::error::Result;
use crate::ids::CheckpointId;
use crate::keys::mix;

/// Where a savepoint goes: a store and the directory (key prefix) in it.
#[derive(Debug)]
pub struct SavepointTarget {
    store: Option<Box<dyn CheckpointStore>>,
    dir: String,
}

impl SavepointTarget {
    /// The directory for savepoint `id`: under `target` (a directory URI) if given,
    /// else under the job's `savepoints/` in the checkpoint store.
    pub fn new(target: Option<&str>, paths: &Paths, id: CheckpointId) -> Result<Self> {
        let name = format!("sp-{}-{}", id.0, suffix(id));
        Ok(match target {
            Some(uri) => SavepointTarget {
                store: Some(open_store(uri)?),
                dir: format!("{name}/"),
            },
            None => SavepointTarget {
                store: None,
                dir: format!("{}{name}/", paths.savepoints()),
            },
        })
    }

    /// Copies the state of `metadata` (staged in `staging_dir` of `checkpoints`,
    /// or in the job's shared files under `paths`) and writes `_metadata` last;
    /// returns the savepoint directory's URI.
    pub fn write(
        &self,
        checkpoints: &dyn CheckpointStore,
        paths: &Paths,
        staging_dir: &str,
        metadata: &CheckpointMetadata,
    ) -> Result<String> {
        let (own, copies) = self.own_copy(paths, staging_dir, metadata);
        each_at_once(&copies, |(from, to)| match &self.store {
            // The same store: it copies on its side.
            None => checkpoints.copy(from, to),
            Some(other) => other.put(to, &checkpoints.get(from)?),
        })?;
        let target = self.store.as_deref().unwrap_or(checkpoints);
        target.put(&format!("{}{METADATA}", self.dir), &own.to_bytes()?)?;
        Ok(target.uri(&self.dir))
    }

    /// The savepoint's own `_metadata`, whose every file lies in its directory,
    /// and the copies (from, to) that put them there.
    fn own_copy(
        &self,
        paths: &Paths,
        staging_dir: &str,
        metadata: &CheckpointMetadata,
    ) -> (CheckpointMetadata, Vec<(String, String)>) {
        let mut own = metadata.clone();
        let mut copies = Vec::new();
        for op in &mut own.operators {
            for st in &mut op.subtasks {
                if let Some(file) = &st.file {
                    copies.push((
                        format!("{staging_dir}{}", file.path),
                        format!("{}{}", self.dir, file.path),
                    ));
                }
                for file in st.rocksdb.iter_mut().flat_map(|n| &mut n.files) {
                    let from = if file.shared {
                        format!("{}{}", paths.shared(), file.path)
                    } else {
                        format!("{staging_dir}{}", file.path)
                    };
                    // File names are unique within one RocksDB instance.
                    file.path = native_private(&op.uid, st.subtask, &file.name);
                    file.shared = false;
                    copies.push((from, format!("{}{}", self.dir, file.path)));
                }
            }
        }
        (own, copies)
    }
}

/// Six hex digits that differ between runs, so two savepoints of the same
/// checkpoint id (of two runs of the job) never share a directory.
fn suffix(id: CheckpointId) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{:06x}", mix(now ^ id.0) & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::metadata::{OperatorState, StateFile, SubtaskState, FORMAT_VERSION};
    use crate::checkpoint::restore::{explicit, RestorePoint};
    use crate::checkpoint::state_file::encode;
    use crate::checkpoint::store::FileStore;
    use crate::ids::{OperatorUid, Subtask};
    use crate::keys::KeyGroupRange;
    use crate::state::OperatorSnapshot;
    use std::sync::Arc;

    fn staged(store: &FileStore, dir: &str) -> CheckpointMetadata {
        let snapshot = OperatorSnapshot {
            operator_state: Some(b"hello".to_vec()),
            ..Default::default()
        };
        let (bytes, file): (Vec<u8>, StateFile) =
            encode("op/0/state".into(), &snapshot).unwrap().unwrap();
        store.put(&format!("{dir}{}", file.path), &bytes).unwrap();
        CheckpointMetadata {
            format_version: FORMAT_VERSION,
            job: "job".into(),
            job_id: None,
            checkpoint_id: CheckpointId(4),
            timestamp_ms: 1,
            duration_ms: 2,
            uploaded_bytes: 0,
            max_parallelism: 8,
            operators: vec![OperatorState {
                uid: OperatorUid("op".into()),
                parallelism: 1,
                subtasks: vec![SubtaskState {
                    subtask: 0,
                    key_groups: KeyGroupRange { start: 0, end: 8 },
                    position: None,
                    file: Some(file),
                    rocksdb: None,
                }],
            }],
        }
    }

    #[test]
    fn a_savepoint_is_self_contained_and_restores_after_being_moved() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path().join("checkpoints"));
        let paths = Paths::new("job", &crate::ids::JobId("r".into()));
        let metadata = staged(&store, &paths.checkpoint_dir(CheckpointId(4)));
        let target = SavepointTarget::new(None, &paths, CheckpointId(4)).unwrap();
        let uri = target
            .write(
                &store,
                &paths,
                &paths.checkpoint_dir(CheckpointId(4)),
                &metadata,
            )
            .unwrap();
        assert!(uri.contains("/job/r/savepoints/sp-4-"), "{uri}");
        store
            .delete_prefix(&paths.checkpoint_dir(CheckpointId(4)))
            .unwrap();
        let moved = tmp.path().join("elsewhere");
        std::fs::rename(uri.strip_prefix("file://").unwrap(), &moved).unwrap();
        let point = explicit(moved.to_str().unwrap()).unwrap();
        let state = point
            .state_for(
                &OperatorUid("op".into()),
                Subtask {
                    index: 0,
                    parallelism: 1,
                },
                KeyGroupRange { start: 0, end: 8 },
            )
            .unwrap()
            .unwrap();
        assert_eq!(state.operator_state.as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn a_native_savepoint_owns_copies_of_the_shared_files_it_refers_to() {
        use crate::checkpoint::metadata::{NativeFile, NativeState};
        use crate::checkpoint::paths::native_shared;
        use crate::checkpoint::state_file::checksum;
        use std::os::unix::fs::MetadataExt;

        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path().join("checkpoints"));
        let paths = Paths::new("job", &crate::ids::JobId("r".into()));
        let staging = paths.checkpoint_dir(CheckpointId(4));
        let mut metadata = staged(&store, &staging);
        let uid = OperatorUid("op".into());
        let file = |name: &str, path: String, shared: bool, bytes: &[u8]| NativeFile {
            name: name.into(),
            path,
            shared,
            size: bytes.len() as u64,
            checksum: checksum(bytes),
            place: None,
        };
        // An SST file an earlier checkpoint uploaded, and a descriptor staged now.
        let sst = native_shared(&uid, 7, 0, "000012.sst");
        store
            .put(&format!("{}{sst}", paths.shared()), b"old sst")
            .unwrap();
        let manifest = native_private(&uid, 0, "MANIFEST-000005");
        store
            .put(&format!("{staging}{manifest}"), b"manifest")
            .unwrap();
        metadata.operators[0].subtasks[0].rocksdb = Some(NativeState {
            files: vec![
                file("000012.sst", sst.clone(), true, b"old sst"),
                file("MANIFEST-000005", manifest, false, b"manifest"),
            ],
        });
        let target = SavepointTarget::new(None, &paths, CheckpointId(4)).unwrap();
        let uri = target.write(&store, &paths, &staging, &metadata).unwrap();
        let dir = std::path::PathBuf::from(uri.strip_prefix("file://").unwrap());

        let point = explicit(dir.to_str().unwrap()).unwrap();
        let files = &point.metadata.operators[0].subtasks[0]
            .rocksdb
            .as_ref()
            .unwrap()
            .files;
        assert!(files.iter().all(|f| !f.shared), "{files:?}");
        assert_eq!(files[0].path, "op/0/rocksdb/000012.sst");
        // On a file system the copy is a link: nothing was written again.
        let copied = std::fs::metadata(dir.join(&files[0].path)).unwrap();
        let original = tmp
            .path()
            .join("checkpoints")
            .join(paths.shared())
            .join(&sst);
        assert_eq!(copied.ino(), std::fs::metadata(&original).unwrap().ino());
        // Retention may now delete the shared file: the savepoint keeps its own.
        store.delete_prefix(&paths.shared()).unwrap();
        store.delete_prefix(&staging).unwrap();
        let point = explicit(dir.to_str().unwrap()).unwrap();
        let restored = point
            .state_for(
                &uid,
                Subtask {
                    index: 0,
                    parallelism: 1,
                },
                KeyGroupRange { start: 0, end: 8 },
            )
            .unwrap()
            .unwrap();
        let sst_bytes = restored.native[0].store.get(&restored.native[0].files[0].1);
        assert_eq!(sst_bytes.unwrap(), b"old sst");
    }

    #[test]
    fn an_explicit_target_gets_its_own_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path().join("checkpoints"));
        let paths = Paths::new("job", &crate::ids::JobId("r".into()));
        let metadata = staged(&store, "stage/");
        let target_uri = format!("file://{}", tmp.path().join("sps").display());
        let target = SavepointTarget::new(Some(&target_uri), &paths, CheckpointId(4)).unwrap();
        let uri = target.write(&store, &paths, "stage/", &metadata).unwrap();
        assert!(uri.starts_with(&format!("{target_uri}/sp-4-")), "{uri}");
        let dir = uri.strip_prefix("file://").unwrap();
        let point = RestorePoint::load(Arc::new(FileStore::new(dir)), "", None).unwrap();
        assert_eq!(point.metadata, metadata);
    }
}
