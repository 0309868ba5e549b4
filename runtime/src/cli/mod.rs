//! The `weir` command line: `run`, `pipelines`, `catalog`, `checkpoints`, `bench`, the cluster processes and their control.

mod bench;
mod bench_cluster;
mod bench_state;
mod catalog;
mod checkpoints;
mod cluster;
mod control;
mod kafka_latency;
mod kafka_load;
mod progress;
pub mod run;
mod sql;

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::data::SavepointFormat;
use crate::error::{Error, Result};

/// weir: a stream processor with exactly-once checkpoints.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing's env-filter syntax); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "warn")]
    pub log_level: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline in this process, with checkpoints on the local disk.
    Run(run::RunArgs),
    /// List the built-in pipelines and their arguments.
    Pipelines,
    /// List a job's deployments and checkpoints in storage, and what `--restore latest` picks.
    Checkpoints(checkpoints::CheckpointsArgs),
    /// Measure a pipeline's throughput and print RESULT lines.
    Bench(bench::BenchArgs),
    /// Coordinate a job run by `weir worker` processes.
    Coordinator(cluster::CoordinatorArgs),
    /// Run the subtasks a coordinator places on this process.
    Worker(cluster::WorkerArgs),
    /// Show a running job's state and latest checkpoint.
    Status(control::StatusArgs),
    /// Take a savepoint of a running job (with --stop, then stop it); prints its path.
    Savepoint(control::SavepointArgs),
    /// Cancel a running job without a savepoint.
    Cancel(control::CancelArgs),
    /// Register, list, show and drop the tables SQL jobs read and write (the data dictionary).
    Catalog(catalog::CatalogArgs),
    /// Run a SQL script over the data dictionary (--explain prints its plan instead).
    Sql(sql::SqlArgs),
    /// Write a pipeline's generated input into a Kafka topic at a given rate.
    KafkaLoad(kafka_load::KafkaLoadArgs),
    /// Measure the end-to-end latency of the records arriving on a Kafka topic.
    KafkaLatency(kafka_latency::KafkaLatencyArgs),
}

/// Runs the command line; returns the process exit code.
pub fn main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Pipelines => {
            print!("{}", pipelines_listing());
            Ok(())
        }
        Command::Bench(args) => bench::bench(args),
        Command::Catalog(args) => catalog::catalog(&args),
        Command::Sql(args) => sql::sql(args),
        Command::KafkaLoad(args) => kafka_load::kafka_load(&args),
        Command::KafkaLatency(args) => kafka_latency::kafka_latency(&args),
        Command::Checkpoints(args) => checkpoints::checkpoints(&args),
        Command::Coordinator(args) => cluster::coordinator(args),
        Command::Worker(args) => cluster::worker(args),
        Command::Status(args) => control::status(&args),
        Command::Savepoint(args) => control::savepoint(&args),
        Command::Cancel(args) => control::cancel(&args),
    }
}

/// The text `weir pipelines` prints.
pub fn pipelines_listing() -> String {
    let mut text = String::new();
    for p in crate::pipelines::all() {
        text.push_str(&format!("{}\n    {}\n", p.name, p.about));
        let cmd = (p.command)();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" {
                continue;
            }
            let value = if arg.get_num_args().is_some_and(|n| n.takes_values()) {
                format!(" <{}>", arg.get_id().as_str().to_uppercase())
            } else {
                String::new()
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let default = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>();
            let default = if default.is_empty() {
                String::new()
            } else {
                format!(" [default: {}]", default.join(","))
            };
            text.push_str(&format!(
                "      --{long}{value}\n          {help}{default}\n"
            ));
        }
        text.push('\n');
    }
    text.push_str("Run one with: weir run <pipeline> [options] -- <pipeline arguments>\n");
    text
}

/// Parses a savepoint format: `native` or `canonical`.
pub fn parse_savepoint_format(s: &str) -> std::result::Result<SavepointFormat, String> {
    SavepointFormat::parse(s).ok_or_else(|| {
        format!("unknown savepoint format {s:?}: use native (RocksDB's files) or canonical")
    })
}

/// Parses a duration such as `500ms`, `2s` or `1m`; `0` is zero.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 500ms, 2s or 1m: {e}"))
}

/// A checkpoint interval; `None` means only the final checkpoint is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Option<Duration>);

/// Parses a checkpoint interval; `0` or `off` means only the final checkpoint.
pub fn parse_interval(s: &str) -> std::result::Result<Interval, String> {
    match s {
        "off" | "0" => Ok(Interval(None)),
        _ => parse_duration(s).map(|d| Interval(Some(d))),
    }
}

/// The exit code for an error: 2 for usage errors, 1 for everything else.
pub fn exit_code(error: &Error) -> i32 {
    match error {
        Error::Usage(_) | Error::InvalidJob(_) => 2,
        _ => 1,
    }
}
