//! `weir run`: one job in this process, with a live progress line and a summary.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

use crate::cli::progress::Progress;
use crate::cli::{parse_duration, parse_interval, parse_savepoint_format, Interval};
use crate::data::SavepointFormat;
use crate::error::Result;
use crate::exec::config::ExecConfig;
use crate::exec::runner::{Ending, LocalRunner, RestoreFrom, RunConfig};
use crate::ids::JobId;
use crate::state::backend::{Backend, StateConfig, DEFAULT_CACHE_BYTES, DEFAULT_ROCKSDB_BYTES};

/// Options of `weir run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pipeline to run (see `weir pipelines`).
    pub pipeline: String,
    /// How the job runs.
    #[command(flatten)]
    pub options: JobOptions,
    /// Take a savepoint after this long, then stop the job and print the savepoint's path.
    #[arg(long, value_parser = parse_duration)]
    pub stop_with_savepoint_after: Option<Duration>,
    /// Where --stop-with-savepoint-after writes (default: CHECKPOINT_DIR/<job>/savepoints).
    #[arg(long, requires = "stop_with_savepoint_after")]
    pub savepoint_dir: Option<String>,
    /// How --stop-with-savepoint-after writes RocksDB state: `native` (its files,
    /// mostly copied from the latest checkpoint) or `canonical` (key-group blobs).
    #[arg(long, default_value = "native", value_parser = parse_savepoint_format)]
    pub savepoint_format: SavepointFormat,
    /// Arguments of the pipeline, after `--`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Options shared by `weir run` and `weir coordinator`.
#[derive(Debug, clap::Args)]
pub struct JobOptions {
    /// Parallelism of every operator.
    #[arg(long, short, default_value_t = 1)]
    pub parallelism: u32,
    /// Key groups of the job's state (the most parallelism it can rescale to),
    /// fixed for the life of its state.
    #[arg(long, default_value_t = crate::keys::DEFAULT_MAX_PARALLELISM)]
    pub max_parallelism: u32,
    /// Time between checkpoints (`off`: only the final one).
    #[arg(long, default_value = "5s", value_parser = parse_interval)]
    pub checkpoint_interval: Interval,
    /// Where checkpoints go: a directory, file:// or s3://bucket/prefix URI (checkpoints land in DIR/<job>/<job id>/checkpoints).
    #[arg(long, default_value = ".weir/checkpoints")]
    pub checkpoint_dir: String,
    /// The deployment's identity (default: a fresh one). Given the identity of a
    /// deployment that checkpointed, the job resumes its own latest checkpoint.
    #[arg(long, value_parser = parse_job_id)]
    pub job_id: Option<JobId>,
    /// A checkpoint that takes longer than this is declined; the job goes on.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub checkpoint_timeout: Duration,
    /// Completed checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    pub retained: usize,
    /// Start from `latest` (the newest resume point of any earlier run of the job
    /// in --checkpoint-dir: the savepoint of one stopped with a savepoint, else its
    /// newest checkpoint; see `weir checkpoints`) or a checkpoint or savepoint directory.
    #[arg(long)]
    pub restore: Option<String>,
    /// Restore even if the checkpoint holds state of operators the job no longer has.
    #[arg(long)]
    pub allow_non_restored_state: bool,
    /// How long a partly filled batch may wait before it is sent (0: send at once).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub buffer_timeout: Duration,
    /// Records per batch between tasks.
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
    /// Failures in a row, with no checkpoint completed between them, after which
    /// the job fails for good (a job that keeps checkpointing restarts forever).
    #[arg(long, default_value_t = 10)]
    pub max_restarts: u32,
    /// Checkpoints that may fail in a row (declined, timed out) before the job
    /// fails over to its latest checkpoint.
    #[arg(long, default_value_t = 5)]
    pub tolerable_failed_checkpoints: u32,
    /// How long a start waits for checkpoint storage that cannot be reached
    /// before it fails (restarts after a failure always wait).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub storage_wait: Duration,
    /// Kill a random task at N random moments (seeded by --seed), to see recovery;
    /// a bounded job that ends first takes the rest before its final commit.
    #[arg(long, default_value_t = 0)]
    pub inject_failures: u32,
    /// Seed of failure injection.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where keyed state lives: heap (hash maps) or rocksdb (local disk, incremental checkpoints).
    #[command(flatten)]
    pub state: StateOptions,
}

/// State backend options, shared by `weir run`, `weir coordinator` and `weir bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct StateOptions {
    /// Keyed state backend.
    #[arg(long, value_enum, default_value = "heap")]
    pub state_backend: Backend,
    /// RocksDB: MiB of keys and values the operators of a process cache in
    /// memory, all together.
    #[arg(long, default_value_t = DEFAULT_CACHE_BYTES >> 20)]
    pub state_cache_mb: usize,
    /// RocksDB: MiB of RocksDB's memory per process (the block cache every
    /// instance shares, with the memtables charged to it).
    #[arg(long, default_value_t = DEFAULT_ROCKSDB_BYTES >> 20)]
    pub state_rocksdb_mb: usize,
    /// RocksDB: local directory for the instances (scratch; removed when the job ends).
    #[arg(long)]
    pub state_dir: Option<std::path::PathBuf>,
}

