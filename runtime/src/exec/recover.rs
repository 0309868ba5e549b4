//! The job runner's recovery I/O around the pure decisions of
//! [`crate::checkpoint::recovery`]: reading what storage holds, loading the point
//! chosen, skipping verified damage loudly, and waiting out storage that cannot
//! be reached.
//!
//! Step by step, at start ([`Recovery::start`]):
//! 1. Read the deployment's own checkpoints and stop marker.
//! 2. Resolve what the run was told (`--restore PATH` to its `_metadata`;
//!    `--restore latest` to the newest resume point of any deployment of the job).
//! 3. Decide ([`recovery::start`]) and load the point: a damaged checkpoint of the
//!    deployment is skipped with a warning, a metric and a status notice; when
//!    all are damaged the job fails.
//!
//! After a failure ([`Recovery::restart`]) the same, with [`recovery::restart`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::checkpoint::paths::Paths;
use crate::checkpoint::recovery::{self, HeadPoint, Requested, Restart, Start, StopMarker};
use crate::checkpoint::restore::{self, load_first, RestorePoint};
use crate::checkpoint::runs;
use crate::checkpoint::store::CheckpointStore;
use crate::error::{Error, ErrorClass, Result};
use crate::exec::runner::RestoreFrom;
use crate::ids::CheckpointId;
use crate::metrics::JobMetrics;

/// Where a run starts.
#[derive(Debug, Default)]
pub struct StartPoint {
    /// The checkpoint or savepoint to restore (none: a fresh start).
    pub point: Option<Arc<RestorePoint>>,
    /// It is the savepoint the deployment was stopped with: the stop marker goes
    /// once a checkpoint completes after the restore (not before: a coordinator
    /// restarted in between must still not resume from an older checkpoint).
    pub clears_marker: bool,
    /// The deployment was stopped with this savepoint and is not told to start
    /// from it: it does not start.
    pub held: Option<String>,
}

/// Recovery for one deployment.
pub struct Recovery<'a> {
    /// Checkpoint storage.
    pub store: &'a Arc<dyn CheckpointStore>,
    /// The deployment's keys.
    pub paths: &'a Paths,
    /// Where skipped damage and waits are reported.
    pub metrics: &'a JobMetrics,
}

