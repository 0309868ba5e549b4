//! One input's rows in a regular join's state: the batches kept in arrival
//! order, an index from each key (in Arrow's row format) to its rows (an
//! append-only side's newest rows wait outside it, see
//! [`crate::sql::join_probe`]), and how
//! the rows are checkpointed (per key group, with when they arrived) and
//! forgotten once older than the state TTL or, in a window join, once the
//! watermark passes their windows' ends; over an updating input, a row taken
//! back leaves the index at once and the checkpoints after.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, UInt32Array};
use datafusion_common::arrow::compute::interleave;
use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::arrow::row::{RowConverter, Rows as KeyRows};
use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;

use crate::error::{Error, Result};
use crate::keys::KeyGroup;
use crate::sql::join_key::JoinKey;
use crate::sql::keyed_state::{encode_rows_by_key_group, KeptRow};

/// A batch of kept rows.
pub struct Kept {
    /// The rows.
    pub batch: RecordBatch,
    /// Each row's key group.
    pub key_groups: Vec<u32>,
    /// When they arrived (ms since the epoch, processing time).
    pub arrived_ms: i64,
    /// The watermark after which none of them can pair any more, in a
    /// window or an interval join (`i64::MAX` otherwise).
    pub until: i64,
    /// How many partners each has met, on an outer join's preserved side
    /// (empty otherwise).
    pub matches: Vec<u32>,
    /// The rows' keys while the batch is not in the index yet (see
    /// [`crate::sql::join_probe`]).
    pub keys: Option<KeyRows>,
}

/// One side's kept rows.
pub struct Side {
    /// Batches in arrival order.
    pub kept: VecDeque<Kept>,
    /// The sequence number of `kept[0]`: a row is `(sequence, row)`.
    pub first: u64,
    /// Each key's rows (most keys are short and have one row, kept without
    /// an allocation of their own); entries of batches already forgotten are
    /// dropped lazily, all at once when as many rows were forgotten as half
    /// the keys.
    pub index: hashbrown::HashMap<JoinKey, SmallVec<[(u64, u32); 1]>, FxBuildHasher>,
    /// Rows forgotten since the index was last compacted.
    forgotten: usize,
    /// Whether rows wait outside the index until probes make indexing them
    /// pay (an append-only side; see [`crate::sql::join_probe`]).
    pub(crate) lazy: bool,
    /// The sequence number of the first batch not in the index.
    pub(crate) indexed_to: u64,
    /// Rows kept but not in the index, and since the index last took them
    /// in: rows that arrived, and rows scanned by probes.
    pub(crate) tail: TailCounts,
    /// The rows' schema with `arrived_ms` after them (and `matches`, when
    /// counted): what a checkpoint holds.
    pub state_schema: SchemaRef,
    /// Whether each row's partners are counted (an outer join's preserved side).
    counted: bool,
    /// Kept rows taken back (an updating input's), left out of checkpoints.
    removed: HashSet<(u64, u32), FxBuildHasher>,
}

/// How many rows wait outside the index, and what they cost so far.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TailCounts {
    /// Rows not in the index.
    pub rows: usize,
    /// Rows that came since the index last took the tail in.
    pub added: usize,
    /// Rows probes scanned since then.
    pub scanned: usize,
}

