//! Recognizes a top-N in DataFusion's plan: a filter `rn <= N` (`rn < N`,
//! `rn = 1`) on the `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)`
//! column of a window node below it, through projections and aliases.

use datafusion_common::{plan_err, Result, ScalarValue};
use datafusion_expr::logical_plan::Window;
use datafusion_expr::{BinaryExpr, Expr, LogicalPlan, Operator as Op, SortExpr};

/// The rank column and the limit of `predicate`, if it bounds one column.
pub fn rank_bound(predicate: &Expr) -> Option<(String, usize)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = predicate else {
        return None;
    };
    let (column, op, value) = match (
        column_of(left),
        literal_of(right),
        column_of(right),
        literal_of(left),
    ) {
        (Some(c), Some(v), _, _) => (c, *op, v),
        (_, _, Some(c), Some(v)) => (c, op.swap()?, v),
        _ => return None,
    };
    let limit = match op {
        Op::LtEq => value,
        Op::Lt => value.checked_sub(1)?,
        Op::Eq if value == 1 => 1,
        _ => return None,
    };
    Some((column, usize::try_from(limit).ok()?))
}

/// The column `expr` is (through casts).
fn column_of(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(cast) => column_of(&cast.expr),
        Expr::TryCast(cast) => column_of(&cast.expr),
        _ => None,
    }
}

/// The whole number `expr` is, if it is a literal one.
fn literal_of(expr: &Expr) -> Option<u64> {
    match expr {
        Expr::Literal(value, _) => match value {
            ScalarValue::Int8(Some(v)) => u64::try_from(*v).ok(),
            ScalarValue::Int16(Some(v)) => u64::try_from(*v).ok(),
            ScalarValue::Int32(Some(v)) => u64::try_from(*v).ok(),
            ScalarValue::Int64(Some(v)) => u64::try_from(*v).ok(),
            ScalarValue::UInt8(Some(v)) => Some(u64::from(*v)),
            ScalarValue::UInt16(Some(v)) => Some(u64::from(*v)),
            ScalarValue::UInt32(Some(v)) => Some(u64::from(*v)),
            ScalarValue::UInt64(Some(v)) => Some(*v),
            ScalarValue::Decimal128(Some(v), _, 0) => u64::try_from(*v).ok(),
            _ => None,
        },
        Expr::Cast(cast) => literal_of(&cast.expr),
        _ => None,
    }
}

/// The window node's column that `column` of `plan` is, following
/// projections (a plain column, possibly renamed) and aliases down to it.
pub fn rank_column(plan: &LogicalPlan, column: &str) -> Option<String> {
    match plan {
        LogicalPlan::Window(window) => {
            let fields = window.schema.fields();
            let last = fields.last()?.name();
            (last == column).then(|| last.clone())
        }
        LogicalPlan::Projection(projection) => {
            let at = projection
                .schema
                .fields()
                .iter()
                .position(|f| f.name() == column)?;
            let expr = match &projection.expr[at] {
                Expr::Alias(alias) => alias.expr.as_ref(),
                other => other,
            };
            match expr {
                Expr::Column(c) => rank_column(&projection.input, &c.name),
                _ => None,
            }
        }
        LogicalPlan::SubqueryAlias(alias) => rank_column(&alias.input, column),
        _ => None,
    }
}

/// The partition and order of a window node that computes only
/// `ROW_NUMBER()`; anything else is refused by name.
pub fn row_number(window: &Window) -> Result<(Vec<Expr>, Vec<SortExpr>)> {
    let [expr] = &window.window_expr[..] else {
        return plan_err!(
            "OVER windows other than one ROW_NUMBER() are not supported yet ({} window functions)",
            window.window_expr.len()
        );
    };
    let expr = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let Expr::WindowFunction(function) = expr else {
        return plan_err!("OVER window `{expr}` is not supported");
    };
    let name = function.fun.name().to_ascii_uppercase();
    if name != "ROW_NUMBER" {
        return plan_err!(
            "OVER windows with {name} are not supported yet: ROW_NUMBER() with WHERE rn <= N (top-N) or rn = 1 (deduplication) is"
        );
    }
    if function.params.order_by.is_empty() {
        return plan_err!("ROW_NUMBER() OVER (...) needs an ORDER BY: which rows come first");
    }
    Ok((
        function.params.partition_by.clone(),
        function.params.order_by.clone(),
    ))
}
