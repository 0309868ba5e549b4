//! [`KeyedStream`] and [`WindowedStream`]: operators over records partitioned by key.

use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::api::connected::ConnectedStreams;
use crate::api::graph::{EdgeNode, Exchange, NodeKind};
use crate::api::nodes::{Edge, OperatorFactory};
use crate::api::stream::Stream;
use crate::data::{Data, Tagged};
use crate::keys::StableHash;
use crate::operator::{Operator, OperatorContext};
use crate::operators::{
    Aggregate, Aggregated, AllRecords, Count, KeyFn, KeyedProcess, KeyedProcessOperator,
    KeyedReduce, KeyedSum, Sum, Window, WindowFunction, WindowProcess, WindowResult, Windows,
};

/// A stream partitioned by key: every record of a key reaches the same subtask,
/// the one owning the key's key group.
pub struct KeyedStream<T, K: Clone> {
    stream: Stream<T>,
    key: KeyFn<T, K>,
}

impl<T, K> KeyedStream<T, K>
where
    T: Data,
    K: Data + StableHash + Eq + Hash,
{
    pub(crate) fn new(stream: Stream<T>, key: KeyFn<T, K>) -> Self {
        KeyedStream { stream, key }
    }

    /// The stream and its key function.
    pub(crate) fn into_parts(self) -> (Stream<T>, KeyFn<T, K>) {
        (self.stream, self.key)
    }

    /// Notes a misuse the types cannot catch, reported by `JobBuilder::build`.
    pub(crate) fn note_error(&self, error: String) {
        self.stream.draft().borrow_mut().errors.push(error);
    }

    /// This stream and `other`, keyed by the same key type, for a two-input
    /// operator (a join, or a [`crate::operators::KeyedCoProcess`]).
    pub fn connect<U: Data>(self, other: KeyedStream<U, K>) -> ConnectedStreams<T, U, K> {
        ConnectedStreams::new(self, other)
    }

    /// Applies a keyed operator; `make` builds one instance per subtask and gets the key function.
    pub fn transform<O, F>(self, name: &str, make: F) -> Stream<O::Out>
    where
        O: Operator<In = T>,
        F: Fn(&OperatorContext, KeyFn<T, K>) -> O + Send + Sync + 'static,
    {
        let key = self.key.clone();
        let hash_key = self.key;
        let edge: Arc<dyn EdgeNode> = Arc::new(Edge::<T>::new(
            Exchange::KeyGroups,
            Some(Arc::new(move |r: &T| hash_key(r).stable_hash())),
        ));
        let kind = NodeKind::Operator(Arc::new(OperatorFactory {
            make: move |ctx: &OperatorContext| make(ctx, key.clone()),
            _operator: PhantomData,
        }));
        let draft = self.stream.draft();
        // Every input of a keyed operator is partitioned by key, whatever was set before.
        let node = self
            .stream
            .exchange(Exchange::KeyGroups)
            .connect(name, kind, &|_| edge.clone());
        Stream::from_node(draft, node)
    }

    /// Calls `function` for each record with the state of the record's key.
    pub fn process<P>(self, name: &str, function: P) -> Stream<P::Out>
    where
        P: KeyedProcess<Key = K, In = T>,
    {
        let function = Arc::new(function);
        self.transform(name, move |_, key| {
            KeyedProcessOperator::new(function.clone(), key)
        })
    }

    /// Rolling reduce: folds each record into its key's accumulator with `f` and
    /// emits the accumulator after every record.
    pub fn reduce<F>(self, name: &str, f: F) -> Stream<T>
    where
        F: Fn(&mut T, T) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.transform(name, move |_, key| KeyedReduce::new(f.clone(), key))
    }

    /// Running sum: adds `value(record)` to its key's sum and emits `(key, sum)` per record.
    pub fn sum<F>(self, name: &str, value: F) -> Stream<(K, i64)>
    where
        F: Fn(&T) -> i64 + Send + Sync + 'static,
    {
        let value = Arc::new(value);
        self.transform(name, move |_, key| KeyedSum::new(value.clone(), key))
    }

    /// Cuts the records of each key into `windows` (event time, processing time
    /// or counts; see [`Windows`]); finish with an aggregate or a function.
    pub fn window(self, windows: Windows<T>) -> WindowedStream<T, K> {
        WindowedStream {
            keyed: self,
            windows,
        }
    }
}

/// A keyed stream cut into windows; finish it with an aggregate or a function.
pub struct WindowedStream<T, K: Clone> {
    keyed: KeyedStream<T, K>,
    windows: Windows<T>,
}

impl<T, K> WindowedStream<T, K>
where
    T: Data,
    K: Data + StableHash + Eq + Hash,
{
    /// The window operator computing `function`; late records on the side if `late`.
    pub fn apply<F: WindowFunction<T, K>>(
        self,
        name: &str,
        function: F,
        late: bool,
    ) -> Stream<Tagged<F::Out, T>> {
        if let Err(e) = self.windows.validate() {
            self.keyed.note_error(format!("window {name}: {e}"));
        }
        self.keyed.process(
            name,
            WindowProcess::new(self.windows, Arc::new(function), late),
        )
    }

    /// Aggregates each window of each key with `aggregate`; late records are dropped.
    pub fn aggregate<A: Aggregate<T>>(
        self,
        name: &str,
        aggregate: A,
    ) -> Stream<WindowResult<K, A::Out>> {
        main_only(self.apply(name, Aggregated(aggregate), false), name)
    }

    /// Aggregates each window of each key with `aggregate`, and returns the
    /// records too late for every window they fall into as a second stream.
    pub fn aggregate_with_late<A: Aggregate<T>>(
        self,
        name: &str,
        aggregate: A,
    ) -> (Stream<WindowResult<K, A::Out>>, Stream<T>) {
        self.apply(name, Aggregated(aggregate), true).split(name)
    }

    /// Calls `function` with all the records of each window of each key when it
    /// fires (they are kept until then: prefer an aggregate where one will do).
    pub fn process<O, F>(self, name: &str, function: F) -> Stream<O>
    where
        O: Data,
        F: Fn(&K, Window, &[T], &mut Vec<O>) + Send + Sync + 'static,
    {
        main_only(self.apply(name, AllRecords::new(function), false), name)
    }

    /// Counts the records of each window of each key.
    pub fn count(self, name: &str) -> Stream<WindowResult<K, u64>> {
        self.aggregate(name, Count)
    }

    /// Sums `value` over the records of each window of each key.
    pub fn sum<F>(self, name: &str, value: F) -> Stream<WindowResult<K, i64>>
    where
        F: Fn(&T) -> i64 + Send + Sync + 'static,
    {
        self.aggregate(name, Sum(value))
    }
}

/// The main records of a window operator that has no side output, chained to it.
fn main_only<M: Data, S: Data>(stream: Stream<Tagged<M, S>>, name: &str) -> Stream<M> {
    stream.flat_map(&format!("{name}-results"), |t, out| {
        if let Tagged::Main(m) = t {
            out.push(m);
        }
    })
}
