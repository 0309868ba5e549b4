//! The logical job graph: operator nodes, the exchanges between them, and the
//! type-erased factories that build running tasks from it.
//!
//! The typed API checks record types when the job is written; the graph keeps
//! them behind `dyn Any` so that one plan can hold every type. Each factory is
//! generic over its record types and downcasts exactly once per task build.

use std::any::Any;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::exec::config::ExecConfig;
use crate::exec::task::TaskBody;
use crate::metrics::{OperatorMetrics, TaskMetrics};
use crate::net::{ChannelKey, Connection, DataPlane};
use crate::operator::OperatorContext;
use crate::state::RestoredState;

/// How records travel from one operator to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// Subtask `i` feeds subtask `i`; chained into one task when parallelisms match.
    Forward,
    /// Batches are spread over the downstream subtasks in turn.
    Rebalance,
    /// Each record goes to the subtask owning its key's key group.
    KeyGroups,
    /// Every record goes to every downstream subtask.
    Broadcast,
}

/// Everything a factory needs to build one operator subtask.
pub(crate) struct BuildCtx<'a> {
    pub op: OperatorContext,
    pub restored: Option<RestoredState>,
    pub metrics: Arc<OperatorMetrics>,
    pub config: &'a ExecConfig,
}

/// Builds a source subtask and its task around a typed downstream.
pub(crate) trait SourceNode: Send + Sync {
    /// `downstream` is a `Box<dyn Downstream<Out>>`.
    fn build(
        &self,
        ctx: BuildCtx<'_>,
        downstream: Box<dyn Any + Send>,
    ) -> Result<Box<dyn TaskBody>>;
    /// A `Box<dyn Downstream<Out>>` that drops everything.
    fn discard(&self) -> Box<dyn Any + Send>;
}

/// Builds an operator subtask linked to a typed downstream.
pub(crate) trait OperatorNode: Send + Sync {
    /// `downstream` is a `Box<dyn Downstream<Out>>`; returns a `Box<dyn Downstream<In>>`.
    fn build(
        &self,
        ctx: BuildCtx<'_>,
        downstream: Box<dyn Any + Send>,
    ) -> Result<Box<dyn Any + Send>>;
    /// A `Box<dyn Downstream<Out>>` that drops everything.
    fn discard(&self) -> Box<dyn Any + Send>;
}

/// Builds the typed channels, outputs and input tasks of one edge.
pub(crate) trait EdgeNode: Send + Sync {
    /// A bounded channel: `(Sender<Message<T>>, Receiver<Message<T>>)`, boxed.
    fn channel(&self, capacity: usize) -> (Box<dyn Any + Send>, Box<dyn Any + Send>);
    /// An output over `senders` (one per downstream subtask), as `Box<dyn Downstream<T>>`.
    fn output(
        &self,
        senders: Vec<Box<dyn Any + Send>>,
        max_parallelism: u32,
        config: &ExecConfig,
        metrics: Arc<TaskMetrics>,
    ) -> Result<Box<dyn Any + Send>>;
    /// The sending end of data-plane channel `key` over `conn`, as `Box<dyn ChannelSender<T>>`.
    fn remote_sender(&self, conn: Arc<Connection>, key: ChannelKey) -> Box<dyn Any + Send>;
    /// The receiving end of data-plane channel `key` from `conn`'s peer, as
    /// `(Receiver<Message<T>>, CreditReturn)`.
    fn remote_receiver(
        &self,
        plane: &DataPlane,
        conn: &Arc<Connection>,
        key: ChannelKey,
        capacity: usize,
    ) -> Result<Box<dyn Any + Send>>;
    /// One `Box<dyn Downstream<T>>` sending to every one of `outputs` (each a
    /// `Box<dyn Downstream<T>>`): a stream with several consumers.
    fn fanout(&self, outputs: Vec<Box<dyn Any + Send>>) -> Result<Box<dyn Any + Send>>;
    /// A task reading `receivers` into `head` (a `Box<dyn Downstream<T>>`),
    /// recycling batches of about `batch_size` records.
    fn input_task(
        &self,
        receivers: Vec<Box<dyn Any + Send>>,
        head: Box<dyn Any + Send>,
        batch_size: usize,
    ) -> Result<Box<dyn TaskBody>>;
}