impl Side {
    /// An empty side of rows of `schema`, counting each row's partners if
    /// `counted`; indexing them only once probes make it pay if `lazy`
    /// (append-only inputs).
    pub fn new(schema: &SchemaRef, counted: bool, lazy: bool) -> Self {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("arrived_ms", DataType::Int64, false));
        if counted {
            fields.push(Field::new("matches", DataType::UInt32, false));
        }
        Side {
            kept: VecDeque::new(),
            first: 0,
            index: hashbrown::HashMap::with_hasher(FxBuildHasher),
            forgotten: 0,
            lazy,
            indexed_to: 0,
            tail: TailCounts::default(),
            state_schema: Arc::new(Schema::new(fields)),
            counted,
            removed: HashSet::with_hasher(FxBuildHasher),
        }
    }

    /// Where a saved batch's rows end (its `arrived_ms` column), and each
    /// row's partners when counted (none met, if the column is missing).
    pub fn saved_matches(&self, saved: &RecordBatch) -> (usize, Vec<u32>) {
        if !self.counted {
            return (saved.num_columns() - 1, Vec::new());
        }
        let width = saved.num_columns() - 2;
        let matches = saved
            .column(width + 1)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .map(|a| a.values().to_vec())
            .unwrap_or_else(|| vec![0; saved.num_rows()]);
        (width, matches)
    }

    /// The partners met by kept row `at`, when counted and still kept.
    pub fn matches_mut(&mut self, (sequence, row): (u64, u32)) -> Option<&mut u32> {
        let at = usize::try_from(sequence.checked_sub(self.first)?).ok()?;
        self.kept.get_mut(at)?.matches.get_mut(row as usize)
    }

    /// The columns of kept rows `rows`, in that order.
    pub fn gather(&self, rows: &[(u64, u32)]) -> Result<Vec<ArrayRef>> {
        let mut batches: HashMap<u64, usize, FxBuildHasher> = HashMap::with_hasher(FxBuildHasher);
        let mut sources: Vec<&RecordBatch> = Vec::new();
        let mut at: Vec<(usize, usize)> = Vec::with_capacity(rows.len());
        for &(sequence, row) in rows {
            let source = *batches.entry(sequence).or_insert_with(|| {
                sources.push(self.batch(sequence));
                sources.len() - 1
            });
            at.push((source, row as usize));
        }
        let width = self.state_schema.fields().len() - if self.counted { 2 } else { 1 };
        (0..width)
            .map(|c| {
                let arrays: Vec<&dyn Array> =
                    sources.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&arrays, &at).map_err(|e| Error::Sql(format!("joining: {e}")))
            })
            .collect()
    }

    /// Keeps `batch`, whose rows have keys `keys` and key groups `key_groups`.
    pub fn keep(
        &mut self,
        batch: RecordBatch,
        keys: KeyRows,
        key_groups: Vec<u32>,
        arrived_ms: i64,
        until: i64,
        matches: Vec<u32>,
    ) {
        let sequence = self.first + self.kept.len() as u64;
        let keys = if self.lazy {
            self.tail.rows += batch.num_rows();
            self.tail.added += batch.num_rows();
            Some(keys)
        } else {
            self.index_rows(sequence, &keys);
            self.indexed_to = sequence + 1;
            None
        };
        self.kept.push_back(Kept {
            batch,
            key_groups,
            arrived_ms,
            until,
            matches,
            keys,
        });
    }

    /// Puts the rows of batch `sequence`, of keys `keys`, in the index.
    pub(crate) fn index_rows(&mut self, sequence: u64, keys: &KeyRows) {
        for row in 0..keys.num_rows() {
            self.index
                .entry_ref(keys.row(row).as_ref())
                .or_default()
                .push((sequence, row as u32));
        }
    }

    /// The live rows of `key`.
    pub fn rows_of(&mut self, key: &[u8]) -> &[(u64, u32)] {
        self.index_tail();
        let first = self.first;
        match self.index.get_mut(key) {
            Some(rows) => {
                rows.retain(|&mut (sequence, _)| sequence >= first);
                rows
            }
            None => &[],
        }
    }

    /// Removes one kept row of `key` whose whole row, in `whole_rows`'s
    /// format, is `whole`; whether there was one (a row forgotten by the TTL
    /// is not).
    pub fn remove(&mut self, key: &[u8], whole: &[u8], whole_rows: &RowConverter) -> Result<bool> {
        self.index_tail();
        let first = self.first;
        let Some(rows) = self.index.get_mut(key) else {
            return Ok(false);
        };
        rows.retain(|&mut (sequence, _)| sequence >= first);
        for (i, &(sequence, row)) in rows.iter().enumerate() {
            let kept = &self.kept[(sequence - first) as usize].batch;
            let candidate = whole_rows
                .convert_columns(kept.slice(row as usize, 1).columns())
                .map_err(|e| Error::Sql(format!("taking join rows back: {e}")))?;
            if candidate.row(0).as_ref() == whole {
                rows.remove(i);
                self.removed.insert((sequence, row));
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The kept batch of sequence number `sequence`.
    pub fn batch(&self, sequence: u64) -> &RecordBatch {
        &self.kept[(sequence - self.first) as usize].batch
    }

    /// Forgets the batches that arrived before `before_ms`, oldest first.
    pub fn expire(&mut self, before_ms: i64) {
        while self.kept.front().is_some_and(|k| k.arrived_ms < before_ms) {
            if let Some(kept) = self.kept.pop_front() {
                self.count_forgotten(&kept);
            }
            self.first += 1;
        }
        self.indexed_to = self.indexed_to.max(self.first);
        self.compact_when_due();
    }

    /// Forgets the batches, oldest first, that can pair no more once the
    /// watermark is at `watermark`; they are handed to `gone`.
    pub fn forget_until(
        &mut self,
        watermark: i64,
        mut gone: impl FnMut(Kept) -> Result<()>,
    ) -> Result<()> {
        while self.kept.front().is_some_and(|k| k.until <= watermark) {
            if let Some(kept) = self.kept.pop_front() {
                self.count_forgotten(&kept);
                gone(kept)?;
            }
            self.first += 1;
        }
        self.indexed_to = self.indexed_to.max(self.first);
        self.compact_when_due();
        Ok(())
    }

    /// Counts `kept`, forgotten: in the index's entries to drop, or out of the tail.
    fn count_forgotten(&mut self, kept: &Kept) {
        if kept.keys.is_some() {
            self.tail.rows = self.tail.rows.saturating_sub(kept.batch.num_rows());
        } else {
            self.forgotten += kept.batch.num_rows();
        }
    }

    /// Compacts the index once the rows forgotten since the last time are
    /// as many as half its keys: its size follows the live rows, at a cost
    /// per forgotten row that does not grow with it.
    fn compact_when_due(&mut self) {
        if self.forgotten > self.index.len() / 2 + 1024 {
            self.compact();
        }
    }

    /// Drops the index entries of forgotten rows (and keys left without any).
    pub fn compact(&mut self) {
        self.forgotten = 0;
        let first = self.first;
        self.index.retain(|_, rows| {
            rows.retain(|&mut (sequence, _)| sequence >= first);
            !rows.is_empty()
        });
        self.removed.retain(|&(sequence, _)| sequence >= first);
    }

    /// The kept rows by key group, each group's as one blob.
    pub fn encode(&self) -> Result<Vec<(KeyGroup, Vec<u8>)>> {
        let failed = |e| Error::Sql(format!("saving join state: {e}"));
        let mut batches = Vec::with_capacity(self.kept.len());
        let mut rows = Vec::new();
        for (sequence, kept) in (self.first..).zip(&self.kept) {
            let mut columns: Vec<ArrayRef> = kept.batch.columns().to_vec();
            columns.push(Arc::new(Int64Array::from_value(
                kept.arrived_ms,
                kept.batch.num_rows(),
            )));
            if self.counted {
                columns.push(Arc::new(UInt32Array::from(kept.matches.clone())));
            }
            let batch = batches.len() as u32;
            batches.push(RecordBatch::try_new(self.state_schema.clone(), columns).map_err(failed)?);
            rows.extend(
                (0..kept.batch.num_rows() as u32)
                    .zip(&kept.key_groups)
                    .filter(|&(row, _)| !self.removed.contains(&(sequence, row)))
                    .map(|(row, &group)| KeptRow { batch, row, group }),
            );
        }
        encode_rows_by_key_group(&batches, &rows)
    }
}

/// Both sides' blobs of one key group as one: the left's length (8 bytes,
/// little-endian), the left's blob, the right's.
pub fn pair_blob(left: Option<&[u8]>, right: Option<&[u8]>) -> Vec<u8> {
    let left = left.unwrap_or_default();
    let right = right.unwrap_or_default();
    let mut blob = Vec::with_capacity(8 + left.len() + right.len());
    blob.extend_from_slice(&(left.len() as u64).to_le_bytes());
    blob.extend_from_slice(left);
    blob.extend_from_slice(right);
    blob
}

/// The two blobs of [`pair_blob`] (an empty one: that side kept nothing).
pub fn split_blob(blob: &[u8]) -> Option<(&[u8], &[u8])> {
    let (length, rest) = blob.split_first_chunk::<8>()?;
    let length = usize::try_from(u64::from_le_bytes(*length)).ok()?;
    (length <= rest.len()).then(|| rest.split_at(length))
}

#[cfg(test)]
mod tests {
    use datafusion_common::arrow::array::StringArray;
    use datafusion_common::arrow::row::{RowConverter, SortField};

    use super::*;

    /// Keeps one row of key `key` that can pair until the watermark `until`.
    fn keep(side: &mut Side, converter: &RowConverter, key: &str, until: i64) {
        let column: ArrayRef = Arc::new(StringArray::from(vec![key]));
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)])),
            vec![column.clone()],
        )
        .unwrap();
        let keys = converter.convert_columns(&[column]).unwrap();
        side.keep(batch, keys, vec![0], 0, until, Vec::new());
    }

    #[test]
    fn kept_rows_go_once_the_watermark_reaches_their_last_pairing_time() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)]));
        let converter = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
        let mut side = Side::new(&schema, false, false);
        // Rows of windows ending at 10 s and 20 s (times up to end - 1 ms).
        keep(&mut side, &converter, "a", 9_999);
        keep(&mut side, &converter, "b", 19_999);
        let key = |k: &str| {
            converter
                .convert_columns(&[Arc::new(StringArray::from(vec![k])) as ArrayRef])
                .unwrap()
        };
        let mut gone = 0;
        side.forget_until(9_998, |_| {
            gone += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(side.rows_of(key("a").row(0).as_ref()).len(), 1);
        side.forget_until(9_999, |_| {
            gone += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(gone, 1);
        assert!(side.rows_of(key("a").row(0).as_ref()).is_empty());
        assert_eq!(side.rows_of(key("b").row(0).as_ref()).len(), 1);
        side.compact();
        assert_eq!(side.index.len(), 1);
    }

    #[test]
    fn forgetting_rows_compacts_the_index_without_waiting_for_a_checkpoint() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)]));
        let converter = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
        let mut side = Side::new(&schema, false, false);
        for i in 0..3_000 {
            keep(&mut side, &converter, &format!("k{i}"), i);
        }
        assert_eq!(side.index.len(), 3_000);
        // A few forgotten keys stay in the index until more go.
        side.forget_until(99, |_| Ok(())).unwrap();
        assert_eq!(side.index.len(), 3_000);
        side.forget_until(2_899, |_| Ok(())).unwrap();
        assert_eq!(side.index.len(), 100, "only the live rows' keys");
    }

    #[test]
    fn a_pair_of_blobs_reads_back_and_a_short_one_is_refused() {
        let blob = pair_blob(Some(b"left"), None);
        assert_eq!(split_blob(&blob), Some((&b"left"[..], &b""[..])));
        let blob = pair_blob(None, Some(b"right"));
        assert_eq!(split_blob(&blob), Some((&b""[..], &b"right"[..])));
        assert_eq!(split_blob(&blob[..7]), None);
        let mut long = pair_blob(Some(b"left"), None);
        long.truncate(10);
        assert_eq!(split_blob(&long), None);
    }
}
