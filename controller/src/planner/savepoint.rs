//! Savepoints in the planner: triggering them, following the one in flight to
//! its end, backing off after failures, and expiring the history.

use super::*;

impl Planner<'_> {
    /// Follows the savepoint in flight to its end.
    pub(super) fn follow_savepoint(&mut self) -> Action {
        let Some(pending) = self.status.pending_savepoint.clone() else {
            return Action::Wait;
        };
        let stopped_with = self
            .observed
            .coordinator
            .as_ref()
            .filter(|c| c.state == JobState::Stopped)
            .and_then(|c| c.stopped_with.clone());
        let progress = match stopped_with {
            // The job stopped at a savepoint: for a stop request, that is its
            // result, whichever trigger the coordinator answered (a pass that read
            // a stale status may have asked twice).
            Some(path) if pending.stop => SavepointProgress::Completed(path),
            _ => self
                .observed
                .savepoint
                .clone()
                .unwrap_or(SavepointProgress::Unknown),
        };
        let started = parse_time(&pending.started).unwrap_or(self.now());
        let overdue =
            self.now().duration_since(started).as_secs_f64() > SAVEPOINT_TIMEOUT.as_secs_f64();
        match progress {
            SavepointProgress::Completed(path) => {
                self.status.pending_savepoint = None;
                self.status.savepoint_failures = 0;
                self.status.savepoint_retry_at = None;
                self.status.last_savepoint_failure = None;
                let saved = SavepointRef {
                    path: path.clone(),
                    time: rfc3339(self.now()),
                    reason: pending.reason.clone(),
                };
                self.status.savepoints.push(saved.clone());
                self.status.last_savepoint = Some(saved);
                self.note(
                    false,
                    "SavepointCompleted",
                    format!("{} savepoint {path}", pending.reason),
                );
                if !pending.stop {
                    return self.run_or_wait();
                }
                // The job stopped at the savepoint: what follows restores from it.
                self.status.restore_from = Some(path);
                self.retire_deployment();
                match pending.reason.as_str() {
                    "delete" => self.finish_deletion(),
                    "suspend" => {
                        self.set_phase(Phase::Suspended);
                        Action::DeleteWorkloads
                    }
                    _ => {
                        self.set_phase(Phase::Upgrading);
                        Action::DeleteWorkloads
                    }
                }
            }
            SavepointProgress::Failed(reason) => self.savepoint_failed(&pending, reason),
            SavepointProgress::Unknown | SavepointProgress::Pending if overdue => self
                .savepoint_failed(
                    &pending,
                    format!("no result after {} s", SAVEPOINT_TIMEOUT.as_secs()),
                ),
            SavepointProgress::Unknown if self.observed.coordinator.is_some() => {
                // The coordinator answers but does not know the request: it restarted.
                self.savepoint_failed(
                    &pending,
                    "the coordinator restarted and lost the request".into(),
                )
            }
            SavepointProgress::Pending | SavepointProgress::Unknown => {
                self.requeue = Duration::from_secs(2);
                self.set_phase(if pending.stop && pending.reason == "upgrade" {
                    Phase::Upgrading
                } else {
                    Phase::Savepointing
                });
                Action::Wait
            }
        }
    }

    pub(super) fn savepoint_failed(
        &mut self,
        pending: &PendingSavepoint,
        reason: String,
    ) -> Action {
        self.status.pending_savepoint = None;
        self.status.savepoint_failures += 1;
        let backoff = backoff(self.status.savepoint_failures);
        let retry = self.now() + jiff::SignedDuration::try_from(backoff).unwrap_or_default();
        self.status.savepoint_retry_at = Some(rfc3339(retry));
        let message = format!(
            "{} savepoint failed: {reason}; the job keeps running, retrying in {} s",
            pending.reason,
            backoff.as_secs()
        );
        self.note(true, "SavepointFailed", message.clone());
        self.status.last_savepoint_failure =
            Some(format!("{} savepoint failed: {reason}", pending.reason));
        self.degrade("SavepointFailed", message);
        self.requeue = backoff;
        self.run_or_wait()
    }

    /// After a savepoint that did not stop the job: carry on as running. The
    /// children are re-applied only if the spec is the deployed one: while an
    /// upgrade waits, applying the new spec would roll it out without its savepoint.
    pub(super) fn run_or_wait(&mut self) -> Action {
        let unchanged =
            self.status.deployed_spec_hash.as_deref() == Some(&self.spec.deployment_hash());
        if self.observed.deployed && self.spec.state == DesiredState::Running {
            self.observe_phase();
            if unchanged {
                return Action::Apply(self.launch());
            }
        }
        Action::Wait
    }

    pub(super) fn retry_blocked(&mut self) -> bool {
        let Some(at) = self
            .status
            .savepoint_retry_at
            .as_deref()
            .and_then(parse_time)
        else {
            return false;
        };
        if at > self.now() {
            self.requeue =
                Duration::from_secs_f64(at.duration_since(self.now()).as_secs_f64().max(1.0));
            if self.degraded.is_none() {
                // Keep saying why the last one failed, not only that it did.
                let failures = self.status.savepoint_failures;
                let why = self
                    .status
                    .last_savepoint_failure
                    .clone()
                    .unwrap_or_else(|| "a savepoint failed".into());
                self.degrade(
                    "SavepointFailed",
                    format!(
                        "{why} ({failures} in a row); the job keeps running, \
                         the next try is at {at}"
                    ),
                );
            }
            return true;
        }
        false
    }

    pub(super) fn trigger(&mut self, stop: bool, reason: &str) -> Action {
        match self.coordinator_state() {
            Some(JobState::Running) => {
                self.set_phase(if stop && reason == "upgrade" {
                    Phase::Upgrading
                } else {
                    Phase::Savepointing
                });
                self.requeue = Duration::from_secs(2);
                Action::TriggerSavepoint {
                    stop,
                    reason: reason.into(),
                }
            }
            state => {
                let why = match state {
                    None => "the coordinator cannot be reached".to_string(),
                    Some(s) => format!("the job is {s:?}, not running"),
                };
                self.degrade(
                    "SavepointBlocked",
                    format!("a {reason} savepoint waits: {why}"),
                );
                self.requeue = Duration::from_secs(5);
                Action::Wait
            }
        }
    }

    pub(super) fn periodic_due(&self) -> bool {
        let Some(interval) = self
            .spec
            .periodic_savepoint_interval
            .as_deref()
            .and_then(|i| humantime::parse_duration(i).ok())
        else {
            return false;
        };
        if !self.checkpointed_since_deploy() {
            return false;
        }
        let since = self
            .status
            .last_savepoint
            .as_ref()
            .and_then(|s| parse_time(&s.time))
            .or_else(|| self.status.deployed_at.as_deref().and_then(parse_time));
        since.is_some_and(|t| self.now().duration_since(t).as_secs_f64() >= interval.as_secs_f64())
    }

    /// Savepoints beyond `maxCount` or older than `maxAge`; never the newest, and
    /// never the one the deployment restores from.
    /// Deletes the savepoints the history no longer keeps, dropping them from
    /// the status: from S3 by the controller itself, whether the job runs or
    /// not; from `file://` storage (the pods' own) only through a running
    /// coordinator.
    pub(super) fn dispose_expired(&mut self) -> Option<Action> {
        let expired = self.expired_savepoints();
        let reachable = self.spec.checkpoints.storage.starts_with("s3://")
            || self.coordinator_state().is_some();
        if expired.is_empty() || !reachable {
            return None;
        }
        self.status
            .savepoints
            .retain(|s| !expired.contains(&s.path));
        Some(Action::DisposeSavepoints(expired))
    }

    fn expired_savepoints(&self) -> Vec<String> {
        let history = &self.status.savepoints;
        let keep = self
            .spec
            .savepoint_history
            .max_count
            .map_or(DEFAULT_KEEP, |n| n as usize)
            .max(1);
        let max_age = self
            .spec
            .savepoint_history
            .max_age
            .as_deref()
            .and_then(|a| humantime::parse_duration(a).ok());
        let newest = history.last().map(|s| s.path.clone());
        history
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                let too_many = history.len() - i > keep;
                let too_old = max_age.is_some_and(|age| {
                    parse_time(&s.time).is_some_and(|t| {
                        self.now().duration_since(t).as_secs_f64() > age.as_secs_f64()
                    })
                });
                (too_many || too_old)
                    && Some(&s.path) != newest.as_ref()
                    && Some(&s.path) != self.status.restore_from.as_ref()
            })
            .map(|(_, s)| s.path.clone())
            .collect()
    }
}

/// Savepoint retry backoff: 10 s doubling to 10 min.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    Duration::from_secs(10 * (1u64 << exp)).min(Duration::from_secs(600))
}
