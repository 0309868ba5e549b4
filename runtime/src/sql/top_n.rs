//! Top-N: `ROW_NUMBER() OVER (PARTITION BY k ORDER BY o) AS rn ... WHERE
//! rn <= N`, as Flink's rank over an append-only input. Each partition keeps
//! its N first rows by the order (ties in arrival order; newest first in a
//! deduplication keeping the last row, `ORDER BY time DESC` with `rn = 1`)
//! and each rank is a
//! slot of the result: when a row enters at rank r, every slot from r on
//! changes (`-U` its old row, `+U` its new one, each with the slot's rank), and
//! a slot filled for the first time is an insert (`+I`); the row pushed past
//! rank N leaves with the slot it held. `rn = 1` (deduplication) is the case
//! N = 1. Rows are kept in Arrow's row format and checkpointed per key group
//! as Arrow IPC, in rank order.

use std::sync::Arc;

use datafusion_common::arrow::array::{
    Array, ArrayRef, Int8Array, RecordBatch, RecordBatchOptions, UInt64Array,
};
use datafusion_common::arrow::compute::interleave;
use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::arrow::row::RowConverter;
use datafusion_physical_expr::PhysicalExpr;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use crate::data::{Barrier, Batch};
use crate::error::{Error, Result};
use crate::keys::KeyGroup;
use crate::operator::{Operator, OperatorContext};
use crate::sql::calc::evaluate;
use crate::sql::key_groups::hash_rows;
use crate::sql::keyed_state::{decode_key_group, encode_by_key_group};
use crate::sql::rows::{RowKind, Rows};
use crate::state::{OperatorSnapshot, RestoredState};

/// What a top-N computes.
pub struct TopNSpec {
    /// The partition expressions, over the input.
    pub partition: Vec<Arc<dyn PhysicalExpr>>,
    /// The partition keys in Arrow's row format.
    pub partition_rows: Arc<RowConverter>,
    /// The order expressions, over the input.
    pub order: Vec<Arc<dyn PhysicalExpr>>,
    /// The order keys in Arrow's row format, with each one's direction: their
    /// bytes compare as the rows order.
    pub order_rows: Arc<RowConverter>,
    /// Whole input rows in Arrow's row format.
    pub input_rows: Arc<RowConverter>,
    /// The input's columns.
    pub input: SchemaRef,
    /// The output: the input's columns, then the rank.
    pub schema: SchemaRef,
    /// How many rows each partition keeps.
    pub limit: usize,
    /// Rows that order alike rank newest first: a deduplication that keeps
    /// the last row (`rn = 1` over `ORDER BY time DESC`), as Flink's.
    pub newest_first: bool,
    /// Whether to emit each update's old row (`-U`): not when nothing
    /// downstream reads it (an upsert or blackhole sink).
    pub update_before: bool,
}

/// A kept row: its order key and its whole row in Arrow's row format, back
/// to back in one buffer (reused when the row is pushed out by another).
#[derive(Default)]
struct Kept {
    bytes: Vec<u8>,
    order_len: usize,
    arrival: u64,
}

impl Kept {
    fn order(&self) -> &[u8] {
        &self.bytes[..self.order_len]
    }

    fn row(&self) -> &[u8] {
        &self.bytes[self.order_len..]
    }

    fn set(&mut self, order: &[u8], row: &[u8], arrival: u64) {
        self.bytes.clear();
        self.bytes.extend_from_slice(order);
        self.bytes.extend_from_slice(row);
        self.order_len = order.len();
        self.arrival = arrival;
    }
}

/// One partition's kept rows, in rank order.
struct Partition {
    key: Box<[u8]>,
    hash: u64,
    key_group: u32,
    entries: Vec<Kept>,
}

/// Where a change's row is: a row of the input batches being ranked, or a
/// kept row, copied (in Arrow's row format) to the changes' own buffer.
#[derive(Clone, Copy)]
enum Origin<'a> {
    Input { batch: usize, row: usize },
    Kept(&'a [u8]),
}

/// The changes the input batches made: each one's kind and rank, and where
/// its row is, as `(source, row)` of [`interleave`]: source 0 the kept rows
/// copied (each a range of one buffer), source `b + 1` input batch `b`. The
/// buffers are reused from call to call.
#[derive(Default)]
struct Changes {
    kinds: Vec<i8>,
    ranks: Vec<u64>,
    rows: Vec<(usize, usize)>,
    kept_ends: Vec<usize>,
    kept: Vec<u8>,
}

