//! Top-N: `ROW_NUMBER() OVER (PARTITION BY k ORDER BY o) AS rn ... WHERE
//! rn <= N`, as Flink's rank over an append-only input. Each partition keeps
//! its N first rows by the order (ties in arrival order; newest first in a
//! deduplication keeping the last row, `ORDER BY time DESC` with `rn = 1`)
//! and each rank is a slot of the result: when a row enters at rank r, every
//! slot from r on changes (`-U` its old row, `+U` its new one, each with the
//! slot's rank), and a slot filled for the first time is an insert (`+I`);
//! the row pushed past rank N leaves with the slot it held. `rn = 1`
//! (deduplication) is the case N = 1. A kept row is its order key (in Arrow's
//! row format, which compares as the order) and its place in the input
//! batches it came in ([`Arena`]), so rows go out and into checkpoints
//! (Arrow IPC per key group, in rank order) gathered, never re-encoded.

use std::sync::Arc;

use datafusion_common::arrow::array::{
    Array, ArrayRef, Int8Array, RecordBatch, RecordBatchOptions, UInt64Array,
};
use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::arrow::row::RowConverter;
use datafusion_physical_expr::PhysicalExpr;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::data::{Barrier, Batch};
use crate::error::{Error, Result};
use crate::keys::KeyGroup;
use crate::operator::{Operator, OperatorContext};
use crate::sql::calc::evaluate;
use crate::sql::key_groups::hash_rows;
use crate::sql::keyed_state::{decode_key_group, encode_by_key_group};
use crate::sql::rows::{RowKind, Rows};
use crate::sql::top_n_arena::{Arena, At};
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

/// A kept row: its order key, where it is, and when it came (ties).
struct Kept {
    order: SmallVec<[u8; 16]>,
    at: At,
    arrival: u64,
}

/// One partition's kept rows, in rank order (a deduplication's one row
/// inline, as a short key).
struct Partition {
    key: SmallVec<[u8; 24]>,
    hash: u64,
    key_group: u32,
    entries: SmallVec<[Kept; 1]>,
}

/// The changes the input made since they were last emitted: each one's
/// kind, rank and row.
#[derive(Default)]
struct Changes {
    kinds: Vec<i8>,
    ranks: Vec<u64>,
    rows: Vec<At>,
}

impl Changes {
    fn push(&mut self, kind: RowKind, rank: u64, row: At) {
        self.kinds.push(kind as i8);
        self.ranks.push(rank);
        self.rows.push(row);
    }

    fn clear(&mut self) {
        self.kinds.clear();
        self.ranks.clear();
        self.rows.clear();
    }
}

