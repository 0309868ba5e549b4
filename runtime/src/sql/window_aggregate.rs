//! The window aggregate: `GROUP BY window_start, window_end, keys...` over a
//! window table function. Each window's groups aggregate as rows arrive and
//! the window's results go out, once, when the watermark passes its end; a
//! row for a window already fired is late and dropped (as in Flink). On
//! processing time the operator puts each row in the windows of its own
//! clock when the row arrives, and fires a window when the clock passes its
//! end, so no row is late (Flink's processing-time windows). With early
//! firing (`sql::early_fire`) a window's groups also emit before its end, and
//! the result is an updating one.
//!
//! State is on the heap and checkpointed per key group as Arrow IPC: each
//! group's window, key and accumulator state, so a restore at another
//! parallelism hands every subtask exactly its key groups.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion_common::arrow::array::{
    ArrayRef, AsArray, Int64Array, RecordBatch, RecordBatchOptions,
};
use datafusion_common::arrow::compute::concat_batches;
use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion_common::arrow::row::{RowConverter, SortField};
use datafusion_physical_expr::PhysicalExpr;

use crate::data::{Barrier, Batch, Watermark};
use crate::error::{Error, Result};
use crate::keys::KeyGroup;
use crate::operator::{Operator, OperatorContext};
use crate::sql::aggregates::AggregateCall;
use crate::sql::calc::evaluate;
use crate::sql::early_fire::{fire_groups, EarlyFire, Firings};
use crate::sql::groups::Groups;
use crate::sql::key_groups::batch_keys;
use crate::sql::keyed_state::{decode_key_group, encode_by_key_group};
use crate::sql::rows::Rows;
use crate::sql::windows::{millis, now_ms, report_late, restored_watermark, time_column, Assigner};
use crate::state::{OperatorSnapshot, RestoredState};

/// Where an output column of the grouping comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupColumn {
    /// The window's start.
    Start,
    /// The window's end.
    End,
    /// The window's time attribute: its end less a millisecond.
    Time,
    /// The key expression of this index.
    Key(usize),
}

/// What a window aggregate computes.
pub struct WindowAggregateSpec {
    /// The grouping's output columns, in order.
    pub columns: Vec<GroupColumn>,
    /// The keys besides the window, over the input.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The input's `window_start` and `window_end`.
    pub start: Arc<dyn PhysicalExpr>,
    /// See `start`.
    pub end: Arc<dyn PhysicalExpr>,
    /// The type of the window columns.
    pub window_type: DataType,
    /// The aggregate calls.
    pub calls: Vec<AggregateCall>,
    /// The output: the grouping's columns, then one per call.
    pub schema: SchemaRef,
    /// The keys' types.
    pub key_types: Vec<DataType>,
    /// The keys in Arrow's row format, for the groups' index.
    pub converter: Arc<RowConverter>,
    /// On processing time, the windows the operator applies to its clock
    /// (the rows' window columns then hold only their time); `None` on
    /// event time.
    pub processing_time: Option<Assigner>,
    /// When groups fire before their window ends (`None`: only at its end).
    pub early_fire: Option<EarlyFire>,
}

/// A window, as `(end, start)`, and the rows of a batch that fall in it.
type WindowRows = ((i64, i64), Vec<u32>);

impl WindowAggregateSpec {
    /// The output rows of `window`: `n` rows of the groups whose `keys` and
    /// `results` are given, in order.
    pub fn output(
        &self,
        (end, start): (i64, i64),
        n: usize,
        keys: Vec<ArrayRef>,
        results: Vec<ArrayRef>,
    ) -> Result<RecordBatch> {
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for column in &self.columns {
            columns.push(match column {
                GroupColumn::Start => time_column(vec![start; n], &self.window_type)?,
                GroupColumn::End => time_column(vec![end; n], &self.window_type)?,
                GroupColumn::Time => time_column(vec![end - 1; n], &self.window_type)?,
                GroupColumn::Key(i) => keys[*i].clone(),
            });
        }
        columns.extend(results);
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| Error::Sql(format!("window results: {e}")))
    }

    /// The row format of keys of `key_types`.
    pub fn converter(key_types: &[DataType]) -> Result<Arc<RowConverter>> {
        RowConverter::new(key_types.iter().cloned().map(SortField::new).collect())
            .map(Arc::new)
            .map_err(|e| Error::Sql(format!("window aggregate keys: {e}")))
    }
}

