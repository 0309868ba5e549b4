//! The child objects of a `StreamJob`, built by pure functions from it.
//!
//! Each `StreamJob` `x` owns:
//! - ConfigMap `x-config`: the job's configuration as environment (checkpoint
//!   storage, S3 endpoint and region, log level), read by every pod;
//! - Deployment `x-coordinator` (one replica, `Recreate`) and Service
//!   `x-coordinator` (gRPC 6123, HTTP 6180);
//! - StatefulSet `x-worker` (`Parallel` pod management) and headless Service
//!   `x-workers` (data plane 6124).
//!
//! Every object carries the `app.kubernetes.io/*` labels, `weir.dev/job`,
//! `weir.dev/role` and `weir.dev/generation` (the StreamJob generation it was
//! built from), and an owner reference to the StreamJob so that deleting it
//! collects them. Pods get `POD_IP` from the downward API, S3 credentials only
//! from the named Secret, a non-root user and a read-only root filesystem.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

use crate::crd::{StateBackend, StreamJob};
use crate::error::{Error, Result};

/// The coordinator's gRPC port (workers and the controller).
pub const GRPC_PORT: u16 = 6123;
/// The coordinator's HTTP port (probes, metrics, status).
pub const HTTP_PORT: u16 = 6180;
/// The workers' data-plane port.
pub const DATA_PORT: u16 = 6124;
/// The field manager of every server-side apply.
pub const MANAGER: &str = "weir-controller";

/// What a deployment of the job starts from, beyond its spec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Launch {
    /// A savepoint or checkpoint to restore. The coordinator resumes its own
    /// deployment's latest checkpoint instead when that is newer.
    pub restore: Option<String>,
    /// The deployment's identity (see [`job_id`]), which keys its storage.
    pub job_id: String,
}

/// The identity of a StreamJob's deployments: its UID, with the storage epoch
/// after a stateless upgrade (which starts without state).
pub fn job_id(uid: &str, epoch: u32) -> String {
    match epoch {
        0 => uid.to_string(),
        e => format!("{uid}-{e}"),
    }
}

/// Names of the children of job `name`.
pub fn config_name(name: &str) -> String {
    format!("{name}-config")
}
/// The coordinator Deployment and Service.
pub fn coordinator_name(name: &str) -> String {
    format!("{name}-coordinator")
}
/// The worker StatefulSet.
pub fn worker_name(name: &str) -> String {
    format!("{name}-worker")
}
/// The workers' headless Service.
pub fn workers_service_name(name: &str) -> String {
    format!("{name}-workers")
}

/// Labels shared by every child (and selecting the pods of `role`).
pub fn labels(job: &StreamJob, role: &str) -> BTreeMap<String, String> {
    let name = job.name_any();
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "weir".into()),
        ("app.kubernetes.io/instance".into(), name.clone()),
        ("app.kubernetes.io/component".into(), role.into()),
        ("app.kubernetes.io/managed-by".into(), MANAGER.into()),
        ("weir.dev/job".into(), name),
        ("weir.dev/role".into(), role.into()),
    ])
}

/// The labels selecting the pods of `role` (stable across upgrades).
pub fn selector(job: &StreamJob, role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("weir.dev/job".into(), job.name_any()),
        ("weir.dev/role".into(), role.into()),
    ])
}

/// The metadata of a child object: its name, the job's labels and the owner reference.
pub(crate) fn metadata(job: &StreamJob, name: String, role: &str) -> Result<Value> {
    let owner = job
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid("the StreamJob has no uid yet".into()))?;
    let mut labels = labels(job, role);
    labels.insert(
        "weir.dev/generation".into(),
        job.metadata.generation.unwrap_or(0).to_string(),
    );
    Ok(json!({
        "name": name,
        "namespace": job.namespace(),
        "labels": labels,
        "ownerReferences": [owner],
    }))
}

/// Where the job's checkpoints and savepoints go: a directory named after it
/// under the storage base; beneath it each deployment identity has its own
/// (`{pipeline}/{job id}/checkpoints/...`, see the engine's layout).
pub fn storage_dir(job: &StreamJob) -> String {
    let base = job.spec.checkpoints.storage.trim_end_matches('/');
    let ns = job.namespace().unwrap_or_else(|| "default".into());
    format!("{base}/{ns}/{}", job.name_any())
}