impl Recovery<'_> {
    /// Where the run starts, told `restore`.
    pub fn start(&self, restore: &RestoreFrom) -> Result<StartPoint> {
        let own = runs::listing(self.store.as_ref(), self.paths)?;
        let marker = runs::read_marker(self.store.as_ref(), self.paths)?;
        let (requested, loaded) = self.resolve(restore)?;
        let decision = recovery::start(&own, marker.as_ref(), requested.as_ref());
        Ok(match decision {
            Start::Fresh => StartPoint::default(),
            Start::Held(savepoint) => StartPoint {
                held: Some(savepoint),
                ..StartPoint::default()
            },
            Start::Own(candidates) => StartPoint {
                point: Some(Arc::new(self.own(&candidates)?)),
                ..StartPoint::default()
            },
            Start::Requested => {
                let point = match (loaded, &requested) {
                    (Some(point), _) => point,
                    (None, Some(r)) => restore::explicit(&r.location)?,
                    (None, None) => {
                        return Err(Error::Internal("a requested start without a point".into()))
                    }
                };
                StartPoint {
                    point: Some(Arc::new(point)),
                    clears_marker: marker.is_some(),
                    held: None,
                }
            }
        })
    }

    /// What the run was told to start from, with the point itself when finding
    /// it meant loading it already.
    fn resolve(&self, restore: &RestoreFrom) -> Result<(Option<Requested>, Option<RestorePoint>)> {
        match restore {
            RestoreFrom::Nothing => Ok((None, None)),
            RestoreFrom::Path(location) => {
                let meta = restore::peek(location)?;
                Ok((
                    Some(Requested {
                        location: location.clone(),
                        checkpoint_id: meta.checkpoint_id,
                    }),
                    None,
                ))
            }
            RestoreFrom::Latest => {
                let heads = runs::heads(self.store.as_ref(), self.paths.job())?;
                let Some(head) = recovery::latest(&heads) else {
                    return Err(Error::NoCheckpoint(
                        self.store.uri(&Paths::runs(self.paths.job())),
                    ));
                };
                tracing::info!(deployment = %head.run, "restoring the latest point of the job");
                match &head.point {
                    HeadPoint::Savepoint(path) => self.resolve(&RestoreFrom::Path(path.clone())),
                    HeadPoint::Checkpoints(candidates) => {
                        let paths = Paths::new(self.paths.job(), &head.run);
                        let mut point = Recovery {
                            paths: &paths,
                            ..*self
                        }
                        .own(candidates)?;
                        point.owned = &head.run == self.paths.id();
                        let requested = Requested {
                            location: point.location.clone(),
                            checkpoint_id: point.metadata.checkpoint_id,
                        };
                        Ok((Some(requested), Some(point)))
                    }
                }
            }
        }
    }

    /// Where the run restarts after a failure, having started from `initial`.
    pub fn restart(
        &self,
        initial: Option<&Arc<RestorePoint>>,
    ) -> Result<Option<Arc<RestorePoint>>> {
        let own = runs::listing(self.store.as_ref(), self.paths)?;
        Ok(
            match recovery::restart(&own, initial.map(|p| p.metadata.checkpoint_id)) {
                Restart::Fresh => None,
                Restart::Initial => initial.cloned(),
                Restart::Own(candidates) => Some(Arc::new(self.own(&candidates)?)),
            },
        )
    }

    /// Loads the first undamaged of the deployment's `candidates`, loudly.
    fn own(&self, candidates: &[CheckpointId]) -> Result<RestorePoint> {
        load_first(self.store, self.paths, candidates, &mut |id, error| {
            self.metrics
                .damaged_checkpoints_skipped
                .fetch_add(1, Ordering::Relaxed);
            self.metrics.notice(format!(
                "skipped damaged checkpoint {id} of deployment {}: {error}",
                self.paths.id()
            ));
            tracing::warn!(checkpoint = id.0, deployment = %self.paths.id(), %error, "skipping damaged checkpoint");
        })
    }

    /// Writes the stop marker of a stop-with-savepoint.
    pub fn stopped(&self, marker: &StopMarker) -> Result<()> {
        runs::write_marker(self.store.as_ref(), self.paths, marker)
    }
}

/// Runs `step` until it succeeds or fails with something other than storage
/// that cannot be reached; unreachable storage is waited for with backoff up to
/// `max_backoff` (reported in the log and the status), for at most `limit` (none:
/// as long as it takes) and until `canceled` says to stop.
pub fn wait_for_storage<T>(
    what: &str,
    limit: Option<Duration>,
    max_backoff: Duration,
    metrics: &JobMetrics,
    canceled: &dyn Fn() -> bool,
    mut step: impl FnMut() -> Result<T>,
) -> Result<T> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100).min(max_backoff);
    loop {
        match step() {
            Err(e)
                if e.class() == ErrorClass::External
                    && !canceled()
                    && limit.is_none_or(|l| started.elapsed() + backoff < l) =>
            {
                metrics.notice(format!("{what}: waiting for checkpoint storage: {e}"));
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "{what}: waiting for checkpoint storage, which cannot be reached");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(max_backoff);
            }
            Err(e) if e.class() == ErrorClass::External => {
                tracing::error!(error = %e, waited_s = started.elapsed().as_secs(), "{what}: checkpoint storage is still unreachable; giving up");
                return Err(e);
            }
            other => {
                if other.is_ok() {
                    metrics.clear_notice_prefix(what);
                }
                return other;
            }
        }
    }
}
