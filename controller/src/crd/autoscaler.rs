//! `spec.autoscaler` and `status.autoscaler`: the parallelism the controller
//! picks from the job's load, within bounds, and why it picked it.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::parse_duration;
use super::{duration_rule, Invalid, StreamJobSpec, StreamJobStatus};

/// Busy time aimed at when the spec does not say, percent.
pub const DEFAULT_TARGET_UTILIZATION: u32 = 70;
/// The load is averaged over this long when the spec does not say.
pub const DEFAULT_METRICS_WINDOW: Duration = Duration::from_secs(60);
/// A scale-down waits this long when the spec does not say.
pub const DEFAULT_STABILIZATION_WINDOW: Duration = Duration::from_secs(300);
/// No decision this long after a deployment when the spec does not say.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(120);
/// A backlog is to be worked off within this long when the spec does not say.
pub const DEFAULT_CATCH_UP: Duration = Duration::from_secs(300);

/// The autoscaler: off unless `enabled`. It reads each operator's busy and
/// backpressured time and its sources' backlog (Kafka lag) from the job,
/// picks the parallelism that keeps every operator's busy time under the
/// target and the backlog shrinking, and rescales through the upgrade mode
/// (a savepoint, or the latest checkpoint for `last-state`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.minParallelism) || !has(self.maxParallelism) || self.minParallelism <= self.maxParallelism",
        "message": "autoscaler.minParallelism must be at most autoscaler.maxParallelism",
        "fieldPath": ".minParallelism",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct AutoscalerSpec {
    /// Whether the controller picks the parallelism (`spec.parallelism` is then
    /// where it starts).
    #[serde(default)]
    pub enabled: bool,
    /// The least parallelism it picks (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_parallelism: Option<u32>,
    /// The most parallelism it picks (default `maxParallelism`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_parallelism: Option<u32>,
    /// The share of its time each operator subtask may be busy, in percent
    /// (default 70).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_utilization: Option<u32>,
    /// How long the load is averaged over (default `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("x-kubernetes-validations" = [duration_rule()]))]
    pub metrics_window: Option<String>,
    /// A scale-down happens only once the load has asked for less for this
    /// long, to the most it asked for meanwhile (default `5m`); a scale-up
    /// does not wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("x-kubernetes-validations" = [duration_rule()]))]
    pub stabilization_window: Option<String>,
    /// No decision for this long after a deployment, a rescale included
    /// (default `2m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("x-kubernetes-validations" = [duration_rule()]))]
    pub cooldown: Option<String>,
    /// How soon a backlog at the sources should be worked off (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("x-kubernetes-validations" = [duration_rule()]))]
    pub catch_up: Option<String>,
}

/// The autoscaler's settings with the defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoscalerSettings {
    /// Least parallelism.
    pub min: u32,
    /// Most parallelism.
    pub max: u32,
    /// Busy share aimed at (0 to 1].
    pub target: f64,
    /// Averaging window of the load.
    pub metrics_window: Duration,
    /// How long a scale-down waits.
    pub stabilization_window: Duration,
    /// No decision this long after a deployment.
    pub cooldown: Duration,
    /// How soon a backlog should be gone.
    pub catch_up: Duration,
}

impl StreamJobSpec {
    /// The autoscaler's settings, when it is enabled.
    pub fn autoscaler_settings(&self) -> Result<Option<AutoscalerSettings>, Invalid> {
        let Some(a) = self.autoscaler.as_ref().filter(|a| a.enabled) else {
            return Ok(None);
        };
        let duration = |field: &str, text: &Option<String>, default: Duration| match text {
            Some(t) => parse_duration(&format!("autoscaler.{field}"), t),
            None => Ok(default),
        };
        let settings = AutoscalerSettings {
            min: a.min_parallelism.unwrap_or(1),
            max: a.max_parallelism.unwrap_or(self.max_parallelism),
            target: f64::from(
                a.target_utilization
                    .unwrap_or(DEFAULT_TARGET_UTILIZATION)
                    .clamp(1, 100),
            ) / 100.0,
            metrics_window: duration("metricsWindow", &a.metrics_window, DEFAULT_METRICS_WINDOW)?,
            stabilization_window: duration(
                "stabilizationWindow",
                &a.stabilization_window,
                DEFAULT_STABILIZATION_WINDOW,
            )?,
            cooldown: duration("cooldown", &a.cooldown, DEFAULT_COOLDOWN)?,
            catch_up: duration("catchUp", &a.catch_up, DEFAULT_CATCH_UP)?,
        };
        let invalid = |field: &str, message: String| Invalid {
            field: format!("autoscaler.{field}"),
            message,
        };
        if settings.min == 0 || settings.min > settings.max {
            return Err(invalid(
                "minParallelism",
                format!(
                    "{} must be at least 1 and at most maxParallelism {}",
                    settings.min, settings.max
                ),
            ));
        }
        if settings.max > self.max_parallelism {
            return Err(invalid(
                "maxParallelism",
                format!(
                    "{} is more than the job's maxParallelism {} (its key groups)",
                    settings.max, self.max_parallelism
                ),
            ));
        }
        if let Some(replicas) = self.workers.replicas {
            let slots = replicas * self.workers.slots.unwrap_or(1);
            if slots < settings.max {
                return Err(invalid(
                    "maxParallelism",
                    format!(
                        "{} needs as many slots, and workers.replicas times workers.slots \
                         is {slots}; leave workers.replicas out to follow the parallelism",
                        settings.max
                    ),
                ));
            }
        }
        Ok(Some(settings))
    }

    /// This spec with the parallelism the autoscaler picked (when it is
    /// enabled and picked one): what is deployed.
    pub fn autoscaled(&self, status: &StreamJobStatus) -> StreamJobSpec {
        let mut spec = self.clone();
        if let (Ok(Some(settings)), Some(a)) = (self.autoscaler_settings(), &status.autoscaler) {
            if a.spec_parallelism == self.parallelism {
                spec.parallelism = a.parallelism.clamp(settings.min, settings.max);
            }
        }
        spec
    }
}

/// What the autoscaler chose and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerStatus {
    /// The parallelism it chose: the job is deployed with it.
    pub parallelism: u32,
    /// `spec.parallelism` when it chose: a user's change of that field starts
    /// it over from the new value.
    pub spec_parallelism: u32,
    /// Its last look at the load (RFC 3339 time and what it saw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluation: Option<AutoscalerEvaluation>,
    /// What the load asked for within the stabilization window, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<Recommendation>,
    /// Its last decisions, oldest first (at most ten).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<ScalingDecision>,
}

/// One look at the load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerEvaluation {
    /// When (RFC 3339).
    pub time: String,
    /// What it saw and what that asks for.
    pub message: String,
}

/// The parallelism the load asked for at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// When (RFC 3339).
    pub time: String,
    /// The parallelism.
    pub parallelism: u32,
}

/// A rescale the autoscaler decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingDecision {
    /// When (RFC 3339).
    pub time: String,
    /// The parallelism before.
    pub from: u32,
    /// The parallelism after.
    pub to: u32,
    /// Why: the load it saw.
    pub reason: String,
}
