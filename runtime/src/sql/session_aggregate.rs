//! The session window aggregate: `GROUP BY window_start, window_end, keys...`
//! over `SESSION(...)`. Per key, rows at most the gap apart share a
//! session, and a row that bridges two sessions merges them (Flink's merging
//! windows). A session's result goes out once, when the watermark passes its
//! end, its last row's time plus the gap; a row whose own session would have
//! closed by then is late and dropped, as in Flink.
//!
//! The operator keeps each open session's rows, reduced to the keys and the
//! calls' arguments, and aggregates them when the session closes, so that
//! sessions merge without merging accumulators. Checkpoints hold those rows
//! with their session's bounds, per key group.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion_common::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, RecordBatchOptions,
};
use datafusion_common::arrow::compute::interleave;
use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion_expr::EmitTo;
use rustc_hash::FxBuildHasher;

use crate::data::{Barrier, Batch, Watermark};
use crate::error::{Error, Result};
use crate::keys::KeyGroup;
use crate::operator::{Operator, OperatorContext};
use crate::sql::calc::evaluate;
use crate::sql::key_groups::batch_keys;
use crate::sql::keyed_state::{decode_key_group, encode_by_key_group};
use crate::sql::rows::Rows;
use crate::sql::sessions::{OpenSessions, RowAt, Session};
use crate::sql::window_aggregate::{GroupColumn, WindowAggregateSpec};
use crate::sql::windows::{millis, now_ms, report_late, restored_watermark, time_column};
use crate::state::{OperatorSnapshot, RestoredState};

/// What a session window aggregate computes.
pub struct SessionAggregateSpec {
    /// The grouping and the calls; `start` reads each row's time.
    pub window: WindowAggregateSpec,
    /// The inactivity that closes a session, ms.
    pub gap: i64,
    /// Whether sessions are on processing time: a row's time is the
    /// operator's clock when it arrives, and sessions close by that clock.
    pub processing_time: bool,
    /// The columns kept per row: the keys, then each call's arguments and
    /// filter mask (see [`crate::sql::aggregates::AggregateCall::input_fields`]).
    pub kept: Vec<Field>,
}

/// Kept columns of one input batch and how many of its rows are still in a session.
struct KeptBatch {
    columns: Vec<ArrayRef>,
    live: usize,
}

/// The session window aggregate operator.
pub struct SessionAggregate {
    spec: Arc<SessionAggregateSpec>,
    sessions: OpenSessions,
    kept: HashMap<u32, KeptBatch, FxBuildHasher>,
    next_batch: u32,
    watermark: i64,
    /// Rows dropped as late since the last checkpoint.
    late: u64,
    max_parallelism: u64,
    /// Checkpoint rows: session start and end, then the kept columns.
    state_schema: SchemaRef,
    uid: String,
    hashes: Vec<u64>,
}

impl SessionAggregate {
    /// The operator computing `spec`.
    pub fn new(spec: Arc<SessionAggregateSpec>) -> Self {
        let mut fields = vec![
            Field::new("window_start", DataType::Int64, false),
            Field::new("window_end", DataType::Int64, false),
        ];
        fields.extend(spec.kept.iter().cloned());
        SessionAggregate {
            sessions: OpenSessions::new(spec.gap),
            spec,
            kept: HashMap::with_hasher(FxBuildHasher),
            next_batch: 0,
            watermark: i64::MIN,
            late: 0,
            max_parallelism: 1,
            state_schema: Arc::new(Schema::new(fields)),
            uid: String::new(),
            hashes: Vec::new(),
        }
    }

    fn bad_state(&self, reason: impl std::fmt::Display) -> Error {
        Error::State {
            uid: self.uid.clone(),
            reason: reason.to_string(),
        }
    }

