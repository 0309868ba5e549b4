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
//! A batch is aggregated a call at a time over all of its rows
//! ([`GroupCall`]): the results of the groups it touches are read before and
//! after, compared column by column, and the changed ones emitted. Keys and
//! every call's state are checkpointed per key group as Arrow IPC.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion_common::arrow::array::{Array, ArrayRef, Int8Array, RecordBatch};
use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::arrow::row::{RowConverter, Rows as KeyRows};
use datafusion_physical_expr::PhysicalExpr;
use rustc_hash::FxBuildHasher;

use crate::data::{Barrier, Batch};
use crate::error::{Error, Result};
use crate::operator::{Operator, OperatorContext};
use crate::sql::aggregates::{AggregateCall, Retraction};
use crate::sql::group_calls::{group_call, GroupCall};
use crate::sql::group_changes::{changed, GroupChanges};
use crate::sql::key_groups::batch_keys;
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
    /// The rows it aggregates.
    pub input: SchemaRef,
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
    /// Each call's value for every group (made when the operator opens).
    calls: Vec<Box<dyn GroupCall>>,
    /// Each group's rows added less those taken back (over an updating input).
    counts: Vec<i64>,
    /// When each group was last updated, ms (with a TTL).
    updated: Vec<i64>,
    /// Each group's place among the groups of the batch being aggregated
    /// (`usize::MAX` outside it).
    slots: Vec<usize>,
    /// When to look for groups past the TTL next, ms.
    next_expiry: i64,
    max_parallelism: u64,
    /// Checkpoint rows: the key columns, then every call's state.
    state_schema: SchemaRef,
    uid: String,
}

/// The groups one batch touched, in the order of their first rows.
#[derive(Default)]
struct Touched {
    groups: Vec<usize>,
    /// Whether each had a result before the batch.
    had_result: Vec<bool>,
}

fn failed<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Sql(format!("{what}: {e}"))
}