/// One open window: its groups, and with early firing their firings.
struct Pane {
    groups: Groups,
    firings: Firings,
}

/// The window aggregate operator.
pub struct WindowAggregate {
    spec: Arc<WindowAggregateSpec>,
    converter: Arc<RowConverter>,
    /// Open windows by (end, start), so the next to fire comes first.
    panes: BTreeMap<(i64, i64), Pane>,
    /// When the early-fire delay fires next, ms (once a group changed).
    next_early: Option<i64>,
    /// The watermark so far, ms.
    watermark: i64,
    max_parallelism: u64,
    /// Checkpoint rows: window start and end, keys, accumulator states.
    state_schema: SchemaRef,
    uid: String,
    /// Rows (once per window) dropped as late since the last checkpoint.
    late: u64,
    hashes: Vec<u64>,
    group_ids: Vec<usize>,
}

impl WindowAggregate {
    /// The operator computing `spec`.
    pub fn new(spec: Arc<WindowAggregateSpec>) -> Self {
        let converter = spec.converter.clone();
        let mut fields = vec![
            Field::new("window_start", DataType::Int64, false),
            Field::new("window_end", DataType::Int64, false),
        ];
        for (i, t) in spec.key_types.iter().enumerate() {
            fields.push(Field::new(format!("key_{i}"), t.clone(), true));
        }
        for call in &spec.calls {
            fields.extend(call.state_fields.iter().map(|f| f.as_ref().clone()));
        }
        if spec.early_fire.is_some() {
            fields.push(Field::new("rows_since_fired", DataType::UInt64, false));
            fields.push(Field::new("fired", DataType::Boolean, false));
            for (i, t) in result_types(&spec).into_iter().enumerate() {
                fields.push(Field::new(format!("fired_{i}"), t, true));
            }
        }
        WindowAggregate {
            spec,
            converter,
            panes: BTreeMap::new(),
            next_early: None,
            watermark: i64::MIN,
            max_parallelism: 1,
            state_schema: Arc::new(Schema::new(fields)),
            uid: String::new(),
            late: 0,
            hashes: Vec::new(),
            group_ids: Vec::new(),
        }
    }

    fn bad_state(&self, reason: impl std::fmt::Display) -> Error {
        Error::State {
            uid: self.uid.clone(),
            reason: reason.to_string(),
        }
    }

    fn pane(&mut self, window: (i64, i64)) -> Result<&mut Pane> {
        if !self.panes.contains_key(&window) {
            let groups = Groups::new(&self.spec.calls, &self.converter)?;
            let firings = Firings::default();
            self.panes.insert(window, Pane { groups, firings });
        }
        self.panes
            .get_mut(&window)
            .ok_or_else(|| Error::Internal("a window just opened is missing".into()))
    }

    /// The rows of `batch` of each window they fall in.
    fn windows_of(&mut self, batch: &RecordBatch) -> Result<Vec<WindowRows>> {
        let rows = batch.num_rows();
        let mut windows: Vec<WindowRows> = Vec::new();
        if let Some(assigner) = &self.spec.processing_time {
            let all: Vec<u32> = (0..rows as u32).collect();
            assigner.assign(now_ms(), |start, end| {
                windows.push(((end, start), all.clone()))
            });
            return Ok(windows);
        }
        let starts = millis(&evaluate(self.spec.start.as_ref(), batch)?)?;
        let ends = millis(&evaluate(self.spec.end.as_ref(), batch)?)?;
        for row in 0..rows {
            let window = (ends.value(row), starts.value(row));
            if window.0 - 1 <= self.watermark {
                self.late += 1;
                continue;
            }
            match windows.iter_mut().rev().find(|(w, _)| *w == window) {
                Some((_, rows)) => rows.push(row as u32),
                None => windows.push((window, vec![row as u32])),
            }
        }
        Ok(windows)
    }

