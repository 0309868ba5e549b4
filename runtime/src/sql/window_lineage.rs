//! Finds the windows a `GROUP BY` aggregates over: a window table function's
//! `window_start` and `window_end` right below it, or the bounds of the
//! windows of a window aggregate further down (renamed, projected, filtered),
//! so that a window aggregate of a window aggregate's result is one too, as in
//! Flink (Nexmark q5's maximum count per window).

use datafusion_common::Column;
use datafusion_expr::{Expr, LogicalPlan};

use crate::sql::window_tvf::{WindowSpec, WindowTvf};

/// The input columns a window aggregate of an upstream window aggregate's
/// result reads each row's window from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowBounds {
    /// The column holding the window's start.
    pub start: String,
    /// The column holding the window's end.
    pub end: String,
}

impl WindowBounds {
    /// Whether `expr` is one of the two bound columns.
    pub fn holds(&self, expr: &Expr) -> bool {
        matches!(expr, Expr::Column(c) if c.name == self.start || c.name == self.end)
    }
}

/// The windows a `GROUP BY groups` over `input` aggregates by: the window
/// table function feeding `input` when `groups` holds its `window_start` and
/// `window_end` (bounds `None`), or an upstream window aggregate's windows
/// when `groups` holds two columns carrying their start and end.
pub fn grouped_windows(
    input: &LogicalPlan,
    groups: &[Expr],
) -> Option<(WindowSpec, Option<WindowBounds>)> {
    if let Some(spec) = table_function(input) {
        let grouped = |name: &str| {
            groups
                .iter()
                .any(|e| matches!(e, Expr::Column(c) if c.name == name))
        };
        return (grouped("window_start") && grouped("window_end")).then_some((spec, None));
    }
    let mut start = None;
    let mut end = None;
    for group in groups {
        let Expr::Column(column) = group else {
            continue;
        };
        match bound_of(input, column) {
            Some((spec, Bound::Start)) => start = Some((spec, column.name.clone())),
            Some((spec, Bound::End)) => end = Some((spec, column.name.clone())),
            None => {}
        }
    }
    let ((spec, start), (other, end)) = (start?, end?);
    (spec == other).then_some((spec, Some(WindowBounds { start, end })))
}

/// The window table function feeding `plan` through filters, projections and
/// aliases, if any.
pub fn table_function(plan: &LogicalPlan) -> Option<WindowSpec> {
    match plan {
        LogicalPlan::Extension(extension) => extension
            .node
            .as_any()
            .downcast_ref::<WindowTvf>()
            .map(|tvf| tvf.spec.clone()),
        LogicalPlan::Filter(f) => table_function(&f.input),
        LogicalPlan::Projection(p) => table_function(&p.input),
        LogicalPlan::SubqueryAlias(a) => table_function(&a.input),
        _ => None,
    }
}

/// Whether `column` of `plan`'s output carries the end of an event-time
/// window aggregate's windows: its rows all arrive before the watermark passes
/// that end.
pub fn ends_event_time_window(plan: &LogicalPlan, column: &Column) -> bool {
    matches!(bound_of(plan, column), Some((spec, Bound::End)) if !spec.processing_time)
}

/// Which end of a window a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    Start,
    End,
}

/// The window bound `column` of `plan`'s output holds, if it carries a window
/// aggregate's `window_start` or `window_end` unchanged.
fn bound_of(plan: &LogicalPlan, column: &Column) -> Option<(WindowSpec, Bound)> {
    match plan {
        LogicalPlan::Filter(f) => bound_of(&f.input, column),
        LogicalPlan::Projection(p) => {
            let i = p.schema.index_of_column(column).ok()?;
            match p.expr.get(i)?.clone().unalias() {
                Expr::Column(from) => bound_of(&p.input, &from),
                _ => None,
            }
        }
        LogicalPlan::SubqueryAlias(a) => {
            let i = a.schema.index_of_column(column).ok()?;
            let from = Column::from(a.input.schema().qualified_field(i));
            bound_of(&a.input, &from)
        }
        LogicalPlan::Aggregate(aggregate) => {
            let i = aggregate.schema.index_of_column(column).ok()?;
            let Some(Expr::Column(group)) = aggregate.group_expr.get(i) else {
                return None;
            };
            let (spec, bounds) = grouped_windows(&aggregate.input, &aggregate.group_expr)?;
            match bounds {
                None => match group.name.as_str() {
                    "window_start" => Some((spec, Bound::Start)),
                    "window_end" => Some((spec, Bound::End)),
                    _ => None,
                },
                Some(bounds) if group.name == bounds.start => Some((spec, Bound::Start)),
                Some(bounds) if group.name == bounds.end => Some((spec, Bound::End)),
                Some(_) => None,
            }
        }
        _ => None,
    }
}
