//! The reconciler: observe, ask the planner, carry out its one action, write status.
//!
//! Step by step, for every `StreamJob` change and every requeue:
//! 0. Read the StreamJob afresh from the API server: the watch cache may lag the
//!    controller's own last status write, and planning on a stale status could
//!    undo it (a restore point, a savepoint in flight). The status is written
//!    with that read's resourceVersion as a precondition, so a write that raced
//!    another fails and the next pass plans again.
//! 1. Make sure the StreamJob carries the finalizer (a deletion may need a final
//!    savepoint before the pods go). A SQL job's script gets the StreamTables
//!    it names put in front ([`sql_tables`]): what it deploys, and hashes.
//! 2. Observe: do the coordinator Deployment and the worker StatefulSet exist;
//!    what does the coordinator say (its pod is found by label and called on its
//!    pod IP); how is the savepoint in flight doing.
//! 3. [`plan`] decides one action, which is carried out: apply the children by
//!    server-side apply, trigger a savepoint, delete the workloads, dispose of
//!    expired savepoints, or let the StreamJob go.
//! 4. The status is written by server-side apply on the status subresource, and
//!    transitions are published as Kubernetes Events.
//!
//! Nothing branches on why reconcile ran: every pass looks at the whole state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api_token;
use crate::coordinator::{self, Coordinator};
use crate::crd::{PendingSavepoint, StreamJob, StreamJobStatus, UpgradeMode};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::planner::{plan, Action, CoordinatorView, JobState, Observed, SavepointProgress};
use crate::protection::Protection;
use crate::resources::MANAGER;
use crate::sql_tables;
use crate::state_cleanup;
use crate::table::StreamTable;
use crate::workloads;

/// The finalizer that lets a deletion take its final savepoint first.
pub const FINALIZER: &str = "weir.dev/finalizer";

/// What every reconcile needs.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Reach every coordinator here instead of at its pod IP (tests, port-forwards).
    pub coordinator_override: Option<String>,
    /// The optional guards every job gets (a workers' PodDisruptionBudget, a
    /// coordinator NetworkPolicy).
    pub protection: Protection,
}

/// Reconciles one StreamJob; the returned action says when to look again.
pub async fn reconcile(job: Arc<StreamJob>, ctx: Arc<Context>) -> Result<Requeue> {
    let started = Instant::now();
    let result = reconcile_inner(&job, &ctx).await;
    ctx.metrics
        .reconciled(started.elapsed(), result.as_ref().err());
    result
}

/// What a failed reconcile does: count it (done in [`reconcile`]) and retry soon.
pub fn error_policy(job: Arc<StreamJob>, error: &Error, _: Arc<Context>) -> Requeue {
    tracing::warn!(job = %job.name_any(), %error, "reconcile failed");
    Requeue::requeue(Duration::from_secs(5))
}

