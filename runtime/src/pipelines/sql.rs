//! `sql`: a SQL script of `CREATE TABLE`s and `INSERT INTO`s, planned over the
//! data dictionary and run as a pipeline (what `weir sql -f` and a
//! StreamJob's SQL run).

use std::fs;
use std::path::PathBuf;

use clap::Parser;
use weir_catalog::Catalog;

use crate::api::JobGraph;
use crate::error::{Error, Result};
use crate::sql::build::build_job;
use crate::sql::plan_script;

/// Arguments of `sql`.
#[derive(Debug, Clone, Parser)]
#[command(name = "sql", about = "A SQL script over the data dictionary")]
pub struct SqlJobArgs {
    /// Script files, read in order as one script: CREATE TABLEs, then INSERT INTOs.
    #[arg(short = 'f', long = "file")]
    pub files: Vec<PathBuf>,
    /// The script itself, after the files (how a cluster's workers get it).
    #[arg(long)]
    pub sql: Option<String>,
    /// The catalog directory whose tables the script may name.
    #[arg(long, env = "WEIR_CATALOG", default_value = "catalog")]
    pub catalog: PathBuf,
    /// The job's name (default: the last file's name without `.sql`, or `sql`).
    #[arg(long)]
    pub name: Option<String>,
    /// Sets a table's `WITH` option, over the script's and the catalog's:
    /// `bid.events.num=1000000`, `orders.properties.bootstrap.servers=...`.
    #[arg(long = "option", value_name = "TABLE.KEY=VALUE")]
    pub options: Vec<String>,
}

impl SqlJobArgs {
    /// The whole script: the files in order, then `--sql`.
    pub fn script(&self) -> Result<String> {
        let mut script = String::new();
        for file in &self.files {
            let text =
                fs::read_to_string(file).map_err(|source| Error::io("reading", file, source))?;
            script.push_str(&text);
            script.push_str("\n;\n");
        }
        if let Some(sql) = &self.sql {
            script.push_str(sql);
        }
        if script.trim().is_empty() {
            return Err(Error::Usage(
                "pipeline sql: give the script with -f FILE or --sql TEXT".into(),
            ));
        }
        Ok(script)
    }

    /// The job's name.
    pub fn job_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.default_name())
    }

    /// The job's name by default: the last file's name without `.sql`, or `sql`.
    fn default_name(&self) -> String {
        self.files
            .last()
            .and_then(|f| f.file_stem())
            .map_or("sql".to_string(), |s| s.to_string_lossy().into_owned())
    }

    /// These arguments on a command line (how a worker builds the same job).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for file in &self.files {
            args.extend(["--file".to_string(), file.to_string_lossy().into_owned()]);
        }
        if let Some(sql) = &self.sql {
            args.extend(["--sql".to_string(), sql.clone()]);
        }
        args.extend([
            "--catalog".to_string(),
            self.catalog.to_string_lossy().into_owned(),
            "--name".to_string(),
            self.job_name(),
        ]);
        for option in &self.options {
            args.extend(["--option".to_string(), option.clone()]);
        }
        args
    }
}

/// Builds the `sql` job from its command-line arguments.
pub fn build(args: &[String], parallelism: u32) -> Result<JobGraph> {
    let args = crate::pipelines::parse::<SqlJobArgs>("sql", args)?;
    let planned = plan_script(
        &args.script()?,
        Some(&Catalog::new(&args.catalog)),
        &args.options,
    )?;
    build_job(&args.job_name(), &planned, parallelism)
}
