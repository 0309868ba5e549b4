//! The event time of a task with several input channels, as a pure state machine.
//!
//! A task's watermark is the minimum of its channels' watermarks, leaving out
//! channels that ended (their watermark is past everything) and channels that
//! said they are idle (so a source split with no data does not hold the job's
//! event time back). It only grows: a channel that comes back from idle behind
//! the task's watermark counts again once it has caught up, as Flink's valve
//! does. When every channel that has not ended is idle, the task is idle; when
//! every channel ended, its watermark is [`Watermark::MAX`].

use crate::data::Watermark;

/// What a channel says about event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelTime {
    /// Its watermark so far; counted once it is not behind the task's.
    Active(Watermark),
    /// Idle since it reached this watermark.
    Idle(Watermark),
    /// It ended.
    Ended,
}

/// What the task tells its operators after a channel's news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Event time advanced to this watermark.
    Advanced(Watermark),
    /// Every input that has not ended is idle.
    Idle,
}

/// Tracks the watermark of a task over its input channels.
#[derive(Debug)]
pub struct WatermarkTracker {
    channels: Vec<ChannelTime>,
    /// The last watermark passed on.
    current: Watermark,
    idle: bool,
}

impl WatermarkTracker {
    /// A tracker for `channels` channels, all at [`Watermark::MIN`].
    pub fn new(channels: usize) -> Self {
        WatermarkTracker {
            channels: vec![ChannelTime::Active(Watermark::MIN); channels],
            current: Watermark::MIN,
            idle: false,
        }
    }

    /// The task's watermark so far.
    pub fn current(&self) -> Watermark {
        self.current
    }

    /// Channel `channel` sent `watermark` (an older one than it sent before changes nothing).
    pub fn on_watermark(&mut self, channel: usize, watermark: Watermark) -> Option<Progress> {
        let known = match self.channels[channel] {
            ChannelTime::Active(w) | ChannelTime::Idle(w) => w,
            ChannelTime::Ended => return None,
        };
        self.channels[channel] = ChannelTime::Active(known.max(watermark));
        self.progress()
    }

    /// Channel `channel` is idle until its next watermark.
    pub fn on_idle(&mut self, channel: usize) -> Option<Progress> {
        if let ChannelTime::Active(w) = self.channels[channel] {
            self.channels[channel] = ChannelTime::Idle(w);
        }
        self.progress()
    }

    /// Channel `channel` ended.
    pub fn on_end(&mut self, channel: usize) -> Option<Progress> {
        self.channels[channel] = ChannelTime::Ended;
        self.progress()
    }

    fn progress(&mut self) -> Option<Progress> {
        let live = self
            .channels
            .iter()
            .filter(|c| **c != ChannelTime::Ended)
            .count();
        if live == 0 {
            return self.advance(Watermark::MAX);
        }
        let active = self.channels.iter().filter_map(|c| match c {
            // A channel behind the task's watermark (back from idle) does not
            // pull it back; it counts once it has caught up.
            ChannelTime::Active(w) if *w >= self.current => Some(*w),
            _ => None,
        });
        match active.min() {
            Some(min) => {
                let woke = std::mem::replace(&mut self.idle, false);
                self.advance(min)
                    .or(woke.then_some(Progress::Advanced(self.current)))
            }
            None if self
                .channels
                .iter()
                .any(|c| matches!(c, ChannelTime::Active(_))) =>
            {
                None
            }
            None if self.idle => None,
            None => {
                self.idle = true;
                Some(Progress::Idle)
            }
        }
    }

    fn advance(&mut self, to: Watermark) -> Option<Progress> {
        if to > self.current {
            self.current = to;
            self.idle = false;
            Some(Progress::Advanced(to))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: i64) -> Option<Progress> {
        Some(Progress::Advanced(Watermark(t)))
    }

    #[test]
    fn the_watermark_is_the_minimum_over_the_channels_and_only_grows() {
        let mut w = WatermarkTracker::new(3);
        assert_eq!(w.on_watermark(0, Watermark(10)), None, "1 and 2 are at MIN");
        assert_eq!(w.on_watermark(1, Watermark(5)), None);
        assert_eq!(w.on_watermark(2, Watermark(7)), at(5));
        assert_eq!(w.on_watermark(1, Watermark(20)), at(7));
        assert_eq!(
            w.on_watermark(2, Watermark(3)),
            None,
            "a channel never goes back"
        );
        assert_eq!(w.on_watermark(2, Watermark(30)), at(10));
        assert_eq!(w.current(), Watermark(10));
    }

    #[test]
    fn ended_channels_leave_the_minimum_and_all_ended_is_max() {
        let mut w = WatermarkTracker::new(2);
        assert_eq!(w.on_watermark(0, Watermark(4)), None);
        assert_eq!(w.on_end(1), at(4));
        assert_eq!(w.on_watermark(1, Watermark(100)), None, "ended stays ended");
        assert_eq!(w.on_end(0), Some(Progress::Advanced(Watermark::MAX)));
    }

    #[test]
    fn idle_channels_do_not_hold_the_watermark_back_and_rejoin_once_caught_up() {
        let mut w = WatermarkTracker::new(2);
        assert_eq!(w.on_watermark(0, Watermark(10)), None);
        assert_eq!(
            w.on_idle(1),
            at(10),
            "the idle channel stops holding it back"
        );
        assert_eq!(w.on_watermark(0, Watermark(15)), at(15));
        // Back from idle behind the task's watermark, a channel does not pull it
        // back (its records until it catches up are late, as in Flink); once it
        // has caught up it holds the watermark back like any other.
        assert_eq!(w.on_watermark(1, Watermark(12)), None);
        assert_eq!(w.on_watermark(0, Watermark(40)), at(40));
        assert_eq!(w.on_watermark(1, Watermark(45)), None);
        assert_eq!(
            w.on_watermark(0, Watermark(60)),
            at(45),
            "caught up, it counts"
        );
    }

    #[test]
    fn a_task_whose_live_channels_are_all_idle_is_idle_until_one_speaks() {
        let mut w = WatermarkTracker::new(2);
        assert_eq!(w.on_watermark(0, Watermark(3)), None);
        assert_eq!(w.on_end(1), at(3));
        assert_eq!(w.on_idle(0), Some(Progress::Idle));
        assert_eq!(w.on_idle(0), None, "said once");
        assert_eq!(
            w.on_watermark(0, Watermark(3)),
            at(3),
            "active again at the same time"
        );
        assert_eq!(w.on_watermark(0, Watermark(9)), at(9));
    }
}
