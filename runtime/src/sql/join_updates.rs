//! An inner join of updating inputs (another `GROUP BY`'s changelog), as
//! Flink's: an inserted or updated row (`+I`, `+U`) is kept and its pairs
//! inserted (`+I`); a row taken back (`-U`, `-D`) removes one kept copy of
//! itself and deletes its pairs (`-D`), so the result is a changelog too.

use datafusion_common::arrow::array::{Int8Array, RecordBatch};

use super::{failed, RegularJoin};
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::sql::rows::{RowKind, Rows};

impl RegularJoin {
    /// Joins rows of side `side` that may be a changelog: each run of rows
    /// that add (`+I`, `+U`) is joined and kept, each run of rows taken back
    /// (`-U`, `-D`) is removed with its pairs, in order.
    pub(super) fn join_changes(
        &mut self,
        side: usize,
        rows: Rows,
        output: &mut Batch<Rows>,
    ) -> Result<()> {
        let Some(kinds) = rows.kinds.as_ref() else {
            output.extend(self.join(side, rows.batch)?);
            return Ok(());
        };
        let taken_back = |row: usize| {
            matches!(
                RowKind::from_code(kinds.value(row)),
                RowKind::UpdateBefore | RowKind::Delete
            )
        };
        let n = rows.batch.num_rows();
        let mut start = 0;
        while start < n {
            let back = taken_back(start);
            let end = (start..n).find(|&r| taken_back(r) != back).unwrap_or(n);
            let run = rows.batch.slice(start, end - start);
            output.extend(match back {
                true => self.take_back(side, run)?,
                false => self.join(side, run)?,
            });
            start = end;
        }
        Ok(())
    }

    /// Takes the rows of `batch` (side `side`) back: removes a kept copy of
    /// each and deletes (`-D`) its pairs with the other side's kept rows.
    fn take_back(&mut self, side: usize, batch: RecordBatch) -> Result<Option<Rows>> {
        let Some(whole_rows) = self.spec.whole_rows[side].clone() else {
            return Err(Error::Internal(format!(
                "join {}: an append-only input took a row back",
                self.uid
            )));
        };
        // A row with a NULL key was neither kept nor paired.
        let (batch, columns, _) = self.keyed(side, batch)?;
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let keys = self
            .spec
            .converter
            .convert_columns(&columns)
            .map_err(failed("join keys"))?;
        let whole = whole_rows
            .convert_columns(batch.columns())
            .map_err(failed("taking join rows back"))?;
        let other = 1 - side;
        let mut these: Vec<u32> = Vec::new();
        let mut those: Vec<(u64, u32)> = Vec::new();
        for row in 0..batch.num_rows() {
            let key = keys.row(row);
            self.sides[side].remove(key.as_ref(), whole.row(row).as_ref(), &whole_rows)?;
            for &pair in self.sides[other].rows_of(key.as_ref()) {
                these.push(row as u32);
                those.push(pair);
            }
        }
        if these.is_empty() {
            return Ok(None);
        }
        let (joined, _) = self.pairs(side, &batch, &these, &those)?;
        let deleted = Int8Array::from_value(RowKind::Delete as i8, joined.num_rows());
        Ok(Some(Rows {
            batch: joined,
            kinds: Some(deleted),
        }))
    }
}