/// The ConfigMap: the environment every pod of the job reads.
pub fn config_map(job: &StreamJob, launch: &Launch) -> Result<ConfigMap> {
    let mut data = BTreeMap::from([
        ("WEIR_CHECKPOINT_DIR".to_string(), storage_dir(job)),
        ("WEIR_JOB_ID".to_string(), launch.job_id.clone()),
        ("RUST_LOG".to_string(), "info".to_string()),
    ]);
    if let Some(s3) = &job.spec.checkpoints.s3 {
        data.insert(
            "AWS_REGION".into(),
            s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
        );
        if let Some(endpoint) = &s3.endpoint {
            data.insert("AWS_ENDPOINT_URL".into(), endpoint.clone());
        }
        if let Some(path_style) = s3.path_style {
            data.insert("WEIR_S3_PATH_STYLE".into(), path_style.to_string());
        }
    }
    typed(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(job, config_name(&job.name_any()), "config")?,
        "data": data,
    }))
}

/// Environment of every container: the ConfigMap, `POD_IP`, S3 credentials.
fn env(job: &StreamJob) -> (Value, Value) {
    let mut env = vec![json!({
        "name": "POD_IP",
        "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
    })];
    if let Some(secret) = job
        .spec
        .checkpoints
        .s3
        .as_ref()
        .and_then(|s| s.credentials_secret.as_ref())
    {
        for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            env.push(json!({
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
            }));
        }
    }
    let from = json!([{"configMapRef": {"name": config_name(&job.name_any())}}]);
    (Value::Array(env), from)
}

/// A pod template for `role` running `args`, with the user's podTemplate merged in.
fn pod_template(job: &StreamJob, role: &str, args: Vec<String>, extra: Value) -> Value {
    let (mut env, env_from) = env(job);
    if let ("coordinator", Value::Array(vars)) = (role, &mut env) {
        vars.push(crate::api_token::env_var(job));
    }
    let resources = match role {
        "coordinator" => serde_json::to_value(&job.spec.coordinator.resources),
        _ => serde_json::to_value(&job.spec.workers.resources),
    }
    .unwrap_or(Value::Null);
    let mut container = json!({
        "name": "weir",
        "image": job.spec.image,
        "imagePullPolicy": job.spec.image_pull_policy.map(|p| p.as_str()),
        "command": ["weir"],
        "args": args,
        "env": env,
        "envFrom": env_from,
        "resources": resources,
        "securityContext": {
            "runAsNonRoot": true,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "state", "mountPath": "/var/lib/weir"},
        ],
    });
    merge(&mut container, extra);
    let mut template = json!({
        "metadata": {"labels": labels(job, role)},
        "spec": {
            // The job's pods never call the Kubernetes API.
            "automountServiceAccountToken": false,
            // What Pod Security Admission's `restricted` profile asks of a pod.
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "fsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                {"name": "tmp", "emptyDir": {}},
                {"name": "state", "emptyDir": {}},
            ],
        },
    });
    let own = match role {
        "coordinator" => &job.spec.coordinator.pod_template,
        _ => &job.spec.workers.pod_template,
    };
    for user in [&job.spec.pod_template, own].into_iter().flatten() {
        merge(&mut template, user.clone());
    }
    template
}

/// The coordinator's command line.
pub fn coordinator_args(job: &StreamJob, launch: &Launch) -> Vec<String> {
    let spec = &job.spec;
    let (pipeline, pipeline_args) = spec.job.command();
    let mut args: Vec<String> = vec![
        "coordinator".into(),
        pipeline,
        "--parallelism".into(),
        spec.parallelism.to_string(),
        "--max-parallelism".into(),
        spec.max_parallelism.to_string(),
        "--checkpoint-dir".into(),
        storage_dir(job),
        "--job-id".into(),
        launch.job_id.clone(),
        "--checkpoint-interval".into(),
        spec.checkpoints
            .interval
            .clone()
            .unwrap_or_else(|| "10s".into()),
        "--checkpoint-timeout".into(),
        spec.checkpoints
            .timeout
            .clone()
            .unwrap_or_else(|| "10m".into()),
        "--retained".into(),
        spec.checkpoints.retained.unwrap_or(3).to_string(),
        "--state-backend".into(),
        match spec.state_backend {
            Some(StateBackend::Rocksdb) => "rocksdb",
            _ => "heap",
        }
        .into(),
        "--state-dir".into(),
        "/var/lib/weir/state".into(),
        // The pod IP, not 0.0.0.0: what probes and peers reach, and what lets
        // pods share a host network (as the e2e node agent runs them).
        "--listen".into(),
        format!("$(POD_IP):{GRPC_PORT}"),
        "--http".into(),
        format!("$(POD_IP):{HTTP_PORT}"),
        "--log-level".into(),
        "info".into(),
        "--linger".into(),
    ];
    if let Some(restore) = &launch.restore {
        args.extend(["--restore".into(), restore.clone()]);
    }
    if spec.allow_non_restored_state {
        args.push("--allow-non-restored-state".into());
    }
    args.push("--".into());
    args.extend(pipeline_args);
    args
}

