//! Flink's window table functions (`TUMBLE`, `HOP`, `CUMULATE`, `SESSION`)
//! planned into a [`WindowTvf`] node of DataFusion's logical plan: the input
//! table's rows with `window_start`, `window_end` and `window_time` added.
//! A `GROUP BY window_start, window_end` over it is a window aggregate.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::{DataType, Field};
use datafusion_common::{plan_err, DFSchema, DFSchemaRef, Result};
use datafusion_expr::logical_plan::builder::LogicalPlanBuilder;
use datafusion_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion_sql::sqlparser::ast::{
    self, FunctionArg, FunctionArgExpr, FunctionArguments, Spanned, TableFactor,
};
use datafusion_sql::sqlparser::tokenizer::Span;
use weir_catalog::dialect::PARTITION_BY;
use weir_catalog::interval::interval_ms;
use weir_catalog::ColumnOrigin;

use crate::sql::context::Tables;

/// How rows fall into windows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub enum WindowKind {
    /// Fixed windows of `size_ms`, one per row.
    Tumble {
        /// Window length.
        size_ms: u64,
    },
    /// Windows of `size_ms` starting every `slide_ms`: a row is in `size / slide` of them.
    Hop {
        /// Distance between window starts.
        slide_ms: u64,
        /// Window length.
        size_ms: u64,
    },
    /// Windows growing by `step_ms` from the start of each `size_ms` period.
    Cumulate {
        /// Growth step.
        step_ms: u64,
        /// The period, a multiple of the step.
        size_ms: u64,
    },
    /// Per key, rows closer than `gap_ms` in time share a window.
    Session {
        /// The inactivity that closes a session.
        gap_ms: u64,
        /// The `PARTITION BY` columns sessions are kept per.
        keys: Vec<String>,
    },
}

/// A window table function's arguments, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct WindowSpec {
    /// How rows fall into windows.
    pub kind: WindowKind,
    /// The time attribute column windows are cut on.
    pub time_column: String,
    /// Whether that is processing time (`PROCTIME()`) rather than event time.
    pub processing_time: bool,
    /// Shift of window starts from the epoch (`OFFSET`), in milliseconds.
    pub offset_ms: i64,
}

/// The node a window table function becomes: its input with the window columns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowTvf {
    /// The windows.
    pub spec: WindowSpec,
    /// The table's scan.
    pub input: LogicalPlan,
    /// The input's columns, then `window_start`, `window_end`, `window_time`.
    pub schema: DFSchemaRef,
}

impl PartialOrd for WindowTvf {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        // Comparable only where equal in everything but the schema, which
        // follows from the other two.
        match self.spec.partial_cmp(&other.spec) {
            Some(Ordering::Equal) => self.input.partial_cmp(&other.input),
            order => order,
        }
    }
}

impl UserDefinedLogicalNodeCore for WindowTvf {
    fn name(&self) -> &str {
        "WindowTvf"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowTvf: {}", self.spec)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let Some(input) = inputs.pop() else {
            return plan_err!("a window table function has one input");
        };
        Ok(WindowTvf {
            input,
            ..self.clone()
        })
    }
}

impl WindowSpec {
    /// Whether the window aggregate assigns these windows rather than the
    /// window table function, row by row: sessions (which merge) and windows
    /// on processing time (the aggregate's own clock).
    pub fn assigned_by_aggregate(&self) -> bool {
        self.processing_time || matches!(self.kind, WindowKind::Session { .. })
    }
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = &self.time_column;
        let clock = if self.processing_time {
            "processing time"
        } else {
            "event time"
        };
        match &self.kind {
            WindowKind::Tumble { size_ms } => write!(f, "TUMBLE({time}, {})", ms(*size_ms))?,
            WindowKind::Hop { slide_ms, size_ms } => write!(
                f,
                "HOP({time}, slide {}, size {})",
                ms(*slide_ms),
                ms(*size_ms)
            )?,
            WindowKind::Cumulate { step_ms, size_ms } => write!(
                f,
                "CUMULATE({time}, step {}, size {})",
                ms(*step_ms),
                ms(*size_ms)
            )?,
            WindowKind::Session { gap_ms, keys } => {
                write!(f, "SESSION({time}, gap {}", ms(*gap_ms))?;
                if !keys.is_empty() {
                    write!(f, ", partition by {}", keys.join(", "))?;
                }
                f.write_str(")")?;
            }
        }
        if self.offset_ms != 0 {
            write!(f, " offset {} ms", self.offset_ms)?;
        }
        write!(f, " on {clock}")
    }
}

