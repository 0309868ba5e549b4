//! `_metadata`: the JSON document written last, whose presence makes a checkpoint complete.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{CheckpointId, JobId, OperatorUid};
use crate::keys::{KeyGroup, KeyGroupRange};

/// The format this build writes and the only one it reads (2: canonical key-group
/// blobs of raw entries, RocksDB state files, uploaded bytes).
pub const FORMAT_VERSION: u32 = 2;

/// A completed checkpoint: what it is and where every operator subtask's state lies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// Layout version of this document.
    pub format_version: u32,
    /// The job's name.
    pub job: String,
    /// The deployment that wrote it (absent in checkpoints of older builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// The checkpoint's id.
    pub checkpoint_id: CheckpointId,
    /// When the checkpoint was triggered, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Trigger to `_metadata`, in milliseconds.
    pub duration_ms: u64,
    /// Bytes written for this checkpoint (an incremental checkpoint refers to
    /// earlier files without writing them again).
    #[serde(default)]
    pub uploaded_bytes: u64,
    /// Number of key groups; fixed for the life of the job's state.
    pub max_parallelism: u32,
    /// State per operator, sorted by uid.
    pub operators: Vec<OperatorState>,
}

/// One operator's state in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorState {
    /// The operator's uid.
    pub uid: OperatorUid,
    /// Its parallelism when the checkpoint was taken.
    pub parallelism: u32,
    /// State of each subtask that had any, sorted by index.
    pub subtasks: Vec<SubtaskState>,
}

/// One operator subtask's state in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskState {
    /// Subtask index.
    pub subtask: u32,
    /// Key groups it owned.
    pub key_groups: KeyGroupRange,
    /// Inline position (sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<serde_json::Value>,
    /// Its state file, if it had state beyond the position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<StateFile>,
    /// Its keyed state as a RocksDB checkpoint (checkpoints of the RocksDB backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rocksdb: Option<NativeState>,
}

/// The files of a RocksDB checkpoint of one operator subtask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NativeState {
    /// Every file of the checkpoint (SST files, MANIFEST, CURRENT, OPTIONS).
    pub files: Vec<NativeFile>,
}

/// One file of a RocksDB checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeFile {
    /// Its name in the RocksDB directory.
    pub name: String,
    /// Where it is stored: relative to the job's `shared/` directory when `shared`,
    /// else relative to the checkpoint's directory.
    pub path: String,
    /// SST files are shared between checkpoints (immutable, referred to by every
    /// checkpoint that still contains them); the small descriptor files are not.
    pub shared: bool,
    /// Size in bytes.
    pub size: u64,
    /// xxh3-64 of the file, in hex.
    pub checksum: String,
    /// Where an SST file sat in RocksDB's tree when the snapshot was taken, if
    /// known: what a restore needs to take only the files of some key groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<SstPlace>,
}

/// Where an SST file sat in its RocksDB instance's tree at a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SstPlace {
    /// Its rank among the snapshot's SST files, newest data first (level 0's
    /// files newest to oldest, then level 1's, and so on): files of a lower rank
    /// hold newer writes of any key they share with files of a higher one.
    pub rank: u32,
    /// The key groups from its first key's to its last key's (range deletions
    /// included), so a superset of those it holds entries of.
    pub key_groups: KeyGroupRange,
}

/// A state file and the byte ranges inside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// Path relative to the checkpoint directory (so the directory can be moved).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// xxh3-64 of the whole file, in hex.
    pub checksum: String,
    /// Where the non-keyed state lies, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_state: Option<Span>,
    /// Where each non-empty key group's state lies, in group order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_groups: Vec<GroupSpan>,
    /// How each part (the non-keyed state, each key group) is compressed;
    /// stored as it is without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
}

/// How a state file's parts are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Each part a zstd frame.
    Zstd,
}

/// A byte range `[offset, offset+len)` in a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// First byte.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The byte range of one key group's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpan {
    /// The key group.
    pub group: KeyGroup,
    /// Where its state lies.
    #[serde(flatten)]
    pub span: Span,
}

