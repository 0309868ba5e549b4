//! The updating aggregate: an unbounded `GROUP BY`, whose result is a
//! changelog. A key's first row emits its result as an insert (`+I`); every
//! later batch that changes it emits the old result (`-U`) and the new one
//! (`+U`), as Flink's group aggregate does; a batch that leaves a result as it
//! was emits nothing for it.
//!
//! Each key keeps one DataFusion accumulator per call (its result must be read
//! after every batch without ending the group), on the heap, checkpointed per
//! key group as Arrow IPC: each key's columns and its accumulators' state.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion_common::arrow::array::{
    Array, ArrayRef, Int8Array, RecordBatch, RecordBatchOptions, UInt32Array,
};
use datafusion_common::arrow::compute::take;
use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::arrow::row::{RowConverter, Rows as KeyRows};
use datafusion_common::ScalarValue;
use datafusion_expr::Accumulator;
use datafusion_physical_expr::PhysicalExpr;
use rustc_hash::FxBuildHasher;

use crate::data::{Barrier, Batch};
use crate::error::{Error, Result};
use crate::keys::KeyGroup;
use crate::operator::{Operator, OperatorContext};
use crate::sql::aggregates::AggregateCall;
use crate::sql::key_groups::batch_keys;
use crate::sql::keyed_state::{decode_key_group, encode_by_key_group};
use crate::sql::rows::{RowKind, Rows};
use crate::state::{OperatorSnapshot, RestoredState};

/// What an updating aggregate computes.
pub struct UpdatingAggregateSpec {
    /// The grouping expressions, over the input.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Their types.
    pub key_types: Vec<DataType>,
    /// The aggregate calls.
    pub calls: Vec<AggregateCall>,
    /// The output: the first `visible_keys` keys, then one column per call.
    pub schema: SchemaRef,
    /// How many of the keys are output columns (none of a global aggregate's
    /// one constant key).
    pub visible_keys: usize,
    /// The keys in Arrow's row format.
    pub converter: Arc<RowConverter>,
}

/// The updating aggregate operator.
pub struct UpdatingAggregate {
    spec: Arc<UpdatingAggregateSpec>,
    index: HashMap<Box<[u8]>, usize, FxBuildHasher>,
    /// Each group's key, by group index.
    keys: KeyRows,
    /// Each group's key group.
    key_groups: Vec<u32>,
    /// Each group's accumulators, one per call.
    accumulators: Vec<Vec<Box<dyn Accumulator>>>,
    max_parallelism: u64,
    /// Checkpoint rows: the key columns, then every call's state.
    state_schema: SchemaRef,
    uid: String,
}

/// The rows a batch brought to one group.
struct Touched {
    group: usize,
    rows: Vec<u32>,
    /// Whether the group had a result before this batch.
    existed: bool,
}

fn failed<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Sql(format!("{what}: {e}"))
}

impl UpdatingAggregate {
    /// The operator computing `spec`.
    pub fn new(spec: Arc<UpdatingAggregateSpec>) -> Self {
        let mut fields: Vec<Field> = spec
            .key_types
            .iter()
            .enumerate()
            .map(|(i, t)| Field::new(format!("key_{i}"), t.clone(), true))
            .collect();
        for call in &spec.calls {
            fields.extend(call.state_fields.iter().map(|f| f.as_ref().clone()));
        }
        UpdatingAggregate {
            keys: spec.converter.empty_rows(0, 0),
            spec,
            index: HashMap::with_hasher(FxBuildHasher),
            key_groups: Vec::new(),
            accumulators: Vec::new(),
            max_parallelism: 1,
            state_schema: Arc::new(Schema::new(fields)),
            uid: String::new(),
        }
    }

    fn bad_state(&self, reason: impl std::fmt::Display) -> Error {
        Error::State {
            uid: self.uid.clone(),
            reason: reason.to_string(),
        }
    }

    /// The group of `key`, added (with fresh accumulators) if new; whether it was.
    fn group(
        &mut self,
        key: datafusion_common::arrow::row::Row<'_>,
        key_group: u32,
    ) -> Result<(usize, bool)> {
        if let Some(&group) = self.index.get(key.as_ref()) {
            return Ok((group, false));
        }
        let group = self.key_groups.len();
        self.index.insert(key.as_ref().into(), group);
        self.keys.push(key);
        self.key_groups.push(key_group);
        let accumulators = self
            .spec
            .calls
            .iter()
            .map(AggregateCall::single_accumulator)
            .collect::<Result<_>>()?;
        self.accumulators.push(accumulators);
        Ok((group, true))
    }

    fn results(&mut self, group: usize) -> Result<Vec<ScalarValue>> {
        self.accumulators[group]
            .iter_mut()
            .map(|a| a.evaluate().map_err(failed("aggregating")))
            .collect()
    }

