//! What an outer join adds to the regular join's pairs, as Flink's streaming
//! outer joins: a row of a preserved side (the left of a `LEFT JOIN`, both of
//! a `FULL JOIN`) that pairs with nothing goes out padded with NULLs for the
//! other side.
//!
//! - A regular outer join pads a row on arrival; when its first partner
//!   arrives later, that padded row is deleted (`-D`) before the pair is
//!   inserted. The result is a changelog.
//! - An outer join bounded by event time (a window or an interval join) pads
//!   a row once the watermark has passed the last time it could pair
//!   ([`unmatched`]), if it met no partner by then; a row that arrives later
//!   than the watermark pairs with nothing and is padded at once. Nothing is
//!   taken back: the result only appends, as Flink's.

use datafusion_common::arrow::array::{
    new_null_array, ArrayRef, Int8Array, RecordBatch, UInt32Array,
};
use datafusion_common::arrow::compute::{concat_batches, take_record_batch};
use datafusion_common::arrow::datatypes::SchemaRef;

use crate::error::{Error, Result};
use crate::sql::rows::{RowKind, Rows};

/// `columns` of a row of side `side` (0 left, 1 right) padded with NULLs
/// for the other side's `other_fields` columns, as rows of `schema`.
pub fn padded(
    columns: Vec<ArrayRef>,
    side: usize,
    other_fields: usize,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let rows = columns.first().map_or(0, |c| c.len());
    let width = columns.len();
    let nulls = |from: usize| -> Vec<ArrayRef> {
        (from..from + other_fields)
            .map(|i| new_null_array(schema.field(i).data_type(), rows))
            .collect()
    };
    let all = match side {
        0 => [columns, nulls(width)].concat(),
        _ => [nulls(0), columns].concat(),
    };
    RecordBatch::try_new(schema.clone(), all)
        .map_err(|e| Error::Sql(format!("padding an outer join's row with NULLs: {e}")))
}

/// The rows of `batch` that met no partner (`matches`, one count per row),
/// or `None` when every one did.
pub fn unmatched(batch: &RecordBatch, matches: &[u32]) -> Result<Option<RecordBatch>> {
    let alone: Vec<u32> = (0..batch.num_rows() as u32)
        .filter(|&row| matches.get(row as usize).is_none_or(|&m| m == 0))
        .collect();
    if alone.is_empty() {
        return Ok(None);
    }
    take_record_batch(batch, &UInt32Array::from(alone))
        .map(Some)
        .map_err(|e| Error::Sql(format!("padding an outer join's rows: {e}")))
}

/// A join's output for one input batch, in order: each part with its kind.
#[derive(Default)]
pub struct Changes {
    parts: Vec<(RecordBatch, RowKind)>,
}

impl Changes {
    /// Appends `batch`'s rows, all of kind `kind` (empty ones are skipped).
    pub fn push(&mut self, batch: RecordBatch, kind: RowKind) {
        if batch.num_rows() > 0 {
            self.parts.push((batch, kind));
        }
    }

    /// The rows pushed, as inserts when every one is (an inner join's), else
    /// as a changelog; `None` when there are none.
    pub fn finish(self, schema: &SchemaRef) -> Result<Option<Rows>> {
        let all_inserts = self.parts.iter().all(|(_, kind)| *kind == RowKind::Insert);
        if self.parts.len() <= 1 && all_inserts {
            return Ok(self
                .parts
                .into_iter()
                .next()
                .map(|(batch, _)| Rows::inserts(batch)));
        }
        let failed = |e| Error::Sql(format!("joining: {e}"));
        let batches: Vec<&RecordBatch> = self.parts.iter().map(|(b, _)| b).collect();
        let batch = concat_batches(schema, batches).map_err(failed)?;
        let kinds: Int8Array = self
            .parts
            .iter()
            .flat_map(|(b, kind)| std::iter::repeat_n(*kind as i8, b.num_rows()))
            .collect();
        Ok(Some(Rows {
            batch,
            kinds: (!all_inserts).then_some(kinds),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::array::{Array, Int64Array};
    use datafusion_common::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]))
    }

    #[test]
    fn a_right_row_is_padded_on_the_left_and_kinds_follow_the_parts() {
        let right: ArrayRef = Arc::new(Int64Array::from(vec![7]));
        let batch = padded(vec![right], 1, 1, &schema()).unwrap();
        assert!(batch.column(0).is_null(0));
        let mut changes = Changes::default();
        changes.push(batch.clone(), RowKind::Delete);
        changes.push(batch, RowKind::Insert);
        let rows = changes.finish(&schema()).unwrap().unwrap();
        assert_eq!(
            (rows.kind(0), rows.kind(1)),
            (RowKind::Delete, RowKind::Insert)
        );
        assert!(Changes::default().finish(&schema()).unwrap().is_none());
    }

    #[test]
    fn rows_that_met_no_partner_are_picked_in_order() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3, 4]));
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)])),
            vec![a],
        )
        .unwrap();
        let alone = unmatched(&batch, &[0, 2, 0, 1]).unwrap().unwrap();
        let values = alone
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(values.values(), &[1, 3]);
        assert!(unmatched(&batch, &[1, 1, 1, 1]).unwrap().is_none());
    }
}
