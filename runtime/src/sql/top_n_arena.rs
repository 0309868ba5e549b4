//! Where a top-N keeps its rows: the input batches it ranked, as they came.
//! A kept row is a position in them; rows pushed out stay behind as dead
//! rows until the arena is compacted (its live rows gathered into one batch),
//! which happens once the dead rows outnumber the live ones, or the batches
//! grow many, so the arena holds at most about twice the kept rows.

use datafusion_common::arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::compute::interleave;
use datafusion_common::arrow::datatypes::SchemaRef;

use crate::error::{Error, Result};

/// Where a kept row is: its batch in the arena and its row in the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    /// The batch's index in the arena.
    pub batch: u32,
    /// The row's index in the batch.
    pub row: u32,
}

/// Below this many rows, the arena is never compacted.
const SMALL: usize = 1 << 16;

/// The batches holding kept rows, and a reused map from arena batches to
/// the sources of one gathering.
#[derive(Default)]
pub struct Arena {
    batches: Vec<RecordBatch>,
    rows: usize,
    /// For each batch, its index among a gathering's sources plus one (0:
    /// not among them); cleared after each gathering.
    source_of: Vec<u32>,
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Sql(format!("top-N rows: {e}"))
}

impl Arena {
    /// Adds `batch`; returns its index.
    pub fn push(&mut self, batch: RecordBatch) -> u32 {
        self.rows += batch.num_rows();
        self.batches.push(batch);
        self.source_of.push(0);
        (self.batches.len() - 1) as u32
    }

    /// Whether an arena keeping `live` rows should be compacted: its dead
    /// rows outnumber the live ones, or its batches are many and small.
    pub fn wants_compaction(&self, live: usize) -> bool {
        let rows = self.rows > SMALL && self.rows > 2 * live;
        let batches = self.batches.len() > 64 && self.batches.len() > 64 + live / 64;
        rows || batches
    }

    /// The rows at `rows`, in that order, as a batch of `schema`: only the
    /// batches they lie in are read.
    pub fn gather(&mut self, schema: &SchemaRef, rows: &[At]) -> Result<RecordBatch> {
        let mut sources: Vec<u32> = Vec::new();
        let mut indices = Vec::with_capacity(rows.len());
        for at in rows {
            let slot = &mut self.source_of[at.batch as usize];
            if *slot == 0 {
                sources.push(at.batch);
                *slot = sources.len() as u32;
            }
            indices.push((*slot as usize - 1, at.row as usize));
        }
        for &batch in &sources {
            self.source_of[batch as usize] = 0;
        }
        let columns = (0..schema.fields().len())
            .map(|c| {
                let arrays: Vec<&dyn Array> = sources
                    .iter()
                    .map(|&b| self.batches[b as usize].column(c).as_ref())
                    .collect();
                interleave(&arrays, &indices).map_err(failed)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(failed)
    }

    /// Replaces the arena by the rows at `live` gathered into one batch;
    /// returns where each now is (the same order).
    pub fn compact(&mut self, schema: &SchemaRef, live: &[At]) -> Result<Vec<At>> {
        let batch = self.gather(schema, live)?;
        self.batches.clear();
        self.source_of.clear();
        self.rows = 0;
        let index = self.push(batch);
        Ok((0..live.len() as u32)
            .map(|row| At { batch: index, row })
            .collect())
    }

    /// How many batches it holds.
    #[cfg(test)]
    fn batch_count(&self) -> usize {
        self.batches.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::array::{Int64Array, StringArray};
    use datafusion_common::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]))
    }

    fn batch(schema: &SchemaRef, ids: &[i64]) -> RecordBatch {
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    fn ids(batch: &RecordBatch) -> Vec<i64> {
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        ids.values().to_vec()
    }

    #[test]
    fn rows_are_gathered_from_their_batches_and_compacted_into_one() {
        let schema = schema();
        let mut arena = Arena::default();
        let a = arena.push(batch(&schema, &[1, 2, 3]));
        let b = arena.push(batch(&schema, &[4, 5]));
        let at = |batch, row| At { batch, row };
        let rows = [at(b, 1), at(a, 0), at(b, 0), at(a, 2)];
        assert_eq!(ids(&arena.gather(&schema, &rows).unwrap()), [5, 1, 4, 3]);
        // Gathered again, from one batch only: the map of sources was reset.
        assert_eq!(ids(&arena.gather(&schema, &[at(b, 0)]).unwrap()), [4]);
        let moved = arena.compact(&schema, &[at(a, 1), at(b, 1)]).unwrap();
        assert_eq!(arena.batch_count(), 1);
        let names = arena.gather(&schema, &moved).unwrap();
        let names = names
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(names.iter().flatten().collect::<Vec<_>>(), ["n2", "n5"]);
    }

    #[test]
    fn compaction_is_wanted_once_dead_rows_outnumber_live_ones_or_batches_are_many() {
        let schema = schema();
        let mut arena = Arena::default();
        let ids: Vec<i64> = (0..SMALL as i64 + 10).collect();
        arena.push(batch(&schema, &ids));
        assert!(!arena.wants_compaction(ids.len()));
        assert!(arena.wants_compaction(ids.len() / 3));
        let mut small = Arena::default();
        for i in 0..100 {
            small.push(batch(&schema, &[i]));
        }
        assert!(!small.wants_compaction(100 * 64));
        assert!(small.wants_compaction(100));
    }
}
