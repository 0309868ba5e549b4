//! The regular join: an inner equi-join of two append-only inputs
//! (`a JOIN b ON a.k = b.k [AND condition]`), as Flink's streaming join. Each
//! side's rows are kept per key; a row arriving on one side is joined with
//! the kept rows of its key on the other, so each matching pair is emitted
//! once, when the later of its two rows arrives. A row with a NULL key matches
//! nothing and is not kept. With `SET 'table.exec.state.ttl'` a row is
//! forgotten once it has been kept that long (processing time), as Flink's
//! state TTL: rows arriving further apart then no longer meet. In a window
//! or an interval join (see [`crate::sql::join_bounds`]) a row is forgotten
//! once the watermark passes the last time a row of the other side could
//! still pair with it; in an interval join a row later than the watermark
//! pairs with nothing. An outer join's unpaired rows: see
//! [`crate::sql::outer_join`].
//!
//! An inner join also takes updating inputs (see [`updates`]).
//!
//! Both inputs reach the operator as one keyed stream of [`Either`] records
//! (see [`crate::sql::join_split`]); state is checkpointed per key group.

use std::sync::Arc;
use std::time::Duration;

use datafusion_common::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion_common::arrow::compute::{filter_record_batch, take, take_record_batch};
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::row::RowConverter;
use datafusion_physical_expr::PhysicalExpr;

use crate::data::{Barrier, Batch, Either, Watermark};
use crate::error::{Error, Result};
use crate::keys::KeyGroup;
use crate::operator::{Operator, OperatorContext};
use crate::sql::calc::evaluate;
use crate::sql::join_side::{pair_blob, split_blob, Side};
use crate::sql::key_groups::hash_rows;
use crate::sql::keyed_state::decode_key_group;
use crate::sql::outer_join::{padded, Changes};
use crate::sql::rows::{RowKind, Rows};
use crate::sql::windows::now_ms;
use crate::state::{OperatorSnapshot, RestoredState};

/// What a regular join computes.
pub struct JoinSpec {
    /// The row format of each updating side's whole rows, to find the kept
    /// copy of a row taken back; `None` for an append-only side.
    pub whole_rows: [Option<Arc<RowConverter>>; 2],
    /// Each side's key expressions, over that side's rows (left, right).
    pub keys: [Vec<Arc<dyn PhysicalExpr>>; 2],
    /// Both sides' keys in Arrow's row format (their types are the same).
    pub converter: Arc<RowConverter>,
    /// Each side's rows.
    pub inputs: [SchemaRef; 2],
    /// The output: the left side's columns, then the right's.
    pub schema: SchemaRef,
    /// The rest of the ON condition, over the output.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// How long a row is kept (none: for ever).
    pub ttl: Option<Duration>,
    /// When each side's rows go, in a window or an interval join (left,
    /// right); `None`: kept for ever (or for the TTL).
    pub forget: Option<[ForgetRows; 2]>,
    /// Each side's event time (left, right) in an interval join, where a
    /// row later than the watermark in it pairs with nothing, as in Flink's.
    pub event_time: Option<[Arc<dyn PhysicalExpr>; 2]>,
    /// The sides whose rows go out even without a partner, padded with
    /// NULLs (left, right): an outer join's.
    pub preserved: [bool; 2],
}

/// A batch's rows with set keys, their key columns, and the rows without.
type Keyed = (RecordBatch, Vec<ArrayRef>, Option<RecordBatch>);

/// When a side's rows go: once the watermark reaches `time + after_ms`.
pub struct ForgetRows {
    /// The row's time, over that side's rows.
    pub time: Arc<dyn PhysicalExpr>,
    /// How long after `time`, in milliseconds (may be negative).
    pub after_ms: i64,
}

/// The regular join operator.
pub struct RegularJoin {
    spec: Arc<JoinSpec>,
    sides: [Side; 2],
    /// The watermark reached (both inputs'), for late rows.
    watermark: i64,
    max_parallelism: u64,
    uid: String,
}

fn failed<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Sql(format!("{what}: {e}"))
}

#[path = "join_time.rs"]
mod time;
#[path = "join_updates.rs"]
mod updates;

impl RegularJoin {
    /// The operator computing `spec`.
    pub fn new(spec: Arc<JoinSpec>) -> Self {
        RegularJoin {
            sides: [
                Side::new(
                    &spec.inputs[0],
                    spec.preserved[0],
                    spec.whole_rows[0].is_none(),
                ),
                Side::new(
                    &spec.inputs[1],
                    spec.preserved[1],
                    spec.whole_rows[1].is_none(),
                ),
            ],
            watermark: i64::MIN,
            spec,
            max_parallelism: 1,
            uid: String::new(),
        }
    }

