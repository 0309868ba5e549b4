//! A Kafka source's event time, per partition: each partition's watermark
//! trails the newest event time read from it by the strategy's delay, and the
//! source's watermark is the least over its partitions, so that a partition
//! that lags (or is read later) does not make the others' records late. A
//! partition with no record for the strategy's idleness holds no one back;
//! when all are idle (or the subtask reads no partition at all) the source
//! says it is idle. A partition whose bounded read has ended holds no one back.

use std::time::{Duration, Instant};

use crate::data::{EventTime, Watermark};
use crate::exec::watermarks::Progress;
use crate::operators::WatermarkStrategy;

/// How watermarks are made: the numbers of a watermark strategy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// How far records may come behind the newest one of their partition, in ms.
    pub max_delay_ms: i64,
    /// A partition with no record for this long is idle.
    pub idle_after: Option<Duration>,
    /// How often a watermark goes out at most.
    pub interval: Duration,
}

impl Pace {
    /// The pace of `strategy`.
    pub fn of<T>(strategy: &WatermarkStrategy<T>) -> Self {
        Pace {
            max_delay_ms: i64::try_from(strategy.max_delay().as_millis()).unwrap_or(i64::MAX),
            idle_after: strategy.idle_after(),
            interval: strategy.interval(),
        }
    }
}

/// One partition's event time.
#[derive(Debug, Clone)]
struct Clock {
    newest: Option<EventTime>,
    /// A record came since the last [`PartitionClocks::due`].
    fresh: bool,
    last_record: Instant,
    ended: bool,
}

/// The event time of a source subtask's partitions; see the module docs.
#[derive(Debug)]
pub(crate) struct PartitionClocks {
    pace: Pace,
    clocks: Vec<Clock>,
    emitted: Watermark,
    emitted_at: Option<Instant>,
    idle: bool,
}

impl PartitionClocks {
    /// Clocks for `partitions` partitions, none read yet.
    pub fn new(pace: Pace, partitions: usize) -> Self {
        let mut clocks = PartitionClocks {
            pace,
            clocks: Vec::new(),
            emitted: Watermark::MIN,
            emitted_at: None,
            idle: false,
        };
        for _ in 0..partitions {
            clocks.add();
        }
        clocks
    }

    /// A partition found since, at the next index.
    pub fn add(&mut self) {
        self.clocks.push(Clock {
            newest: None,
            fresh: false,
            last_record: Instant::now(),
            ended: false,
        });
    }

    /// A record of partition `index` at `time`.
    #[inline]
    pub fn observe(&mut self, index: usize, time: EventTime) {
        if let Some(clock) = self.clocks.get_mut(index) {
            clock.newest = Some(clock.newest.map_or(time, |n| n.max(time)));
            clock.fresh = true;
        }
    }

    /// Partition `index` was read to its end (a bounded read).
    pub fn end(&mut self, index: usize) {
        if let Some(clock) = self.clocks.get_mut(index) {
            clock.ended = true;
        }
    }

    /// The watermark or idleness due at `now`, if any.
    pub fn due(&mut self, now: Instant) -> Option<Progress> {
        let mut least: Option<EventTime> = None;
        let (mut active, mut held) = (0, false);
        for clock in &mut self.clocks {
            if clock.fresh {
                clock.fresh = false;
                clock.last_record = now;
            }
            let idle = self
                .pace
                .idle_after
                .is_some_and(|after| now.duration_since(clock.last_record) >= after);
            if clock.ended || idle {
                continue;
            }
            active += 1;
            // A partition that has given no record yet holds the watermark back.
            match clock.newest {
                Some(newest) => {
                    let watermark = newest.saturating_sub(self.pace.max_delay_ms) - 1;
                    least = Some(least.map_or(watermark, |l| l.min(watermark)));
                }
                None => held = true,
            }
        }
        if active == 0 {
            let all_ended = !self.clocks.is_empty() && self.clocks.iter().all(|c| c.ended);
            if self.idle || all_ended {
                return None;
            }
            self.idle = true;
            return Some(Progress::Idle);
        }
        if held {
            return None;
        }
        let watermark = Watermark(least?);
        let waited = self
            .emitted_at
            .is_none_or(|at| now.duration_since(at) >= self.pace.interval);
        if watermark <= self.emitted || !(waited || self.idle) {
            return None;
        }
        self.emitted = watermark;
        self.emitted_at = Some(now);
        self.idle = false;
        Some(Progress::Advanced(watermark))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clocks(partitions: usize, idle_after: Option<Duration>) -> PartitionClocks {
        let pace = Pace {
            max_delay_ms: 10,
            idle_after,
            interval: Duration::ZERO,
        };
        PartitionClocks::new(pace, partitions)
    }

    #[test]
    fn the_watermark_is_the_least_over_the_partitions() {
        let mut c = clocks(2, None);
        let now = Instant::now();
        c.observe(0, 1_000);
        assert_eq!(c.due(now), None, "partition 1 has given nothing yet");
        c.observe(1, 500);
        assert_eq!(c.due(now), Some(Progress::Advanced(Watermark(489))));
        c.observe(1, 2_000);
        assert_eq!(c.due(now), Some(Progress::Advanced(Watermark(989))));
        c.observe(0, 900);
        assert_eq!(c.due(now), None, "an older record moves nothing");
    }

    #[test]
    fn an_idle_partition_holds_no_one_back_and_all_idle_is_said_once() {
        let mut c = clocks(2, Some(Duration::from_secs(5)));
        let start = Instant::now();
        c.observe(0, 1_000);
        c.observe(1, 100);
        assert_eq!(c.due(start), Some(Progress::Advanced(Watermark(89))));
        let later = start + Duration::from_secs(6);
        c.observe(0, 3_000);
        assert_eq!(
            c.due(later),
            Some(Progress::Advanced(Watermark(2_989))),
            "partition 1 went quiet"
        );
        let much_later = later + Duration::from_secs(6);
        assert_eq!(c.due(much_later), Some(Progress::Idle));
        assert_eq!(c.due(much_later), None, "said once");
        c.observe(1, 4_000);
        assert_eq!(
            c.due(much_later),
            Some(Progress::Advanced(Watermark(3_989))),
            "a record wakes it"
        );
    }

    #[test]
    fn a_subtask_without_partitions_is_idle_and_ended_ones_hold_no_one_back() {
        let mut none = clocks(0, None);
        assert_eq!(none.due(Instant::now()), Some(Progress::Idle));
        let mut c = clocks(2, None);
        c.observe(0, 1_000);
        c.end(1);
        assert_eq!(
            c.due(Instant::now()),
            Some(Progress::Advanced(Watermark(989)))
        );
    }
}
