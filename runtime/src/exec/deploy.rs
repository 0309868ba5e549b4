//! From a job graph to running tasks: chaining operators, wiring channels, restoring state.
//!
//! Consecutive operators joined by a forward edge at equal parallelism form one
//! chain and run in one task as plain calls. Every other edge becomes channels,
//! one per (upstream subtask, downstream subtask) pair.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{BuildCtx, Exchange, JobGraph, NodeKind};
use crate::checkpoint::restore::RestorePoint;
use crate::error::{Error, Result};
use crate::exec::config::ExecConfig;
use crate::exec::task::TaskBody;
use crate::ids::{OperatorUid, Subtask, TaskId};
use crate::keys::KeyGroupRange;
use crate::metrics::JobMetrics;
use crate::net::{Connection, DataPlane};
use crate::operator::OperatorContext;

/// A group of operators that run in one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Graph nodes, upstream first.
    pub nodes: Vec<usize>,
    /// Parallelism of every node in the chain.
    pub parallelism: u32,
    /// The chain feeding this one, if it is not a source chain.
    pub upstream: Option<usize>,
}

/// Groups the graph's nodes into chains.
pub fn chains(graph: &JobGraph) -> Vec<Chain> {
    let mut chains: Vec<Chain> = Vec::new();
    let mut chain_of = vec![0usize; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        let p = graph.parallelism_of(i);
        match &node.input {
            Some(input)
                if input.exchange == Exchange::Forward && graph.parallelism_of(input.from) == p =>
            {
                let c = chain_of[input.from];
                chains[c].nodes.push(i);
                chain_of[i] = c;
            }
            input => {
                chains.push(Chain {
                    nodes: vec![i],
                    parallelism: p,
                    upstream: input.as_ref().map(|input| chain_of[input.from]),
                });
                chain_of[i] = chains.len() - 1;
            }
        }
    }
    chains
}

/// A deployed task, ready to be started on a thread.
pub struct DeployedTask {
    /// Its id.
    pub id: TaskId,
    /// Whether it is fed by a source.
    pub is_source: bool,
    /// What it runs.
    pub body: Box<dyn TaskBody>,
    /// Its wait-time counters.
    pub metrics: Arc<crate::metrics::TaskMetrics>,
}

/// Checks that `restore` fits `graph`: same key groups, and no state of operators
/// the job no longer has (unless `allow_non_restored`).
pub fn check_restore(
    graph: &JobGraph,
    restore: &RestorePoint,
    allow_non_restored: bool,
) -> Result<()> {
    let meta = &restore.metadata;
    if meta.job != graph.name {
        return Err(Error::InvalidJob(format!(
            "{} is a checkpoint of job {:?}, not of {:?}",
            restore.location, meta.job, graph.name
        )));
    }
    if meta.max_parallelism != graph.max_parallelism {
        return Err(Error::InvalidJob(format!(
            "checkpoint {} has max parallelism {}, the job {}; it is fixed for the life of the state",
            restore.location, meta.max_parallelism, graph.max_parallelism
        )));
    }
    let uids = graph.uids();
    for op in &meta.operators {
        if !allow_non_restored && !uids.contains(&op.uid.0) {
            return Err(Error::InvalidJob(format!(
                "checkpoint {} has state for operator {:?}, which the job does not have",
                restore.location, op.uid.0
            )));
        }
    }
    Ok(())
}

/// Where the tasks of an attempt run when they are spread over worker processes.
pub struct Placement {
    /// The attempt (every data frame carries it).
    pub attempt: u64,
    /// This worker's id.
    pub me: String,
    /// The worker of every task.
    pub workers: HashMap<TaskId, String>,
    /// The data-plane address of every worker.
    pub addresses: HashMap<String, String>,
    /// This worker's data plane.
    pub plane: Arc<DataPlane>,
    /// How long to wait for a peer's data connection.
    pub connect_timeout: Duration,
}

impl Placement {
    fn is_local(&self, task: TaskId) -> bool {
        self.workers.get(&task) == Some(&self.me)
    }

