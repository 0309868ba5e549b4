//! The window aggregate: `GROUP BY window_start, window_end, keys...` over a
//! window table function. Each window's groups aggregate as rows arrive and
//! the window's results go out, once, when the watermark passes its end; a
//! row for a window already fired is late and dropped (as in Flink). On
//! processing time the operator puts each row in the windows of its own
//! clock when the row arrives, and fires a window when the clock passes its
//! end, so no row is late (Flink's processing-time windows).
//!
//! State is on the heap and checkpointed per key group as Arrow IPC: each
//! group's window, key and accumulator state, so a restore at another
//! parallelism hands every subtask exactly its key groups.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion_common::arrow::array::{
    ArrayRef, AsArray, Int64Array, RecordBatch, RecordBatchOptions, UInt32Array,
};
use datafusion_common::arrow::compute::{concat_batches, take};
use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion_common::arrow::row::{RowConverter, SortField};
use datafusion_physical_expr::PhysicalExpr;

use crate::data::{Barrier, Batch, Watermark};
use crate::error::{Error, Result};
use crate::keys::KeyGroup;
use crate::operator::{Operator, OperatorContext};
use crate::sql::aggregates::{AggregateCall, CallInputs};
use crate::sql::calc::evaluate;
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
}

/// A window, as `(end, start)`, and the rows of a batch that fall in it.
type WindowRows = ((i64, i64), Vec<u32>);

impl WindowAggregateSpec {
    /// The row format of keys of `key_types`.
    pub fn converter(key_types: &[DataType]) -> Result<Arc<RowConverter>> {
        RowConverter::new(key_types.iter().cloned().map(SortField::new).collect())
            .map(Arc::new)
            .map_err(|e| Error::Sql(format!("window aggregate keys: {e}")))
    }
}

/// The window aggregate operator.
pub struct WindowAggregate {
    spec: Arc<WindowAggregateSpec>,
    converter: Arc<RowConverter>,
    /// Open windows by (end, start), so the next to fire comes first.
    panes: BTreeMap<(i64, i64), Groups>,
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
        WindowAggregate {
            spec,
            converter,
            panes: BTreeMap::new(),
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

    fn pane(&mut self, window: (i64, i64)) -> Result<&mut Groups> {
        if !self.panes.contains_key(&window) {
            let groups = Groups::new(&self.spec.calls, &self.converter)?;
            self.panes.insert(window, groups);
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

    fn aggregate(&mut self, batch: &RecordBatch) -> Result<()> {
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
        for (window, window_rows) in windows {
            let pane = self.pane(window)?;
            pane.find(&window_rows, &key_rows, &hashes, &mut group_ids);
            if window_rows.len() == rows {
                pane.update(&inputs, &group_ids)?;
            } else {
                let taken = take_inputs(&inputs, &window_rows)?;
                pane.update(&taken, &group_ids)?;
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
        let spec = &self.spec;
        let mut columns = Vec::with_capacity(spec.schema.fields().len());
        for column in &spec.columns {
            columns.push(match column {
                GroupColumn::Start => time_column(vec![start; n], &spec.window_type)?,
                GroupColumn::End => time_column(vec![end; n], &spec.window_type)?,
                GroupColumn::Time => time_column(vec![end - 1; n], &spec.window_type)?,
                GroupColumn::Key(i) => keys[*i].clone(),
            });
        }
        columns.extend(results);
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        RecordBatch::try_new_with_options(spec.schema.clone(), columns, &options)
            .map(|b| Some(Rows::inserts(b)))
            .map_err(|e| Error::Sql(format!("window results: {e}")))
    }

    /// Fires every window whose last millisecond is at or before `time`.
    fn fire_until(&mut self, time: i64, output: &mut Batch<Rows>) -> Result<()> {
        while let Some(entry) = self.panes.first_entry() {
            if entry.key().0 - 1 > time {
                break;
            }
            let (window, groups) = entry.remove_entry();
            output.extend(self.fire(window, groups)?);
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
        for (window, rows) in windows {
            self.pane(window)?
                .restore(&rows, &key_rows, &hashes, states, &spec.calls)?;
        }
        Ok(())
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

    fn process(&mut self, input: &mut Batch<Rows>, _output: &mut Batch<Rows>) -> Result<()> {
        for rows in input.drain(..) {
            let batch = rows.batch;
            self.aggregate(&batch)?;
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
        self.spec.processing_time.as_ref()?;
        let (&(end, _), _) = self.panes.first_key_value()?;
        let wait = (end - 1 - now_ms()).max(0);
        Some(Instant::now() + Duration::from_millis(wait as u64))
    }

    fn on_time(&mut self, _now: Instant, output: &mut Batch<Rows>) -> Result<()> {
        self.fire_until(now_ms(), output)
    }

    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        report_late(&self.uid, std::mem::take(&mut self.late));
        let operator_state = Some(self.watermark.to_le_bytes().to_vec());
        let mut batches = Vec::with_capacity(self.panes.len());
        let mut key_groups: Vec<u32> = Vec::new();
        for (&(end, start), groups) in &mut self.panes {
            let (keys, groups_of, states) = groups.state(&self.converter)?;
            let n = groups_of.len();
            key_groups.extend_from_slice(groups_of);
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(vec![start; n])),
                Arc::new(Int64Array::from(vec![end; n])),
            ];
            columns.extend(keys);
            columns.extend(states);
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
