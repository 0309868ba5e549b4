//! Keyed rolling `reduce` and `sum`: fold each record into its key's accumulator and emit it.

use std::hash::Hash;
use std::sync::Arc;

use crate::data::{Barrier, Batch, Data};
use crate::error::Result;
use crate::keys::StableHash;
use crate::operator::{Operator, OperatorContext};
use crate::operators::keyed_process::KeyFn;
use crate::state::{KeyedState, OperatorSnapshot, RestoredState};

/// Keeps one accumulator per key; each record is folded in with `f(&mut acc, record)`
/// (the first record of a key becomes its accumulator) and the new accumulator is emitted.
pub struct KeyedReduce<T, K: Clone, F> {
    f: Arc<F>,
    key: KeyFn<T, K>,
    state: KeyedState<K, T>,
}

impl<T, K: Clone, F> KeyedReduce<T, K, F> {
    /// A reduce folding with `f`, keyed by `key`.
    pub fn new(f: Arc<F>, key: KeyFn<T, K>) -> Self {
        KeyedReduce {
            f,
            key,
            state: KeyedState::default(),
        }
    }
}

impl<T, K, F> Operator for KeyedReduce<T, K, F>
where
    T: Data,
    K: Data + StableHash + Eq + Hash,
    F: Fn(&mut T, T) + Send + Sync + 'static,
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

/// Keeps a sum per key; adds each record's value and emits `(key, sum)`.
pub struct KeyedSum<T, K: Clone, F> {
    value: Arc<F>,
    key: KeyFn<T, K>,
    state: KeyedState<K, i64>,
}

impl<T, K: Clone, F> KeyedSum<T, K, F> {
    /// A sum of `value` per key.
    pub fn new(value: Arc<F>, key: KeyFn<T, K>) -> Self {
        KeyedSum {
            value,
            key,
            state: KeyedState::default(),
        }
    }
}

impl<T, K, F> Operator for KeyedSum<T, K, F>
where
    T: Data,
    K: Data + StableHash + Eq + Hash,
    F: Fn(&T) -> i64 + Send + Sync + 'static,
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
