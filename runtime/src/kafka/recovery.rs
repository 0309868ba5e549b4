//! What a restored Kafka sink subtask settles before it writes: it commits the
//! transactions that the checkpoint it restores pre-committed for the old
//! subtasks it takes over (itself, and at another parallelism every old subtask
//! `j` with `j % parallelism == index`), then aborts every transaction of those
//! old subtasks still open on the brokers: they hold records after the
//! checkpoint, which the sources replay.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::CheckpointId;
use crate::kafka::cluster::Cluster;
use crate::kafka::txn::{self, Ended, Transaction};
use crate::operator::OperatorContext;
use crate::state::RestoredState;

/// A pre-committed transaction, as the checkpoint holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Committable {
    /// The checkpoint it was pre-committed at.
    pub checkpoint: CheckpointId,
    /// The slot of its transactional id.
    pub slot: u32,
    /// Its id, producer id and epoch.
    pub txn: Transaction,
}

/// The pre-committed transactions of the old subtasks this one takes over.
pub(crate) fn inherited(
    ctx: &OperatorContext,
    restored: Option<RestoredState>,
) -> Result<Vec<Committable>> {
    let decode = |bytes: &[u8]| -> Result<Vec<Committable>> {
        bincode::deserialize(bytes).map_err(|e| Error::State {
            uid: ctx.uid.0.clone(),
            reason: format!("pending Kafka transactions: {e}"),
        })
    };
    let Some(restored) = restored else {
        return Ok(Vec::new());
    };
    let mut inherited = Vec::new();
    if let Some(bytes) = &restored.operator_state {
        inherited.extend(decode(bytes)?);
    }
    for (old, bytes) in restored.union.iter().flat_map(|u| &u.states) {
        if old % ctx.subtask.parallelism == ctx.subtask.index {
            inherited.extend(decode(bytes)?);
        }
    }
    Ok(inherited)
}

/// The old subtask a transactional id `{prefix}{subtask}-{slot}` belongs to.
fn owner(id: &str, prefix: &str) -> Option<u32> {
    let (subtask, slot) = id.strip_prefix(prefix)?.split_once('-')?;
    slot.parse::<u32>().ok()?;
    subtask.parse().ok()
}

/// Commits `inherited`, then aborts the open transactions of ids
/// `{prefix}-{j}-{slot}` whose old subtask `j` this subtask takes over.
pub(crate) fn settle(
    cluster: &mut Cluster,
    prefix: &str,
    ctx: &OperatorContext,
    inherited: &[Committable],
    timeout_ms: i32,
) -> Result<()> {
    let prefix = format!("{prefix}-");
    for c in inherited {
        match txn::end(cluster, &c.txn, true)? {
            Ended::Done => tracing::info!(
                transaction = %c.txn.transactional_id, checkpoint = c.checkpoint.0,
                "committed the transaction of the restored checkpoint"
            ),
            Ended::Superseded(why) => tracing::warn!(
                transaction = %c.txn.transactional_id, checkpoint = c.checkpoint.0, %why,
                "the restored checkpoint's transaction was ended before: committed by the \
                 run that wrote it, unless the broker aborted it at its timeout"
            ),
        }
    }
    let (index, parallelism) = (ctx.subtask.index, ctx.subtask.parallelism);
    for id in txn::list_open(cluster, &prefix)? {
        if owner(&id, &prefix).is_some_and(|j| j % parallelism == index) {
            txn::init_producer(cluster, &id, timeout_ms)?;
            tracing::info!(transaction = %id, "aborted a transaction the restored checkpoint does not hold");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_names_its_subtask_only_under_the_exact_prefix() {
        assert_eq!(owner("weir-job-out-2-5", "weir-job-out-"), Some(2));
        assert_eq!(owner("weir-job-out2-0-1", "weir-job-out-"), None);
        assert_eq!(owner("weir-job-out-x-1", "weir-job-out-"), None);
        assert_eq!(owner("weir-job-out-3", "weir-job-out-"), None);
    }
}
