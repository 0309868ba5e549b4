//! How SQL aggregates checkpoint their heap state: one Arrow IPC blob per
//! key group, holding that group's rows of the operator's state batch, and
//! the same blobs read back and checked against the state the query keeps.

use datafusion_common::arrow::array::{Array, RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::compute::interleave;
use datafusion_common::arrow::datatypes::{DataType, SchemaRef};
use datafusion_common::arrow::error::ArrowError;

use crate::error::{Error, Result};
use crate::keys::KeyGroup;
use crate::sql::rows::Rows;

/// The rows of `state` by key group (`key_groups`, one per row), each
/// group's as one encoded blob, in group order.
pub fn encode_by_key_group(
    state: &RecordBatch,
    key_groups: &[u32],
) -> Result<Vec<(KeyGroup, Vec<u8>)>> {
    let rows: Vec<KeptRow> = key_groups
        .iter()
        .enumerate()
        .map(|(row, &group)| KeptRow {
            batch: 0,
            row: row as u32,
            group,
        })
        .collect();
    encode_rows_by_key_group(std::slice::from_ref(state), &rows)
}

/// A row to checkpoint: which batch, which row of it, its key group.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeptRow {
    /// The batch's index.
    pub batch: u32,
    /// The row's index in the batch.
    pub row: u32,
    /// The row's key group.
    pub group: u32,
}

/// The rows `rows` of `batches` (which share a schema) by key group, each
/// group's as one encoded blob, in group order, each group's rows in the
/// order `rows` lists them. The rows are gathered once, in group order, and
/// each group's slice of them encoded.
pub fn encode_rows_by_key_group(
    batches: &[RecordBatch],
    rows: &[KeptRow],
) -> Result<Vec<(KeyGroup, Vec<u8>)>> {
    let failed = |e: ArrowError| Error::Sql(format!("saving state: {e}"));
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    // A counting sort by group: each group's rows, in their given order.
    let groups = rows.iter().map(|r| r.group as usize + 1).max().unwrap_or(0);
    let mut starts = vec![0usize; groups + 1];
    for row in rows {
        starts[row.group as usize + 1] += 1;
    }
    for g in 1..starts.len() {
        starts[g] += starts[g - 1];
    }
    let mut next = starts.clone();
    let mut sorted = vec![(0usize, 0usize); rows.len()];
    for row in rows {
        let at = &mut next[row.group as usize];
        sorted[*at] = (row.batch as usize, row.row as usize);
        *at += 1;
    }
    // Rows given in group order, all of one batch, need no gathering.
    let in_place = batches.len() == 1
        && sorted.len() == first.num_rows()
        && sorted
            .iter()
            .enumerate()
            .all(|(i, &(batch, row))| batch == 0 && row == i);
    let all = if in_place {
        first.clone()
    } else {
        let schema = first.schema();
        let columns = (0..schema.fields().len())
            .map(|c| {
                let sources: Vec<&dyn Array> =
                    batches.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&sources, &sorted)
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(failed)?;
        let options = RecordBatchOptions::new().with_row_count(Some(sorted.len()));
        RecordBatch::try_new_with_options(schema, columns, &options).map_err(failed)?
    };
    let mut keyed = Vec::new();
    for group in 0..groups {
        let (start, end) = (starts[group], starts[group + 1]);
        if start < end {
            let part = all.slice(start, end - start);
            keyed.push((KeyGroup(group as u32), Rows::inserts(part).encode()?));
        }
    }
    Ok(keyed)
}

/// Key group `group`'s blob of operator `uid`, which must hold rows of
/// `schema`'s types (the state this query keeps).
pub fn decode_key_group(
    uid: &str,
    group: KeyGroup,
    bytes: &[u8],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let bad = |reason: String| Error::State {
        uid: uid.to_string(),
        reason,
    };
    let batch = Rows::decode(bytes).map_err(|e| bad(e.to_string()))?.batch;
    let types = |s: &SchemaRef| -> Vec<DataType> {
        s.fields().iter().map(|f| f.data_type().clone()).collect()
    };
    let (expected, found) = (types(schema), types(batch.schema_ref()));
    if expected != found {
        return Err(bad(format!(
            "key group {}: the saved state does not fit this query's ({} columns of state, {} expected)",
            group.0,
            found.len(),
            expected.len()
        )));
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::array::{Int64Array, StringArray};
    use datafusion_common::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(schema: &SchemaRef, ids: &[i64], names: &[&str]) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_of_several_batches_are_saved_by_group_in_their_given_order() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let batches = [
            batch(&schema, &[1, 2, 3], &["a", "b", "c"]),
            batch(&schema, &[4, 5], &["d", "e"]),
        ];
        // Row 2 of the first batch is left out (a row taken back).
        let kept = |batch, row, group| KeptRow { batch, row, group };
        let rows = [kept(1, 1, 7), kept(0, 0, 3), kept(1, 0, 3), kept(0, 1, 7)];
        let blobs = encode_rows_by_key_group(&batches, &rows).unwrap();
        let groups: Vec<u32> = blobs.iter().map(|(g, _)| g.0).collect();
        assert_eq!(groups, [3, 7]);
        let ids = |blob: &[u8]| -> Vec<i64> {
            let saved = decode_key_group("op", KeyGroup(0), blob, &schema).unwrap();
            let ids = saved
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            ids.values().to_vec()
        };
        assert_eq!(ids(&blobs[0].1), [1, 4]);
        assert_eq!(ids(&blobs[1].1), [5, 2]);
        let saved = decode_key_group("op", KeyGroup(7), &blobs[1].1, &schema).unwrap();
        let names = saved
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(names.iter().flatten().collect::<Vec<_>>(), ["e", "b"]);
        let single = encode_by_key_group(&batches[0], &[2, 0, 2]).unwrap();
        assert_eq!(ids(&single[0].1), [2]);
        assert_eq!(ids(&single[1].1), [1, 3]);
        // Already in group order: saved as it is, sliced.
        let in_order = encode_by_key_group(&batches[0], &[0, 2, 2]).unwrap();
        assert_eq!(ids(&in_order[0].1), [1]);
        assert_eq!(ids(&in_order[1].1), [2, 3]);
        assert!(encode_rows_by_key_group(&[], &[]).unwrap().is_empty());
    }

    #[test]
    fn a_blob_of_other_types_is_refused_naming_the_operator() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let blobs = encode_by_key_group(&batch(&schema, &[1], &["a"]), &[0]).unwrap();
        let other: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let err = decode_key_group("join-1", KeyGroup(0), &blobs[0].1, &other).unwrap_err();
        assert!(err.to_string().contains("join-1"), "{err}");
    }
}
