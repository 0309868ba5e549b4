//! The window join: each `a` of the first input with each `b` of the second of
//! its key in the same event-time window (tumbling or sliding), emitted when
//! the window fires, as Flink's `join(...).where(...).equalTo(...).window(...)`.
//! Records late for all their windows are dropped.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::data::{Data, EventTime};
use crate::error::Result;
use crate::keys::StableHash;
use crate::operators::join::KeyedCoProcess;
use crate::operators::keyed_process::KeyedValue;
use crate::operators::window::{Shape, Window};
use crate::operators::TimestampFn;
use crate::state::{TimeDomain, Timers};

/// A key's open windows, each with the records of both inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowJoinPanes<L, R> {
    panes: Vec<(Window, Vec<L>, Vec<R>)>,
}

impl<L, R> Default for WindowJoinPanes<L, R> {
    fn default() -> Self {
        WindowJoinPanes { panes: Vec::new() }
    }
}

impl<L: Data, R: Data> KeyedValue for WindowJoinPanes<L, R> {
    fn is_cleared(&self) -> bool {
        self.panes.is_empty()
    }
}

/// The window join of `L` and `R` records keyed by `K`, emitting `join(key, window, a, b)`.
pub struct WindowJoin<K, L, R, O, F> {
    shape: Shape,
    left_time: TimestampFn<L>,
    right_time: TimestampFn<R>,
    join: F,
    _types: PhantomData<fn(K) -> O>,
}

impl<K, L, R, O, F> WindowJoin<K, L, R, O, F> {
    /// Joins the records of a key in each window of `shape` (tumbling or sliding).
    pub fn new(
        shape: Shape,
        left_time: TimestampFn<L>,
        right_time: TimestampFn<R>,
        join: F,
    ) -> Self {
        WindowJoin {
            shape,
            left_time,
            right_time,
            join,
            _types: PhantomData,
        }
    }
}

impl<K, L, R, O, F> WindowJoin<K, L, R, O, F>
where
    K: Clone,
    L: Clone,
    R: Clone,
{
    /// Adds `record` (at `ts`) to each of its windows with `put`: a copy to
    /// all but the last, which takes it.
    fn add<T: Clone>(
        &self,
        state: &mut WindowJoinPanes<L, R>,
        ts: EventTime,
        record: T,
        timers: &mut Timers<'_, K>,
        put: impl Fn(&mut (Window, Vec<L>, Vec<R>), T),
    ) {
        let watermark = timers.watermark();
        let windows = self.shape.windows_per_record();
        let (mut record, mut seen) = (Some(record), 0);
        self.shape.assign(ts, |window| {
            seen += 1;
            if window.max_timestamp() <= watermark {
                return;
            }
            let pane = match state.panes.iter().position(|p| p.0 == window) {
                Some(i) => &mut state.panes[i],
                None => {
                    timers.register_event_time(window.max_timestamp());
                    state.panes.push((window, Vec::new(), Vec::new()));
                    let last = state.panes.len() - 1;
                    &mut state.panes[last]
                }
            };
            let copy = if seen >= windows {
                record.take()
            } else {
                record.clone()
            };
            if let Some(copy) = copy {
                put(pane, copy);
            }
        });
    }
}

impl<K, L, R, O, F> KeyedCoProcess for WindowJoin<K, L, R, O, F>
where
    K: Data + StableHash + Eq + std::hash::Hash,
    L: Data,
    R: Data,
    O: Data,
    F: Fn(&K, Window, &L, &R) -> O + Send + Sync + 'static,
{
    type Key = K;
    type Left = L;
    type Right = R;
    type Out = O;
    type State = WindowJoinPanes<L, R>;

    fn process_left(
        &self,
        _key: &K,
        state: &mut Self::State,
        record: L,
        timers: &mut Timers<'_, K>,
        _out: &mut Vec<O>,
    ) -> Result<()> {
        let ts = (self.left_time)(&record);
        self.add(state, ts, record, timers, |pane, r| pane.1.push(r));
        Ok(())
    }

    fn process_right(
        &self,
        _key: &K,
        state: &mut Self::State,
        record: R,
        timers: &mut Timers<'_, K>,
        _out: &mut Vec<O>,
    ) -> Result<()> {
        let ts = (self.right_time)(&record);
        self.add(state, ts, record, timers, |pane, r| pane.2.push(r));
        Ok(())
    }

    fn on_timer(
        &self,
        key: &K,
        state: &mut Self::State,
        time: EventTime,
        _domain: TimeDomain,
        _timers: &mut Timers<'_, K>,
        out: &mut Vec<O>,
    ) -> Result<()> {
        state.panes.retain(|(window, left, right)| {
            if window.max_timestamp() > time {
                return true;
            }
            for a in left {
                for b in right {
                    out.push((self.join)(key, *window, a, b));
                }
            }
            false
        });
        Ok(())
    }
}
