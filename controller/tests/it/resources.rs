//! The child objects, as pure functions of the StreamJob.

use weir_controller::crd::{StateBackend, StreamJobSpec};
use weir_controller::resources::{self, Launch};

use crate::fixtures::{job, spec};

#[test]
fn a_sql_job_runs_the_sql_pipeline_with_its_script() {
    let mut j = job(spec());
    j.spec.job.pipeline.clear();
    j.spec.job.sql = Some("INSERT INTO out SELECT price FROM bid".into());
    j.spec.job.args = vec!["--option".into(), "bid.rate-limit=10".into()];
    assert_eq!(j.spec.validate().map_err(|e| e.to_string()), Ok(()));
    let launch = Launch {
        restore: None,
        job_id: resources::job_id("5f3b1a2c-0000-4000-8000-000000000001", 0),
    };
    let args = resources::coordinator_args(&j, &launch);
    assert_eq!(args[1], "sql");
    let tail: Vec<&str> = args
        .iter()
        .skip_while(|a| *a != "--")
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "--",
            "--sql",
            "INSERT INTO out SELECT price FROM bid",
            "--option",
            "bid.rate-limit=10"
        ]
    );
}

#[test]
fn the_coordinator_runs_the_job_with_its_storage_restore_and_arguments() {
    let j = job(StreamJobSpec {
        state_backend: Some(StateBackend::Rocksdb),
        allow_non_restored_state: true,
        ..spec()
    });
    let launch = Launch {
        restore: Some(
            "s3://weir-checkpoints/prod/analytics/fraud/state-machine/savepoints/sp-4-abc".into(),
        ),
        job_id: resources::job_id("5f3b1a2c-0000-4000-8000-000000000001", 0),
    };
    let args = resources::coordinator_args(&j, &launch);
    let joined = args.join(" ");
    assert!(
        joined.starts_with("coordinator state-machine --parallelism 2 --max-parallelism 128"),
        "{joined}"
    );
    assert!(
        joined.contains("--checkpoint-dir s3://weir-checkpoints/prod/analytics/fraud "),
        "{joined}"
    );
    assert!(joined.contains("--state-backend rocksdb"), "{joined}");
    assert!(joined.contains("--restore s3://weir-checkpoints/prod/analytics/fraud/state-machine/savepoints/sp-4-abc"), "{joined}");
    assert!(joined.contains("--allow-non-restored-state"), "{joined}");
    assert!(joined.contains("--linger"), "{joined}");
    assert!(joined.ends_with("-- --rate 1000"), "{joined}");
    assert!(
        joined.contains("--job-id 5f3b1a2c-0000-4000-8000-000000000001 "),
        "the deployment's identity is the StreamJob's UID: {joined}"
    );
    let after_stateless = resources::coordinator_args(
        &j,
        &Launch {
            restore: None,
            job_id: resources::job_id("5f3b1a2c-0000-4000-8000-000000000001", 2),
        },
    )
    .join(" ");
    assert!(
        after_stateless.contains("--job-id 5f3b1a2c-0000-4000-8000-000000000001-2 "),
        "{after_stateless}"
    );
}

#[test]
fn children_carry_labels_owner_and_security_context() {
    let j = job(spec());
    let deployment =
        serde_json::to_value(resources::coordinator_deployment(&j, &Launch::default()).unwrap())
            .unwrap();
    let labels = &deployment["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/name"], "weir");
    assert_eq!(labels["weir.dev/job"], "fraud");
    assert_eq!(labels["weir.dev/role"], "coordinator");
    assert_eq!(labels["weir.dev/generation"], "3");
    let owner = &deployment["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["controller"].as_bool()),
        (Some("StreamJob"), Some(true))
    );
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    let env = container["env"].as_array().unwrap();
    assert!(env.iter().any(
        |e| e["name"] == "POD_IP" && e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    ));
    let key = env
        .iter()
        .find(|e| e["name"] == "AWS_SECRET_ACCESS_KEY")
        .unwrap();
    assert_eq!(key["valueFrom"]["secretKeyRef"]["name"], "s3-credentials");
    assert!(
        !serde_json::to_string(&deployment)
            .unwrap()
            .contains("\"value\":\"secret"),
        "no inline credentials"
    );
}

#[test]
fn workers_are_a_parallel_statefulset_that_advertise_their_pod_ip() {
    let j = job(StreamJobSpec {
        parallelism: 5,
        workers: weir_controller::crd::WorkersSpec {
            slots: Some(2),
            ..Default::default()
        },
        ..spec()
    });
    let sts = serde_json::to_value(resources::worker_statefulset(&j).unwrap()).unwrap();
    assert_eq!(sts["spec"]["replicas"], 3, "5 subtasks at 2 slots a worker");
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    assert_eq!(sts["spec"]["serviceName"], "fraud-workers");
    let args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .clone();
    let args: Vec<&str> = args.iter().filter_map(|a| a.as_str()).collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--coordinator", "fraud-coordinator:6123"]),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--advertise", "$(POD_IP):6124"]),
        "{args:?}"
    );
}

