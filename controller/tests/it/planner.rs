//! The lifecycle planner as a table: (spec, status, observed) → action and phase.

use weir_controller::crd::{
    CheckpointRef, DesiredState, PendingSavepoint, Phase, SavepointRef, StateOnDeletion,
    StreamJobSpec, StreamJobStatus, UpgradeMode,
};
use weir_controller::planner::{
    plan, Action, CoordinatorView, JobState, Observed, SavepointProgress, UpgradeCheck, KEEP_STATE,
    STATE_DELETION_RETRY,
};
use weir_controller::resources::Launch;

use crate::fixtures::spec;

const NOW: &str = "2026-11-30T12:00:00Z";

fn at(offset_secs: i64) -> String {
    let now: jiff::Timestamp = NOW.parse().unwrap();
    (now + jiff::SignedDuration::from_secs(offset_secs)).to_string()
}

fn running(checkpoint_at: i64) -> CoordinatorView {
    CoordinatorView {
        state: JobState::Running,
        parallelism: 2,
        latest_checkpoint: Some(CheckpointRef {
            id: 7,
            path: "s3://b/ns/j/state-machine/checkpoints/chk-7".into(),
            time: at(checkpoint_at),
        }),
        restarts: 1,
        message: String::new(),
        stopped_with: None,
        instance: "pod-a/0".into(),
    }
}

fn coordinator(state: JobState) -> CoordinatorView {
    CoordinatorView {
        state,
        latest_checkpoint: None,
        ..running(0)
    }
}

/// The status of a job deployed from `spec` 60 s ago.
fn deployed(spec: &StreamJobSpec) -> StreamJobStatus {
    StreamJobStatus {
        phase: Some(Phase::Running),
        deployed_spec_hash: Some(spec.deployment_hash()),
        deployed_at: Some(at(-60)),
        last_checkpoint: Some(CheckpointRef {
            id: 6,
            path: "chk-6".into(),
            time: at(-5),
        }),
        ..Default::default()
    }
}

/// The StreamJob's UID in every row.
const UID: &str = "6f1c2e9a-uid";

fn observed(deployed: bool, coordinator: Option<CoordinatorView>) -> Observed {
    Observed {
        uid: UID.into(),
        deployed,
        terminating: false,
        coordinator,
        savepoint: None,
        deleting: false,
        deleting_since: None,
        skip_final_savepoint: false,
        keep_state: false,
        generation: 3,
        unresolved: None,
        upgrade_check: None,
        pod_trouble: None,
        load: None,
        now: NOW.parse().unwrap(),
    }
}

fn deleting(since: i64, coordinator: Option<CoordinatorView>) -> Observed {
    Observed {
        deleting: true,
        deleting_since: Some(at(since).parse().unwrap()),
        ..observed(true, coordinator)
    }
}

/// The status and message of condition `kind`.
fn said(status: &StreamJobStatus, kind: &str) -> (String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .unwrap_or_else(|| panic!("no {kind} condition"));
    (c.status.clone(), c.message.clone())
}

fn degraded(status: &StreamJobStatus) -> (String, String) {
    said(status, "Degraded")
}

fn pending(reason: &str, stop: bool, started: i64) -> PendingSavepoint {
    PendingSavepoint {
        id: "sp-1".into(),
        stop,
        reason: reason.into(),
        started: at(started),
    }
}

fn condition(status: &StreamJobStatus, kind: &str) -> (String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .unwrap_or_else(|| panic!("no {kind} condition"));
    (c.status.clone(), c.reason.clone())
}

fn apply(restore: Option<&str>, epoch: u32) -> Action {
    Action::Apply(Launch {
        restore: restore.map(str::to_string),
        job_id: weir_controller::resources::job_id(UID, epoch),
    })
}

fn trigger(stop: bool, reason: &str) -> Action {
    Action::TriggerSavepoint {
        stop,
        reason: reason.into(),
    }
}

/// One row: a name, the inputs, the expected action and phase.
struct Row {
    name: &'static str,
    spec: StreamJobSpec,
    status: StreamJobStatus,
    observed: Observed,
    action: Action,
    phase: Option<Phase>,
}

