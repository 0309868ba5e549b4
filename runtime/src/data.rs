//! Records, batches and the one message enum that moves between tasks.

use serde::{de::DeserializeOwned, Serialize};

use crate::ids::CheckpointId;

/// What a record type must be to flow through a job: sendable between threads,
/// cloneable for broadcast, and serializable so it can cross processes and sit in
/// state; shareable between threads, since a heap snapshot is read by the
/// uploader while the task reads the same state.
pub trait Data: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {}

impl<T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> Data for T {}

/// The records that move between tasks together. Hot paths work on whole batches.
pub type Batch<T> = Vec<T>;

/// What a barrier asks operators to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// A checkpoint, in whatever format the state backend prefers (incremental
    /// RocksDB files may be shared with earlier checkpoints).
    Checkpoint,
    /// A savepoint: self-contained, in the format given.
    Savepoint(SavepointFormat),
}

impl SnapshotKind {
    /// Whether this is a savepoint, of either format.
    pub fn is_savepoint(self) -> bool {
        matches!(self, SnapshotKind::Savepoint(_))
    }
}

/// How a savepoint stores RocksDB state. Both kinds are self-contained and
/// relocatable, and both restore into either backend at any parallelism.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SavepointFormat {
    /// RocksDB's own files, as checkpoints store them: files the newest
    /// completed checkpoint already uploaded are copied in storage (a hard link
    /// on a file system, CopyObject in S3) rather than uploaded again, so a
    /// savepoint costs about what changed since that checkpoint.
    #[default]
    Native,
    /// Key-group blobs of encoded entries (what heap state always writes): every
    /// entry read and written again, independent of RocksDB's file format.
    Canonical,
}

impl SavepointFormat {
    /// Parses `native` or `canonical`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "native" => Some(SavepointFormat::Native),
            "canonical" => Some(SavepointFormat::Canonical),
            _ => None,
        }
    }

    /// The name [`SavepointFormat::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            SavepointFormat::Native => "native",
            SavepointFormat::Canonical => "canonical",
        }
    }
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

/// Event time: milliseconds since the Unix epoch, as records carry it.
pub type EventTime = i64;

/// A watermark: event time on a stream has reached `.0`, so no record with an
/// event time at or before it is expected any more (a later one is late).
/// Watermarks only grow on a channel; the end of input is [`Watermark::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watermark(pub EventTime);

impl Watermark {
    /// Before any event time: what a stream starts at.
    pub const MIN: Watermark = Watermark(EventTime::MIN);
    /// After every event time: what a stream ends at.
    pub const MAX: Watermark = Watermark(EventTime::MAX);
}

/// The one message enum on every channel between tasks. Records, barriers and
/// watermarks travel in one ordered stream: a watermark never overtakes the
/// records sent before it.
#[derive(Debug)]
pub enum Message<T> {
    /// A batch of records.
    Batch(Batch<T>),
    /// A batch from another process, still in its wire encoding: the consuming
    /// task decodes it (see [`crate::net::decode_batch_into`]), so that one reader
    /// thread per connection does not decode for every task it feeds.
    Encoded(Vec<u8>),
    /// A checkpoint barrier; the sender emits nothing of the next checkpoint before it.
    Barrier(Barrier),
    /// Event time on this channel reached the watermark.
    Watermark(Watermark),
    /// The sender has no records for now and holds no one's event time back: the
    /// receiver leaves this channel out of its minimum until its next watermark.
    Idle,
    /// The sender will send nothing more on this channel.
    EndOfInput,
}

/// A record of an operator with a side output: a main record or a side one.
/// [`crate::api::Stream::split`] turns a stream of them into two streams.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tagged<M, S> {
    /// A record of the main output.
    Main(M),
    /// A record of the side output.
    Side(S),
}

/// A record of one of two inputs: how a two-input operator reads its inputs
/// as one stream (see [`crate::api::ConnectedStreams`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Either<L, R> {
    /// A record of the first input.
    Left(L),
    /// A record of the second input.
    Right(R),
}