/// The top-N operator.
pub struct TopN {
    spec: Arc<TopNSpec>,
    partitions: HashTable<Partition>,
    arena: Arena,
    /// How many rows the partitions keep.
    kept: usize,
    /// Arrival order, for ties (kept in checkpoints).
    arrivals: u64,
    max_parallelism: u64,
    state_schema: SchemaRef,
    uid: String,
    changes: Changes,
    hashes: Vec<u64>,
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
            arena: Arena::default(),
            kept: 0,
            arrivals: 0,
            max_parallelism: 1,
            uid: String::new(),
            changes: Changes::default(),
            hashes: Vec::new(),
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
    /// fresh ones), recording what changed when `record`.
    fn rank(
        &mut self,
        batch: RecordBatch,
        arrivals: Option<&UInt64Array>,
        record: bool,
    ) -> Result<()> {
        let partition_columns = self.columns(&self.spec.partition, &batch)?;
        let keys = self
            .spec
            .partition_rows
            .convert_columns(&partition_columns)
            .map_err(failed("top-N keys"))?;
        hash_rows(&partition_columns, batch.num_rows(), &mut self.hashes)?;
        let order_columns = self.columns(&self.spec.order, &batch)?;
        let orders = self
            .spec
            .order_rows
            .convert_columns(&order_columns)
            .map_err(failed("top-N order"))?;
        let index = self.arena.push(batch);
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
                        key: SmallVec::from_slice(key),
                        hash,
                        key_group: (hash % self.max_parallelism) as u32,
                        entries: SmallVec::new(),
                    })
                    .into_mut(),
            };
            let order = orders.row(i);
            let order = order.as_ref();
            let place = partition.entries.partition_point(|e| {
                let (mine, theirs) = if newest_first {
                    (arrival, e.arrival)
                } else {
                    (e.arrival, arrival)
                };
                (&*e.order, mine) <= (order, theirs)
            });
            if place >= limit {
                continue;
            }
            let row = At {
                batch: index,
                row: i as u32,
            };
            let entries = &partition.entries;
            if record {
                // Every slot from `place` on changes: it held `entries[slot]`
                // and now holds the new row (at `place`) or its upper neighbour.
                for slot in place..(entries.len() + 1).min(limit) {
                    let rank = slot as u64 + 1;
                    let now = if slot == place {
                        row
                    } else {
                        entries[slot - 1].at
                    };
                    match entries.get(slot) {
                        Some(before) => {
                            if update_before {
                                self.changes.push(RowKind::UpdateBefore, rank, before.at);
                            }
                            self.changes.push(RowKind::UpdateAfter, rank, now);
                        }
                        None => self.changes.push(RowKind::Insert, rank, now),
                    }
                }
            }
            if partition.entries.len() >= limit {
                partition.entries.pop();
            } else {
                self.kept += 1;
            }
            let kept = Kept {
                order: SmallVec::from_slice(order),
                at: row,
                arrival,
            };
            partition.entries.insert(place, kept);
        }
        Ok(())
    }

    /// The changes recorded since the last call, as rows with kinds,
    /// gathered from the batches they came in.
    fn emit(&mut self) -> Result<Option<Rows>> {
        if self.changes.kinds.is_empty() {
            return Ok(None);
        }
        let rows = self.arena.gather(&self.spec.input, &self.changes.rows)?;
        let mut columns = rows.columns().to_vec();
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

    /// Gathers the kept rows into one batch once the arena holds too many
    /// dead ones (or too many batches).
    fn compact_if_due(&mut self) -> Result<()> {
        if !self.arena.wants_compaction(self.kept) {
            return Ok(());
        }
        let live: Vec<At> = self
            .partitions
            .iter()
            .flat_map(|p| p.entries.iter().map(|e| e.at))
            .collect();
        let moved = self.arena.compact(&self.spec.input, &live)?;
        let entries = self
            .partitions
            .iter_mut()
            .flat_map(|p| p.entries.iter_mut());
        for (entry, at) in entries.zip(moved) {
            entry.at = at;
        }
        Ok(())
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
        self.compact_if_due()
    }

    fn process(&mut self, input: &mut Batch<Rows>, output: &mut Batch<Rows>) -> Result<()> {
        for rows in input.drain(..) {
            self.rank(rows.batch, None, true)?;
        }
        output.extend(self.emit()?);
        self.compact_if_due()
    }

    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        let mut kept: Vec<(u32, &Kept)> = self
            .partitions
            .iter()
            .flat_map(|p| p.entries.iter().map(move |e| (p.key_group, e)))
            .collect();
        if kept.is_empty() {
            return Ok(OperatorSnapshot::default());
        }
        // Gathered in key-group order, the rows are saved without another copy.
        kept.sort_by_key(|(group, _)| *group);
        let rows: Vec<At> = kept.iter().map(|(_, e)| e.at).collect();
        let mut columns = self
            .arena
            .gather(&self.spec.input, &rows)?
            .columns()
            .to_vec();
        columns.push(Arc::new(UInt64Array::from_iter_values(
            kept.iter().map(|(_, e)| e.arrival),
        )));
        let all = RecordBatch::try_new(self.state_schema.clone(), columns)
            .map_err(failed("saving top-N state"))?;
        let key_groups: Vec<u32> = kept.iter().map(|(group, _)| *group).collect();
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
        self.rank(batch, Some(&arrivals), false)
    }
}
