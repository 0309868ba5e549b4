//! Counters the runner updates per batch and the progress line and summaries read.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::ids::TaskId;

/// Records in and out of one operator subtask, updated once per batch.
#[derive(Debug)]
pub struct OperatorMetrics {
    /// Records delivered to the operator.
    pub records_in: AtomicU64,
    /// Records the operator emitted.
    pub records_out: AtomicU64,
    /// The last watermark that reached it (ms of event time; `i64::MIN`: none yet).
    pub watermark: AtomicI64,
    /// Bytes a source read from outside (keys and values of Kafka records).
    pub bytes_read: AtomicU64,
    /// Records a source could not decode (failed on, or sent to a dead-letter topic).
    pub bad_records: AtomicU64,
    /// How far each split of a source is behind its end (a Kafka partition's
    /// records not read yet), by split name; replaced as a whole now and then.
    pub split_lags: Mutex<Vec<(String, i64)>>,
    /// Nanoseconds the operator's last snapshot held up its task: the
    /// synchronous part of a checkpoint, barrier in to barrier out.
    pub snapshot_sync_ns: AtomicU64,
    /// The most [`OperatorMetrics::snapshot_sync_ns`] has been.
    pub snapshot_sync_max_ns: AtomicU64,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        OperatorMetrics {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            bytes_read: AtomicU64::new(0),
            bad_records: AtomicU64::new(0),
            split_lags: Mutex::new(Vec::new()),
            snapshot_sync_ns: AtomicU64::new(0),
            snapshot_sync_max_ns: AtomicU64::new(0),
        }
    }
}

/// Time one task spent waiting, in nanoseconds; busy is the rest of the time
/// since it started.
#[derive(Debug)]
pub struct TaskMetrics {
    /// The task.
    pub task: TaskId,
    /// The attempt it belongs to.
    pub attempt: u64,
    /// When it was deployed.
    pub started: Instant,
    /// Waiting for input (or, for a source, for its next records to be due).
    pub idle_ns: AtomicU64,
    /// Blocked on a full output channel (backpressure).
    pub backpressured_ns: AtomicU64,
    /// Holding channels back while aligning barriers.
    pub alignment_ns: AtomicU64,
}

impl Default for TaskMetrics {
    /// Counters of task 0 of chain 0 of no attempt, starting now.
    fn default() -> Self {
        TaskMetrics::new(
            TaskId {
                chain: 0,
                subtask: 0,
            },
            0,
        )
    }
}

impl TaskMetrics {
    /// Counters of task `task` of attempt `attempt`, starting now.
    pub fn new(task: TaskId, attempt: u64) -> Self {
        TaskMetrics {
            task,
            attempt,
            started: Instant::now(),
            idle_ns: AtomicU64::new(0),
            backpressured_ns: AtomicU64::new(0),
            alignment_ns: AtomicU64::new(0),
        }
    }
}

impl OperatorMetrics {
    /// Replaces the lags of the splits.
    pub fn set_split_lags(&self, lags: Vec<(String, i64)>) {
        *self.split_lags.lock().unwrap_or_else(|e| e.into_inner()) = lags;
    }

