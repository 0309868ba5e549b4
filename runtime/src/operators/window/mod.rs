//! Keyed windows on event time or processing time: what windows a record falls
//! into, what is computed over them, and what comes out.
//!
//! Time windows are aligned to the Unix epoch plus an offset: a tumbling window
//! of size `s` covers `[k*s + offset, (k+1)*s + offset)`; a sliding window of
//! size `s` and slide `d` starts at every multiple of `d` (plus the offset), so a
//! record falls into `s/d` windows; a session window of gap `g` is `[t, t+g)`
//! for a record at `t`, merged with every overlapping window of its key. Count
//! windows hold `n` consecutive records of a key each. The operator that runs
//! them is [`WindowProcess`], a keyed process function whose timers and panes
//! live in the job's state backend.

mod functions;
mod process;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::data::EventTime;
use crate::error::{Error, Result};
use crate::operators::TimestampFn;

pub use functions::{Aggregate, Aggregated, AllRecords, Count, Sum, WindowFunction, WindowResult};
pub use process::{Panes, WindowProcess};

/// A window: `[start, end)` in ms since the Unix epoch (in record numbers of
/// the key for count windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    /// First instant in the window.
    pub start: EventTime,
    /// First instant after it.
    pub end: EventTime,
}

impl Window {
    /// The last instant in the window: when its event-time trigger fires.
    pub fn max_timestamp(self) -> EventTime {
        self.end.saturating_sub(1)
    }
}

/// The shape of a key's windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Back-to-back windows of `size` ms.
    Tumbling {
        /// Length of each window, ms.
        size: i64,
        /// Shift of the window starts from the epoch, ms.
        offset: i64,
    },
    /// Overlapping windows of `size` ms, one starting every `slide` ms.
    Sliding {
        /// Length of each window, ms.
        size: i64,
        /// Distance between window starts, ms; divides `size`.
        slide: i64,
        /// Shift of the window starts from the epoch, ms.
        offset: i64,
    },
    /// Windows of activity that end after `gap` ms without a record.
    Session {
        /// The gap that closes a session, ms.
        gap: i64,
    },
    /// `n` consecutive records of a key.
    Count(u64),
}

/// `d` in whole milliseconds, as event times count (saturating).
pub(crate) fn millis(d: Duration) -> EventTime {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Shape {
    /// Checks that sizes, slides, offsets and gaps are usable.
    pub fn validate(self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidJob(what));
        match self {
            Shape::Tumbling { size, offset } | Shape::Sliding { size, offset, .. }
                if size <= 0 || offset < 0 || offset >= size =>
            {
                bad(format!(
                    "window size {size} ms with offset {offset} ms: the size must be at least 1 ms and the offset below it"
                ))
            }
            Shape::Sliding { size, slide, .. } if slide <= 0 || size % slide != 0 => bad(format!(
                "window size {size} ms and slide {slide} ms: the slide must be at least 1 ms and divide the size"
            )),
            Shape::Session { gap } if gap <= 0 => {
                bad(format!("session gap {gap} ms: it must be at least 1 ms"))
            }
            Shape::Count(0) => bad("a count window of 0 records".into()),
            _ => Ok(()),
        }
    }

    /// How many windows a record falls into (before sessions merge).
    pub fn windows_per_record(self) -> u64 {
        match self {
            Shape::Sliding { size, slide, .. } => (size / slide.max(1)).max(1) as u64,
            Shape::Tumbling { .. } | Shape::Session { .. } | Shape::Count(_) => 1,
        }
    }

    /// Calls `each` with every window a record at `time` falls into (its own
    /// window for sessions, before merging).
    #[inline]
    pub fn assign(self, time: EventTime, mut each: impl FnMut(Window)) {
        match self {
            Shape::Tumbling { size, offset } => {
                let start = time - (time - offset).rem_euclid(size);
                each(Window {
                    start,
                    end: start.saturating_add(size),
                });
            }
            Shape::Sliding {
                size,
                slide,
                offset,
            } => {
                let last = time - (time - offset).rem_euclid(slide);
                let mut start = last - size + slide;
                while start <= last {
                    each(Window {
                        start,
                        end: start.saturating_add(size),
                    });
                    start += slide;
                }
            }
            Shape::Session { gap } => each(Window {
                start: time,
                end: time.saturating_add(gap),
            }),
            Shape::Count(_) => {}
        }
    }
}

/// Which clock windows follow.
pub enum WindowTime<T> {
    /// Event time: `timestamp` gives a record's, the watermark fires windows.
    Event(TimestampFn<T>),
    /// Processing time: a record belongs where the wall clock is when it arrives.
    Processing,
}

impl<T> Clone for WindowTime<T> {
    fn clone(&self) -> Self {
        match self {
            WindowTime::Event(f) => WindowTime::Event(f.clone()),
            WindowTime::Processing => WindowTime::Processing,
        }
    }
}

/// What windows a keyed stream is cut into, on which clock, and when they fire.
pub struct Windows<T> {
    pub(crate) shape: Shape,
    pub(crate) time: WindowTime<T>,
    pub(crate) lateness: i64,
    pub(crate) early_every: Option<i64>,
    pub(crate) early_every_count: Option<u64>,
}

impl<T> Clone for Windows<T> {
    fn clone(&self) -> Self {
        Windows {
            shape: self.shape,
            time: self.time.clone(),
            lateness: self.lateness,
            early_every: self.early_every,
            early_every_count: self.early_every_count,
        }
    }
}

impl<T> Windows<T> {
    fn new(shape: Shape, time: WindowTime<T>) -> Self {
        Windows {
            shape,
            time,
            lateness: 0,
            early_every: None,
            early_every_count: None,
        }
    }

