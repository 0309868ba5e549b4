//! Finding and loading the checkpoint to restore, and handing each subtask its state.

use std::collections::HashMap;

use crate::checkpoint::metadata::CheckpointMetadata;
use crate::checkpoint::paths::{Paths, METADATA};
use crate::checkpoint::retention::Listing;
use crate::checkpoint::state_file;
use crate::checkpoint::store::{open_store, CheckpointStore, FileStore};
use crate::error::{Error, Result};
use crate::ids::{OperatorUid, Subtask};
use crate::keys::KeyGroupRange;
use crate::state::RestoredState;

/// A checkpoint read into memory and verified: its `_metadata` and every state file.
#[derive(Debug)]
pub struct RestorePoint {
    /// The checkpoint's metadata.
    pub metadata: CheckpointMetadata,
    /// Where it was read from.
    pub location: String,
    files: HashMap<String, (String, Vec<u8>)>,
}

impl RestorePoint {
    /// Reads the checkpoint whose directory is `dir` (a key prefix ending in `/`, or empty).
    /// Every state file is checked against its size and checksum.
    pub fn load(store: &dyn CheckpointStore, dir: &str) -> Result<Self> {
        let meta_key = format!("{dir}{METADATA}");
        let bytes = store.get(&meta_key)?;
        let metadata = CheckpointMetadata::parse(&store.uri(&meta_key), &bytes)?;
        let mut files = HashMap::new();
        for op in &metadata.operators {
            for st in &op.subtasks {
                if let Some(file) = &st.file {
                    let key = format!("{dir}{}", file.path);
                    let uri = store.uri(&key);
                    let bytes = store.get(&key).map_err(|e| Error::CorruptCheckpoint {
                        path: uri.clone(),
                        reason: format!("state file listed in _metadata cannot be read: {e}"),
                    })?;
                    state_file::verify(&uri, file, &bytes)?;
                    files.insert(file.path.clone(), (uri, bytes));
                }
            }
        }
        Ok(RestorePoint {
            metadata,
            location: store.uri(dir),
            files,
        })
    }

    /// The state operator `uid`'s `subtask` owns in this checkpoint, or `None`
    /// when the checkpoint holds nothing for it. Keyed state is re-split by key
    /// group, so it restores at any parallelism; non-keyed state only at the same one.
    pub fn state_for(
        &self,
        uid: &OperatorUid,
        subtask: Subtask,
        key_groups: KeyGroupRange,
    ) -> Result<Option<RestoredState>> {
        let Some(op) = self.metadata.operator(uid) else {
            return Ok(None);
        };
        let mut restored = RestoredState::default();
        let same_parallelism = op.parallelism == subtask.parallelism;
        for st in &op.subtasks {
            let has_operator_state = st.position.is_some()
                || st.file.as_ref().is_some_and(|f| f.operator_state.is_some());
            if has_operator_state && !same_parallelism {
                return Err(Error::State {
                    uid: uid.0.clone(),
                    reason: format!(
                        "non-keyed state taken at parallelism {} cannot be restored at parallelism {}",
                        op.parallelism, subtask.parallelism
                    ),
                });
            }
            let own = st.subtask == subtask.index;
            if own {
                restored.position = st.position.clone();
            }
            if let Some(file) = &st.file {
                let (uri, bytes) = self.files.get(&file.path).ok_or_else(|| {
                    Error::Internal(format!("state file {} was not loaded", file.path))
                })?;
                if own {
                    restored.operator_state = state_file::operator_state(uri, file, bytes)?;
                }
                restored
                    .keyed
                    .extend(state_file::key_groups(uri, file, bytes, key_groups)?);
            }
        }
        restored.keyed.sort_by_key(|(g, _)| *g);
        Ok(Some(restored))
    }
}

/// Loads the newest completed checkpoint of the job that can be read, or `None`
/// if there is none. A damaged one is skipped with a warning naming what is wrong,
/// and the next older one is tried.
pub fn latest(store: &dyn CheckpointStore, paths: &Paths) -> Result<Option<RestorePoint>> {
    let listing = Listing::from_keys(paths, &store.list(&paths.checkpoints())?);
    for id in listing.restore_candidates() {
        match RestorePoint::load(store, &paths.checkpoint_dir(id)) {
            Ok(point) => return Ok(Some(point)),
            Err(e @ Error::CorruptCheckpoint { .. }) => {
                tracing::warn!(checkpoint = id.0, error = %e, "skipping damaged checkpoint");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Loads the checkpoint or savepoint at `location`: its directory or its `_metadata`,
/// as a plain path, a `file://` or an `s3://` URI. Damage is an error, never skipped.
pub fn explicit(location: &str) -> Result<RestorePoint> {
    let dir = location.strip_suffix(METADATA).unwrap_or(location);
    let missing = || {
        Error::NoCheckpoint(format!(
            "{dir} (no {METADATA} there: not a completed checkpoint or savepoint)"
        ))
    };
    if !dir.starts_with("s3://") {
        let path = dir.strip_prefix("file://").unwrap_or(dir);
        if !std::path::Path::new(path).join(METADATA).is_file() {
            return Err(missing());
        }
        return RestorePoint::load(&FileStore::new(path), "");
    }
    let store = open_store(dir)?;
    if !store.list("")?.iter().any(|k| k == METADATA) {
        return Err(missing());
    }
    RestorePoint::load(store.as_ref(), "")
}
