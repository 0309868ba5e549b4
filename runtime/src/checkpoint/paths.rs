//! The one place that formats every object key of the storage layout.
//!
//! ```text
//! {job}/{id}/checkpoints/chk-{n}/_metadata
//! {job}/{id}/checkpoints/chk-{n}/{uid}/{subtask}/state
//! {job}/{id}/checkpoints/chk-{n}/{uid}/{subtask}/rocksdb/{file}  (MANIFEST, CURRENT, OPTIONS)
//! {job}/{id}/shared/{uid}/{attempt}-{subtask}-{file}.sst          (shared between checkpoints)
//! {job}/{id}/savepoints/sp-{n}-{suffix}/_metadata
//! {job}/{id}/checkpoint-ids                                        (ids reserved so far)
//! {job}/{id}/stopped                                               (stopped with a savepoint)
//! {job}/{id}/leaders/{epoch}                                       (coordinator epochs, fencing)
//! ```
//!
//! `{job}` is the pipeline's name and `{id}` the [`JobId`] of a deployment: one
//! run of `weir run`, or every deployment of one StreamJob.

use crate::ids::{CheckpointId, JobId, OperatorUid};

/// Name of the file whose presence marks a checkpoint complete.
pub const METADATA: &str = "_metadata";

/// Keys of one deployment's checkpoints under the store's base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    job: String,
    id: JobId,
}

impl Paths {
    /// Keys for deployment `id` of job `job`.
    pub fn new(job: &str, id: &JobId) -> Self {
        Paths {
            job: job.to_string(),
            id: id.clone(),
        }
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The deployment's identity.
    pub fn id(&self) -> &JobId {
        &self.id
    }

    /// Prefix of every deployment of job `job`.
    pub fn runs(job: &str) -> String {
        format!("{job}/")
    }

    /// Prefix of everything of this deployment.
    pub fn run(&self) -> String {
        format!("{}/{}/", self.job, self.id)
    }

    /// Prefix of all checkpoints of the deployment.
    pub fn checkpoints(&self) -> String {
        format!("{}checkpoints/", self.run())
    }

    /// Directory (prefix) of checkpoint `id`.
    pub fn checkpoint_dir(&self, id: CheckpointId) -> String {
        format!("{}chk-{}/", self.checkpoints(), id.0)
    }

    /// The `_metadata` key of checkpoint `id`.
    pub fn metadata(&self, id: CheckpointId) -> String {
        format!("{}{METADATA}", self.checkpoint_dir(id))
    }

    /// The highest checkpoint id reserved so far (see `checkpoint::ids`).
    pub fn checkpoint_ids(&self) -> String {
        format!("{}checkpoint-ids", self.run())
    }

    /// The marker a stop-with-savepoint leaves: the deployment was stopped on
    /// purpose, and resumes only from that savepoint.
    pub fn stopped(&self) -> String {
        format!("{}stopped", self.run())
    }

    /// Prefix of the coordinator epochs taken so far (see `checkpoint::fence`).
    pub fn leaders(&self) -> String {
        format!("{}leaders/", self.run())
    }

    /// The key that claims coordinator epoch `epoch`.
    pub fn leader(&self, epoch: u64) -> String {
        format!("{}{epoch:010}", self.leaders())
    }

    /// Prefix of the files shared between the deployment's checkpoints.
    pub fn shared(&self) -> String {
        format!("{}shared/", self.run())
    }

    /// Prefix of the savepoints of the deployment written to the checkpoint store.
    pub fn savepoints(&self) -> String {
        format!("{}savepoints/", self.run())
    }

    /// The checkpoint id and the rest of the key, for a key under [`Paths::checkpoints`].
    pub fn parse_checkpoint_key<'k>(&self, key: &'k str) -> Option<(CheckpointId, &'k str)> {
        let rest = key.strip_prefix(&self.checkpoints())?;
        let (dir, file) = rest.split_once('/')?;
        let id = dir.strip_prefix("chk-")?.parse().ok()?;
        Some((CheckpointId(id), file))
    }

    /// The epoch a key under [`Paths::leaders`] claims.
    pub fn parse_leader_key(&self, key: &str) -> Option<u64> {
        key.strip_prefix(&self.leaders())?.parse().ok()
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
        let p = Paths::new("wc", &JobId("r1".into()));
        assert_eq!(
            p.metadata(CheckpointId(7)),
            "wc/r1/checkpoints/chk-7/_metadata"
        );
        assert_eq!(
            p.parse_checkpoint_key("wc/r1/checkpoints/chk-12/sum/0/state"),
            Some((CheckpointId(12), "sum/0/state"))
        );
        assert_eq!(p.parse_checkpoint_key("wc/r1/checkpoints/junk/x"), None);
        assert_eq!(p.parse_checkpoint_key("wc/r2/checkpoints/chk-1/x"), None);
        assert_eq!(state_file(&OperatorUid("sum".into()), 3), "sum/3/state");
        assert_eq!(p.leader(12), "wc/r1/leaders/0000000012");
        assert_eq!(p.parse_leader_key(&p.leader(12)), Some(12));
        assert_eq!(p.stopped(), "wc/r1/stopped");
        assert_eq!(Paths::runs("wc"), "wc/");
    }
}
