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
    CheckpointRef, Condition, DesiredState, PendingSavepoint, Phase, SavepointRef, StateOnDeletion,
    StreamJobSpec, StreamJobStatus, UpgradeMode,
};
use crate::resources::Launch;

mod autoscale;
mod conditions;
mod lifecycle;
mod savepoint;

pub use savepoint::backoff;

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
    /// The StreamJob's UID, from which its deployments' identity is derived.
    pub uid: String,
    /// Whether the coordinator Deployment and the worker StatefulSet exist.
    pub deployed: bool,
    /// Whether they are being deleted (their pods still stopping): nothing
    /// new is started, and nothing is bumped, until they are gone.
    pub terminating: bool,
    /// The coordinator's status, when it answered.
    pub coordinator: Option<CoordinatorView>,
    /// The progress of `status.pendingSavepoint`, when there is one.
    pub savepoint: Option<SavepointProgress>,
    /// The StreamJob is being deleted.
    pub deleting: bool,
    /// Since when (its deletionTimestamp), if it is.
    pub deleting_since: Option<Timestamp>,
    /// The annotation `weir.dev/skip-final-savepoint: "true"` is set: a deletion
    /// goes on without its final savepoint.
    pub skip_final_savepoint: bool,
    /// The annotation `weir.dev/keep-state: "true"` is set: a deletion leaves
    /// the state in storage whatever `deletion.state` says.
    pub keep_state: bool,
    /// Its `metadata.generation`.
    pub generation: i64,
    /// Why a SQL job's script could not be put together (reason, message): a
    /// StreamTable it names is missing or invalid, or the SQL does not parse.
    pub unresolved: Option<(String, String)>,
    /// What the running coordinator found when it built the changed job, if it
    /// was asked (a spec change on the same image, not stateless).
    pub upgrade_check: Option<UpgradeCheck>,
    /// What keeps the deployed pods from running (reason, message): an image that
    /// does not pull, a pod that cannot be scheduled or created, a crash loop.
    pub pod_trouble: Option<(String, String)>,
    /// The running job's load over the autoscaler's metrics window, when the
    /// autoscaler is enabled and the coordinator said.
    pub load: Option<crate::autoscaler::JobLoad>,
    /// Now.
    pub now: Timestamp,
}

/// What the running coordinator says of the job a changed spec describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeCheck {
    /// It builds; `dropped` lists the operators whose state in checkpoint
    /// `against` it has no operator for.
    Restores {
        /// The checkpoint compared with (empty: none completed yet).
        against: String,
        /// Operator uids whose state it would drop.
        dropped: Vec<String>,
    },
    /// It cannot be built: why (a SQL error, an unknown pipeline).
    Invalid(String),
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
    /// Delete these savepoints from storage.
    DisposeSavepoints(Vec<String>),
    /// Delete what these deployments (job ids) wrote to storage, then let the
    /// StreamJob go; on failure, record why in `stateDeletionFailure` and retry.
    DeleteState(Vec<String>),
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
/// How long a deletion waits for its final savepoint when the spec does not say.
pub const DELETION_SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The annotation that lets a deletion go on without its final savepoint.
pub const SKIP_FINAL_SAVEPOINT: &str = "weir.dev/skip-final-savepoint";
/// The annotation that lets a deletion keep the state `deletion.state` deletes.
pub const KEEP_STATE: &str = "weir.dev/keep-state";
/// How often deleting the state is retried while storage fails.
pub const STATE_DELETION_RETRY: Duration = Duration::from_secs(10);
/// Savepoints kept when the spec does not say.
const DEFAULT_KEEP: usize = 5;