#[path = "updating_aggregate_state.rs"]
mod state;

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
            calls: Vec::new(),
            counts: Vec::new(),
            updated: Vec::new(),
            slots: Vec::new(),
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

    /// The group of `key`, added (without rows) if new; whether it was.
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
        for call in &mut self.calls {
            call.push_group()?;
        }
        self.counts.push(0);
        self.updated.push(now_ms());
        self.slots.push(usize::MAX);
        Ok((group, true))
    }

    /// Empties `group`, whose every row was taken back.
    fn reset(&mut self, group: usize) -> Result<()> {
        for call in &mut self.calls {
            call.reset(group)?;
        }
        self.counts[group] = 0;
        Ok(())
    }

    /// The group of each row of a batch (given its keys), and the groups it touches.
    fn find_groups(
        &mut self,
        key_rows: &KeyRows,
        key_groups: &[u64],
        row_groups: &mut Vec<usize>,
    ) -> Result<Touched> {
        let retracting = self.spec.retractions.is_some();
        let mut touched = Touched::default();
        for (row, &key_group) in key_groups.iter().enumerate() {
            let (group, new) = self.group(key_rows.row(row), key_group as u32)?;
            if self.slots[group] == usize::MAX {
                self.slots[group] = touched.groups.len();
                touched.groups.push(group);
                // Over an updating input a key without rows has no result.
                touched
                    .had_result
                    .push(!new && (!retracting || self.counts[group] > 0));
            }
            row_groups.push(group);
        }
        for &group in &touched.groups {
            self.slots[group] = usize::MAX;
        }
        Ok(touched)
    }

    /// Folds every call's rows of `batch` into their groups: the rows its
    /// filter lets in, added or (`-U`, `-D`) taken back.
    fn fold(
        &mut self,
        batch: &RecordBatch,
        row_groups: &[usize],
        taken_back: Option<&[bool]>,
    ) -> Result<()> {
        let rows = batch.num_rows();
        let all: Vec<u32> = (0..rows as u32).collect();
        let spec = Arc::clone(&self.spec);
        for (call, spec_call) in self.calls.iter_mut().zip(&spec.calls) {
            let input = spec_call.inputs(batch)?;
            if input.filter.is_none() && taken_back.is_none() {
                call.update(&input.values, &all, row_groups, false)?;
                continue;
            }
            let (mut adds, mut add_groups) = (Vec::new(), Vec::new());
            let (mut backs, mut back_groups) = (Vec::new(), Vec::new());
            for row in 0..rows {
                let counted = input
                    .filter
                    .as_ref()
                    .is_none_or(|mask| mask.is_valid(row) && mask.value(row));
                if !counted {
                    continue;
                }
                if taken_back.is_some_and(|back| back[row]) {
                    backs.push(row as u32);
                    back_groups.push(row_groups[row]);
                } else {
                    adds.push(row as u32);
                    add_groups.push(row_groups[row]);
                }
            }
            call.update(&input.values, &adds, &add_groups, false)?;
            call.update(&input.values, &backs, &back_groups, true)?;
        }
        // Over an updating input every batch counts, with kinds or without
        // (a batch of inserts only may carry none).
        if self.spec.retractions.is_some() {
            for (row, &group) in row_groups.iter().enumerate() {
                let back = taken_back.is_some_and(|back| back[row]);
                self.counts[group] += if back { -1 } else { 1 };
            }
        }
        Ok(())
    }

    /// Every call's results of `groups`.
    fn results(&mut self, groups: &[usize]) -> Result<Vec<ArrayRef>> {
        self.calls.iter_mut().map(|c| c.results(groups)).collect()
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
        let taken_back: Option<Vec<bool>> = input_kinds.map(|kinds| {
            (0..kinds.len())
                .map(|row| {
                    matches!(
                        RowKind::from_code(kinds.value(row)),
                        RowKind::UpdateBefore | RowKind::Delete
                    )
                })
                .collect()
        });
        let rows = batch.num_rows();
        let mut key_groups = Vec::with_capacity(rows);
        let key_rows = batch_keys(
            &self.spec.keys,
            &self.spec.converter,
            batch,
            self.max_parallelism,
            &mut key_groups,
        )?;
        let mut row_groups = Vec::with_capacity(rows);
        let touched = self.find_groups(&key_rows, &key_groups, &mut row_groups)?;
        let had: Vec<usize> = touched
            .groups
            .iter()
            .zip(&touched.had_result)
            .filter_map(|(&g, &had)| had.then_some(g))
            .collect();
        let before = self.results(&had)?;
        self.fold(batch, &row_groups, taken_back.as_deref())?;
        let after = self.results(&touched.groups)?;
        let places: Vec<u32> = (0..touched.groups.len() as u32)
            .filter(|&place| touched.had_result[place as usize])
            .collect();
        let changed = changed(&before, &after, &places)?;
        let now = now_ms();
        let retracting = self.spec.retractions.is_some();
        let mut changes = GroupChanges::default();
        let mut old_place = 0;
        for (place, (&group, &had)) in touched.groups.iter().zip(&touched.had_result).enumerate() {
            self.updated[group] = now;
            let old = had.then(|| {
                old_place += 1;
                old_place - 1
            });
            if retracting && self.counts[group] <= 0 {
                self.reset(group)?;
                if let Some(old) = old {
                    changes.delete(group, old);
                }
                continue;
            }
            match old {
                None => changes.insert(group, place),
                Some(old) if changed[old] => changes.update(group, old, place),
                Some(_) => {}
            }
        }
        if changes.is_empty() {
            return Ok(None);
        }
        let mut keys = self
            .spec
            .converter
            .convert_rows(changes.groups().iter().map(|&g| self.keys.row(g)))
            .map_err(failed("emitting keys"))?;
        keys.truncate(self.spec.visible_keys);
        changes
            .rows(keys, &before, &after, self.spec.schema.clone())
            .map(Some)
    }
}

impl Operator for UpdatingAggregate {
    type In = Rows;
    type Out = Rows;

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.uid = ctx.uid.0.clone();
        self.max_parallelism = u64::from(ctx.max_parallelism);
        let spec = Arc::clone(&self.spec);
        self.calls = spec
            .calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let retraction = spec.retractions.as_ref().map(|r| r[i]);
                group_call(call, &spec.input, retraction)
            })
            .collect::<Result<_>>()?;
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
        self.save()
    }
}
