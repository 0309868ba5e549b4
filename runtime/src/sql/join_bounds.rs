//! How long a join keeps each side's rows when event time bounds the pairs
//! they can still make: in a window join (both inputs window results, joined
//! ON their window ends) a row goes once the watermark passes its window's
//! end; in an interval join (`b.t BETWEEN a.t - INTERVAL ... AND a.t + ...`,
//! both bounds, over both tables' event-time columns) once the watermark
//! passes the last time the other side's rows could match it, and a row
//! arriving later than the watermark pairs with nothing (an inner join drops
//! it, as Flink's DataStream interval join does). The bound may be another time
//! column of the side whose rows it lets go (`b.t BETWEEN a.t AND a.expires`:
//! an auction goes once the watermark passes its `expires`), and a window
//! aggregate's window end counts as event time (Nexmark's q4 and q7). A join
//! with one bound only is a regular join, as in Flink.

use std::fmt;

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::{Column, ExprSchema, ScalarValue};
use datafusion_expr::logical_plan::Join;
use datafusion_expr::utils::split_conjunction;
use datafusion_expr::{BinaryExpr, Expr, LogicalPlan, Operator as BinaryOp};

use crate::sql::context::Context;
use crate::sql::window_lineage::ends_event_time_window;

/// When a side's row can be forgotten: once the watermark reaches its `time`
/// plus `after_ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct Forget {
    /// The row's time column, on its side.
    pub time: Expr,
    /// How long after `time` the watermark must be (may be negative).
    pub after_ms: i64,
}

impl fmt::Display for Forget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.after_ms {
            0 => write!(f, "until the watermark reaches {}", self.time),
            ms if ms < 0 => write!(f, "until the watermark reaches {} - {} ms", self.time, -ms),
            ms => write!(f, "until the watermark reaches {} + {ms} ms", self.time),
        }
    }
}

/// How event time bounds a join.
#[derive(Clone, Debug, PartialEq)]
pub enum TimeBound {
    /// A window join: each side's rows go once the watermark passes their
    /// window's end (left, right).
    Windows([Forget; 2]),
    /// An interval join: each side's rows go once the watermark passes the
    /// last time the other's could match; a row later than the watermark in
    /// its side's event time pairs with nothing.
    Interval {
        /// When each side's rows go (left, right).
        forget: [Forget; 2],
        /// Each side's event-time column (left, right), which says whether
        /// a row is late.
        event_time: Box<[Expr; 2]>,
    },
}

impl TimeBound {
    /// When each side's rows go (left, right).
    pub fn forget(&self) -> &[Forget; 2] {
        match self {
            TimeBound::Windows(f) | TimeBound::Interval { forget: f, .. } => f,
        }
    }
}

/// How event time bounds `join`, if it does.
pub fn time_bound(join: &Join, context: &Context) -> Option<TimeBound> {
    let window = join.on.iter().find_map(|pair| match pair {
        (Expr::Column(l), Expr::Column(r))
            if ends_event_time_window(&join.left, l) && ends_event_time_window(&join.right, r) =>
        {
            Some((l.clone(), r.clone()))
        }
        _ => None,
    });
    if let Some((l, r)) = window {
        // A window ending at `end` holds times up to `end - 1`.
        let at = |c: Column| Forget {
            time: Expr::Column(c),
            after_ms: -1,
        };
        return Some(TimeBound::Windows([at(l), at(r)]));
    }
    let filter = join.filter.as_ref()?;
    // Bounds on `right time - left time`, each with the pair of columns.
    let mut lowest: Option<(i64, Column, Column)> = None;
    let mut highest: Option<(i64, Column, Column)> = None;
    for conjunct in split_conjunction(filter) {
        let Some((l, r, bound)) = difference_bound(conjunct, join, context) else {
            continue;
        };
        match bound {
            Bound::AtLeast(ms) if lowest.as_ref().is_none_or(|(b, ..)| ms > *b) => {
                lowest = Some((ms, l, r))
            }
            Bound::AtMost(ms) if highest.as_ref().is_none_or(|(b, ..)| ms < *b) => {
                highest = Some((ms, l, r))
            }
            _ => {}
        }
    }
    // A left row at t meets right rows up to t + highest; a right row at r
    // meets left rows down to r - lowest. The lowest bound's left column is
    // the left side's event time, the highest's right column the right's.
    let ((high, l, r_time), (low, l_time, r)) = (highest?, lowest?);
    Some(TimeBound::Interval {
        forget: [
            Forget {
                time: Expr::Column(l),
                after_ms: high,
            },
            Forget {
                time: Expr::Column(r),
                after_ms: -low,
            },
        ],
        event_time: Box::new([Expr::Column(l_time), Expr::Column(r_time)]),
    })
}

/// A bound on `right time - left time`, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    AtLeast(i64),
    AtMost(i64),
}