pub(crate) enum NodeKind {
    Source(Arc<dyn SourceNode>),
    Operator(Arc<dyn OperatorNode>),
}

/// One input edge of a node: which node feeds it and how. A node with several
/// (a union) reads them all as one input of one record type.
pub(crate) struct Input {
    pub from: usize,
    pub exchange: Exchange,
    pub edge: Arc<dyn EdgeNode>,
}

/// One operator of the logical graph.
pub(crate) struct Node {
    pub name: String,
    pub uid: Option<String>,
    pub parallelism: Option<u32>,
    pub kind: NodeKind,
    /// The edges into it: none for a source, several after a union.
    pub inputs: Vec<Input>,
}

impl Node {
    /// The uid state is stored under: the explicit one, or the operator's name.
    pub fn uid(&self) -> &str {
        self.uid.as_deref().unwrap_or(&self.name)
    }
}

/// A job ready to run: its operators and exchanges. Built by [`crate::api::JobBuilder`].
pub struct JobGraph {
    /// The job's name (used in checkpoint paths).
    pub name: String,
    pub(crate) nodes: Vec<Node>,
    /// Parallelism of operators that set none.
    pub default_parallelism: u32,
    /// Number of key groups.
    pub max_parallelism: u32,
}

impl std::fmt::Debug for JobGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobGraph")
            .field("name", &self.name)
            .field(
                "operators",
                &self.nodes.iter().map(|n| n.uid()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl JobGraph {
    /// How many edges leave node `node` (its consumers).
    pub(crate) fn consumers_of(&self, node: usize) -> usize {
        self.nodes
            .iter()
            .flat_map(|n| &n.inputs)
            .filter(|i| i.from == node)
            .count()
    }

    /// The parallelism node `node` runs at.
    pub(crate) fn parallelism_of(&self, node: usize) -> u32 {
        self.nodes[node]
            .parallelism
            .unwrap_or(self.default_parallelism)
    }

    /// Sets the parallelism of operators that did not set their own.
    pub fn set_default_parallelism(&mut self, parallelism: u32) {
        self.default_parallelism = parallelism;
    }

    /// The uids of all operators.
    pub fn uids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.uid().to_string()).collect()
    }

    /// Checks what the typed API cannot: unique uids, sane parallelism.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.max_parallelism == 0 || self.default_parallelism == 0 {
            return Err(Error::InvalidJob(
                "parallelism and max parallelism must be at least 1".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !seen.insert(node.uid()) {
                return Err(Error::InvalidJob(format!(
                    "two operators have uid {:?}; give one of them another name or .uid(...)",
                    node.uid()
                )));
            }
            let p = self.parallelism_of(i);
            if p == 0 || p > self.max_parallelism {
                return Err(Error::InvalidJob(format!(
                    "operator {} has parallelism {p}; it must be between 1 and max parallelism {}",
                    node.uid(),
                    self.max_parallelism
                )));
            }
        }
        Ok(())
    }
}

/// Downcasts a boxed factory value; a mismatch is an engine bug.
pub(crate) fn downcast<T: 'static>(value: Box<dyn Any + Send>, what: &str) -> Result<T> {
    value
        .downcast::<T>()
        .map(|b| *b)
        .map_err(|_| Error::Internal(format!("record types do not match at {what}")))
}

/// Unboxes a source task that [`deploy`](crate::exec::deploy::deploy) boxed as `Any`.
pub(crate) fn downcast_task(value: Box<dyn Any + Send>) -> Result<Box<dyn TaskBody>> {
    downcast::<Box<dyn TaskBody>>(value, "a source task")
}