async fn reconcile_inner(cached: &StreamJob, ctx: &Context) -> Result<Requeue> {
    let ns = cached
        .namespace()
        .ok_or_else(|| Error::Invalid("a StreamJob must be namespaced".into()))?;
    let name = cached.name_any();
    let jobs: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(mut fresh) = jobs.get_opt(&name).await? else {
        return Ok(Requeue::await_change());
    };
    let deleting = fresh.meta().deletion_timestamp.is_some();
    if !deleting && !fresh.finalizers().iter().any(|f| f == FINALIZER) {
        // The status is written over what this patch returns (its resourceVersion).
        fresh = add_finalizer(&jobs, &fresh).await?;
    }
    // A SQL job runs its script with the StreamTables it names put in front.
    let resolution = match &fresh.spec.job.sql {
        Some(script) => {
            let tables: Api<StreamTable> = Api::namespaced(ctx.client.clone(), &ns);
            let available = tables.list(&ListParams::default()).await?.items;
            Some(sql_tables::resolve(script, &available))
        }
        None => None,
    };
    if let Some(Ok(resolved)) = &resolution {
        fresh.spec.job.sql = Some(resolved.script.clone());
    }
    let job = &fresh;
    let status = job.status.clone().unwrap_or_default();
    let uid = job.uid().unwrap_or_default();
    let workloads::Workloads {
        deployed,
        terminating,
        image,
        trouble,
    } = workloads::workloads_exist(ctx, &ns, &name, &uid).await?;
    // A coordinator on its way out (or an earlier StreamJob's) says nothing
    // about this one.
    let pod = if deployed && !terminating {
        workloads::coordinator_pod(ctx, &ns, &name).await?
    } else {
        None
    };
    let address = match &pod {
        Some((address, _)) => Some(Coordinator {
            address: address.clone(),
            token: api_token::read(&Api::namespaced(ctx.client.clone(), &ns), &name).await?,
        }),
        None => None,
    };
    let view = match (&pod, &address) {
        (Some((_, instance)), Some(a)) => match coordinator::status(a).await {
            Ok(v) => Some(CoordinatorView {
                instance: instance.clone(),
                ..v
            }),
            Err(e) => {
                tracing::debug!(job = %name, error = %e, "coordinator did not answer");
                None
            }
        },
        _ => None,
    };
    let savepoint = match (&status.pending_savepoint, &address) {
        (Some(p), Some(a)) => Some(
            coordinator::savepoint(a, &p.id)
                .await
                .unwrap_or(SavepointProgress::Unknown),
        ),
        (Some(_), None) => Some(SavepointProgress::Unknown),
        (None, _) => None,
    };
    // A changed spec on the same image: the running coordinator builds the
    // changed job and says which state it would drop, before anything goes.
    let changed = status.deployed_spec_hash.as_deref()
        != Some(&job.spec.autoscaled(&status).deployment_hash());
    let upgrade_check = match (&address, &view) {
        (Some(address), Some(_))
            if changed
                && image.as_deref() == Some(job.spec.image.as_str())
                && job.spec.upgrade_mode != UpgradeMode::Stateless =>
        {
            let (pipeline, args) = job.spec.job.command();
            match coordinator::check_upgrade(address, pipeline, args).await {
                Ok(check) => check,
                Err(e) => {
                    tracing::debug!(job = %name, error = %e, "the coordinator did not check the upgrade");
                    None
                }
            }
        }
        _ => None,
    };
    // The autoscaler's measure of a running job's load.
    let load = match (&address, &view, job.spec.autoscaler_settings()) {
        (Some(address), Some(v), Ok(Some(settings))) if v.state == JobState::Running => {
            match coordinator::load(address, settings.metrics_window).await {
                Ok(load) => Some(load),
                Err(e) => {
                    tracing::debug!(job = %name, error = %e, "the coordinator did not say its load");
                    None
                }
            }
        }
        _ => None,
    };
    let observed = Observed {
        uid: job.uid().unwrap_or_default(),
        deployed,
        terminating,
        coordinator: view,
        savepoint,
        deleting,
        deleting_since: job.meta().deletion_timestamp.as_ref().map(|t| t.0),
        skip_final_savepoint: job
            .annotations()
            .get(crate::planner::SKIP_FINAL_SAVEPOINT)
            .is_some_and(|v| v == "true"),
        keep_state: job
            .annotations()
            .get(crate::planner::KEEP_STATE)
            .is_some_and(|v| v == "true"),
        generation: job.meta().generation.unwrap_or(0),
        unresolved: match &resolution {
            Some(Err(why)) => Some((why.reason.to_string(), why.message.clone())),
            _ => None,
        },
        upgrade_check,
        pod_trouble: trouble,
        load,
        now: jiff::Timestamp::now(),
    };
    let mut decided = plan(&job.spec, &status, &observed);
    if let Some(Ok(resolved)) = &resolution {
        decided.status.tables = resolved.tables.clone();
    }
    tracing::debug!(job = %name, action = ?decided.action, "planned");
    // What a side effect must not outlive is written first: a deployment's spec
    // hash and a replacement's restore point. A savepoint's id is known only
    // after the trigger, so that status is written after it.
    let status_first = matches!(decided.action, Action::Apply(_) | Action::DeleteWorkloads);
    if status_first {
        write_status(&jobs, job, &decided.status).await?;
    }
    let mut finalized = false;
    match &decided.action {
        Action::Apply(launch) => {
            // With the autoscaler on, the parallelism it chose.
            let mut deployed = job.clone();
            deployed.spec = job.spec.autoscaled(&decided.status);
            workloads::apply_children(ctx, &deployed, launch).await?
        }
        Action::TriggerSavepoint { stop, reason } => {
            let Some(address) = &address else {
                return Err(Error::Coordinator(
                    "no coordinator pod to ask for a savepoint".into(),
                ));
            };
            let format = job.spec.savepoint_format;
            let id = coordinator::trigger_savepoint(address, *stop, format).await?;
            tracing::info!(job = %name, %reason, stop, %id, ?format, "savepoint triggered");
            decided.status.pending_savepoint = Some(PendingSavepoint {
                id,
                stop: *stop,
                reason: reason.clone(),
                started: observed.now.to_string(),
            });
        }
        Action::DeleteWorkloads => workloads::delete_workloads(ctx, &ns, &name).await?,
        Action::DisposeSavepoints(paths) => {
            // What could not be deleted stays listed, for the next pass to retry.
            let left =
                state_cleanup::dispose_savepoints(&ctx.client, job, address.as_ref(), paths).await;
            let kept = &mut decided.status.savepoints;
            kept.extend(
                status
                    .savepoints
                    .iter()
                    .filter(|s| left.contains(&s.path))
                    .cloned(),
            );
            kept.sort_by(|a, b| a.time.cmp(&b.time));
        }
        Action::DeleteState(ids) => {
            match state_cleanup::delete_state(&ctx.client, job, ids).await {
                Ok(deleted) => {
                    let message = format!(
                        "deleted {deleted} objects of the job's checkpoints and savepoints"
                    );
                    publish(ctx, job, false, "StateDeleted", &message).await;
                    remove_finalizer(&jobs, job).await?;
                    finalized = true;
                }
                Err(e) => {
                    tracing::warn!(job = %name, error = %e, "could not delete the job's state; retrying");
                    let why = e.to_string();
                    if decided.status.state_deletion_failure.as_ref() != Some(&why) {
                        publish(ctx, job, true, "StateDeletionFailed", &why).await;
                    }
                    decided.status.state_deletion_failure = Some(why);
                }
            }
        }
        Action::Finalize => {
            remove_finalizer(&jobs, job).await?;
            finalized = true;
        }
        Action::Wait => {}
    }
    ctx.metrics.observe(&ns, &name, &decided.status);
    for note in &decided.notes {
        publish(ctx, job, note.warning, &note.reason, &note.message).await;
    }
    if finalized {
        ctx.metrics.forget(&ns, &name);
        return Ok(Requeue::await_change());
    }
    if !status_first {
        write_status(&jobs, job, &decided.status).await?;
    }
    Ok(Requeue::requeue(decided.requeue))
}

