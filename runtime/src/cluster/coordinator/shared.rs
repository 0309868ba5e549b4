//! The coordinator's view of its workers and of the running attempt, shared by the
//! gRPC sessions, the heartbeat monitor and the job runner.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use tokio::sync::mpsc::UnboundedSender;
use tonic::Status;
use weir_proto::v1::{self, coordinator_message::Body as Command};

use crate::error::Error;
use crate::exec::task::TaskEvent;
use crate::ids::TaskId;

/// Commands to one worker's session.
pub type CommandSender = UnboundedSender<Result<v1::CoordinatorMessage, Status>>;

/// A registered worker.
pub struct WorkerEntry {
    /// Its slots.
    pub slots: u32,
    /// Its data-plane address.
    pub data_address: String,
    /// Its session's command stream.
    pub commands: CommandSender,
    /// When it was last heard from.
    pub last_seen: Instant,
    /// Distinguishes a session from an earlier one of the same worker id.
    pub session: u64,
    /// Its counters, from its latest heartbeat.
    pub counters: Counters,
    /// Where its current tasks' time went, from its latest heartbeat.
    pub loads: Vec<v1::TaskLoad>,
}

/// Counters reported by workers, summed.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Records in and out per operator subtask.
    pub operators: Vec<v1::OperatorCounters>,
    /// Time blocked on full outputs, in ns.
    pub backpressured_ns: u64,
    /// Time spent aligning barriers, in ns.
    pub alignment_ns: u64,
}

impl Counters {
    /// Adds `other` into these counters.
    pub fn add(&mut self, other: &Counters) {
        for o in &other.operators {
            match self
                .operators
                .iter_mut()
                .find(|x| x.uid == o.uid && x.subtask == o.subtask)
            {
                Some(x) => {
                    x.records_in += o.records_in;
                    x.records_out += o.records_out;
                    x.watermark_ms = x.watermark_ms.max(o.watermark_ms);
                }
                None => self.operators.push(o.clone()),
            }
        }
        self.backpressured_ns += other.backpressured_ns;
        self.alignment_ns += other.alignment_ns;
    }

    /// The counters a heartbeat carries.
    pub fn from_heartbeat(beat: &v1::Heartbeat) -> Self {
        Counters {
            operators: beat.operators.clone(),
            backpressured_ns: beat.tasks.iter().map(|t| t.backpressured_ns).sum(),
            alignment_ns: beat.tasks.iter().map(|t| t.alignment_ns).sum(),
        }
    }
}

/// The running attempt, as far as the sessions need to know it.
#[derive(Default)]
pub struct Attempt {
    /// Its number; 0 before the first deploy.
    pub number: u64,
    /// Where its task events go (`None` once it was stopped).
    pub events: Option<Sender<TaskEvent>>,
    /// The worker of each of its tasks.
    pub placement: HashMap<TaskId, String>,
    /// Its tasks that reported their end (exited or failed), whoever consumed
    /// the event: stopping the attempt does not wait for them again.
    pub ended: HashSet<TaskId>,
}

/// Everything under the coordinator's one lock.
#[derive(Default)]
pub struct Inner {
    /// Registered workers by id.
    pub workers: BTreeMap<String, WorkerEntry>,
    /// The current attempt.
    pub attempt: Attempt,
    /// Set once the job is over: workers leaving then is expected.
    pub closing: bool,
    /// Counters of workers that are gone, so totals never go down.
    pub retired: Counters,
    next_session: u64,
}

impl Inner {
    /// Total slots of the registered workers.
    pub fn slots(&self) -> u32 {
        self.workers.values().map(|w| w.slots).sum()
    }

    /// Counters over every worker, present and gone, sorted by operator and subtask.
    pub fn counters(&self) -> Counters {
        let mut total = self.retired.clone();
        for w in self.workers.values() {
            total.add(&w.counters);
        }
        total
            .operators
            .sort_by(|a, b| (&a.uid, a.subtask).cmp(&(&b.uid, b.subtask)));
        total
    }

