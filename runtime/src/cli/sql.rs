//! `weir sql`: runs a SQL script over the data dictionary on the embedded
//! default (as `weir run sql` would); `--explain` prints the streaming plan
//! with each operator's uid and state instead.

use std::time::Duration;

use clap::Args;
use weir_catalog::Catalog;

use crate::cli::parse_duration;
use crate::cli::run::{run, JobOptions, RunArgs};
use crate::error::Result;
use crate::pipelines::sql::SqlJobArgs;
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
}

/// Runs the script, or prints its plan with `--explain`.
pub fn sql(args: SqlArgs) -> Result<()> {
    let script = args.script.script()?;
    let catalog = Catalog::new(&args.script.catalog);
    let planned = plan_script(&script, Some(&catalog), &args.script.options)?;
    if args.explain {
        print!("{}", explain(&planned.plan, &planned.tables));
        return Ok(());
    }
    run(RunArgs {
        pipeline: "sql".to_string(),
        options: args.options,
        stop_with_savepoint_after: args.stop_with_savepoint_after,
        savepoint_dir: args.savepoint_dir,
        args: args.script.to_args(),
    })
}
