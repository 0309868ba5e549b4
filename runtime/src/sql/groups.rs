//! [`Groups`]: the groups of one aggregation (a window's, or an unbounded
//! `GROUP BY`'s) with their accumulators: every group's key in Arrow's row
//! format, the key group it belongs to, and one accumulator per call that
//! holds every group's value.

use datafusion_common::arrow::array::{ArrayRef, AsArray, UInt32Array};
use datafusion_common::arrow::compute::take;
use datafusion_common::arrow::row::{RowConverter, Rows as KeyRows};
use datafusion_expr::{EmitTo, GroupsAccumulator};
use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use crate::error::{Error, Result};
use crate::sql::aggregates::{AggregateCall, CallInputs};

/// The groups of one aggregation and their accumulators.
pub struct Groups {
    /// Group index by key, in the row format.
    index: HashMap<Box<[u8]>, usize, FxBuildHasher>,
    /// Each group's key, by group index.
    keys: KeyRows,
    /// Each group's key group, by group index.
    key_groups: Vec<u32>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

fn failed<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Sql(format!("{what}: {e}"))
}

impl Groups {
    /// No groups yet, for `calls`, keys in `converter`'s format.
    pub fn new(calls: &[AggregateCall], converter: &RowConverter) -> Result<Self> {
        Ok(Groups {
            index: HashMap::with_hasher(FxBuildHasher),
            keys: converter.empty_rows(0, 0),
            key_groups: Vec::new(),
            accumulators: calls
                .iter()
                .map(|c| c.accumulator())
                .collect::<Result<_>>()?,
        })
    }

    /// How many groups there are.
    pub fn len(&self) -> usize {
        self.key_groups.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.key_groups.is_empty()
    }

    /// The group index of each of `rows` (indices into `keys` and
    /// `key_groups`), adding the groups not seen before.
    pub fn find(&mut self, rows: &[u32], keys: &KeyRows, key_groups: &[u64], out: &mut Vec<usize>) {
        out.clear();
        for &row in rows {
            let key = keys.row(row as usize);
            let bytes = key.as_ref();
            let group = match self.index.get(bytes) {
                Some(&group) => group,
                None => {
                    let group = self.key_groups.len();
                    self.index.insert(bytes.into(), group);
                    self.keys.push(key);
                    self.key_groups.push(key_groups[row as usize] as u32);
                    group
                }
            };
            out.push(group);
        }
    }

    /// Folds `inputs` (one per call, of the rows `groups` indexes) into the groups.
    pub fn update(&mut self, inputs: &[CallInputs], groups: &[usize]) -> Result<()> {
        let total = self.len();
        for (accumulator, input) in self.accumulators.iter_mut().zip(inputs) {
            accumulator
                .update_batch(&input.values, groups, input.filter.as_ref(), total)
                .map_err(failed("aggregating"))?;
        }
        Ok(())
    }

    /// Folds the rows `rows` of a batch of `batch_rows` rows (every call's
    /// inputs over the batch in `inputs`) into the groups, the group of each
    /// in `group_ids`.
    pub fn update_rows(
        &mut self,
        inputs: &[CallInputs],
        rows: &[u32],
        group_ids: &[usize],
        batch_rows: usize,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if rows.len() == batch_rows {
            self.update(inputs, group_ids)
        } else {
            self.update(&take_inputs(inputs, rows)?, group_ids)
        }
    }

