//! Why a job's pods cannot run, read off the pods and the coordinator's
//! Deployment: what a user would otherwise find only with `kubectl describe`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;

/// Container waiting reasons that need a user's action (a wrong image, a missing
/// Secret, a crash on start), not time. A crash loop counts from
/// [`CRASHES`] restarts: workers that start before their coordinator answers
/// restart once or twice on their way up.
const STUCK: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Restarts from which a container in `CrashLoopBackOff` is trouble.
pub const CRASHES: i32 = 3;

/// The first thing that keeps the job's pods from running, as (reason, message):
/// a container waiting for one of the [`STUCK`] reasons, a pod the scheduler
/// cannot place, or pods the coordinator's Deployment cannot create (a quota or
/// Pod Security Admission refusing them).
pub fn trouble(pods: &[Pod], coordinator: Option<&Deployment>) -> Option<(String, String)> {
    let refused = coordinator
        .and_then(|d| d.status.as_ref()?.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True");
    if let Some(c) = refused {
        let reason = c.reason.clone().unwrap_or_else(|| "FailedCreate".into());
        let message = c.message.clone().unwrap_or_default();
        return Some((
            reason,
            format!("the coordinator's pod cannot be created: {message}"),
        ));
    }
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        let Some(status) = &pod.status else { continue };
        let unschedulable = status.conditions.iter().flatten().find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        });
        if let Some(c) = unschedulable {
            let message = c.message.clone().unwrap_or_default();
            return Some((
                "Unschedulable".into(),
                format!("pod {name} cannot be scheduled: {message}"),
            ));
        }
        let containers = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for container in containers {
            let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            let reason = waiting.reason.as_deref().unwrap_or_default();
            let starting = reason == "CrashLoopBackOff" && container.restart_count < CRASHES;
            if STUCK.contains(&reason) && !starting {
                let message = waiting.message.as_deref().unwrap_or_default();
                return Some((
                    reason.to_string(),
                    format!(
                        "pod {name}, container {}: {reason} {message}",
                        container.name
                    )
                    .trim_end()
                    .to_string(),
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "sums-worker-0"},
            "status": status,
        }))
        .expect("a pod")
    }

    #[test]
    fn a_container_waiting_on_its_image_is_trouble_naming_pod_and_reason() {
        let pods = [
            pod(serde_json::json!({"phase": "Running"})),
            pod(serde_json::json!({"containerStatuses": [{
                "name": "weir", "image": "weir:typo", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                                      "message": "Back-off pulling image \"weir:typo\""}}
            }]})),
        ];
        let (reason, message) = trouble(&pods, None).expect("trouble");
        assert_eq!(reason, "ImagePullBackOff");
        assert!(
            message.contains("sums-worker-0") && message.contains("weir:typo"),
            "{message}"
        );
    }

    #[test]
    fn a_crash_loop_is_trouble_from_the_third_restart() {
        let crashing = |restarts: i32| {
            pod(serde_json::json!({"containerStatuses": [{
                "name": "weir", "image": "weir:dev", "imageID": "", "ready": false,
                "restartCount": restarts,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
            }]}))
        };
        assert_eq!(trouble(&[crashing(CRASHES - 1)], None), None);
        assert_eq!(
            trouble(&[crashing(CRASHES)], None).expect("trouble").0,
            "CrashLoopBackOff"
        );
    }

    #[test]
    fn a_container_starting_normally_is_no_trouble() {
        let pods = [pod(serde_json::json!({"containerStatuses": [{
            "name": "weir", "image": "weir:dev", "imageID": "", "ready": false,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}
        }]}))];
        assert_eq!(trouble(&pods, None), None);
    }

    #[test]
    fn an_unschedulable_pod_and_a_refused_pod_are_trouble() {
        let pods = [pod(serde_json::json!({"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient cpu."
        }]}))];
        assert_eq!(trouble(&pods, None).expect("trouble").0, "Unschedulable");
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "status": {"conditions": [{
                "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\""
            }]}
        }))
        .expect("a deployment");
        let (reason, message) = trouble(&[], Some(&deployment)).expect("trouble");
        assert_eq!(reason, "FailedCreate");
        assert!(message.contains("PodSecurity"), "{message}");
    }
}
