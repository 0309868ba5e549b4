//! Finding and loading the checkpoint to restore, and handing each subtask its state.
//!
//! Loading reads `_metadata`, reads and verifies every state file (size and
//! checksum), and checks that every RocksDB file is in storage at its size; the
//! RocksDB files themselves are downloaded (and their checksums verified) by the
//! subtasks that need them, on the machine they run on.

use std::collections::HashMap;
use std::sync::Arc;

use crate::checkpoint::metadata::{CheckpointMetadata, NativeFile};
use crate::checkpoint::paths::{Paths, METADATA};
use crate::checkpoint::runs::read_metadata;
use crate::checkpoint::state_file;
use crate::checkpoint::store::{open_store, CheckpointStore};
use crate::error::{Error, Result};
use crate::ids::{CheckpointId, OperatorUid, Subtask};
use crate::keys::KeyGroupRange;
use crate::state::rocks::NativeRestore;
use crate::state::{RestoredState, UnionState};

/// A checkpoint read into memory and verified: its `_metadata` and every state file.
pub struct RestorePoint {
    /// The checkpoint's metadata.
    pub metadata: CheckpointMetadata,
    /// Where it was read from.
    pub location: String,
    /// Whether it is the running deployment's own checkpoint: then its shared
    /// files are the deployment's, and incremental checkpoints after the restore
    /// may go on referring to them. A point of another deployment is never
    /// referred to after the restore (its first checkpoint uploads everything),
    /// so that deployment's retention can never take files from under this one.
    pub owned: bool,
    files: HashMap<String, (String, Vec<u8>)>,
    store: Arc<dyn CheckpointStore>,
    dir: String,
    shared: Option<String>,
}

impl std::fmt::Debug for RestorePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestorePoint")
            .field("checkpoint", &self.metadata.checkpoint_id)
            .field("location", &self.location)
            .finish()
    }
}

impl RestorePoint {
    /// Reads the checkpoint whose directory is `dir` in `store` (a key prefix ending
    /// in `/`, or empty); `shared` is the prefix of the job's shared files, if the
    /// checkpoint lies in a job's `checkpoints/` directory. Every state file is
    /// checked against its size and checksum, every RocksDB file against its size.
    ///
    /// Damage (a state file missing, or not of its size or checksum, or a
    /// `_metadata` that does not parse) is [`Error::CorruptCheckpoint`]; no
    /// `_metadata` at all is [`Error::MissingObject`]; a read that fails for any
    /// other reason is returned as it is ([`Error::Store`]: retrying may cure it).
    pub fn load(store: Arc<dyn CheckpointStore>, dir: &str, shared: Option<&str>) -> Result<Self> {
        let meta_key = format!("{dir}{METADATA}");
        let bytes = store.get(&meta_key)?;
        let metadata = CheckpointMetadata::parse(&store.uri(&meta_key), &bytes)?;
        let mut point = RestorePoint {
            location: store.uri(dir),
            owned: false,
            metadata,
            files: HashMap::new(),
            store,
            dir: dir.to_string(),
            shared: shared.map(str::to_string),
        };
        let mut files = HashMap::new();
        for st in point.metadata.operators.iter().flat_map(|o| &o.subtasks) {
            if let Some(file) = &st.file {
                let key = format!("{dir}{}", file.path);
                let uri = point.store.uri(&key);
                let bytes = point
                    .store
                    .get(&key)
                    .map_err(|e| missing_is_damage(e, "a state file listed in _metadata"))?;
                state_file::verify(&uri, file, &bytes)?;
                files.insert(file.path.clone(), (uri, bytes));
            }
        }
        point.files = files;
        point.check_native_files()?;
        Ok(point)
    }

    /// The store key of a RocksDB file of this checkpoint.
    fn native_key(&self, file: &NativeFile) -> Result<String> {
        if !file.shared {
            return Ok(format!("{}{}", self.dir, file.path));
        }
        match &self.shared {
            Some(shared) => Ok(format!("{shared}{}", file.path)),
            None => Err(Error::CorruptCheckpoint {
                path: self.location.clone(),
                reason: format!(
                    "it refers to the shared file {}, but it is not in a job's checkpoints/chk-N \
                     directory (restore a checkpoint where it lies; savepoints are relocatable)",
                    file.path
                ),
            }),
        }
    }

