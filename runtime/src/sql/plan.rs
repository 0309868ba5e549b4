//! weir's streaming plan of a SQL job: the operators DataFusion's logical
//! plan is lowered to, each with a uid derived from what it computes, so that
//! the same query restores the same state.

use datafusion_common::DFSchemaRef;
use datafusion_expr::{Expr, SortExpr as Sort};
use xxhash_rust::xxh3::xxh3_64;

use crate::sql::early_fire::EarlyFire;
use crate::sql::join_bounds::TimeBound;
use crate::sql::window_lineage::WindowBounds;
use crate::sql::window_tvf::{WindowKind, WindowSpec};

/// The streaming plan of a whole SQL script: every `INSERT INTO`, sharing
/// the sources of the tables they read.
#[derive(Debug, Default)]
pub struct StreamPlan {
    /// The operators, each after its inputs.
    pub nodes: Vec<PlanNode>,
}

/// One operator of the plan.
#[derive(Debug)]
pub struct PlanNode {
    /// Its uid: what its state is matched by in checkpoints and savepoints.
    pub uid: String,
    /// What it does.
    pub operator: Operator,
    /// The nodes it reads, by index.
    pub inputs: Vec<usize>,
    /// The columns it emits.
    pub schema: DFSchemaRef,
    /// Whether its output is a changelog with updates and deletes (an
    /// unbounded `GROUP BY`), rather than rows that are only ever appended.
    pub updating: bool,
    /// Whether anything downstream reads its `-U` rows (the old row of each
    /// update): not when its rows go, through projections only, to sinks that
    /// take the new rows alone (see [`StreamPlan::drop_unread_update_befores`]).
    pub update_before: bool,
}

impl StreamPlan {
    /// Clears `update_before` of the nodes whose `-U` rows nothing reads:
    /// every consumer is a sink that `sink_reads_update_before` says ignores
    /// them (an upsert table writes each key's new row; a blackhole discards
    /// all), or a projection whose own `-U` rows nothing reads. A filter reads
    /// them (an update whose new row it drops must still retract the old
    /// one), as every other operator does. Flink's planner infers the same
    /// from its sinks' changelog modes.
    pub fn drop_unread_update_befores(&mut self, sink_reads_update_before: impl Fn(&str) -> bool) {
        for i in (0..self.nodes.len()).rev() {
            let read = self.nodes[i + 1..].iter().any(|consumer| {
                consumer.inputs.contains(&i)
                    && match &consumer.operator {
                        Operator::Sink { table } => sink_reads_update_before(table),
                        Operator::Project { .. } => consumer.update_before,
                        _ => true,
                    }
            });
            self.nodes[i].update_before = read;
        }
    }
}

