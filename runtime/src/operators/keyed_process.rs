//! Keyed `process`: a user function called per record with the state of the record's key.
//!
//! A function declares its per-key state as a type: [`ValueState`] for one value,
//! [`MapState`] for a map, or a tuple of them, and may set event-time and
//! processing-time timers per key. The operator keeps state and timers in the
//! job's state backend ([`TimedState`], or with a state TTL
//! [`crate::state::ExpiringTimedState`]), drops a key whose state is cleared,
//! and snapshots both by key group so they can be restored at another
//! parallelism.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use std::borrow::Cow;
use std::time::{Duration, Instant};

use crate::data::{Barrier, Batch, Data, EventTime, Watermark};
use crate::error::Result;
use crate::keys::StableHash;
use crate::operator::{Operator, OperatorContext};
use crate::state::timers::wall_clock_ms;
use crate::state::{OperatorSnapshot, RestoredState, TimeDomain, TimedState, TimedValues, Timers};

/// Gives a record's key: borrowed from the record where it can be, so that
/// neither the exchange nor a state lookup builds a key per record.
pub type KeyFn<T, K> = Arc<dyn for<'a> Fn(&'a T) -> Cow<'a, K> + Send + Sync>;

/// Per-key state: serializable, empty by default, and able to say when it is empty again.
pub trait KeyedValue: Data + Default {
    /// Whether the state holds nothing, so the key can be forgotten.
    fn is_cleared(&self) -> bool;
}

/// One value per key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueState<V>(Option<V>);

impl<V> Default for ValueState<V> {
    fn default() -> Self {
        ValueState(None)
    }
}

impl<V> ValueState<V> {
    /// The key's value, if set.
    pub fn get(&self) -> Option<&V> {
        self.0.as_ref()
    }
    /// The key's value, mutable, if set.
    pub fn get_mut(&mut self) -> Option<&mut V> {
        self.0.as_mut()
    }
    /// Sets the key's value.
    pub fn set(&mut self, value: V) {
        self.0 = Some(value);
    }
    /// The key's value, set to `init()` first if it was empty.
    pub fn get_or_insert_with(&mut self, init: impl FnOnce() -> V) -> &mut V {
        self.0.get_or_insert_with(init)
    }
    /// Clears the key's value.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

impl<V: Data> KeyedValue for ValueState<V> {
    fn is_cleared(&self) -> bool {
        self.0.is_none()
    }
}

/// A sorted map per key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapState<K: Ord, V>(BTreeMap<K, V>);

impl<K: Ord, V> Default for MapState<K, V> {
    fn default() -> Self {
        MapState(BTreeMap::new())
    }
}

impl<K: Ord, V> MapState<K, V> {
    /// The entry for `k`.
    pub fn get(&self, k: &K) -> Option<&V> {
        self.0.get(k)
    }
    /// Sets the entry for `k`, returning the old value.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.0.insert(k, v)
    }
    /// Removes the entry for `k`.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.0.remove(k)
    }
    /// The entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter()
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Data + Ord, V: Data> KeyedValue for MapState<K, V> {
    fn is_cleared(&self) -> bool {
        self.0.is_empty()
    }
}

impl<A: KeyedValue, B: KeyedValue> KeyedValue for (A, B) {
    fn is_cleared(&self) -> bool {
        self.0.is_cleared() && self.1.is_cleared()
    }
}

/// A function of keyed records with per-key state and timers (Flink's
/// `KeyedProcessFunction`).
pub trait KeyedProcess: Send + Sync + 'static {
    /// The key type.
    type Key: Data + StableHash + Eq + Hash;
    /// Records consumed.
    type In: Data;
    /// Records produced.
    type Out: Data;
    /// The state kept per key.
    type State: KeyedValue;

    /// Handles one record of `key`, with that key's state and timers; appends
    /// output to `out`.
    fn process(
        &self,
        key: &Self::Key,
        state: &mut Self::State,
        record: Self::In,
        timers: &mut Timers<'_, Self::Key>,
        out: &mut Vec<Self::Out>,
    ) -> Result<()>;

    /// Called when a timer of `key` set at `time` in `domain` fires: event-time
    /// timers once the watermark reached `time` (all of them at the end of
    /// input), processing-time ones once the wall clock did (all of them at the
    /// end of input too, so nothing stays buffered). A timer fires once per key
    /// and time, after a restore too.
    fn on_timer(
        &self,
        _key: &Self::Key,
        _state: &mut Self::State,
        _time: EventTime,
        _domain: TimeDomain,
        _timers: &mut Timers<'_, Self::Key>,
        _out: &mut Vec<Self::Out>,
    ) -> Result<()> {
        Ok(())
    }
}

