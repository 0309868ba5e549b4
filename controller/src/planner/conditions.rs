//! The planner's conditions, as kstatus reads them, and the plan it returns.

use super::*;

impl Planner<'_> {
    /// Conditions as kstatus (Flux, Argo CD, `kubectl wait`) reads them, and
    /// `observedGeneration`, which moves to the spec's generation once it is
    /// rolled out or found impossible (Stalled): a GitOps tool sees a change as
    /// in progress until then.
    pub(super) fn finish(mut self, action: Action) -> Plan {
        let now = rfc3339(self.now());
        let phase = self.status.phase;
        let rolled_out = self.rolled_out();
        if rolled_out || self.stalled.is_some() {
            self.status.observed_generation = Some(self.observed.generation);
        }
        let ready = matches!(phase, Some(Phase::Running | Phase::Finished))
            && self.checkpointed_since_deploy();
        let ready_reason = match phase {
            Some(Phase::Running) if ready => "CheckpointCompleted".to_string(),
            Some(p) => format!("{p:?}"),
            None => "Pending".to_string(),
        };
        let ready_message = match phase {
            Some(Phase::Finished) => "the bounded job finished".to_string(),
            _ if ready => format!(
                "running; checkpoint {} completed",
                self.status.last_checkpoint.as_ref().map_or(0, |c| c.id)
            ),
            _ => "no checkpoint has completed since the job was deployed".to_string(),
        };
        let in_flight = matches!(
            phase,
            Some(Phase::Deploying | Phase::Upgrading | Phase::Savepointing | Phase::Recovering)
        ) || self.status.pending_savepoint.is_some();
        let reconciling = self.stalled.is_none() && (in_flight || !rolled_out);
        let (reconciling_reason, reconciling_message) = if !reconciling {
            ("AsExpected".to_string(), String::new())
        } else if let Some(pending) = &self.status.pending_savepoint {
            (
                "Savepointing".to_string(),
                format!("taking a {} savepoint", pending.reason),
            )
        } else if in_flight {
            (
                format!("{:?}", phase.unwrap_or(Phase::Deploying)),
                format!("rolling out generation {}", self.observed.generation),
            )
        } else {
            (
                "RolloutPending".to_string(),
                format!(
                    "generation {} is not rolled out yet",
                    self.observed.generation
                ),
            )
        };
        let (stalled_reason, stalled_message) = self
            .stalled
            .clone()
            .unwrap_or_else(|| ("AsExpected".into(), String::new()));
        let (degraded_reason, degraded_message) = self
            .degraded
            .clone()
            .unwrap_or_else(|| ("AsExpected".into(), String::new()));
        let conditions = [
            ("Ready", ready, ready_reason, ready_message),
            (
                "Reconciling",
                reconciling,
                reconciling_reason,
                reconciling_message,
            ),
            (
                "Stalled",
                self.stalled.is_some(),
                stalled_reason,
                stalled_message,
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
            let before = old.iter().find(|c| c.type_ == type_);
            let since = before
                .filter(|c| c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            let news = before.is_none_or(|c| c.status != status || c.reason != reason);
            let said = self.notes.iter().any(|n| n.reason == reason);
            if on && news && !said && matches!(type_, "Stalled" | "Degraded") {
                self.note(true, &reason, message.clone());
            }
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
