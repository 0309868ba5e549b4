//! SQL jobs: a script of `CREATE TABLE`s and `INSERT INTO ... SELECT`s over
//! the data dictionary, planned by DataFusion and lowered onto weir's
//! streaming operators.
//!
//! What is DataFusion's and what is weir's:
//! - sqlparser (DataFusion's parser) reads the statements; weir reads
//!   `CREATE TABLE` itself on top of it (`weir_catalog::ddl`: sqlparser has no
//!   `WATERMARK FOR`) and rewrites Flink's `TABLE t` window-function arguments;
//! - DataFusion's SQL planner resolves names, types, implicit casts and its
//!   library of scalar and aggregate functions into a logical plan, with the
//!   window table functions planned by weir ([`window_tvf`]);
//! - weir lowers that plan onto its own streaming operators ([`lower`]),
//!   whose state lives in weir's backends and checkpoints: DataFusion's
//!   executor is for bounded batches and has no watermarks, barriers or
//!   keyed state.
//!
//! # Layout
//!
//! Planning:
//! - [`arrow_types`]: catalog column types as Arrow types.
//! - [`context`]: the tables and functions the planner looks names up in;
//!   [`flink_functions`]: Flink's functions that DataFusion lacks;
//!   [`flink_avg`]: `AVG` as Flink computes it over whole numbers.
//! - [`window_tvf`]: `TUMBLE`, `HOP`, `CUMULATE` and `SESSION`.
//! - [`plan`]: weir's streaming plan and its operators' uids.
//! - [`lower`]: DataFusion's logical plan onto the streaming plan.
//! - [`locate`]: where a refused construct is in the SQL.
//! - [`explain`]: the plan as `weir sql --explain` prints it.
//! - [`settings`]: the script's `SET` statements (`table.exec.state.ttl`,
//!   `table.exec.emit.early-fire.*`).
//!
//! Running:
//! - [`build`]: the streaming plan as a job graph.
//! - [`rows`]: [`rows::Rows`], the record of SQL operators: an Arrow batch.
//! - [`calc`]: filters and projections (DataFusion's physical expressions).
//! - [`key_groups`]: stable key hashes and the keyed exchange's splitter.
//! - [`join`], [`join_side`], [`join_probe`] and [`join_key`]: the regular join,
//!   its kept rows, how they are probed and indexed, and their index's keys.
//! - [`rank`] finds a top-N in the plan; [`top_n`] runs it.
//! - [`windows`]: window assignment; [`window_aggregate`] and [`groups`]:
//!   window aggregates on [`aggregates`] (DataFusion's accumulators), which
//!   [`early_fire`] fires before a window's end;
//!   [`updating_aggregate`]: an unbounded `GROUP BY`'s changelog, its calls
//!   kept for every group by [`group_calls`] (weir's own [`long_calls`] for
//!   the common `BIGINT` ones) and its changelog put together by
//!   [`group_changes`], with [`multiset`] `MIN`, `MAX` and
//!   `COUNT(DISTINCT ...)` that take rows back;
//!   [`keyed_state`]: their state in checkpoints, per key group.
//! - [`nexmark`], [`kafka_source`], [`json_rows`], [`avro_rows`],
//!   [`avro_time`], [`avro_records`], [`record_columns`], [`encode`]: connectors' rows in and out.

pub mod aggregates;
pub mod arrow_types;
pub mod avro_records;
pub mod avro_rows;
pub mod avro_time;
pub mod build;
pub mod calc;
pub mod context;
pub mod early_fire;
pub mod encode;
pub mod explain;
pub mod flink_avg;
pub mod flink_functions;
pub mod group_calls;
pub mod group_changes;
pub mod groups;
pub mod join;
pub mod join_bounds;
pub mod join_key;
pub mod join_probe;
pub mod join_side;
pub mod join_split;
pub mod json_rows;
pub mod kafka_source;
pub mod key_groups;
pub mod keyed_state;
pub mod locate;
pub mod long_calls;
pub mod lower;
pub mod multiset;
pub mod nexmark;
pub mod outer_join;
pub mod plan;
pub mod rank;
pub mod record_columns;
pub mod rows;
pub mod session_aggregate;
pub mod sessions;
pub mod settings;
pub mod top_n;
pub mod top_n_arena;
pub mod updating_aggregate;
pub mod upsert_records;
pub mod window_aggregate;
pub mod window_lineage;
pub mod window_tvf;
pub mod windows;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use datafusion_common::config::ConfigOptions;
use datafusion_expr::LogicalPlan;
use datafusion_optimizer::analyzer::Analyzer;
use datafusion_optimizer::extract_equijoin_predicate::ExtractEquijoinPredicate;
use datafusion_optimizer::push_down_filter::PushDownFilter;
use datafusion_optimizer::simplify_expressions::SimplifyExpressions;
use datafusion_optimizer::{Optimizer, OptimizerContext};
use datafusion_sql::planner::{ContextProvider, SqlToRel};
use datafusion_sql::sqlparser::ast::Statement;
use weir_catalog::{parse_script, Catalog, ScriptStatement};

use crate::error::{Error, Result};
use crate::sql::context::{Context, Tables};
use crate::sql::locate::locate;
use crate::sql::lower::Lowering;
use crate::sql::plan::StreamPlan;
use crate::sql::settings::Settings;

