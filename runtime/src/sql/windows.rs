//! Window assignment for the window table functions: which windows a row's
//! time falls in (Flink's arithmetic, offsets included), and the operator
//! that adds `window_start`, `window_end` and `window_time` to each row, once
//! per window (a `HOP` row is in `size / slide` windows). Session windows
//! and windows on processing time are assigned by their aggregate instead:
//! rows pass through once, their window columns holding their own time.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion_common::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, PrimitiveArray, RecordBatch, RecordBatchOptions,
    UInt32Array,
};
use datafusion_common::arrow::compute::{cast, take_record_batch};
use datafusion_common::arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};

use crate::data::Batch;
use crate::error::{Error, Result};
use crate::operator::Operator;
use crate::sql::rows::Rows;
use crate::sql::window_tvf::WindowKind;
use crate::state::RestoredState;

/// How rows fall into windows, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigner {
    /// `TUMBLE`.
    Tumble {
        /// Window length.
        size: i64,
        /// Shift of window starts from the epoch.
        offset: i64,
    },
    /// `HOP`.
    Hop {
        /// Distance between window starts.
        slide: i64,
        /// Window length.
        size: i64,
        /// Shift of window starts from the epoch.
        offset: i64,
    },
    /// `CUMULATE`.
    Cumulate {
        /// Growth step.
        step: i64,
        /// The period the windows grow over.
        size: i64,
        /// Shift of window starts from the epoch.
        offset: i64,
    },
}

impl Assigner {
    /// The assigner of `kind` shifted by `offset` ms; `SESSION` windows are
    /// not assigned per row.
    pub fn new(kind: &WindowKind, offset: i64) -> Result<Self> {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Ok(match kind {
            WindowKind::Tumble { size_ms } => Assigner::Tumble {
                size: ms(*size_ms),
                offset,
            },
            WindowKind::Hop { slide_ms, size_ms } => Assigner::Hop {
                slide: ms(*slide_ms),
                size: ms(*size_ms),
                offset,
            },
            WindowKind::Cumulate { step_ms, size_ms } => Assigner::Cumulate {
                step: ms(*step_ms),
                size: ms(*size_ms),
                offset,
            },
            WindowKind::Session { .. } => {
                return Err(Error::Internal(
                    "SESSION windows are assigned by their aggregate, not per row".into(),
                ))
            }
        })
    }

    /// Calls `window(start, end)` for each window time `t` falls in, oldest first.
    #[inline]
    pub fn assign(&self, t: i64, mut window: impl FnMut(i64, i64)) {
        match *self {
            Assigner::Tumble { size, offset } => {
                let start = start_of(t, size, offset);
                window(start, start + size);
            }
            Assigner::Hop {
                slide,
                size,
                offset,
            } => {
                let last = start_of(t, slide, offset);
                let mut start = last - (size - slide).max(0) / slide * slide;
                while start <= last {
                    if t < start + size {
                        window(start, start + size);
                    }
                    start += slide;
                }
            }
            Assigner::Cumulate { step, size, offset } => {
                let start = start_of(t, size, offset);
                let mut end = start_of(t, step, offset) + step;
                while end <= start + size {
                    window(start, end);
                    end += step;
                }
            }
        }
    }
}

/// The start of the window of length `size` (shifted by `offset`) holding `t`.
#[inline]
fn start_of(t: i64, size: i64, offset: i64) -> i64 {
    t - (t - offset).rem_euclid(size)
}

/// A time column as milliseconds since the epoch.
pub fn millis(array: &ArrayRef) -> Result<Int64Array> {
    let factor = match array.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => 1,
        DataType::Timestamp(TimeUnit::Second, _) => -1000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1000,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 1_000_000,
        other => {
            return Err(Error::Sql(format!(
                "a time attribute of type {other} is not a timestamp"
            )))
        }
    };
    let raw =
        cast(array, &DataType::Int64).map_err(|e| Error::Sql(format!("reading time: {e}")))?;
    let raw = raw.as_primitive::<Int64Type>();
    Ok(match factor {
        1 => raw.clone(),
        -1000 => raw.unary(|v| v.saturating_mul(1000)),
        f => raw.unary(|v| v.div_euclid(f)),
    })
}

/// Milliseconds as a time column of `data_type`'s unit and zone.
pub fn time_column(values: Vec<i64>, data_type: &DataType) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, _) = data_type else {
        return Err(Error::Sql(format!("window columns of type {data_type}")));
    };
    let scaled: PrimitiveArray<Int64Type> = match unit {
        TimeUnit::Millisecond => values.into(),
        TimeUnit::Second => values.into_iter().map(|v| v.div_euclid(1000)).collect(),
        TimeUnit::Microsecond => values.into_iter().map(|v| v * 1000).collect(),
        TimeUnit::Nanosecond => values.into_iter().map(|v| v * 1_000_000).collect(),
    };
    cast(&(Arc::new(scaled) as ArrayRef), data_type)
        .map_err(|e| Error::Sql(format!("window columns: {e}")))
}

