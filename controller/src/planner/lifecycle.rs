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

    pub(super) fn delete(&mut self) -> Action {
        let savepoint_first = self.spec.deletion.savepoint
            && self.observed.deployed
            && self.spec.upgrade_mode != UpgradeMode::Stateless;
        if savepoint_first && self.coordinator_state() == Some(JobState::Running) {
            return self.trigger(true, "delete");
        }
        Action::Finalize
    }

    pub(super) fn suspend(&mut self) -> Action {
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
                    return self.retire_stopped(Phase::Suspended);
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

    pub(super) fn upgrade(&mut self) -> Action {
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
    pub(super) fn replace(&mut self, restore: Option<String>) -> Action {
        self.status.restore_from = restore;
        self.retire_deployment();
        self.set_phase(Phase::Upgrading);
        Action::DeleteWorkloads
    }
}
