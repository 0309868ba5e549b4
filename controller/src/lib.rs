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
//! - [`reconcile`]: observation, the planner's action, status and events.
//! - [`coordinator`]: calls to a job's coordinator.
//! - [`leader`]: leader election with a Lease.
//! - [`metrics`]: `/metrics` and `/healthz`.

pub mod coordinator;
pub mod crd;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod planner;
pub mod reconcile;
pub mod resources;
pub mod sql_tables;
pub mod table;
pub mod table_reconcile;

pub use crd::{StreamJob, StreamJobSpec, StreamJobStatus};
pub use error::{Error, Result};
pub use table::StreamTable;

/// The CustomResourceDefinition of `StreamJob`, as YAML (what `crdgen` prints
/// and `crds/streamjob.yaml` holds).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&StreamJob::crd()).unwrap_or_default()
}

/// The CustomResourceDefinition of `StreamTable`, as YAML (what `crdgen
/// streamtable` prints and `crds/streamtable.yaml` holds).
pub fn table_crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&StreamTable::crd()).unwrap_or_default()
}