/// What an operator does.
#[derive(Debug)]
pub enum Operator {
    /// Reads a table's records (the columns in `projection`, all without one).
    Source {
        /// The table.
        table: String,
        /// The columns read, by index, if not all.
        projection: Option<Vec<usize>>,
    },
    /// Keeps the rows for which `predicate` holds.
    Filter {
        /// The condition.
        predicate: Expr,
    },
    /// Computes the output columns.
    Project {
        /// One expression per output column.
        exprs: Vec<Expr>,
    },
    /// Adds `window_start`, `window_end` and `window_time` to each row, once
    /// per window it falls in (or once, holding its time, for windows the
    /// aggregate assigns: sessions and processing time).
    Windows {
        /// The windows.
        spec: WindowSpec,
    },
    /// Aggregates each key's rows per window and emits a window's result once
    /// the watermark (or the clock) passes its end.
    WindowAggregate {
        /// The windows.
        spec: WindowSpec,
        /// The grouping expressions, the window's bounds among them.
        groups: Vec<Expr>,
        /// The aggregate calls.
        aggregates: Vec<Expr>,
        /// The input columns holding each row's window when the windows are
        /// an upstream window aggregate's; `None`: the window table
        /// function's `window_start` and `window_end`.
        upstream: Option<WindowBounds>,
        /// When groups fire before their window ends (the result is then
        /// an updating one); `None`: once, at the end.
        early_fire: Option<EarlyFire>,
    },
    /// Aggregates each key's rows without end, emitting an update of the
    /// key's result for every change.
    Aggregate {
        /// The grouping columns.
        keys: Vec<Expr>,
        /// The aggregate calls.
        aggregates: Vec<Expr>,
    },
    /// Joins each row of one input with the rows of the other whose keys
    /// equal its own (an inner equi-join), keeping both inputs' rows.
    Join {
        /// The equal pairs: a left expression, a right one.
        on: Vec<(Expr, Expr)>,
        /// The rest of the ON condition, over the joined row.
        filter: Option<Expr>,
        /// How event time bounds the pairs (a window or an interval join),
        /// and so how long each side's rows are kept; `None`: a regular join.
        time_bound: Option<Box<TimeBound>>,
        /// The sides whose rows go out without a partner, padded with NULLs
        /// (left, right): `LEFT`, `RIGHT` and `FULL` joins.
        preserved: [bool; 2],
    },
    /// Keeps each partition's first `limit` rows by `order` and emits the
    /// changes of each rank (`ROW_NUMBER() OVER (...) ... WHERE rn <= N`).
    TopN {
        /// The partition expressions.
        partition: Vec<Expr>,
        /// The order, each expression with its direction.
        order: Vec<Sort>,
        /// How many rows each partition keeps.
        limit: usize,
    },
    /// Merges its inputs (`UNION ALL`).
    Union,
    /// Writes into a table.
    Sink {
        /// The table.
        table: String,
    },
}