    fn event(shape: Shape, timestamp: impl Fn(&T) -> EventTime + Send + Sync + 'static) -> Self {
        Windows::new(shape, WindowTime::Event(Arc::new(timestamp)))
    }

    /// Event-time tumbling windows of `size`; `timestamp` gives a record's event time.
    pub fn tumbling(
        size: Duration,
        timestamp: impl Fn(&T) -> EventTime + Send + Sync + 'static,
    ) -> Self {
        let size = millis(size);
        Windows::event(Shape::Tumbling { size, offset: 0 }, timestamp)
    }

    /// Event-time sliding windows of `size`, one starting every `slide`.
    pub fn sliding(
        size: Duration,
        slide: Duration,
        timestamp: impl Fn(&T) -> EventTime + Send + Sync + 'static,
    ) -> Self {
        let (size, slide) = (millis(size), millis(slide));
        Windows::event(
            Shape::Sliding {
                size,
                slide,
                offset: 0,
            },
            timestamp,
        )
    }

    /// Event-time session windows closed by `gap` without a record of the key.
    pub fn session(
        gap: Duration,
        timestamp: impl Fn(&T) -> EventTime + Send + Sync + 'static,
    ) -> Self {
        Windows::event(Shape::Session { gap: millis(gap) }, timestamp)
    }

    /// Processing-time tumbling windows of `size`.
    pub fn tumbling_processing_time(size: Duration) -> Self {
        let size = millis(size);
        Windows::new(Shape::Tumbling { size, offset: 0 }, WindowTime::Processing)
    }

    /// Processing-time sliding windows of `size`, one starting every `slide`.
    pub fn sliding_processing_time(size: Duration, slide: Duration) -> Self {
        let (size, slide) = (millis(size), millis(slide));
        Windows::new(
            Shape::Sliding {
                size,
                slide,
                offset: 0,
            },
            WindowTime::Processing,
        )
    }

    /// Processing-time session windows closed by `gap` without a record of the key.
    pub fn session_processing_time(gap: Duration) -> Self {
        Windows::new(Shape::Session { gap: millis(gap) }, WindowTime::Processing)
    }

    /// Windows of `n` consecutive records of a key (a window fires when full;
    /// one still filling at the end of input does not fire, as in Flink).
    pub fn count(n: u64) -> Self {
        Windows::new(Shape::Count(n), WindowTime::Processing)
    }

    /// Shifts tumbling and sliding windows from the epoch by `offset` (a time
    /// zone, say: windows of a day from 02:00).
    pub fn with_offset(mut self, offset: Duration) -> Self {
        match &mut self.shape {
            Shape::Tumbling { offset: o, .. } | Shape::Sliding { offset: o, .. } => {
                *o = millis(offset)
            }
            Shape::Session { .. } | Shape::Count(_) => {}
        }
        self
    }

    /// Keeps event-time windows for `lateness` after they fired: a record that
    /// arrives late by at most that much updates its window, which fires again
    /// (a late firing). Later records are dropped, or go to the late output.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = millis(lateness);
        self
    }

    /// Event-time windows also fire early, every `interval` of processing time,
    /// with what they hold so far.
    pub fn early_every(mut self, interval: Duration) -> Self {
        self.early_every = Some(millis(interval).max(1));
        self
    }

    /// Windows also fire early every `n` records (a count trigger).
    pub fn early_every_count(mut self, n: u64) -> Self {
        self.early_every_count = Some(n.max(1));
        self
    }

    /// Checks the settings together.
    pub fn validate(&self) -> Result<()> {
        self.shape.validate()?;
        if self.lateness < 0 {
            return Err(Error::InvalidJob("a negative allowed lateness".into()));
        }
        let processing = matches!(self.time, WindowTime::Processing);
        if processing && (self.lateness > 0 || self.early_every.is_some()) {
            return Err(Error::InvalidJob(
                "allowed lateness and early firings on processing time are for event-time windows only".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(shape: Shape, time: EventTime) -> Vec<(i64, i64)> {
        let mut all = Vec::new();
        shape.assign(time, |w| all.push((w.start, w.end)));
        all
    }

    #[test]
    fn records_fall_into_epoch_aligned_windows_with_offsets() {
        let tumbling = Shape::Tumbling {
            size: 10,
            offset: 0,
        };
        assert_eq!(windows(tumbling, 25), vec![(20, 30)]);
        assert_eq!(windows(tumbling, -1), vec![(-10, 0)]);
        let shifted = Shape::Tumbling {
            size: 10,
            offset: 3,
        };
        assert_eq!(windows(shifted, 25), vec![(23, 33)]);
        assert_eq!(windows(shifted, 22), vec![(13, 23)]);
        let sliding = Shape::Sliding {
            size: 10,
            slide: 5,
            offset: 0,
        };
        assert_eq!(windows(sliding, 12), vec![(5, 15), (10, 20)]);
        assert_eq!(windows(Shape::Session { gap: 4 }, 7), vec![(7, 11)]);
    }

    #[test]
    fn unusable_shapes_are_refused_with_the_reason() {
        let bad = [
            Shape::Tumbling { size: 0, offset: 0 },
            Shape::Tumbling {
                size: 10,
                offset: 10,
            },
            Shape::Sliding {
                size: 10,
                slide: 3,
                offset: 0,
            },
            Shape::Session { gap: 0 },
            Shape::Count(0),
        ];
        for shape in bad {
            let error = shape.validate().unwrap_err().to_string();
            assert!(error.contains("ms") || error.contains("count"), "{error}");
        }
        let processing_lateness: Windows<u64> =
            Windows::tumbling_processing_time(Duration::from_secs(1))
                .allowed_lateness(Duration::from_secs(1));
        assert!(processing_lateness.validate().is_err());
    }
}
