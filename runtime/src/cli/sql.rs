//! `weir sql`: runs a SQL script over the data dictionary on the embedded
//! default (as `weir run sql` would); `--explain` prints the streaming plan
//! with each operator's uid and state instead, and with `--restore` which
//! state of that checkpoint or savepoint the script keeps and which it drops.

use std::time::Duration;

use clap::Args;
use weir_catalog::Catalog;

use crate::api::JobGraph;
use crate::checkpoint::restore::peek;
use crate::cli::run::{run, JobOptions, RunArgs};
use crate::cli::{parse_duration, parse_savepoint_format};
use crate::data::SavepointFormat;
use crate::error::{Error, Result};
use crate::exec::state_fit::StateFit;
use crate::pipelines::sql::SqlJobArgs;
use crate::sql::build::build_job;
use crate::sql::explain::explain;
use crate::sql::plan_script;

/// Which script, over which catalog, and how it runs.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The script and its catalog.
    #[command(flatten)]
    pub script: SqlJobArgs,
    /// Print the streaming plan (operators, uids, state) instead of running it.
    #[arg(long)]
    pub explain: bool,
    /// How the job runs.
    #[command(flatten)]
    pub options: JobOptions,
    /// Take a savepoint after this long, then stop the job and print the savepoint's path.
    #[arg(long, value_parser = parse_duration)]
    pub stop_with_savepoint_after: Option<Duration>,
    /// Where --stop-with-savepoint-after writes (default: CHECKPOINT_DIR/<job>/savepoints).
    #[arg(long, requires = "stop_with_savepoint_after")]
    pub savepoint_dir: Option<String>,
    /// How --stop-with-savepoint-after writes RocksDB state: `native` or `canonical`.
    #[arg(long, default_value = "native", value_parser = parse_savepoint_format)]
    pub savepoint_format: SavepointFormat,
}

/// Runs the script, or prints its plan with `--explain`.
pub fn sql(args: SqlArgs) -> Result<()> {
    let script = args.script.script()?;
    let catalog = Catalog::new(&args.script.catalog);
    let planned = plan_script(&script, Some(&catalog), &args.script.options)?;
    if args.explain {
        print!("{}", explain(&planned.plan, &planned.tables));
        if let Some(location) = &args.options.restore {
            let graph = build_job(&args.script.job_name(), &planned, args.options.parallelism)?;
            print!("\n{}", restore_report(&graph, location)?);
        }
        return Ok(());
    }
    run(RunArgs {
        pipeline: "sql".to_string(),
        options: args.options,
        stop_with_savepoint_after: args.stop_with_savepoint_after,
        savepoint_dir: args.savepoint_dir,
        savepoint_format: args.savepoint_format,
        args: args.script.to_args(),
    })
}

/// What restoring `graph` from the checkpoint or savepoint at `location` keeps
/// and drops.
fn restore_report(graph: &JobGraph, location: &str) -> Result<String> {
    if location == "latest" {
        return Err(Error::Usage(
            "--explain --restore takes a checkpoint or savepoint directory (`weir checkpoints` lists them)".into(),
        ));
    }
    let metadata = peek(location)?;
    let mut report = StateFit::of(graph, &metadata).report(location);
    if metadata.job != graph.name {
        report.push_str(&format!(
            "  but it is a checkpoint of job `{}`, not `{}`: name the job so (--name) to restore it\n",
            metadata.job, graph.name
        ));
    }
    Ok(report)
}
