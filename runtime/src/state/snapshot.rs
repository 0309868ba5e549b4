//! What an operator hands over at a checkpoint and gets back on restore.

use crate::error::Result;
use crate::ids::CheckpointId;
use crate::keys::{KeyGroup, KeyGroupRange};
use crate::state::rocks::{NativeRestore, NativeSnapshot};

/// An operator subtask's state at a checkpoint, as the operator produced it.
///
/// Keyed state is split by key group so that a restore at another parallelism
/// can hand each new subtask exactly its groups.
#[derive(Debug, Default)]
pub struct OperatorSnapshot {
    /// A small position (for example a source's offset) kept inline in `_metadata`.
    pub position: Option<serde_json::Value>,
    /// Non-keyed state of this subtask (for example a sink's pending files).
    pub operator_state: Option<Vec<u8>>,
    /// Keyed state, one encoded blob per non-empty key group, in group order.
    pub keyed: Vec<(KeyGroup, Vec<u8>)>,
    /// Keyed state as a local RocksDB checkpoint, which the uploader turns into
    /// shared files (incremental) or canonical key-group blobs (canonical savepoints).
    pub native: Option<NativeSnapshot>,
    /// Keyed state that the uploader encodes as key-group blobs off the task thread.
    pub deferred: Option<DeferredKeyed>,
}

/// Keyed state as canonical blobs: one per non-empty key group, in group order.
pub type KeyedBlobs = Vec<(KeyGroup, Vec<u8>)>;

/// The encoding of keyed state as key-group blobs, left for the uploader.
pub struct DeferredKeyed(Box<dyn FnOnce() -> Result<KeyedBlobs> + Send>);

impl DeferredKeyed {
    /// The encoding `encode` does when called.
    pub fn new(encode: impl FnOnce() -> Result<KeyedBlobs> + Send + 'static) -> Self {
        DeferredKeyed(Box::new(encode))
    }

    /// Encodes the state: one blob per non-empty key group, in group order.
    pub fn encode(self) -> Result<KeyedBlobs> {
        (self.0)()
    }
}

impl std::fmt::Debug for DeferredKeyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeferredKeyed")
    }
}

impl OperatorSnapshot {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.position.is_none()
            && self.operator_state.is_none()
            && self.keyed.is_empty()
            && self.native.is_none()
            && self.deferred.is_none()
    }

    /// The snapshot with its deferred keyed state encoded into `keyed` (what the
    /// uploader does off the task thread).
    pub fn encoded(mut self) -> Result<Self> {
        if let Some(deferred) = self.deferred.take() {
            self.keyed.extend(deferred.encode()?);
            self.keyed.sort_by_key(|(group, _)| *group);
        }
        Ok(self)
    }
}

/// State handed to an operator subtask when it opens after a restore.
#[derive(Debug, Default, Clone)]
pub struct RestoredState {
    /// The checkpoint or savepoint it comes from.
    pub checkpoint: CheckpointId,
    /// The inline position it snapshotted (only at the parallelism it was taken at).
    pub position: Option<serde_json::Value>,
    /// Its non-keyed state, when restored at the parallelism it was taken at.
    pub operator_state: Option<Vec<u8>>,
    /// When restored at another parallelism: the non-keyed state of every old
    /// subtask, by its index, and the old parallelism. The operator decides who
    /// takes over what (a sink commits the pending files of old subtasks `j` with
    /// `j % parallelism == index`).
    pub union: Option<UnionState>,
    /// Keyed state of exactly the key groups this subtask owns now (canonical blobs).
    pub keyed: Vec<(KeyGroup, Vec<u8>)>,
    /// Keyed state in RocksDB checkpoints of old subtasks whose key groups overlap
    /// this subtask's; only the groups this subtask owns may be taken from them.
    pub native: Vec<NativeRestore>,
    /// The key groups this subtask owns.
    pub key_groups: KeyGroupRange,
}

/// The non-keyed state of every subtask of a checkpoint taken at another parallelism.
#[derive(Debug, Default, Clone)]
pub struct UnionState {
    /// Parallelism when the checkpoint was taken.
    pub parallelism: u32,
    /// Each old subtask's non-keyed state, by index.
    pub states: Vec<(u32, Vec<u8>)>,
}