/// A length of time as people read it: `10 s`, `250 ms`.
pub fn ms(value: u64) -> String {
    if value.is_multiple_of(1000) {
        format!("{} s", value / 1000)
    } else {
        format!("{value} ms")
    }
}

/// Plans `TABLE(TUMBLE(...))` and its kin; leaves every other relation to DataFusion.
#[derive(Debug)]
pub struct WindowTvfPlanner {
    /// The tables a job can name, for their time attributes.
    pub tables: Arc<Tables>,
}

impl RelationPlanner for WindowTvfPlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> Result<RelationPlanning> {
        let TableFactor::TableFunction {
            expr: ast::Expr::Function(function),
            alias,
        } = &relation
        else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let name = function.name.to_string().to_ascii_uppercase();
        let place = at(function.name.span());
        if !matches!(name.as_str(), "TUMBLE" | "HOP" | "CUMULATE" | "SESSION") {
            return plan_err!(
                "table function {name} is not supported (TUMBLE, HOP, CUMULATE and SESSION are){place}"
            );
        }
        let arguments = Arguments::read(&function.args, &name, &place)?;
        let table_name = arguments.table.clone();
        let Some(table) = self.tables.get(&table_name) else {
            return plan_err!(
                "{name} reads table `{table_name}`, which is not in the catalog{place}"
            );
        };
        let time_column = arguments.descriptor.clone();
        let event_time = match table.column(&time_column).map(|c| &c.origin) {
            Some(ColumnOrigin::ProcessingTime) => false,
            Some(_) if table.watermark.as_ref().is_some_and(|w| w.column.eq_ignore_ascii_case(&time_column)) => true,
            Some(_) => {
                return plan_err!(
                    "{name}'s DESCRIPTOR({time_column}) is not a time attribute of `{table_name}`: declare WATERMARK FOR {time_column}, or use a column AS PROCTIME(){place}"
                )
            }
            None => return plan_err!("{name}'s DESCRIPTOR({time_column}) is not a column of `{table_name}`{place}"),
        };
        let kind = arguments.kind(&name, &place)?;
        let source = context
            .context_provider()
            .get_table_source(table_name.as_str().into())?;
        let input = LogicalPlanBuilder::scan(table_name.as_str(), source, None)?.build()?;
        let time_type = input
            .schema()
            .field_with_unqualified_name(&time_column)
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Timestamp(
                datafusion_common::arrow::datatypes::TimeUnit::Millisecond,
                None,
            ));
        let mut fields: Vec<_> = input
            .schema()
            .iter()
            .map(|(q, f)| (q.cloned(), Arc::clone(f)))
            .collect();
        for column in ["window_start", "window_end", "window_time"] {
            fields.push((None, Arc::new(Field::new(column, time_type.clone(), false))));
        }
        let schema = Arc::new(DFSchema::new_with_metadata(fields, Default::default())?);
        let spec = WindowSpec {
            kind,
            time_column,
            processing_time: !event_time,
            offset_ms: arguments.offset_ms,
        };
        let plan = LogicalPlan::Extension(Extension {
            node: Arc::new(WindowTvf {
                spec,
                input,
                schema,
            }),
        });
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan,
            alias.clone(),
        ))))
    }
}

/// ` at Line: l, Column: c` (sqlparser's way of saying where), or nothing
/// for an unknown place.
pub fn at(span: Span) -> String {
    if span == Span::empty() {
        String::new()
    } else {
        span.start.to_string()
    }
}

/// The arguments of a window table function, positional or named as in Flink
/// (`DATA`, `TIMECOL`, `SIZE`, `SLIDE`, `STEP`, `GAP`, `OFFSET`).
struct Arguments {
    table: String,
    descriptor: String,
    keys: Vec<String>,
    intervals: Vec<(Option<String>, u64)>,
    offset_ms: i64,
}