    fn connection(&self, task: TaskId) -> Result<Arc<Connection>> {
        let peer = self
            .workers
            .get(&task)
            .ok_or_else(|| Error::Internal(format!("task {task} has no worker")))?;
        let address = self
            .addresses
            .get(peer)
            .ok_or_else(|| Error::Internal(format!("worker {peer} has no data address")))?;
        self.plane.connection(peer, address, self.connect_timeout)
    }
}

/// A base for attempt numbers that differs between processes and restarts (the high
/// 32 bits), so that attempts of a restarted coordinator never reuse an old number.
pub fn attempt_base() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (crate::keys::mix(nanos ^ u64::from(std::process::id())) & 0x7fff_ffff) << 32
}

/// The data-plane id of the channel from subtask `up` of chain `chain`'s upstream
/// to subtask `down` of chain `chain`; every worker computes the same.
pub fn channel_id(chain: usize, up: u32, down: u32) -> u64 {
    ((chain as u64) << 40) | (u64::from(up) << 20) | u64::from(down)
}

/// Builds every task of `graph` (restoring state from `restore`) that runs here:
/// all of them, or with a `placement` those placed on this worker, wired to the
/// others through the data plane.
pub fn deploy(
    graph: &JobGraph,
    config: &ExecConfig,
    restore: Option<&RestorePoint>,
    metrics: &JobMetrics,
    attempt: u64,
    placement: Option<&Placement>,
) -> Result<Vec<DeployedTask>> {
    let local = |task: TaskId| placement.is_none_or(|p| p.is_local(task));
    let chains = chains(graph);
    // receivers[c][j] are the inputs of subtask j of chain c; senders[c][i] the outputs
    // of subtask i of chain c, one per subtask of its consumer.
    let mut receivers: Vec<Vec<Vec<Box<dyn Any>>>> = chains
        .iter()
        .map(|c| (0..c.parallelism).map(|_| Vec::new()).collect())
        .collect();
    let mut senders: Vec<Vec<Vec<Box<dyn Any>>>> = receivers
        .iter()
        .map(|r| r.iter().map(|_| Vec::new()).collect())
        .collect();
    for (c, chain) in chains.iter().enumerate() {
        let Some(up) = chain.upstream else { continue };
        let edge = input_edge(graph, chain)?;
        for (i, outputs) in senders[up].iter_mut().enumerate() {
            for (j, inputs) in receivers[c].iter_mut().enumerate() {
                let from = TaskId {
                    chain: up as u32,
                    subtask: i as u32,
                };
                let to = TaskId {
                    chain: c as u32,
                    subtask: j as u32,
                };
                match (local(from), local(to), placement) {
                    (true, true, _) => {
                        let (tx, rx) = edge.channel(config.channel_capacity);
                        outputs.push(tx);
                        inputs.push(rx);
                    }
                    (true, false, Some(p)) => {
                        let key = (p.attempt, channel_id(c, from.subtask, to.subtask));
                        outputs.push(edge.remote_sender(p.connection(to)?, key));
                    }
                    (false, true, Some(p)) => {
                        let key = (p.attempt, channel_id(c, from.subtask, to.subtask));
                        let conn = p.connection(from)?;
                        inputs.push(edge.remote_receiver(
                            &p.plane,
                            &conn,
                            key,
                            config.channel_capacity,
                        )?);
                    }
                    _ => {}
                }
            }
        }
    }
    let consumer: Vec<Option<usize>> = (0..chains.len())
        .map(|c| chains.iter().position(|d| d.upstream == Some(c)))
        .collect();

    let mut tasks = Vec::new();
    for (c, chain) in chains.iter().enumerate() {
        for i in 0..chain.parallelism {
            if !local(TaskId {
                chain: c as u32,
                subtask: i,
            }) {
                continue;
            }
            let task_metrics = metrics.task();
            let outputs = std::mem::take(&mut senders[c][i as usize]);
            let mut downstream: Box<dyn Any> = match consumer[c] {
                Some(d) => input_edge(graph, &chains[d])?.output(
                    outputs,
                    graph.max_parallelism,
                    config,
                    task_metrics.clone(),
                )?,
                None => match &graph.nodes[chain.nodes[chain.nodes.len() - 1]].kind {
                    NodeKind::Source(s) => s.discard(),
                    NodeKind::Operator(o) => o.discard(),
                },
            };
            let subtask = Subtask {
                index: i,
                parallelism: chain.parallelism,
            };
            let mut is_source = false;
            for &n in chain.nodes.iter().rev() {
                let node = &graph.nodes[n];
                let ctx = build_ctx(graph, n, subtask, restore, metrics, config, attempt)?;
                match &node.kind {
                    NodeKind::Operator(op) => downstream = op.build(ctx, downstream)?,
                    NodeKind::Source(source) => {
                        let body = source.build(ctx, downstream)?;
                        is_source = true;
                        downstream = Box::new(body);
                    }
                }
            }
            let body: Box<dyn TaskBody> = if is_source {
                crate::api::downcast_task(downstream)?
            } else {
                let inputs = std::mem::take(&mut receivers[c][i as usize]);
                input_edge(graph, chain)?.input_task(inputs, downstream)?
            };
            tasks.push(DeployedTask {
                id: TaskId {
                    chain: c as u32,
                    subtask: i,
                },
                is_source,
                body,
                metrics: task_metrics,
            });
        }
    }
    Ok(tasks)
}

