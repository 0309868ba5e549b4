//! Deploying attempts on workers: wait for slots, place subtasks, send `Deploy`,
//! and relay control messages and task events for the job runner.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use weir_proto::v1::{self, coordinator_message::Body as Command};

use crate::api::{JobGraph, NodeKind};
use crate::checkpoint::restore::RestorePoint;
use crate::cluster::convert::task_to_wire;
use crate::cluster::coordinator::shared::Shared;
use crate::cluster::coordinator::status::StatusBoard;
use crate::data::{SavepointFormat, SnapshotKind};
use crate::error::{Error, Result};
use crate::exec::deploy::chains;
use crate::exec::runner::{Deployer, Deployment};
use crate::exec::task::{Control, TaskEvent};
use crate::ids::TaskId;
use crate::metrics::JobMetrics;

/// Deploys attempts on the registered workers.
pub struct RemoteDeployer {
    /// Workers and the attempt.
    pub shared: Arc<Shared>,
    /// What to report.
    pub status: Arc<StatusBoard>,
    /// The job, as workers rebuild it.
    pub spec: v1::JobSpec,
    /// Base URI of checkpoint storage.
    pub checkpoint_uri: String,
    /// The deployment's keys in it.
    pub paths: crate::checkpoint::paths::Paths,
    /// Attempts are numbered from here, unique to this coordinator process.
    pub attempt_base: u64,
    /// Whether subtask `k` of every chain shares slot `k` (else each has its own).
    pub slot_sharing: bool,
}

/// Slots a job with these chain parallelisms needs: its largest parallelism with
/// slot sharing, one per subtask without.
pub fn slots_needed(chain_parallelism: &[u32], slot_sharing: bool) -> u32 {
    if slot_sharing {
        chain_parallelism.iter().copied().max().unwrap_or(0)
    } else {
        chain_parallelism.iter().sum()
    }
}

/// With slot sharing, subtask `k` of every chain goes to slot `k` (as in Flink),
/// so a job needs as many slots as its largest parallelism; without, every
/// subtask takes the next free slot, chain by chain (a chain's subtasks fill one
/// worker before the next chain starts on the following one). Slots are taken
/// from the workers in id order. Returns `None` if there are too few slots.
pub fn place(
    chain_parallelism: &[u32],
    workers: &BTreeMap<String, u32>,
    slot_sharing: bool,
) -> Option<HashMap<TaskId, String>> {
    let slots: Vec<&String> = workers
        .iter()
        .flat_map(|(id, n)| std::iter::repeat_n(id, *n as usize))
        .collect();
    if slots.len() < slots_needed(chain_parallelism, slot_sharing) as usize {
        return None;
    }
    let mut placement = HashMap::new();
    let mut next = 0;
    for (c, p) in chain_parallelism.iter().enumerate() {
        for s in 0..*p {
            let slot = if slot_sharing { s as usize } else { next };
            next += 1;
            placement.insert(
                TaskId {
                    chain: c as u32,
                    subtask: s,
                },
                slots[slot].clone(),
            );
        }
    }
    Some(placement)
}

