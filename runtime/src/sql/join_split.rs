//! How a join's two inputs reach it: one keyed stream of [`Either`] records,
//! each side's rows split by the key groups of that side's own key
//! expressions, so that a key's rows of both sides meet in one subtask.

use std::sync::Arc;

use datafusion_physical_expr::PhysicalExpr;

use crate::data::Either;
use crate::error::Result;
use crate::exec::exchange::RowSplitter;
use crate::sql::key_groups::KeySplitter;
use crate::sql::rows::Rows;

/// Splits the rows of either side by the key groups of that side's keys.
pub struct SideSplitter {
    sides: [KeySplitter; 2],
}

impl SideSplitter {
    /// A splitter keying each side's rows by its own key expressions.
    pub fn new(keys: [Vec<Arc<dyn PhysicalExpr>>; 2]) -> Self {
        let [left, right] = keys;
        SideSplitter {
            sides: [KeySplitter::new(left), KeySplitter::new(right)],
        }
    }
}

impl RowSplitter<Either<Rows, Rows>> for SideSplitter {
    fn split(
        &self,
        record: Either<Rows, Rows>,
        owners: &[u32],
        parts: &mut Vec<(usize, Either<Rows, Rows>)>,
    ) -> Result<()> {
        let mut split = Vec::new();
        match record {
            Either::Left(rows) => {
                self.sides[0].split(rows, owners, &mut split)?;
                parts.extend(split.into_iter().map(|(c, r)| (c, Either::Left(r))));
            }
            Either::Right(rows) => {
                self.sides[1].split(rows, owners, &mut split)?;
                parts.extend(split.into_iter().map(|(c, r)| (c, Either::Right(r))));
            }
        }
        Ok(())
    }
}

/// How much of a buffer a record of either side fills: its rows.
pub fn either_weight(record: &Either<Rows, Rows>) -> usize {
    match record {
        Either::Left(rows) | Either::Right(rows) => rows.len(),
    }
}
