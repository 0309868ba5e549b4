//! The engine's error type: one enum whose variants name the failing step.

use std::path::PathBuf;

use crate::ids::{CheckpointId, TaskId};

/// Result with the engine's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building, running or restoring a job.
///
/// Variants fall into three classes (see [`Error::class`]): the user's input
/// (bad arguments, files, checkpoints they named), the outside world (storage),
/// and the engine itself. The class decides whether a restart can help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job graph or its configuration is invalid.
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// A pipeline argument or option is missing or malformed.
    #[error("{0}")]
    Usage(String),
    /// Reading or writing a local file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "reading input".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The checkpoint store refused an operation.
    #[error("checkpoint store: {action} {key}: {reason}")]
    Store {
        /// What was being done, e.g. "put".
        action: &'static str,
        /// The object key.
        key: String,
        /// Why it failed.
        reason: String,
    },
    /// An object the checkpoint store was asked for does not exist.
    #[error("checkpoint store: {key} does not exist")]
    MissingObject {
        /// The object's full location.
        key: String,
    },
    /// A create-only write found the object already there: another writer (a
    /// coordinator that was superseded, or its successor) got there first.
    #[error("checkpoint store: {key} exists already; it is never overwritten")]
    AlreadyExists {
        /// The object's full location.
        key: String,
    },
    /// A checkpoint or savepoint exists but cannot be used.
    #[error("damaged checkpoint {path}: {reason}")]
    CorruptCheckpoint {
        /// The object that is damaged (for example its `_metadata`).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// There is no completed checkpoint to restore from.
    #[error("no completed checkpoint under {0}")]
    NoCheckpoint(String),
    /// A record could not be processed.
    #[error("bad record in {operator}: {reason}")]
    BadRecord {
        /// The operator that rejected it.
        operator: String,
        /// Why.
        reason: String,
    },
    /// A sink's output directory holds committed output that the job would
    /// overwrite or write again: it stops rather than duplicate or lose records.
    #[error("output {path}: {reason}")]
    OutputConflict {
        /// The directory or file.
        path: PathBuf,
        /// What is in the way, and what to do.
        reason: String,
    },
    /// State could not be encoded or decoded.
    #[error("state of {uid}: {reason}")]
    State {
        /// The operator whose state it is.
        uid: String,
        /// What went wrong.
        reason: String,
    },
    /// A failure injected on purpose by `--inject-failures`.
    #[error("injected failure in task {0}")]
    InjectedFailure(TaskId),
    /// A task panicked.
    #[error("task {task} panicked: {message}")]
    TaskPanicked {
        /// The task.
        task: TaskId,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The job failed more often than its restart strategy allows.
    #[error(
        "job failed {restarts} times in a row without completing a checkpoint, giving up (restart limit {limit}); last failure: {last}"
    )]
    RestartLimit {
        /// Failures in a row, with no checkpoint completed between them.
        restarts: u32,
        /// The configured limit.
        limit: u32,
        /// The failure that exhausted the limit.
        last: Box<Error>,
    },
    /// More checkpoints failed in a row than tolerated: the job fails over to its
    /// latest checkpoint (as Flink's tolerable failed checkpoints).
    #[error("{failures} checkpoints failed in a row (tolerated: {tolerable}); the last: {last}")]
    CheckpointsFailing {
        /// Failures in a row.
        failures: u32,
        /// How many are tolerated.
        tolerable: u32,
        /// Why the last one failed.
        last: String,
    },
    /// A checkpoint could not be taken; the job goes on.
    #[error("checkpoint {id} declined: {reason}")]
    CheckpointDeclined {
        /// The checkpoint.
        id: CheckpointId,
        /// Why.
        reason: String,
    },
    /// A task on a worker process failed.
    #[error("task {task} failed on worker {worker}: {reason}")]
    TaskFailed {
        /// The task.
        task: TaskId,
        /// The worker it ran on.
        worker: String,
        /// What the worker reported.
        reason: String,
        /// Whether the worker classified it as a user error (not worth a restart).
        user: bool,
    },
    /// A worker process was lost (heartbeat timeout or broken connection).
    #[error("worker {worker} was lost: {reason}")]
    WorkerLost {
        /// The worker.
        worker: String,
        /// How it was noticed.
        reason: String,
    },
    /// A later coordinator of the same deployment claimed a newer epoch: this one
    /// was superseded (it was frozen, or cut off) and must neither commit nor delete.
    #[error("job {job}: this coordinator (epoch {epoch}) was superseded by epoch {successor}; it stops without writing anything more")]
    Fenced {
        /// The deployment (`job/id`).
        job: String,
        /// This coordinator's epoch.
        epoch: u64,
        /// The newest epoch in storage.
        successor: u64,
    },
    /// A Kafka broker refused or did not answer a request.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The data dictionary refused a table or a SQL statement, or its files
    /// could not be read.
    #[error(transparent)]
    Catalog(#[from] weir_catalog::Error),
    /// A SQL script cannot be planned: the message names the construct and,
    /// where the planner knows it, its line and column.
    #[error("SQL: {0}")]
    Sql(String),
    /// A channel to another task closed: the job is being torn down.
    #[error("a channel to another task closed (the job is being cancelled)")]
    ChannelClosed,
    /// A broken invariant inside the engine.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Who is to blame for an [`Error`], which decides whether retrying helps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bad input from the user: retrying cannot help.
    User,
    /// Storage or another outside system: retrying may help.
    External,
    /// A failure inside the running job: restart from the last checkpoint.
    Internal,
}

impl Error {
    /// Classifies the error; user errors are not worth a restart.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidJob(_)
            | Error::Usage(_)
            | Error::CorruptCheckpoint { .. }
            | Error::NoCheckpoint(_)
            | Error::MissingObject { .. }
            | Error::BadRecord { .. }
            | Error::OutputConflict { .. }
            | Error::TaskFailed { user: true, .. }
            | Error::RestartLimit { .. } => ErrorClass::User,
            Error::Catalog(weir_catalog::Error::Io { .. }) => ErrorClass::External,
            Error::Catalog(_) | Error::Sql(_) => ErrorClass::User,
            Error::Io { .. } | Error::Store { .. } | Error::Kafka(_) => ErrorClass::External,
            _ => ErrorClass::Internal,
        }
    }

    /// Builds an [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// An error with its chain of causes (`a: b: c`), which many libraries' top-level
/// messages leave out (tonic's "transport error", the AWS SDK's "dispatch failure").
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let cause = e.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = e.source();
    }
    text
}
