//! From a job graph to running tasks: chaining operators, wiring channels, restoring state.
//!
//! An operator joins its upstream's chain, and runs in the same task as plain
//! calls, when it has one input, the edge is forward at equal parallelism, and
//! it is the upstream's only consumer (as Flink chains). Every other edge becomes
//! channels, one per (upstream subtask, downstream subtask) pair: a union reads
//! the channels of all its inputs as one input, and a stream with several
//! consumers sends to each through a fan-out. Tasks are wired one after another
//! and then built several at once, since building one restores its state.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::{BuildCtx, Exchange, JobGraph, NodeKind};
use crate::checkpoint::restore::RestorePoint;
use crate::checkpoint::transfers::each_on_threads;
use crate::error::{Error, Result};
use crate::exec::config::ExecConfig;
use crate::exec::state_fit::StateFit;
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
    /// The chains feeding this one, one per input edge of its first node, in
    /// order (none for a source chain; several for a union).
    pub upstreams: Vec<usize>,
}

/// Groups the graph's nodes into chains.
pub fn chains(graph: &JobGraph) -> Vec<Chain> {
    let mut chains: Vec<Chain> = Vec::new();
    let mut chain_of = vec![0usize; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        let p = graph.parallelism_of(i);
        match node.inputs.as_slice() {
            [input]
                if input.exchange == Exchange::Forward
                    && graph.parallelism_of(input.from) == p
                    && graph.consumers_of(input.from) == 1 =>
            {
                let c = chain_of[input.from];
                chains[c].nodes.push(i);
                chain_of[i] = c;
            }
            inputs => {
                chains.push(Chain {
                    nodes: vec![i],
                    parallelism: p,
                    upstreams: inputs.iter().map(|input| chain_of[input.from]).collect(),
                });
                chain_of[i] = chains.len() - 1;
            }
        }
    }
    chains
}

/// Tasks built at once: building one restores its operators' state, which
/// mostly waits on storage (RocksDB instances download their files).
const BUILT_AT_ONCE: usize = 4;

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
    let fit = StateFit::of(graph, meta);
    if !allow_non_restored && !fit.dropped.is_empty() {
        return Err(Error::InvalidJob(format!(
            "checkpoint {} has state for operators the job does not have ({}); \
             restoring would drop it: allow non-restored state to go on without it",
            restore.location,
            fit.dropped.join(", ")
        )));
    }
    if !fit.dropped.is_empty() {
        tracing::warn!(dropped = %fit.dropped.join(", "), from = %restore.location, "restoring without the state of operators the job no longer has");
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

/// The data-plane id of the channel from subtask `up` of the chain feeding input
/// `input` of chain `chain` to subtask `down` of chain `chain`; every worker
/// computes the same. (Chains below 2^20, inputs below 16, subtasks below 2^20.)
pub fn channel_id(chain: usize, input: usize, up: u32, down: u32) -> u64 {
    ((chain as u64) << 44) | ((input as u64) << 40) | (u64::from(up) << 20) | u64::from(down)
}

/// Builds every task of `graph` (restoring state from `restore`) that runs here:
/// all of them, or with a `placement` those placed on this worker, wired to the
/// others through the data plane. Up to [`BUILT_AT_ONCE`] tasks restore at once.
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
    // receivers[c][j]: the inputs of subtask j of chain c, every input edge's
    // channels in order. senders[c][i]: the outputs of subtask i of chain c, per
    // consumer edge (the consuming chain, the input of its, one sender per
    // subtask of it).
    let mut receivers: Vec<Vec<Vec<Box<dyn Any + Send>>>> = chains
        .iter()
        .map(|c| (0..c.parallelism).map(|_| Vec::new()).collect())
        .collect();
    type Outputs = Vec<(usize, usize, Vec<Box<dyn Any + Send>>)>;
    let mut senders: Vec<Vec<Outputs>> = chains
        .iter()
        .map(|c| (0..c.parallelism).map(|_| Vec::new()).collect())
        .collect();
    for (c, chain) in chains.iter().enumerate() {
        for (k, &up) in chain.upstreams.iter().enumerate() {
            let edge = input_edge(graph, chain, k)?;
            for (i, outputs) in senders[up].iter_mut().enumerate() {
                let mut edge_outputs = Vec::new();
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
                            edge_outputs.push(tx);
                            inputs.push(rx);
                        }
                        (true, false, Some(p)) => {
                            let key = (p.attempt, channel_id(c, k, from.subtask, to.subtask));
                            edge_outputs.push(edge.remote_sender(p.connection(to)?, key));
                        }
                        (false, true, Some(p)) => {
                            let key = (p.attempt, channel_id(c, k, from.subtask, to.subtask));
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
                outputs.push((c, k, edge_outputs));
            }
        }
    }

    // Wired first, one after another; then built, which opens the operators
    // and restores their state, several tasks at once.
    let mut unbuilt = Vec::new();
    for (c, chain) in chains.iter().enumerate() {
        for i in 0..chain.parallelism {
            let id = TaskId {
                chain: c as u32,
                subtask: i,
            };
            if !local(id) {
                continue;
            }
            let metrics = metrics.task(id, attempt);
            let mut outputs = Vec::new();
            for (d, k, channels) in std::mem::take(&mut senders[c][i as usize]) {
                let edge = input_edge(graph, &chains[d], k)?;
                let output =
                    edge.output(channels, graph.max_parallelism, config, metrics.clone())?;
                outputs.push((edge, output));
            }
            let downstream: Box<dyn Any + Send> = match outputs.len() {
                0 => match &graph.nodes[chain.nodes[chain.nodes.len() - 1]].kind {
                    NodeKind::Source(s) => s.discard(),
                    NodeKind::Operator(o) => o.discard(),
                },
                1 => outputs
                    .pop()
                    .map(|(_, o)| o)
                    .ok_or_else(|| Error::Internal("an output vanished".into()))?,
                _ => {
                    let edge = outputs[0].0.clone();
                    edge.fanout(outputs.into_iter().map(|(_, o)| o).collect())?
                }
            };
            let inputs = std::mem::take(&mut receivers[c][i as usize]);
            unbuilt.push(Mutex::new(Some(WiredTask {
                id,
                downstream,
                inputs,
                metrics,
            })));
        }
    }
    let build = |slot: &Mutex<Option<WiredTask>>| {
        let wired = slot
            .lock()
            .map_err(|_| Error::Internal("a task's wiring was poisoned".into()))?
            .take()
            .ok_or_else(|| Error::Internal("a task was built twice".into()))?;
        let chain = &chains[wired.id.chain as usize];
        build_task(graph, chain, wired, restore, metrics, config, attempt)
    };
    each_on_threads(BUILT_AT_ONCE, &unbuilt, build)
}

