//! The interval join: each `a` of the first input with each `b` of the second
//! of its key such that `a.ts + lower <= b.ts <= a.ts + upper`, as Flink's
//! `intervalJoin(...).between(lower, upper)`.
//!
//! Both sides are buffered per key. A pair is emitted when its second record
//! arrives. A record of the first input can match no more records once the
//! watermark passes `a.ts + upper`, one of the second input once it passes
//! `b.ts - lower`; a timer at that time removes it. Records at or behind the
//! watermark are late and dropped, so with no late records every pair is
//! emitted exactly once whatever the order of arrival.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::data::{Data, EventTime};
use crate::error::Result;
use crate::keys::StableHash;
use crate::operators::join::KeyedCoProcess;
use crate::operators::keyed_process::KeyedValue;
use crate::operators::TimestampFn;
use crate::state::{TimeDomain, Timers};

/// A key's buffered records of both inputs, with their event times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalBuffers<L, R> {
    left: Vec<(EventTime, L)>,
    right: Vec<(EventTime, R)>,
}

impl<L, R> Default for IntervalBuffers<L, R> {
    fn default() -> Self {
        IntervalBuffers {
            left: Vec::new(),
            right: Vec::new(),
        }
    }
}

impl<L: Data, R: Data> KeyedValue for IntervalBuffers<L, R> {
    fn is_cleared(&self) -> bool {
        self.left.is_empty() && self.right.is_empty()
    }
}

/// The interval join of `L` and `R` records keyed by `K`, emitting `join(key, a, b)`.
pub struct IntervalJoin<K, L, R, O, F> {
    lower: EventTime,
    upper: EventTime,
    left_time: TimestampFn<L>,
    right_time: TimestampFn<R>,
    join: F,
    _types: PhantomData<fn(K) -> O>,
}

impl<K, L, R, O, F> IntervalJoin<K, L, R, O, F> {
    /// Joins `a` with `b` where `a.ts + lower <= b.ts <= a.ts + upper` (ms).
    pub fn new(
        lower: EventTime,
        upper: EventTime,
        left_time: TimestampFn<L>,
        right_time: TimestampFn<R>,
        join: F,
    ) -> Self {
        IntervalJoin {
            lower,
            upper,
            left_time,
            right_time,
            join,
            _types: PhantomData,
        }
    }
}

impl<K, L, R, O, F> KeyedCoProcess for IntervalJoin<K, L, R, O, F>
where
    K: Data + StableHash + Eq + std::hash::Hash,
    L: Data,
    R: Data,
    O: Data,
    F: Fn(&K, &L, &R) -> O + Send + Sync + 'static,
{
    type Key = K;
    type Left = L;
    type Right = R;
    type Out = O;
    type State = IntervalBuffers<L, R>;

    fn process_left(
        &self,
        key: &K,
        state: &mut Self::State,
        record: L,
        timers: &mut Timers<'_, K>,
        out: &mut Vec<O>,
    ) -> Result<()> {
        let ts = (self.left_time)(&record);
        if ts <= timers.watermark() {
            return Ok(());
        }
        let (from, to) = (ts.saturating_add(self.lower), ts.saturating_add(self.upper));
        for (_, b) in state.right.iter().filter(|(t, _)| (from..=to).contains(t)) {
            out.push((self.join)(key, &record, b));
        }
        let expires = ts.saturating_add(self.upper.max(0));
        timers.register_event_time(expires);
        state.left.push((ts, record));
        Ok(())
    }

    fn process_right(
        &self,
        key: &K,
        state: &mut Self::State,
        record: R,
        timers: &mut Timers<'_, K>,
        out: &mut Vec<O>,
    ) -> Result<()> {
        let ts = (self.right_time)(&record);
        if ts <= timers.watermark() {
            return Ok(());
        }
        let (from, to) = (ts.saturating_sub(self.upper), ts.saturating_sub(self.lower));
        for (_, a) in state.left.iter().filter(|(t, _)| (from..=to).contains(t)) {
            out.push((self.join)(key, a, &record));
        }
        let expires = ts.saturating_sub(self.lower.min(0));
        timers.register_event_time(expires);
        state.right.push((ts, record));
        Ok(())
    }

    fn on_timer(
        &self,
        _key: &K,
        state: &mut Self::State,
        time: EventTime,
        _domain: TimeDomain,
        _timers: &mut Timers<'_, K>,
        _out: &mut Vec<O>,
    ) -> Result<()> {
        let (lower, upper) = (self.lower.min(0), self.upper.max(0));
        state.left.retain(|(t, _)| t.saturating_add(upper) > time);
        state.right.retain(|(t, _)| t.saturating_sub(lower) > time);
        Ok(())
    }
}
