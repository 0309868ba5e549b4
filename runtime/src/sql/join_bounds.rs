//! How long a join keeps each side's rows when event time bounds the pairs
//! they can still make: in a window join (both inputs window results, joined
//! ON their window ends) a row goes once the watermark passes its window's
//! end; in an interval join (`b.t BETWEEN a.t - INTERVAL ... AND a.t + ...`,
//! both bounds, over both tables' event-time columns) once the watermark
//! passes the last time the other side's rows could match it, and a row
//! arriving later than the watermark pairs with nothing (an inner join drops
//! it, as Flink's DataStream interval join does). A join with one bound only
//! is a regular join, as in Flink.

use std::fmt;

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::{Column, ScalarValue};
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
    /// last time the other's could match (left, right); late rows are dropped.
    Interval([Forget; 2]),
}

impl TimeBound {
    /// When each side's rows go (left, right).
    pub fn forget(&self) -> &[Forget; 2] {
        match self {
            TimeBound::Windows(f) | TimeBound::Interval(f) => f,
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
    // meets left rows down to r - lowest.
    let ((high, l, _), (low, _, r)) = (highest?, lowest?);
    Some(TimeBound::Interval([
        Forget {
            time: Expr::Column(l),
            after_ms: high,
        },
        Forget {
            time: Expr::Column(r),
            after_ms: -low,
        },
    ]))
}

/// A bound on `right time - left time`, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    AtLeast(i64),
    AtMost(i64),
}

/// The bound `conjunct` puts on the difference of a right and a left
/// event-time column, with the two columns (left, right).
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
    let side = |c: &Column| {
        if join.left.schema().has_column(c) && is_event_time(&join.left, c, context) {
            Some(0)
        } else if join.right.schema().has_column(c) && is_event_time(&join.right, c, context) {
            Some(1)
        } else {
            None
        }
    };
    // a + a_ms (op) b + b_ms
    match (side(&a)?, side(&b)?) {
        // right - left (op) b_ms - a_ms
        (1, 0) => {
            let ms = b_ms - a_ms;
            Some((
                b,
                a,
                if at_least {
                    Bound::AtLeast(ms)
                } else {
                    Bound::AtMost(ms)
                },
            ))
        }
        // right - left (flipped op) a_ms - b_ms
        (0, 1) => {
            let ms = a_ms - b_ms;
            Some((
                a,
                b,
                if at_least {
                    Bound::AtMost(ms)
                } else {
                    Bound::AtLeast(ms)
                },
            ))
        }
        _ => None,
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
/// column of its `WATERMARK`), carried unchanged.
fn is_event_time(plan: &LogicalPlan, column: &Column, context: &Context) -> bool {
    match plan {
        LogicalPlan::Filter(f) => is_event_time(&f.input, column, context),
        LogicalPlan::Projection(p) => {
            let Ok(i) = p.schema.index_of_column(column) else {
                return false;
            };
            match p.expr.get(i).map(|e| e.clone().unalias()) {
                Some(Expr::Column(from)) => is_event_time(&p.input, &from, context),
                _ => false,
            }
        }
        LogicalPlan::SubqueryAlias(a) => match a.schema.index_of_column(column) {
            Ok(i) => {
                let from = Column::from(a.input.schema().qualified_field(i));
                is_event_time(&a.input, &from, context)
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