    /// Checks that every RocksDB file is in storage, at the size `_metadata` gives.
    fn check_native_files(&self) -> Result<()> {
        let mut listed: HashMap<String, HashMap<String, u64>> = HashMap::new();
        for file in self
            .metadata
            .operators
            .iter()
            .flat_map(|o| &o.subtasks)
            .filter_map(|s| s.rocksdb.as_ref())
            .flat_map(|n| &n.files)
        {
            let key = self.native_key(file)?;
            let dir = key.rsplit_once('/').map_or("", |(d, _)| d).to_string();
            if !listed.contains_key(&dir) {
                let sizes = self.store.sizes(&format!("{dir}/"))?;
                listed.insert(dir.clone(), sizes.into_iter().collect());
            }
            let uri = self.store.uri(&key);
            match listed.get(&dir).and_then(|sizes| sizes.get(&key)) {
                None => {
                    return Err(Error::CorruptCheckpoint {
                        path: uri,
                        reason: "RocksDB file listed in _metadata is missing".into(),
                    })
                }
                Some(&size) if size != file.size => {
                    return Err(Error::CorruptCheckpoint {
                        path: uri,
                        reason: format!(
                            "RocksDB file is {size} bytes, _metadata says {} (truncated or overwritten)",
                            file.size
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The state operator `uid`'s `subtask` owns in this checkpoint, or `None`
    /// when the checkpoint holds nothing for it. Keyed state is re-split by key
    /// group, so it restores at any parallelism; non-keyed state restores as it was
    /// at the same parallelism and as the union of all old subtasks' at another.
    /// Inline positions restore only at the same parallelism.
    pub fn state_for(
        &self,
        uid: &OperatorUid,
        subtask: Subtask,
        key_groups: KeyGroupRange,
    ) -> Result<Option<RestoredState>> {
        let Some(op) = self.metadata.operator(uid) else {
            return Ok(None);
        };
        let same_parallelism = op.parallelism == subtask.parallelism;
        let mut restored = RestoredState {
            key_groups,
            checkpoint: self.metadata.checkpoint_id,
            ..Default::default()
        };
        let mut union = UnionState {
            parallelism: op.parallelism,
            states: Vec::new(),
        };
        for st in &op.subtasks {
            if st.position.is_some() && !same_parallelism {
                return Err(Error::InvalidJob(format!(
                    "operator {uid}: its source position was taken at parallelism {} and cannot \
                     be restored at parallelism {} (this source does not split)",
                    op.parallelism, subtask.parallelism
                )));
            }
            let own = st.subtask == subtask.index;
            if own && same_parallelism {
                restored.position = st.position.clone();
            }
            if let Some(file) = &st.file {
                let (uri, bytes) = self.files.get(&file.path).ok_or_else(|| {
                    Error::Internal(format!("state file {} was not loaded", file.path))
                })?;
                if let Some(state) = state_file::operator_state(uri, file, bytes)? {
                    if same_parallelism {
                        if own {
                            restored.operator_state = Some(state);
                        }
                    } else {
                        union.states.push((st.subtask, state));
                    }
                }
                restored
                    .keyed
                    .extend(state_file::key_groups(uri, file, bytes, key_groups)?);
            }
            if let Some(native) = &st.rocksdb {
                if !st.key_groups.intersect(key_groups).is_empty() {
                    let files = native
                        .files
                        .iter()
                        .map(|f| Ok((f.clone(), self.native_key(f)?)))
                        .collect::<Result<_>>()?;
                    restored.native.push(NativeRestore {
                        key_groups: st.key_groups,
                        files,
                        store: self.store.clone(),
                        owned: self.owned,
                    });
                }
            }
        }
        if !union.states.is_empty() {
            restored.union = Some(union);
        }
        restored.keyed.sort_by_key(|(g, _)| *g);
        Ok(Some(restored))
    }
}

/// A missing object that `_metadata` refers to is damage; any other failure to
/// read it is not (storage may be down: the caller waits, it never skips).
fn missing_is_damage(e: Error, what: &str) -> Error {
    match e {
        Error::MissingObject { key } => Error::CorruptCheckpoint {
            path: key,
            reason: format!("{what} is missing"),
        },
        other => other,
    }
}

/// Loads the first of the deployment's checkpoints `candidates` (newest first)
/// that is not damaged. Each damaged one is reported to `skipped` (which warns,
/// counts and tells the status) before the next is tried; when every one is
/// damaged the result is [`Error::CorruptCheckpoint`] naming them all, and the
/// job fails rather than start from something older. A read that fails for
/// another reason ends the search with that error (the caller waits and tries again).
pub fn load_first(
    store: &Arc<dyn CheckpointStore>,
    paths: &Paths,
    candidates: &[CheckpointId],
    skipped: &mut dyn FnMut(CheckpointId, &Error),
) -> Result<RestorePoint> {
    let mut damage = Vec::new();
    for id in candidates {
        match RestorePoint::load(
            store.clone(),
            &paths.checkpoint_dir(*id),
            Some(&paths.shared()),
        ) {
            Ok(mut point) => {
                point.owned = true;
                return Ok(point);
            }
            Err(e @ Error::CorruptCheckpoint { .. }) => {
                skipped(*id, &e);
                damage.push(format!("chk-{id}: {e}"));
            }
            // Listed a moment ago: its `_metadata` was deleted or lost since.
            Err(Error::MissingObject { key }) => {
                let e = Error::CorruptCheckpoint {
                    path: key,
                    reason: "its _metadata vanished".into(),
                };
                skipped(*id, &e);
                damage.push(format!("chk-{id}: {e}"));
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::CorruptCheckpoint {
        path: store.uri(&paths.checkpoints()),
        reason: format!(
            "every retained checkpoint of deployment {} is damaged ({}); the job does not \
             start from anything older. Restore a savepoint or checkpoint explicitly with --restore PATH",
            paths.id(),
            damage.join("; ")
        ),
    })
}

/// Splits a checkpoint directory URI `{base}/checkpoints/chk-{n}` into `{base}` and
/// `checkpoints/chk-{n}/`, when it has that form.
fn in_job_dir(dir: &str) -> Option<(&str, String)> {
    let trimmed = dir.trim_end_matches('/');
    let (rest, chk) = trimmed.rsplit_once('/')?;
    let id = chk.strip_prefix("chk-")?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base = rest.strip_suffix("/checkpoints")?;
    Some((base, format!("checkpoints/{chk}/")))
}

/// The store and key prefix of a checkpoint or savepoint given by the user, and
/// the prefix of its deployment's shared files if it lies in one.
fn open_location(
    location: &str,
) -> Result<(Arc<dyn CheckpointStore>, String, Option<&'static str>)> {
    let dir = location.strip_suffix(METADATA).unwrap_or(location);
    Ok(match in_job_dir(dir) {
        Some((base, chk)) => (Arc::from(open_store(base)?), chk, Some("shared/")),
        None => (Arc::from(open_store(dir)?), String::new(), None),
    })
}

/// No `_metadata` at `location`: not a completed checkpoint or savepoint.
fn not_a_checkpoint(location: &str) -> Error {
    let dir = location.strip_suffix(METADATA).unwrap_or(location);
    Error::NoCheckpoint(format!(
        "{dir} (no {METADATA} there: not a completed checkpoint or savepoint)"
    ))
}

/// Loads the checkpoint or savepoint at `location`: its directory or its `_metadata`,
/// as a plain path, a `file://` or an `s3://` URI. Damage is an error, never skipped.
pub fn explicit(location: &str) -> Result<RestorePoint> {
    let (store, prefix, shared) = open_location(location)?;
    match RestorePoint::load(store, &prefix, shared) {
        Err(Error::MissingObject { .. }) => Err(not_a_checkpoint(location)),
        other => other,
    }
}

/// Reads only the `_metadata` of the checkpoint or savepoint at `location`.
pub fn peek(location: &str) -> Result<CheckpointMetadata> {
    let (store, prefix, _) = open_location(location)?;
    match read_metadata(store.as_ref(), &prefix) {
        Err(Error::MissingObject { .. }) => Err(not_a_checkpoint(location)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_directories_are_recognised_in_their_job_directory() {
        assert_eq!(
            in_job_dir("s3://b/p/job/checkpoints/chk-12/"),
            Some(("s3://b/p/job", "checkpoints/chk-12/".to_string()))
        );
        assert_eq!(
            in_job_dir("/tmp/x/job/checkpoints/chk-3"),
            Some(("/tmp/x/job", "checkpoints/chk-3/".to_string()))
        );
        assert_eq!(in_job_dir("/tmp/x/job/savepoints/sp-3-abc"), None);
        assert_eq!(in_job_dir("/tmp/x/chk-3"), None);
        assert_eq!(in_job_dir("/tmp/checkpoints/chk-x"), None);
    }
}