/// Runs a [`KeyedProcess`] function over a keyed stream, keeping its state in
/// `S` (for ever by default, or expiring: [`crate::state::ExpiringTimedState`]).
pub struct KeyedProcessOperator<
    P: KeyedProcess,
    S = TimedState<<P as KeyedProcess>::Key, <P as KeyedProcess>::State>,
> {
    function: Arc<P>,
    key: KeyFn<P::In, P::Key>,
    state: S,
}

impl<P: KeyedProcess> KeyedProcessOperator<P> {
    /// An operator applying `function` to records keyed by `key`.
    pub fn new(function: Arc<P>, key: KeyFn<P::In, P::Key>) -> Self {
        Self::with_state(function, key, TimedState::default())
    }
}

impl<P: KeyedProcess, S: TimedValues<P::Key, P::State>> KeyedProcessOperator<P, S> {
    /// An operator applying `function` to records keyed by `key`, keeping
    /// their state in `state`.
    pub fn with_state(function: Arc<P>, key: KeyFn<P::In, P::Key>, state: S) -> Self {
        KeyedProcessOperator {
            function,
            key,
            state,
        }
    }

    fn fire(&mut self, due: Due, output: &mut Batch<P::Out>) -> Result<()> {
        let function = &self.function;
        let domain = match due {
            Due::Watermark(_) => TimeDomain::EventTime,
            Due::Clock(_) | Due::EndOfInput => TimeDomain::ProcessingTime,
        };
        let on_timer =
            |key: &P::Key, slot: &mut Option<P::State>, time, timers: &mut Timers<'_, P::Key>| {
                let state = slot.get_or_insert_with(P::State::default);
                function.on_timer(key, state, time, domain, timers, output)?;
                if state.is_cleared() {
                    *slot = None;
                }
                Ok(())
            };
        match due {
            Due::Watermark(until) => self.state.advance_watermark(until, on_timer),
            Due::Clock(now) => self.state.advance_processing_time(now, on_timer),
            Due::EndOfInput => self.state.end_processing_time(on_timer),
        }
    }
}

/// What makes timers due.
#[derive(Clone, Copy)]
enum Due {
    /// The watermark reached this time.
    Watermark(EventTime),
    /// The wall clock reached this time.
    Clock(EventTime),
    /// The input ended: every pending processing-time timer fires once.
    EndOfInput,
}

impl<P: KeyedProcess, S: TimedValues<P::Key, P::State>> Operator for KeyedProcessOperator<P, S> {
    type In = P::In;
    type Out = P::Out;

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.state.open(ctx, restored)
    }

    fn process(&mut self, input: &mut Batch<P::In>, output: &mut Batch<P::Out>) -> Result<()> {
        let function = &self.function;
        self.state
            .update(input, &*self.key, |key, slot, record, timers| {
                let state = slot.get_or_insert_with(P::State::default);
                function.process(key, state, record, timers, output)?;
                if state.is_cleared() {
                    *slot = None;
                }
                Ok(())
            })
    }

    fn on_watermark(&mut self, watermark: Watermark, output: &mut Batch<P::Out>) -> Result<()> {
        self.fire(Due::Watermark(watermark.0), output)
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let due = self.state.next_processing_timer()?;
        let wait = due.saturating_sub(wall_clock_ms()).max(0) as u64;
        Some(Instant::now() + Duration::from_millis(wait))
    }

    fn on_time(&mut self, _now: Instant, output: &mut Batch<P::Out>) -> Result<()> {
        self.fire(Due::Clock(wall_clock_ms()), output)
    }

    fn end_of_input(&mut self, output: &mut Batch<P::Out>) -> Result<()> {
        self.fire(Due::EndOfInput, output)
    }

    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        self.state.snapshot(barrier)
    }
}
