//! Jobs whose tasks are spread over two data planes in this process: every
//! exchange crosses TCP with credits, attempts fence old channels, and the
//! result stays exactly-once through injected failures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_runtime::api::JobGraph;
use weir_runtime::checkpoint::paths::Paths;
use weir_runtime::checkpoint::restore::RestorePoint;
use weir_runtime::checkpoint::store::{CheckpointStore, FileStore};
use weir_runtime::exec::config::ExecConfig;
use weir_runtime::exec::deploy::{chains, deploy, Placement};
use weir_runtime::exec::local::start;
use weir_runtime::exec::runner::{Deployer, Deployment, JobRunner, RunConfig};
use weir_runtime::ids::{JobId, TaskId};
use weir_runtime::metrics::JobMetrics;
use weir_runtime::net::DataPlane;
use weir_runtime::pipelines::keyed_sum::{self, KeyedSumArgs};
use weir_runtime::pipelines::{parse, Target};

use crate::support::{check_keyed_sum, committed_lines};

/// Places even chains (the first holds a source) on worker `a` and odd ones on worker `b`.
struct TwoWorkers {
    planes: [Arc<DataPlane>; 2],
    attempt: AtomicU64,
    store: Arc<dyn CheckpointStore>,
    paths: Paths,
    exec: ExecConfig,
}

impl Deployer for TwoWorkers {
    fn deploy(
        &self,
        graph: &JobGraph,
        restore: Option<&RestorePoint>,
        metrics: &Arc<JobMetrics>,
    ) -> weir_runtime::Result<Box<dyn Deployment>> {
        let attempt = self.attempt.fetch_add(1, Ordering::Relaxed) + 1;
        for plane in &self.planes {
            plane.forget_attempt(attempt - 1);
        }
        let mut workers = HashMap::new();
        for (c, chain) in chains(graph).iter().enumerate() {
            for s in 0..chain.parallelism {
                workers.insert(
                    TaskId {
                        chain: c as u32,
                        subtask: s,
                    },
                    if c % 2 == 0 { "a" } else { "b" }.to_string(),
                );
            }
        }
        let addresses: HashMap<String, String> = self
            .planes
            .iter()
            .map(|p| (p.worker_id().to_string(), p.address().to_string()))
            .collect();
        let placements: Vec<Placement> = self
            .planes
            .iter()
            .map(|p| Placement {
                attempt,
                me: p.worker_id().to_string(),
                workers: workers.clone(),
                addresses: addresses.clone(),
                plane: p.clone(),
                connect_timeout: Duration::from_secs(5),
            })
            .collect();
        let deployed = std::thread::scope(|s| {
            let handles: Vec<_> = placements
                .iter()
                .map(|p| s.spawn(|| deploy(graph, &self.exec, restore, metrics, attempt, Some(p))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("deploy thread"))
                .collect::<Vec<_>>()
        });
        let mut tasks = Vec::new();
        for d in deployed {
            tasks.extend(d?);
        }
        Ok(Box::new(start(
            &graph.name,
            tasks,
            self.store.clone(),
            self.paths.clone(),
        )?))
    }
}

/// Runs `graph` on two data planes in this process with `failures` injected and
/// batches of `batch_size`, checkpoints every 100 ms to `dir`; returns its restarts.
pub fn run_on_two_workers(
    graph: JobGraph,
    dir: &std::path::Path,
    failures: u32,
    batch_size: usize,
) -> u32 {
    let store: Arc<dyn CheckpointStore> = Arc::new(FileStore::new(dir.join("chk")));
    let mut config = RunConfig {
        checkpoint_dir: dir.join("chk").display().to_string(),
        checkpoint_interval: Some(Duration::from_millis(100)),
        inject_failures: failures,
        seed: 11,
        restart_backoff: Duration::from_millis(10),
        ..RunConfig::default()
    };
    config.exec.batch_size = batch_size;
    let id = JobId("two-workers".into());
    let deployer = TwoWorkers {
        planes: [
            DataPlane::bind("a", "127.0.0.1:0").unwrap(),
            DataPlane::bind("b", "127.0.0.1:0").unwrap(),
        ],
        attempt: AtomicU64::new(0),
        store: store.clone(),
        paths: Paths::new(&graph.name, &id),
        exec: config.exec.clone(),
    };
    let runner = JobRunner::with_deployer(graph, config, store, &id, deployer);
    runner.run().unwrap().restarts
}

#[test]
fn keyed_sum_across_two_data_planes_is_exactly_once_through_failures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args: Vec<String> = ["--records", "200000", "--rate", "200000", "--keys", "50"]
        .map(String::from)
        .to_vec();
    let args = parse::<KeyedSumArgs>("keyed-sum", &args).unwrap();
    let graph = keyed_sum::job(&args, 2, &Target::Files(out.clone())).unwrap();
    assert_eq!(run_on_two_workers(graph, dir.path(), 3, 1024), 3);
    check_keyed_sum(&committed_lines(&out), 200_000, 50).unwrap_or_else(|e| panic!("{e}"));
}
