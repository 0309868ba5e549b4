//! How a job meets the state of a checkpoint or savepoint it would restore:
//! which operators' state it keeps (same uid) and which it would drop (state
//! of an operator the job no longer has). A restore that drops state is
//! refused unless non-restored state is allowed; `weir sql --explain
//! --restore` and the coordinator's upgrade check say so before anything runs.

use std::collections::BTreeSet;

use crate::api::JobGraph;
use crate::checkpoint::metadata::CheckpointMetadata;

/// The operators of a checkpoint's state, split by whether a job has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateFit {
    /// Uids whose state the job restores.
    pub kept: Vec<String>,
    /// Uids with state the job has no operator for.
    pub dropped: Vec<String>,
}

impl StateFit {
    /// Splits the state in `metadata` by the operators of `graph`; an operator
    /// recorded without any state (no position, no file) counts as neither.
    pub fn of(graph: &JobGraph, metadata: &CheckpointMetadata) -> StateFit {
        let uids: BTreeSet<String> = graph.uids().into_iter().collect();
        let mut fit = StateFit::default();
        for operator in &metadata.operators {
            let has_state = operator
                .subtasks
                .iter()
                .any(|s| s.position.is_some() || s.file.is_some() || s.rocksdb.is_some());
            if !has_state {
                continue;
            }
            let uid = operator.uid.0.clone();
            if uids.contains(&uid) {
                fit.kept.push(uid);
            } else {
                fit.dropped.push(uid);
            }
        }
        fit
    }

    /// What a restore from `location` keeps and drops, in a few lines.
    pub fn report(&self, location: &str) -> String {
        let list = |uids: &[String]| {
            if uids.is_empty() {
                "none".to_string()
            } else {
                uids.join(", ")
            }
        };
        let mut text = format!(
            "Restoring from {location}:\n  keeps the state of: {}\n  drops the state of: {}\n",
            list(&self.kept),
            list(&self.dropped)
        );
        if !self.dropped.is_empty() {
            text.push_str(
                "  (refused unless non-restored state is allowed: --allow-non-restored-state, \
                 or allowNonRestoredState on a StreamJob)\n",
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::metadata::{OperatorState, SubtaskState};
    use crate::ids::{CheckpointId, OperatorUid};
    use crate::keys::KeyGroupRange;

    fn operator(uid: &str, with_state: bool) -> OperatorState {
        OperatorState {
            uid: OperatorUid(uid.to_string()),
            parallelism: 1,
            subtasks: vec![SubtaskState {
                subtask: 0,
                key_groups: KeyGroupRange { start: 0, end: 128 },
                position: with_state.then(|| serde_json::json!({"offset": 3})),
                file: None,
                rocksdb: None,
            }],
        }
    }

    #[test]
    fn state_of_operators_the_job_lacks_is_dropped_and_empty_entries_are_neither() {
        let graph = crate::pipelines::build(
            "keyed-sum",
            &["--records".to_string(), "10".to_string()],
            1,
            128,
        )
        .expect("keyed-sum builds");
        let uids = graph.uids();
        let metadata = CheckpointMetadata {
            format_version: 1,
            job: graph.name.clone(),
            job_id: None,
            checkpoint_id: CheckpointId(4),
            timestamp_ms: 0,
            duration_ms: 0,
            uploaded_bytes: 0,
            max_parallelism: 128,
            operators: vec![
                operator(&uids[0], true),
                operator("gone-aggregate", true),
                operator("gone-filter", false),
            ],
        };
        let fit = StateFit::of(&graph, &metadata);
        assert_eq!(fit.kept, vec![uids[0].clone()]);
        assert_eq!(fit.dropped, vec!["gone-aggregate".to_string()]);
        let report = fit.report("s3://b/sp-1");
        assert!(
            report.contains("drops the state of: gone-aggregate"),
            "{report}"
        );
        assert!(report.contains("refused unless"), "{report}");
    }
}