/// The workers' command line.
pub fn worker_args(job: &StreamJob) -> Vec<String> {
    vec![
        "worker".into(),
        "--coordinator".into(),
        format!("{}:{GRPC_PORT}", coordinator_name(&job.name_any())),
        "--slots".into(),
        job.spec.slots().to_string(),
        "--listen".into(),
        format!("$(POD_IP):{DATA_PORT}"),
        "--advertise".into(),
        format!("$(POD_IP):{DATA_PORT}"),
        "--state-dir".into(),
        "/var/lib/weir/state".into(),
        "--log-level".into(),
        "info".into(),
    ]
}

/// The coordinator Deployment.
pub fn coordinator_deployment(job: &StreamJob, launch: &Launch) -> Result<Deployment> {
    let name = coordinator_name(&job.name_any());
    let extra = json!({
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 6},
    });
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(job, name, "coordinator")?,
        "spec": {
            "replicas": 1,
            // Never two coordinators of one job at once.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(job, "coordinator")},
            "template": pod_template(job, "coordinator", coordinator_args(job, launch), extra),
        },
    }))
}

/// The coordinator Service.
pub fn coordinator_service(job: &StreamJob) -> Result<Service> {
    let name = coordinator_name(&job.name_any());
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(job, name, "coordinator")?,
        "spec": {
            "selector": selector(job, "coordinator"),
            // Workers must reach the coordinator before it is ready (it is ready
            // once enough of them registered).
            "publishNotReadyAddresses": true,
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
            ],
        },
    }))
}

/// The worker StatefulSet.
pub fn worker_statefulset(job: &StreamJob) -> Result<StatefulSet> {
    let name = worker_name(&job.name_any());
    let extra = json!({
        "ports": [{"name": "data", "containerPort": DATA_PORT, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": "data"}, "periodSeconds": 2},
    });
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(job, name, "worker")?,
        "spec": {
            "replicas": job.spec.worker_replicas(),
            "podManagementPolicy": "Parallel",
            "serviceName": workers_service_name(&job.name_any()),
            "selector": {"matchLabels": selector(job, "worker")},
            "template": pod_template(job, "worker", worker_args(job), extra),
        },
    }))
}

/// The workers' headless Service.
pub fn workers_service(job: &StreamJob) -> Result<Service> {
    let name = workers_service_name(&job.name_any());
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(job, name, "worker")?,
        "spec": {
            "clusterIP": "None",
            "selector": selector(job, "worker"),
            "ports": [{"name": "data", "port": DATA_PORT, "targetPort": "data", "protocol": "TCP"}],
        },
    }))
}

/// Merges `patch` into `target` as a JSON merge patch (RFC 7386), except that
/// arrays of objects with a `name` are merged by name (containers, env, volumes),
/// as users of pod templates expect.
pub fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (Value::Array(t), Value::Array(p)) if p.iter().all(|v| v.get("name").is_some()) => {
            for v in p {
                match t.iter_mut().find(|e| e.get("name") == v.get("name")) {
                    Some(existing) => merge(existing, v),
                    None => t.push(v),
                }
            }
        }
        (t, p) => *t = p,
    }
}

/// A child object built as JSON, as its typed form (nulls left out).
pub(crate) fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(without_nulls(value))
        .map_err(|e| Error::Invalid(format!("building a child object: {e}")))
}

/// Removes `null` fields, which server-side apply would take as "clear this".
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// The kind's plural resource for messages, e.g. `deployments/x-coordinator`.
pub fn describe<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}",
        K::plural(&()),
        object.meta().name.clone().unwrap_or_default()
    )
}
