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

use std::collections::HashMap;
use std::sync::Arc;

use datafusion_common::arrow::array::{
    Array, ArrayRef, Int8Array, RecordBatch, RecordBatchOptions, UInt64Array,
};
use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::arrow::row::{OwnedRow, RowConverter};
use datafusion_physical_expr::PhysicalExpr;
use rustc_hash::FxBuildHasher;

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
}

/// A kept row.
struct Entry {
    order: OwnedRow,
    arrival: u64,
    row: OwnedRow,
}

/// One partition's kept rows, in rank order.
struct Partition {
    key_group: u32,
    entries: Vec<Entry>,
}

/// The top-N operator.
pub struct TopN {
    spec: Arc<TopNSpec>,
    partitions: HashMap<Box<[u8]>, Partition, FxBuildHasher>,
    /// Arrival order, for ties (kept in checkpoints).
    arrivals: u64,
    max_parallelism: u64,
    state_schema: SchemaRef,
    uid: String,
}

fn failed<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Sql(format!("{what}: {e}"))
}

/// The changes a batch made: (kind, rank, the row).
type Changes = Vec<(RowKind, u64, OwnedRow)>;

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
            partitions: HashMap::with_hasher(FxBuildHasher),
            arrivals: 0,
            max_parallelism: 1,
            uid: String::new(),
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
    /// fresh ones), appending what changed to `changes`.
    fn rank(
        &mut self,
        batch: &RecordBatch,
        arrivals: Option<&UInt64Array>,
        changes: &mut Changes,
    ) -> Result<()> {
        let partition_columns = self.columns(&self.spec.partition, batch)?;
        let keys = self
            .spec
            .partition_rows
            .convert_columns(&partition_columns)
            .map_err(failed("top-N keys"))?;
        let mut hashes = Vec::with_capacity(batch.num_rows());
        hash_rows(&partition_columns, batch.num_rows(), &mut hashes)?;
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
        let limit = self.spec.limit;
        for (i, hash) in hashes.iter().enumerate() {
            let arrival = match arrivals {
                Some(a) => a.value(i),
                None => {
                    self.arrivals += 1;
                    self.arrivals
                }
            };
            let key = keys.row(i);
            if !self.partitions.contains_key(key.as_ref()) {
                let partition = Partition {
                    key_group: (hash % self.max_parallelism) as u32,
                    entries: Vec::with_capacity(limit.min(16)),
                };
                self.partitions.insert(key.as_ref().into(), partition);
            }
            let Some(partition) = self.partitions.get_mut(key.as_ref()) else {
                continue;
            };
            let order = orders.row(i);
            let newest_first = self.spec.newest_first;
            let at = partition.entries.partition_point(|e| {
                let (mine, theirs) = if newest_first {
                    (arrival, e.arrival)
                } else {
                    (e.arrival, arrival)
                };
                (e.order.row(), mine) <= (order, theirs)
            });
            if at >= limit {
                continue;
            }
            let entry = Entry {
                order: order.owned(),
                arrival,
                row: rows.row(i).owned(),
            };
            partition.entries.insert(at, entry);
            let filled = partition.entries.len().min(limit);
            for slot in at..filled {
                let rank = slot as u64 + 1;
                let now = partition.entries[slot].row.clone();
                match partition.entries.get(slot + 1) {
                    Some(before) => {
                        changes.push((RowKind::UpdateBefore, rank, before.row.clone()));
                        changes.push((RowKind::UpdateAfter, rank, now));
                    }
                    None => changes.push((RowKind::Insert, rank, now)),
                }
            }
            partition.entries.truncate(limit);
        }
        Ok(())
    }

    fn emit(&self, changes: Changes) -> Result<Option<Rows>> {
        if changes.is_empty() {
            return Ok(None);
        }
        let mut columns = self
            .spec
            .input_rows
            .convert_rows(changes.iter().map(|(_, _, row)| row.row()))
            .map_err(failed("top-N rows"))?;
        let ranks: ArrayRef = Arc::new(UInt64Array::from_iter_values(
            changes.iter().map(|(_, rank, _)| *rank),
        ));
        let rank_type = self.spec.schema.field(columns.len()).data_type().clone();
        columns.push(
            datafusion_common::arrow::compute::cast(&ranks, &rank_type)
                .map_err(failed("top-N ranks"))?,
        );
        let options = RecordBatchOptions::new().with_row_count(Some(changes.len()));
        let batch = RecordBatch::try_new_with_options(self.spec.schema.clone(), columns, &options)
            .map_err(failed("top-N rows"))?;
        let kinds = Int8Array::from_iter_values(changes.iter().map(|(kind, _, _)| *kind as i8));
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
        let mut changes = Changes::new();
        for rows in input.drain(..) {
            self.rank(&rows.batch, None, &mut changes)?;
        }
        output.extend(self.emit(changes)?);
        Ok(())
    }

    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        let kept: Vec<(&Partition, &Entry)> = self
            .partitions
            .values()
            .flat_map(|p| p.entries.iter().map(move |e| (p, e)))
            .collect();
        if kept.is_empty() {
            return Ok(OperatorSnapshot::default());
        }
        let mut columns = self
            .spec
            .input_rows
            .convert_rows(kept.iter().map(|(_, e)| e.row.row()))
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
        let mut ignored = Changes::new();
        self.rank(&batch, Some(&arrivals), &mut ignored)
    }
}