    fn aggregate(&mut self, batch: &RecordBatch, output: &mut Batch<Rows>) -> Result<()> {
        let rows = batch.num_rows();
        let windows = self.windows_of(batch)?;
        let mut hashes = std::mem::take(&mut self.hashes);
        let key_rows = batch_keys(
            &self.spec.keys,
            &self.converter,
            batch,
            self.max_parallelism,
            &mut hashes,
        )?;
        let inputs = self
            .spec
            .calls
            .iter()
            .map(|c| c.inputs(batch))
            .collect::<Result<Vec<_>>>()?;
        let mut group_ids = std::mem::take(&mut self.group_ids);
        let spec = self.spec.clone();
        let converter = self.converter.clone();
        for (window, window_rows) in windows {
            let pane = self.pane(window)?;
            pane.groups
                .find(&window_rows, &key_rows, &hashes, &mut group_ids);
            let Some(early) = spec.early_fire else {
                pane.groups
                    .update_rows(&inputs, &window_rows, &group_ids, rows)?;
                continue;
            };
            // A count trigger fires a group right after its N-th row: the
            // rows up to it are folded in first.
            let mut folded = 0;
            for i in 0..group_ids.len() {
                if pane.firings.count(group_ids[i], early.every_rows) {
                    let (rows_in, groups_in) = (&window_rows[folded..=i], &group_ids[folded..=i]);
                    pane.groups.update_rows(&inputs, rows_in, groups_in, rows)?;
                    folded = i + 1;
                    output.extend(fire_groups(
                        &spec,
                        &converter,
                        window,
                        &mut pane.groups,
                        &mut pane.firings,
                        &group_ids[i..=i],
                    )?);
                }
            }
            let (rows_in, groups_in) = (&window_rows[folded..], &group_ids[folded..]);
            pane.groups.update_rows(&inputs, rows_in, groups_in, rows)?;
            if self.next_early.is_none() {
                self.next_early = early.next_time(now_ms());
            }
        }
        self.hashes = hashes;
        self.group_ids = group_ids;
        Ok(())
    }

    fn fire(&mut self, (end, start): (i64, i64), groups: Groups) -> Result<Option<Rows>> {
        let n = groups.len();
        if n == 0 {
            return Ok(None);
        }
        let (keys, results) = groups.emit(&self.converter)?;
        let batch = self.spec.output((end, start), n, keys, results)?;
        Ok(Some(Rows::inserts(batch)))
    }

    /// Fires every window whose last millisecond is at or before `time`.
    fn fire_until(&mut self, time: i64, output: &mut Batch<Rows>) -> Result<()> {
        while let Some(entry) = self.panes.first_entry() {
            if entry.key().0 - 1 > time {
                break;
            }
            let (window, mut pane) = entry.remove_entry();
            if self.spec.early_fire.is_some() {
                let all: Vec<usize> = (0..pane.groups.len()).collect();
                let spec = self.spec.clone();
                output.extend(fire_groups(
                    &spec,
                    &self.converter,
                    window,
                    &mut pane.groups,
                    &mut pane.firings,
                    &all,
                )?);
            } else {
                output.extend(self.fire(window, pane.groups)?);
            }
        }
        Ok(())
    }

    /// Fires the groups changed since they last fired, in every open window.
    fn fire_changed(&mut self, output: &mut Batch<Rows>) -> Result<()> {
        let spec = self.spec.clone();
        for (&window, pane) in &mut self.panes {
            let changed = pane.firings.changed();
            if !changed.is_empty() {
                output.extend(fire_groups(
                    &spec,
                    &self.converter,
                    window,
                    &mut pane.groups,
                    &mut pane.firings,
                    &changed,
                )?);
            }
        }
        Ok(())
    }