fn input_edge<'g>(graph: &'g JobGraph, chain: &Chain) -> Result<&'g Arc<dyn crate::api::EdgeNode>> {
    graph.nodes[chain.nodes[0]]
        .input
        .as_ref()
        .map(|i| &i.edge)
        .ok_or_else(|| Error::Internal("a non-source chain has no input".into()))
}

fn build_ctx<'c>(
    graph: &JobGraph,
    node: usize,
    subtask: Subtask,
    restore: Option<&RestorePoint>,
    metrics: &JobMetrics,
    config: &'c ExecConfig,
    attempt: u64,
) -> Result<BuildCtx<'c>> {
    let n = &graph.nodes[node];
    let uid = OperatorUid(n.uid().to_string());
    let key_groups =
        KeyGroupRange::for_subtask(subtask.index, subtask.parallelism, graph.max_parallelism);
    let restored = match restore {
        Some(point) => point.state_for(&uid, subtask, key_groups)?,
        None => None,
    };
    let is_source = matches!(n.kind, NodeKind::Source(_));
    Ok(BuildCtx {
        metrics: metrics.operator(&uid.0, subtask.index, is_source),
        op: OperatorContext {
            uid,
            name: n.name.clone(),
            subtask,
            max_parallelism: graph.max_parallelism,
            key_groups,
            attempt,
            state: config.state.clone(),
        },
        restored,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::JobBuilder;
    use crate::operators::{DiscardSink, SequenceSource};

    #[test]
    fn forward_edges_at_equal_parallelism_are_chained_and_others_are_not() {
        let mut job = JobBuilder::new("plan");
        job.parallelism(2);
        job.source("numbers", |_| SequenceSource::new(0..10))
            .map("double", |n: u64| n * 2)
            .key_by(|n: &u64| *n)
            .sum("sum", |n: &u64| *n as i64)
            .map("print", |r: (u64, i64)| r.1)
            .parallelism(3)
            .rebalance()
            .sink("out", |_| DiscardSink::new())
            .parallelism(3);
        let graph = job.build().unwrap();
        let plan: Vec<(Vec<usize>, u32, Option<usize>)> = chains(&graph)
            .into_iter()
            .map(|c| (c.nodes, c.parallelism, c.upstream))
            .collect();
        assert_eq!(
            plan,
            vec![
                (vec![0, 1], 2, None), // numbers -> double: forward, both 2
                (vec![2], 2, Some(0)), // sum: behind the key exchange
                (vec![3], 3, Some(1)), // print: forward but parallelism 2 -> 3
                (vec![4], 3, Some(2)), // out: behind a rebalance
            ]
        );
    }
}