/// Now, in milliseconds since the epoch: the processing time.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Adds the window columns to each row, once per window it is in; or, where
/// the aggregate assigns windows (`None`), once, holding the row's time.
pub struct AssignWindows {
    assigner: Option<Assigner>,
    /// The time attribute's column in the input.
    time: usize,
    /// The input's columns and the three window columns.
    schema: SchemaRef,
}

impl AssignWindows {
    /// Windows of `assigner` (or none: see [`AssignWindows`]) over the
    /// input's column `time`, emitting rows of `schema`.
    pub fn new(assigner: Option<Assigner>, time: usize, schema: SchemaRef) -> Self {
        AssignWindows {
            assigner,
            time,
            schema,
        }
    }

    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let times = millis(batch.column(self.time))?;
        let (mut rows, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        for (row, t) in times.values().iter().enumerate() {
            if times.is_null(row) {
                continue;
            }
            match &self.assigner {
                Some(assigner) => assigner.assign(*t, |start, end| {
                    rows.push(row as u32);
                    starts.push(start);
                    ends.push(end);
                }),
                None => {
                    rows.push(row as u32);
                    starts.push(*t);
                    ends.push(*t + 1);
                }
            }
        }
        let taken = take_record_batch(batch, &UInt32Array::from(rows))
            .map_err(|e| Error::Sql(format!("assigning windows: {e}")))?;
        let window_type = self
            .schema
            .field(self.schema.fields().len() - 1)
            .data_type();
        let times: Vec<i64> = ends.iter().map(|e| e - 1).collect();
        let mut columns = taken.columns().to_vec();
        columns.push(time_column(starts, window_type)?);
        columns.push(time_column(ends, window_type)?);
        columns.push(time_column(times, window_type)?);
        let options = RecordBatchOptions::new().with_row_count(Some(taken.num_rows()));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| Error::Sql(format!("assigning windows: {e}")))
    }
}

impl Operator for AssignWindows {
    type In = Rows;
    type Out = Rows;

    fn process(&mut self, input: &mut Batch<Rows>, output: &mut Batch<Rows>) -> Result<()> {
        for rows in input.drain(..) {
            let batch = rows.batch;
            let windowed = self.apply(&batch)?;
            if windowed.num_rows() > 0 {
                output.push(Rows::inserts(windowed));
            }
        }
        Ok(())
    }
}

/// The watermark a window operator saved (each subtask its own, 8 bytes
/// little-endian, as operator state; the least of all when rescaled, as union
/// state); `i64::MIN` when none was saved, `None` when one is damaged.
pub fn restored_watermark(restored: &RestoredState) -> Option<i64> {
    let saved: Vec<&[u8]> = match (&restored.operator_state, &restored.union) {
        (Some(state), _) => vec![state.as_slice()],
        (None, Some(union)) => union.states.iter().map(|(_, s)| s.as_slice()).collect(),
        (None, None) => Vec::new(),
    };
    let mut least = i64::MAX;
    for bytes in &saved {
        least = least.min(i64::from_le_bytes((*bytes).try_into().ok()?));
    }
    Some(if saved.is_empty() { i64::MIN } else { least })
}

/// Says how many rows an event-time operator dropped as late since it last
/// said so (a row for a window that had already fired, as Flink drops them).
pub fn report_late(uid: &str, rows: u64) {
    if rows > 0 {
        tracing::warn!(
            operator = uid,
            rows,
            "dropped rows later than the watermark: their windows had already fired; a longer WATERMARK delay keeps them"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(assigner: Assigner, t: i64) -> Vec<(i64, i64)> {
        let mut all = Vec::new();
        assigner.assign(t, |s, e| all.push((s, e)));
        all
    }

    #[test]
    fn rows_fall_in_flinks_windows() {
        let tumble = Assigner::Tumble {
            size: 10,
            offset: 0,
        };
        assert_eq!(windows(tumble, 0), [(0, 10)]);
        assert_eq!(windows(tumble, -1), [(-10, 0)]);
        let shifted = Assigner::Tumble {
            size: 10,
            offset: 3,
        };
        assert_eq!(windows(shifted, 12), [(3, 13)]);
        assert_eq!(windows(shifted, 2), [(-7, 3)]);
        let hop = Assigner::Hop {
            slide: 2,
            size: 10,
            offset: 0,
        };
        assert_eq!(
            windows(hop, 11),
            [(2, 12), (4, 14), (6, 16), (8, 18), (10, 20)]
        );
        let cumulate = Assigner::Cumulate {
            step: 2,
            size: 10,
            offset: 0,
        };
        assert_eq!(
            windows(cumulate, 13),
            [(10, 14), (10, 16), (10, 18), (10, 20)]
        );
        assert_eq!(windows(cumulate, 19), [(10, 20)]);
    }
}