    /// A copy of the lags of the splits.
    pub fn split_lags(&self) -> Vec<(String, i64)> {
        self.split_lags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Adds `n` to a relaxed counter.
#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// One operator subtask's counters, with its names for reporting.
#[derive(Debug, Clone)]
pub struct OperatorEntry {
    /// Operator uid.
    pub uid: String,
    /// Subtask index.
    pub subtask: u32,
    /// Whether the operator is a source.
    pub is_source: bool,
    /// The counters.
    pub metrics: Arc<OperatorMetrics>,
}

/// The latest completed checkpoint, for status reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// Its id.
    pub id: u64,
    /// Its directory.
    pub uri: String,
    /// When it was triggered, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Trigger to completion, in ms.
    pub duration_ms: u64,
    /// State size in bytes.
    pub bytes: u64,
}

/// All counters of a job, kept across restarts so totals keep growing.
#[derive(Debug, Default)]
pub struct JobMetrics {
    operators: Mutex<Vec<OperatorEntry>>,
    tasks: Mutex<Vec<Arc<TaskMetrics>>>,
    /// Checkpoints completed.
    pub checkpoints_completed: AtomicU64,
    /// Checkpoints declined or timed out.
    pub checkpoints_failed: AtomicU64,
    /// Duration of the last completed checkpoint, in milliseconds.
    pub last_checkpoint_ms: AtomicU64,
    /// Size of the last completed checkpoint's state, in bytes.
    pub last_checkpoint_bytes: AtomicU64,
    /// Restarts of the job after failures.
    pub restarts: AtomicU64,
    /// How long the last deployment took to start its tasks, restoring their
    /// state included, in milliseconds.
    pub last_deploy_ms: AtomicU64,
    /// Deployments started so far (the first, and one per restart).
    pub deployments: AtomicU64,
    /// How long reading the checkpoint to start from took (its `_metadata` and
    /// state files; RocksDB files are read by the subtasks as they deploy), in ms.
    pub restore_load_ms: AtomicU64,
    /// The latest completed checkpoint.
    pub latest: Mutex<Option<CheckpointSummary>>,
    /// Damaged checkpoints passed over on the way to an older one.
    pub damaged_checkpoints_skipped: AtomicU64,
    /// Checkpoints declined or timed out in a row (reset when one completes).
    pub checkpoints_failed_in_a_row: AtomicU64,
    /// What the job is waiting for, or what it had to skip, for the status.
    notice: Mutex<Option<String>>,
}

impl JobMetrics {
    /// Returns the counters of operator `uid`'s subtask, creating them on first use.
    pub fn operator(&self, uid: &str, subtask: u32, is_source: bool) -> Arc<OperatorMetrics> {
        let mut ops = self.operators.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = ops.iter().find(|e| e.uid == uid && e.subtask == subtask) {
            return e.metrics.clone();
        }
        let metrics = Arc::new(OperatorMetrics::default());
        ops.push(OperatorEntry {
            uid: uid.to_string(),
            subtask,
            is_source,
            metrics: metrics.clone(),
        });
        metrics
    }

    /// Registers the counters of task `task` of attempt `attempt`.
    pub fn task(&self, task: TaskId, attempt: u64) -> Arc<TaskMetrics> {
        let t = Arc::new(TaskMetrics::new(task, attempt));
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(t.clone());
        t
    }

    /// A copy of every operator entry.
    pub fn operators(&self) -> Vec<OperatorEntry> {
        self.operators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records emitted by all sources so far (including records replayed after restores).
    pub fn source_records(&self) -> u64 {
        self.operators()
            .iter()
            .filter(|e| e.is_source)
            .map(|e| e.metrics.records_out.load(Ordering::Relaxed))
            .sum()
    }

    /// The latest completed checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Option<CheckpointSummary> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records a completed checkpoint.
    pub fn checkpoint_completed(&self, summary: CheckpointSummary) {
        self.checkpoints_completed.fetch_add(1, Ordering::Relaxed);
        self.last_checkpoint_ms
            .store(summary.duration_ms, Ordering::Relaxed);
        self.last_checkpoint_bytes
            .store(summary.bytes, Ordering::Relaxed);
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(summary);
    }

    /// Sets what the status reports beside the job's state.
    pub fn notice(&self, text: String) {
        *self.notice.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    }

    /// Clears the notice if it starts with `prefix` (the wait it reported is over).
    pub fn clear_notice_prefix(&self, prefix: &str) {
        let mut notice = self.notice.lock().unwrap_or_else(|e| e.into_inner());
        if notice.as_deref().is_some_and(|n| n.starts_with(prefix)) {
            *notice = None;
        }
    }

    /// What the status reports beside the job's state, if anything.
    pub fn current_notice(&self) -> Option<String> {
        self.notice
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The counters of the tasks of the newest attempt.
    pub fn current_tasks(&self) -> Vec<Arc<TaskMetrics>> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let newest = tasks.iter().map(|t| t.attempt).max();
        tasks
            .iter()
            .filter(|t| Some(t.attempt) == newest)
            .cloned()
            .collect()
    }

    /// Total backpressured and alignment time over all tasks, in nanoseconds.
    pub fn wait_totals(&self) -> (u64, u64) {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.iter().fold((0, 0), |(b, a), t| {
            (
                b + t.backpressured_ns.load(Ordering::Relaxed),
                a + t.alignment_ns.load(Ordering::Relaxed),
            )
        })
    }
}
