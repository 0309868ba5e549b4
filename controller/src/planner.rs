//! The lifecycle planner: from (spec, status, what is observed) to the next action.
//!
//! It is a pure function, so every decision is table-tested. The reconciler
//! observes (do the workloads exist, what does the coordinator say, how is the
//! savepoint in flight doing), calls [`plan`], carries out the one action it
//! returns and writes the status it returns. Rules that keep state safe:
//! - a stateful job's pods are removed only after a completed savepoint (or, for
//!   `last-state`, when a completed checkpoint exists to resume from);
//! - a savepoint that fails or times out leaves the job running, says why in
//!   `Degraded`, and is retried with exponential backoff;
//! - the job is `Ready` only once a checkpoint completed after it was deployed;
//! - changing only lifecycle fields (upgrade mode, nonces, savepoint settings)
//!   never redeploys; the upgrade mode in force is the new spec's.

use std::time::Duration;

use jiff::Timestamp;

use crate::crd::{
    CheckpointRef, Condition, DesiredState, PendingSavepoint, Phase, SavepointRef, StreamJobSpec,
    StreamJobStatus, UpgradeMode,
};
use crate::resources::Launch;

/// The coordinator's view of the job.
#[derive(Debug, Clone, PartialEq)]
pub struct CoordinatorView {
    /// Its state.
    pub state: JobState,
    /// Parallelism of the running job.
    pub parallelism: u32,
    /// The newest completed checkpoint.
    pub latest_checkpoint: Option<CheckpointRef>,
    /// Restarts of this deployment.
    pub restarts: u32,
    /// Why the job failed or restarts, if it does.
    pub message: String,
    /// The savepoint the job stopped with (state `Stopped`).
    pub stopped_with: Option<String>,
    /// Which coordinator process answered (its pod's uid and container restart
    /// count): a new one the controller did not start means the old one died,
    /// and with it its count of restarts.
    pub instance: String,
}

/// The coordinator's job states that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for worker slots, or starting.
    Starting,
    /// Running.
    Running,
    /// Restarting after a failure.
    Restarting,
    /// Taking a savepoint.
    Savepointing,
    /// Finished (a bounded job).
    Finished,
    /// Stopped after a stop-with-savepoint.
    Stopped,
    /// Failed for good, or cancelled.
    Failed,
}

/// How the savepoint in flight is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum SavepointProgress {
    /// Not done yet.
    Pending,
    /// Done; its directory.
    Completed(String),
    /// It failed; why.
    Failed(String),
    /// The coordinator does not know it (it restarted) or cannot be reached.
    Unknown,
}

/// What the reconciler observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Whether the coordinator Deployment and the worker StatefulSet exist.
    pub deployed: bool,
    /// The coordinator's status, when it answered.
    pub coordinator: Option<CoordinatorView>,
    /// The progress of `status.pendingSavepoint`, when there is one.
    pub savepoint: Option<SavepointProgress>,
    /// The StreamJob is being deleted.
    pub deleting: bool,
    /// Its `metadata.generation`.
    pub generation: i64,
    /// Now.
    pub now: Timestamp,
}

/// What the reconciler does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Apply every child object for this launch (creates, repairs drift, no-op otherwise).
    Apply(Launch),
    /// Ask the coordinator for a savepoint; record its id as the pending savepoint.
    TriggerSavepoint {
        /// Stop the job after it.
        stop: bool,
        /// Why (`upgrade`, `suspend`, `manual`, `periodic`, `delete`).
        reason: String,
    },
    /// Delete the coordinator Deployment and the worker StatefulSet.
    DeleteWorkloads,
    /// Delete these savepoints from storage (through the coordinator).
    DisposeSavepoints(Vec<String>),
    /// Let the StreamJob go (remove the finalizer); owner references collect the rest.
    Finalize,
    /// Nothing beyond writing the status.
    Wait,
}

/// A Kubernetes Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `Normal` or `Warning`.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Sentence.
    pub message: String,
}

/// The planner's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// What to do.
    pub action: Action,
    /// The status to write afterwards.
    pub status: StreamJobStatus,
    /// Events for transitions.
    pub notes: Vec<Note>,
    /// When to look again.
    pub requeue: Duration,
}

/// How long a savepoint may take before it counts as failed.
pub const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Savepoints kept when the spec does not say.
const DEFAULT_KEEP: usize = 5;