impl Arguments {
    fn read(args: &FunctionArguments, name: &str, place: &str) -> Result<Self> {
        let FunctionArguments::List(list) = args else {
            return plan_err!(
                "{name} needs arguments: (TABLE t, DESCRIPTOR(time), INTERVAL ...){place}"
            );
        };
        let mut read = Arguments {
            table: String::new(),
            descriptor: String::new(),
            keys: Vec::new(),
            intervals: Vec::new(),
            offset_ms: 0,
        };
        for arg in &list.args {
            let (label, expr) = match arg {
                FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => (Some(name.value.to_ascii_uppercase()), e),
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => (None, e),
                other => return plan_err!("{name}: argument `{other}` is not understood{place}"),
            };
            match expr {
                ast::Expr::Identifier(ident) if read.table.is_empty() => {
                    read.table = ident.value.clone()
                }
                ast::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("DESCRIPTOR") => {
                    read.descriptor = single_column(&f.args).ok_or_else(|| {
                        datafusion_common::DataFusionError::Plan(format!(
                            "{name}: DESCRIPTOR takes one column{place}"
                        ))
                    })?;
                }
                ast::Expr::Function(f) if f.name.to_string() == PARTITION_BY => {
                    read.keys = columns(&f.args)
                }
                ast::Expr::Interval(interval) => {
                    let length = interval_ms(interval).map_err(|m| {
                        datafusion_common::DataFusionError::Plan(format!("{name}: {m}{place}"))
                    })?;
                    if label.as_deref() == Some("OFFSET") {
                        read.offset_ms = i64::try_from(length).unwrap_or(i64::MAX);
                    } else {
                        read.intervals.push((label, length));
                    }
                }
                other => {
                    return plan_err!(
                        "{name}: argument `{other}` is not a table, DESCRIPTOR or INTERVAL{place}"
                    )
                }
            }
        }
        if read.table.is_empty() || read.descriptor.is_empty() {
            return plan_err!("{name} needs TABLE t and DESCRIPTOR(time column){place}");
        }
        Ok(read)
    }

    /// The window kind from the intervals, in Flink's order: `TUMBLE(size)`,
    /// `HOP(slide, size)`, `CUMULATE(step, size)`, `SESSION(gap)`.
    fn kind(&self, name: &str, place: &str) -> Result<WindowKind> {
        let named = |label: &str| {
            self.intervals
                .iter()
                .find(|(l, _)| l.as_deref() == Some(label))
                .map(|(_, v)| *v)
        };
        let positional: Vec<u64> = self
            .intervals
            .iter()
            .filter(|(l, _)| l.is_none())
            .map(|(_, v)| *v)
            .collect();
        let nth = |label: &str, n: usize| named(label).or(positional.get(n).copied());
        let needed = |value: Option<u64>, what: &str| match value {
            Some(0) | None => plan_err!("{name} needs a {what} interval longer than 0{place}"),
            Some(v) => Ok(v),
        };
        Ok(match name {
            "TUMBLE" => WindowKind::Tumble {
                size_ms: needed(nth("SIZE", 0), "size")?,
            },
            "HOP" => {
                let (slide_ms, size_ms) = (
                    needed(nth("SLIDE", 0), "slide")?,
                    needed(nth("SIZE", 1), "size")?,
                );
                divides(name, "slide", slide_ms, size_ms, place)?;
                WindowKind::Hop { slide_ms, size_ms }
            }
            "CUMULATE" => {
                let (step_ms, size_ms) = (
                    needed(nth("STEP", 0), "step")?,
                    needed(nth("SIZE", 1), "size")?,
                );
                divides(name, "step", step_ms, size_ms, place)?;
                WindowKind::Cumulate { step_ms, size_ms }
            }
            _ => WindowKind::Session {
                gap_ms: needed(nth("GAP", 0), "gap")?,
                keys: self.keys.clone(),
            },
        })
    }
}

/// Refuses a window `size_ms` that is not a multiple of its `what` (`HOP`'s
/// slide, `CUMULATE`'s step): windows would not line up with the epoch.
fn divides(name: &str, what: &str, part_ms: u64, size_ms: u64, place: &str) -> Result<()> {
    if size_ms.is_multiple_of(part_ms) {
        return Ok(());
    }
    plan_err!(
        "{name}'s size ({}) must be a multiple of its {what} ({}){place}",
        ms(size_ms),
        ms(part_ms)
    )
}

/// The one column of `DESCRIPTOR(column)`.
fn single_column(args: &FunctionArguments) -> Option<String> {
    let columns = columns(args);
    (columns.len() == 1)
        .then(|| columns.into_iter().next())
        .flatten()
}

/// The column names of a call's arguments.
fn columns(args: &FunctionArguments) -> Vec<String> {
    let FunctionArguments::List(list) = args else {
        return Vec::new();
    };
    list.args
        .iter()
        .filter_map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Identifier(ident))) => {
                Some(ident.value.clone())
            }
            _ => None,
        })
        .collect()
}
