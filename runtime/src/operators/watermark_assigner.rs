//! Watermarks from the records' event times: bounded out-of-orderness, with
//! idleness, as Flink's `WatermarkStrategy.forBoundedOutOfOrderness`.
//!
//! The assigner passes records through and tracks the largest event time it has
//! seen; every `interval` it emits the watermark `largest - max_delay - 1` (a
//! record up to `max_delay` older than the newest one is still on time). With
//! `idle_after`, a subtask that saw no record for that long says it is idle, so
//! that it does not hold back the event time of the tasks it feeds. Watermarks of
//! upstream pass no further than it: its own replace them (the final one of the
//! input, [`Watermark::MAX`], excepted).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::data::{Batch, Data, EventTime, Watermark};
use crate::error::Result;
use crate::exec::watermarks::Progress;
use crate::operator::Operator;

/// A record's event time.
pub type TimestampFn<T> = Arc<dyn Fn(&T) -> EventTime + Send + Sync>;

/// How watermarks are made from a stream's event times.
pub struct WatermarkStrategy<T> {
    timestamp: TimestampFn<T>,
    max_delay: Duration,
    idle_after: Option<Duration>,
    interval: Duration,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            timestamp: self.timestamp.clone(),
            max_delay: self.max_delay,
            idle_after: self.idle_after,
            interval: self.interval,
        }
    }
}

impl<T> WatermarkStrategy<T> {
    /// Records arrive at most `max_delay` behind the newest one seen;
    /// `timestamp` gives a record's event time (ms since the Unix epoch).
    pub fn bounded_out_of_orderness(
        max_delay: Duration,
        timestamp: impl Fn(&T) -> EventTime + Send + Sync + 'static,
    ) -> Self {
        WatermarkStrategy {
            timestamp: Arc::new(timestamp),
            max_delay,
            idle_after: None,
            interval: Duration::from_millis(200),
        }
    }

    /// A subtask with no record for `after` is idle (it holds no one back).
    pub fn with_idleness(mut self, after: Duration) -> Self {
        self.idle_after = Some(after);
        self
    }

    /// How often a watermark goes out at most (default 200 ms, Flink's; zero:
    /// after every batch that advances it).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

impl<T> WatermarkStrategy<T> {
    /// A record's event time.
    #[inline]
    pub fn event_time(&self, record: &T) -> EventTime {
        (self.timestamp)(record)
    }

    /// How far records may come behind the newest one.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// After how long without records a subtask (or a split) is idle.
    pub fn idle_after(&self) -> Option<Duration> {
        self.idle_after
    }

    /// How often a watermark goes out at most.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// The operator of a [`WatermarkStrategy`].
pub struct WatermarkAssigner<T> {
    strategy: WatermarkStrategy<T>,
    newest: Option<EventTime>,
    emitted: Watermark,
    last_emit: Option<Instant>,
    last_record: Instant,
    idle: bool,
}

impl<T> WatermarkAssigner<T> {
    /// An assigner for `strategy`.
    pub fn new(strategy: WatermarkStrategy<T>) -> Self {
        WatermarkAssigner {
            strategy,
            newest: None,
            emitted: Watermark::MIN,
            last_emit: None,
            last_record: Instant::now(),
            idle: false,
        }
    }

    fn due(&self) -> Option<Watermark> {
        let newest = self.newest?;
        let delay = i64::try_from(self.strategy.max_delay.as_millis()).unwrap_or(i64::MAX);
        let watermark = Watermark(newest.saturating_sub(delay).saturating_sub(1));
        (watermark > self.emitted).then_some(watermark)
    }
}

impl<T: Data> Operator for WatermarkAssigner<T> {
    type In = T;
    type Out = T;

    const FORWARDS_WATERMARKS: bool = false;

    fn process(&mut self, input: &mut Batch<T>, output: &mut Batch<T>) -> Result<()> {
        if !input.is_empty() {
            let timestamp = &self.strategy.timestamp;
            let newest = input.iter().map(|r| timestamp(r)).max();
            self.newest = self.newest.max(newest);
            self.last_record = Instant::now();
        }
        output.append(input);
        Ok(())
    }

    fn progress_due(&mut self) -> Option<Progress> {
        let now = Instant::now();
        if let Some(watermark) = self.due() {
            let waited = self
                .last_emit
                .is_none_or(|t| now.duration_since(t) >= self.strategy.interval);
            if waited || self.idle {
                self.emitted = watermark;
                self.last_emit = Some(now);
                self.idle = false;
                return Some(Progress::Advanced(watermark));
            }
        }
        let quiet = self
            .strategy
            .idle_after
            .is_some_and(|after| now.duration_since(self.last_record) >= after);
        if quiet && !self.idle {
            self.idle = true;
            return Some(Progress::Idle);
        }
        None
    }

    fn next_wakeup(&self) -> Option<Instant> {
        // When a held-back watermark is due, and when the subtask turns idle.
        let pending = self
            .due()
            .and(self.last_emit)
            .map(|t| t + self.strategy.interval);
        let idle = self
            .strategy
            .idle_after
            .filter(|_| !self.idle)
            .map(|after| self.last_record + after);
        match (pending, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigner(interval: Duration, idle: Option<Duration>) -> WatermarkAssigner<i64> {
        let mut strategy =
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(10), |t: &i64| *t)
                .with_interval(interval);
        if let Some(after) = idle {
            strategy = strategy.with_idleness(after);
        }
        WatermarkAssigner::new(strategy)
    }

    #[test]
    fn the_watermark_trails_the_newest_event_time_by_the_delay() {
        let mut a = assigner(Duration::ZERO, None);
        assert_eq!(a.progress_due(), None, "nothing seen, nothing to say");
        let mut out = Vec::new();
        a.process(&mut vec![100, 130, 120], &mut out).unwrap();
        assert_eq!(out, [100, 130, 120], "records pass unchanged");
        assert_eq!(a.progress_due(), Some(Progress::Advanced(Watermark(119))));
        a.process(&mut vec![110], &mut out).unwrap();
        assert_eq!(a.progress_due(), None, "an older record does not move it");
        a.process(&mut vec![200], &mut out).unwrap();
        assert_eq!(a.progress_due(), Some(Progress::Advanced(Watermark(189))));
    }

    #[test]
    fn watermarks_go_out_at_most_once_an_interval() {
        let mut a = assigner(Duration::from_secs(3600), None);
        a.process(&mut vec![100], &mut Vec::new()).unwrap();
        assert_eq!(a.progress_due(), Some(Progress::Advanced(Watermark(89))));
        a.process(&mut vec![500], &mut Vec::new()).unwrap();
        assert_eq!(a.progress_due(), None, "held until the interval passed");
        assert!(a.next_wakeup().is_some(), "and woken for then");
    }

    #[test]
    fn a_subtask_without_records_turns_idle_and_back() {
        let mut a = assigner(Duration::ZERO, Some(Duration::ZERO));
        a.process(&mut vec![100], &mut Vec::new()).unwrap();
        assert_eq!(a.progress_due(), Some(Progress::Advanced(Watermark(89))));
        assert_eq!(a.progress_due(), Some(Progress::Idle));
        assert_eq!(a.progress_due(), None, "said once");
        a.process(&mut vec![300], &mut Vec::new()).unwrap();
        assert_eq!(a.progress_due(), Some(Progress::Advanced(Watermark(289))));
    }
}
