//! The weir Kubernetes operator: the `StreamJob` and `StreamTable` resources and their reconcilers.
//!
//! A `StreamJob` becomes a ConfigMap, a coordinator Deployment and Service, and a
//! worker StatefulSet and headless Service, all owned by it. Changes of the
//! deployed spec are rolled out by the job's upgrade mode (savepoint, last-state,
//! stateless), through the coordinator's gRPC API from `weir-proto`. The
//! controller does not link the engine.
//!
//! # Layout
//!
//! - [`crd`]: the resource's spec and status, with their schema and validation.
//! - [`table`]: the `StreamTable` resource (a table of the data dictionary) and its status.
//! - [`table_reconcile`]: checks StreamTables and writes their status.
//! - [`sql_tables`]: resolves the StreamTables a SQL StreamJob names into its script.
//! - [`resources`]: pure builders of the child objects.
//! - [`planner`]: the pure lifecycle planner (spec, status, observed → action).
//! - [`autoscaler`]: the pure autoscaler decision (load → parallelism, when).
//! - [`pod_trouble`]: why a job's pods cannot run (image pulls, scheduling, crash loops).
//! - [`protection`]: the optional PodDisruptionBudget and NetworkPolicy of a job.
//! - [`reconcile`]: observation, the planner's action, status and events.
//! - [`workloads`]: the job's workloads as the reconciler sees and changes them.
//! - [`coordinator`]: calls to a job's coordinator.
//! - [`state_cleanup`]: expired savepoints and a deleted job's state, removed
//!   by the controller.
//! - [`storage`]: the controller's own access to a job's storage in S3 (state
//!   deletion, expired savepoints).
//! - [`api_token`]: each job's API token, in a Secret the coordinator requires.
//! - [`leader`]: leader election with a Lease.
//! - [`metrics`]: `/metrics` and `/healthz`.

pub mod api_token;
pub mod autoscaler;
pub mod coordinator;
pub mod crd;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod planner;
pub mod pod_trouble;
pub mod protection;
pub mod reconcile;
pub mod resources;
pub mod sql_tables;
pub mod state_cleanup;
pub mod storage;
pub mod table;
pub mod table_reconcile;
pub mod workloads;

pub use crd::{StreamJob, StreamJobSpec, StreamJobStatus};
pub use error::{Error, Result};
pub use table::StreamTable;

/// The CustomResourceDefinition of `StreamJob`, as YAML (what `crdgen` prints
/// and `crds/streamjob.yaml` holds).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    crd_as_yaml(&StreamJob::crd())
}

/// The CustomResourceDefinition of `StreamTable`, as YAML (what `crdgen
/// streamtable` prints and `crds/streamtable.yaml` holds).
pub fn table_crd_yaml() -> String {
    use kube::CustomResourceExt;
    crd_as_yaml(&StreamTable::crd())
}

/// A CRD as YAML, without the formats schemars gives unsigned integers
/// (`uint32`, `uint64`), which the API server does not know and warns about at
/// every apply; their `minimum: 0` stays.
fn crd_as_yaml(crd: &impl serde::Serialize) -> String {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(fields) => {
                let unsigned = fields
                    .get("format")
                    .and_then(|f| f.as_str())
                    .is_some_and(|f| f.starts_with("uint"));
                if unsigned {
                    fields.remove("format");
                }
                fields.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(crd).unwrap_or_default();
    strip(&mut value);
    serde_yaml::to_string(&value).unwrap_or_default()
}
