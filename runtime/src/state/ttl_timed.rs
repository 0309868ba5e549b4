//! State TTL for keyed values kept beside timers (a keyed `process`): a key's
//! value expires a fixed time after the key's last record, in processing time.
//!
//! [`TimedValues`] is what a keyed process operator needs of its state;
//! [`TimedState`] keeps values for ever, [`ExpiringTimedState`] stamps each
//! value ([`Stamped`], inside the value beside the timers' entries, at
//! [`STAMP_AFTER_TAG`]) and hides it once expired. A record of a key writes its
//! value, so it restarts the clock; a timer keeps the stamp of the value it
//! finds (a value it creates is stamped then). Timers never expire: one that
//! fires after its key's value expired sees none. Expired values leave as
//! [`crate::state::ttl`] describes: on access, by the heap's sweep, and in
//! RocksDB's compactions.

use std::borrow::Cow;
use std::hash::Hash;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use crate::data::{Barrier, Batch, EventTime};
use crate::error::Result;
use crate::keys::StableHash;
use crate::operator::OperatorContext;
use crate::state::timers::{wall_clock_ms, STAMP_AFTER_TAG};
use crate::state::ttl::{check_stamps, restamped, Expiry, Stamped, Sweep, TTL_MARKER};
use crate::state::{OperatorSnapshot, RestoredState, TimedState, Timers};

/// Keyed values of type `V` with per-key timers, as a keyed process operator
/// keeps them (see [`TimedState`] for what each call does).
pub trait TimedValues<K: Clone, V>: Send + 'static {
    /// Opens the backend and restores values and timers.
    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()>;

    /// Hands each record of `input` (emptied) to `f` with its key, that key's
    /// value and its timers.
    fn update<T>(
        &mut self,
        input: &mut Batch<T>,
        key: impl for<'a> Fn(&'a T) -> Cow<'a, K>,
        f: impl FnMut(&K, &mut Option<V>, T, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()>;

    /// The earliest pending processing-time timer, ms since the Unix epoch.
    fn next_processing_timer(&self) -> Option<EventTime>;

    /// Fires the event-time timers due by `watermark`.
    fn advance_watermark(
        &mut self,
        watermark: EventTime,
        f: impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()>;

    /// Fires the processing-time timers due at `now`.
    fn advance_processing_time(
        &mut self,
        now: EventTime,
        f: impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()>;

    /// At the end of input: fires every pending processing-time timer, once.
    fn end_processing_time(
        &mut self,
        f: impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()>;

    /// Snapshots values and timers for `barrier`.
    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot>;
}

impl<K, V> TimedValues<K, V> for TimedState<K, V>
where
    K: StableHash + Serialize + DeserializeOwned + Eq + Hash + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        check_stamps(&ctx.uid.0, restored.as_ref(), false)?;
        TimedState::open(self, ctx, restored)
    }

    fn update<T>(
        &mut self,
        input: &mut Batch<T>,
        key: impl for<'a> Fn(&'a T) -> Cow<'a, K>,
        f: impl FnMut(&K, &mut Option<V>, T, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        TimedState::update(self, input, key, f)
    }

    fn next_processing_timer(&self) -> Option<EventTime> {
        TimedState::next_processing_timer(self)
    }

    fn advance_watermark(
        &mut self,
        watermark: EventTime,
        f: impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        TimedState::advance_watermark(self, watermark, f)
    }

    fn advance_processing_time(
        &mut self,
        now: EventTime,
        f: impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        TimedState::advance_processing_time(self, now, f)
    }

    fn end_processing_time(
        &mut self,
        f: impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        TimedState::end_processing_time(self, f)
    }

    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        TimedState::snapshot(self, barrier)
    }
}

/// Keyed values with timers, each value expiring `ttl` after its key's last record.
pub struct ExpiringTimedState<K, V> {
    state: TimedState<K, Stamped<V>>,
    sweep: Sweep,
}

