//! What an operator hands over at a checkpoint and gets back on restore.

use crate::keys::KeyGroup;

/// An operator subtask's state at a checkpoint, as the operator produced it.
///
/// Keyed state is split by key group so that a restore at another parallelism
/// can hand each new subtask exactly its groups.
#[derive(Debug, Default, Clone)]
pub struct OperatorSnapshot {
    /// A small position (for example a source's offset) kept inline in `_metadata`.
    pub position: Option<serde_json::Value>,
    /// Non-keyed state of this subtask (for example a sink's pending files).
    pub operator_state: Option<Vec<u8>>,
    /// Keyed state, one encoded blob per non-empty key group, in group order.
    pub keyed: Vec<(KeyGroup, Vec<u8>)>,
}

impl OperatorSnapshot {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.position.is_none() && self.operator_state.is_none() && self.keyed.is_empty()
    }
}

/// State handed to an operator subtask when it opens after a restore.
#[derive(Debug, Default, Clone)]
pub struct RestoredState {
    /// The inline position it snapshotted.
    pub position: Option<serde_json::Value>,
    /// Its non-keyed state.
    pub operator_state: Option<Vec<u8>>,
    /// Keyed state of exactly the key groups this subtask owns now.
    pub keyed: Vec<(KeyGroup, Vec<u8>)>,
}