    /// The kept columns of `batch`: its keys, then each call's inputs.
    fn kept_columns(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        let window = &self.spec.window;
        let mut columns = Vec::with_capacity(self.spec.kept.len());
        for key in &window.keys {
            columns.push(evaluate(key.as_ref(), batch)?);
        }
        for call in &window.calls {
            let inputs = call.inputs(batch)?;
            columns.extend(inputs.values);
            if let Some(filter) = inputs.filter {
                columns.push(Arc::new(filter));
            }
        }
        Ok(columns)
    }

    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let window = &self.spec.window;
        let times = if self.spec.processing_time {
            Int64Array::from(vec![now_ms(); batch.num_rows()])
        } else {
            millis(&evaluate(window.start.as_ref(), batch)?)?
        };
        let mut hashes = std::mem::take(&mut self.hashes);
        let key_rows = batch_keys(
            &window.keys,
            &window.converter,
            batch,
            self.max_parallelism,
            &mut hashes,
        )?;
        let id = self.next_batch;
        let mut live = 0;
        for (row, hash) in hashes.iter().enumerate().take(batch.num_rows()) {
            if times.is_null(row) {
                continue;
            }
            let t = times.value(row);
            if t.saturating_add(self.spec.gap) - 1 <= self.watermark {
                self.late += 1;
                continue;
            }
            let slot = self.sessions.slot(key_rows.row(row).as_ref(), *hash as u32);
            self.sessions.place(slot, t, (id, row as u32));
            live += 1;
        }
        self.hashes = hashes;
        if live > 0 {
            let columns = self.kept_columns(batch)?;
            self.kept.insert(id, KeptBatch { columns, live });
            self.next_batch = self.next_batch.wrapping_add(1);
        }
        Ok(())
    }

    /// The kept columns of `rows`, gathered from their batches.
    fn gather(&self, rows: &[RowAt]) -> Result<Vec<ArrayRef>> {
        let mut ids: Vec<u32> = rows.iter().map(|r| r.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let batches = ids
            .iter()
            .map(|id| {
                self.kept
                    .get(id)
                    .ok_or_else(|| Error::Internal("a session's rows are missing".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        let indices: Vec<(usize, usize)> = rows
            .iter()
            .map(|(id, row)| (ids.binary_search(id).unwrap_or(0), *row as usize))
            .collect();
        (0..self.spec.kept.len())
            .map(|c| {
                let arrays: Vec<&dyn Array> =
                    batches.iter().map(|b| b.columns[c].as_ref()).collect();
                interleave(&arrays, &indices).map_err(|e| Error::Sql(format!("session rows: {e}")))
            })
            .collect()
    }

    /// Lets go of `rows`, dropping batches no session holds any more.
    fn release(&mut self, rows: &[RowAt]) {
        for (id, _) in rows {
            if let Some(batch) = self.kept.get_mut(id) {
                batch.live -= 1;
                if batch.live == 0 {
                    self.kept.remove(id);
                }
            }
        }
    }

    /// The results of `sessions`, one row each.
    fn fire(&mut self, sessions: Vec<Session>) -> Result<Option<Rows>> {
        let n = sessions.len();
        if n == 0 {
            return Ok(None);
        }
        let mut rows = Vec::new();
        let mut groups = Vec::new();
        let mut firsts = Vec::with_capacity(n);
        for (i, session) in sessions.iter().enumerate() {
            firsts.push(rows.len());
            rows.extend_from_slice(&session.rows);
            groups.extend(std::iter::repeat_n(i, session.rows.len()));
        }
        let columns = self.gather(&rows)?;
        let failed = |e: &dyn std::fmt::Display| Error::Sql(format!("session results: {e}"));
        let window = &self.spec.window;
        let k = window.keys.len();
        let first_rows = datafusion_common::arrow::array::UInt32Array::from(
            firsts.iter().map(|&f| f as u32).collect::<Vec<_>>(),
        );
        let keys = columns[..k]
            .iter()
            .map(|c| {
                datafusion_common::arrow::compute::take(c, &first_rows, None)
                    .map_err(|e| failed(&e))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut results = Vec::with_capacity(window.calls.len());
        let mut at = k;
        for call in &window.calls {
            let values = &columns[at..at + call.arguments()];
            at += call.arguments();
            let filter = if call.has_filter() {
                at += 1;
                Some(columns[at - 1].as_boolean().clone())
            } else {
                None
            };
            let mut accumulator = call.accumulator()?;
            accumulator
                .update_batch(values, &groups, filter.as_ref(), n)
                .map_err(|e| failed(&e))?;
            results.push(accumulator.evaluate(EmitTo::All).map_err(|e| failed(&e))?);
        }
        let starts: Vec<i64> = sessions.iter().map(|s| s.start).collect();
        let ends: Vec<i64> = sessions.iter().map(|s| s.end).collect();
        let mut output = Vec::with_capacity(window.schema.fields().len());
        for column in &window.columns {
            output.push(match column {
                GroupColumn::Start => time_column(starts.clone(), &window.window_type)?,
                GroupColumn::End => time_column(ends.clone(), &window.window_type)?,
                GroupColumn::Time => {
                    time_column(ends.iter().map(|e| e - 1).collect(), &window.window_type)?
                }
                GroupColumn::Key(i) => keys[*i].clone(),
            });
        }
        output.extend(results);
        let schema = window.schema.clone();
        self.release(&rows);
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        RecordBatch::try_new_with_options(schema, output, &options)
            .map(|b| Some(Rows::inserts(b)))
            .map_err(|e| failed(&e))
    }

    fn restore_keyed(&mut self, group: KeyGroup, bytes: &[u8]) -> Result<()> {
        let batch = decode_key_group(&self.uid, group, bytes, &self.state_schema)?;
        let starts = batch.column(0).as_primitive::<Int64Type>().clone();
        let ends = batch.column(1).as_primitive::<Int64Type>().clone();
        let columns = batch.columns()[2..].to_vec();
        let k = self.spec.window.keys.len();
        let key_rows = self
            .spec
            .window
            .converter
            .convert_columns(&columns[..k])
            .map_err(|e| self.bad_state(e))?;
        let id = self.next_batch;
        self.next_batch = self.next_batch.wrapping_add(1);
        for row in 0..batch.num_rows() {
            let slot = self.sessions.slot(key_rows.row(row).as_ref(), group.0);
            let (start, end) = (starts.value(row), ends.value(row));
            self.sessions.restore(slot, start, end, (id, row as u32));
        }
        if batch.num_rows() > 0 {
            let live = batch.num_rows();
            self.kept.insert(id, KeptBatch { columns, live });
        }
        Ok(())
    }
}

impl Operator for SessionAggregate {
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
            self.add(&rows.batch)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, output: &mut Batch<Rows>) -> Result<()> {
        // Processing-time sessions wait for the clock, but for the end of input.
        if self.spec.processing_time && watermark != Watermark::MAX {
            return Ok(());
        }
        self.watermark = self.watermark.max(watermark.0);
        let due = self.sessions.due(self.watermark);
        output.extend(self.fire(due)?);
        Ok(())
    }

    fn next_wakeup(&self) -> Option<Instant> {
        if !self.spec.processing_time {
            return None;
        }
        let end = self.sessions.next_end()?;
        let wait = (end - 1 - now_ms()).max(0);
        Some(Instant::now() + Duration::from_millis(wait as u64))
    }

    fn on_time(&mut self, _now: Instant, output: &mut Batch<Rows>) -> Result<()> {
        self.watermark = self.watermark.max(now_ms());
        let due = self.sessions.due(self.watermark);
        output.extend(self.fire(due)?);
        Ok(())
    }

    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        report_late(&self.uid, std::mem::take(&mut self.late));
        let operator_state = Some(self.watermark.to_le_bytes().to_vec());
        let (mut rows, mut starts, mut ends, mut key_groups) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (key_group, session) in self.sessions.iter() {
            rows.extend_from_slice(&session.rows);
            let n = session.rows.len();
            starts.extend(std::iter::repeat_n(session.start, n));
            ends.extend(std::iter::repeat_n(session.end, n));
            key_groups.extend(std::iter::repeat_n(key_group, n));
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(starts)),
            Arc::new(Int64Array::from(ends)),
        ];
        if rows.is_empty() {
            columns.extend(
                self.spec
                    .kept
                    .iter()
                    .map(|f| datafusion_common::arrow::array::new_empty_array(f.data_type())),
            );
        } else {
            columns.extend(self.gather(&rows)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        let all = RecordBatch::try_new_with_options(self.state_schema.clone(), columns, &options)
            .map_err(|e| Error::Sql(format!("saving sessions: {e}")))?;
        let keyed = encode_by_key_group(&all, &key_groups)?;
        Ok(OperatorSnapshot {
            operator_state,
            keyed,
            ..Default::default()
        })
    }
}