    /// The rows of `batch` whose keys are all set, with their key columns,
    /// and the rest (rows with a NULL key, which pair with nothing).
    fn keyed(&self, side: usize, batch: RecordBatch) -> Result<Keyed> {
        let columns = self.spec.keys[side]
            .iter()
            .map(|k| evaluate(k.as_ref(), &batch))
            .collect::<Result<Vec<_>>>()?;
        if columns.iter().all(|c| c.null_count() == 0) {
            return Ok((batch, columns, None));
        }
        let (set, unset): (Vec<u32>, Vec<u32>) = (0..batch.num_rows() as u32)
            .partition(|&row| columns.iter().all(|c| c.is_valid(row as usize)));
        let unset =
            take_record_batch(&batch, &UInt32Array::from(unset)).map_err(failed("joining"))?;
        let indices = UInt32Array::from(set);
        let batch = take_record_batch(&batch, &indices).map_err(failed("joining"))?;
        let columns = columns
            .iter()
            .map(|c| take(c, &indices, None).map_err(failed("joining")))
            .collect::<Result<Vec<_>>>()?;
        Ok((batch, columns, Some(unset)))
    }

    /// Joins a batch of side `side` with the other side's kept rows, then
    /// keeps it; the pairs, if any, and in an outer join the padded rows of
    /// the preserved sides (see [`crate::sql::outer_join`]).
    fn join(&mut self, side: usize, batch: RecordBatch) -> Result<Option<Rows>> {
        let (batch, late) = self.split_late(side, batch)?;
        let (batch, columns, unkeyed) = self.keyed(side, batch)?;
        let other = 1 - side;
        let preserved = self.spec.preserved;
        // A regular outer join pads rows as they arrive; one bounded by event
        // time once they can pair no more (see `on_watermark`).
        let pad_on_arrival = self.spec.forget.is_none();
        let mut changes = Changes::default();
        for alone in [late, unkeyed].into_iter().flatten() {
            if preserved[side] {
                changes.push(
                    self.padded(alone.columns().to_vec(), side)?,
                    RowKind::Insert,
                );
            }
        }
        if batch.num_rows() == 0 {
            return changes.finish(&self.spec.schema);
        }
        let keys = self
            .spec
            .converter
            .convert_columns(&columns)
            .map_err(failed("join keys"))?;
        let mut hashes = Vec::with_capacity(batch.num_rows());
        hash_rows(&columns, batch.num_rows(), &mut hashes)?;
        let key_groups: Vec<u32> = hashes
            .iter()
            .map(|h| (h % self.max_parallelism) as u32)
            .collect();
        let mut these: Vec<u32> = Vec::new();
        let mut those: Vec<(u64, u32)> = Vec::new();
        self.sides[other].probe(&keys, &mut these, &mut those);
        let (joined, paired) = if these.is_empty() {
            (None, None)
        } else {
            let (joined, paired) = self.pairs(side, &batch, &these, &those)?;
            (Some(joined), paired)
        };
        // Counts of partners, in an outer join: this batch's rows', and the
        // other side's rows that meet their first partner now.
        let mut matches = vec![0u32; if preserved[side] { batch.num_rows() } else { 0 }];
        let mut first_met = Vec::new();
        if preserved[side] || preserved[other] {
            for (i, (&row, &pair)) in these.iter().zip(&those).enumerate() {
                if paired.as_ref().is_some_and(|p| !p.value(i)) {
                    continue;
                }
                if let Some(count) = matches.get_mut(row as usize) {
                    *count += 1;
                }
                if let Some(count) = self.sides[other].matches_mut(pair) {
                    if *count == 0 {
                        first_met.push(pair);
                    }
                    *count += 1;
                }
            }
        }
        if pad_on_arrival && !first_met.is_empty() {
            let columns = self.sides[other].gather(&first_met)?;
            changes.push(self.padded(columns, other)?, RowKind::Delete);
        }
        if let Some(joined) = joined {
            changes.push(joined, RowKind::Insert);
        }
        if preserved[side] && pad_on_arrival {
            let alone: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|&row| matches[row as usize] == 0)
                .collect();
            if !alone.is_empty() {
                let rows = take_record_batch(&batch, &UInt32Array::from(alone))
                    .map_err(failed("joining"))?;
                changes.push(self.padded(rows.columns().to_vec(), side)?, RowKind::Insert);
            }
        }
        let until = self.until(side, &batch)?;
        self.sides[side].keep(batch, keys, key_groups, now_ms(), until, matches);
        changes.finish(&self.spec.schema)
    }

    /// Rows of side `side` padded with NULLs for the other side.
    fn padded(&self, columns: Vec<ArrayRef>, side: usize) -> Result<RecordBatch> {
        let other_fields = self.spec.inputs[1 - side].fields().len();
        padded(columns, side, other_fields, &self.spec.schema)
    }

    /// The output rows of rows `these` of `batch` (side `side`) each with its
    /// kept row of the other side, after the rest of the ON condition; and
    /// which pairs that kept, if it dropped any.
    fn pairs(
        &self,
        side: usize,
        batch: &RecordBatch,
        these: &[u32],
        those: &[(u64, u32)],
    ) -> Result<(RecordBatch, Option<BooleanArray>)> {
        let indices = UInt32Array::from(these.to_vec());
        let this_columns = batch
            .columns()
            .iter()
            .map(|c| take(c, &indices, None).map_err(failed("joining")))
            .collect::<Result<Vec<_>>>()?;
        let other_columns = self.sides[1 - side].gather(those)?;
        let columns = match side {
            0 => [this_columns, other_columns].concat(),
            _ => [other_columns, this_columns].concat(),
        };
        let joined =
            RecordBatch::try_new(self.spec.schema.clone(), columns).map_err(failed("joining"))?;
        let Some(filter) = &self.spec.filter else {
            return Ok((joined, None));
        };
        let keep = evaluate(filter.as_ref(), &joined)?;
        let keep = keep
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::Sql("a JOIN condition is not a boolean".into()))?;
        // A NULL condition keeps no pair.
        let keep: BooleanArray = keep.iter().map(|k| Some(k == Some(true))).collect();
        let joined = filter_record_batch(&joined, &keep).map_err(failed("joining"))?;
        Ok((joined, Some(keep)))
    }

    fn restore_keyed(&mut self, group: KeyGroup, blob: &[u8]) -> Result<()> {
        let Some(parts) = split_blob(blob) else {
            return Err(Error::State {
                uid: self.uid.clone(),
                reason: format!("key group {}: the join state is cut short", group.0),
            });
        };
        for (side, bytes) in [parts.0, parts.1].into_iter().enumerate() {
            if bytes.is_empty() {
                continue;
            }
            let saved = decode_key_group(&self.uid, group, bytes, &self.sides[side].state_schema)?;
            let (width, matches) = self.sides[side].saved_matches(&saved);
            let arrived = saved
                .column(width)
                .as_any()
                .downcast_ref::<datafusion_common::arrow::array::Int64Array>()
                .and_then(|a| a.iter().flatten().max())
                .unwrap_or_else(now_ms);
            let batch = saved
                .project(&(0..width).collect::<Vec<_>>())
                .map_err(failed("restoring join state"))?;
            let columns = self.spec.keys[side]
                .iter()
                .map(|k| evaluate(k.as_ref(), &batch))
                .collect::<Result<Vec<_>>>()?;
            let keys = self
                .spec
                .converter
                .convert_columns(&columns)
                .map_err(failed("restoring join state"))?;
            let rows = batch.num_rows();
            let until = self.until(side, &batch)?;
            self.sides[side].keep(batch, keys, vec![group.0; rows], arrived, until, matches);
        }
        Ok(())
    }

    /// Forgets rows kept longer than the TTL.
    fn expire(&mut self) {
        if let Some(ttl) = self.spec.ttl {
            let before =
                now_ms().saturating_sub(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
            for side in &mut self.sides {
                side.expire(before);
            }
        }
    }
}