    fn restore_keyed(&mut self, group: KeyGroup, bytes: &[u8]) -> Result<()> {
        let batch = decode_key_group(&self.uid, group, bytes, &self.state_schema)?;
        let starts = batch.column(0).as_primitive::<Int64Type>().clone();
        let ends = batch.column(1).as_primitive::<Int64Type>().clone();
        let k = self.spec.key_types.len();
        let keys = &batch.columns()[2..2 + k];
        let states = &batch.columns()[2 + k..];
        let key_rows = self
            .converter
            .convert_columns(keys)
            .map_err(|e| self.bad_state(e))?;
        let hashes = vec![u64::from(group.0); batch.num_rows()];
        let mut windows: HashMap<(i64, i64), Vec<u32>> = HashMap::new();
        for row in 0..batch.num_rows() {
            windows
                .entry((ends.value(row), starts.value(row)))
                .or_default()
                .push(row as u32);
        }
        let spec = self.spec.clone();
        let firings_at: usize = spec.calls.iter().map(|c| c.state_fields.len()).sum();
        for (window, rows) in windows {
            let pane = self.pane(window)?;
            let groups = pane
                .groups
                .restore(&rows, &key_rows, &hashes, states, &spec.calls)?;
            if spec.early_fire.is_some() {
                pane.firings
                    .restore(&groups, &rows, &states[firings_at..])?;
            }
        }
        Ok(())
    }
}

/// The types of the calls' results.
fn result_types(spec: &WindowAggregateSpec) -> Vec<DataType> {
    let fields = spec.schema.fields();
    fields[fields.len() - spec.calls.len()..]
        .iter()
        .map(|f| f.data_type().clone())
        .collect()
}

impl Operator for WindowAggregate {
    type In = Rows;
    type Out = Rows;

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.uid = ctx.uid.0.clone();
        self.max_parallelism = u64::from(ctx.max_parallelism);
        let Some(restored) = restored else {
            return Ok(());
        };
        for (group, bytes) in &restored.keyed {
            self.restore_keyed(*group, bytes)?;
        }
        self.watermark = restored_watermark(&restored)
            .ok_or_else(|| self.bad_state("the saved watermark is not 8 bytes"))?;
        Ok(())
    }

    fn process(&mut self, input: &mut Batch<Rows>, output: &mut Batch<Rows>) -> Result<()> {
        for rows in input.drain(..) {
            let batch = rows.batch;
            self.aggregate(&batch, output)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, output: &mut Batch<Rows>) -> Result<()> {
        // Processing-time windows wait for the clock, but for the end of input.
        if self.spec.processing_time.is_some() && watermark != Watermark::MAX {
            return Ok(());
        }
        self.watermark = self.watermark.max(watermark.0);
        self.fire_until(self.watermark, output)
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let window_end = match self.spec.processing_time {
            Some(_) => self.panes.first_key_value().map(|(&(end, _), _)| end - 1),
            None => None,
        };
        let at = match (window_end, self.next_early) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let wait = (at - now_ms()).max(0);
        Some(Instant::now() + Duration::from_millis(wait as u64))
    }

    fn on_time(&mut self, _now: Instant, output: &mut Batch<Rows>) -> Result<()> {
        let now = now_ms();
        if self.next_early.is_some_and(|at| at <= now) {
            self.next_early = None;
            self.fire_changed(output)?;
        }
        if self.spec.processing_time.is_some() {
            self.fire_until(now, output)?;
        }
        Ok(())
    }

    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        report_late(&self.uid, std::mem::take(&mut self.late));
        let operator_state = Some(self.watermark.to_le_bytes().to_vec());
        let mut batches = Vec::with_capacity(self.panes.len());
        let mut key_groups: Vec<u32> = Vec::new();
        let result_types = result_types(&self.spec);
        for (&(end, start), pane) in &mut self.panes {
            let (keys, groups_of, states) = pane.groups.state(&self.converter)?;
            let n = groups_of.len();
            key_groups.extend_from_slice(groups_of);
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(vec![start; n])),
                Arc::new(Int64Array::from(vec![end; n])),
            ];
            columns.extend(keys);
            columns.extend(states);
            if self.spec.early_fire.is_some() {
                columns.extend(pane.firings.state(n, &result_types)?);
            }
            let options = RecordBatchOptions::new().with_row_count(Some(n));
            batches.push(
                RecordBatch::try_new_with_options(self.state_schema.clone(), columns, &options)
                    .map_err(|e| Error::Sql(format!("saving windows: {e}")))?,
            );
        }
        let all = concat_batches(&self.state_schema, &batches)
            .map_err(|e| Error::Sql(format!("saving windows: {e}")))?;
        let keyed = encode_by_key_group(&all, &key_groups)?;
        Ok(OperatorSnapshot {
            operator_state,
            keyed,
            ..Default::default()
        })
    }
}
