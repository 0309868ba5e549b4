//! The optional guards of a job's pods, switched on in the chart's values: a
//! PodDisruptionBudget for its workers (a node drain takes them one at a time,
//! since each one lost restarts the job from its checkpoint) and a NetworkPolicy
//! that lets only the job's own pods and the controller reach its coordinator's
//! API.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use serde_json::json;

use crate::crd::StreamJob;
use crate::error::Result;
use crate::resources::{self, GRPC_PORT, HTTP_PORT};

/// Which guards the controller creates for every job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protection {
    /// Workers a voluntary disruption may take at once (none: no budget).
    pub worker_max_unavailable: Option<u32>,
    /// The controller's namespace and pod labels, whose pods may reach every
    /// coordinator's API (none: no NetworkPolicy).
    pub coordinator_clients: Option<ControllerPods>,
}

/// Where the controller's pods are and what labels they carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerPods {
    /// Their namespace.
    pub namespace: String,
    /// `key=value` labels that select them.
    pub labels: Vec<(String, String)>,
}

/// The workers' PodDisruptionBudget's name.
pub fn worker_budget_name(name: &str) -> String {
    format!("{name}-worker")
}

/// The NetworkPolicy's name.
pub fn coordinator_policy_name(name: &str) -> String {
    format!("{name}-coordinator")
}

/// The workers' PodDisruptionBudget: at most `max_unavailable` of them evicted
/// at once.
pub fn worker_budget(job: &StreamJob, max_unavailable: u32) -> Result<PodDisruptionBudget> {
    let name = worker_budget_name(&job.name_any());
    resources::typed(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": resources::metadata(job, name, "worker")?,
        "spec": {
            "maxUnavailable": max_unavailable,
            "selector": {"matchLabels": resources::selector(job, "worker")},
        },
    }))
}

/// The coordinator's NetworkPolicy: its API port only from the job's own pods
/// (workers register there) and from the controller's; its HTTP port
/// (`/metrics`, `/healthz`, the read-only status) from anywhere.
pub fn coordinator_policy(job: &StreamJob, controller: &ControllerPods) -> Result<NetworkPolicy> {
    let name = coordinator_policy_name(&job.name_any());
    let controller_labels: serde_json::Map<String, serde_json::Value> = controller
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    resources::typed(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": resources::metadata(job, name, "coordinator")?,
        "spec": {
            "podSelector": {"matchLabels": resources::selector(job, "coordinator")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {"weir.dev/job": job.name_any()}}},
                        {
                            "namespaceSelector": {"matchLabels": {
                                "kubernetes.io/metadata.name": controller.namespace,
                            }},
                            "podSelector": {"matchLabels": controller_labels},
                        },
                    ],
                    "ports": [{"port": GRPC_PORT, "protocol": "TCP"}],
                },
                {"ports": [{"port": HTTP_PORT, "protocol": "TCP"}]},
            ],
        },
    }))
}

/// Parses `key=value,key=value` (the controller's `--controller-pod-labels`).
pub fn parse_labels(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| format!("{pair:?} is not key=value"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_as_pairs_and_a_bad_one_is_named() {
        assert_eq!(
            parse_labels("app.kubernetes.io/name=weir, app.kubernetes.io/instance=weir"),
            Ok(vec![
                ("app.kubernetes.io/name".into(), "weir".into()),
                ("app.kubernetes.io/instance".into(), "weir".into()),
            ])
        );
        let error = parse_labels("app=weir,instance").expect_err("a bad pair");
        assert!(error.contains("\"instance\""), "{error}");
    }
}