/// A task wired to its channels, its operators not yet built.
struct WiredTask {
    id: TaskId,
    /// Where the chain's last operator sends its output.
    downstream: Box<dyn Any + Send>,
    /// The chain's input channels (none for a source chain).
    inputs: Vec<Box<dyn Any + Send>>,
    metrics: Arc<crate::metrics::TaskMetrics>,
}

/// Builds `wired`'s operators, last first, opening each on its restored state.
fn build_task(
    graph: &JobGraph,
    chain: &Chain,
    wired: WiredTask,
    restore: Option<&RestorePoint>,
    metrics: &JobMetrics,
    config: &ExecConfig,
    attempt: u64,
) -> Result<DeployedTask> {
    let subtask = Subtask {
        index: wired.id.subtask,
        parallelism: chain.parallelism,
    };
    let mut downstream = wired.downstream;
    let mut is_source = false;
    for &n in chain.nodes.iter().rev() {
        let ctx = build_ctx(graph, n, subtask, restore, metrics, config, attempt)?;
        match &graph.nodes[n].kind {
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
        input_edge(graph, chain, 0)?.input_task(wired.inputs, downstream, config.batch_size)?
    };
    Ok(DeployedTask {
        id: wired.id,
        is_source,
        body,
        metrics: wired.metrics,
    })
}

/// The edge of input `k` of `chain`'s first node.
fn input_edge<'g>(
    graph: &'g JobGraph,
    chain: &Chain,
    k: usize,
) -> Result<&'g Arc<dyn crate::api::EdgeNode>> {
    graph.nodes[chain.nodes[0]]
        .inputs
        .get(k)
        .map(|i| &i.edge)
        .ok_or_else(|| Error::Internal(format!("a chain has no input {k}")))
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
    let metrics = metrics.operator(&uid.0, subtask.index, is_source);
    Ok(BuildCtx {
        metrics: metrics.clone(),
        op: OperatorContext {
            job: graph.name.clone(),
            uid,
            name: n.name.clone(),
            subtask,
            max_parallelism: graph.max_parallelism,
            key_groups,
            attempt,
            state: config.state.clone(),
            checkpoint_interval: config.checkpoint_interval,
            metrics,
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
        let plan: Vec<(Vec<usize>, u32, Vec<usize>)> = chains(&graph)
            .into_iter()
            .map(|c| (c.nodes, c.parallelism, c.upstreams))
            .collect();
        assert_eq!(
            plan,
            vec![
                (vec![0, 1], 2, vec![]), // numbers -> double: forward, both 2
                (vec![2], 2, vec![0]),   // sum: behind the key exchange
                (vec![3], 3, vec![1]),   // print: forward but parallelism 2 -> 3
                (vec![4], 3, vec![2]),   // out: behind a rebalance
            ]
        );
    }

    #[test]
    fn a_stream_with_several_consumers_and_a_union_end_chains() {
        let job = JobBuilder::new("dag");
        let numbers = job.source("numbers", |_| SequenceSource::new(0..10));
        let evens = numbers
            .clone()
            .filter("evens", |n: &u64| n.is_multiple_of(2));
        let odds = numbers.filter("odds", |n: &u64| !n.is_multiple_of(2));
        let more = job.source("more", |_| SequenceSource::new(10..20));
        evens
            .union(odds)
            .union(more)
            .map("all", |n: u64| n)
            .sink("out", |_| DiscardSink::new());
        let graph = job.build().unwrap();
        let plan: Vec<(Vec<usize>, Vec<usize>)> = chains(&graph)
            .into_iter()
            .map(|c| (c.nodes, c.upstreams))
            .collect();
        assert_eq!(
            plan,
            vec![
                (vec![0], vec![]),           // numbers: two consumers, so no chaining
                (vec![1], vec![0]),          // evens
                (vec![2], vec![0]),          // odds
                (vec![3], vec![]),           // more
                (vec![4, 5], vec![1, 2, 3]), // all <- evens + odds + more, then out
            ]
        );
        assert_ne!(channel_id(4, 0, 1, 1), channel_id(4, 1, 1, 1));
    }

    /// Passes records on; its `open` returns once all `subtasks` of it are
    /// opening, or fails after a while.
    struct MeetsItsPeers {
        opening: Arc<(Mutex<u32>, std::sync::Condvar)>,
        subtasks: u32,
    }

    impl crate::operator::Operator for MeetsItsPeers {
        type In = u64;
        type Out = u64;

        fn open(
            &mut self,
            _ctx: &OperatorContext,
            _restored: Option<crate::state::RestoredState>,
        ) -> Result<()> {
            let (count, all_in) = &*self.opening;
            let mut opening = count.lock().unwrap();
            *opening += 1;
            all_in.notify_all();
            let (opening, _) = all_in
                .wait_timeout_while(opening, Duration::from_secs(10), |n| *n < self.subtasks)
                .unwrap();
            match *opening >= self.subtasks {
                true => Ok(()),
                false => Err(Error::Internal(format!(
                    "{} of {} subtasks opened together",
                    *opening, self.subtasks
                ))),
            }
        }

        fn process(
            &mut self,
            input: &mut crate::data::Batch<u64>,
            output: &mut crate::data::Batch<u64>,
        ) -> Result<()> {
            output.append(input);
            Ok(())
        }
    }

    #[test]
    fn the_subtasks_of_an_operator_are_built_and_restored_at_once() {
        let job = JobBuilder::new("restores");
        let opening = Arc::new((Mutex::new(0), std::sync::Condvar::new()));
        job.source("numbers", |_| SequenceSource::new(0..10))
            .rebalance()
            .transform("meets", move |_| MeetsItsPeers {
                opening: opening.clone(),
                subtasks: 3,
            })
            .parallelism(3)
            .sink("out", |_| DiscardSink::new())
            .parallelism(3);
        let graph = job.build().unwrap();
        let tasks = deploy(
            &graph,
            &ExecConfig::default(),
            None,
            &JobMetrics::default(),
            1,
            None,
        )
        .unwrap();
        assert_eq!(tasks.len(), 4);
    }

    #[test]
    fn settings_on_a_union_are_refused_naming_them() {
        let job = JobBuilder::new("dag");
        let a = job.source("a", |_| SequenceSource::new(0..10));
        let b = job.source("b", |_| SequenceSource::new(0..10));
        a.union(b)
            .parallelism(2)
            .sink("out", |_| DiscardSink::new());
        let err = job.build().unwrap_err().to_string();
        assert!(err.contains("a parallelism was set on a union"), "{err}");
    }
}
