//! What the controller removes from a job's storage itself, without its
//! coordinator: expired savepoints, and on deletion with `deletion.state:
//! delete` everything the StreamJob's deployments wrote.

use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::coordinator::{self, Coordinator};
use crate::crd::StreamJob;
use crate::error::{Error, Result};
use crate::storage::JobStorage;

/// Deletes expired savepoints from storage: in S3 by the controller itself,
/// with `file://` storage (the pods' own) through the coordinator if one runs.
/// The paths it could not delete now, each logged.
pub async fn dispose_savepoints(
    client: &Client,
    job: &StreamJob,
    coordinator: Option<&Coordinator>,
    paths: &[String],
) -> Vec<String> {
    let name = job.name_any();
    let secrets = Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let storage = match JobStorage::open(job, &secrets).await {
        Ok(storage) => storage,
        Err(e) => {
            tracing::warn!(job = %name, error = %e, "could not reach storage to delete expired savepoints");
            return paths.to_vec();
        }
    };
    let mut left = Vec::new();
    for path in paths {
        let deleted = match (&storage, coordinator) {
            (Some(storage), _) => storage.delete_savepoint(path).await.map(|_| ()),
            (None, Some(c)) => coordinator::dispose_savepoint(c, path).await,
            (None, None) => Err(Error::Coordinator(
                "no coordinator runs to delete it".into(),
            )),
        };
        match deleted {
            Ok(()) => tracing::info!(job = %name, savepoint = %path, "expired savepoint deleted"),
            Err(e) => {
                tracing::warn!(job = %name, savepoint = %path, error = %e, "could not delete an expired savepoint; retrying");
                left.push(path.clone());
            }
        }
    }
    left
}

/// Deletes everything the deployments `ids` of `job` wrote to storage; how
/// many objects went.
pub async fn delete_state(client: &Client, job: &StreamJob, ids: &[String]) -> Result<usize> {
    let secrets = Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let storage = JobStorage::open(job, &secrets)
        .await?
        .ok_or_else(|| Error::Invalid("deletion.state delete needs s3:// storage".into()))?;
    let deleted = storage.delete_deployments(ids).await?;
    tracing::info!(job = %job.name_any(), objects = deleted, "the job's state deleted from storage");
    Ok(deleted)
}
