//! Running an attempt's tasks on threads of this process: the deployment behind
//! `weir run` (and, per worker, behind distributed runs).

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::api::JobGraph;
use crate::checkpoint::paths::Paths;
use crate::checkpoint::restore::RestorePoint;
use crate::checkpoint::store::CheckpointStore;
use crate::error::{Error, Result};
use crate::exec::config::ExecConfig;
use crate::exec::deploy::{deploy, DeployedTask};
use crate::exec::runner::{Deployer, Deployment};
use crate::exec::task::{Control, TaskEvent, TaskRuntime};
use crate::exec::upload::run_uploader;
use crate::ids::TaskId;
use crate::metrics::JobMetrics;

/// Deploys every task of a job on threads here.
pub struct LocalDeployer {
    /// Where the uploader stores snapshots.
    pub store: Arc<dyn CheckpointStore>,
    /// Keys of the job's checkpoints.
    pub paths: Paths,
    /// Data path tuning.
    pub exec: ExecConfig,
    /// The last attempt deployed.
    pub attempt: std::sync::atomic::AtomicU64,
}

impl Deployer for LocalDeployer {
    fn deploy(
        &self,
        graph: &JobGraph,
        restore: Option<&RestorePoint>,
        metrics: &Arc<JobMetrics>,
    ) -> Result<Box<dyn Deployment>> {
        let attempt = self
            .attempt
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let tasks = deploy(graph, &self.exec, restore, metrics, attempt, None)?;
        Ok(Box::new(start(
            &graph.name,
            tasks,
            self.store.clone(),
            self.paths.clone(),
        )?))
    }
}

/// Starts `tasks` on threads, with an uploader writing their snapshots to `store`.
pub fn start(
    job: &str,
    tasks: Vec<DeployedTask>,
    store: Arc<dyn CheckpointStore>,
    paths: Paths,
) -> Result<LocalDeployment> {
    let (events_tx, events) = unbounded::<TaskEvent>();
    let (uploads_tx, uploads) = unbounded();
    let uploader = {
        let events = events_tx.clone();
        std::thread::Builder::new()
            .name("weir-uploader".into())
            .spawn(move || run_uploader(store, paths, uploads, events))
            .map_err(|e| Error::Internal(format!("spawning the uploader: {e}")))?
    };
    let mut local = LocalDeployment {
        tasks: Vec::new(),
        sources: tasks.iter().filter(|t| t.is_source).map(|t| t.id).collect(),
        events,
        uploader: Some(uploader),
    };
    for task in tasks {
        let (control_tx, control) = unbounded();
        let rt = TaskRuntime::new(
            task.id,
            control,
            events_tx.clone(),
            uploads_tx.clone(),
            task.metrics,
        );
        let span = tracing::info_span!("task", job = %job, task = %task.id);
        let (body, events) = (task.body, events_tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("weir-task-{}", task.id))
            .spawn(move || {
                let _span = span.enter();
                let mut rt = rt;
                let id = rt.id;
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body.run(&mut rt)));
                let event = match outcome {
                    Ok(Ok(())) => TaskEvent::Exited(id),
                    Ok(Err(e)) => TaskEvent::Failed(id, e),
                    Err(panic) => TaskEvent::Failed(
                        id,
                        Error::TaskPanicked {
                            task: id,
                            message: panic_message(&panic),
                        },
                    ),
                };
                let _ = events.send(event);
            });
        match spawned {
            Ok(handle) => local.tasks.push((task.id, control_tx, handle)),
            Err(e) => {
                Box::new(local).stop(Control::Cancel);
                return Err(Error::Internal(format!("spawning a task thread: {e}")));
            }
        }
    }
    Ok(local)
}

/// The threads of one attempt and their control channels.
pub struct LocalDeployment {
    tasks: Vec<(TaskId, Sender<Control>, JoinHandle<()>)>,
    sources: Vec<TaskId>,
    events: Receiver<TaskEvent>,
    uploader: Option<JoinHandle<()>>,
}

impl Deployment for LocalDeployment {
    fn tasks(&self) -> Vec<TaskId> {
        self.tasks.iter().map(|t| t.0).collect()
    }

    fn sources(&self) -> Vec<TaskId> {
        self.sources.clone()
    }

    fn send(&self, task: TaskId, control: Control) {
        if let Some((_, tx, _)) = self.tasks.iter().find(|(id, _, _)| *id == task) {
            // A task that is gone has already reported why; nothing to do here.
            let _ = tx.send(control);
        }
    }

    fn events(&self) -> &Receiver<TaskEvent> {
        &self.events
    }

    /// Sends `control` to every task and joins them, then the uploader. Events go
    /// to an unbounded channel, so no task can block on reporting how it ended.
    fn stop(mut self: Box<Self>, control: Control) {
        for (_, tx, _) in &self.tasks {
            let _ = tx.send(control);
        }
        for (_, tx, handle) in self.tasks.drain(..) {
            drop(tx);
            let _ = handle.join();
        }
        if let Some(uploader) = self.uploader.take() {
            let _ = uploader.join();
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}
