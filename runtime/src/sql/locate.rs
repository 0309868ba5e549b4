//! Where in the SQL a construct the lowering refused is: DataFusion's logical
//! plan has no positions, the statement sqlparser read does.

use datafusion_sql::sqlparser::ast::{visit_expressions, Expr, Query, SetExpr, Spanned, Statement};
use datafusion_sql::sqlparser::tokenizer::Span;
use std::ops::ControlFlow;

/// The place of the first `construct` (`ORDER BY`, `LIMIT`, `JOIN`, `OVER`)
/// in `statement`'s query, if it has one at its top level.
pub fn locate(statement: &Statement, construct: &str) -> Option<Span> {
    let Statement::Insert(insert) = statement else {
        return None;
    };
    let query: &Query = insert.source.as_deref()?;
    let span = match construct {
        "ORDER BY" => query.order_by.as_ref().map(|o| o.span()),
        "LIMIT" => query.limit_clause.as_ref().map(|l| l.span()),
        "JOIN" => match query.body.as_ref() {
            SetExpr::Select(select) => select
                .from
                .iter()
                .flat_map(|t| t.joins.iter())
                .next()
                .map(|join| join.relation.span()),
            _ => None,
        },
        "OVER" => {
            let found = visit_expressions(statement, |expr| match expr {
                Expr::Function(f) if f.over.is_some() => ControlFlow::Break(f.name.span()),
                _ => ControlFlow::Continue(()),
            });
            match found {
                ControlFlow::Break(span) => Some(span),
                ControlFlow::Continue(()) => None,
            }
        }
        _ => None,
    };
    span.filter(|s| *s != Span::empty())
}