impl Changes {
    fn push(&mut self, kind: RowKind, rank: u64, origin: Origin) {
        self.kinds.push(kind as i8);
        self.ranks.push(rank);
        let at = match origin {
            Origin::Input { batch, row } => (batch + 1, row),
            Origin::Kept(bytes) => {
                self.kept.extend_from_slice(bytes);
                self.kept_ends.push(self.kept.len());
                (0, self.kept_ends.len() - 1)
            }
        };
        self.rows.push(at);
    }

    /// The kept rows copied, in the order they were pushed.
    fn kept_rows(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.kept_ends.iter().copied());
        starts
            .zip(&self.kept_ends)
            .map(|(start, &end)| &self.kept[start..end])
    }

    fn clear(&mut self) {
        self.kinds.clear();
        self.ranks.clear();
        self.rows.clear();
        self.kept_ends.clear();
        self.kept.clear();
    }
}

/// The top-N operator.
pub struct TopN {
    spec: Arc<TopNSpec>,
    partitions: HashTable<Partition>,
    /// Arrival order, for ties (kept in checkpoints).
    arrivals: u64,
    max_parallelism: u64,
    state_schema: SchemaRef,
    uid: String,
    changes: Changes,
    hashes: Vec<u64>,
    /// The input batches ranked since the changes were last emitted.
    inputs: Vec<RecordBatch>,
}

fn failed<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Sql(format!("{what}: {e}"))
}

impl TopN {
    /// The operator computing `spec`.
    pub fn new(spec: Arc<TopNSpec>) -> Self {
        let mut fields: Vec<Field> = spec
            .input
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("arrival", DataType::UInt64, false));
        TopN {
            state_schema: Arc::new(Schema::new(fields)),
            spec,
            partitions: HashTable::new(),
            arrivals: 0,
            max_parallelism: 1,
            uid: String::new(),
            changes: Changes::default(),
            hashes: Vec::new(),
            inputs: Vec::new(),
        }
    }

    fn columns(
        &self,
        exprs: &[Arc<dyn PhysicalExpr>],
        batch: &RecordBatch,
    ) -> Result<Vec<ArrayRef>> {
        exprs.iter().map(|e| evaluate(e.as_ref(), batch)).collect()
    }

    /// Puts `batch`'s rows in their partitions (`arrivals`: each row's, or
    /// fresh ones), recording what changed when `record` is the batch's
    /// index among the inputs to emit from.
    fn rank(
        &mut self,
        batch: &RecordBatch,
        arrivals: Option<&UInt64Array>,
        record: Option<usize>,
    ) -> Result<()> {
        let partition_columns = self.columns(&self.spec.partition, batch)?;
        let keys = self
            .spec
            .partition_rows
            .convert_columns(&partition_columns)
            .map_err(failed("top-N keys"))?;
        hash_rows(&partition_columns, batch.num_rows(), &mut self.hashes)?;
        let order_columns = self.columns(&self.spec.order, batch)?;
        let orders = self
            .spec
            .order_rows
            .convert_columns(&order_columns)
            .map_err(failed("top-N order"))?;
        let rows = self
            .spec
            .input_rows
            .convert_columns(batch.columns())
            .map_err(failed("top-N rows"))?;
        let (limit, newest_first) = (self.spec.limit, self.spec.newest_first);
        let update_before = self.spec.update_before;
        for (i, &hash) in self.hashes.iter().enumerate() {
            let arrival = match arrivals {
                Some(a) => a.value(i),
                None => {
                    self.arrivals += 1;
                    self.arrivals
                }
            };
            let key = keys.row(i);
            let key = key.as_ref();
            let partition = match self.partitions.entry(hash, |p| &*p.key == key, |p| p.hash) {
                Entry::Occupied(found) => found.into_mut(),
                Entry::Vacant(vacant) => vacant
                    .insert(Partition {
                        key: key.into(),
                        hash,
                        key_group: (hash % self.max_parallelism) as u32,
                        entries: Vec::with_capacity(limit.min(16)),
                    })
                    .into_mut(),
            };
            let order = orders.row(i);
            let order = order.as_ref();
            let at = partition.entries.partition_point(|e| {
                let (mine, theirs) = if newest_first {
                    (arrival, e.arrival)
                } else {
                    (e.arrival, arrival)
                };
                (e.order(), mine) <= (order, theirs)
            });
            if at >= limit {
                continue;
            }
            let row = rows.row(i);
            let row = row.as_ref();
            let entries = &partition.entries;
            if let Some(batch) = record {
                // Every slot from `at` on changes: it held `entries[slot]`
                // and now holds the new row (at `at`) or its upper neighbour.
                for slot in at..(entries.len() + 1).min(limit) {
                    let rank = slot as u64 + 1;
                    let now = match slot == at {
                        true => Origin::Input { batch, row: i },
                        false => Origin::Kept(entries[slot - 1].row()),
                    };
                    match entries.get(slot) {
                        Some(before) => {
                            if update_before {
                                let before = Origin::Kept(before.row());
                                self.changes.push(RowKind::UpdateBefore, rank, before);
                            }
                            self.changes.push(RowKind::UpdateAfter, rank, now);
                        }
                        None => self.changes.push(RowKind::Insert, rank, now),
                    }
                }
            }
            // The row pushed past rank N lends its buffer to the new one.
            let mut entry = match partition.entries.len() >= limit {
                true => partition.entries.pop().unwrap_or_default(),
                false => Kept::default(),
            };
            entry.set(order, row, arrival);
            partition.entries.insert(at, entry);
        }
        Ok(())
    }

    /// The changes recorded since the last call, as rows with kinds: the
    /// input's rows taken from its batches, the kept ones decoded.
    fn emit(&mut self) -> Result<Option<Rows>> {
        if self.changes.kinds.is_empty() {
            self.inputs.clear();
            return Ok(None);
        }
        let parser = self.spec.input_rows.parser();
        let kept = self
            .spec
            .input_rows
            .convert_rows(self.changes.kept_rows().map(|row| parser.parse(row)))
            .map_err(failed("top-N rows"))?;
        let mut columns = Vec::with_capacity(kept.len() + 1);
        for (c, kept) in kept.iter().enumerate() {
            let mut sources: Vec<&dyn Array> = Vec::with_capacity(self.inputs.len() + 1);
            sources.push(kept.as_ref());
            sources.extend(self.inputs.iter().map(|b| b.column(c).as_ref()));
            columns.push(interleave(&sources, &self.changes.rows).map_err(failed("top-N rows"))?);
        }
        self.inputs.clear();
        let ranks: ArrayRef = Arc::new(UInt64Array::from(self.changes.ranks.clone()));
        let rank_type = self.spec.schema.field(columns.len()).data_type().clone();
        columns.push(
            datafusion_common::arrow::compute::cast(&ranks, &rank_type)
                .map_err(failed("top-N ranks"))?,
        );
        let count = self.changes.kinds.len();
        let options = RecordBatchOptions::new().with_row_count(Some(count));
        let batch = RecordBatch::try_new_with_options(self.spec.schema.clone(), columns, &options)
            .map_err(failed("top-N rows"))?;
        let kinds = Int8Array::from(self.changes.kinds.clone());
        self.changes.clear();
        Ok(Some(Rows {
            batch,
            kinds: Some(kinds),
        }))
    }
}

