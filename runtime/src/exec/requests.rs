//! Requests to a running job from outside it (the coordinator API, `weir run
//! --stop-with-savepoint-after`): savepoints and cancel, and the progress of every
//! savepoint asked for.
//!
//! A [`JobHandle`] is the caller's side: it files a request and returns at once
//! with a savepoint id to poll. [`JobRequests`] is the job runner's side: it
//! receives the requests between task events and records how each savepoint ended.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::data::SavepointFormat;
use crate::ids::CheckpointId;
use crate::keys::mix;

/// A savepoint asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavepointRequest {
    /// The id the caller polls with.
    pub handle: String,
    /// Directory URI to write it under; `None`: `{checkpoint base}/{job}/savepoints/`.
    pub target: Option<String>,
    /// Stop the job once it is complete.
    pub stop: bool,
    /// How RocksDB state is written.
    pub format: SavepointFormat,
}

/// What the job is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRequest {
    /// Take a savepoint.
    Savepoint(SavepointRequest),
    /// Stop every task now, without a savepoint.
    Cancel,
}

/// How far a savepoint has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavepointProgress {
    /// Asked for or being taken.
    Pending,
    /// Written; `path` is the directory holding its `_metadata`.
    Completed {
        /// The savepoint's directory.
        path: String,
        /// The checkpoint id it was taken as.
        checkpoint: CheckpointId,
    },
    /// It could not be taken, and why.
    Failed(String),
}

#[derive(Debug, Default)]
struct Progress {
    savepoints: Mutex<HashMap<String, SavepointProgress>>,
    canceled: AtomicBool,
}

impl Progress {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, SavepointProgress>> {
        self.savepoints.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The caller's side: files requests with a running job and reads their progress.
#[derive(Debug, Clone)]
pub struct JobHandle {
    requests: Sender<JobRequest>,
    progress: Arc<Progress>,
    next: Arc<AtomicU64>,
}

/// The job runner's side of the requests.
#[derive(Debug)]
pub struct JobRequests {
    /// Requests in the order they were made.
    pub receiver: Receiver<JobRequest>,
    progress: Arc<Progress>,
}

/// A connected pair of handle and requests.
pub fn job_channel() -> (JobHandle, JobRequests) {
    let (requests, receiver) = unbounded();
    let progress = Arc::new(Progress::default());
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (
        JobHandle {
            requests,
            progress: progress.clone(),
            next: Arc::new(AtomicU64::new(mix(seed ^ u64::from(std::process::id())))),
        },
        JobRequests { receiver, progress },
    )
}

impl JobHandle {
    /// Asks for a savepoint; returns the id to poll [`JobHandle::savepoint`] with.
    /// Ids are random per process, so a restarted coordinator never reuses one.
    pub fn trigger_savepoint(
        &self,
        target: Option<String>,
        stop: bool,
        format: SavepointFormat,
    ) -> String {
        let handle = format!("{:016x}", mix(self.next.fetch_add(1, Ordering::Relaxed)));
        self.progress
            .lock()
            .insert(handle.clone(), SavepointProgress::Pending);
        let request = SavepointRequest {
            handle: handle.clone(),
            target,
            stop,
            format,
        };
        if self.requests.send(JobRequest::Savepoint(request)).is_err() {
            self.progress.lock().insert(
                handle.clone(),
                SavepointProgress::Failed("the job is no longer running".into()),
            );
        }
        handle
    }

    /// The progress of savepoint `handle`, or `None` if no such savepoint was asked for.
    pub fn savepoint(&self, handle: &str) -> Option<SavepointProgress> {
        self.progress.lock().get(handle).cloned()
    }

    /// Whether a savepoint is pending.
    pub fn savepointing(&self) -> bool {
        self.progress
            .lock()
            .values()
            .any(|p| *p == SavepointProgress::Pending)
    }

    /// Asks the job to stop now, without a savepoint.
    pub fn cancel(&self) {
        self.progress.canceled.store(true, Ordering::Relaxed);
        let _ = self.requests.send(JobRequest::Cancel);
    }

    /// Whether the job was asked to cancel.
    pub fn is_canceled(&self) -> bool {
        self.progress.canceled.load(Ordering::Relaxed)
    }
}

impl JobRequests {
    /// Records how savepoint `handle` ended.
    pub fn resolve(&self, handle: &str, progress: SavepointProgress) {
        match &progress {
            SavepointProgress::Completed { path, .. } => {
                tracing::info!(savepoint = handle, %path, "savepoint complete");
            }
            SavepointProgress::Failed(reason) => {
                tracing::warn!(savepoint = handle, %reason, "savepoint failed");
            }
            SavepointProgress::Pending => {}
        }
        self.progress.lock().insert(handle.to_string(), progress);
    }

    /// Fails every savepoint asked for and not yet taken, saying `why` (the job
    /// is between attempts: restarting, or waiting for storage): nothing would
    /// take them until it runs again, and a caller must not wait on them that long.
    pub fn fail_queued_savepoints(&self, why: &str) {
        for request in self.receiver.try_iter() {
            if let JobRequest::Savepoint(r) = request {
                self.resolve(&r.handle, SavepointProgress::Failed(why.to_string()));
            }
        }
    }

    /// Whether the job was asked to cancel (also between attempts, when no one reads requests).
    pub fn is_canceled(&self) -> bool {
        self.progress.canceled.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_savepoint_request_is_pending_until_resolved() {
        let (handle, requests) = job_channel();
        let id = handle.trigger_savepoint(Some("file:///sp".into()), true, SavepointFormat::Native);
        assert_eq!(handle.savepoint(&id), Some(SavepointProgress::Pending));
        assert!(handle.savepointing());
        let Ok(JobRequest::Savepoint(request)) = requests.receiver.try_recv() else {
            panic!("the request should be queued");
        };
        assert_eq!((request.handle.as_str(), request.stop), (id.as_str(), true));
        requests.resolve(&id, SavepointProgress::Failed("no".into()));
        assert_eq!(
            handle.savepoint(&id),
            Some(SavepointProgress::Failed("no".into()))
        );
        assert!(!handle.savepointing());
        assert_eq!(handle.savepoint("unknown"), None);
    }

    #[test]
    fn savepoints_asked_for_between_attempts_fail_at_once_and_cancel_still_counts() {
        let (handle, requests) = job_channel();
        let id = handle.trigger_savepoint(None, true, SavepointFormat::Native);
        handle.cancel();
        requests.fail_queued_savepoints("the job is restarting");
        assert_eq!(
            handle.savepoint(&id),
            Some(SavepointProgress::Failed("the job is restarting".into()))
        );
        assert!(requests.is_canceled());
    }

    #[test]
    fn ids_differ_and_cancel_is_seen_without_reading_requests() {
        let (handle, requests) = job_channel();
        let a = handle.trigger_savepoint(None, false, SavepointFormat::Native);
        let b = handle.trigger_savepoint(None, false, SavepointFormat::Native);
        assert_ne!(a, b);
        assert!(!requests.is_canceled());
        handle.cancel();
        assert!(requests.is_canceled());
    }
}
