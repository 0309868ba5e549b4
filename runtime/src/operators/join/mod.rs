//! Two-input keyed functions: [`KeyedCoProcess`] and the joins built on it.
//!
//! A two-input operator reads its inputs as one keyed stream of
//! [`Either`] records (the union of the two, each side tagged where it is
//! produced), so the engine aligns barriers and takes the minimum watermark over
//! every channel of both sides as for any union, and the two sides share one
//! keyed state and one set of timers per key.
//!
//! - [`IntervalJoin`]: pairs `(a, b)` with `b.ts` in `[a.ts + lower, a.ts + upper]`.
//! - [`WindowJoin`]: pairs of one key in the same event-time window.

mod interval;
mod window;

use std::marker::PhantomData;
use std::sync::Arc;

use crate::data::{Data, Either, EventTime};
use crate::error::Result;
use crate::keys::StableHash;
use crate::operators::keyed_process::{KeyedProcess, KeyedValue};
use crate::state::{TimeDomain, Timers};

pub use interval::{IntervalBuffers, IntervalJoin};
pub use window::{WindowJoin, WindowJoinPanes};

/// A function of two keyed inputs with one per-key state and timers (Flink's
/// `KeyedCoProcessFunction`).
pub trait KeyedCoProcess: Send + Sync + 'static {
    /// The key both inputs are partitioned by.
    type Key: Data + StableHash + Eq + std::hash::Hash;
    /// Records of the first input.
    type Left: Data;
    /// Records of the second input.
    type Right: Data;
    /// Records produced.
    type Out: Data;
    /// The state kept per key.
    type State: KeyedValue;

    /// Handles a record of the first input.
    fn process_left(
        &self,
        key: &Self::Key,
        state: &mut Self::State,
        record: Self::Left,
        timers: &mut Timers<'_, Self::Key>,
        out: &mut Vec<Self::Out>,
    ) -> Result<()>;

    /// Handles a record of the second input.
    fn process_right(
        &self,
        key: &Self::Key,
        state: &mut Self::State,
        record: Self::Right,
        timers: &mut Timers<'_, Self::Key>,
        out: &mut Vec<Self::Out>,
    ) -> Result<()>;

    /// Called when a timer of `key` fires (see [`KeyedProcess::on_timer`]).
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

/// A [`KeyedCoProcess`] as the one-input function of the tagged union.
pub struct CoProcess<P>(pub Arc<P>, PhantomData<fn()>);

impl<P> CoProcess<P> {
    /// The one-input form of `function`.
    pub fn new(function: Arc<P>) -> Self {
        CoProcess(function, PhantomData)
    }
}

impl<P: KeyedCoProcess> KeyedProcess for CoProcess<P> {
    type Key = P::Key;
    type In = Either<P::Left, P::Right>;
    type Out = P::Out;
    type State = P::State;

    fn process(
        &self,
        key: &P::Key,
        state: &mut P::State,
        record: Self::In,
        timers: &mut Timers<'_, P::Key>,
        out: &mut Vec<P::Out>,
    ) -> Result<()> {
        match record {
            Either::Left(l) => self.0.process_left(key, state, l, timers, out),
            Either::Right(r) => self.0.process_right(key, state, r, timers, out),
        }
    }

    fn on_timer(
        &self,
        key: &P::Key,
        state: &mut P::State,
        time: EventTime,
        domain: TimeDomain,
        timers: &mut Timers<'_, P::Key>,
        out: &mut Vec<P::Out>,
    ) -> Result<()> {
        self.0.on_timer(key, state, time, domain, timers, out)
    }
}