    fn aggregate(&mut self, batch: &RecordBatch) -> Result<Option<Rows>> {
        let rows = batch.num_rows();
        let mut key_groups = Vec::with_capacity(rows);
        let key_rows = batch_keys(
            &self.spec.keys,
            &self.spec.converter,
            batch,
            self.max_parallelism,
            &mut key_groups,
        )?;
        let inputs = self
            .spec
            .calls
            .iter()
            .map(|c| c.inputs(batch))
            .collect::<Result<Vec<_>>>()?;
        let mut touched: Vec<Touched> = Vec::new();
        let mut slot_of: HashMap<usize, usize, FxBuildHasher> = HashMap::with_hasher(FxBuildHasher);
        for (row, &key_group) in key_groups.iter().enumerate() {
            let (group, new) = self.group(key_rows.row(row), key_group as u32)?;
            let slot = *slot_of.entry(group).or_insert_with(|| {
                touched.push(Touched {
                    group,
                    rows: Vec::new(),
                    existed: !new,
                });
                touched.len() - 1
            });
            touched[slot].rows.push(row as u32);
        }
        let mut kinds: Vec<i8> = Vec::new();
        let mut emitted: Vec<usize> = Vec::new();
        let mut values: Vec<Vec<ScalarValue>> = vec![Vec::new(); self.spec.calls.len()];
        for Touched {
            group,
            rows: group_rows,
            existed,
        } in touched
        {
            let before = if existed {
                Some(self.results(group)?)
            } else {
                None
            };
            for (call, input) in inputs.iter().enumerate() {
                let selected: Vec<u32> = match &input.filter {
                    None => group_rows.clone(),
                    Some(mask) => group_rows
                        .iter()
                        .copied()
                        .filter(|&r| mask.is_valid(r as usize) && mask.value(r as usize))
                        .collect(),
                };
                if selected.is_empty() {
                    continue;
                }
                let arguments = if selected.len() == rows {
                    input.values.clone()
                } else {
                    let indices = UInt32Array::from(selected);
                    input
                        .values
                        .iter()
                        .map(|v| take(v, &indices, None).map_err(failed("aggregating")))
                        .collect::<Result<Vec<_>>>()?
                };
                self.accumulators[group][call]
                    .update_batch(&arguments)
                    .map_err(failed("aggregating"))?;
            }
            let after = self.results(group)?;
            let mut emit = |kind: RowKind, results: Vec<ScalarValue>| {
                kinds.push(kind as i8);
                emitted.push(group);
                for (column, value) in values.iter_mut().zip(results) {
                    column.push(value);
                }
            };
            match before {
                None => emit(RowKind::Insert, after),
                Some(before) if before != after => {
                    emit(RowKind::UpdateBefore, before);
                    emit(RowKind::UpdateAfter, after);
                }
                Some(_) => {}
            }
        }
        if emitted.is_empty() {
            return Ok(None);
        }
        let mut columns = self
            .spec
            .converter
            .convert_rows(emitted.iter().map(|&g| self.keys.row(g)))
            .map_err(failed("emitting keys"))?;
        columns.truncate(self.spec.visible_keys);
        for column in values {
            columns.push(ScalarValue::iter_to_array(column).map_err(failed("emitting results"))?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(emitted.len()));
        let batch = RecordBatch::try_new_with_options(self.spec.schema.clone(), columns, &options)
            .map_err(failed("emitting results"))?;
        Ok(Some(Rows {
            batch,
            kinds: Some(Int8Array::from(kinds)),
        }))
    }

    fn restore_keyed(&mut self, group: KeyGroup, bytes: &[u8]) -> Result<()> {
        let batch = decode_key_group(&self.uid, group, bytes, &self.state_schema)?;
        let k = self.spec.key_types.len();
        let key_rows = self
            .spec
            .converter
            .convert_columns(&batch.columns()[..k])
            .map_err(|e| self.bad_state(e))?;
        let spec = self.spec.clone();
        for row in 0..batch.num_rows() {
            let (g, _) = self.group(key_rows.row(row), group.0)?;
            let mut column = k;
            for (call, accumulator) in spec.calls.iter().zip(&mut self.accumulators[g]) {
                let state: Vec<ArrayRef> = batch.columns()
                    [column..column + call.state_fields.len()]
                    .iter()
                    .map(|c| c.slice(row, 1))
                    .collect();
                column += call.state_fields.len();
                accumulator
                    .merge_batch(&state)
                    .map_err(failed("restoring state"))?;
            }
        }
        Ok(())
    }
}

impl Operator for UpdatingAggregate {
    type In = Rows;
    type Out = Rows;

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.uid = ctx.uid.0.clone();
        self.max_parallelism = u64::from(ctx.max_parallelism);
        for (group, bytes) in restored.map(|r| r.keyed).unwrap_or_default() {
            self.restore_keyed(group, &bytes)?;
        }
        Ok(())
    }

    fn process(&mut self, input: &mut Batch<Rows>, output: &mut Batch<Rows>) -> Result<()> {
        for rows in input.drain(..) {
            output.extend(self.aggregate(&rows.batch)?);
        }
        Ok(())
    }

    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        let groups = self.key_groups.len();
        if groups == 0 {
            return Ok(OperatorSnapshot::default());
        }
        let mut columns = self
            .spec
            .converter
            .convert_rows(self.keys.iter())
            .map_err(failed("saving keys"))?;
        let calls = self.spec.calls.clone();
        for (call_index, call) in calls.iter().enumerate() {
            let mut states: Vec<Vec<ScalarValue>> =
                vec![Vec::with_capacity(groups); call.state_fields.len()];
            for group in 0..groups {
                let accumulator = &mut self.accumulators[group][call_index];
                let state = accumulator.state().map_err(failed("saving state"))?;
                // Taking the state ends the accumulator: make it again from it.
                let mut fresh = call.single_accumulator()?;
                let arrays = state
                    .iter()
                    .map(|v| v.to_array().map_err(failed("saving state")))
                    .collect::<Result<Vec<_>>>()?;
                fresh.merge_batch(&arrays).map_err(failed("saving state"))?;
                *accumulator = fresh;
                for (column, value) in states.iter_mut().zip(state) {
                    column.push(value);
                }
            }
            for column in states {
                columns.push(ScalarValue::iter_to_array(column).map_err(failed("saving state"))?);
            }
        }
        let options = RecordBatchOptions::new().with_row_count(Some(groups));
        let all = RecordBatch::try_new_with_options(self.state_schema.clone(), columns, &options)
            .map_err(failed("saving state"))?;
        let keyed = encode_by_key_group(&all, &self.key_groups)?;
        Ok(OperatorSnapshot {
            keyed,
            ..Default::default()
        })
    }
}
