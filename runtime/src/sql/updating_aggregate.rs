//! The updating aggregate: an unbounded `GROUP BY`, whose result is a
//! changelog. A key's first row emits its result as an insert (`+I`); every
//! later batch that changes it emits the old result (`-U`) and the new one
//! (`+U`), as Flink's group aggregate does; a batch that leaves a result as it
//! was emits nothing for it.
//!
//! Over an updating input (another `GROUP BY`'s changelog) a `-U` or `-D` row
//! takes its values back out of the key's accumulators, and a key whose rows
//! are all taken back is deleted (`-D`), as in Flink.
//!
//! With `SET 'table.exec.state.ttl'` a key not updated for that long (by the
//! processing time) is forgotten without a change emitted, as Flink's state
//! TTL: its next row starts it again with an insert. The time of a key's last
//! update is not checkpointed; a restored key counts from the restore.
//!
//! Each key keeps one DataFusion accumulator per call (its result must be read
//! after every batch without ending the group), on the heap, checkpointed per
//! key group as Arrow IPC: each key's columns and its accumulators' state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion_common::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, Int8Array, RecordBatch, RecordBatchOptions, UInt32Array,
};
use datafusion_common::arrow::compute::kernels::numeric::neg;
use datafusion_common::arrow::compute::take;
use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion_common::arrow::row::{RowConverter, Rows as KeyRows};
use datafusion_common::ScalarValue;
use datafusion_expr::Accumulator;
use datafusion_physical_expr::PhysicalExpr;
use rustc_hash::FxBuildHasher;

use crate::data::{Barrier, Batch};
use crate::error::{Error, Result};
use crate::keys::KeyGroup;
use crate::operator::{Operator, OperatorContext};
use crate::sql::aggregates::{AggregateCall, Retraction};
use crate::sql::key_groups::batch_keys;
use crate::sql::keyed_state::{decode_key_group, encode_by_key_group};
use crate::sql::rows::{RowKind, Rows};
use crate::sql::windows::now_ms;
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
    /// Over an updating input, how each call takes a row back; `None` over
    /// an append-only one.
    pub retractions: Option<Vec<Retraction>>,
    /// How long a key is kept without an update (none: for ever).
    pub ttl: Option<Duration>,
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
    /// Each group's rows added less those taken back (over an updating input).
    counts: Vec<i64>,
    /// When each group was last updated, ms (with a TTL).
    updated: Vec<i64>,
    /// When to look for groups past the TTL next, ms.
    next_expiry: i64,
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

