//! The `StreamJob` resource (`weir.dev/v1alpha1`): its spec, its status and their schema.
//!
//! Validation happens at admission: the OpenAPI schema (types, minimums, enums) and
//! CEL rules (`x-kubernetes-validations`, Kubernetes 1.25 and later) for what types
//! cannot say: parallelism at most maxParallelism, maxParallelism fixed, duration
//! and storage URI formats, combinations that contradict each other; each rule's
//! message names its field. [`StreamJobSpec::validate`] checks the same again in
//! the controller, for a StreamJob that reached it without them (a CRD applied by
//! hand from an older release), and says so in the status ([`validate`]). The
//! status types are in [`status`].

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod autoscaler;
pub mod status;
pub mod validate;

pub use autoscaler::*;
pub use status::*;
pub use validate::{parse_duration, Invalid};

/// What a user asks for: a weir job, how it runs, how its state is kept and how
/// changes to it are rolled out.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "StreamJob",
    plural = "streamjobs",
    shortname = "sj",
    namespaced,
    status = "StreamJobStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Parallelism","type":"integer","jsonPath":".status.parallelism"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Last Checkpoint","type":"date","jsonPath":".status.lastCheckpoint.time"}"#,
    printcolumn = r#"{"name":"Last Savepoint","type":"date","jsonPath":".status.lastSavepoint.time"}"#,
    printcolumn = r#"{"name":"Restarts","type":"integer","jsonPath":".status.restarts"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.parallelism <= self.maxParallelism",
        "message": "parallelism must be at most maxParallelism (the job's key groups)",
        "fieldPath": ".parallelism",
        "reason": "FieldValueInvalid"
    },
    {
        "rule": "!has(self.workers) || !has(self.workers.replicas) || self.workers.replicas * (has(self.workers.slots) ? self.workers.slots : 1) >= self.parallelism",
        "message": "workers.replicas times workers.slots must be at least parallelism: every subtask needs a slot",
        "fieldPath": ".workers.replicas",
        "reason": "FieldValueInvalid"
    },
    {
        "rule": "self.maxParallelism == oldSelf.maxParallelism || (has(self.upgradeMode) && self.upgradeMode == 'stateless')",
        "message": "maxParallelism is fixed for the life of the job: its state is split into that many key groups (only upgradeMode stateless, which starts without state, may change it)",
        "fieldPath": ".maxParallelism",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "!(has(self.deletion) && has(self.deletion.state) && self.deletion.state == 'delete') || self.checkpoints.storage.startsWith('s3://')",
        "message": "deletion.state delete needs s3:// storage: the controller cannot reach the pods' file systems",
        "fieldPath": ".deletion.state",
        "reason": "FieldValueInvalid"
    },
    {
        "rule": "!has(self.autoscaler) || !has(self.autoscaler.maxParallelism) || self.autoscaler.maxParallelism <= self.maxParallelism",
        "message": "autoscaler.maxParallelism must be at most maxParallelism (the job's key groups)",
        "fieldPath": ".autoscaler.maxParallelism",
        "reason": "FieldValueInvalid"
    },
    {
        "rule": "!has(self.autoscaler) || !has(self.workers) || !has(self.workers.replicas) || self.workers.replicas * (has(self.workers.slots) ? self.workers.slots : 1) >= (has(self.autoscaler.maxParallelism) ? self.autoscaler.maxParallelism : self.maxParallelism)",
        "message": "workers.replicas times workers.slots must be at least autoscaler.maxParallelism (leave workers.replicas out to follow the parallelism)",
        "fieldPath": ".workers.replicas",
        "reason": "FieldValueInvalid"
    },
    {
        "rule": "!(has(self.upgradeMode) && self.upgradeMode == 'stateless' && has(self.initialSavepoint))",
        "message": "initialSavepoint needs upgradeMode savepoint or last-state: a stateless job starts without state",
        "fieldPath": ".initialSavepoint",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct StreamJobSpec {
    /// Container image with the `weir` binary (and the job's pipeline).
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy of every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// The job: a pipeline shipped in the image and its arguments.
    pub job: JobSpec,
    /// Parallelism of every operator (at least 1, at most maxParallelism).
    #[schemars(range(min = 1))]
    pub parallelism: u32,
    /// Key groups of the job's state, fixed for its life (1 to 32768).
    #[serde(default = "default_max_parallelism")]
    #[schemars(range(min = 1, max = 32768))]
    pub max_parallelism: u32,
    /// Worker pods.
    #[serde(default)]
    pub workers: WorkersSpec,
    /// The coordinator pod.
    #[serde(default)]
    pub coordinator: CoordinatorSpec,
    /// Merged into every pod's template (JSON merge patch): labels, annotations,
    /// nodeSelector, tolerations, serviceAccountName and the like.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub pod_template: Option<serde_json::Value>,
    /// Checkpoints: where, how often, how many are kept.
    pub checkpoints: CheckpointSpec,
    /// Keyed state backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_backend: Option<StateBackend>,
    /// How a change of the deployed spec is rolled out.
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,
    /// Running, or suspended (stopped with a savepoint, pods removed).
    #[serde(default)]
    pub state: DesiredState,
    /// Change it to take a savepoint without stopping the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_trigger_nonce: Option<i64>,
    /// Change it to restart the job (as an upgrade, by upgradeMode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_nonce: Option<i64>,
    /// Savepoint (directory URI) the first deployment starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_savepoint: Option<String>,
    /// Restore even if a savepoint has state of operators the job no longer has.
    #[serde(default)]
    pub allow_non_restored_state: bool,
    /// Take a savepoint this often (a duration such as `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("x-kubernetes-validations" = [duration_rule()]))]
    pub periodic_savepoint_interval: Option<String>,
    /// Which savepoints are kept.
    #[serde(default)]
    pub savepoint_history: SavepointHistory,
    /// How every savepoint (upgrades, rescales, suspends, triggered, periodic)
    /// stores RocksDB state.
    #[serde(default)]
    pub savepoint_format: SavepointFormat,
    /// What deleting the StreamJob does with its state.
    #[serde(default)]
    pub deletion: DeletionSpec,
    /// Picks the parallelism from the job's load (off unless enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerSpec>,
}

fn default_max_parallelism() -> u32 {
    128
}

/// The CEL rule of a duration field: the forms [`parse_duration`] reads that
/// users write (`10s`, `5m`, `1h30m`, `7d`), checked at admission.
fn duration_rule() -> serde_json::Value {
    serde_json::json!({
        "rule": "self.matches('^ *([0-9]+ *(ms|s|m|h|d|w) *)+$')",
        "message": "must be a duration such as 10s, 5m, 1h30m or 7d"
    })
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Image pull policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when not on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// The pipeline and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.sql) != (has(self.pipeline) && self.pipeline != '')",
    "message": "job needs a pipeline or a sql script, not both",
    "reason": "FieldValueInvalid"
}]))]
pub struct JobSpec {
    /// A pipeline of the image (`weir pipelines` lists them), unless `sql` is given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pipeline: String,
    /// Its arguments (with `sql`: `weir sql`'s, such as `--option TABLE.KEY=VALUE`).
    #[serde(default)]
    pub args: Vec<String>,
    /// A SQL job instead of a pipeline: its `CREATE TABLE`s and `INSERT INTO`s,
    /// run as `weir sql` runs them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

impl JobSpec {
    /// The pipeline the coordinator runs and its arguments: `sql` with the
    /// script for a SQL job.
    pub fn command(&self) -> (String, Vec<String>) {
        match &self.sql {
            Some(sql) => {
                let mut args = vec!["--sql".to_string(), sql.clone()];
                args.extend(self.args.iter().cloned());
                ("sql".to_string(), args)
            }
            None => (self.pipeline.clone(), self.args.clone()),
        }
    }
}

/// Worker pods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkersSpec {
    /// Worker pods (default: enough for parallelism at `slots` each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replicas: Option<u32>,
    /// Subtask slots per worker (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub slots: Option<u32>,
    /// Resources of each worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Merged into the worker pods' template after `podTemplate` (JSON merge
    /// patch): what only workers need (node affinity for local disks, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub pod_template: Option<serde_json::Value>,
}

