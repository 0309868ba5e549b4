//! The job's status as the API, `/v1/status` and `weir status` report it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use weir_proto::v1;
use weir_proto::PROTOCOL_VERSION;

use crate::checkpoint::paths::Paths;
use crate::cluster::coordinator::shared::Shared;
use crate::exec::requests::JobHandle;
use crate::metrics::JobMetrics;

/// What the coordinator is doing, with the reason when something is wrong.
#[derive(Debug, Clone)]
pub struct Phase {
    /// The state.
    pub state: v1::JobState,
    /// Why, when waiting, restarting or failed.
    pub message: String,
}

/// Everything a status report is made of.
pub struct StatusBoard {
    /// The job's name and the deployment's identity.
    pub paths: Paths,
    /// Its parallelism.
    pub parallelism: u32,
    /// Slots it needs.
    pub slots_needed: u32,
    /// Its counters.
    pub metrics: Arc<JobMetrics>,
    /// The workers and the attempt.
    pub shared: Arc<Shared>,
    /// Savepoint and cancel requests to the job.
    pub handle: JobHandle,
    phase: Mutex<Phase>,
    /// The savepoint the job stopped with, once it did (empty before).
    stopped_with: Mutex<String>,
}

impl StatusBoard {
    /// A board for a job that has not started yet.
    pub fn new(
        paths: Paths,
        parallelism: u32,
        slots_needed: u32,
        metrics: Arc<JobMetrics>,
        shared: Arc<Shared>,
        handle: JobHandle,
    ) -> Self {
        StatusBoard {
            paths,
            parallelism,
            slots_needed,
            metrics,
            shared,
            handle,
            // What the deployer says first, so that a probe answered before it
            // runs reads the same and never an empty reason.
            phase: Mutex::new(Phase {
                state: v1::JobState::WaitingForSlots,
                message: format!("waiting for worker slots: 0 registered, {slots_needed} needed"),
            }),
            stopped_with: Mutex::new(String::new()),
        }
    }

    /// Records the savepoint the job stopped with.
    pub fn set_stopped(&self, savepoint: &str) {
        *self.stopped_with.lock().unwrap_or_else(|e| e.into_inner()) = savepoint.to_string();
    }

    /// Sets the phase.
    pub fn set(&self, state: v1::JobState, message: impl Into<String>) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = Phase {
            state,
            message: message.into(),
        };
    }

    /// The current phase; a running job with a savepoint pending is savepointing.
    pub fn phase(&self) -> Phase {
        let phase = self.phase.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if phase.state == v1::JobState::Running && self.handle.savepointing() {
            return Phase {
                state: v1::JobState::Savepointing,
                message: phase.message,
            };
        }
        phase
    }

    /// The status now.
    pub fn snapshot(&self) -> v1::JobStatus {
        let phase = self.phase();
        let (slots, attempt) = {
            let inner = self.shared.lock();
            (inner.slots(), inner.attempt.number)
        };
        // Beside a state that says nothing more, the runner's notice: what it
        // waits for (unreachable storage) or what it skipped (a damaged checkpoint).
        let message = match phase.message.is_empty() {
            true => self.metrics.current_notice().unwrap_or_default(),
            false => phase.message,
        };
        v1::JobStatus {
            job: self.paths.job().to_string(),
            job_id: self.paths.id().to_string(),
            damaged_checkpoints_skipped: self
                .metrics
                .damaged_checkpoints_skipped
                .load(Ordering::Relaxed),
            state: phase.state as i32,
            parallelism: self.parallelism,
            latest_checkpoint: self
                .metrics
                .latest_checkpoint()
                .map(|c| v1::CheckpointInfo {
                    id: c.id,
                    path: c.uri,
                    time_unix_ms: c.timestamp_ms,
                    duration_ms: c.duration_ms,
                    size_bytes: c.bytes,
                }),
            restarts: self.metrics.restarts.load(Ordering::Relaxed) as u32,
            message,
            slots_registered: slots,
            slots_needed: self.slots_needed,
            attempt,
            protocol_version: PROTOCOL_VERSION,
            stopped_with: self
                .stopped_with
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}
