//! `AVG` as Flink computes it: over an integer column the average is of the
//! column's type, the sum divided by the count in whole numbers (truncated
//! toward zero, the sum wrapping as a Java `long`); over any other type it is
//! DataFusion's `AVG`.

use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, AsArray};
use datafusion_common::arrow::compute::cast;
use datafusion_common::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion_common::{plan_err, Result, ScalarValue};
use datafusion_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, Signature, Volatility,
};

/// Flink's `AVG`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FlinkAvg {
    /// DataFusion's, for every type but the integers.
    inner: Arc<AggregateUDF>,
    signature: Signature,
}

impl FlinkAvg {
    /// Flink's `AVG`, as a function the planner looks up by name.
    pub fn udaf() -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::new_from_impl(FlinkAvg {
            inner: datafusion_functions_aggregate::average::avg_udaf(),
            signature: Signature::user_defined(Volatility::Immutable),
        }))
    }
}

/// Whether `data_type` is one Flink averages in whole numbers.
fn integer(data_type: &DataType) -> bool {
    data_type.is_integer()
}

impl AggregateUDFImpl for FlinkAvg {
    fn name(&self) -> &str {
        "avg"
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t] if integer(t) => Ok(vec![t.clone()]),
            [t @ (DataType::Decimal128(_, _) | DataType::Decimal256(_, _))] => Ok(vec![t.clone()]),
            [t] if t.is_floating() || t.is_null() => Ok(vec![DataType::Float64]),
            [t] => plan_err!("AVG of {t} is not defined: it takes numbers"),
            _ => plan_err!("AVG takes one argument, not {}", arg_types.len()),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t] if integer(t) => Ok(t.clone()),
            _ => self.inner.return_type(arg_types),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let input = args.expr_fields.first().map(|f| f.data_type().clone());
        match input {
            Some(t) if integer(&t) && !args.is_distinct => Ok(Box::new(WholeAverage {
                sum: 0,
                count: 0,
                data_type: t,
            })),
            _ => self.inner.accumulator(args),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        match args.input_fields.first().map(|f| f.data_type()) {
            Some(t) if integer(t) && !args.is_distinct => Ok(vec![
                Arc::new(Field::new(
                    format!("{}[count]", args.name),
                    DataType::Int64,
                    true,
                )),
                Arc::new(Field::new(
                    format!("{}[sum]", args.name),
                    DataType::Int64,
                    true,
                )),
            ]),
            _ => self.inner.state_fields(args),
        }
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        match args.expr_fields.first().map(|f| f.data_type()) {
            Some(t) if integer(t) => false,
            _ => self.inner.groups_accumulator_supported(args),
        }
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        self.inner.create_groups_accumulator(args)
    }
}

/// The average of whole numbers: their sum and count.
#[derive(Debug)]
struct WholeAverage {
    sum: i64,
    count: i64,
    data_type: DataType,
}

/// `array` as 64-bit integers.
fn longs(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(array, &DataType::Int64)?)
}

impl Accumulator for WholeAverage {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
        let values = longs(values)?;
        let values = values.as_primitive::<Int64Type>();
        for v in values.iter().flatten() {
            self.sum = self.sum.wrapping_add(v);
            self.count += 1;
        }
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
        let values = longs(values)?;
        let values = values.as_primitive::<Int64Type>();
        for v in values.iter().flatten() {
            self.sum = self.sum.wrapping_sub(v);
            self.count -= 1;
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.count == 0 {
            return ScalarValue::try_from(&self.data_type);
        }
        ScalarValue::Int64(Some(self.sum.wrapping_div(self.count))).cast_to(&self.data_type)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Int64(Some(self.count)),
            ScalarValue::Int64(Some(self.sum)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [counts, sums] = states else {
            return Ok(());
        };
        let (counts, sums) = (longs(counts)?, longs(sums)?);
        let counts = counts.as_primitive::<Int64Type>();
        let sums = sums.as_primitive::<Int64Type>();
        for i in 0..counts.len() {
            if counts.is_valid(i) && sums.is_valid(i) {
                self.count += counts.value(i);
                self.sum = self.sum.wrapping_add(sums.value(i));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_common::arrow::array::{Int32Array, Int64Array};

    #[test]
    fn whole_numbers_average_truncated_toward_zero_in_their_own_type() {
        let mut avg = WholeAverage {
            sum: 0,
            count: 0,
            data_type: DataType::Int32,
        };
        assert_eq!(avg.evaluate().unwrap(), ScalarValue::Int32(None));
        let values: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), Some(2), None, Some(2)]));
        avg.update_batch(&[values]).unwrap();
        assert_eq!(avg.evaluate().unwrap(), ScalarValue::Int32(Some(1)));
        let negative: ArrayRef = Arc::new(Int32Array::from(vec![-9]));
        avg.update_batch(&[negative]).unwrap();
        // (1 + 2 + 2 - 9) / 4 = -1, toward zero.
        assert_eq!(avg.evaluate().unwrap(), ScalarValue::Int32(Some(-1)));
        let mut merged = WholeAverage {
            sum: 0,
            count: 0,
            data_type: DataType::Int32,
        };
        let state: Vec<ArrayRef> = avg
            .state()
            .unwrap()
            .iter()
            .map(|v| v.to_array().unwrap())
            .collect();
        merged.merge_batch(&state).unwrap();
        assert_eq!(merged.evaluate().unwrap(), ScalarValue::Int32(Some(-1)));
        let longs: ArrayRef = Arc::new(Int64Array::from(vec![7, 8]));
        let mut avg = WholeAverage {
            sum: 0,
            count: 0,
            data_type: DataType::Int64,
        };
        avg.update_batch(&[longs]).unwrap();
        assert_eq!(avg.evaluate().unwrap(), ScalarValue::Int64(Some(7)));
        // Taking a row back, as over an updating result: (7 + 8 - 8) / 1.
        let eight: ArrayRef = Arc::new(Int64Array::from(vec![8]));
        avg.retract_batch(&[eight]).unwrap();
        assert_eq!(avg.evaluate().unwrap(), ScalarValue::Int64(Some(7)));
    }
}