impl StateOptions {
    /// The state configuration these options describe.
    pub fn config(&self) -> StateConfig {
        let defaults = StateConfig::default();
        StateConfig {
            backend: self.state_backend,
            local_dir: self.state_dir.clone().unwrap_or(defaults.local_dir),
            cache_bytes: (self.state_cache_mb << 20).max(1),
            rocksdb_bytes: (self.state_rocksdb_mb << 20).max(1 << 20),
        }
    }
}

impl JobOptions {
    /// Checks the options that do not fit together.
    pub fn check(&self) -> Result<()> {
        if self.max_parallelism == 0 || self.max_parallelism > 32768 {
            return Err(crate::Error::Usage(
                "--max-parallelism must be between 1 and 32768".into(),
            ));
        }
        if self.parallelism > self.max_parallelism {
            return Err(crate::Error::Usage(format!(
                "--parallelism {} is more than --max-parallelism {}",
                self.parallelism, self.max_parallelism
            )));
        }
        Ok(())
    }

    /// The runner configuration these options describe.
    pub fn config(&self) -> RunConfig {
        RunConfig {
            checkpoint_dir: self.checkpoint_dir.clone(),
            job_id: self.job_id.clone(),
            start_wait: Some(self.storage_wait),
            tolerable_failed_checkpoints: self.tolerable_failed_checkpoints,
            checkpoint_interval: self.checkpoint_interval.0,
            checkpoint_timeout: self.checkpoint_timeout,
            retained: self.retained,
            restore: match self.restore.as_deref() {
                None => RestoreFrom::Nothing,
                Some("latest") => RestoreFrom::Latest,
                Some(path) => RestoreFrom::Path(path.to_string()),
            },
            allow_non_restored_state: self.allow_non_restored_state,
            max_restarts: self.max_restarts,
            inject_failures: self.inject_failures,
            seed: self.seed,
            exec: ExecConfig {
                batch_size: self.batch_size.max(1),
                buffer_timeout: self.buffer_timeout,
                state: self.state.config(),
                ..ExecConfig::default()
            },
            ..RunConfig::default()
        }
    }
}

/// Runs `weir run`.
pub fn run(args: RunArgs) -> Result<()> {
    if args.options.parallelism == 0 {
        return Err(crate::Error::Usage(
            "--parallelism must be at least 1".into(),
        ));
    }
    args.options.check()?;
    let pipeline = crate::pipelines::find(&args.pipeline)?;
    let graph = crate::pipelines::build(
        pipeline.name,
        &args.args,
        args.options.parallelism,
        args.options.max_parallelism,
    )?;
    let job = graph.name.clone();
    let runner = LocalRunner::new(graph, args.options.config())?;
    let deployment = runner.job_id().clone();
    tracing::info!(%job, %deployment, checkpoints = %runner.checkpoints_uri(), "starting");
    let metrics = runner.metrics();
    let progress = Progress::start(&job, metrics.clone());
    let (done, ended) = crossbeam_channel::bounded::<()>(0);
    let stopper = args.stop_with_savepoint_after.map(|after| {
        let (handle, target) = (runner.handle(), args.savepoint_dir.clone());
        let format = args.savepoint_format;
        std::thread::spawn(move || {
            // Woken early (disconnected) when the job ends first.
            if ended.recv_timeout(after) == Err(RecvTimeoutError::Timeout) {
                handle.trigger_savepoint(target, true, format);
            }
        })
    });
    let outcome = runner.run();
    drop(done);
    if let Some(stopper) = stopper {
        let _ = stopper.join();
    }
    let elapsed = progress.stop();
    let summary = outcome?;
    let records = metrics.source_records();
    let secs = elapsed.as_secs_f64().max(1e-9);
    let (backpressured, aligning) = metrics.wait_totals();
    let verb = match summary.ending {
        Ending::Finished { .. } => "finished",
        Ending::Stopped { .. } => "stopped",
        Ending::Canceled => "was cancelled",
    };
    eprintln!(
        "weir: {job} {verb} in {:.2} s: {records} records read ({:.2} M/s, replays included), {} checkpoints ({} failed), {} restarts, {:.2} s backpressured, {:.3} s aligning",
        secs,
        records as f64 / secs / 1e6,
        metrics.checkpoints_completed.load(Ordering::Relaxed),
        metrics.checkpoints_failed.load(Ordering::Relaxed),
        summary.restarts,
        backpressured as f64 / 1e9,
        aligning as f64 / 1e9,
    );
    eprintln!("weir: {}", summary.ending);
    eprintln!("weir: deployment {deployment}; its checkpoints: weir checkpoints {job}");
    Ok(())
}

/// Parses `--job-id`.
fn parse_job_id(text: &str) -> std::result::Result<JobId, String> {
    JobId::parse(text)
}