/// A planned SQL script: its tables and its streaming plan.
pub struct PlannedScript {
    /// Every table the script can name: the catalog's, and its own.
    pub tables: Tables,
    /// The operators of all its inserts.
    pub plan: StreamPlan,
    /// Its `SET` statements.
    pub settings: Settings,
}

/// Plans the script `sql` over the built-in Nexmark tables, the tables of
/// `catalog` (if any) and its own `CREATE TABLE`s, each shadowing the ones
/// before of the same name; `options` (`TABLE.KEY=VALUE`) then override
/// tables' `WITH` options.
pub fn plan_script(
    sql: &str,
    catalog: Option<&Catalog>,
    options: &[String],
) -> Result<PlannedScript> {
    let statements = parse_script(sql)?;
    let mut tables = Tables::new();
    for table in weir_catalog::builtin_tables()? {
        tables.insert(table.name.clone(), table);
    }
    if let Some(catalog) = catalog {
        for table in catalog.list()? {
            tables.insert(table.name.clone(), table);
        }
    }
    let mut inserts = Vec::new();
    let mut settings = Settings::default();
    for statement in statements {
        match statement {
            ScriptStatement::CreateTable(table) => {
                tables.insert(table.name.clone(), table);
            }
            ScriptStatement::Set { key, value } => settings.set(&key, &value)?,
            ScriptStatement::Other(statement) => match *statement {
                insert @ Statement::Insert(_) => inserts.push(insert),
                other => {
                    return Err(Error::Sql(format!(
                    "a SQL job holds CREATE TABLE, SET and INSERT INTO statements; `{}` is neither",
                    first_line(&other.to_string())
                )))
                }
            },
        }
    }
    if inserts.is_empty() {
        return Err(Error::Sql(
            "the script has no INSERT INTO: nothing would run".to_string(),
        ));
    }
    for option in options {
        override_option(&mut tables, option)?;
    }
    let context = Context::new(tables.clone());
    let planner = SqlToRel::new(&context);
    let mut lowering = Lowering::new(&context, settings.early_fire()?);
    for insert in inserts {
        let text = first_line(&insert.to_string());
        let planned = planner
            .sql_statement_to_plan(insert.clone())
            .and_then(|logical| analyze(logical, context.options()))
            .and_then(|logical| lowering.insert(&logical));
        if let Err(error) = planned {
            let mut message = planner_message(&error);
            let construct = ["ORDER BY", "LIMIT", "JOIN", "OVER"]
                .into_iter()
                .find(|c| message.starts_with(c));
            if let Some(span) = construct.and_then(|c| locate(&insert, c)) {
                message = format!("{message}{}", span.start);
            }
            return Err(Error::Sql(format!("{message}: in `{text}`")));
        }
    }
    Ok(PlannedScript {
        tables,
        plan: lowering.finish(),
        settings,
    })
}

/// Sets one table's option from `TABLE.KEY=VALUE`, checking the table after.
fn override_option(tables: &mut Tables, option: &str) -> Result<()> {
    let bad = |why: String| Error::Usage(format!("--option {option}: {why}"));
    let (target, value) = option
        .split_once('=')
        .ok_or_else(|| bad("expected TABLE.KEY=VALUE".into()))?;
    let (name, key) = target
        .split_once('.')
        .ok_or_else(|| bad("expected TABLE.KEY=VALUE".into()))?;
    let table = tables
        .get_mut(name)
        .ok_or_else(|| bad(format!("no table `{name}`")))?;
    table.options.insert(key.to_string(), value.to_string());
    weir_catalog::validate::validate(table).map_err(|e| bad(e.to_string()))
}

/// DataFusion's analysis and the optimizations a stream needs: implicit
/// casts made explicit (the physical expressions need them), expressions
/// simplified (constants folded), filters pushed towards the sources (below a
/// join, so that it keeps only the rows that can match; into a join, so that
/// `FROM a, b WHERE a.k = b.k` joins on the key), and a join's equalities
/// made its keys.
fn analyze(plan: LogicalPlan, options: &ConfigOptions) -> datafusion_common::Result<LogicalPlan> {
    let analyzed = Analyzer::new().execute_and_check(plan, options, |_, _| {})?;
    Optimizer::with_rules(vec![
        Arc::new(SimplifyExpressions::new()),
        Arc::new(PushDownFilter::new()),
        Arc::new(ExtractEquijoinPredicate::new()),
    ])
    .optimize(analyzed, &OptimizerContext::new(), |_, _| {})
}

/// DataFusion's message without its `Error during planning: ` prefix, with
/// the place in the SQL when DataFusion knows it.
fn planner_message(error: &datafusion_common::DataFusionError) -> String {
    let message = error.to_string();
    let message = message
        .strip_prefix("Error during planning: ")
        .or_else(|| message.strip_prefix("This feature is not implemented: "))
        .unwrap_or(&message)
        .to_string();
    match error.diagnostic().and_then(|d| d.span) {
        Some(span) if !message.contains("Line: ") => format!(
            "{message} at Line: {}, Column: {}",
            span.start.line, span.start.column
        ),
        _ => message,
    }
}

/// The first line of a statement, shortened, to say which one an error is in.
fn first_line(statement: &str) -> String {
    let line = statement.lines().next().unwrap_or_default();
    if line.chars().count() > 80 {
        format!("{}...", line.chars().take(77).collect::<String>())
    } else {
        line.to_string()
    }
}
