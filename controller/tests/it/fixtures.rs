//! Sample StreamJobs.

use weir_controller::crd::{CheckpointSpec, JobSpec, S3Spec, StreamJobSpec};
use weir_controller::StreamJob;

/// A state-machine job at parallelism 2 checkpointing to S3.
pub fn spec() -> StreamJobSpec {
    StreamJobSpec {
        image: "weir:dev".into(),
        image_pull_policy: None,
        job: JobSpec {
            pipeline: "state-machine".into(),
            args: vec!["--rate".into(), "1000".into()],
            sql: None,
        },
        parallelism: 2,
        max_parallelism: 128,
        workers: Default::default(),
        coordinator: Default::default(),
        pod_template: None,
        checkpoints: CheckpointSpec {
            interval: Some("2s".into()),
            storage: "s3://weir-checkpoints/prod".into(),
            retained: None,
            timeout: None,
            s3: Some(S3Spec {
                endpoint: Some("http://minio:9000".into()),
                region: None,
                path_style: Some(true),
                credentials_secret: Some("s3-credentials".into()),
            }),
        },
        state_backend: None,
        upgrade_mode: Default::default(),
        state: Default::default(),
        savepoint_trigger_nonce: None,
        restart_nonce: None,
        initial_savepoint: None,
        allow_non_restored_state: false,
        periodic_savepoint_interval: None,
        savepoint_history: Default::default(),
        savepoint_format: Default::default(),
        deletion: Default::default(),
        autoscaler: None,
    }
}

/// `spec` as StreamJob `analytics/fraud` with a uid and generation, as the API
/// server returns it.
pub fn job(spec: StreamJobSpec) -> StreamJob {
    let mut job = StreamJob::new("fraud", spec);
    job.metadata.namespace = Some("analytics".into());
    job.metadata.uid = Some("5f3b1a2c-0000-4000-8000-000000000001".into());
    job.metadata.generation = Some(3);
    job.metadata.resource_version = Some("100".into());
    job
}