    /// Every group's key columns and result, one array per call; the groups are gone after.
    pub fn emit(self, converter: &RowConverter) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>)> {
        let keys = converter
            .convert_rows(self.keys.iter())
            .map_err(failed("emitting keys"))?;
        let results = self
            .accumulators
            .into_iter()
            .map(|mut a| a.evaluate(EmitTo::All).map_err(failed("emitting results")))
            .collect::<Result<_>>()?;
        Ok((keys, results))
    }

    /// The results of `groups` (one array per call, a row per group in
    /// order), the groups left as they were: each call's state is taken,
    /// put back, and the rows of `groups` merged into a fresh accumulator
    /// that is evaluated.
    pub fn results(&mut self, calls: &[AggregateCall], groups: &[usize]) -> Result<Vec<ArrayRef>> {
        let total = self.len();
        let all: Vec<usize> = (0..total).collect();
        let picked = UInt32Array::from_iter_values(groups.iter().map(|&g| g as u32));
        let fresh_groups: Vec<usize> = (0..groups.len()).collect();
        let mut results = Vec::with_capacity(calls.len());
        for (accumulator, call) in self.accumulators.iter_mut().zip(calls) {
            let state = accumulator
                .state(EmitTo::All)
                .map_err(failed("reading results"))?;
            accumulator
                .merge_batch(&state, &all, total)
                .map_err(failed("reading results"))?;
            let state = state
                .iter()
                .map(|c| take(c, &picked, None).map_err(failed("reading results")))
                .collect::<Result<Vec<_>>>()?;
            let mut fresh = call.accumulator()?;
            fresh
                .merge_batch(&state, &fresh_groups, groups.len())
                .map_err(failed("reading results"))?;
            results.push(
                fresh
                    .evaluate(EmitTo::All)
                    .map_err(failed("reading results"))?,
            );
        }
        Ok(results)
    }

    /// The key columns of `groups`, a row per group in order.
    pub fn keys(&self, converter: &RowConverter, groups: &[usize]) -> Result<Vec<ArrayRef>> {
        converter
            .convert_rows(groups.iter().map(|&g| self.keys.row(g)))
            .map_err(failed("emitting keys"))
    }

    /// Every group's key columns, key group and accumulator state columns, the
    /// groups left as they were.
    pub fn state(
        &mut self,
        converter: &RowConverter,
    ) -> Result<(Vec<ArrayRef>, &[u32], Vec<ArrayRef>)> {
        let keys = converter
            .convert_rows(self.keys.iter())
            .map_err(failed("saving keys"))?;
        let all: Vec<usize> = (0..self.len()).collect();
        let total = self.len();
        let mut states = Vec::new();
        for accumulator in &mut self.accumulators {
            let state = accumulator
                .state(EmitTo::All)
                .map_err(failed("saving state"))?;
            // Taking the state empties the accumulator: put it back.
            accumulator
                .merge_batch(&state, &all, total)
                .map_err(failed("saving state"))?;
            states.extend(state);
        }
        Ok((keys, &self.key_groups, states))
    }

    /// Adds the groups of saved rows: their keys (in the row format), key
    /// group, and state columns (of every call, in order, as [`Groups::state`]
    /// gave them), taking the rows `rows` of them; returns each row's group.
    pub fn restore(
        &mut self,
        rows: &[u32],
        keys: &KeyRows,
        key_groups: &[u64],
        states: &[ArrayRef],
        calls: &[AggregateCall],
    ) -> Result<Vec<usize>> {
        let mut groups = Vec::with_capacity(rows.len());
        self.find(rows, keys, key_groups, &mut groups);
        let indices = UInt32Array::from(rows.to_vec());
        let total = self.len();
        let mut columns = states.iter();
        for (accumulator, call) in self.accumulators.iter_mut().zip(calls) {
            let state = columns
                .by_ref()
                .take(call.state_fields.len())
                .map(|c| take(c, &indices, None).map_err(failed("restoring state")))
                .collect::<Result<Vec<_>>>()?;
            accumulator
                .merge_batch(&state, &groups, total)
                .map_err(failed("restoring state"))?;
        }
        Ok(groups)
    }
}

/// The rows `rows` of each call's inputs.
fn take_inputs(inputs: &[CallInputs], rows: &[u32]) -> Result<Vec<CallInputs>> {
    let indices = UInt32Array::from(rows.to_vec());
    let failed = |e| Error::Sql(format!("window aggregate: {e}"));
    inputs
        .iter()
        .map(|input| {
            Ok(CallInputs {
                values: input
                    .values
                    .iter()
                    .map(|v| take(v, &indices, None).map_err(failed))
                    .collect::<Result<_>>()?,
                filter: match &input.filter {
                    None => None,
                    Some(f) => Some(
                        take(f, &indices, None)
                            .map_err(failed)?
                            .as_boolean()
                            .clone(),
                    ),
                },
            })
        })
        .collect()
}