impl Operator for TopN {
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
            self.rank(&rows.batch, None, Some(self.inputs.len()))?;
            self.inputs.push(rows.batch);
        }
        output.extend(self.emit()?);
        Ok(())
    }

    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        let mut kept: Vec<(&Partition, &Kept)> = self
            .partitions
            .iter()
            .flat_map(|p| p.entries.iter().map(move |e| (p, e)))
            .collect();
        if kept.is_empty() {
            return Ok(OperatorSnapshot::default());
        }
        // Decoded in key-group order, the rows are saved without another copy.
        kept.sort_by_key(|(p, _)| p.key_group);
        let parser = self.spec.input_rows.parser();
        let mut columns = self
            .spec
            .input_rows
            .convert_rows(kept.iter().map(|(_, e)| parser.parse(e.row())))
            .map_err(failed("saving top-N state"))?;
        columns.push(Arc::new(UInt64Array::from_iter_values(
            kept.iter().map(|(_, e)| e.arrival),
        )));
        let all = RecordBatch::try_new(self.state_schema.clone(), columns)
            .map_err(failed("saving top-N state"))?;
        let key_groups: Vec<u32> = kept.iter().map(|(p, _)| p.key_group).collect();
        Ok(OperatorSnapshot {
            keyed: encode_by_key_group(&all, &key_groups)?,
            ..Default::default()
        })
    }
}

impl TopN {
    fn restore_keyed(&mut self, group: KeyGroup, bytes: &[u8]) -> Result<()> {
        let saved = decode_key_group(&self.uid, group, bytes, &self.state_schema)?;
        let width = saved.num_columns() - 1;
        let arrivals = saved
            .column(width)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .cloned()
            .ok_or_else(|| Error::State {
                uid: self.uid.clone(),
                reason: format!("key group {}: no arrival column", group.0),
            })?;
        self.arrivals = self
            .arrivals
            .max(arrivals.iter().flatten().max().unwrap_or(0));
        let batch = saved
            .project(&(0..width).collect::<Vec<_>>())
            .map_err(failed("restoring top-N state"))?;
        // Ranking the kept rows again in their arrival order gives back the
        // partitions; what that would emit was emitted before the checkpoint.
        self.rank(&batch, Some(&arrivals), None)
    }
}
