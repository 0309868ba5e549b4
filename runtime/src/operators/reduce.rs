//! Keyed rolling `reduce` and `sum`: fold each record into its key's accumulator and emit it.

use std::hash::Hash;
use std::sync::Arc;

use crate::data::{Barrier, Batch, Data};
use crate::error::Result;
use crate::keys::StableHash;
use crate::operator::{Operator, OperatorContext};
use crate::operators::keyed_process::KeyFn;
use crate::state::{KeyedState, KeyedValues, OperatorSnapshot, RestoredState};

/// Keeps one accumulator per key (in `S`: plain, or expiring after a TTL); each
/// record is folded in with `f(&mut acc, record)` (the first record of a key
/// becomes its accumulator) and the new accumulator is emitted.
pub struct KeyedReduce<T, K: Clone, F, S = KeyedState<K, T>> {
    f: Arc<F>,
    key: KeyFn<T, K>,
    state: S,
}

impl<T, K: Clone, F> KeyedReduce<T, K, F> {
    /// A reduce folding with `f`, keyed by `key`.
    pub fn new(f: Arc<F>, key: KeyFn<T, K>) -> Self {
        Self::with_state(f, key, KeyedState::default())
    }
}

impl<T, K: Clone, F, S> KeyedReduce<T, K, F, S> {
    /// A reduce folding with `f`, keyed by `key`, keeping its accumulators in `state`.
    pub fn with_state(f: Arc<F>, key: KeyFn<T, K>, state: S) -> Self {
        KeyedReduce { f, key, state }
    }
}

impl<T, K, F, S> Operator for KeyedReduce<T, K, F, S>
where
    T: Data,
    K: Data + StableHash + Eq + Hash,
    F: Fn(&mut T, T) + Send + Sync + 'static,
    S: KeyedValues<K, T>,
{
    type In = T;
    type Out = T;

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.state.open(ctx, restored)
    }

    fn process(&mut self, input: &mut Batch<T>, output: &mut Batch<T>) -> Result<()> {
        output.reserve(input.len());
        let f = &self.f;
        self.state.update(input, &*self.key, |_, acc, record| {
            match acc {
                Some(acc) => {
                    f(acc, record);
                    output.push(acc.clone());
                }
                None => {
                    output.push(record.clone());
                    *acc = Some(record);
                }
            }
            Ok(())
        })
    }

    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        self.state.snapshot(barrier)
    }
}

/// Keeps a sum per key (in `S`: plain, or expiring after a TTL); adds each
/// record's value and emits `(key, sum)`.
pub struct KeyedSum<T, K: Clone, F, S = KeyedState<K, i64>> {
    value: Arc<F>,
    key: KeyFn<T, K>,
    state: S,
}

impl<T, K: Clone, F> KeyedSum<T, K, F> {
    /// A sum of `value` per key.
    pub fn new(value: Arc<F>, key: KeyFn<T, K>) -> Self {
        Self::with_state(value, key, KeyedState::default())
    }
}

impl<T, K: Clone, F, S> KeyedSum<T, K, F, S> {
    /// A sum of `value` per key, keeping the sums in `state`.
    pub fn with_state(value: Arc<F>, key: KeyFn<T, K>, state: S) -> Self {
        KeyedSum { value, key, state }
    }
}

impl<T, K, F, S> Operator for KeyedSum<T, K, F, S>
where
    T: Data,
    K: Data + StableHash + Eq + Hash,
    F: Fn(&T) -> i64 + Send + Sync + 'static,
    S: KeyedValues<K, i64>,
{
    type In = T;
    type Out = (K, i64);

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.state.open(ctx, restored)
    }

    fn process(&mut self, input: &mut Batch<T>, output: &mut Batch<(K, i64)>) -> Result<()> {
        output.reserve(input.len());
        let value = &self.value;
        self.state.update(input, &*self.key, |key, sum, record| {
            let sum = sum.get_or_insert(0);
            *sum += value(&record);
            output.push((key.clone(), *sum));
            Ok(())
        })
    }

    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        self.state.snapshot(barrier)
    }
}
