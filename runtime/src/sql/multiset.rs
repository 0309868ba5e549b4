//! `MIN`, `MAX` and `COUNT(DISTINCT ...)` that take rows back: over an
//! updating input (another `GROUP BY`'s changelog, an outer join) a `-U` or
//! `-D` row must leave the result as if the row had never come, which a
//! single minimum or a set cannot do. [`MultisetAccumulator`] keeps each
//! distinct value with how many rows hold it (as Flink's retracting `MIN`,
//! `MAX` and distinct aggregates keep a map view), so taking a row back
//! lowers its count and a value whose count reaches zero is gone.
//!
//! Its checkpointed state is two lists per group: the distinct values and
//! their counts.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion_common::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion_common::utils::SingleRowListArrayBuilder;
use datafusion_common::{DataFusionError, ScalarValue};
use datafusion_expr::Accumulator;

/// What a [`MultisetAccumulator`] computes of its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultisetKind {
    /// The smallest value (`MIN`).
    Min,
    /// The largest value (`MAX`).
    Max,
    /// How many distinct values (`COUNT(DISTINCT ...)`).
    CountDistinct,
}

impl MultisetKind {
    /// The kind of the aggregate function `name`, if it is one.
    pub fn of(name: &str, distinct: bool) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "min" => Some(MultisetKind::Min),
            "max" => Some(MultisetKind::Max),
            "count" if distinct => Some(MultisetKind::CountDistinct),
            _ => None,
        }
    }

    /// The fields of the state of values of `data_type`: the distinct
    /// values and their counts, as lists.
    pub fn state_fields(data_type: &DataType) -> Vec<FieldRef> {
        let list = |item: DataType| DataType::List(Arc::new(Field::new_list_field(item, true)));
        vec![
            Arc::new(Field::new("values", list(data_type.clone()), true)),
            Arc::new(Field::new("counts", list(DataType::Int64), true)),
        ]
    }
}

/// A value ordered by DataFusion's order of its type (floats in total order).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ordered(ScalarValue);

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

/// Every distinct non-null value of a group with how many of its rows hold it.
#[derive(Debug)]
pub struct MultisetAccumulator {
    kind: MultisetKind,
    data_type: DataType,
    counts: BTreeMap<Ordered, i64>,
}

type Result<T> = std::result::Result<T, DataFusionError>;

impl MultisetAccumulator {
    /// An empty multiset of values of `data_type`, computing `kind`.
    pub fn new(kind: MultisetKind, data_type: DataType) -> Self {
        MultisetAccumulator {
            kind,
            data_type,
            counts: BTreeMap::new(),
        }
    }

    /// Adds `by` rows of `value`; a value whose count reaches zero is gone.
    /// A count below zero (a row taken back before it came, as Flink allows
    /// for) is kept but holds no value.
    fn add(&mut self, value: ScalarValue, by: i64) {
        let key = Ordered(value);
        match self.counts.get_mut(&key) {
            Some(count) => {
                *count += by;
                if *count == 0 {
                    self.counts.remove(&key);
                }
            }
            None if by != 0 => {
                self.counts.insert(key, by);
            }
            None => {}
        }
    }

    fn fold(&mut self, values: &[ArrayRef], by: i64) -> Result<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
        for row in 0..values.len() {
            if values.is_valid(row) {
                self.add(ScalarValue::try_from_array(values, row)?, by);
            }
        }
        Ok(())
    }
}

