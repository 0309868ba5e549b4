//! The controller's own access to a job's checkpoint storage in S3: what
//! deleting a StreamJob with `deletion.state: delete` removes, and expired
//! savepoints, without a running coordinator. It reaches S3 as the job's
//! pods do (the spec's endpoint, region and addressing, the credentials
//! Secret's keys) and touches nothing outside the job's own directory.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::crd::StreamJob;
use crate::error::{Error, Result};
use crate::resources::storage_dir;

/// A job's directory in an S3 bucket.
pub struct JobStorage {
    client: Client,
    bucket: String,
    /// The job's directory's key prefix, ending in `/`.
    dir: String,
}

impl JobStorage {
    /// The storage of `job`, if it is in S3 (`file://` storage is the pods'
    /// own, which the controller cannot reach). Credentials come from the
    /// spec's Secret, read through `secrets`, or the controller's own AWS
    /// identity without one.
    pub async fn open(job: &StreamJob, secrets: &Api<Secret>) -> Result<Option<Self>> {
        let dir = storage_dir(job);
        let Some(rest) = dir.strip_prefix("s3://") else {
            return Ok(None);
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let s3 = job.spec.checkpoints.s3.clone().unwrap_or_default();
        let region = s3.region.clone().unwrap_or_else(|| "us-east-1".into());
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region))
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(endpoint) = &s3.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(name) = &s3.credentials_secret {
            loader = loader.credentials_provider(credentials(secrets, name).await?);
        }
        let sdk = loader.load().await;
        let config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(s3.path_style.unwrap_or(s3.endpoint.is_some()))
            .build();
        Ok(Some(JobStorage {
            client: Client::from_conf(config),
            bucket: bucket.to_string(),
            dir: format!("{}/", prefix.trim_end_matches('/')),
        }))
    }

    /// Deletes everything the deployments `ids` of the job wrote (every
    /// `{pipeline}/{id}/...` under the job's directory); other StreamJobs of
    /// the same name (an earlier one's savepoints) keep theirs. How many
    /// objects went.
    pub async fn delete_deployments(&self, ids: &[String]) -> Result<usize> {
        let keys: Vec<String> = self
            .list(&self.dir)
            .await?
            .into_iter()
            .filter(|key| {
                let relative = key.strip_prefix(&self.dir).unwrap_or_default();
                let mut parts = relative.splitn(3, '/');
                let (_pipeline, id) = (parts.next(), parts.next());
                id.is_some_and(|id| ids.iter().any(|i| i == id)) && parts.next().is_some()
            })
            .collect();
        self.delete(&keys).await?;
        Ok(keys.len())
    }

    /// Deletes the savepoint at `uri` (its directory), which must lie in the
    /// job's directory. How many objects went.
    pub async fn delete_savepoint(&self, uri: &str) -> Result<usize> {
        let key = uri
            .strip_prefix(&format!("s3://{}/", self.bucket))
            .filter(|k| k.starts_with(&self.dir))
            .ok_or_else(|| {
                Error::Storage(format!(
                    "savepoint {uri} is not in the job's storage s3://{}/{}",
                    self.bucket, self.dir
                ))
            })?;
        let keys = self
            .list(&format!("{}/", key.trim_end_matches('/')))
            .await?;
        self.delete(&keys).await?;
        Ok(keys.len())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.failed("listing", prefix, &e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from)),
            );
        }
        Ok(keys)
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        // DeleteObjects takes at most 1000 keys a request.
        for chunk in keys.chunks(1000) {
            let first = chunk.first().map_or("", String::as_str);
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| self.failed("deleting", first, &e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| self.failed("deleting", first, &e))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.failed("deleting", first, &e))?;
            if let Some(e) = out.errors().first() {
                return Err(Error::Storage(format!(
                    "deleting s3://{}/{}: {}",
                    self.bucket,
                    e.key().unwrap_or(first),
                    e.message().unwrap_or("refused")
                )));
            }
        }
        Ok(())
    }

    fn failed(&self, action: &str, key: &str, error: &dyn std::error::Error) -> Error {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        Error::Storage(format!("{action} s3://{}/{key}: {text}", self.bucket))
    }
}

/// Static credentials from Secret `name`'s `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`.
async fn credentials(secrets: &Api<Secret>, name: &str) -> Result<Credentials> {
    let secret = secrets
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::Storage(format!("the credentials Secret {name} does not exist")))?;
    let data = secret.data.unwrap_or_default();
    let value = |key: &str| {
        data.get(key)
            .map(|v| String::from_utf8_lossy(&v.0).trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::Storage(format!("the credentials Secret {name} has no {key}")))
    };
    Ok(Credentials::new(
        value("AWS_ACCESS_KEY_ID")?,
        value("AWS_SECRET_ACCESS_KEY")?,
        None,
        None,
        "weir-controller",
    ))
}
