//! `weir status`, `weir savepoint` and `weir cancel`: clients of a running
//! coordinator's job control API.

use std::time::{Duration, Instant};

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use weir_proto::api_token::{SendToken, TOKEN_ENV};
use weir_proto::v1::{self, job_control_client::JobControlClient};

use crate::cli::{parse_duration, parse_savepoint_format};
use crate::data::SavepointFormat;
use crate::error::{Error, Result};

/// How to reach a coordinator's job control API.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// The coordinator's address (host:port).
    #[arg(long)]
    pub coordinator: String,
    /// The coordinator's API token, if it requires one (on Kubernetes: the
    /// `token` of the job's Secret NAME-api-token).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    pub api_token: Option<String>,
}

/// Options of `weir status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Print the status as JSON (the document `/v1/status` serves).
    #[arg(long)]
    pub json: bool,
    /// Average each operator chain's load (busy and backpressured time,
    /// records, backlog) over this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub load_window: Duration,
}

/// Options of `weir savepoint`.
#[derive(Debug, clap::Args)]
pub struct SavepointArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Stop the job once the savepoint is complete (stop-with-savepoint).
    #[arg(long)]
    pub stop: bool,
    /// Directory URI to write the savepoint under (default: CHECKPOINT_DIR/<job>/savepoints).
    #[arg(long)]
    pub target: Option<String>,
    /// How RocksDB state is written: `native` (its own files; those the latest
    /// checkpoint uploaded are copied in storage, not uploaded again) or
    /// `canonical` (every entry as key-group blobs).
    #[arg(long, default_value = "native", value_parser = parse_savepoint_format)]
    pub format: SavepointFormat,
    /// Give up waiting after this long (the savepoint may still complete).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Options of `weir cancel`.
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub api: ApiArgs,
}

/// A job control client of `coordinator` on a one-thread runtime.
struct Client {
    runtime: tokio::runtime::Runtime,
    client: JobControlClient<InterceptedService<Channel, SendToken>>,
    endpoint: String,
}

impl Client {
    fn connect(api: &ApiArgs) -> Result<Self> {
        let coordinator = &api.coordinator;
        let endpoint = if coordinator.contains("://") {
            coordinator.to_string()
        } else {
            format!("http://{coordinator}")
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("starting the async runtime: {e}")))?;
        let unreachable = |e: &dyn std::error::Error| {
            Error::Usage(format!(
                "cannot reach the coordinator at {endpoint}: {}",
                crate::error::with_causes(e)
            ))
        };
        let channel = Endpoint::from_shared(endpoint.clone()).map_err(|e| unreachable(&e))?;
        let channel = runtime
            .block_on(channel.connect())
            .map_err(|e| unreachable(&e))?;
        let client =
            JobControlClient::with_interceptor(channel, SendToken::new(api.api_token.clone()));
        Ok(Client {
            runtime,
            client,
            endpoint,
        })
    }

    /// Runs one call, naming the coordinator in its error.
    fn call<T, F>(
        &mut self,
        call: impl FnOnce(JobControlClient<InterceptedService<Channel, SendToken>>) -> F,
    ) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let future = call(self.client.clone());
        self.runtime
            .block_on(future)
            .map(tonic::Response::into_inner)
            .map_err(|s| Error::Usage(format!("coordinator {}: {}", self.endpoint, s.message())))
    }
}

/// Runs `weir status`.
pub fn status(args: &StatusArgs) -> Result<()> {
    let mut client = Client::connect(&args.api)?;
    let status = client.call(|mut c| async move { c.get_status(v1::GetStatusRequest {}).await })?;
    let mut json = crate::cluster::coordinator::http::status_json(&status);
    let request = v1::GetLoadRequest {
        window_ms: args.load_window.as_millis() as u64,
    };
    // A coordinator of an older release has no load to say.
    let load = client
        .call(|mut c| async move { c.get_load(request).await })
        .ok();
    if args.json {
        if let Some(load) = &load {
            json["load"] = load_json(load);
        }
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
    if let Some(load) = load.filter(|l| l.covered_ms > 0) {
        println!("load over the last {:.1} s:", load.covered_ms as f64 / 1e3);
        for chain in &load.chains {
            println!("  {}", chain_line(chain));
        }
    }
    Ok(())
}

/// One operator chain's load, for people.
fn chain_line(chain: &v1::ChainLoad) -> String {
    let mut line = format!(
        "{}: parallelism {}, {:.0}% busy, {:.0}% backpressured, {:.0} records/s {}",
        chain.name,
        chain.parallelism,
        chain.busy * 100.0,
        chain.backpressured * 100.0,
        chain.records_per_second,
        if chain.source { "out" } else { "in" }
    );
    if let Some(backlog) = chain.backlog {
        line.push_str(&format!(
            ", backlog {backlog} records ({:+.0}/s)",
            chain.backlog_per_second
        ));
    }
    line
}

/// The load as JSON (the `load` member of `weir status --json`).
fn load_json(load: &v1::JobLoad) -> serde_json::Value {
    let chains: Vec<serde_json::Value> = load
        .chains
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "parallelism": c.parallelism,
                "source": c.source,
                "busy": c.busy,
                "backpressured": c.backpressured,
                "records_per_second": c.records_per_second,
                "backlog": c.backlog,
                "backlog_per_second": c.backlog_per_second,
            })
        })
        .collect();
    serde_json::json!({ "covered_ms": load.covered_ms, "chains": chains })
}

/// Runs `weir savepoint`: triggers a savepoint, waits for it, prints its path.
pub fn savepoint(args: &SavepointArgs) -> Result<()> {
    let mut client = Client::connect(&args.api)?;
    let request = v1::TriggerSavepointRequest {
        target: args.target.clone().unwrap_or_default(),
        stop: args.stop,
        canonical: args.format == SavepointFormat::Canonical,
    };
    let id = client
        .call(|mut c| async move { c.trigger_savepoint(request).await })?
        .id;
    eprintln!(
        "weir: savepoint {id} triggered{}; waiting for it",
        if args.stop {
            " (the job stops after it)"
        } else {
            ""
        }
    );
    let deadline = Instant::now() + args.timeout;
    loop {
        let request = v1::GetSavepointRequest { id: id.clone() };
        let status = client.call(|mut c| async move { c.get_savepoint(request).await })?;
        match v1::SavepointState::try_from(status.state) {
            Ok(v1::SavepointState::Completed) => {
                println!("{}", status.path);
                return Ok(());
            }
            Ok(v1::SavepointState::Failed) => {
                return Err(Error::Usage(format!(
                    "savepoint {id} failed: {}",
                    status.message
                )));
            }
            _ if Instant::now() >= deadline => {
                return Err(Error::Usage(format!(
                    "savepoint {id} not complete after {:?}; it may still complete (check `weir status`)",
                    args.timeout
                )));
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Runs `weir cancel`.
pub fn cancel(args: &CancelArgs) -> Result<()> {
    let mut client = Client::connect(&args.api)?;
    client.call(|mut c| async move { c.cancel(v1::CancelRequest {}).await })?;
    eprintln!("weir: cancel requested");
    Ok(())
}
