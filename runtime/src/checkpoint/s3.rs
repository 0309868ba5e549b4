//! The S3 checkpoint store: objects in a bucket under a prefix, through `aws-sdk-s3`.
//!
//! Configuration comes from the standard AWS environment and profile chain
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_PROFILE`,
//! `AWS_ENDPOINT_URL`, ...). With a custom endpoint (MinIO, s3s-fs, ...) requests
//! use path-style addressing, since such servers rarely resolve bucket
//! subdomains; `WEIR_S3_PATH_STYLE=true|false` decides explicitly. Without a
//! region anywhere, `us-east-1` is used.
//!
//! Transient errors (connection refused, timeouts, throttling, 5xx) are retried by
//! the SDK with exponential backoff (5 attempts); what still fails is an
//! [`Error::Store`] naming the object, which declines a checkpoint or makes a
//! restore wait. Only `NoSuchKey` says an object is missing
//! ([`Error::MissingObject`]); a `_metadata` is committed with a conditional
//! `If-None-Match: *` put, refused ([`Error::AlreadyExists`]) if one is there.
//! Objects over [`MULTIPART_THRESHOLD`] are uploaded in parts.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use futures::{StreamExt, TryStreamExt};

use crate::checkpoint::store::CheckpointStore;
use crate::error::{with_causes, Error, Result};

/// Objects larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 16 << 20;
/// Size of each part of a multipart upload (S3 needs at least 5 MiB but the last).
const PART_SIZE: usize = 8 << 20;

/// Parts of one multipart upload sent at once.
const PARTS_AT_ONCE: usize = 4;

/// A checkpoint store in an S3 bucket, under a key prefix.
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Empty, or ending in `/`.
    prefix: String,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Store(s3://{}/{})", self.bucket, self.prefix)
    }
}

/// Splits `s3://bucket/prefix` into the bucket and the prefix (empty or ending in `/`).
pub fn parse_uri(uri: &str) -> Result<(String, String)> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| Error::Usage(format!("{uri} is not an s3:// URI")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::Usage(format!("{uri}: no bucket name after s3://")));
    }
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_string(), prefix))
}

fn path_style(custom_endpoint: bool) -> bool {
    match std::env::var("WEIR_S3_PATH_STYLE").as_deref() {
        Ok("true") | Ok("1") => true,
        Ok("false") | Ok("0") => false,
        _ => custom_endpoint,
    }
}

impl S3Store {
    /// A store for `s3://bucket/prefix`, configured from the AWS environment.
    pub fn open(uri: &str) -> Result<Self> {
        let (bucket, prefix) = parse_uri(uri)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("starting the S3 client's runtime: {e}")))?;
        let sdk = runtime.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .retry_config(
                    RetryConfig::standard()
                        .with_max_attempts(5)
                        .with_initial_backoff(Duration::from_millis(200)),
                )
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(3))
                        .operation_attempt_timeout(Duration::from_secs(60))
                        .build(),
                )
                .load(),
        );
        let mut config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(path_style(sdk.endpoint_url().is_some()));
        if sdk.region().is_none() {
            config = config.region(Region::new("us-east-1"));
        }
        Ok(S3Store {
            client: Client::from_conf(config.build()),
            bucket,
            prefix,
            runtime,
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn fail(&self, action: &'static str, key: &str, error: impl std::fmt::Display) -> Error {
        Error::Store {
            action,
            key: self.uri(key),
            reason: error.to_string(),
        }
    }

    async fn put_multipart(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let object = self.key(key);
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&object)
            .send()
            .await
            .map_err(|e| self.fail("starting the upload of", key, with_causes(&e)))?;
        let id = upload
            .upload_id()
            .ok_or_else(|| self.fail("starting the upload of", key, "no upload id"))?
            .to_string();
        // Several parts at once; the first failure stops the upload.
        let parts = futures::stream::iter(bytes.chunks(PART_SIZE).enumerate())
            .map(|(i, chunk)| {
                let (object, id) = (&object, &id);
                let number = i as i32 + 1;
                async move {
                    let part = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(object)
                        .upload_id(id)
                        .part_number(number)
                        .body(ByteStream::from(chunk.to_vec()))
                        .send()
                        .await
                        .map_err(|e| self.fail("uploading a part of", key, with_causes(&e)))?;
                    Ok::<_, Error>(
                        CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(part.e_tag().map(str::to_string))
                            .build(),
                    )
                }
            })
            .buffered(PARTS_AT_ONCE)
            .try_collect::<Vec<_>>()
            .await;
        let outcome = match parts {
            Err(e) => Err(e),
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&object)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.fail("completing the upload of", key, with_causes(&e))),
        };
        if outcome.is_err() {
            // Best effort: the parts would otherwise be billed until a lifecycle rule runs.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&object)
                .upload_id(&id)
                .send()
                .await;
        }
        outcome
    }
}

