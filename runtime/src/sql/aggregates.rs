//! Aggregate calls (`COUNT`, `SUM`, `AVG`, `COUNT(DISTINCT ...)`,
//! `FILTER (WHERE ...)`, ...) on DataFusion's accumulators: a call lowered to
//! its physical form, its arguments evaluated over a batch, and a fresh
//! accumulator for many groups at once.

use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion_common::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion_common::DFSchema;
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::{Accumulator, Expr, GroupsAccumulator};
use datafusion_physical_expr::aggregate::{AggregateFunctionExpr, LoweredAggregateBuilder};
use datafusion_physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};

use crate::error::{Error, Result};
use crate::sql::calc::evaluate;
use crate::sql::multiset::{MultisetAccumulator, MultisetKind};

/// One aggregate call of a `GROUP BY`, ready to run.
#[derive(Debug, Clone)]
pub struct AggregateCall {
    function: Arc<AggregateFunctionExpr>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// The fields of its accumulators' state, as checkpoints store it.
    pub state_fields: Vec<FieldRef>,
    /// Over an updating input, the multiset `MIN`, `MAX` or
    /// `COUNT(DISTINCT ...)` that replaces DataFusion's accumulator, with its
    /// argument's type.
    multiset: Option<(MultisetKind, DataType)>,
}

/// How a call takes a row back when its input is an updating result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retraction {
    /// Its accumulator's own `retract_batch` (`COUNT`, `AVG`).
    Retract,
    /// Adding the value negated (`SUM`, whose accumulator keeps only the sum).
    Negate,
}

/// A call's arguments over one batch.
pub struct CallInputs {
    /// One array per argument.
    pub values: Vec<ArrayRef>,
    /// Which rows `FILTER (WHERE ...)` lets in, if it has one.
    pub filter: Option<BooleanArray>,
}

impl AggregateCall {
    /// Lowers the call `expr` over rows of `input`.
    pub fn lower(expr: &Expr, input: &DFSchema) -> Result<Self> {
        let props = ExecutionProps::new();
        let planning = PhysicalPlanningContext::default();
        let lowered =
            LoweredAggregateBuilder::new(expr, input, input.as_arrow(), &props, &planning)
                .build()
                .map_err(|e| Error::Sql(format!("aggregate `{expr}`: {e}")))?;
        if !lowered.order_bys.is_empty() {
            return Err(Error::Sql(format!(
                "aggregate `{expr}`: ORDER BY inside an aggregate call is not supported"
            )));
        }
        let state_fields = lowered
            .aggregate
            .state_fields()
            .map_err(|e| Error::Sql(format!("aggregate `{expr}`: {e}")))?;
        let call = AggregateCall {
            function: lowered.aggregate,
            filter: lowered.filter,
            state_fields,
            multiset: None,
        };
        // Made once here, so that an accumulator that cannot be made fails the plan.
        call.accumulator()?;
        Ok(call)
    }

    /// The field of its result.
    pub fn field(&self) -> FieldRef {
        self.function.field()
    }