impl Operator {
    /// Its kind, the first part of its uid.
    pub fn kind(&self) -> &'static str {
        match self {
            Operator::Source { .. } => "source",
            Operator::Filter { .. } => "filter",
            Operator::Project { .. } => "project",
            Operator::Windows { .. } => "windows",
            Operator::WindowAggregate { .. } => "window-aggregate",
            Operator::Aggregate { .. } => "aggregate",
            Operator::Join { .. } => "join",
            Operator::TopN { .. } => "top-n",
            Operator::Union => "union",
            Operator::Sink { .. } => "sink",
        }
    }

    /// What it computes, in one line.
    pub fn describe(&self) -> String {
        let list = |exprs: &[Expr]| {
            exprs
                .iter()
                .map(|e| match e {
                    // An alias's table (`FROM t AS a`) is part of what it computes.
                    Expr::Alias(alias) => match &alias.relation {
                        Some(relation) => format!("{} AS {relation}.{}", alias.expr, alias.name),
                        None => e.to_string(),
                    },
                    _ => e.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Operator::Source { table, .. } => format!("Source {table}"),
            Operator::Filter { predicate } => format!("Filter {predicate}"),
            Operator::Project { exprs } => format!("Project {}", list(exprs)),
            Operator::Windows { spec } => format!("Windows {spec}"),
            Operator::WindowAggregate {
                spec,
                groups,
                aggregates,
                upstream,
                early_fire,
            } => {
                let of = match upstream {
                    Some(b) => format!(" of the windows in ({}, {})", b.start, b.end),
                    None => String::new(),
                };
                let early = match early_fire {
                    Some(fire) => format!(" {fire}"),
                    None => String::new(),
                };
                format!(
                    "WindowAggregate {spec}{of}{early} by [{}]: {}",
                    list(&window_keys(groups, upstream.as_ref())),
                    list(aggregates)
                )
            }
            Operator::Aggregate { keys, aggregates } => {
                format!("Aggregate by [{}]: {}", list(keys), list(aggregates))
            }
            Operator::Join {
                on,
                filter,
                preserved,
                ..
            } => {
                let kind = match preserved {
                    [false, false] => "",
                    [true, false] => "Left ",
                    [false, true] => "Right ",
                    [true, true] => "Full ",
                };
                let mut text = format!(
                    "{kind}Join ON {}",
                    on.iter()
                        .map(|(l, r)| format!("{l} = {r}"))
                        .collect::<Vec<_>>()
                        .join(" AND ")
                );
                if let Some(filter) = filter {
                    text.push_str(&format!(" AND {filter}"));
                }
                text
            }
            Operator::TopN {
                partition,
                order,
                limit,
            } => format!(
                "TopN {limit} by [{}] ORDER BY {}",
                list(partition),
                order
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Operator::Union => "Union".to_string(),
            Operator::Sink { table } => format!("Sink {table}"),
        }
    }

    /// The state it keeps, if any, for `--explain`.
    pub fn state(&self) -> Option<String> {
        let keys = |keys: &[Expr]| {
            if keys.is_empty() {
                "one global key".to_string()
            } else {
                keys.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        match self {
            Operator::Source { .. } => Some("read positions, per split".to_string()),
            Operator::WindowAggregate {
                spec,
                groups,
                upstream,
                early_fire,
                ..
            } => {
                let by = keys(&window_keys(groups, upstream.as_ref()));
                Some(match spec.kind {
                    WindowKind::Session { .. } if upstream.is_none() => {
                        format!("keyed by {by}: each open session's rows")
                    }
                    _ if early_fire.is_some() => format!(
                        "keyed by {by} and window: accumulators, rows since each group fired and its last result"
                    ),
                    _ => format!("keyed by {by} and window: accumulators"),
                })
            }
            Operator::Aggregate { keys: k, .. } => Some(format!(
                "keyed by {}: accumulators (for ever, or for SET 'table.exec.state.ttl' without an update)",
                keys(k)
            )),
            Operator::Join {
                on,
                time_bound,
                preserved,
                ..
            } => Some(format!(
                "keyed by {}: both inputs' rows ({}){}",
                keys(&on.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>()),
                match time_bound.as_deref() {
                    Some(TimeBound::Windows(_)) => {
                        "until the watermark passes their window's end".to_string()
                    }
                    Some(TimeBound::Interval {
                        forget: [left, right],
                        event_time,
                    }) => format!(
                        "an interval join: left rows {left}, right rows {right}; rows later than the watermark in {} or {} pair with nothing",
                        event_time[0], event_time[1]
                    ),
                    None => "for ever, or for SET 'table.exec.state.ttl'".to_string(),
                },
                match (time_bound.is_some(), preserved.contains(&true)) {
                    (true, true) => "; a row of a preserved side that met no partner goes out padded with NULLs when it is forgotten",
                    (false, true) => "; a row of a preserved side goes out padded with NULLs until its first partner comes",
                    _ => "",
                }
            )),
            Operator::TopN {
                partition, limit, ..
            } => Some(format!(
                "keyed by {}: the first {limit} rows",
                keys(partition)
            )),
            Operator::Sink { .. } => Some("pending transactions or files".to_string()),
            _ => None,
        }
    }
}

/// Whether `expr` is one of the columns a window table function adds.
pub fn is_window_column(expr: &Expr) -> bool {
    matches!(expr, Expr::Column(c) if ["window_start", "window_end", "window_time"].contains(&c.name.as_str()))
}

/// The grouping expressions of a window aggregate besides the window's
/// columns (`upstream`'s bounds, or the window table function's columns).
pub fn window_keys(groups: &[Expr], upstream: Option<&WindowBounds>) -> Vec<Expr> {
    groups
        .iter()
        .filter(|e| match upstream {
            Some(bounds) => !bounds.holds(e),
            None => !is_window_column(e),
        })
        .cloned()
        .collect()
}

/// The uid of a node: sources and sinks by their table (a changed query
/// still resumes reading where it was and commits what it wrote), every
/// other operator by a hash of what it computes and of its inputs' uids, so
/// an operator keeps its state exactly when it computes the same thing from
/// the same input.
pub fn uid(operator: &Operator, input_uids: &[&str]) -> String {
    match operator {
        Operator::Source { table, .. } => format!("source-{table}"),
        Operator::Sink { table } => format!("sink-{table}"),
        other => {
            let definition = format!("{}|{}", other.describe(), input_uids.join(","));
            format!("{}-{:016x}", other.kind(), xxh3_64(definition.as_bytes()))
        }
    }
}