fn rows() -> Vec<Row> {
    let base = spec();
    let mut rescaled = spec();
    rescaled.parallelism = 3;
    let last_state = StreamJobSpec {
        upgrade_mode: UpgradeMode::LastState,
        parallelism: 3,
        ..spec()
    };
    let stateless = StreamJobSpec {
        upgrade_mode: UpgradeMode::Stateless,
        parallelism: 3,
        ..spec()
    };
    let suspended = StreamJobSpec {
        state: DesiredState::Suspended,
        ..spec()
    };
    let with_nonce = StreamJobSpec {
        savepoint_trigger_nonce: Some(2),
        ..spec()
    };
    let restart = StreamJobSpec {
        restart_nonce: Some(5),
        ..spec()
    };
    let mode_only = StreamJobSpec {
        upgrade_mode: UpgradeMode::Stateless,
        ..spec()
    };
    let initial = StreamJobSpec {
        initial_savepoint: Some("s3://b/sp-1".into()),
        ..spec()
    };
    let mut bad = spec();
    bad.parallelism = 500;
    let mut more_key_groups = spec();
    more_key_groups.max_parallelism = 256;
    let periodic = StreamJobSpec {
        periodic_savepoint_interval: Some("1m".into()),
        ..spec()
    };
    let final_savepoint = StreamJobSpec {
        deletion: weir_controller::crd::DeletionSpec {
            savepoint: true,
            savepoint_timeout: Some("10m".into()),
            state: None,
        },
        ..spec()
    };
    let backing_off = StreamJobStatus {
        savepoint_failures: 1,
        savepoint_retry_at: Some(at(10)),
        last_savepoint_failure: Some("delete savepoint failed: S3 unreachable".into()),
        ..deployed(&base)
    };
    let old = deployed(&base);
    let savepoint_done = |reason: &str, stop: bool| StreamJobStatus {
        pending_savepoint: Some(pending(reason, stop, -10)),
        ..deployed(&base)
    };
    vec![
        Row {
            name: "a new job is deployed from nothing",
            spec: spec(),
            status: StreamJobStatus::default(),
            observed: observed(false, None),
            action: apply(None, 0),
            phase: Some(Phase::Deploying),
        },
        Row {
            name: "a new job with initialSavepoint starts from it",
            spec: initial,
            status: StreamJobStatus::default(),
            observed: observed(false, None),
            action: apply(Some("s3://b/sp-1"), 0),
            phase: Some(Phase::Deploying),
        },
        Row {
            name: "an unchanged running job is re-applied (drift is repaired) and stays Running",
            spec: spec(),
            status: deployed(&base),
            observed: observed(true, Some(running(-1))),
            action: apply(None, 0),
            phase: Some(Phase::Running),
        },
        Row {
            name: "children missing after a deployment are created again with the same launch",
            spec: spec(),
            status: StreamJobStatus {
                restore_from: Some("s3://b/sp-9".into()),
                ..deployed(&base)
            },
            observed: observed(false, None),
            action: apply(Some("s3://b/sp-9"), 0),
            phase: Some(Phase::Deploying),
        },
        Row {
            name: "running without a checkpoint since the deployment is not Running yet",
            spec: spec(),
            status: StreamJobStatus {
                last_checkpoint: None,
                phase: Some(Phase::Deploying),
                ..deployed(&base)
            },
            observed: observed(true, Some(coordinator(JobState::Running))),
            action: apply(None, 0),
            phase: Some(Phase::Deploying),
        },
        Row {
            name: "a rescale in savepoint mode stops the job with a savepoint",
            spec: rescaled.clone(),
            status: old.clone(),
            observed: observed(true, Some(running(-1))),
            action: trigger(true, "upgrade"),
            phase: Some(Phase::Upgrading),
        },
        Row {
            name: "the upgrade savepoint completes: workloads go, restore from it",
            spec: rescaled.clone(),
            status: savepoint_done("upgrade", true),
            observed: Observed {
                savepoint: Some(SavepointProgress::Completed("s3://b/sp-2".into())),
                ..observed(true, Some(coordinator(JobState::Stopped)))
            },
            action: Action::DeleteWorkloads,
            phase: Some(Phase::Upgrading),
        },
        Row {
            name: "after the upgrade savepoint the new spec deploys from it",
            spec: rescaled.clone(),
            status: StreamJobStatus {
                restore_from: Some("s3://b/sp-2".into()),
                phase: Some(Phase::Upgrading),
                ..old.clone()
            },
            observed: observed(false, None),
            action: apply(Some("s3://b/sp-2"), 0),
            phase: Some(Phase::Deploying),
        },
        Row {
            name: "a stop asked twice (a pass read a stale status) ends with the job's stop savepoint",
            spec: rescaled.clone(),
            status: savepoint_done("upgrade", true),
            observed: observed(
                true,
                Some(CoordinatorView {
                    stopped_with: Some("s3://b/sp-2".into()),
                    ..coordinator(JobState::Stopped)
                }),
            ),
            action: Action::DeleteWorkloads,
            phase: Some(Phase::Upgrading),
        },
        Row {
            name: "a job stopped at a savepoint while its spec changed restarts from that savepoint",
            spec: rescaled.clone(),
            status: old.clone(),
            observed: observed(
                true,
                Some(CoordinatorView {
                    stopped_with: Some("s3://b/sp-2".into()),
                    ..coordinator(JobState::Stopped)
                }),
            ),
            action: Action::DeleteWorkloads,
            phase: Some(Phase::Upgrading),
        },
        Row {
            name: "a failed upgrade savepoint leaves the old job running (the new spec is not applied)",
            spec: rescaled.clone(),
            status: savepoint_done("upgrade", true),
            observed: Observed {
                savepoint: Some(SavepointProgress::Failed("S3 unreachable".into())),
                ..observed(true, Some(running(-1)))
            },
            action: Action::Wait,
            phase: Some(Phase::Running),
        },
        Row {
            name: "a failed manual savepoint leaves the job running",
            spec: spec(),
            status: savepoint_done("manual", false),
            observed: Observed {
                savepoint: Some(SavepointProgress::Failed("S3 unreachable".into())),
                ..observed(true, Some(running(-1)))
            },
            action: apply(None, 0),
            phase: Some(Phase::Running),
        },
        Row {
            name: "a savepoint with no result for 15 minutes counts as failed",
            spec: rescaled.clone(),
            status: StreamJobStatus {
                pending_savepoint: Some(pending("upgrade", true, -16 * 60)),
                ..old.clone()
            },
            observed: Observed {
                savepoint: Some(SavepointProgress::Pending),
                ..observed(true, Some(running(-1)))
            },
            action: Action::Wait,
            phase: Some(Phase::Running),
        },
        Row {
            name: "a savepoint in flight is waited for",
            spec: rescaled.clone(),
            status: StreamJobStatus {
                pending_savepoint: Some(pending("upgrade", true, -5)),
                ..old.clone()
            },
            observed: Observed {
                savepoint: Some(SavepointProgress::Pending),
                ..observed(true, Some(running(-1)))
            },
            action: Action::Wait,
            phase: Some(Phase::Upgrading),
        },
        Row {
            name: "after a failure the upgrade waits for its backoff",
            spec: rescaled.clone(),
            status: StreamJobStatus {
                savepoint_failures: 2,
                savepoint_retry_at: Some(at(15)),
                ..old.clone()
            },
            observed: observed(true, Some(running(-1))),
            action: Action::Wait,
            phase: Some(Phase::Running),
        },
        Row {
            name: "a savepoint upgrade with the coordinator unreachable waits",
            spec: rescaled.clone(),
            status: old.clone(),
            observed: observed(true, None),
            action: Action::Wait,
            phase: Some(Phase::Running),
        },
        Row {
            name: "a savepoint upgrade of a crash-looping job falls back to its latest checkpoint",
            spec: rescaled,
            status: old.clone(),
            observed: observed(true, Some(coordinator(JobState::Restarting))),
            action: Action::DeleteWorkloads,
            phase: Some(Phase::Upgrading),
        },
        Row {
            name: "last-state replaces the workloads when a checkpoint exists",
            spec: last_state.clone(),
            status: old.clone(),
            observed: observed(true, Some(running(-1))),
            action: Action::DeleteWorkloads,
            phase: Some(Phase::Upgrading),
        },
        Row {
            name: "last-state without any checkpoint waits",
            spec: last_state,
            status: StreamJobStatus {
                last_checkpoint: None,
                ..old.clone()
            },
            observed: observed(true, Some(coordinator(JobState::Running))),
            action: Action::Wait,
            phase: Some(Phase::Running),
        },
        Row {
            name: "stateless replaces the workloads and moves to a new storage epoch",
            spec: stateless,
            status: old.clone(),
            observed: observed(true, Some(running(-1))),
            action: Action::DeleteWorkloads,
            phase: Some(Phase::Upgrading),
        },
        Row {
            name: "changing only the upgrade mode is not an upgrade",
            spec: mode_only,
            status: old.clone(),
            observed: observed(true, Some(running(-1))),
            action: apply(None, 0),
            phase: Some(Phase::Running),
        },
        Row {
            name: "a restart nonce restarts the job as an upgrade",
            spec: restart,
            status: old.clone(),
            observed: observed(true, Some(running(-1))),
            action: trigger(true, "upgrade"),
            phase: Some(Phase::Upgrading),
        },
        Row {
            name: "a new savepoint nonce takes a savepoint without stopping",
            spec: with_nonce,
            status: old.clone(),
            observed: observed(true, Some(running(-1))),
            action: trigger(false, "manual"),
            phase: Some(Phase::Savepointing),
        },
        Row {
            name: "a manual savepoint that completes leaves the job running",
            spec: spec(),
            status: savepoint_done("manual", false),
            observed: Observed {
                savepoint: Some(SavepointProgress::Completed("s3://b/sp-3".into())),
                ..observed(true, Some(running(-1)))
            },
            action: apply(None, 0),
            phase: Some(Phase::Running),
        },
        Row {
            name: "suspend stops the job with a savepoint",
            spec: suspended.clone(),
            status: old.clone(),
            observed: observed(true, Some(running(-1))),
            action: trigger(true, "suspend"),
            phase: Some(Phase::Savepointing),
        },
        Row {
            name: "the suspend savepoint completes: the pods go",
            spec: suspended.clone(),
            status: savepoint_done("suspend", true),
            observed: Observed {
                savepoint: Some(SavepointProgress::Completed("s3://b/sp-4".into())),
                ..observed(true, Some(coordinator(JobState::Stopped)))
            },
            action: Action::DeleteWorkloads,
            phase: Some(Phase::Suspended),
        },
        Row {
            name: "a suspended job without pods stays suspended",
            spec: suspended,
            status: StreamJobStatus {
                phase: Some(Phase::Suspended),
                restore_from: Some("s3://b/sp-4".into()),
                ..old.clone()
            },
            observed: observed(false, None),
            action: Action::Wait,
            phase: Some(Phase::Suspended),
        },
        Row {
            name: "resuming deploys from the suspend savepoint",
            spec: spec(),
            status: StreamJobStatus {
                phase: Some(Phase::Suspended),
                restore_from: Some("s3://b/sp-4".into()),
                ..old.clone()
            },
            observed: observed(false, None),
            action: apply(Some("s3://b/sp-4"), 0),
            phase: Some(Phase::Deploying),
        },
        Row {
            name: "deletion without a final savepoint lets the StreamJob go",
            spec: spec(),
            status: old.clone(),
            observed: Observed {
                deleting: true,
                ..observed(true, Some(running(-1)))
            },
            action: Action::Finalize,
            phase: Some(Phase::Running),
        },
        Row {
            name: "an invalid spec changes nothing and says why",
            spec: bad.clone(),
            status: old.clone(),
            observed: observed(true, Some(running(-1))),
            action: Action::Wait,
            phase: Some(Phase::Running),
        },
        Row {
            name: "an invalid spec never deployed can still be deleted",
            spec: bad,
            status: StreamJobStatus::default(),
            observed: Observed {
                deleting: true,
                ..observed(false, None)
            },
            action: Action::Finalize,
            phase: None,
        },
        Row {
            name: "while the old workloads terminate nothing else happens",
            spec: StreamJobSpec {
                upgrade_mode: UpgradeMode::Stateless,
                parallelism: 3,
                ..spec()
            },
            status: StreamJobStatus {
                phase: Some(Phase::Upgrading),
                ..old.clone()
            },
            observed: Observed {
                terminating: true,
                ..observed(true, None)
            },
            action: Action::Wait,
            phase: Some(Phase::Upgrading),
        },
        Row {
            name: "a suspend of a crash-looping job in savepoint mode falls back to its checkpoint",
            spec: StreamJobSpec {
                state: DesiredState::Suspended,
                ..spec()
            },
            status: old.clone(),
            observed: observed(true, Some(coordinator(JobState::Restarting))),
            action: Action::DeleteWorkloads,
            phase: Some(Phase::Suspended),
        },
        Row {
            name: "a periodic savepoint waits for the retry backoff of a failed one",
            spec: periodic.clone(),
            status: StreamJobStatus {
                deployed_spec_hash: Some(periodic.deployment_hash()),
                last_savepoint: Some(SavepointRef {
                    path: "s3://b/sp-1".into(),
                    time: at(-600),
                    reason: "periodic".into(),
                }),
                ..backing_off.clone()
            },
            observed: observed(true, Some(running(-1))),
            action: apply(None, 0),
            phase: Some(Phase::Running),
        },
        Row {
            name: "a periodic savepoint is taken when due",
            spec: periodic.clone(),
            status: StreamJobStatus {
                deployed_spec_hash: Some(periodic.deployment_hash()),
                last_savepoint: Some(SavepointRef {
                    path: "s3://b/sp-1".into(),
                    time: at(-600),
                    reason: "periodic".into(),
                }),
                ..old.clone()
            },
            observed: observed(true, Some(running(-1))),
            action: trigger(false, "periodic"),
            phase: Some(Phase::Savepointing),
        },
        Row {
            name: "deletion with a final savepoint takes it first",
            spec: final_savepoint.clone(),
            status: old.clone(),
            observed: deleting(-5, Some(running(-1))),
            action: trigger(true, "delete"),
            phase: Some(Phase::Savepointing),
        },
        Row {
            name: "a failed final savepoint is retried after its backoff, not at once",
            spec: final_savepoint.clone(),
            status: backing_off.clone(),
            observed: deleting(-60, Some(running(-1))),
            action: Action::Wait,
            phase: Some(Phase::Running),
        },
        Row {
            name: "the skip annotation lets the deletion go without the final savepoint",
            spec: final_savepoint.clone(),
            status: backing_off.clone(),
            observed: Observed {
                skip_final_savepoint: true,
                ..deleting(-60, Some(running(-1)))
            },
            action: Action::Finalize,
            phase: Some(Phase::Running),
        },
        Row {
            name: "a deletion gives up its final savepoint after the timeout",
            spec: final_savepoint.clone(),
            status: backing_off,
            observed: deleting(-11 * 60, None),
            action: Action::Finalize,
            phase: Some(Phase::Running),
        },
        Row {
            name: "a deletion with the coordinator down waits for it, within the timeout",
            spec: final_savepoint,
            status: old.clone(),
            observed: deleting(-60, None),
            action: Action::Wait,
            phase: Some(Phase::Running),
        },
        Row {
            name: "maxParallelism cannot change once the state is deployed",
            spec: more_key_groups,
            status: StreamJobStatus {
                deployed_max_parallelism: Some(128),
                ..old.clone()
            },
            observed: observed(true, Some(running(-1))),
            action: Action::Wait,
            phase: Some(Phase::Running),
        },
        Row {
            name: "a failed job is reported Failed with its reason",
            spec: spec(),
            status: old,
            observed: observed(true, Some(CoordinatorView {
                message: "restart limit".into(),
                ..coordinator(JobState::Failed)
            })),
            action: apply(None, 0),
            phase: Some(Phase::Failed),
        },
    ]
}

