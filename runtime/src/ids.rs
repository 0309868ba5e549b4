//! Newtypes for the ids that name checkpoints, operators, tasks and subtasks.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A checkpoint's id. Ids only grow, also across restores.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct CheckpointId(pub u64);

impl CheckpointId {
    /// The id after this one.
    pub fn next(self) -> Self {
        CheckpointId(self.0 + 1)
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The stable id of an operator; state is matched by uid, never by position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OperatorUid(pub String);

impl fmt::Display for OperatorUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One parallel instance of an operator or a chain: index `index` of `parallelism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subtask {
    /// 0-based index of this instance.
    pub index: u32,
    /// How many instances there are.
    pub parallelism: u32,
}

impl fmt::Display for Subtask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.parallelism)
    }
}

/// A running task: subtask `subtask` of chain `chain` in the physical plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId {
    /// Index of the chain (a group of chained operators) in the plan.
    pub chain: u32,
    /// Subtask index within the chain.
    pub subtask: u32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.chain, self.subtask)
    }
}

/// The identity of a job's deployment, as Flink's JobID: the checkpoints, shared
/// files, savepoints and stop marker of a job live under it, and a run restores
/// only what it is told to or what its own identity wrote.
///
/// `weir run` and `weir coordinator` make a fresh one (the time it was made, in
/// UTC, and six random hex digits) unless given one with `--job-id`; a
/// coordinator restarted with the same identity resumes its own latest
/// checkpoint (high availability). The operator derives it from the StreamJob's UID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl JobId {
    /// A fresh identity, e.g. `20261201T125247Z-3fa2c1`.
    pub fn generate() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let random = crate::keys::mix(now.as_nanos() as u64 ^ u64::from(std::process::id()));
        JobId(format!(
            "{}-{:06x}",
            crate::clock::Civil::of(now.as_secs()).compact(),
            random & 0xff_ffff
        ))
    }

    /// Checks a user-given identity: 1 to 64 letters, digits, `.`, `_` or `-`,
    /// starting with a letter or digit (it is a directory name in storage).
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(JobId(text.to_string()))
        } else {
            Err(format!(
                "job id {text:?} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            ))
        }
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_job_ids_carry_the_utc_time_and_parse_back() {
        let id = JobId::generate();
        assert_eq!(JobId::parse(&id.0), Ok(id.clone()));
        assert_eq!(id.0.len(), "20261201T125247Z-3fa2c1".len(), "{id}");
    }

    #[test]
    fn job_ids_that_are_not_a_directory_name_are_refused() {
        for bad in ["", "../x", "a/b", "-a", &"x".repeat(65), "a b"] {
            assert!(JobId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(JobId::parse("6f1c2e9a-4b1d-4c55-9d1e-0e6c2c1b7a10").is_ok());
    }
}