impl Deployer for RemoteDeployer {
    fn deploy(
        &self,
        graph: &JobGraph,
        restore: Option<&RestorePoint>,
        _: &Arc<JobMetrics>,
    ) -> Result<Box<dyn Deployment>> {
        let plan = chains(graph);
        let parallelism: Vec<u32> = plan.iter().map(|c| c.parallelism).collect();
        let sources: Vec<TaskId> = plan
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(graph.nodes[c.nodes[0]].kind, NodeKind::Source(_)))
            .flat_map(|(i, c)| {
                (0..c.parallelism).map(move |s| TaskId {
                    chain: i as u32,
                    subtask: s,
                })
            })
            .collect();
        let mut inner = self.shared.lock();
        let mut last_log = Instant::now() - Duration::from_secs(60);
        let placement = loop {
            let workers: BTreeMap<String, u32> = inner
                .workers
                .iter()
                .map(|(id, w)| (id.clone(), w.slots))
                .collect();
            if let Some(p) = place(&parallelism, &workers, self.slot_sharing) {
                break p;
            }
            if self.status.handle.is_canceled() {
                return Err(Error::Internal(
                    "cancelled while waiting for worker slots".into(),
                ));
            }
            let message = format!(
                "waiting for worker slots: {} registered, {} needed",
                inner.slots(),
                self.status.slots_needed
            );
            if last_log.elapsed() >= Duration::from_secs(10) {
                tracing::info!("{message}");
                last_log = Instant::now();
            }
            self.status.set(v1::JobState::WaitingForSlots, message);
            inner = self
                .shared
                .changed
                .wait_timeout(inner, Duration::from_secs(1))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        };
        let (events_tx, events) = unbounded();
        inner.attempt.number = inner.attempt.number.max(self.attempt_base) + 1;
        let attempt = inner.attempt.number;
        inner.attempt.events = Some(events_tx);
        inner.attempt.placement = placement.clone();
        inner.attempt.ended.clear();
        let involved: BTreeSet<String> = placement.values().cloned().collect();
        let data_addresses: HashMap<String, String> = involved
            .iter()
            .filter_map(|w| {
                inner
                    .workers
                    .get(w)
                    .map(|e| (w.clone(), e.data_address.clone()))
            })
            .collect();
        let deploy = v1::Deploy {
            attempt,
            job: Some(self.spec.clone()),
            placements: placement
                .iter()
                .map(|(t, w)| v1::TaskPlacement {
                    task: Some(task_to_wire(*t)),
                    worker_id: w.clone(),
                })
                .collect(),
            data_addresses,
            restore_from: restore.map(|r| r.location.clone()).unwrap_or_default(),
            checkpoint_uri: self.checkpoint_uri.clone(),
            job_id: self.paths.id().to_string(),
            restore_owned: restore.is_some_and(|r| r.owned),
        };
        for worker in &involved {
            inner.command(worker, Command::Deploy(deploy.clone()));
        }
        tracing::info!(
            attempt,
            workers = involved.len(),
            tasks = placement.len(),
            "deployed"
        );
        self.status.set(v1::JobState::Running, "");
        Ok(Box::new(RemoteDeployment {
            shared: self.shared.clone(),
            attempt,
            placement,
            sources,
            events,
        }))
    }
}

/// The tasks of one attempt on the workers.
pub struct RemoteDeployment {
    shared: Arc<Shared>,
    attempt: u64,
    placement: HashMap<TaskId, String>,
    sources: Vec<TaskId>,
    events: Receiver<TaskEvent>,
}

impl RemoteDeployment {
    fn workers(&self) -> BTreeSet<&String> {
        self.placement.values().collect()
    }

    fn command(&self, control: Control, task: Option<TaskId>) -> Command {
        let attempt = self.attempt;
        match control {
            Control::Trigger(barrier) | Control::Stop(barrier) => {
                Command::Trigger(v1::TriggerCheckpoint {
                    attempt,
                    checkpoint_id: barrier.id.0,
                    tasks: task.map(task_to_wire).into_iter().collect(),
                    stop: matches!(control, Control::Stop(_)),
                    savepoint: barrier.kind.is_savepoint(),
                    last_completed: barrier.last_completed.map_or(0, |c| c.0),
                    canonical: barrier.kind == SnapshotKind::Savepoint(SavepointFormat::Canonical),
                })
            }
            Control::Complete(id) => Command::Complete(v1::CompleteCheckpoint {
                attempt,
                checkpoint_id: id.0,
            }),
            Control::Fail => Command::Fail(v1::FailTask {
                attempt,
                task: task.map(task_to_wire),
            }),
            Control::Cancel => Command::Cancel(v1::CancelAttempt { attempt }),
            Control::Finish => Command::Finish(v1::FinishAttempt { attempt }),
        }
    }
}

impl Deployment for RemoteDeployment {
    fn tasks(&self) -> Vec<TaskId> {
        let mut tasks: Vec<TaskId> = self.placement.keys().copied().collect();
        tasks.sort();
        tasks
    }

    fn sources(&self) -> Vec<TaskId> {
        self.sources.clone()
    }

    fn send(&self, task: TaskId, control: Control) {
        if let Some(worker) = self.placement.get(&task) {
            self.shared
                .lock()
                .command(worker, self.command(control, Some(task)));
        }
    }

    fn broadcast(&self, control: Control) {
        let inner = self.shared.lock();
        for worker in self.workers() {
            inner.command(worker, self.command(control, None));
        }
    }

