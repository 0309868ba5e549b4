//! The job's workloads as the reconciler sees and changes them: whether the
//! coordinator Deployment and worker StatefulSet exist (and are this
//! StreamJob's), the coordinator pod to call, and the children applied or
//! deleted.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api_token;
use crate::crd::StreamJob;
use crate::error::Result;
use crate::pod_trouble;
use crate::protection;
use crate::reconcile::Context;
use crate::resources::{self, Launch, GRPC_PORT, MANAGER};

/// What exists of a job's workloads.
pub(crate) struct Workloads {
    /// The coordinator Deployment or the worker StatefulSet exists.
    pub(crate) deployed: bool,
    /// One that exists is on its way out: being deleted (its pods still
    /// stopping), or left by an earlier StreamJob of the same name (owned by
    /// another UID, waiting for the garbage collector), which this one never adopts.
    pub(crate) terminating: bool,
    /// The image the coordinator Deployment runs.
    pub(crate) image: Option<String>,
    /// What keeps its pods from running, if anything does (see [`pod_trouble`]).
    pub(crate) trouble: Option<(String, String)>,
}

/// What exists of the job's workloads.
pub(crate) async fn workloads_exist(
    ctx: &Context,
    ns: &str,
    name: &str,
    uid: &str,
) -> Result<Workloads> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let coordinator = deployments
        .get_opt(&resources::coordinator_name(name))
        .await?;
    let workers = statefulsets.get_opt(&resources::worker_name(name)).await?;
    let going = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        let ours = meta.owner_references.iter().flatten().any(|o| o.uid == uid);
        if !ours {
            tracing::info!(job = name, object = ?meta.name, "waiting for a workload of an earlier StreamJob of this name to be collected");
        }
        meta.deletion_timestamp.is_some() || !ours
    };
    let terminating = coordinator.as_ref().is_some_and(|d| going(d.meta()))
        || workers.as_ref().is_some_and(|w| going(w.meta()));
    let image = coordinator.as_ref().and_then(|d| {
        d.spec
            .as_ref()?
            .template
            .spec
            .as_ref()?
            .containers
            .first()?
            .image
            .clone()
    });
    let deployed = coordinator.is_some() || workers.is_some();
    let trouble = if deployed && !terminating {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        let selector = format!("weir.dev/job={name}");
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        pod_trouble::trouble(&list.items, coordinator.as_ref())
    } else {
        None
    };
    Ok(Workloads {
        deployed,
        terminating,
        image,
        trouble,
    })
}

/// The job's coordinator pod, if one runs: its `ip:port`, and which process it is
/// (the pod's uid and its container's restart count).
pub(crate) async fn coordinator_pod(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Option<(String, String)>> {
    if let Some(address) = &ctx.coordinator_override {
        // One process as far as the controller can tell.
        return Ok(Some((address.clone(), "override".into())));
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("weir.dev/job={name},weir.dev/role=coordinator");
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.meta().deletion_timestamp.is_none())
        .find_map(|p| {
            let status = p.status.as_ref()?;
            let ip = status.pod_ip.as_ref()?;
            let restarts: i32 = status
                .container_statuses
                .iter()
                .flatten()
                .map(|c| c.restart_count)
                .sum();
            let uid = p.meta().uid.as_deref().unwrap_or_default();
            Some((format!("{ip}:{GRPC_PORT}"), format!("{uid}/{restarts}")))
        }))
}

pub(crate) async fn apply<K>(ctx: &Context, ns: &str, object: &K) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// Applies every child object for `launch` (server-side apply: a no-op when
/// nothing changed, a repair when something drifted).
pub(crate) async fn apply_children(ctx: &Context, job: &StreamJob, launch: &Launch) -> Result<()> {
    let ns = job.namespace().unwrap_or_default();
    api_token::ensure(&Api::namespaced(ctx.client.clone(), &ns), job).await?;
    apply::<ConfigMap>(ctx, &ns, &resources::config_map(job, launch)?).await?;
    apply::<Service>(ctx, &ns, &resources::coordinator_service(job)?).await?;
    apply::<Service>(ctx, &ns, &resources::workers_service(job)?).await?;
    apply::<Deployment>(ctx, &ns, &resources::coordinator_deployment(job, launch)?).await?;
    apply::<StatefulSet>(ctx, &ns, &resources::worker_statefulset(job)?).await?;
    if let Some(max_unavailable) = ctx.protection.worker_max_unavailable {
        let budget = protection::worker_budget(job, max_unavailable)?;
        apply::<PodDisruptionBudget>(ctx, &ns, &budget).await?;
    }
    if let Some(controller) = &ctx.protection.coordinator_clients {
        let policy = protection::coordinator_policy(job, controller)?;
        apply::<NetworkPolicy>(ctx, &ns, &policy).await?;
    }
    Ok(())
}

/// Deletes the coordinator Deployment and the worker StatefulSet; foreground
/// deletion keeps them visible until their pods are gone, so the next
/// deployment starts only after the old pods stopped.
pub(crate) async fn delete_workloads(ctx: &Context, ns: &str, name: &str) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let params = DeleteParams::foreground();
    for result in [
        deployments
            .delete(&resources::coordinator_name(name), &params)
            .await
            .map(|_| ()),
        statefulsets
            .delete(&resources::worker_name(name), &params)
            .await
            .map(|_| ()),
    ] {
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