/// Keeps the items of `items` whose place in `keep` is true.
fn retain_by<T>(items: &mut Vec<T>, keep: &[bool]) {
    let mut place = 0;
    items.retain(|_| {
        place += 1;
        keep[place - 1]
    });
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
        if spec.retractions.is_some() {
            fields.push(Field::new("rows", DataType::Int64, false));
        }
        UpdatingAggregate {
            keys: spec.converter.empty_rows(0, 0),
            spec,
            index: HashMap::with_hasher(FxBuildHasher),
            key_groups: Vec::new(),
            accumulators: Vec::new(),
            counts: Vec::new(),
            updated: Vec::new(),
            next_expiry: i64::MIN,
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
        self.counts.push(0);
        self.updated.push(now_ms());
        Ok((group, true))
    }

    fn results(&mut self, group: usize) -> Result<Vec<ScalarValue>> {
        self.accumulators[group]
            .iter_mut()
            .map(|a| a.evaluate().map_err(failed("aggregating")))
            .collect()
    }

    /// Forgets the groups not updated for the TTL, looking at most every
    /// quarter of it (and every 100 ms to a minute).
    fn expire(&mut self) {
        let Some(ttl) = self.spec.ttl else {
            return;
        };
        let now = now_ms();
        if now < self.next_expiry {
            return;
        }
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.next_expiry = now.saturating_add((ttl / 4).clamp(100, 60_000));
        let before = now.saturating_sub(ttl);
        let keep: Vec<bool> = self.updated.iter().map(|&t| t >= before).collect();
        if keep.iter().all(|&k| k) {
            return;
        }
        let mut keys = self.spec.converter.empty_rows(0, 0);
        self.index.clear();
        for group in (0..keep.len()).filter(|&g| keep[g]) {
            let key = self.keys.row(group);
            self.index.insert(key.as_ref().into(), self.index.len());
            keys.push(key);
        }
        self.keys = keys;
        retain_by(&mut self.key_groups, &keep);
        retain_by(&mut self.accumulators, &keep);
        retain_by(&mut self.counts, &keep);
        retain_by(&mut self.updated, &keep);
    }

    /// Fresh accumulators for `group`, whose every row was taken back.
    fn reset(&mut self, group: usize) -> Result<()> {
        self.accumulators[group] = self
            .spec
            .calls
            .iter()
            .map(AggregateCall::single_accumulator)
            .collect::<Result<_>>()?;
        self.counts[group] = 0;
        Ok(())
    }

    /// Folds the rows `rows` of `values` into call `call` of `group`, or
    /// takes them back out.
    fn fold(
        &mut self,
        group: usize,
        call: usize,
        values: &[ArrayRef],
        rows: Vec<u32>,
        all: usize,
        back: bool,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let arguments = if rows.len() == all {
            values.to_vec()
        } else {
            let indices = UInt32Array::from(rows);
            values
                .iter()
                .map(|v| take(v, &indices, None).map_err(failed("aggregating")))
                .collect::<Result<Vec<_>>>()?
        };
        let accumulator = &mut self.accumulators[group][call];
        let retraction = self.spec.retractions.as_ref().map(|r| r[call]);
        match (back, retraction) {
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

    fn aggregate(
        &mut self,
        batch: &RecordBatch,
        input_kinds: Option<&Int8Array>,
    ) -> Result<Option<Rows>> {
        if input_kinds.is_some() && self.spec.retractions.is_none() {
            return Err(Error::Internal(
                "an append-only aggregate was given an updating input".into(),
            ));
        }
        let taken_back = |row: u32| {
            input_kinds.is_some_and(|k| {
                matches!(
                    RowKind::from_code(k.value(row as usize)),
                    RowKind::UpdateBefore | RowKind::Delete
                )
            })
        };
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
        let now = now_ms();
        let mut values: Vec<Vec<ScalarValue>> = vec![Vec::new(); self.spec.calls.len()];
        for Touched {
            group,
            rows: group_rows,
            existed,
        } in touched
        {
            self.updated[group] = now;
            let retracting = self.spec.retractions.is_some();
            // Over an updating input a key without rows has no result.
            let before = if existed && (!retracting || self.counts[group] > 0) {
                Some(self.results(group)?)
            } else {
                None
            };
            for (call, input) in inputs.iter().enumerate() {
                let (mut adds, mut backs) = (Vec::new(), Vec::new());
                for &r in &group_rows {
                    let counted = input
                        .filter
                        .as_ref()
                        .is_none_or(|mask| mask.is_valid(r as usize) && mask.value(r as usize));
                    if !counted {
                        continue;
                    }
                    if taken_back(r) {
                        backs.push(r);
                    } else {
                        adds.push(r);
                    }
                }
                self.fold(group, call, &input.values, adds, rows, false)?;
                self.fold(group, call, &input.values, backs, rows, true)?;
            }
            if retracting {
                let backs = group_rows.iter().filter(|&&r| taken_back(r)).count() as i64;
                self.counts[group] += group_rows.len() as i64 - 2 * backs;
                if self.counts[group] <= 0 {
                    self.reset(group)?;
                    if let Some(before) = before {
                        kinds.push(RowKind::Delete as i8);
                        emitted.push(group);
                        for (column, value) in values.iter_mut().zip(before) {
                            column.push(value);
                        }
                    }
                    continue;
                }
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
            if spec.retractions.is_some() {
                let counts = batch.columns()[column].as_primitive::<Int64Type>();
                self.counts[g] += counts.value(row);
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
        self.expire();
        for rows in input.drain(..) {
            output.extend(self.aggregate(&rows.batch, rows.kinds.as_ref())?);
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
        if self.spec.retractions.is_some() {
            columns.push(Arc::new(Int64Array::from(self.counts.clone())));
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