impl CheckpointMetadata {
    /// Encodes the document as pretty JSON.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Internal(format!("encoding _metadata: {e}")))
    }

    /// Parses and checks a `_metadata` read from `path`; every problem names the file.
    pub fn parse(path: &str, bytes: &[u8]) -> Result<Self> {
        let corrupt = |reason: String| Error::CorruptCheckpoint {
            path: path.to_string(),
            reason,
        };
        let meta: CheckpointMetadata = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("not valid checkpoint metadata: {e}")))?;
        if meta.format_version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format_version {} is not supported (this build reads {FORMAT_VERSION})",
                meta.format_version
            )));
        }
        if meta.max_parallelism == 0 {
            return Err(corrupt("max_parallelism is 0".into()));
        }
        for op in &meta.operators {
            for st in &op.subtasks {
                if st.subtask >= op.parallelism || st.key_groups.end > meta.max_parallelism {
                    return Err(corrupt(format!(
                        "operator {} subtask {} does not fit parallelism {} and max_parallelism {}",
                        op.uid, st.subtask, op.parallelism, meta.max_parallelism
                    )));
                }
                let paths = st.file.iter().map(|f| &f.path);
                let native = st
                    .rocksdb
                    .iter()
                    .flat_map(|n| n.files.iter().map(|f| &f.path));
                for path in paths.chain(native) {
                    if path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
                        return Err(corrupt(format!(
                            "state file path {path} leaves its directory"
                        )));
                    }
                }
            }
        }
        Ok(meta)
    }

    /// The state of operator `uid`, if the checkpoint has any.
    pub fn operator(&self, uid: &OperatorUid) -> Option<&OperatorState> {
        self.operators.iter().find(|o| &o.uid == uid)
    }

    /// Total size of the state files, in bytes (shared files included).
    pub fn state_size(&self) -> u64 {
        let subtasks = || self.operators.iter().flat_map(|o| &o.subtasks);
        let files: u64 = subtasks()
            .filter_map(|s| s.file.as_ref())
            .map(|f| f.size)
            .sum();
        let native: u64 = subtasks()
            .filter_map(|s| s.rocksdb.as_ref())
            .flat_map(|n| &n.files)
            .map(|f| f.size)
            .sum();
        files + native
    }

    /// Paths (relative to the job's `shared/` directory) of the shared files it refers to.
    pub fn shared_files(&self) -> impl Iterator<Item = &str> {
        self.operators
            .iter()
            .flat_map(|o| &o.subtasks)
            .filter_map(|s| s.rocksdb.as_ref())
            .flat_map(|n| &n.files)
            .filter(|f| f.shared)
            .map(|f| f.path.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CheckpointMetadata {
        CheckpointMetadata {
            format_version: FORMAT_VERSION,
            job: "wc".into(),
            job_id: Some(JobId("r".into())),
            checkpoint_id: CheckpointId(3),
            timestamp_ms: 1,
            duration_ms: 2,
            uploaded_bytes: 10,
            max_parallelism: 128,
            operators: vec![OperatorState {
                uid: OperatorUid("count".into()),
                parallelism: 1,
                subtasks: vec![SubtaskState {
                    subtask: 0,
                    key_groups: KeyGroupRange { start: 0, end: 128 },
                    position: None,
                    file: Some(StateFile {
                        path: "count/0/state".into(),
                        size: 10,
                        checksum: "00".into(),
                        operator_state: None,
                        key_groups: vec![GroupSpan {
                            group: KeyGroup(5),
                            span: Span { offset: 0, len: 10 },
                        }],
                        compression: None,
                    }),
                    rocksdb: None,
                }],
            }],
        }
    }

    #[test]
    fn metadata_round_trips() {
        let m = sample();
        assert_eq!(
            CheckpointMetadata::parse("x", &m.to_bytes().unwrap()).unwrap(),
            m
        );
    }

    #[test]
    fn damage_is_reported_with_the_file_and_the_problem() {
        let err = CheckpointMetadata::parse("chk-3/_metadata", b"{\"format_version\": 1, \"job\"")
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("chk-3/_metadata") && msg.contains("not valid checkpoint metadata"),
            "{msg}"
        );

        let mut m = sample();
        m.format_version = 99;
        let msg = CheckpointMetadata::parse("m", &m.to_bytes().unwrap())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("format_version 99"), "{msg}");

        let mut m = sample();
        m.operators[0].subtasks[0].file.as_mut().unwrap().path = "../../etc/passwd".into();
        assert!(CheckpointMetadata::parse("m", &m.to_bytes().unwrap()).is_err());
    }
}