/// The coordinator pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CoordinatorSpec {
    /// Resources of the coordinator container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Merged into the coordinator pod's template after `podTemplate` (JSON
    /// merge patch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub pod_template: Option<serde_json::Value>,
}

/// Checkpoint settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.s3) || self.storage.startsWith('s3://')",
    "message": "s3 settings need s3:// storage",
    "fieldPath": ".s3",
    "reason": "FieldValueInvalid"
}]))]
pub struct CheckpointSpec {
    /// Time between checkpoints (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("x-kubernetes-validations" = [duration_rule()]))]
    pub interval: Option<String>,
    /// Base URI of checkpoint storage: `s3://bucket/prefix` or `file:///path`.
    /// The job's checkpoints and savepoints go under `{storage}/{namespace}/{name}/`.
    #[schemars(length(min = 1, max = 1024), extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^(s3://[a-z0-9][a-z0-9.-]*[a-z0-9](/.*)?|file:///.*)$')",
        "message": "must be s3://bucket/prefix (a bucket name of lower-case letters, digits, dots and hyphens) or file:///path"
    }]))]
    pub storage: String,
    /// Completed checkpoints kept (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub retained: Option<u32>,
    /// A checkpoint taking longer is declined (default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("x-kubernetes-validations" = [duration_rule()]))]
    pub timeout: Option<String>,
    /// S3 settings, for `s3://` storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
}

