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
    /// How often workers send heartbeats.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// A worker not heard from for this long is lost and the job redeployed.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub heartbeat_timeout: Duration,
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
    let started = std::time::Instant::now();
    let config = CoordinatorConfig {
        pipeline: args.pipeline.clone(),
        args: args.args.clone(),
        parallelism: args.options.parallelism,
        run: args.options.config(),
        listen: args.listen.clone(),
        http: args.http.clone(),
        heartbeat_interval: args.heartbeat_interval,
        heartbeat_timeout: args.heartbeat_timeout,
    };
    let summary = run_coordinator(config)?;
    eprintln!(
        "weir: {} finished in {:.2} s with {} restarts; final checkpoint {} at {}",
        args.pipeline,
        started.elapsed().as_secs_f64(),
        summary.restarts,
        summary.final_checkpoint,
        summary.final_checkpoint_uri
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
    })
}

/// Options of `weir status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The coordinator's address (host:port).
    #[arg(long)]
    pub coordinator: String,
    /// Print the status as JSON (the document `/v1/status` serves).
    #[arg(long)]
    pub json: bool,
}

/// Runs `weir status`.
pub fn status(args: &StatusArgs) -> Result<()> {
    use weir_proto::v1;
    let endpoint = if args.coordinator.contains("://") {
        args.coordinator.clone()
    } else {
        format!("http://{}", args.coordinator)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("starting the async runtime: {e}")))?;
    let status = runtime.block_on(async {
        let mut client = v1::job_control_client::JobControlClient::connect(endpoint.clone())
            .await
            .map_err(|e| {
                Error::Usage(format!("cannot reach the coordinator at {endpoint}: {e}"))
            })?;
        client
            .get_status(v1::GetStatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| Error::Usage(format!("coordinator {endpoint}: {}", s.message())))
    })?;
    let json = crate::cluster::coordinator::http::status_json(&status);
    if args.json {
        println!("{json}");
        return Ok(());
    }
    let state = json["state"].as_str().unwrap_or("unknown");
    println!(
        "job {}: {state}{} (parallelism {}, {} restarts)",
        status.job,
        if status.message.is_empty() {
            String::new()
        } else {
            format!(": {}", status.message)
        },
        status.parallelism,
        status.restarts
    );
    println!(
        "slots: {} registered, {} needed",
        status.slots_registered, status.slots_needed
    );
    match &status.latest_checkpoint {
        Some(c) => {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            println!(
                "latest checkpoint: {} ({:.1} s ago, took {} ms, {} bytes) at {}",
                c.id,
                now_ms.saturating_sub(c.time_unix_ms) as f64 / 1e3,
                c.duration_ms,
                c.size_bytes,
                c.path
            );
        }
        None => println!("latest checkpoint: none yet"),
    }
    Ok(())
}
