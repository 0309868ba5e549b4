//! One aggregate call of an unbounded `GROUP BY`, kept for every group at
//! once: [`GroupCall`] folds a batch's rows into their groups (or takes them
//! back) and reads the current result of any groups after every batch,
//! without ending them.
//!
//! The common calls over `BIGINT` (and `COUNT` over anything) are weir's own
//! columns of numbers ([`crate::sql::long_calls`]): a batch costs a pass over
//! its rows, with no allocation per group. Every other call keeps one of
//! DataFusion's accumulators per group ([`PerGroup`]). Both checkpoint the
//! columns of the call's DataFusion state fields, so a checkpoint does not
//! depend on which one ran.

use datafusion_common::arrow::array::{Array, ArrayRef, UInt32Array};
use datafusion_common::arrow::compute::kernels::numeric::neg;
use datafusion_common::arrow::compute::take;
use datafusion_common::arrow::datatypes::Schema;
use datafusion_common::ScalarValue;
use datafusion_expr::Accumulator;

use crate::error::{Error, Result};
use crate::sql::aggregates::{AggregateCall, Retraction};
use crate::sql::long_calls::LongCall;

/// One aggregate call's value for every group of an unbounded `GROUP BY`.
pub trait GroupCall: Send {
    /// Adds a group without rows; its index is the number of groups before.
    fn push_group(&mut self) -> Result<()>;
    /// Folds the rows `rows` of the call's argument columns `values` into the
    /// groups `groups` (the group of each row, in order), or takes them back.
    fn update(
        &mut self,
        values: &[ArrayRef],
        rows: &[u32],
        groups: &[usize],
        back: bool,
    ) -> Result<()>;
    /// The results of `groups`, a row each, in order.
    fn results(&mut self, groups: &[usize]) -> Result<ArrayRef>;
    /// Empties `group`, as if it had never had a row.
    fn reset(&mut self, group: usize) -> Result<()>;
    /// Keeps the groups whose place in `keep` is true, numbered again in order.
    fn retain(&mut self, keep: &[bool]);
    /// Every group's state, as the columns of the call's state fields.
    fn state(&mut self) -> Result<Vec<ArrayRef>>;
    /// Merges each row of saved `state` columns (as [`GroupCall::state`]
    /// gave them) into the group of that row in `groups`.
    fn restore(&mut self, groups: &[usize], state: &[ArrayRef]) -> Result<()>;
}

/// The groups of `call` (over rows of `input`), taking rows back as
/// `retraction` says over an updating input: weir's own columns where the
/// call is one of theirs, else an accumulator per group.
pub fn group_call(
    call: &AggregateCall,
    input: &Schema,
    retraction: Option<Retraction>,
) -> Result<Box<dyn GroupCall>> {
    match LongCall::of(call, input, retraction.is_some())? {
        Some(native) => Ok(Box::new(native)),
        None => Ok(Box::new(PerGroup::new(call.clone(), retraction))),
    }
}

/// Keeps the items of `items` whose place in `keep` is true.
pub fn retain_by<T>(items: &mut Vec<T>, keep: &[bool]) {
    let mut place = 0;
    items.retain(|_| {
        place += 1;
        keep[place - 1]
    });
}

fn failed<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Sql(format!("{what}: {e}"))
}

/// A call kept as one DataFusion accumulator per group.
pub struct PerGroup {
    call: AggregateCall,
    retraction: Option<Retraction>,
    accumulators: Vec<Box<dyn Accumulator>>,
}

impl PerGroup {
    /// `call` without groups yet, taking rows back as `retraction` says.
    pub fn new(call: AggregateCall, retraction: Option<Retraction>) -> Self {
        PerGroup {
            call,
            retraction,
            accumulators: Vec::new(),
        }
    }

    /// Folds `rows` of `values` into the accumulator of `group`, or takes them back.
    fn fold(&mut self, group: usize, values: &[ArrayRef], rows: &[u32], back: bool) -> Result<()> {
        let indices = UInt32Array::from(rows.to_vec());
        let arguments = values
            .iter()
            .map(|v| take(v, &indices, None).map_err(failed("aggregating")))
            .collect::<Result<Vec<_>>>()?;
        let accumulator = &mut self.accumulators[group];
        match (back, self.retraction) {
            (false, _) => accumulator.update_batch(&arguments),
            (true, Some(Retraction::Negate)) => {
                let negated = arguments
                    .iter()
                    .map(|a| neg(a))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(failed("taking a row back"))?;
                accumulator.update_batch(&negated)
            }
            (true, _) => accumulator.retract_batch(&arguments),
        }
        .map_err(failed("aggregating"))
    }
}

impl GroupCall for PerGroup {
    fn push_group(&mut self) -> Result<()> {
        self.accumulators.push(self.call.single_accumulator()?);
        Ok(())
    }

    fn update(
        &mut self,
        values: &[ArrayRef],
        rows: &[u32],
        groups: &[usize],
        back: bool,
    ) -> Result<()> {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| groups[i]);
        let mut run: Vec<u32> = Vec::new();
        for (place, &i) in order.iter().enumerate() {
            run.push(rows[i]);
            let ends = order
                .get(place + 1)
                .is_none_or(|&next| groups[next] != groups[i]);
            if ends {
                self.fold(groups[i], values, &run, back)?;
                run.clear();
            }
        }
        Ok(())
    }

    fn results(&mut self, groups: &[usize]) -> Result<ArrayRef> {
        let values = groups
            .iter()
            .map(|&g| self.accumulators[g].evaluate())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(failed("aggregating"))?;
        if values.is_empty() {
            return Ok(datafusion_common::arrow::array::new_empty_array(
                self.call.field().data_type(),
            ));
        }
        ScalarValue::iter_to_array(values).map_err(failed("emitting results"))
    }

    fn reset(&mut self, group: usize) -> Result<()> {
        self.accumulators[group] = self.call.single_accumulator()?;
        Ok(())
    }

    fn retain(&mut self, keep: &[bool]) {
        retain_by(&mut self.accumulators, keep);
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let mut columns: Vec<Vec<ScalarValue>> =
            vec![Vec::with_capacity(self.accumulators.len()); self.call.state_fields.len()];
        for accumulator in &mut self.accumulators {
            let state = accumulator.state().map_err(failed("saving state"))?;
            // Taking the state ends the accumulator: make it again from it.
            let mut fresh = self.call.single_accumulator()?;
            let arrays = state
                .iter()
                .map(|v| v.to_array().map_err(failed("saving state")))
                .collect::<Result<Vec<_>>>()?;
            fresh.merge_batch(&arrays).map_err(failed("saving state"))?;
            *accumulator = fresh;
            for (column, value) in columns.iter_mut().zip(state) {
                column.push(value);
            }
        }
        columns
            .into_iter()
            .zip(&self.call.state_fields)
            .map(|(column, field)| {
                if column.is_empty() {
                    Ok(datafusion_common::arrow::array::new_empty_array(
                        field.data_type(),
                    ))
                } else {
                    ScalarValue::iter_to_array(column).map_err(failed("saving state"))
                }
            })
            .collect()
    }

    fn restore(&mut self, groups: &[usize], state: &[ArrayRef]) -> Result<()> {
        for (row, &group) in groups.iter().enumerate() {
            let saved: Vec<ArrayRef> = state.iter().map(|c| c.slice(row, 1)).collect();
            self.accumulators[group]
                .merge_batch(&saved)
                .map_err(failed("restoring state"))?;
        }
        Ok(())
    }
}
