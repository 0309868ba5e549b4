//! [`KeyedStream`] and [`WindowedStream`]: operators over records partitioned by key.

use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

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
use crate::state::{ExpiringState, ExpiringTimedState};

/// A stream partitioned by key: every record of a key reaches the same subtask,
/// the one owning the key's key group.
pub struct KeyedStream<T, K: Clone> {
    stream: Stream<T>,
    key: KeyFn<T, K>,
    /// How long the next operator's state of a key outlives its last write.
    ttl: Option<Duration>,
}

impl<T, K> KeyedStream<T, K>
where
    T: Data,
    K: Data + StableHash + Eq + Hash,
{
    pub(crate) fn new(stream: Stream<T>, key: KeyFn<T, K>) -> Self {
        KeyedStream {
            stream,
            key,
            ttl: None,
        }
    }

    /// The stream and its key function.
    pub(crate) fn into_parts(self) -> (Stream<T>, KeyFn<T, K>) {
        self.refuse_ttl("connect");
        (self.stream, self.key)
    }

    /// Has the state of the [`reduce`](Self::reduce), [`sum`](Self::sum) or
    /// [`process`](Self::process) that follows forget a key `ttl` after its
    /// last record, in processing time: the key's next record starts over, as
    /// its first did (a `process` function's timers stay, and one that fires
    /// after its key's state expired finds it empty; see
    /// [`crate::state::ttl_timed`]). Expired
    /// values are never seen; they leave memory and RocksDB on access, by a
    /// sweep of the heap and in RocksDB's compactions (see
    /// [`crate::state::ttl`]). A checkpoint of the operator without a TTL
    /// does not restore into one with a TTL, nor the other way round.
    pub fn state_ttl(mut self, ttl: Duration) -> Self {
        if ttl.is_zero() {
            self.note_error("state_ttl: the TTL must be longer than zero".into());
        }
        self.ttl = Some(ttl);
        self
    }

    /// Notes that a state TTL set on this stream does not apply to `what`.
    fn refuse_ttl(&self, what: &str) {
        if self.ttl.is_some() {
            self.note_error(format!(
                "state_ttl applies to reduce, sum and process, not to {what}"
            ));
        }
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
        self.refuse_ttl(&format!("the operator \"{name}\""));
        self.keyed_operator(name, make)
    }

    /// [`transform`](Self::transform), for the operators that take a TTL.
    fn keyed_operator<O, F>(self, name: &str, make: F) -> Stream<O::Out>
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
        match self.ttl {
            None => self.keyed_operator(name, move |_, key| {
                KeyedProcessOperator::new(function.clone(), key)
            }),
            Some(ttl) => self.keyed_operator(name, move |_, key| {
                KeyedProcessOperator::with_state(
                    function.clone(),
                    key,
                    ExpiringTimedState::new(ttl),
                )
            }),
        }
    }

    /// Rolling reduce: folds each record into its key's accumulator with `f` and
    /// emits the accumulator after every record.
    pub fn reduce<F>(self, name: &str, f: F) -> Stream<T>
    where
        F: Fn(&mut T, T) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        match self.ttl {
            None => self.keyed_operator(name, move |_, key| KeyedReduce::new(f.clone(), key)),
            Some(ttl) => self.keyed_operator(name, move |_, key| {
                KeyedReduce::with_state(f.clone(), key, ExpiringState::new(ttl))
            }),
        }
    }

    /// Running sum: adds `value(record)` to its key's sum and emits `(key, sum)` per record.
    pub fn sum<F>(self, name: &str, value: F) -> Stream<(K, i64)>
    where
        F: Fn(&T) -> i64 + Send + Sync + 'static,
    {
        let value = Arc::new(value);
        match self.ttl {
            None => self.keyed_operator(name, move |_, key| KeyedSum::new(value.clone(), key)),
            Some(ttl) => self.keyed_operator(name, move |_, key| {
                KeyedSum::with_state(value.clone(), key, ExpiringState::new(ttl))
            }),
        }
    }

    /// Cuts the records of each key into `windows` (event time, processing time
    /// or counts; see [`Windows`]); finish with an aggregate or a function.
    pub fn window(mut self, windows: Windows<T>) -> WindowedStream<T, K> {
        self.refuse_ttl("windows");
        self.ttl = None;
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
