//! The one place that formats every object key of the storage layout.
//!
//! ```text
//! {job}/checkpoints/chk-{id}/_metadata
//! {job}/checkpoints/chk-{id}/{uid}/{subtask}/state
//! {job}/checkpoints/chk-{id}/{uid}/{subtask}/rocksdb/{file}   (MANIFEST, CURRENT, OPTIONS)
//! {job}/shared/{uid}/{attempt}-{subtask}-{file}.sst            (shared between checkpoints)
//! {job}/savepoints/sp-{id}-{suffix}/_metadata
//! ```

use crate::ids::{CheckpointId, OperatorUid};

/// Name of the file whose presence marks a checkpoint complete.
pub const METADATA: &str = "_metadata";

/// Keys of one job's checkpoints under the store's base.
#[derive(Debug, Clone)]
pub struct Paths {
    job: String,
}

impl Paths {
    /// Keys for job `job`.
    pub fn new(job: &str) -> Self {
        Paths {
            job: job.to_string(),
        }
    }

    /// Prefix of all checkpoints of the job.
    pub fn checkpoints(&self) -> String {
        format!("{}/checkpoints/", self.job)
    }

    /// Directory (prefix) of checkpoint `id`.
    pub fn checkpoint_dir(&self, id: CheckpointId) -> String {
        format!("{}/checkpoints/chk-{}/", self.job, id.0)
    }

    /// The `_metadata` key of checkpoint `id`.
    pub fn metadata(&self, id: CheckpointId) -> String {
        format!("{}{METADATA}", self.checkpoint_dir(id))
    }

    /// The marker a stop-with-savepoint leaves: the job was stopped on purpose,
    /// and resumes only from that savepoint (see `cluster::coordinator`).
    pub fn stopped(&self) -> String {
        format!("{}/stopped", self.job)
    }

    /// Prefix of the files shared between the job's checkpoints.
    pub fn shared(&self) -> String {
        format!("{}/shared/", self.job)
    }

    /// Prefix of all savepoints of the job written to the checkpoint store.
    pub fn savepoints(&self) -> String {
        format!("{}/savepoints/", self.job)
    }

    /// The checkpoint id and the rest of the key, for a key under [`Paths::checkpoints`].
    pub fn parse_checkpoint_key<'k>(&self, key: &'k str) -> Option<(CheckpointId, &'k str)> {
        let rest = key.strip_prefix(&self.checkpoints())?;
        let (dir, file) = rest.split_once('/')?;
        let id = dir.strip_prefix("chk-")?.parse().ok()?;
        Some((CheckpointId(id), file))
    }
}

/// Path of an operator subtask's state file, relative to its checkpoint directory.
pub fn state_file(uid: &OperatorUid, subtask: u32) -> String {
    format!("{}/{subtask}/state", uid.0)
}

/// Path of a file of an operator subtask's RocksDB checkpoint that belongs to one
/// checkpoint only, relative to the checkpoint directory.
pub fn native_private(uid: &OperatorUid, subtask: u32, name: &str) -> String {
    format!("{}/{subtask}/rocksdb/{name}", uid.0)
}

/// Path of an SST file uploaded by `attempt`'s `subtask`, relative to `shared/`;
/// the attempt makes it unique, so a stale attempt never overwrites a live file.
pub fn native_shared(uid: &OperatorUid, attempt: u64, subtask: u32, name: &str) -> String {
    format!("{}/{attempt:x}-{subtask}-{name}", uid.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout_and_parse_back() {
        let p = Paths::new("wc");
        assert_eq!(
            p.metadata(CheckpointId(7)),
            "wc/checkpoints/chk-7/_metadata"
        );
        assert_eq!(
            p.parse_checkpoint_key("wc/checkpoints/chk-12/sum/0/state"),
            Some((CheckpointId(12), "sum/0/state"))
        );
        assert_eq!(p.parse_checkpoint_key("wc/checkpoints/junk/x"), None);
        assert_eq!(state_file(&OperatorUid("sum".into()), 3), "sum/3/state");
    }
}
