//! `weir status`, `weir savepoint` and `weir cancel`: clients of a running
//! coordinator's job control API.

use std::time::{Duration, Instant};

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use weir_proto::api_token::{SendToken, TOKEN_ENV};
use weir_proto::v1::{self, job_control_client::JobControlClient};

use crate::cli::parse_duration;
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

/// Runs `weir savepoint`: triggers a savepoint, waits for it, prints its path.
pub fn savepoint(args: &SavepointArgs) -> Result<()> {
    let mut client = Client::connect(&args.api)?;
    let request = v1::TriggerSavepointRequest {
        target: args.target.clone().unwrap_or_default(),
        stop: args.stop,
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
