//! What an outer join adds to the regular join's pairs, as Flink's streaming
//! outer join: a row of a preserved side (the left of a `LEFT JOIN`, both of
//! a `FULL JOIN`) that pairs with nothing goes out padded with NULLs for the
//! other side; when its first partner arrives later, that padded row is
//! deleted (`-D`) before the pair is inserted. The result is a changelog.

use datafusion_common::arrow::array::{new_null_array, ArrayRef, Int8Array, RecordBatch};
use datafusion_common::arrow::compute::concat_batches;
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
}