/// Decides the next step for a StreamJob.
pub fn plan(spec: &StreamJobSpec, status: &StreamJobStatus, observed: &Observed) -> Plan {
    let mut p = Planner {
        spec,
        observed,
        status: status.clone(),
        notes: Vec::new(),
        requeue: Duration::from_secs(10),
        degraded: None,
    };
    p.status.observed_generation = Some(observed.generation);
    p.observe_coordinator();
    let action = p.decide();
    p.finish(action)
}

struct Planner<'a> {
    spec: &'a StreamJobSpec,
    observed: &'a Observed,
    status: StreamJobStatus,
    notes: Vec<Note>,
    requeue: Duration,
    /// Why the job is degraded, if it is (reason, message).
    degraded: Option<(String, String)>,
}

fn rfc3339(t: Timestamp) -> String {
    t.to_string()
}

fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

impl Planner<'_> {
    fn now(&self) -> Timestamp {
        self.observed.now
    }

    /// Copies what the coordinator says into the status.
    fn observe_coordinator(&mut self) {
        let Some(c) = &self.observed.coordinator else {
            return;
        };
        self.status.parallelism = Some(c.parallelism);
        if let Some(chk) = &c.latest_checkpoint {
            let newer = self
                .status
                .last_checkpoint
                .as_ref()
                .is_none_or(|l| l.id != chk.id);
            if newer {
                self.status.last_checkpoint = Some(chk.clone());
            }
        }
        if self.status.coordinator_instance.as_deref() != Some(c.instance.as_str()) {
            if self.status.coordinator_instance.is_some() {
                // Replaced behind the controller's back (pod deleted, evicted,
                // crashed): that is a restart, on top of the ones it counted.
                self.status.restarts_before += self.status.coordinator_restarts + 1;
            }
            self.status.coordinator_instance = Some(c.instance.clone());
        }
        self.status.coordinator_restarts = c.restarts;
        self.status.restarts = self.status.restarts_before + c.restarts;
    }

    fn note(&mut self, warning: bool, reason: &str, message: String) {
        self.notes.push(Note {
            warning,
            reason: reason.into(),
            message,
        });
    }

    fn set_phase(&mut self, phase: Phase) {
        if self.status.phase != Some(phase) {
            self.note(false, &format!("{phase:?}"), format!("phase {phase:?}"));
            self.status.phase = Some(phase);
        }
    }

    fn degrade(&mut self, reason: &str, message: String) {
        self.degraded = Some((reason.into(), message));
    }

    /// Whether a checkpoint completed after the current deployment started.
    fn checkpointed_since_deploy(&self) -> bool {
        let (Some(chk), Some(deployed)) = (
            self.status.last_checkpoint.as_ref(),
            self.status.deployed_at.as_deref().and_then(parse_time),
        ) else {
            return false;
        };
        parse_time(&chk.time).is_some_and(|t| t >= deployed)
    }

    fn coordinator_state(&self) -> Option<JobState> {
        self.observed.coordinator.as_ref().map(|c| c.state)
    }

    fn launch(&self) -> Launch {
        Launch {
            restore: self.status.restore_from.clone(),
            epoch: self.status.storage_epoch,
        }
    }

    fn decide(&mut self) -> Action {
        if self.observed.deleting && self.status.pending_savepoint.is_none() {
            // Even an invalid spec can be deleted.
            return self.delete();
        }
        if let Err(e) = self.spec.validate() {
            self.degrade("InvalidSpec", e.to_string());
            if !self.observed.deployed {
                self.set_phase(Phase::Failed);
            }
            return Action::Wait;
        }
        if self.status.pending_savepoint.is_some() {
            return self.follow_savepoint();
        }
        match self.spec.state {
            DesiredState::Suspended => self.suspend(),
            DesiredState::Running if !self.observed.deployed => self.deploy(),
            DesiredState::Running => self.run(),
        }
    }

    /// Follows the savepoint in flight to its end.
    fn follow_savepoint(&mut self) -> Action {
        let Some(pending) = self.status.pending_savepoint.clone() else {
            return Action::Wait;
        };
        let progress = self
            .observed
            .savepoint
            .clone()
            .unwrap_or(SavepointProgress::Unknown);
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
                    "delete" => Action::Finalize,
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

    fn savepoint_failed(&mut self, pending: &PendingSavepoint, reason: String) -> Action {
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
    fn run_or_wait(&mut self) -> Action {
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

    fn retry_blocked(&mut self) -> bool {
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

    fn trigger(&mut self, stop: bool, reason: &str) -> Action {
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

    /// The current deployment's coordinator restarts count towards the total.
    fn retire_deployment(&mut self) {
        self.status.restarts_before += self.status.coordinator_restarts;
        self.status.coordinator_restarts = 0;
        self.status.coordinator_instance = None;
    }

    fn delete(&mut self) -> Action {
        let savepoint_first = self.spec.deletion.savepoint
            && self.observed.deployed
            && self.spec.upgrade_mode != UpgradeMode::Stateless;
        if savepoint_first && self.coordinator_state() == Some(JobState::Running) {
            return self.trigger(true, "delete");
        }
        Action::Finalize
    }

    fn suspend(&mut self) -> Action {
        if !self.observed.deployed {
            self.set_phase(Phase::Suspended);
            return Action::Wait;
        }
        match self.spec.upgrade_mode {
            UpgradeMode::Stateless => {
                self.retire_deployment();
                self.status.restore_from = None;
                self.set_phase(Phase::Suspended);
                Action::DeleteWorkloads
            }
            UpgradeMode::LastState => {
                if self.status.last_checkpoint.is_none() {
                    self.degrade(
                        "NoCheckpoint",
                        "suspending waits for a completed checkpoint to resume from".into(),
                    );
                    return Action::Wait;
                }
                self.retire_deployment();
                self.status.restore_from = None;
                self.set_phase(Phase::Suspended);
                Action::DeleteWorkloads
            }
            UpgradeMode::Savepoint => {
                if self.coordinator_state() == Some(JobState::Stopped) {
                    // Stopped at a savepoint already: resume from it later.
                    let stopped_with = self
                        .observed
                        .coordinator
                        .as_ref()
                        .and_then(|c| c.stopped_with.clone());
                    if let Some(path) = stopped_with {
                        self.status.restore_from = Some(path);
                    }
                    self.retire_deployment();
                    self.set_phase(Phase::Suspended);
                    return Action::DeleteWorkloads;
                }
                if self.retry_blocked() {
                    return Action::Wait;
                }
                self.trigger(true, "suspend")
            }
        }
    }

    fn deploy(&mut self) -> Action {
        let first = self.status.deployed_spec_hash.is_none() && self.status.restore_from.is_none();
        if first {
            self.status.restore_from = self.spec.initial_savepoint.clone();
        }
        self.status.deployed_spec_hash = Some(self.spec.deployment_hash());
        self.status.deployed_at = Some(rfc3339(self.now()));
        self.status.observed_restart_nonce = self.spec.restart_nonce;
        if self.status.observed_savepoint_nonce.is_none() {
            self.status.observed_savepoint_nonce = self.spec.savepoint_trigger_nonce;
        }
        self.set_phase(Phase::Deploying);
        self.requeue = Duration::from_secs(3);
        Action::Apply(self.launch())
    }

    fn run(&mut self) -> Action {
        let changed =
            self.status.deployed_spec_hash.as_deref() != Some(&self.spec.deployment_hash());
        let restart = self.spec.restart_nonce != self.status.observed_restart_nonce;
        if changed || restart {
            return self.upgrade();
        }
        if self.coordinator_state() == Some(JobState::Stopped) {
            // Stopped at a savepoint we did not see complete: start again from it.
            let stopped_with = self
                .observed
                .coordinator
                .as_ref()
                .and_then(|c| c.stopped_with.clone());
            if let Some(path) = stopped_with {
                self.status.restore_from = Some(path);
            }
            self.retire_deployment();
            self.set_phase(Phase::Upgrading);
            return Action::DeleteWorkloads;
        }
        if self.spec.savepoint_trigger_nonce != self.status.observed_savepoint_nonce {
            if self.coordinator_state() == Some(JobState::Running) {
                self.status.observed_savepoint_nonce = self.spec.savepoint_trigger_nonce;
            }
            return self.trigger(false, "manual");
        }
        if self.periodic_due() {
            return self.trigger(false, "periodic");
        }
        let expired = self.expired_savepoints();
        if !expired.is_empty() && self.coordinator_state().is_some() {
            self.status
                .savepoints
                .retain(|s| !expired.contains(&s.path));
            return Action::DisposeSavepoints(expired);
        }
        self.observe_phase();
        Action::Apply(self.launch())
    }

    fn upgrade(&mut self) -> Action {
        match self.spec.upgrade_mode {
            UpgradeMode::Savepoint => {
                if self.retry_blocked() {
                    return Action::Wait;
                }
                let broken = matches!(
                    self.coordinator_state(),
                    Some(JobState::Restarting | JobState::Failed)
                );
                if broken && self.status.last_checkpoint.is_some() {
                    // No savepoint can be taken from a job that is not running (a
                    // crash loop a new image may fix); its latest checkpoint holds.
                    self.note(
                        true,
                        "UpgradeFromCheckpoint",
                        "the job is not running; upgrading from its latest checkpoint".into(),
                    );
                    return self.replace(None);
                }
                self.trigger(true, "upgrade")
            }
            UpgradeMode::LastState => {
                if self.status.last_checkpoint.is_none() {
                    self.degrade(
                        "NoCheckpoint",
                        "the upgrade waits for a completed checkpoint to resume from".into(),
                    );
                    self.requeue = Duration::from_secs(5);
                    return Action::Wait;
                }
                self.replace(None)
            }
            UpgradeMode::Stateless => {
                self.status.storage_epoch += 1;
                self.status.restore_from = None;
                self.retire_deployment();
                self.set_phase(Phase::Upgrading);
                Action::DeleteWorkloads
            }
        }
    }

    /// Replaces the workloads; the next deployment resumes from the latest
    /// checkpoint in storage (or `restore`).
    fn replace(&mut self, restore: Option<String>) -> Action {
        self.status.restore_from = restore;
        self.retire_deployment();
        self.set_phase(Phase::Upgrading);
        Action::DeleteWorkloads
    }

    fn periodic_due(&self) -> bool {
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

    /// The phase of a deployed, unchanged job, from the coordinator's state.
    fn observe_phase(&mut self) {
        match self.coordinator_state() {
            Some(JobState::Running) if self.checkpointed_since_deploy() => {
                self.set_phase(Phase::Running)
            }
            Some(JobState::Restarting) => self.set_phase(Phase::Recovering),
            Some(JobState::Failed) => {
                let message = self
                    .observed
                    .coordinator
                    .as_ref()
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                self.degrade("JobFailed", message);
                self.set_phase(Phase::Failed);
            }
            Some(JobState::Finished) => self.set_phase(Phase::Running),
            Some(JobState::Savepointing) => self.set_phase(Phase::Savepointing),
            None => {
                if self.status.phase == Some(Phase::Running) {
                    self.degrade(
                        "CoordinatorUnreachable",
                        "the coordinator does not answer".into(),
                    );
                }
                self.requeue = Duration::from_secs(3);
            }
            _ => {
                self.set_phase(Phase::Deploying);
                self.requeue = Duration::from_secs(3);
            }
        }
    }

    fn finish(mut self, action: Action) -> Plan {
        let now = rfc3339(self.now());
        let phase = self.status.phase;
        let ready = phase == Some(Phase::Running) && self.checkpointed_since_deploy();
        let progressing = matches!(
            phase,
            Some(Phase::Deploying | Phase::Upgrading | Phase::Savepointing | Phase::Recovering)
        );
        let ready_reason = match phase {
            Some(Phase::Running) if ready => "CheckpointCompleted".to_string(),
            Some(p) => format!("{p:?}"),
            None => "Pending".to_string(),
        };
        let ready_message = if ready {
            format!(
                "running; checkpoint {} completed",
                self.status.last_checkpoint.as_ref().map_or(0, |c| c.id)
            )
        } else {
            "no checkpoint has completed since the job was deployed".to_string()
        };
        let (degraded_reason, degraded_message) = self
            .degraded
            .clone()
            .unwrap_or_else(|| ("AsExpected".into(), String::new()));
        let conditions = [
            ("Ready", ready, ready_reason, ready_message),
            (
                "Progressing",
                progressing,
                format!("{:?}", phase.unwrap_or(Phase::Deploying)),
                String::new(),
            ),
            (
                "Degraded",
                self.degraded.is_some(),
                degraded_reason,
                degraded_message,
            ),
        ];
        let old = std::mem::take(&mut self.status.conditions);
        for (type_, on, reason, message) in conditions {
            let status = if on { "True" } else { "False" }.to_string();
            let since = old
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            self.status.conditions.push(Condition {
                type_: type_.into(),
                status,
                reason,
                message,
                last_transition_time: since,
            });
        }
        Plan {
            action,
            status: self.status,
            notes: self.notes,
            requeue: self.requeue,
        }
    }
}

/// Savepoint retry backoff: 10 s doubling to 10 min.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    Duration::from_secs(10 * (1u64 << exp)).min(Duration::from_secs(600))
}