    /// Sends a command to worker `id`, if it is still registered.
    pub fn command(&self, id: &str, body: Command) {
        if let Some(w) = self.workers.get(id) {
            let _ = w
                .commands
                .send(Ok(v1::CoordinatorMessage { body: Some(body) }));
        }
    }

    /// Forwards a task event of `attempt` to the runner; events of other attempts
    /// (for example from a worker that was stalled) are dropped.
    pub fn event(&mut self, attempt: u64, event: TaskEvent) {
        if attempt == self.attempt.number {
            if let TaskEvent::Exited(t) | TaskEvent::Failed(t, _) = &event {
                self.attempt.ended.insert(*t);
            }
            if let Some(events) = &self.attempt.events {
                let _ = events.send(event);
            }
        }
    }
}

/// The coordinator's shared state.
#[derive(Default)]
pub struct Shared {
    inner: Mutex<Inner>,
    /// Signalled when workers come or go.
    pub changed: Condvar,
}

impl Shared {
    /// Locks the state.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or re-registers) a worker; returns its session number.
    pub fn register(
        &self,
        id: &str,
        slots: u32,
        data_address: String,
        commands: CommandSender,
    ) -> u64 {
        let mut inner = self.lock();
        inner.next_session += 1;
        let session = inner.next_session;
        if inner.workers.contains_key(id) {
            lose(&mut inner, id, "it registered again");
        }
        inner.workers.insert(
            id.to_string(),
            WorkerEntry {
                slots,
                data_address,
                commands,
                last_seen: Instant::now(),
                session,
                counters: Counters::default(),
                loads: Vec::new(),
            },
        );
        tracing::info!(
            worker = id,
            slots,
            total_slots = inner.slots(),
            "worker registered"
        );
        drop(inner);
        self.changed.notify_all();
        session
    }

    /// Forgets worker `id`'s session `session` (if it is still the current one):
    /// its tasks of the running attempt fail, which restarts the job.
    pub fn lose(&self, id: &str, session: u64, reason: &str) {
        let mut inner = self.lock();
        if inner.workers.get(id).is_some_and(|w| w.session == session) {
            lose(&mut inner, id, reason);
            drop(inner);
            self.changed.notify_all();
        }
    }

    /// Tells every worker the coordinator is alive.
    pub fn ping(&self) {
        let inner = self.lock();
        for id in inner.workers.keys() {
            inner.command(id, Command::Ping(v1::Ping {}));
        }
    }

    /// Loses every worker not heard from within `timeout`.
    pub fn expire(&self, timeout: Duration) {
        let mut inner = self.lock();
        let late: Vec<String> = inner
            .workers
            .iter()
            .filter(|(_, w)| w.last_seen.elapsed() > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &late {
            lose(&mut inner, id, &format!("no heartbeat for {timeout:?}"));
        }
        drop(inner);
        if !late.is_empty() {
            self.changed.notify_all();
        }
    }
}

fn lose(inner: &mut Inner, id: &str, reason: &str) {
    // Dropping the entry drops its command stream: the worker sees its session end,
    // cancels its tasks and registers again.
    let Some(entry) = inner.workers.remove(id) else {
        return;
    };
    inner.retired.add(&entry.counters);
    if inner.closing {
        tracing::info!(worker = id, %reason, "worker left");
        return;
    }
    tracing::warn!(worker = id, %reason, "worker lost");
    let task = inner
        .attempt
        .placement
        .iter()
        .find(|(_, w)| w.as_str() == id)
        .map(|(t, _)| *t);
    if let (Some(task), Some(events)) = (task, &inner.attempt.events) {
        let error = Error::WorkerLost {
            worker: id.to_string(),
            reason: reason.to_string(),
        };
        let _ = events.send(TaskEvent::Failed(task, error));
    }
}
