//! Writing a savepoint: a checkpoint made self-contained under its own directory.
//!
//! Step by step:
//! 1. A savepoint is taken like checkpoint `n` (the same barriers and snapshots),
//!    its state files staged in `chk-n/`, which never gets a `_metadata` and so is
//!    never a restore candidate.
//! 2. Once every task has acknowledged, each state file is copied into the
//!    savepoint's directory `sp-{n}-{suffix}/` under the target (by the store itself
//!    when the target is in the checkpoint store: S3's CopyObject), and `_metadata` is
//!    written there last. Paths in `_metadata` are relative to it, so the directory
//!    can be copied anywhere and restored from there.
//! 3. The staging directory is deleted.

use crate::checkpoint::metadata::CheckpointMetadata;
use crate::checkpoint::paths::{Paths, METADATA};
use crate::checkpoint::store::{open_store, CheckpointStore};
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

    /// Copies the staged state of `metadata` from `staging_dir` of `checkpoints`
    /// and writes `_metadata` last; returns the savepoint directory's URI.
    pub fn write(
        &self,
        checkpoints: &dyn CheckpointStore,
        staging_dir: &str,
        metadata: &CheckpointMetadata,
    ) -> Result<String> {
        let target = self.store.as_deref().unwrap_or(checkpoints);
        for op in &metadata.operators {
            for file in op.subtasks.iter().filter_map(|s| s.file.as_ref()) {
                let (from, to) = (
                    format!("{staging_dir}{}", file.path),
                    format!("{}{}", self.dir, file.path),
                );
                match &self.store {
                    // The same store: it copies on its side.
                    None => checkpoints.copy(&from, &to)?,
                    Some(other) => other.put(&to, &checkpoints.get(&from)?)?,
                }
            }
        }
        target.put(&format!("{}{METADATA}", self.dir), &metadata.to_bytes()?)?;
        Ok(target.uri(&self.dir))
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
            .write(&store, &paths.checkpoint_dir(CheckpointId(4)), &metadata)
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
    fn an_explicit_target_gets_its_own_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::new(tmp.path().join("checkpoints"));
        let paths = Paths::new("job", &crate::ids::JobId("r".into()));
        let metadata = staged(&store, "stage/");
        let target_uri = format!("file://{}", tmp.path().join("sps").display());
        let target = SavepointTarget::new(Some(&target_uri), &paths, CheckpointId(4)).unwrap();
        let uri = target.write(&store, "stage/", &metadata).unwrap();
        assert!(uri.starts_with(&format!("{target_uri}/sp-4-")), "{uri}");
        let dir = uri.strip_prefix("file://").unwrap();
        let point = RestorePoint::load(Arc::new(FileStore::new(dir)), "", None).unwrap();
        assert_eq!(point.metadata, metadata);
    }
}
