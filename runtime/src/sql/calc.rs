//! Filters and projections over [`Rows`], evaluated by DataFusion's
//! physical expressions: vectorized over a whole batch's columns.

use std::sync::Arc;

use datafusion_common::arrow::array::{
    Array, AsArray, BooleanArray, RecordBatch, RecordBatchOptions,
};
use datafusion_common::arrow::compute::{filter, filter_record_batch};
use datafusion_common::arrow::datatypes::Int8Type;
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::DFSchema;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::{ColumnarValue, Expr};
use datafusion_physical_expr::{create_physical_expr, PhysicalExpr};

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::operator::Operator;
use crate::sql::rows::Rows;

/// `expr` over rows of `schema`, as a physical expression.
pub fn physical(expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    create_physical_expr(
        expr,
        schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )
    .map_err(|e| Error::Sql(format!("`{expr}`: {e}")))
}

/// Evaluates `expr` over `batch` as one array of its rows.
pub fn evaluate(expr: &dyn PhysicalExpr, batch: &RecordBatch) -> Result<Arc<dyn Array>> {
    expr.evaluate(batch)
        .and_then(|value| value.into_array(batch.num_rows()))
        .map_err(|e| Error::Sql(format!("evaluating `{expr}`: {e}")))
}

/// What a [`Calc`] computes.
pub enum Calc {
    /// Keeps the rows for which the predicate is true (not false, not null).
    Filter(Arc<dyn PhysicalExpr>),
    /// Computes the output columns of `schema`, one expression each.
    Project(Vec<Arc<dyn PhysicalExpr>>, SchemaRef),
}

impl Calc {
    fn apply(&self, rows: Rows) -> Result<Option<Rows>> {
        let batch = &rows.batch;
        match self {
            Calc::Filter(predicate) => {
                let mask = match predicate.evaluate(batch) {
                    Ok(ColumnarValue::Scalar(value)) => {
                        return Ok((value == true.into()).then_some(rows))
                    }
                    Ok(ColumnarValue::Array(mask)) => mask,
                    Err(e) => return Err(Error::Sql(format!("evaluating `{predicate}`: {e}"))),
                };
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| {
                        Error::Sql(format!(
                            "`{predicate}` is not a condition: it is {}",
                            mask.data_type()
                        ))
                    })?;
                let failed = |e| Error::Sql(format!("filtering by `{predicate}`: {e}"));
                let kept = filter_record_batch(batch, mask).map_err(failed)?;
                // A changelog's kinds go with their rows.
                let kinds = match &rows.kinds {
                    None => None,
                    Some(kinds) => Some(
                        filter(kinds, mask)
                            .map_err(failed)?
                            .as_primitive::<Int8Type>()
                            .clone(),
                    ),
                };
                Ok((kept.num_rows() > 0).then_some(Rows { batch: kept, kinds }))
            }
            Calc::Project(exprs, schema) => {
                let columns = exprs
                    .iter()
                    .map(|e| evaluate(e.as_ref(), batch))
                    .collect::<Result<Vec<_>>>()?;
                let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                let batch = RecordBatch::try_new_with_options(schema.clone(), columns, &options)
                    .map_err(|e| Error::Sql(format!("projecting: {e}")))?;
                Ok(Some(Rows {
                    batch,
                    kinds: rows.kinds,
                }))
            }
        }
    }
}

impl Operator for Calc {
    type In = Rows;
    type Out = Rows;

    fn process(&mut self, input: &mut Batch<Rows>, output: &mut Batch<Rows>) -> Result<()> {
        for rows in input.drain(..) {
            output.extend(self.apply(rows)?);
        }
        Ok(())
    }
}
