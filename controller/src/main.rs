//! `weir-controller`: watches StreamJobs (and their children) and StreamTables, and reconciles them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, ResourceExt};

use weir_controller::leader::Election;
use weir_controller::metrics::{self, Metrics};
use weir_controller::protection::{self, ControllerPods, Protection};
use weir_controller::reconcile::{error_policy, reconcile, Context};
use weir_controller::table_reconcile::{reconcile_table, table_error_policy};
use weir_controller::{StreamJob, StreamTable};

/// The weir operator.
#[derive(Debug, Parser)]
#[command(name = "weir-controller", version)]
struct Args {
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8080", env = "WEIR_METRICS_ADDR")]
    metrics_addr: String,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "WEIR_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Elect a leader with a Lease, so that several replicas can run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "WEIR_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the Lease (default: the pod's, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease (default: the pod name, from POD_NAME).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Reach every coordinator at this address instead of its pod IP.
    #[arg(long, hide = true)]
    coordinator_address: Option<String>,
    /// Log filter (tracing's env-filter syntax); RUST_LOG overrides it.
    #[arg(long, default_value = "info", env = "WEIR_LOG_LEVEL")]
    log_level: String,
    /// Give every job's workers a PodDisruptionBudget with this maxUnavailable.
    #[arg(long)]
    worker_max_unavailable: Option<u32>,
    /// Give every job's coordinator a NetworkPolicy: its API only from the job's
    /// pods and from controller pods with these labels (`key=value,...`) in the
    /// lease namespace.
    #[arg(long)]
    coordinator_network_policy: Option<String>,
}

impl Args {
    /// The guards every job gets, from the flags.
    fn protection(&self) -> anyhow::Result<Protection> {
        let coordinator_clients = match &self.coordinator_network_policy {
            Some(labels) => Some(ControllerPods {
                namespace: self.lease_namespace.clone(),
                labels: protection::parse_labels(labels)
                    .map_err(|e| anyhow::anyhow!("--coordinator-network-policy: {e}"))?,
            }),
            None => None,
        };
        Ok(Protection {
            worker_max_unavailable: self.worker_max_unavailable,
            coordinator_clients,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // rustls needs one process-wide crypto provider; builds that unify features
    // with other workspace crates can enable two, so choose.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(&args.metrics_addr)
        .await
        .with_context(|| format!("listening on {}", args.metrics_addr))?;
    tokio::spawn(metrics::serve(listener, metrics.clone()));

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("weir-controller-{}", std::process::id()));
    let leases: Api<Lease> = Api::namespaced(client.clone(), &args.lease_namespace);
    let election = Election {
        namespace: args.lease_namespace.clone(),
        name: "weir-controller".into(),
        identity: identity.clone(),
        duration: Duration::from_secs(15),
    };
    if args.leader_election {
        election.acquire(&leases).await;
    }

    let (jobs, deployments, statefulsets): (Api<StreamJob>, Api<Deployment>, Api<StatefulSet>) =
        match &args.namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "weir-controller".into(),
                instance: Some(identity),
            },
        ),
        metrics,
        coordinator_override: args.coordinator_address.clone(),
        protection: args.protection()?,
    });
    let children =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=weir-controller");
    let tables: Api<StreamTable> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let table_controller = Controller::new(tables.clone(), watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile_table, table_error_policy, Arc::clone(&ctx))
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "StreamTable reconcile did not complete");
            }
        });
    let job_controller = Controller::new(jobs, watcher::Config::default());
    let known_jobs = job_controller.store();
    let job_controller = job_controller
        .owns(deployments, children.clone())
        .owns(statefulsets, children)
        // A StreamTable's change reaches the SQL jobs of its namespace, which
        // may use it (or wait for it).
        .watches(
            tables,
            watcher::Config::default(),
            move |table: StreamTable| {
                let namespace = table.namespace();
                known_jobs
                    .state()
                    .into_iter()
                    .filter(|job| job.spec.job.sql.is_some() && job.namespace() == namespace)
                    .map(|job| ObjectRef::from_obj(&*job))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile did not complete");
            }
        });
    let controller = futures::future::join(job_controller, table_controller).map(|_| ());
    tracing::info!("weir-controller running");
    if args.leader_election {
        tokio::select! {
            () = controller => {
                // A graceful shutdown (SIGTERM): hand over at once.
                if let Err(e) = election.release(&leases).await {
                    tracing::warn!(error = %e, "could not release the leader lease");
                }
            }
            () = election.keep(&leases) => {
                anyhow::bail!("lost the leader lease; exiting so that another replica leads");
            }
        }
    } else {
        controller.await;
    }
    tracing::info!("weir-controller stopped");
    Ok(())
}
