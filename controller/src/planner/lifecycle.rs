//! The job's lifecycle in the planner: deploy, run, upgrade by mode, suspend,
//! delete, and retiring a deployment.

use super::*;

impl Planner<'_> {
    /// Removes a deployment whose job stopped at a savepoint; the next one
    /// restores from that savepoint.
    fn retire_stopped(&mut self, phase: Phase) -> Action {
        let stopped_with = self
            .observed
            .coordinator
            .as_ref()
            .and_then(|c| c.stopped_with.clone());
        if let Some(path) = stopped_with {
            self.status.restore_from = Some(path);
        }
        self.retire_deployment();
        self.set_phase(phase);
        Action::DeleteWorkloads
    }

    /// The current deployment's coordinator restarts count towards the total.
    pub(super) fn retire_deployment(&mut self) {
        self.status.restarts_before += self.status.coordinator_restarts;
        self.status.coordinator_restarts = 0;
        self.status.coordinator_instance = None;
    }

    /// Deletion: with `deletion.savepoint`, a final stop-with-savepoint first,
    /// retried with backoff while it fails, for at most `deletion.savepointTimeout`
    /// (or until the skip annotation is set); then the StreamJob goes (see
    /// [`Self::finish_deletion`]).
    pub(super) fn delete(&mut self) -> Action {
        let savepoint_first = self.spec.deletion.savepoint
            && self.observed.deployed
            && !self.observed.terminating
            && self.spec.upgrade_mode != UpgradeMode::Stateless;
        if !savepoint_first {
            return self.finish_deletion();
        }
        if self.observed.skip_final_savepoint {
            self.note(
                true,
                "FinalSavepointSkipped",
                format!("deleting without the final savepoint ({SKIP_FINAL_SAVEPOINT} is set)"),
            );
            return self.finish_deletion();
        }
        if self.coordinator_state() == Some(JobState::Stopped) {
            // Stopped at a savepoint already: nothing more to save.
            return self.finish_deletion();
        }
        let limit = self
            .spec
            .deletion
            .savepoint_timeout
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(DELETION_SAVEPOINT_TIMEOUT);
        let since = self.observed.deleting_since.unwrap_or(self.now());
        let give_up = since + jiff::SignedDuration::try_from(limit).unwrap_or_default();
        if self.now() >= give_up {
            let why = self
                .status
                .last_savepoint_failure
                .clone()
                .unwrap_or_else(|| "the job could not take it".into());
            self.note(
                true,
                "FinalSavepointSkipped",
                format!(
                    "deleting without the final savepoint after waiting {} s for it: {why}",
                    limit.as_secs()
                ),
            );
            return self.finish_deletion();
        }
        let way_out = format!(
            "the deletion goes on without it at {give_up}, or at once with the annotation \
             {SKIP_FINAL_SAVEPOINT}=true"
        );
        if self.retry_blocked() {
            if let Some((reason, message)) = self.degraded.take() {
                self.degrade(&reason, format!("{message}; {way_out}"));
            }
            return Action::Wait;
        }
        match self.trigger(true, "delete") {
            Action::Wait => {
                if let Some((reason, message)) = self.degraded.take() {
                    self.degrade(&reason, format!("{message}; {way_out}"));
                }
                Action::Wait
            }
            other => other,
        }
    }

    /// The end of a deletion: the StreamJob goes, its pods collected by their
    /// owner references; with `deletion.state: delete` the pods go first and
    /// then everything its deployments wrote, retried while storage fails
    /// (unless the keep-state annotation is set).
    pub(super) fn finish_deletion(&mut self) -> Action {
        if self.spec.deletion.state != Some(StateOnDeletion::Delete) {
            return Action::Finalize;
        }
        if self.observed.keep_state {
            self.note(
                false,
                "StateKept",
                format!("deleting the job but keeping its state in storage ({KEEP_STATE} is set)"),
            );
            return Action::Finalize;
        }
        if self.observed.deployed {
            // Nothing may write once the state is gone.
            self.requeue = Duration::from_secs(2);
            return if self.observed.terminating {
                Action::Wait
            } else {
                Action::DeleteWorkloads
            };
        }
        if let Some(why) = &self.status.state_deletion_failure {
            self.degrade(
                "StateDeletionFailed",
                format!(
                    "deleting the job's state from storage failed: {why}; retried every {} s \
                     (the annotation {KEEP_STATE}=true keeps the state and lets the deletion end)",
                    STATE_DELETION_RETRY.as_secs()
                ),
            );
        }
        self.requeue = STATE_DELETION_RETRY;
        let ids = (0..=self.status.storage_epoch)
            .map(|epoch| crate::resources::job_id(&self.observed.uid, epoch))
            .collect();
        Action::DeleteState(ids)
    }

    pub(super) fn suspend(&mut self) -> Action {
        if !self.observed.deployed {
            self.set_phase(Phase::Suspended);
            return self.dispose_expired().unwrap_or(Action::Wait);
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
                    return self.retire_stopped(Phase::Suspended);
                }
                let broken = matches!(
                    self.coordinator_state(),
                    Some(JobState::Restarting | JobState::Failed)
                );
                if broken && self.status.last_checkpoint.is_some() {
                    // A job that does not run takes no savepoint: suspend it as
                    // last-state does (as the Flink operator's fallback), keeping
                    // the restore point; resuming picks the newer of it and the
                    // deployment's latest checkpoint.
                    self.note(
                        true,
                        "SuspendFromCheckpoint",
                        "the job is not running; suspended at its latest checkpoint".into(),
                    );
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

    pub(super) fn deploy(&mut self) -> Action {
        let first = self.status.deployed_spec_hash.is_none() && self.status.restore_from.is_none();
        if first {
            self.status.restore_from = self.spec.initial_savepoint.clone();
        }
        if self.status.job_id.is_none() {
            self.status.job_id = Some(crate::resources::job_id(
                &self.observed.uid,
                self.status.storage_epoch,
            ));
        }
        self.status.deployed_max_parallelism = Some(self.spec.max_parallelism);
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

    pub(super) fn run(&mut self) -> Action {
        if self.coordinator_state() == Some(JobState::Stopped) {
            // Stopped at a savepoint we did not see complete: start again from it
            // (with the new spec, if it changed: no other savepoint can be taken).
            return self.retire_stopped(Phase::Upgrading);
        }
        let changed =
            self.status.deployed_spec_hash.as_deref() != Some(&self.spec.deployment_hash());
        let restart = self.spec.restart_nonce != self.status.observed_restart_nonce;
        if changed || restart {
            return self.upgrade();
        }
        if self.spec.savepoint_trigger_nonce != self.status.observed_savepoint_nonce {
            if self.coordinator_state() == Some(JobState::Running) {
                self.status.observed_savepoint_nonce = self.spec.savepoint_trigger_nonce;
            }
            return self.trigger(false, "manual");
        }
        if self.periodic_due() && !self.retry_blocked() {
            return self.trigger(false, "periodic");
        }
        if let Some(dispose) = self.dispose_expired() {
            return dispose;
        }
        self.observe_phase();
        Action::Apply(self.launch())
    }

    pub(super) fn upgrade(&mut self) -> Action {
        if let Some(why) = self.upgrade_refusal() {
            // Nothing is torn down: the job runs on as deployed.
            self.observe_phase();
            self.stall("UpgradeRefused", why);
            return Action::Wait;
        }
        let never_ran = self.coordinator_state().is_none() && !self.checkpointed_since_deploy();
        if never_ran && self.spec.upgrade_mode != UpgradeMode::Stateless {
            // Pods that never got going (a wrong image, a missing Secret) hold no
            // state a savepoint could take and committed nothing since they were
            // deployed: the fix replaces them, restoring what they would have.
            self.note(
                true,
                "UpgradeWithoutSavepoint",
                "no coordinator answers and no checkpoint completed since the job was \
                 deployed: nothing to save; replacing its pods"
                    .into(),
            );
            return self.replace(self.status.restore_from.clone());
        }
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
                    // The restore point stays: the coordinator takes the newer of it
                    // and the deployment's latest checkpoint, so a job restored from
                    // a savepoint that has not checkpointed since never rewinds
                    // behind that savepoint.
                    self.note(
                        true,
                        "UpgradeFromCheckpoint",
                        "the job is not running; upgrading from its latest checkpoint".into(),
                    );
                    return self.replace(self.status.restore_from.clone());
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
                self.status.job_id = Some(crate::resources::job_id(
                    &self.observed.uid,
                    self.status.storage_epoch,
                ));
                self.status.restore_from = None;
                self.retire_deployment();
                self.set_phase(Phase::Upgrading);
                Action::DeleteWorkloads
            }
        }
    }

    /// Why the changed job must not replace the running one, if it must not:
    /// it cannot be built, or it would drop state without allowNonRestoredState
    /// (a stateless upgrade keeps no state, so nothing is checked for it).
    fn upgrade_refusal(&mut self) -> Option<String> {
        if self.spec.upgrade_mode == UpgradeMode::Stateless {
            return None;
        }
        match &self.observed.upgrade_check {
            Some(UpgradeCheck::Invalid(why)) => Some(format!(
                "the changed job cannot be built, so the running one is kept: {why}"
            )),
            Some(UpgradeCheck::Restores { against, dropped }) if !dropped.is_empty() => {
                let list = dropped.join(", ");
                if self.spec.allow_non_restored_state {
                    self.note(
                        true,
                        "UpgradeDropsState",
                        format!(
                            "the changed job drops the state of {list} (allowNonRestoredState)"
                        ),
                    );
                    return None;
                }
                Some(format!(
                    "the changed job has no operator for the state of {list} in {against}; \
                     set allowNonRestoredState: true to upgrade without it, or change the job back"
                ))
            }
            _ => None,
        }
    }

    /// Replaces the workloads; the next deployment resumes from the latest
    /// checkpoint in storage (or `restore`).
    pub(super) fn replace(&mut self, restore: Option<String>) -> Action {
        self.status.restore_from = restore;
        self.retire_deployment();
        self.set_phase(Phase::Upgrading);
        Action::DeleteWorkloads
    }
}