impl Accumulator for MultisetAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.fold(values, 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.fold(values, -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let mut held = self.counts.iter().filter(|(_, &c)| c > 0).map(|(v, _)| v);
        let extreme = match self.kind {
            MultisetKind::CountDistinct => {
                return Ok(ScalarValue::Int64(Some(held.count() as i64)))
            }
            MultisetKind::Min => held.next(),
            MultisetKind::Max => held.next_back(),
        };
        match extreme {
            Some(value) => Ok(value.0.clone()),
            None => ScalarValue::try_from(&self.data_type),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .counts
                .keys()
                .map(|k| k.0.size() + std::mem::size_of::<i64>())
                .sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values = match self.counts.is_empty() {
            true => datafusion_common::arrow::array::new_empty_array(&self.data_type),
            false => ScalarValue::iter_to_array(self.counts.keys().map(|k| k.0.clone()))?,
        };
        let counts: ArrayRef =
            Arc::new(Int64Array::from_iter_values(self.counts.values().copied()));
        Ok(vec![
            SingleRowListArrayBuilder::new(values).build_list_scalar(),
            SingleRowListArrayBuilder::new(counts).build_list_scalar(),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [values, counts] = states else {
            return Err(DataFusionError::Internal(format!(
                "a multiset's state is 2 lists, not {}",
                states.len()
            )));
        };
        let (values, counts) = (values.as_list::<i32>(), counts.as_list::<i32>());
        for row in 0..values.len() {
            if values.is_null(row) {
                continue;
            }
            let (row_values, row_counts) = (values.value(row), counts.value(row));
            let row_counts = row_counts.as_primitive::<Int64Type>();
            for i in 0..row_values.len() {
                let value = ScalarValue::try_from_array(&row_values, i)?;
                self.add(value, row_counts.value(i));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn longs(values: &[i64]) -> Vec<ArrayRef> {
        vec![Arc::new(Int64Array::from(values.to_vec()))]
    }

    #[test]
    fn taking_rows_back_leaves_the_result_as_if_they_never_came() {
        let mut min = MultisetAccumulator::new(MultisetKind::Min, DataType::Int64);
        let mut max = MultisetAccumulator::new(MultisetKind::Max, DataType::Int64);
        let mut distinct = MultisetAccumulator::new(MultisetKind::CountDistinct, DataType::Int64);
        for a in [&mut min, &mut max, &mut distinct] {
            a.update_batch(&longs(&[5, 3, 9, 3])).unwrap();
            a.retract_batch(&longs(&[3, 9])).unwrap();
        }
        assert_eq!(min.evaluate().unwrap(), ScalarValue::Int64(Some(3)));
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int64(Some(5)));
        assert_eq!(distinct.evaluate().unwrap(), ScalarValue::Int64(Some(2)));
        for a in [&mut min, &mut max, &mut distinct] {
            a.retract_batch(&longs(&[3, 5])).unwrap();
        }
        assert_eq!(min.evaluate().unwrap(), ScalarValue::Int64(None));
        assert_eq!(distinct.evaluate().unwrap(), ScalarValue::Int64(Some(0)));
    }

    #[test]
    fn the_state_restores_every_value_with_its_count() {
        let mut max = MultisetAccumulator::new(MultisetKind::Max, DataType::Utf8);
        let words: ArrayRef = Arc::new(datafusion_common::arrow::array::StringArray::from(vec![
            Some("b"),
            None,
            Some("c"),
            Some("c"),
        ]));
        max.update_batch(&[words]).unwrap();
        let state = max.state().unwrap();
        let arrays: Vec<ArrayRef> = state.iter().map(|s| s.to_array().unwrap()).collect();
        let mut restored = MultisetAccumulator::new(MultisetKind::Max, DataType::Utf8);
        restored.merge_batch(&arrays).unwrap();
        let one_c: ArrayRef = Arc::new(datafusion_common::arrow::array::StringArray::from(vec![
            "c",
        ]));
        restored
            .retract_batch(std::slice::from_ref(&one_c))
            .unwrap();
        assert_eq!(restored.evaluate().unwrap(), ScalarValue::from("c"));
        restored.retract_batch(&[one_c]).unwrap();
        assert_eq!(restored.evaluate().unwrap(), ScalarValue::from("b"));
        let fields = MultisetKind::state_fields(&DataType::Utf8);
        assert_eq!(fields[0].data_type(), arrays[0].data_type());
        assert_eq!(fields[1].data_type(), arrays[1].data_type());
    }
}
