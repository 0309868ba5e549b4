//! What the controller checks of a spec beyond its schema (the same as the
//! CRD's CEL rules, for a StreamJob that reached it without them), and the
//! spec's derived values: slots, worker replicas, the deployment hash.

use std::time::Duration;

use super::{StateOnDeletion, StreamJobSpec, UpgradeMode};

/// A spec that is well-formed but wrong; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {message}")]
pub struct Invalid {
    /// The field, as in the manifest (`parallelism`, `checkpoints.interval`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Parses a duration such as `10s`, `5m`, `1h30m`.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, Invalid> {
    humantime::parse_duration(text).map_err(|e| {
        invalid(
            field,
            format!("{text:?} is not a duration ({e}); write e.g. 10s, 5m or 1h"),
        )
    })
}

impl StreamJobSpec {
    /// Checks what the schema cannot: cross-field limits and durations.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.parallelism == 0 {
            return Err(invalid("parallelism", "must be at least 1"));
        }
        if self.max_parallelism == 0 || self.max_parallelism > 32768 {
            return Err(invalid("maxParallelism", "must be between 1 and 32768"));
        }
        if self.parallelism > self.max_parallelism {
            return Err(invalid(
                "parallelism",
                format!(
                    "{} is more than maxParallelism {}",
                    self.parallelism, self.max_parallelism
                ),
            ));
        }
        if self.image.trim().is_empty() {
            return Err(invalid("image", "must not be empty"));
        }
        match (self.job.pipeline.trim().is_empty(), &self.job.sql) {
            (true, None) => {
                return Err(invalid(
                    "job",
                    "needs a pipeline (`job.pipeline`) or a SQL script (`job.sql`)",
                ))
            }
            (false, Some(_)) => {
                return Err(invalid(
                    "job",
                    "has both `pipeline` and `sql`: a job runs one of them",
                ))
            }
            (true, Some(sql)) if sql.trim().is_empty() => {
                return Err(invalid("job.sql", "must not be empty"));
            }
            _ => {}
        }
        let storage = &self.checkpoints.storage;
        let bucket = storage
            .strip_prefix("s3://")
            .map(|r| r.split('/').next().unwrap_or(""));
        match bucket {
            Some("") => {
                return Err(invalid(
                    "checkpoints.storage",
                    format!("{storage:?} has no bucket"),
                ))
            }
            Some(_) => {}
            None if storage.starts_with("file:///") => {}
            None => {
                return Err(invalid(
                    "checkpoints.storage",
                    format!("{storage:?} is not an s3:// or file:/// URI"),
                ))
            }
        }
        if self.deletion.state == Some(StateOnDeletion::Delete) {
            if !storage.starts_with("s3://") {
                return Err(invalid(
                    "deletion.state",
                    "delete needs s3:// storage: the controller cannot reach the pods' file systems",
                ));
            }
            if self.deletion.savepoint {
                return Err(invalid(
                    "deletion.state",
                    "a final savepoint (deletion.savepoint) would be deleted with the state: choose one",
                ));
            }
        }
        if let Some(s3) = &self.checkpoints.s3 {
            if !storage.starts_with("s3://") {
                return Err(invalid("checkpoints.s3", "s3 settings need s3:// storage"));
            }
            if let Some(endpoint) = &s3.endpoint {
                if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                    return Err(invalid(
                        "checkpoints.s3.endpoint",
                        format!("{endpoint:?} is not an http:// or https:// URL"),
                    ));
                }
            }
        }
        for (field, value) in [
            ("checkpoints.interval", &self.checkpoints.interval),
            ("checkpoints.timeout", &self.checkpoints.timeout),
            (
                "periodicSavepointInterval",
                &self.periodic_savepoint_interval,
            ),
            ("savepointHistory.maxAge", &self.savepoint_history.max_age),
            (
                "deletion.savepointTimeout",
                &self.deletion.savepoint_timeout,
            ),
        ] {
            if let Some(text) = value {
                parse_duration(field, text)?;
            }
        }
        if self.workers.slots == Some(0) {
            return Err(invalid("workers.slots", "must be at least 1"));
        }
        if self.workers.replicas == Some(0) {
            return Err(invalid("workers.replicas", "must be at least 1"));
        }
        if let Some(replicas) = self.workers.replicas {
            if replicas.saturating_mul(self.slots()) < self.parallelism {
                return Err(invalid(
                    "workers.replicas",
                    format!(
                        "{replicas} workers of {} slots cannot run parallelism {}: every subtask needs a slot",
                        self.slots(),
                        self.parallelism
                    ),
                ));
            }
        }
        if self.upgrade_mode == UpgradeMode::Stateless && self.initial_savepoint.is_some() {
            return Err(invalid(
                "initialSavepoint",
                "needs upgradeMode savepoint or last-state: a stateless job starts without state",
            ));
        }
        self.autoscaler_settings()?;
        Ok(())
    }

    /// Subtask slots per worker.
    pub fn slots(&self) -> u32 {
        self.workers.slots.unwrap_or(1).max(1)
    }

    /// Worker pods: as asked, or enough for the parallelism.
    pub fn worker_replicas(&self) -> u32 {
        self.workers
            .replicas
            .unwrap_or_else(|| self.parallelism.div_ceil(self.slots()))
    }

    /// The hash of what a change of makes an upgrade: image, job, parallelism,
    /// resources, pods, storage and backend. Lifecycle fields (upgrade mode, state,
    /// nonces, savepoint settings) are left out: changing them is not an upgrade,
    /// so switching the upgrade mode alone never redeploys (or loses) anything.
    pub fn deployment_hash(&self) -> String {
        let deployed = serde_json::json!({
            "image": self.image,
            "imagePullPolicy": self.image_pull_policy,
            "job": self.job,
            "parallelism": self.parallelism,
            "maxParallelism": self.max_parallelism,
            "workers": self.workers,
            "coordinator": self.coordinator,
            "podTemplate": self.pod_template,
            "checkpoints": self.checkpoints,
            "stateBackend": self.state_backend,
        });
        format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(deployed.to_string().as_bytes())
        )
    }
}