/// Decides the next step for a StreamJob. With the autoscaler on, the job is
/// deployed with the parallelism it chose ([`StreamJobSpec::autoscaled`]).
pub fn plan(spec: &StreamJobSpec, status: &StreamJobStatus, observed: &Observed) -> Plan {
    let mut status = status.clone();
    let mut notes = Vec::new();
    autoscale::follow(spec, &mut status, observed, &mut notes);
    let spec = &spec.autoscaled(&status);
    let mut p = Planner {
        spec,
        observed,
        status,
        notes,
        requeue: Duration::from_secs(10),
        degraded: None,
        stalled: None,
    };
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
    /// Why the job runs impaired, if it does (reason, message): a savepoint that
    /// fails and is retried, an unreachable coordinator.
    degraded: Option<(String, String)>,
    /// Why the spec cannot be carried out without the user's action, if it cannot
    /// (reason, message): an invalid spec, a failed job, a refused upgrade, a
    /// missing table, pods that cannot start.
    stalled: Option<(String, String)>,
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

    fn stall(&mut self, reason: &str, message: String) {
        self.stalled = Some((reason.into(), message));
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
            job_id: self.status.job_id.clone().unwrap_or_else(|| {
                crate::resources::job_id(&self.observed.uid, self.status.storage_epoch)
            }),
        }
    }

    fn decide(&mut self) -> Action {
        if self.observed.deleting && self.status.pending_savepoint.is_none() {
            // Even an invalid spec can be deleted.
            return self.delete();
        }
        if let Err(e) = self.spec.validate() {
            self.stall("InvalidSpec", e.to_string());
            if !self.observed.deployed {
                self.set_phase(Phase::Failed);
            }
            return Action::Wait;
        }
        if let Some(fixed) = self.status.deployed_max_parallelism {
            let stateless = self.spec.upgrade_mode == UpgradeMode::Stateless;
            if fixed != self.spec.max_parallelism && !stateless {
                self.stall(
                    "InvalidSpec",
                    format!(
                        "spec.maxParallelism: the job's state was deployed with {fixed} key \
                         groups, fixed for its life; set it back to {fixed} (or upgrade with \
                         upgradeMode: stateless, which starts without state)"
                    ),
                );
                return Action::Wait;
            }
        }
        if let Some((reason, message)) = &self.observed.unresolved {
            if !self.observed.deleting {
                // Nothing starts or changes without the whole script; a
                // deployed job runs on as it was deployed.
                if self.observed.deployed {
                    self.observe_phase();
                }
                self.stall(reason, message.clone());
                return Action::Wait;
            }
        }
        if self.observed.terminating {
            // The old pods are still stopping: wait for them to be gone before
            // anything else (a new deployment, another epoch, a status claim).
            self.requeue = Duration::from_secs(2);
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

    /// The phase of a deployed, unchanged job, from the coordinator's state;
    /// pods that cannot run stall it, with the reason Kubernetes gives.
    fn observe_phase(&mut self) {
        // A finished bounded job's pods may exit and restart: that stalls nothing.
        let finished = self.coordinator_state() == Some(JobState::Finished);
        if let (Some((reason, message)), false) = (&self.observed.pod_trouble, finished) {
            self.stall(reason, message.clone());
        }
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
                self.stall("JobFailed", message);
                self.set_phase(Phase::Failed);
            }
            Some(JobState::Finished) => self.set_phase(Phase::Finished),
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

    /// Whether what runs is what the spec asks for: the current deployment has
    /// the spec's hash and nonces and has checkpointed (or finished), or a
    /// suspended job's pods are gone, with no savepoint in flight.
    fn rolled_out(&self) -> bool {
        if self.status.pending_savepoint.is_some() || self.observed.deleting {
            return false;
        }
        match self.spec.state {
            DesiredState::Suspended => self.status.phase == Some(Phase::Suspended),
            DesiredState::Running => {
                self.observed.deployed
                    && self.status.deployed_spec_hash.as_deref()
                        == Some(&self.spec.deployment_hash())
                    && self.spec.restart_nonce == self.status.observed_restart_nonce
                    && self.spec.savepoint_trigger_nonce == self.status.observed_savepoint_nonce
                    && matches!(self.status.phase, Some(Phase::Running | Phase::Finished))
            }
        }
    }
}
