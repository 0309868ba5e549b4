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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion_common::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::arrow::row::{RowConverter, SortField};
use datafusion_physical_expr::PhysicalExpr;

use crate::data::{Barrier, Batch, Watermark};
use crate::error::{Error, Result};
use crate::operator::{Operator, OperatorContext};
use crate::sql::aggregates::AggregateCall;
use crate::sql::calc::evaluate;
use crate::sql::early_fire::{fire_groups, EarlyFire, Firings};
use crate::sql::groups::Groups;
use crate::sql::key_groups::batch_keys;
use crate::sql::rows::Rows;
use crate::sql::windows::{millis, now_ms, restored_watermark, time_column, Assigner};
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

#[path = "window_aggregate_fire.rs"]
mod fire;
#[path = "window_aggregate_state.rs"]
mod state;

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
            Some(_) => self.panes.first_key_value().map(|(&(end, _), _)| end),
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
            // A window of the clock fires once its end has passed: until
            // then a batch the clock puts at its last millisecond may still
            // come, and would open it again (the same window out twice).
            self.fire_until(now - 1, output)?;
        }
        Ok(())
    }

    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        self.save()
    }
}
