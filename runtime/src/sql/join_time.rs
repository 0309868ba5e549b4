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
    /// The rows of `batch` (side `side`) not later than the watermark in
    /// their event time, in an interval join, and the late ones if any (which
    /// pair with nothing); all of them otherwise.
    pub(super) fn split_late(
        &self,
        side: usize,
        batch: RecordBatch,
    ) -> Result<(RecordBatch, Option<RecordBatch>)> {
        let Some(event_time) = self.spec.event_time.as_ref() else {
            return Ok((batch, None));
        };
        if self.watermark == i64::MIN {
            return Ok((batch, None));
        }
        let times = millis(&evaluate(event_time[side].as_ref(), &batch)?)?;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::array::{ArrayRef, Int64Array, TimestampMillisecondArray};
    use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
    use datafusion_physical_expr::expressions::Column;
    use datafusion_physical_expr::PhysicalExpr;

    use super::*;
    use crate::data::Either;
    use crate::operator::Operator;
    use crate::sql::join::{ForgetRows, JoinSpec};
    use crate::sql::window_aggregate::WindowAggregateSpec;

    fn time() -> DataType {
        DataType::Timestamp(TimeUnit::Millisecond, None)
    }

    /// Meetings (key, time, cutoff) joined with reminders (key, time); a
    /// meeting goes once the watermark passes its cutoff, a reminder an hour
    /// after its time.
    fn meetings_and_reminders() -> RegularJoin {
        let left: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("t", time(), false),
            Field::new("cutoff", time(), false),
        ]));
        let right: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("t", time(), false),
        ]));
        let schema = Arc::new(Schema::new(
            [left.fields().to_vec(), right.fields().to_vec()].concat(),
        ));
        let column =
            |name: &str, i: usize| -> Arc<dyn PhysicalExpr> { Arc::new(Column::new(name, i)) };
        let spec = JoinSpec {
            whole_rows: [None, None],
            keys: [vec![column("k", 0)], vec![column("k", 0)]],
            converter: WindowAggregateSpec::converter(&[DataType::Int64]).unwrap(),
            inputs: [left, right],
            schema,
            filter: None,
            ttl: None,
            forget: Some([
                ForgetRows {
                    time: column("cutoff", 2),
                    after_ms: 0,
                },
                ForgetRows {
                    time: column("t", 1),
                    after_ms: 3_600_000,
                },
            ]),
            event_time: Some([column("t", 1), column("t", 1)]),
            preserved: [false, false],
        };
        RegularJoin::new(Arc::new(spec))
    }

    fn rows(join: &RegularJoin, side: usize, columns: Vec<i64>) -> Rows {
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![columns[0]]))];
        for &t in &columns[1..] {
            arrays.push(Arc::new(TimestampMillisecondArray::from(vec![t])));
        }
        Rows::inserts(RecordBatch::try_new(join.spec.inputs[side].clone(), arrays).unwrap())
    }

    /// The pairs of a left row `(k, t, cutoff)` arriving now.
    fn pairs_of_meeting(join: &mut RegularJoin, meeting: Vec<i64>) -> usize {
        let mut input = vec![Either::Left(rows(join, 0, meeting))];
        let mut output = Vec::new();
        join.process(&mut input, &mut output).unwrap();
        output.iter().map(Rows::len).sum()
    }

    #[test]
    fn a_row_is_late_by_its_event_time_not_by_when_it_is_forgotten() {
        let mut join = meetings_and_reminders();
        let mut input = vec![Either::Right(rows(&join, 1, vec![1, 1_000]))];
        join.process(&mut input, &mut Vec::new()).unwrap();
        join.on_watermark(Watermark(5_000), &mut Vec::new())
            .unwrap();
        // On time, though past its cutoff: it meets the kept reminder.
        assert_eq!(pairs_of_meeting(&mut join, vec![1, 6_000, 1_000]), 1);
        // Late, though before its cutoff: it meets nothing.
        assert_eq!(pairs_of_meeting(&mut join, vec![1, 4_000, 9_000]), 0);
    }
}
