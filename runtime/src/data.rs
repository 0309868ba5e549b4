//! Records, batches and the one message enum that moves between tasks.

use serde::{de::DeserializeOwned, Serialize};

use crate::ids::CheckpointId;

/// What a record type must be to flow through a job: sendable between threads,
/// cloneable for broadcast, and serializable so it can cross processes and sit in state.
pub trait Data: Clone + Send + Serialize + DeserializeOwned + 'static {}

impl<T: Clone + Send + Serialize + DeserializeOwned + 'static> Data for T {}

/// The records that move between tasks together. Hot paths work on whole batches.
pub type Batch<T> = Vec<T>;

/// What a barrier asks operators to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// A checkpoint, in whatever format the state backend prefers (incremental
    /// RocksDB files may be shared with earlier checkpoints).
    Checkpoint,
    /// A savepoint: self-contained and in the canonical format every backend reads.
    Savepoint,
}

/// A checkpoint barrier: everything before it on a channel belongs to checkpoint `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// The checkpoint this barrier starts.
    pub id: CheckpointId,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// The newest checkpoint that was complete when this one was triggered. Its
    /// files are the only ones an incremental snapshot may refer to instead of
    /// uploading again: retention never deletes the newest completed checkpoint,
    /// and nothing else completes while this one is in flight.
    pub last_completed: Option<CheckpointId>,
}

impl Barrier {
    /// The barrier of checkpoint `id`, taken after `last_completed`.
    pub fn checkpoint(id: CheckpointId, last_completed: Option<CheckpointId>) -> Self {
        Barrier {
            id,
            kind: SnapshotKind::Checkpoint,
            last_completed,
        }
    }
}

/// The one message enum on every channel between tasks.
#[derive(Debug)]
pub enum Message<T> {
    /// A batch of records.
    Batch(Batch<T>),
    /// A checkpoint barrier; the sender emits nothing of the next checkpoint before it.
    Barrier(Barrier),
    /// The sender will send nothing more on this channel.
    EndOfInput,
}