impl Operator for RegularJoin {
    type In = Either<Rows, Rows>;
    type Out = Rows;

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.uid = ctx.uid.0.clone();
        self.max_parallelism = u64::from(ctx.max_parallelism);
        for (group, blob) in restored.map(|r| r.keyed).unwrap_or_default() {
            self.restore_keyed(group, &blob)?;
        }
        Ok(())
    }

    fn process(&mut self, input: &mut Batch<Self::In>, output: &mut Batch<Rows>) -> Result<()> {
        self.expire();
        for record in input.drain(..) {
            match record {
                Either::Left(rows) => self.join_changes(0, rows, output)?,
                Either::Right(rows) => self.join_changes(1, rows, output)?,
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, output: &mut Batch<Rows>) -> Result<()> {
        self.advance(watermark, output)
    }

    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        self.expire();
        let mut groups: std::collections::BTreeMap<KeyGroup, [Option<Vec<u8>>; 2]> =
            std::collections::BTreeMap::new();
        for (index, side) in self.sides.iter_mut().enumerate() {
            side.compact();
            for (group, blob) in side.encode()? {
                groups.entry(group).or_default()[index] = Some(blob);
            }
        }
        let keyed = groups
            .into_iter()
            .map(|(group, [left, right])| (group, pair_blob(left.as_deref(), right.as_deref())))
            .collect();
        Ok(OperatorSnapshot {
            keyed,
            ..Default::default()
        })
    }
}