/// The bound `conjunct` puts on the difference of a right and a left time
/// column, with the two columns (left, right), when the bound lets rows go.
///
/// `right - left <= ms` lets a left row go once the watermark passes its
/// `left + ms`, because every right row still to come is later than the
/// watermark: so the right column must be the right input's event time (a
/// table's `WATERMARK` column, or the end of an event-time window aggregate,
/// whose rows all arrive before the watermark passes it), while the left one
/// may be any of its time columns (an auction's `expires`). `right - left >=
/// ms` likewise needs the left column to be the left input's event time.
fn difference_bound(
    conjunct: &Expr,
    join: &Join,
    context: &Context,
) -> Option<(Column, Column, Bound)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = conjunct else {
        return None;
    };
    let at_least = match op {
        BinaryOp::GtEq | BinaryOp::Gt => true,
        BinaryOp::LtEq | BinaryOp::Lt => false,
        _ => return None,
    };
    let (a, a_ms) = shifted_column(left)?;
    let (b, b_ms) = shifted_column(right)?;
    // The side of a time column, and whether it is that side's event time.
    let side = |c: &Column| {
        [&join.left, &join.right]
            .iter()
            .enumerate()
            .find_map(|(side, plan)| {
                let field = plan.schema().field_from_column(c).ok()?;
                matches!(field.data_type(), DataType::Timestamp(..))
                    .then(|| (side, is_event_time(plan, c, context)))
            })
    };
    // a + a_ms (op) b + b_ms, as right - left (op') ms.
    let (l, l_time, r, r_time, at_least, ms) = match (side(&a)?, side(&b)?) {
        ((1, a_time), (0, b_time)) => (b, b_time, a, a_time, at_least, b_ms - a_ms),
        ((0, a_time), (1, b_time)) => (a, a_time, b, b_time, !at_least, a_ms - b_ms),
        _ => return None,
    };
    if at_least {
        l_time.then_some((l, r, Bound::AtLeast(ms)))
    } else {
        r_time.then_some((l, r, Bound::AtMost(ms)))
    }
}

/// `c`, `c + INTERVAL ...` or `c - INTERVAL ...`: the column and the shift.
fn shifted_column(expr: &Expr) -> Option<(Column, i64)> {
    match expr {
        Expr::Column(c) => Some((c.clone(), 0)),
        // A coercion between timestamp types keeps the instant.
        Expr::Cast(cast) if matches!(cast.field.data_type(), DataType::Timestamp(..)) => {
            shifted_column(&cast.expr)
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, shift) = shifted_column(left)?;
            let ms = interval_ms(right)?;
            match op {
                BinaryOp::Plus => Some((column, shift + ms)),
                BinaryOp::Minus => Some((column, shift - ms)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A day-time interval literal in milliseconds (months vary in length).
fn interval_ms(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            Some(i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            Some(i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds))
        }
        Expr::Cast(cast) => interval_ms(&cast.expr),
        _ => None,
    }
}

/// Whether `column` of `plan`'s output is a table's event-time column (the
/// column of its `WATERMARK`) or an event-time window aggregate's window end,
/// carried unchanged: rows to come are later than the watermark in it.
fn is_event_time(plan: &LogicalPlan, column: &Column, context: &Context) -> bool {
    ends_event_time_window(plan, column) || is_table_event_time(plan, column, context)
}

/// Whether `column` of `plan`'s output is a table's `WATERMARK` column.
fn is_table_event_time(plan: &LogicalPlan, column: &Column, context: &Context) -> bool {
    match plan {
        LogicalPlan::Filter(f) => is_table_event_time(&f.input, column, context),
        LogicalPlan::Projection(p) => {
            let Ok(i) = p.schema.index_of_column(column) else {
                return false;
            };
            match p.expr.get(i).map(|e| e.clone().unalias()) {
                Some(Expr::Column(from)) => is_table_event_time(&p.input, &from, context),
                _ => false,
            }
        }
        LogicalPlan::SubqueryAlias(a) => match a.schema.index_of_column(column) {
            Ok(i) => {
                let from = Column::from(a.input.schema().qualified_field(i));
                is_table_event_time(&a.input, &from, context)
            }
            Err(_) => false,
        },
        LogicalPlan::TableScan(scan) => context
            .table(scan.table_name.table())
            .and_then(|t| t.watermark.as_ref())
            .is_some_and(|w| w.column.eq_ignore_ascii_case(&column.name)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use datafusion_common::arrow::datatypes::IntervalMonthDayNano;
    use datafusion_expr::{col, lit};

    use super::*;

    #[test]
    fn a_shifted_column_reads_its_interval_in_milliseconds() {
        let hour = lit(ScalarValue::IntervalMonthDayNano(Some(
            IntervalMonthDayNano::new(0, 0, 3_600_000_000_000),
        )));
        assert_eq!(
            shifted_column(&(col("a.t") - hour.clone())),
            Some((Column::from_qualified_name("a.t"), -3_600_000))
        );
        assert_eq!(
            shifted_column(&(col("a.t") + hour)),
            Some((Column::from_qualified_name("a.t"), 3_600_000))
        );
        let month = lit(ScalarValue::IntervalMonthDayNano(Some(
            IntervalMonthDayNano::new(1, 0, 0),
        )));
        assert_eq!(shifted_column(&(col("a.t") + month)), None);
    }
}