/// How pods reach S3.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    /// Endpoint of an S3-compatible server (MinIO and the like); AWS when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^https?://[^/]+')",
        "message": "must be an http:// or https:// URL"
    }]))]
    pub endpoint: Option<String>,
    /// Region (default `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style addressing (default: true with a custom endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// A Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (never
    /// credentials inline); without one, the pods' own AWS identity is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

/// Keyed state backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// Hash maps in memory.
    Heap,
    /// RocksDB on local disk, incremental checkpoints.
    Rocksdb,
}

/// How a change of the deployed spec (image, job, parallelism, resources) is rolled out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMode {
    /// Stop with a savepoint, then start the new spec from it.
    #[default]
    Savepoint,
    /// Replace the pods; the new job resumes from the latest completed checkpoint.
    LastState,
    /// Replace the pods and start without state.
    Stateless,
}

/// How a savepoint stores RocksDB state; both kinds are self-contained and
/// restore into either state backend at any parallelism.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SavepointFormat {
    /// RocksDB's own files: those the latest checkpoint uploaded are copied in
    /// storage rather than uploaded again, so a savepoint costs about what
    /// changed since that checkpoint.
    #[default]
    Native,
    /// Every entry as key-group blobs, read and written again: independent of
    /// RocksDB's file format.
    Canonical,
}

/// Whether the job should run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    /// Run.
    #[default]
    Running,
    /// Stop with a savepoint (unless stateless) and remove the pods.
    Suspended,
}

/// Which savepoints are kept; older ones are deleted from storage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointHistory {
    /// Savepoints kept (default 5; the newest is always kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_count: Option<u32>,
    /// Savepoints older than this are deleted (a duration such as `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("x-kubernetes-validations" = [duration_rule()]))]
    pub max_age: Option<String>,
}

/// What deleting the StreamJob does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.savepoint) && self.savepoint && has(self.state) && self.state == 'delete')",
    "message": "a final savepoint (deletion.savepoint) would be deleted with the state (deletion.state delete): choose one",
    "fieldPath": ".state",
    "reason": "FieldValueInvalid"
}]))]
pub struct DeletionSpec {
    /// What happens to the job's checkpoints and savepoints in storage: `keep`
    /// (the default) or `delete`, which the controller does itself once the
    /// pods are gone (s3:// storage only), retrying while storage fails. The
    /// annotation `weir.dev/keep-state: "true"` keeps them after all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateOnDeletion>,
    /// Stop the job with a final savepoint before its pods go (kept in storage).
    #[serde(default)]
    pub savepoint: bool,
    /// How long a deletion waits for that savepoint (retrying with backoff while
    /// the job or storage is down) before it goes on without it (default `10m`).
    /// The annotation `weir.dev/skip-final-savepoint: "true"` skips it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("x-kubernetes-validations" = [duration_rule()]))]
    pub savepoint_timeout: Option<String>,
}

/// What deleting a StreamJob does with its state in storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateOnDeletion {
    /// Leave every checkpoint and savepoint where it is.
    #[default]
    Keep,
    /// Delete everything the StreamJob's deployments wrote.
    Delete,
}
