//! What event time does to a window or an interval join: rows later than
//! the watermark pair with nothing, and a kept row is forgotten once the
//! watermark passes the last time it could pair (an outer join's unpaired
//! ones going out padded then, see [`crate::sql::outer_join`]).

use datafusion_common::arrow::array::{BooleanArray, RecordBatch};
use datafusion_common::arrow::compute::{filter_record_batch, not};

use super::{failed, RegularJoin};
use crate::data::{Batch, Watermark};
use crate::error::Result;
use crate::sql::calc::evaluate;
use crate::sql::outer_join::unmatched;
use crate::sql::rows::Rows;
use crate::sql::windows::millis;

impl RegularJoin {
    /// The rows of `batch` (side `side`) not later than the watermark, in an
    /// interval join, and the late ones if any (which pair with nothing); all
    /// of them otherwise.
    pub(super) fn split_late(
        &self,
        side: usize,
        batch: RecordBatch,
    ) -> Result<(RecordBatch, Option<RecordBatch>)> {
        let Some(forget) = self.spec.forget.as_ref().filter(|_| self.spec.drop_late) else {
            return Ok((batch, None));
        };
        if self.watermark == i64::MIN {
            return Ok((batch, None));
        }
        let times = millis(&evaluate(forget[side].time.as_ref(), &batch)?)?;
        let on_time: BooleanArray = times
            .iter()
            .map(|t| Some(t.is_some_and(|t| t >= self.watermark)))
            .collect();
        if on_time.true_count() == batch.num_rows() {
            return Ok((batch, None));
        }
        let late = not(&on_time).map_err(failed("picking late rows"))?;
        let split = |mask: &BooleanArray| {
            filter_record_batch(&batch, mask).map_err(failed("picking late rows"))
        };
        Ok((split(&on_time)?, Some(split(&late)?)))
    }

    /// The watermark after which no row of `batch` (side `side`) can pair
    /// any more, in a window or an interval join; `i64::MAX` otherwise.
    pub(super) fn until(&self, side: usize, batch: &RecordBatch) -> Result<i64> {
        let Some(forget) = self.spec.forget.as_ref().map(|f| &f[side]) else {
            return Ok(i64::MAX);
        };
        let times = millis(&evaluate(forget.time.as_ref(), batch)?)?;
        Ok(times
            .iter()
            .flatten()
            .max()
            .map_or(i64::MAX, |t| t.saturating_add(forget.after_ms)))
    }

    /// Moves the watermark to `watermark`; in a window or an interval join,
    /// forgets the rows that can pair no more, and in an outer one emits
    /// those of a preserved side that met no partner, padded.
    pub(super) fn advance(&mut self, watermark: Watermark, output: &mut Batch<Rows>) -> Result<()> {
        self.watermark = self.watermark.max(watermark.0);
        if self.spec.forget.is_none() {
            return Ok(());
        }
        for side in 0..2 {
            let mut alone = Vec::new();
            let preserved = self.spec.preserved[side];
            self.sides[side].forget_until(self.watermark, |kept| {
                if preserved {
                    alone.extend(unmatched(&kept.batch, &kept.matches)?);
                }
                Ok(())
            })?;
            for rows in alone {
                output.push(Rows::inserts(self.padded(rows.columns().to_vec(), side)?));
            }
        }
        Ok(())
    }
}