#[test]
fn the_planner_decides_every_row_of_the_table() {
    let mut failures = Vec::new();
    for row in rows() {
        let plan = plan(&row.spec, &row.status, &row.observed);
        if plan.action != row.action || plan.status.phase != row.phase {
            failures.push(format!(
                "{}: got {:?} / {:?}, expected {:?} / {:?}",
                row.name, plan.action, plan.status.phase, row.action, row.phase
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn ready_needs_a_checkpoint_after_the_deployment() {
    let s = spec();
    let fresh = plan(&s, &deployed(&s), &observed(true, Some(running(-1))));
    assert_eq!(
        condition(&fresh.status, "Ready"),
        ("True".into(), "CheckpointCompleted".into())
    );
    let old_checkpoint = plan(&s, &deployed(&s), &observed(true, Some(running(-120))));
    assert_eq!(condition(&old_checkpoint.status, "Ready").0, "False");
}

#[test]
fn a_failed_savepoint_is_degraded_with_the_reason_and_backs_off() {
    let mut s = spec();
    s.parallelism = 3;
    let status = StreamJobStatus {
        pending_savepoint: Some(pending("upgrade", true, -10)),
        ..deployed(&spec())
    };
    let failed = plan(
        &s,
        &status,
        &Observed {
            savepoint: Some(SavepointProgress::Failed("S3 unreachable".into())),
            ..observed(true, Some(running(-1)))
        },
    );
    let (on, reason) = condition(&failed.status, "Degraded");
    assert_eq!((on.as_str(), reason.as_str()), ("True", "SavepointFailed"));
    let message = &failed
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap()
        .message;
    assert!(
        message.contains("S3 unreachable") && message.contains("keeps running"),
        "{message}"
    );
    assert_eq!(failed.status.savepoint_failures, 1);
    assert!(failed.status.savepoint_retry_at.is_some());
    assert!(failed
        .notes
        .iter()
        .any(|n| n.warning && n.reason == "SavepointFailed"));

    // Waiting for the retry, the condition still says why the savepoint failed.
    let waiting = plan(&s, &failed.status, &observed(true, Some(running(-1))));
    assert_eq!(waiting.action, Action::Wait);
    // Even when the job failed meanwhile (which the condition reported instead).
    let failed_meanwhile = plan(
        &s,
        &failed.status,
        &observed(true, Some(coordinator(JobState::Failed))),
    );
    let failed_again = plan(
        &s,
        &failed_meanwhile.status,
        &observed(true, Some(running(-1))),
    );
    for p in [&waiting, &failed_again] {
        let still = &p
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .unwrap()
            .message;
        assert!(
            still.contains("upgrade savepoint failed: S3 unreachable")
                && still.contains("keeps running"),
            "{still}"
        );
    }
}

#[test]
fn completed_savepoints_are_recorded_and_expired_ones_disposed() {
    let s = StreamJobSpec {
        savepoint_history: weir_controller::crd::SavepointHistory {
            max_count: Some(2),
            max_age: None,
        },
        ..spec()
    };
    let history: Vec<SavepointRef> = (1..=4)
        .map(|i| SavepointRef {
            path: format!("s3://b/sp-{i}"),
            time: at(-100 + i),
            reason: "periodic".into(),
        })
        .collect();
    let status = StreamJobStatus {
        savepoints: history,
        ..deployed(&s)
    };
    let p = plan(&s, &status, &observed(true, Some(running(-1))));
    assert_eq!(
        p.action,
        Action::DisposeSavepoints(vec!["s3://b/sp-1".into(), "s3://b/sp-2".into()])
    );
    assert_eq!(p.status.savepoints.len(), 2);

    let done = plan(
        &s,
        &StreamJobStatus {
            pending_savepoint: Some(pending("manual", false, -3)),
            ..deployed(&s)
        },
        &Observed {
            savepoint: Some(SavepointProgress::Completed("s3://b/sp-9".into())),
            ..observed(true, Some(running(-1)))
        },
    );
    assert_eq!(
        done.status.last_savepoint.as_ref().map(|s| s.path.as_str()),
        Some("s3://b/sp-9")
    );
    assert!(done.status.pending_savepoint.is_none());
}

#[test]
fn a_stateless_upgrade_moves_state_to_a_new_epoch() {
    let s = StreamJobSpec {
        upgrade_mode: UpgradeMode::Stateless,
        parallelism: 3,
        ..spec()
    };
    let p = plan(&s, &deployed(&spec()), &observed(true, Some(running(-1))));
    assert_eq!(p.status.storage_epoch, 1);
    assert_eq!(p.status.restore_from, None);
    assert_eq!(
        p.status.job_id.as_deref(),
        Some(format!("{UID}-1").as_str()),
        "a stateless upgrade starts a new identity, without state"
    );
}

#[test]
fn a_new_deployment_takes_its_identity_from_the_uid_and_fixes_max_parallelism() {
    let p = plan(&spec(), &StreamJobStatus::default(), &observed(false, None));
    assert_eq!(p.status.job_id.as_deref(), Some(UID));
    assert_eq!(p.status.deployed_max_parallelism, Some(128));
    // Deleted and created again under the same name: another UID, another identity.
    let again = plan(
        &spec(),
        &StreamJobStatus::default(),
        &Observed {
            uid: "another-uid".into(),
            ..observed(false, None)
        },
    );
    assert_eq!(again.status.job_id.as_deref(), Some("another-uid"));
}

#[test]
fn terminating_workloads_bump_nothing_and_degrade_nothing() {
    let s = StreamJobSpec {
        upgrade_mode: UpgradeMode::Stateless,
        parallelism: 3,
        ..spec()
    };
    let first = plan(&s, &deployed(&spec()), &observed(true, Some(running(-1))));
    assert_eq!(first.action, Action::DeleteWorkloads);
    let mut status = first.status;
    for _ in 0..5 {
        let p = plan(
            &s,
            &status,
            &Observed {
                terminating: true,
                ..observed(true, None)
            },
        );
        assert_eq!(p.action, Action::Wait);
        assert_eq!(p.status.storage_epoch, 1, "one epoch per upgrade");
        assert_eq!(degraded(&p.status).0, "False", "{:?}", degraded(&p.status));
        status = p.status;
    }
}

#[test]
fn a_crash_looping_upgrade_keeps_the_savepoint_it_restored_from() {
    let mut s = spec();
    s.parallelism = 3;
    let status = StreamJobStatus {
        restore_from: Some("s3://b/sp-50".into()),
        ..deployed(&spec())
    };
    let p = plan(
        &s,
        &status,
        &observed(true, Some(coordinator(JobState::Restarting))),
    );
    assert_eq!(p.action, Action::DeleteWorkloads);
    assert_eq!(
        p.status.restore_from.as_deref(),
        Some("s3://b/sp-50"),
        "the next deployment never resumes from a checkpoint behind that savepoint"
    );
}

#[test]
fn a_deletion_waiting_for_its_savepoint_says_how_to_go_on_without_it() {
    let s = StreamJobSpec {
        deletion: weir_controller::crd::DeletionSpec {
            savepoint: true,
            savepoint_timeout: None,
            state: None,
        },
        ..spec()
    };
    let status = StreamJobStatus {
        savepoint_failures: 1,
        savepoint_retry_at: Some(at(10)),
        last_savepoint_failure: Some("delete savepoint failed: S3 unreachable".into()),
        ..deployed(&s)
    };
    let p = plan(&s, &status, &deleting(-30, Some(running(-1))));
    assert_eq!(p.action, Action::Wait);
    let (on, message) = degraded(&p.status);
    assert_eq!(on, "True");
    assert!(
        message.contains("S3 unreachable")
            && message.contains("weir.dev/skip-final-savepoint=true")
            && message.contains("goes on without it at"),
        "{message}"
    );
    let gone = plan(&s, &status, &deleting(-601, Some(running(-1))));
    assert_eq!(gone.action, Action::Finalize);
    assert!(gone
        .notes
        .iter()
        .any(|n| n.warning && n.reason == "FinalSavepointSkipped"));
}

#[test]
fn restarts_add_up_over_deployments() {
    let s = spec();
    let status = StreamJobStatus {
        restarts_before: 4,
        ..deployed(&s)
    };
    let p = plan(&s, &status, &observed(true, Some(running(-1))));
    assert_eq!(p.status.restarts, 5);
}

#[test]
fn a_coordinator_replaced_behind_the_controllers_back_counts_as_a_restart() {
    let s = spec();
    let status = StreamJobStatus {
        restarts_before: 4,
        coordinator_instance: Some("pod-a/0".into()),
        coordinator_restarts: 2,
        ..deployed(&s)
    };
    // The same process: its own count only.
    let same = plan(&s, &status, &observed(true, Some(running(-1))));
    assert_eq!(same.status.restarts, 5);
    // A new pod after the old one was deleted: its 2 restarts, the loss of it, and
    // the new one's own.
    let replaced = CoordinatorView {
        instance: "pod-b/0".into(),
        ..running(-1)
    };
    let p = plan(&s, &status, &observed(true, Some(replaced)));
    assert_eq!(p.status.restarts_before, 7);
    assert_eq!(p.status.restarts, 8);
    assert_eq!(p.status.coordinator_instance.as_deref(), Some("pod-b/0"));
}

#[test]
fn a_replacement_the_controller_made_is_no_restart() {
    let s = StreamJobSpec {
        parallelism: 3,
        upgrade_mode: UpgradeMode::LastState,
        ..spec()
    };
    let status = StreamJobStatus {
        coordinator_instance: Some("pod-a/0".into()),
        ..deployed(&spec())
    };
    let p = plan(&s, &status, &observed(true, Some(running(-1))));
    assert_eq!(p.action, Action::DeleteWorkloads);
    assert_eq!(
        p.status.restarts_before, 1,
        "the old deployment's own restart"
    );
    assert_eq!(p.status.coordinator_instance, None);
}

#[test]
fn a_sql_job_whose_tables_are_unresolved_starts_nothing_and_changes_nothing() {
    let unresolved = || {
        Some((
            "TableNotFound".to_string(),
            "the script names `clicks` ...".to_string(),
        ))
    };
    let fresh = plan(
        &spec(),
        &StreamJobStatus::default(),
        &Observed {
            unresolved: unresolved(),
            ..observed(false, None)
        },
    );
    assert_eq!(fresh.action, Action::Wait);
    assert_eq!(
        said(&fresh.status, "Stalled"),
        (
            "True".to_string(),
            "the script names `clicks` ...".to_string()
        )
    );
    assert_eq!(condition(&fresh.status, "Stalled").1, "TableNotFound");
    // A running job whose spec changed is not upgraded without its tables:
    // it runs on as deployed.
    let old = spec();
    let changed = StreamJobSpec {
        parallelism: 3,
        ..spec()
    };
    let running_job = plan(
        &changed,
        &deployed(&old),
        &Observed {
            unresolved: unresolved(),
            ..observed(true, Some(running(-1)))
        },
    );
    assert_eq!(running_job.action, Action::Wait);
    assert_eq!(running_job.status.phase, Some(Phase::Running));
    assert_eq!(
        running_job.status.deployed_spec_hash,
        Some(old.deployment_hash())
    );
    // Being deleted, it goes as any job does.
    let deleted = plan(
        &spec(),
        &deployed(&old),
        &Observed {
            unresolved: unresolved(),
            ..deleting(-1, Some(running(-1)))
        },
    );
    assert_ne!(deleted.action, Action::Wait);
}

#[test]
fn an_upgrade_to_a_job_that_cannot_be_built_or_would_drop_state_keeps_the_running_one() {
    let old = spec();
    let changed = StreamJobSpec {
        parallelism: 3,
        ..spec()
    };
    let checked = |check: UpgradeCheck, spec: &StreamJobSpec| {
        plan(
            spec,
            &deployed(&old),
            &Observed {
                upgrade_check: Some(check),
                ..observed(true, Some(running(-1)))
            },
        )
    };
    let invalid = checked(
        UpgradeCheck::Invalid("no table `clicks` at Line: 1, Column: 20".into()),
        &changed,
    );
    assert_eq!(invalid.action, Action::Wait);
    assert_eq!(condition(&invalid.status, "Stalled").1, "UpgradeRefused");
    assert!(said(&invalid.status, "Stalled")
        .1
        .contains("no table `clicks`"));
    let drops = UpgradeCheck::Restores {
        against: "chk-7".into(),
        dropped: vec!["window-aggregate-1f".into()],
    };
    let refused = checked(drops.clone(), &changed);
    assert_eq!(refused.action, Action::Wait);
    assert_eq!(refused.status.phase, Some(Phase::Running));
    assert!(said(&refused.status, "Stalled")
        .1
        .contains("window-aggregate-1f in chk-7"));
    let allowed = checked(
        drops.clone(),
        &StreamJobSpec {
            allow_non_restored_state: true,
            ..changed.clone()
        },
    );
    assert_eq!(allowed.action, trigger(true, "upgrade"));
    assert!(allowed
        .notes
        .iter()
        .any(|n| n.reason == "UpgradeDropsState"));
    let stateless = checked(
        drops,
        &StreamJobSpec {
            upgrade_mode: UpgradeMode::Stateless,
            ..changed.clone()
        },
    );
    assert_eq!(stateless.action, Action::DeleteWorkloads);
    let keeps = checked(
        UpgradeCheck::Restores {
            against: "chk-7".into(),
            dropped: Vec::new(),
        },
        &changed,
    );
    assert_eq!(keeps.action, trigger(true, "upgrade"));
}

#[test]
fn pods_that_cannot_start_stall_the_job_and_a_fix_replaces_them_without_a_savepoint() {
    let status = StreamJobStatus {
        phase: Some(Phase::Deploying),
        restore_from: Some("s3://b/sp-50".into()),
        last_checkpoint: None,
        ..deployed(&spec())
    };
    let trouble = || Observed {
        pod_trouble: Some((
            "ImagePullBackOff".to_string(),
            "pod fraud-worker-0, container weir: ImagePullBackOff".to_string(),
        )),
        ..observed(true, None)
    };
    let stuck = plan(&spec(), &status, &trouble());
    assert_eq!(
        condition(&stuck.status, "Stalled"),
        ("True".into(), "ImagePullBackOff".into())
    );
    assert_eq!(condition(&stuck.status, "Reconciling").0, "False");
    assert_eq!(
        stuck.status.observed_generation,
        Some(3),
        "a stalled spec is observed"
    );
    assert!(
        stuck
            .notes
            .iter()
            .any(|n| n.warning && n.reason == "ImagePullBackOff"),
        "a Warning event: {:?}",
        stuck.notes
    );
    // Once stalled, the same trouble is no new event.
    let again = plan(&spec(), &stuck.status, &trouble());
    assert!(!again.notes.iter().any(|n| n.reason == "ImagePullBackOff"));
    let fixed = StreamJobSpec {
        image: "weir:fixed".into(),
        ..spec()
    };
    let replaced = plan(&fixed, &stuck.status, &trouble());
    assert_eq!(replaced.action, Action::DeleteWorkloads);
    assert_eq!(
        replaced.status.restore_from.as_deref(),
        Some("s3://b/sp-50")
    );
    assert!(replaced
        .notes
        .iter()
        .any(|n| n.reason == "UpgradeWithoutSavepoint"));
}

#[test]
fn observed_generation_moves_once_the_change_is_rolled_out() {
    let old = spec();
    let mut status = deployed(&old);
    status.observed_generation = Some(2);
    let rescaled = StreamJobSpec {
        parallelism: 3,
        ..spec()
    };
    // Generation 3 asks for parallelism 3: an upgrade savepoint is triggered.
    let upgrading = plan(&rescaled, &status, &observed(true, Some(running(-5))));
    assert_eq!(upgrading.action, trigger(true, "upgrade"));
    assert_eq!(upgrading.status.observed_generation, Some(2));
    assert_eq!(condition(&upgrading.status, "Reconciling").0, "True");
    // Deployed with the new spec and checkpointed since: rolled out.
    let mut deployed_now = deployed(&rescaled);
    deployed_now.observed_generation = Some(2);
    let done = plan(&rescaled, &deployed_now, &observed(true, Some(running(-5))));
    assert_eq!(done.status.observed_generation, Some(3));
    assert_eq!(condition(&done.status, "Reconciling").0, "False");
    assert_eq!(condition(&done.status, "Ready").0, "True");
    // A bounded job that finished is rolled out and Ready.
    let finished = plan(
        &rescaled,
        &deployed_now,
        &observed(
            true,
            Some(CoordinatorView {
                latest_checkpoint: running(-5).latest_checkpoint,
                ..coordinator(JobState::Finished)
            }),
        ),
    );
    assert_eq!(finished.status.phase, Some(Phase::Finished));
    assert_eq!(condition(&finished.status, "Ready").0, "True");
    assert_eq!(finished.status.observed_generation, Some(3));
}

#[test]
fn deleting_the_state_waits_for_the_pods_then_deletes_what_every_deployment_wrote() {
    let mut spec = spec();
    spec.deletion.state = Some(StateOnDeletion::Delete);
    // A stateless upgrade moved the job to a second storage epoch.
    let status = StreamJobStatus {
        storage_epoch: 1,
        ..deployed(&spec)
    };
    let running_pods = plan(&spec, &status, &deleting(-5, Some(running(-1))));
    assert_eq!(
        running_pods.action,
        Action::DeleteWorkloads,
        "the pods go first"
    );
    let stopping = Observed {
        terminating: true,
        ..deleting(-5, None)
    };
    assert_eq!(plan(&spec, &status, &stopping).action, Action::Wait);
    let gone = Observed {
        deployed: false,
        ..deleting(-5, None)
    };
    let both_epochs = Action::DeleteState(vec![UID.to_string(), format!("{UID}-1")]);
    assert_eq!(plan(&spec, &status, &gone).action, both_epochs);

    // Storage failed last time: retried, and Degraded says why and the way out.
    let failed = StreamJobStatus {
        state_deletion_failure: Some("storage: listing s3://b/x: connection refused".into()),
        ..status.clone()
    };
    let retried = plan(&spec, &failed, &gone);
    assert_eq!(retried.action, both_epochs);
    assert_eq!(retried.requeue, STATE_DELETION_RETRY);
    let (_, message) = degraded(&retried.status);
    assert!(
        message.contains("connection refused") && message.contains(KEEP_STATE),
        "{message}"
    );
    let kept = Observed {
        keep_state: true,
        ..gone
    };
    assert_eq!(plan(&spec, &failed, &kept).action, Action::Finalize);

    // Kept (the default): the StreamJob goes at once, pods and all.
    spec.deletion.state = None;
    let keep = plan(&spec, &status, &deleting(-5, Some(running(-1))));
    assert_eq!(keep.action, Action::Finalize);
}
