//! [`KeyedStream`] and [`WindowedStream`]: operators over records partitioned by key.

use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::api::graph::{EdgeNode, Exchange, NodeKind};
use crate::api::nodes::{Edge, OperatorFactory};
use crate::api::stream::Stream;
use crate::data::Data;
use crate::keys::StableHash;
use crate::operator::{Operator, OperatorContext};
use crate::operators::{
    Aggregate, Count, KeyFn, KeyedProcess, KeyedProcessOperator, KeyedReduce, KeyedSum, Sum,
    WindowOperator, WindowResult, WindowSpec,
};

/// A stream partitioned by key: every record of a key reaches the same subtask,
/// the one owning the key's key group.
pub struct KeyedStream<T, K> {
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

    /// Applies a keyed operator; `make` builds one instance per subtask and gets the key function.
    pub fn transform<O, F>(self, name: &str, make: F) -> Stream<O::Out>
    where
        O: Operator<In = T>,
        F: Fn(&OperatorContext, KeyFn<T, K>) -> O + Send + Sync + 'static,
    {
        let key = self.key.clone();
        let hash_key = self.key;
        let edge: Arc<dyn EdgeNode> = Arc::new(Edge::<T> {
            exchange: Exchange::KeyGroups,
            key: Some(Arc::new(move |r: &T| hash_key(r).stable_hash())),
        });
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

    /// Groups the records of each key into windows on processing time.
    pub fn window(self, spec: WindowSpec) -> WindowedStream<T, K> {
        WindowedStream { keyed: self, spec }
    }
}

/// A keyed stream cut into windows; finish it with an aggregate.
pub struct WindowedStream<T, K> {
    keyed: KeyedStream<T, K>,
    spec: WindowSpec,
}

impl<T, K> WindowedStream<T, K>
where
    T: Data,
    K: Data + StableHash + Eq + Hash,
{
    /// Aggregates each window of each key with `aggregate`.
    pub fn aggregate<A: Aggregate<T>>(
        self,
        name: &str,
        aggregate: A,
    ) -> Stream<WindowResult<K, A::Acc>> {
        let spec = self.spec;
        let aggregate = Arc::new(aggregate);
        self.keyed.transform(name, move |_, key| {
            WindowOperator::new(spec, key, aggregate.clone())
        })
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