    /// A fresh accumulator of many groups.
    pub fn accumulator(&self) -> Result<Box<dyn GroupsAccumulator>> {
        let failed = |e: datafusion_common::DataFusionError| {
            Error::Sql(format!("aggregate `{}`: {e}", self.function.name()))
        };
        if let Some((kind, data_type)) = self.multiset.clone() {
            return Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                Ok(Box::new(MultisetAccumulator::new(kind, data_type.clone()))
                    as Box<dyn Accumulator>)
            })));
        }
        if self.function.groups_accumulator_supported() {
            return self.function.create_groups_accumulator().map_err(failed);
        }
        let function = self.function.clone();
        // Checked once here so that the adapter's factory cannot fail later.
        function.create_accumulator().map_err(failed)?;
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
            function.create_accumulator()
        })))
    }

    /// A fresh accumulator of one group.
    pub fn single_accumulator(&self) -> Result<Box<dyn Accumulator>> {
        if let Some((kind, data_type)) = &self.multiset {
            return Ok(Box::new(MultisetAccumulator::new(*kind, data_type.clone())));
        }
        self.function
            .create_accumulator()
            .map_err(|e| Error::Sql(format!("aggregate `{}`: {e}", self.function.name())))
    }

    /// The call as it runs over an updating input (rows of `input`), and how
    /// it takes a row back: `MIN`, `MAX` and `COUNT(DISTINCT ...)` keep a
    /// multiset of their values instead of DataFusion's state; an error
    /// naming it if it cannot (`SUM(DISTINCT ...)`, ...).
    pub fn retracting(self, input: &Schema) -> Result<(AggregateCall, Retraction)> {
        let name = self.function.fun().name().to_string();
        let arguments = self.function.expressions();
        let kind = MultisetKind::of(&name, self.function.is_distinct());
        if let (Some(kind), [argument]) = (kind, arguments.as_slice()) {
            let data_type = argument
                .data_type(input)
                .map_err(|e| Error::Sql(format!("aggregate `{name}`: {e}")))?;
            let call = AggregateCall {
                state_fields: MultisetKind::state_fields(&data_type),
                multiset: Some((kind, data_type)),
                ..self
            };
            return Ok((call, Retraction::Retract));
        }
        if self.single_accumulator()?.supports_retract_batch() {
            return Ok((self, Retraction::Retract));
        }
        if name.eq_ignore_ascii_case("sum") && !self.function.is_distinct() {
            return Ok((self, Retraction::Negate));
        }
        Err(Error::Sql(format!(
            "aggregate `{}` over an updating result (an unbounded GROUP BY, a top-N, an outer join or a window firing early) is not supported: it cannot take a row back (COUNT, SUM, AVG, MIN, MAX and COUNT(DISTINCT ...) can)",
            self.function.name()
        )))
    }

    /// Its function's name, in lower case (`count`, `sum`, `avg`, ...).
    pub fn name(&self) -> String {
        self.function.fun().name().to_ascii_lowercase()
    }

    /// Whether it is over distinct values (`COUNT(DISTINCT ...)`).
    pub fn is_distinct(&self) -> bool {
        self.function.is_distinct()
    }

    /// Whether it keeps a multiset of its values to take rows back.
    pub fn is_multiset(&self) -> bool {
        self.multiset.is_some()
    }

    /// The types of its arguments over rows of `input`.
    pub fn argument_types(&self, input: &Schema) -> Result<Vec<DataType>> {
        self.function
            .expressions()
            .iter()
            .map(|a| {
                a.data_type(input)
                    .map_err(|e| Error::Sql(format!("aggregate `{}`: {e}", self.function.name())))
            })
            .collect()
    }

    /// How many arguments it takes.
    pub fn arguments(&self) -> usize {
        self.function.expressions().len()
    }

    /// Whether it has a `FILTER (WHERE ...)`.
    pub fn has_filter(&self) -> bool {
        self.filter.is_some()
    }

    /// The fields of its arguments over rows of `input`, then of its filter's
    /// mask if it has one: what an operator keeps to aggregate rows later.
    pub fn input_fields(&self, input: &Schema) -> Result<Vec<Field>> {
        let failed = |e| Error::Sql(format!("aggregate `{}`: {e}", self.function.name()));
        let mut fields = Vec::with_capacity(self.arguments() + 1);
        for (i, argument) in self.function.expressions().iter().enumerate() {
            let data_type = argument.data_type(input).map_err(failed)?;
            fields.push(Field::new(format!("argument_{i}"), data_type, true));
        }
        if self.has_filter() {
            fields.push(Field::new("filter", DataType::Boolean, true));
        }
        Ok(fields)
    }

    /// Its arguments and filter over `batch`.
    pub fn inputs(&self, batch: &RecordBatch) -> Result<CallInputs> {
        let values = self
            .function
            .expressions()
            .iter()
            .map(|e| evaluate(e.as_ref(), batch))
            .collect::<Result<Vec<_>>>()?;
        let filter = match &self.filter {
            None => None,
            Some(filter) => {
                let mask = evaluate(filter.as_ref(), batch)?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .cloned()
                    .ok_or_else(|| {
                        Error::Sql(format!("FILTER (WHERE {filter}) is not a condition"))
                    })?;
                Some(mask)
            }
        };
        Ok(CallInputs { values, filter })
    }
}
