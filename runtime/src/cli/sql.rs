//! `weir sql`: plans a SQL script over the data dictionary; `--explain`
//! prints the streaming plan with each operator's uid and state.

use std::fs;
use std::path::PathBuf;

use clap::Args;
use weir_catalog::Catalog;

use crate::error::{Error, Result};
use crate::sql::explain::explain;
use crate::sql::plan_script;

/// Which script, over which catalog.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The script: CREATE TABLEs (or tables of the catalog, by name), then INSERT INTOs.
    #[arg(short = 'f', long)]
    pub file: PathBuf,
    /// The catalog directory whose tables the script may name.
    #[arg(long, env = "WEIR_CATALOG", default_value = "catalog")]
    pub catalog: PathBuf,
    /// Print the streaming plan (operators, uids, state) instead of running it.
    #[arg(long)]
    pub explain: bool,
}

/// Plans the script; prints the plan with `--explain`.
pub fn sql(args: &SqlArgs) -> Result<()> {
    let text = fs::read_to_string(&args.file)
        .map_err(|source| Error::io("reading", &args.file, source))?;
    let catalog = Catalog::new(&args.catalog);
    let planned = plan_script(&text, Some(&catalog))?;
    if !args.explain {
        return Err(Error::Usage(
            "running SQL jobs comes with weir's SQL operators, which are not built yet; \
             `weir sql --explain -f FILE` checks the script and prints the plan it will run"
                .to_string(),
        ));
    }
    print!("{}", explain(&planned.plan, &planned.tables));
    Ok(())
}