    fn events(&self) -> &Receiver<TaskEvent> {
        &self.events
    }

    /// Tells the workers to stop the attempt and waits (at most 10 s) until every
    /// task has exited or its worker is gone; then the attempt's events stop.
    fn stop(self: Box<Self>, control: Control) {
        self.broadcast(control);
        let mut remaining: BTreeSet<TaskId> = self.placement.keys().copied().collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !remaining.is_empty() && Instant::now() < deadline {
            if let Ok(TaskEvent::Exited(t) | TaskEvent::Failed(t, _)) =
                self.events.recv_timeout(Duration::from_millis(100))
            {
                remaining.remove(&t);
            }
            // A task whose end the job loop saw already (its failure may be
            // what stops the attempt), or whose worker is gone, is done.
            let inner = self.shared.lock();
            remaining.retain(|t| {
                !inner.attempt.ended.contains(t)
                    && self
                        .placement
                        .get(t)
                        .is_some_and(|w| inner.workers.contains_key(w))
            });
        }
        if !remaining.is_empty() {
            tracing::warn!(
                attempt = self.attempt,
                tasks = remaining.len(),
                "tasks did not confirm they stopped within 10 s"
            );
        }
        let mut inner = self.shared.lock();
        if inner.attempt.number == self.attempt {
            inner.attempt.events = None;
            inner.attempt.placement.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_sharing_places_subtask_k_of_every_chain_in_slot_k() {
        let workers: BTreeMap<String, u32> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        let p = place(&[3, 2], &workers, true).unwrap();
        let at = |c, s| {
            p[&TaskId {
                chain: c,
                subtask: s,
            }]
                .as_str()
        };
        assert_eq!((at(0, 0), at(0, 1), at(0, 2)), ("a", "b", "b"));
        assert_eq!((at(1, 0), at(1, 1)), ("a", "b"));
        assert!(
            place(&[4], &workers, true).is_none(),
            "3 slots cannot run parallelism 4"
        );
    }

    #[test]
    fn without_slot_sharing_every_subtask_has_its_own_slot() {
        let workers: BTreeMap<String, u32> = [("a".to_string(), 2), ("b".to_string(), 2)].into();
        let p = place(&[2, 2], &workers, false).unwrap();
        let at = |c, s| {
            p[&TaskId {
                chain: c,
                subtask: s,
            }]
                .as_str()
        };
        assert_eq!((at(0, 0), at(0, 1)), ("a", "a"));
        assert_eq!((at(1, 0), at(1, 1)), ("b", "b"));
        assert!(
            place(&[2, 3], &workers, false).is_none(),
            "5 subtasks, 4 slots"
        );
        assert_eq!(slots_needed(&[2, 3], false), 5);
        assert_eq!(slots_needed(&[2, 3], true), 3);
    }

    #[test]
    fn stopping_does_not_wait_again_for_a_task_whose_failure_stopped_the_attempt() {
        use crate::cluster::coordinator::shared::WorkerEntry;
        let shared = Arc::new(Shared::default());
        let task = TaskId {
            chain: 0,
            subtask: 1,
        };
        let (commands, _session) = tokio::sync::mpsc::unbounded_channel();
        let (events_tx, events) = crossbeam_channel::unbounded();
        {
            let mut inner = shared.lock();
            inner.workers.insert(
                "w1".into(),
                WorkerEntry {
                    slots: 1,
                    data_address: "127.0.0.1:1".into(),
                    commands,
                    last_seen: Instant::now(),
                    session: 1,
                    counters: Default::default(),
                    loads: Vec::new(),
                },
            );
            inner.attempt.number = 7;
            inner.attempt.events = Some(events_tx);
            inner.attempt.placement = [(task, "w1".to_string())].into();
            // The worker reports the task failed; the job loop takes the event.
            inner.event(
                7,
                TaskEvent::Failed(task, Error::Internal("peer gone".into())),
            );
        }
        assert!(matches!(events.try_recv(), Ok(TaskEvent::Failed(..))));
        let deployment = Box::new(RemoteDeployment {
            shared,
            attempt: 7,
            placement: [(task, "w1".to_string())].into(),
            sources: Vec::new(),
            events,
        });
        let started = Instant::now();
        deployment.stop(Control::Cancel);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited {:?} for a task that had ended",
            started.elapsed()
        );
    }
}
