//! `weir coordinator` and `weir worker`: the job as separate processes.

use std::time::Duration;

use crate::cli::parse_duration;
use crate::cli::run::JobOptions;
use crate::cluster::coordinator::{run_coordinator, CoordinatorConfig};
use crate::cluster::worker::{run_worker, WorkerConfig};
use crate::error::{Error, Result};

/// Options of `weir coordinator`.
#[derive(Debug, clap::Args)]
pub struct CoordinatorArgs {
    /// The pipeline to run (see `weir pipelines`).
    pub pipeline: String,
    /// How the job runs (the same options as `weir run`).
    #[command(flatten)]
    pub options: JobOptions,
    /// Where workers and API clients connect (gRPC).
    #[arg(long, default_value = "127.0.0.1:6123")]
    pub listen: String,
    /// Where /healthz, /readyz, /metrics and /v1/status are served (HTTP).
    #[arg(long, default_value = "127.0.0.1:6180")]
    pub http: String,
    /// After the job ends, keep serving its status until terminated instead of
    /// exiting (for Kubernetes, where an exit restarts the pod).
    #[arg(long)]
    pub linger: bool,
    /// How often workers send heartbeats.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// A worker not heard from for this long is lost and the job redeployed.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub heartbeat_timeout: Duration,
    /// Give every subtask its own slot instead of putting subtask k of every
    /// operator in slot k (so that operators land on different workers).
    #[arg(long)]
    pub no_slot_sharing: bool,
    /// The token every job control call (status, savepoint, cancel, dispose)
    /// must carry; without one the API is open to whoever reaches the port.
    #[arg(long, env = weir_proto::api_token::TOKEN_ENV, hide_env_values = true)]
    pub api_token: Option<String>,
    /// Arguments of the pipeline, after `--`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Options of `weir worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The coordinator's address (host:port).
    #[arg(long)]
    pub coordinator: String,
    /// Subtask slots this worker offers.
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// Where the data plane listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// The data address other workers use (default: the address the data plane bound).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Local directory for RocksDB state (scratch; what must survive is in the checkpoint store).
    #[arg(long)]
    pub state_dir: Option<std::path::PathBuf>,
}

/// Runs `weir coordinator`.
pub fn coordinator(args: CoordinatorArgs) -> Result<()> {
    if args.options.parallelism == 0 {
        return Err(Error::Usage("--parallelism must be at least 1".into()));
    }
    if args.heartbeat_timeout <= args.heartbeat_interval {
        return Err(Error::Usage(
            "--heartbeat-timeout must be longer than --heartbeat-interval".into(),
        ));
    }
    args.options.check()?;
    let started = std::time::Instant::now();
    let config = CoordinatorConfig {
        pipeline: args.pipeline.clone(),
        args: args.args.clone(),
        parallelism: args.options.parallelism,
        max_parallelism: args.options.max_parallelism,
        run: args.options.config(),
        listen: args.listen.clone(),
        http: args.http.clone(),
        heartbeat_interval: args.heartbeat_interval,
        heartbeat_timeout: args.heartbeat_timeout,
        slot_sharing: !args.no_slot_sharing,
        linger: args.linger,
        api_token: args.api_token.clone(),
    };
    let summary = run_coordinator(config)?;
    eprintln!(
        "weir: {} ran {:.2} s with {} restarts: {}",
        args.pipeline,
        started.elapsed().as_secs_f64(),
        summary.restarts,
        summary.ending
    );
    Ok(())
}

/// Runs `weir worker`.
pub fn worker(args: WorkerArgs) -> Result<()> {
    if args.slots == 0 {
        return Err(Error::Usage("--slots must be at least 1".into()));
    }
    run_worker(&WorkerConfig {
        coordinator: args.coordinator,
        slots: args.slots,
        listen: args.listen,
        advertise: args.advertise,
        state_dir: args
            .state_dir
            .unwrap_or_else(|| crate::state::StateConfig::default().local_dir),
    })
}