#[test]
fn every_service_port_names_its_protocol() {
    let j = job(spec());
    for service in [
        resources::coordinator_service(&j).unwrap(),
        resources::workers_service(&j).unwrap(),
    ] {
        let value = serde_json::to_value(&service).unwrap();
        for port in value["spec"]["ports"].as_array().unwrap() {
            assert_eq!(port["protocol"], "TCP", "{port}");
        }
    }
    let headless = serde_json::to_value(resources::workers_service(&j).unwrap()).unwrap();
    assert_eq!(headless["spec"]["clusterIP"], "None");
}

#[test]
fn the_pod_template_is_merged_in() {
    let j = job(StreamJobSpec {
        pod_template: Some(serde_json::json!({
            "metadata": {"annotations": {"team": "fraud"}},
            "spec": {
                "nodeSelector": {"pool": "streaming"},
                "containers": [{"name": "weir", "env": [{"name": "EXTRA", "value": "1"}]}]
            }
        })),
        ..spec()
    });
    let sts = serde_json::to_value(resources::worker_statefulset(&j).unwrap()).unwrap();
    let template = &sts["spec"]["template"];
    assert_eq!(template["metadata"]["annotations"]["team"], "fraud");
    assert_eq!(template["spec"]["nodeSelector"]["pool"], "streaming");
    let env = template["spec"]["containers"][0]["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "EXTRA"));
    assert!(
        env.iter().any(|e| e["name"] == "POD_IP"),
        "the generated env stays"
    );
}

#[test]
fn a_role_pod_template_is_merged_into_its_role_only_after_the_common_one() {
    let j = job(StreamJobSpec {
        pod_template: Some(serde_json::json!({
            "metadata": {"annotations": {"team": "fraud", "disk": "any"}}
        })),
        workers: weir_controller::crd::WorkersSpec {
            pod_template: Some(serde_json::json!({
                "metadata": {"annotations": {"disk": "nvme"}},
                "spec": {"nodeSelector": {"disk": "nvme"}}
            })),
            ..Default::default()
        },
        coordinator: weir_controller::crd::CoordinatorSpec {
            pod_template: Some(serde_json::json!({
                "spec": {"priorityClassName": "streaming-control"}
            })),
            ..Default::default()
        },
        ..spec()
    });
    let workers = serde_json::to_value(resources::worker_statefulset(&j).unwrap()).unwrap();
    let worker = &workers["spec"]["template"];
    assert_eq!(worker["metadata"]["annotations"]["team"], "fraud");
    assert_eq!(worker["metadata"]["annotations"]["disk"], "nvme");
    assert_eq!(worker["spec"]["nodeSelector"]["disk"], "nvme");
    assert!(worker["spec"]["priorityClassName"].is_null());
    let launch = Launch::default();
    let deployment =
        serde_json::to_value(resources::coordinator_deployment(&j, &launch).unwrap()).unwrap();
    let coordinator = &deployment["spec"]["template"];
    assert_eq!(coordinator["metadata"]["annotations"]["disk"], "any");
    assert!(coordinator["spec"]["nodeSelector"].is_null());
    assert_eq!(
        coordinator["spec"]["priorityClassName"],
        "streaming-control"
    );
}

#[test]
fn the_config_map_holds_storage_and_s3_settings_but_no_credentials() {
    let j = job(spec());
    let cm = resources::config_map(&j, &Launch::default()).unwrap();
    let data = cm.data.unwrap();
    assert_eq!(
        data["WEIR_CHECKPOINT_DIR"],
        "s3://weir-checkpoints/prod/analytics/fraud"
    );
    assert_eq!(data["AWS_ENDPOINT_URL"], "http://minio:9000");
    assert_eq!(data["WEIR_S3_PATH_STYLE"], "true");
    assert!(!data.keys().any(|k| k.contains("SECRET")));
}

#[test]
fn the_guards_select_the_jobs_pods_and_open_the_api_to_the_job_and_the_controller_only() {
    use weir_controller::protection::{self, ControllerPods};
    let j = job(spec());
    let budget = serde_json::to_value(protection::worker_budget(&j, 1).unwrap()).unwrap();
    assert_eq!(budget["metadata"]["name"], "fraud-worker");
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        serde_json::json!({"weir.dev/job": "fraud", "weir.dev/role": "worker"})
    );
    assert_eq!(
        budget["metadata"]["ownerReferences"][0]["kind"],
        "StreamJob"
    );
    let controller = ControllerPods {
        namespace: "weir-system".into(),
        labels: vec![("app.kubernetes.io/name".into(), "weir".into())],
    };
    let policy =
        serde_json::to_value(protection::coordinator_policy(&j, &controller).unwrap()).unwrap();
    assert_eq!(policy["metadata"]["name"], "fraud-coordinator");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"]["weir.dev/role"],
        "coordinator"
    );
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    let api = &rules[0];
    assert_eq!(api["ports"][0]["port"], 6123);
    let from = api["from"].as_array().unwrap();
    assert_eq!(
        from[0]["podSelector"]["matchLabels"]["weir.dev/job"],
        "fraud"
    );
    assert!(
        from[0].get("namespaceSelector").is_none(),
        "the job's pods: its own namespace only"
    );
    assert_eq!(
        from[1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "weir-system"
    );
    assert_eq!(
        from[1]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "weir"
    );
    assert_eq!(
        rules[1],
        serde_json::json!({"ports": [{"port": 6180, "protocol": "TCP"}]}),
        "metrics from anywhere"
    );
}