/// Writes `status` by server-side apply, unless it is what the StreamJob has.
async fn write_status(
    jobs: &Api<StreamJob>,
    job: &StreamJob,
    status: &StreamJobStatus,
) -> Result<()> {
    if job.status.as_ref() == Some(status) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "StreamJob",
        // Written only over the status this pass planned from.
        "metadata": {"resourceVersion": job.resource_version()},
        "status": status,
    });
    jobs.patch_status(
        &job.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Sets the finalizers to `finalizers`, only if the StreamJob is unchanged since
/// it was read (its resourceVersion), so no other writer's finalizer is lost.
async fn set_finalizers(
    jobs: &Api<StreamJob>,
    job: &StreamJob,
    finalizers: Vec<String>,
) -> Result<StreamJob> {
    let patch = json!({
        "metadata": {
            "resourceVersion": job.resource_version(),
            "finalizers": finalizers,
        }
    });
    Ok(jobs
        .patch(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?)
}

async fn add_finalizer(jobs: &Api<StreamJob>, job: &StreamJob) -> Result<StreamJob> {
    let mut finalizers = job.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    set_finalizers(jobs, job, finalizers).await
}

async fn remove_finalizer(jobs: &Api<StreamJob>, job: &StreamJob) -> Result<()> {
    let finalizers: Vec<String> = job
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if finalizers.len() == job.finalizers().len() {
        return Ok(());
    }
    set_finalizers(jobs, job, finalizers).await.map(|_| ())
}

async fn publish(ctx: &Context, job: &StreamJob, warning: bool, reason: &str, message: &str) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(message.to_string()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &job.object_ref(&())).await {
        tracing::debug!(job = %job.name_any(), error = %e, "could not publish an event");
    }
}