impl CheckpointStore for S3Store {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        if bytes.len() > MULTIPART_THRESHOLD {
            return self.runtime.block_on(self.put_multipart(key, bytes));
        }
        self.runtime
            .block_on(
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(self.key(key))
                    .body(ByteStream::from(bytes.to_vec()))
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| self.fail("writing", key, with_causes(&e)))
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let sent = self.runtime.block_on(
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.key(key))
                .if_none_match("*")
                .body(ByteStream::from(bytes.to_vec()))
                .send(),
        );
        match sent {
            Ok(_) => Ok(()),
            // 412: the object exists; 409: another conditional write of it is under way.
            Err(e)
                if matches!(
                    e.raw_response().map(|r| r.status().as_u16()),
                    Some(409 | 412)
                ) =>
            {
                Err(Error::AlreadyExists { key: self.uri(key) })
            }
            Err(e) => Err(self.fail("writing", key, with_causes(&e))),
        }
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.runtime.block_on(async {
            let object = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(self.key(key))
                .send()
                .await
                .map_err(|e| {
                    if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                        Error::MissingObject { key: self.uri(key) }
                    } else {
                        self.fail("reading", key, with_causes(&e))
                    }
                })?;
            let body = object.body.collect().await.map_err(|e| {
                let cause = with_causes(&e);
                // The checksum S3 stored with the object at upload disagrees with
                // what it holds now: the object is damaged, not the read.
                if cause.contains("checksum mismatch") {
                    Error::CorruptCheckpoint {
                        path: self.uri(key),
                        reason: format!(
                            "its content does not match the checksum stored with it ({cause})"
                        ),
                    }
                } else {
                    self.fail("reading", key, cause)
                }
            })?;
            Ok(body.into_bytes().to_vec())
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .sizes(prefix)?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }

    fn sizes(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        self.runtime.block_on(async {
            let mut keys = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.key(prefix))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.fail("listing", prefix, with_causes(&e)))?;
                for object in page.contents() {
                    if let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                        let size = object.size().unwrap_or(0).max(0) as u64;
                        keys.push((key.to_string(), size));
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn children(&self, prefix: &str) -> Result<Vec<String>> {
        self.runtime.block_on(async {
            let mut names = std::collections::BTreeSet::new();
            let full = self.key(prefix);
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .delimiter("/")
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.fail("listing", prefix, with_causes(&e)))?;
                let dirs = page.common_prefixes().iter().filter_map(|p| p.prefix());
                let objects = page.contents().iter().filter_map(|o| o.key());
                for key in dirs.chain(objects) {
                    if let Some(name) = key.strip_prefix(&full) {
                        let name = name.trim_end_matches('/');
                        if !name.is_empty() {
                            names.insert(name.to_string());
                        }
                    }
                }
            }
            Ok(names.into_iter().collect())
        })
    }

    fn delete_prefix(&self, prefix: &str) -> Result<()> {
        self.delete(&self.list(prefix)?)
    }

    fn delete(&self, keys: &[String]) -> Result<()> {
        self.runtime.block_on(async {
            // DeleteObjects takes at most 1000 keys per request.
            for chunk in keys.chunks(1000) {
                let what = chunk.first().map_or("", String::as_str);
                let objects = chunk
                    .iter()
                    .map(|k| ObjectIdentifier::builder().key(self.key(k)).build())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| self.fail("deleting", what, e))?;
                let delete = Delete::builder()
                    .set_objects(Some(objects))
                    .quiet(true)
                    .build()
                    .map_err(|e| self.fail("deleting", what, e))?;
                let out = self
                    .client
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|e| self.fail("deleting", what, with_causes(&e)))?;
                if let Some(e) = out.errors().first() {
                    let key = e.key().and_then(|k| k.strip_prefix(&self.prefix));
                    return Err(self.fail(
                        "deleting",
                        key.unwrap_or(what),
                        e.message().unwrap_or("refused"),
                    ));
                }
            }
            Ok(())
        })
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.bucket, self.prefix)
    }

    /// A server-side CopyObject; objects it refuses (over 5 GiB) go through here.
    fn copy(&self, from: &str, to: &str) -> Result<()> {
        let source = format!("{}/{}", self.bucket, encode_key(&self.key(from)));
        let copied = self.runtime.block_on(
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(self.key(to))
                .copy_source(source)
                .send(),
        );
        match copied {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(from, to, error = %with_causes(&e), "server-side copy refused; copying through this process");
                let bytes = self.get(from)?;
                self.put(to, &bytes)
            }
        }
    }
}

/// A key as CopyObject's `x-amz-copy-source` wants it: percent-encoded, `/` kept.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_into_bucket_and_prefix() {
        assert_eq!(
            parse_uri("s3://b/a/c/").unwrap(),
            ("b".to_string(), "a/c/".to_string())
        );
        assert_eq!(
            parse_uri("s3://b").unwrap(),
            ("b".to_string(), String::new())
        );
        assert!(parse_uri("s3:///x").is_err());
        assert!(parse_uri("file:///x").is_err());
    }
}
