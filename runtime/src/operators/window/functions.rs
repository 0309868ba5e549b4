//! What a window computes: incremental aggregates ([`Aggregate`], with
//! [`Count`] and [`Sum`]), full-window functions ([`AllRecords`]), and the
//! [`WindowFunction`] the window operator calls, with its [`WindowResult`].

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::data::{Data, EventTime};
use crate::operators::window::Window;

/// What a window emits per key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowResult<K, V> {
    /// The key.
    pub key: K,
    /// Window start, ms since the Unix epoch.
    pub start_ms: EventTime,
    /// Window end (exclusive), ms since the Unix epoch.
    pub end_ms: EventTime,
    /// The aggregate.
    pub value: V,
}

/// An incremental aggregate over the records of a window (Flink's `AggregateFunction`).
pub trait Aggregate<T>: Send + Sync + 'static {
    /// The running value.
    type Acc: Data + Default;
    /// What a window emits.
    type Out: Data;
    /// Folds `record` into `acc`.
    fn add(&self, acc: &mut Self::Acc, record: &T);
    /// Folds `other` into `acc` (sessions that merge).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The window's result.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
    /// The window's result from its last firing, which may take the
    /// accumulator apart instead of copying it.
    fn result_last(&self, acc: Self::Acc) -> Self::Out {
        self.result(&acc)
    }
}

/// Counts records.
pub struct Count;

impl<T> Aggregate<T> for Count {
    type Acc = u64;
    type Out = u64;
    fn add(&self, acc: &mut u64, _: &T) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Sums a value taken from each record.
pub struct Sum<F>(pub F);

impl<T, F: Fn(&T) -> i64 + Send + Sync + 'static> Aggregate<T> for Sum<F> {
    type Acc = i64;
    type Out = i64;
    fn add(&self, acc: &mut i64, record: &T) {
        *acc += (self.0)(record);
    }
    fn merge(&self, acc: &mut i64, other: i64) {
        *acc += other;
    }
    fn result(&self, acc: &i64) -> i64 {
        *acc
    }
}

/// What a window operator computes: an accumulator per pane and what a firing emits.
pub trait WindowFunction<T, K>: Send + Sync + 'static {
    /// The running value of a pane.
    type Acc: Data + Default;
    /// What a firing emits.
    type Out: Data;
    /// Folds `record` into `acc`.
    fn add(&self, acc: &mut Self::Acc, record: &T);
    /// Folds `other` into `acc` (sessions that merge).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// Emits the firing of `window` of `key`.
    fn emit(&self, key: &K, window: Window, acc: &Self::Acc, out: &mut dyn FnMut(Self::Out));
    /// Emits the last firing of `window` of `key`, after which `acc` is dropped.
    fn emit_last(&self, key: &K, window: Window, acc: Self::Acc, out: &mut dyn FnMut(Self::Out)) {
        self.emit(key, window, &acc, out);
    }
}

/// An [`Aggregate`] as a window function: one [`WindowResult`] per firing.
pub struct Aggregated<A>(pub A);

impl<T, K: Data, A: Aggregate<T>> WindowFunction<T, K> for Aggregated<A> {
    type Acc = A::Acc;
    type Out = WindowResult<K, A::Out>;
    fn add(&self, acc: &mut A::Acc, record: &T) {
        self.0.add(acc, record);
    }
    fn merge(&self, acc: &mut A::Acc, other: A::Acc) {
        self.0.merge(acc, other);
    }
    fn emit(&self, key: &K, window: Window, acc: &A::Acc, out: &mut dyn FnMut(Self::Out)) {
        out(WindowResult {
            key: key.clone(),
            start_ms: window.start,
            end_ms: window.end,
            value: self.0.result(acc),
        });
    }
    fn emit_last(&self, key: &K, window: Window, acc: A::Acc, out: &mut dyn FnMut(Self::Out)) {
        out(WindowResult {
            key: key.clone(),
            start_ms: window.start,
            end_ms: window.end,
            value: self.0.result_last(acc),
        });
    }
}

/// A full-window function: the window's records, in arrival order, all at once.
pub struct AllRecords<F, O>(pub F, pub PhantomData<fn() -> O>);

impl<F, O> AllRecords<F, O> {
    /// `function` called with each firing's records.
    pub fn new(function: F) -> Self {
        AllRecords(function, PhantomData)
    }
}

impl<T, K, O, F> WindowFunction<T, K> for AllRecords<F, O>
where
    T: Data,
    O: Data,
    F: Fn(&K, Window, &[T], &mut Vec<O>) + Send + Sync + 'static,
{
    type Acc = Vec<T>;
    type Out = O;
    fn add(&self, acc: &mut Vec<T>, record: &T) {
        acc.push(record.clone());
    }
    fn merge(&self, acc: &mut Vec<T>, other: Vec<T>) {
        acc.extend(other);
    }
    fn emit(&self, key: &K, window: Window, acc: &Vec<T>, out: &mut dyn FnMut(O)) {
        let mut results = Vec::new();
        (self.0)(key, window, acc, &mut results);
        results.into_iter().for_each(out);
    }
}
