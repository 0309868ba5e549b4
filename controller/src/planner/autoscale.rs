//! The autoscaler in the planner: before the lifecycle is planned, a job
//! running as deployed has its load evaluated (see [`crate::autoscaler`]);
//! a rescale it decides changes `status.autoscaler.parallelism`, and the
//! lifecycle then rolls the new parallelism out as any upgrade.

use super::{JobState, Note, Observed};
use crate::autoscaler::evaluate;
use crate::crd::{AutoscalerStatus, DesiredState, Phase, StreamJobSpec, StreamJobStatus};

/// Starts, follows or forgets the autoscaler in `status`; a rescale it
/// decides is announced in `notes`.
pub(super) fn follow(
    spec: &StreamJobSpec,
    status: &mut StreamJobStatus,
    observed: &Observed,
    notes: &mut Vec<Note>,
) {
    let Ok(Some(settings)) = spec.autoscaler_settings() else {
        // Off, or invalid (which the lifecycle reports): the spec's parallelism.
        status.autoscaler = None;
        return;
    };
    if status
        .autoscaler
        .as_ref()
        .is_none_or(|a| a.spec_parallelism != spec.parallelism)
    {
        // Switched on, or the user set another parallelism: start from it.
        status.autoscaler = Some(AutoscalerStatus {
            parallelism: spec.parallelism.clamp(settings.min, settings.max),
            spec_parallelism: spec.parallelism,
            ..Default::default()
        });
    }
    let deployed_hash = spec.autoscaled(status).deployment_hash();
    let Some(coordinator) = &observed.coordinator else {
        return;
    };
    // Only a job that runs as deployed, with nothing in flight, is measured.
    let settled = observed.deployed
        && !observed.terminating
        && !observed.deleting
        && spec.state == DesiredState::Running
        && status.pending_savepoint.is_none()
        && status.phase == Some(Phase::Running)
        && coordinator.state == JobState::Running
        && status.deployed_spec_hash.as_deref() == Some(deployed_hash.as_str());
    let (Some(load), true) = (&observed.load, settled) else {
        return;
    };
    let deployed_at = status
        .deployed_at
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let Some(autoscaler) = status.autoscaler.as_mut() else {
        return;
    };
    let current = coordinator.parallelism;
    if let Some(rescale) = evaluate(
        &settings,
        autoscaler,
        current,
        load,
        deployed_at,
        observed.now,
    ) {
        let up = rescale.to > rescale.from;
        notes.push(Note {
            warning: false,
            reason: if up { "ScaledUp" } else { "ScaledDown" }.into(),
            message: format!(
                "autoscaler: parallelism {} -> {}: {}",
                rescale.from, rescale.to, rescale.reason
            ),
        });
    }
}