impl<K, V> ExpiringTimedState<K, V> {
    /// State whose values expire `ttl` after their key's last record.
    pub fn new(ttl: Duration) -> Self {
        let expiry = Expiry {
            ttl,
            stamp_at: STAMP_AFTER_TAG,
        };
        ExpiringTimedState {
            state: TimedState::expiring(expiry),
            sweep: Sweep::new(ttl),
        }
    }
}

/// `f` on the value in `slot` as a timer sees it: hidden if written at or
/// before `oldest`; put back with its stamp, or stamped `now_ms` if new.
fn on_timer_value<K, V>(
    oldest: i64,
    now_ms: i64,
    f: &mut impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
) -> impl FnMut(&K, &mut Option<Stamped<V>>, EventTime, &mut Timers<'_, K>) -> Result<()> + '_ {
    move |key, slot, time, timers| {
        let written_ms = match slot {
            Some(s) if s.written_ms > oldest => s.written_ms,
            _ => now_ms,
        };
        restamped(slot, oldest, written_ms, |value| {
            f(key, value, time, timers)
        })
    }
}

impl<K, V> ExpiringTimedState<K, V>
where
    K: StableHash + Serialize + DeserializeOwned + Eq + Hash + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// [`TimedValues::update`] as if the clock read `now_ms`.
    pub fn update_at<T>(
        &mut self,
        now_ms: i64,
        input: &mut Batch<T>,
        key: impl for<'a> Fn(&'a T) -> Cow<'a, K>,
        mut f: impl FnMut(&K, &mut Option<V>, T, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        let oldest = self.sweep.oldest_kept(now_ms);
        self.state.update(input, key, |k, slot, record, timers| {
            restamped(slot, oldest, now_ms, |value| f(k, value, record, timers))
        })?;
        if let Some(shard) = self.sweep.due(now_ms) {
            self.state
                .retain_heap_values(shard, |s| s.written_ms > oldest);
        }
        Ok(())
    }

    /// Entries in memory, values (expired or not) and timers.
    pub fn cached_entries(&self) -> usize {
        self.state.cached_entries()
    }
}

impl<K, V> TimedValues<K, V> for ExpiringTimedState<K, V>
where
    K: StableHash + Serialize + DeserializeOwned + Eq + Hash + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        check_stamps(&ctx.uid.0, restored.as_ref(), true)?;
        self.state.open(ctx, restored)
    }

    fn update<T>(
        &mut self,
        input: &mut Batch<T>,
        key: impl for<'a> Fn(&'a T) -> Cow<'a, K>,
        f: impl FnMut(&K, &mut Option<V>, T, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        self.update_at(wall_clock_ms(), input, key, f)
    }

    fn next_processing_timer(&self) -> Option<EventTime> {
        self.state.next_processing_timer()
    }

    fn advance_watermark(
        &mut self,
        watermark: EventTime,
        mut f: impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        let now_ms = wall_clock_ms();
        let oldest = self.sweep.oldest_kept(now_ms);
        self.state
            .advance_watermark(watermark, on_timer_value(oldest, now_ms, &mut f))
    }

    fn advance_processing_time(
        &mut self,
        now: EventTime,
        mut f: impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        let oldest = self.sweep.oldest_kept(now);
        self.state
            .advance_processing_time(now, on_timer_value(oldest, now, &mut f))
    }

    fn end_processing_time(
        &mut self,
        mut f: impl FnMut(&K, &mut Option<V>, EventTime, &mut Timers<'_, K>) -> Result<()>,
    ) -> Result<()> {
        let now_ms = wall_clock_ms();
        let oldest = self.sweep.oldest_kept(now_ms);
        self.state
            .end_processing_time(on_timer_value(oldest, now_ms, &mut f))
    }

    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        let mut snapshot = self.state.snapshot(barrier)?;
        snapshot.operator_state = Some(TTL_MARKER.to_vec());
        Ok(snapshot)
    }
}

#[cfg(test)]
#[path = "ttl_timed_tests.rs"]
mod tests;
