//! [`JobBuilder`] and [`Stream`]: the typed API for sources, transformations and sinks.

use std::borrow::Cow;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use crate::api::graph::{EdgeNode, Exchange, Input, JobGraph, Node, NodeKind};
use crate::api::keyed::KeyedStream;
use crate::api::nodes::{Edge, OperatorFactory, SourceFactory};
use crate::data::{Data, Tagged};
use crate::error::Result;
use crate::exec::exchange::{RowSplitter, Weigh};
use crate::keys::{StableHash, DEFAULT_MAX_PARALLELISM};
use crate::operator::{Operator, OperatorContext, Source};
use crate::operators::{Filter, FlatMap, Map, TryMap, WatermarkAssigner, WatermarkStrategy};

/// The graph under construction, shared by the streams built from it.
pub(crate) struct Draft {
    pub nodes: Vec<Node>,
    /// Misuses the types cannot catch, reported by [`JobBuilder::build`].
    pub errors: Vec<String>,
}

/// Builds a job: add sources, transform the streams they return, end them in sinks.
///
/// ```
/// use weir_runtime::api::JobBuilder;
/// use weir_runtime::operators::{DiscardSink, SequenceSource};
///
/// let job = JobBuilder::new("example");
/// job.source("numbers", |_| SequenceSource::new(0..1000))
///     .filter("even", |n: &u64| n.is_multiple_of(2))
///     .map("square", |n: u64| n * n)
///     .sink("out", |_| DiscardSink::new());
/// let graph = job.build().unwrap();
/// assert_eq!(graph.uids(), ["numbers", "even", "square", "out"]);
/// ```
pub struct JobBuilder {
    name: String,
    draft: Rc<RefCell<Draft>>,
    parallelism: u32,
    max_parallelism: u32,
}

impl JobBuilder {
    /// A job named `name` (the name is part of its checkpoint paths).
    pub fn new(name: &str) -> Self {
        JobBuilder {
            name: name.to_string(),
            draft: Rc::new(RefCell::new(Draft {
                nodes: Vec::new(),
                errors: Vec::new(),
            })),
            parallelism: 1,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
        }
    }

    /// Sets the parallelism of operators that set none (default 1).
    pub fn parallelism(&mut self, parallelism: u32) -> &mut Self {
        self.parallelism = parallelism;
        self
    }

    /// Sets the number of key groups (default 128), fixed for the life of the job's state.
    pub fn max_parallelism(&mut self, max_parallelism: u32) -> &mut Self {
        self.max_parallelism = max_parallelism;
        self
    }

    /// Adds a source named `name`; `make` builds one instance per subtask.
    pub fn source<S, F>(&self, name: &str, make: F) -> Stream<S::Out>
    where
        S: Source,
        F: Fn(&OperatorContext) -> S + Send + Sync + 'static,
    {
        let kind = NodeKind::Source(Arc::new(SourceFactory {
            make,
            _source: PhantomData,
        }));
        let node = push_node(&self.draft, name, kind, Vec::new());
        Stream::from_node(self.draft.clone(), node)
    }

    /// Finishes the job, checking what the types could not (unique uids, parallelism).
    pub fn build(self) -> Result<JobGraph> {
        if let Some(error) = self.draft.borrow().errors.first() {
            return Err(crate::Error::InvalidJob(error.clone()));
        }
        let nodes = std::mem::take(&mut self.draft.borrow_mut().nodes);
        let graph = JobGraph {
            name: self.name,
            nodes,
            default_parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
        };
        graph.validate()?;
        Ok(graph)
    }
}

fn push_node(draft: &Rc<RefCell<Draft>>, name: &str, kind: NodeKind, inputs: Vec<Input>) -> usize {
    let mut draft = draft.borrow_mut();
    draft.nodes.push(Node {
        name: name.to_string(),
        uid: None,
        parallelism: None,
        kind,
        inputs,
    });
    draft.nodes.len() - 1
}

/// A stream of records of type `T`: the output of one operator, or the union of
/// several streams of one type.
///
/// Clone a stream to feed several consumers: each gets every record (fan-out).
pub struct Stream<T> {
    draft: Rc<RefCell<Draft>>,
    /// The operators whose output this is, each with how it reaches the next one.
    inputs: Vec<(usize, Exchange)>,
    /// How much of an output buffer a record fills, if not 1.
    weigh: Option<Weigh<T>>,
    _records: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Stream {
            draft: self.draft.clone(),
            inputs: self.inputs.clone(),
            weigh: self.weigh,
            _records: PhantomData,
        }
    }
}

impl<T: Data> Stream<T> {
    pub(crate) fn from_node(draft: Rc<RefCell<Draft>>, node: usize) -> Self {
        Stream {
            draft,
            inputs: vec![(node, Exchange::Forward)],
            weigh: None,
            _records: PhantomData,
        }
    }

    /// The one operator that produced this stream; a union has none (noted as an
    /// error of the job, naming `what` was asked of it).
    fn producer(&self, what: &str) -> Option<usize> {
        match self.inputs.as_slice() {
            [(node, _)] => Some(*node),
            _ => {
                self.draft.borrow_mut().errors.push(format!(
                    "{what} was set on a union of streams, which is no operator: set it on each stream before the union"
                ));
                None
            }
        }
    }

    /// Sets the uid of the operator that produced this stream (its state is stored under it).
    pub fn uid(self, uid: &str) -> Self {
        if let Some(node) = self.producer("a uid") {
            self.draft.borrow_mut().nodes[node].uid = Some(uid.to_string());
        }
        self
    }

    /// Sets the parallelism of the operator that produced this stream.
    pub fn parallelism(self, parallelism: u32) -> Self {
        if let Some(node) = self.producer("a parallelism") {
            self.draft.borrow_mut().nodes[node].parallelism = Some(parallelism);
        }
        self
    }

    /// Fills the buffers between tasks by `weigh` (the rows a record holds,
    /// for records that are batches of rows) instead of one per record.
    pub fn weighed(mut self, weigh: Weigh<T>) -> Self {
        self.weigh = Some(weigh);
        self
    }

    /// Spreads the records evenly over the next operator's subtasks.
    pub fn rebalance(self) -> Self {
        self.exchange(Exchange::Rebalance)
    }

    /// Sends every record to every subtask of the next operator.
    pub fn broadcast(self) -> Self {
        self.exchange(Exchange::Broadcast)
    }

    /// Sets how every input of this stream reaches the next operator.
    pub(crate) fn exchange(mut self, exchange: Exchange) -> Self {
        for input in &mut self.inputs {
            input.1 = exchange;
        }
        self
    }

    /// This stream and `other` as one: the next operator reads the records of
    /// both (in no particular order between them), and its checkpoints align the
    /// barriers of every input channel of both.
    pub fn union(mut self, other: Stream<T>) -> Self {
        if !Rc::ptr_eq(&self.draft, &other.draft) {
            self.draft
                .borrow_mut()
                .errors
                .push("a union of streams of two different jobs".into());
            return self;
        }
        self.inputs.extend(other.inputs);
        self
    }

    /// Adds the operator `name` reading this stream; `edge` makes the edge for
    /// each of its inputs from the exchange chosen on it.
    pub(crate) fn connect(
        self,
        name: &str,
        kind: NodeKind,
        edge: &dyn Fn(Exchange) -> Arc<dyn EdgeNode>,
    ) -> usize {
        let inputs = self
            .inputs
            .iter()
            .map(|&(from, exchange)| Input {
                from,
                exchange,
                edge: edge(exchange),
            })
            .collect();
        push_node(&self.draft, name, kind, inputs)
    }

    pub(crate) fn draft(&self) -> Rc<RefCell<Draft>> {
        self.draft.clone()
    }

    /// Applies a custom operator; `make` builds one instance per subtask.
    pub fn transform<O, F>(self, name: &str, make: F) -> Stream<O::Out>
    where
        O: Operator<In = T>,
        F: Fn(&OperatorContext) -> O + Send + Sync + 'static,
    {
        let kind = NodeKind::Operator(Arc::new(OperatorFactory {
            make,
            _operator: PhantomData,
        }));
        let draft = self.draft();
        let weigh = self.weigh;
        let edge = |exchange| -> Arc<dyn EdgeNode> {
            Arc::new(Edge {
                weigh,
                ..Edge::<T>::new(exchange, None)
            })
        };
        let node = self.connect(name, kind, &edge);
        Stream::from_node(draft, node)
    }

    /// Applies a keyed operator to records that each hold many rows:
    /// `splitter` sends every row to the subtask owning its key group.
    pub fn transform_split<O, F>(
        self,
        name: &str,
        splitter: Arc<dyn RowSplitter<T>>,
        make: F,
    ) -> Stream<O::Out>
    where
        O: Operator<In = T>,
        F: Fn(&OperatorContext) -> O + Send + Sync + 'static,
    {
        let kind = NodeKind::Operator(Arc::new(OperatorFactory {
            make,
            _operator: PhantomData,
        }));
        let draft = self.draft();
        let edge: Arc<dyn EdgeNode> = Arc::new(Edge {
            split: Some(splitter),
            weigh: self.weigh,
            ..Edge::<T>::new(Exchange::KeyGroups, None)
        });
        let node = self
            .exchange(Exchange::KeyGroups)
            .connect(name, kind, &|_| edge.clone());
        Stream::from_node(draft, node)
    }

    /// Transforms each record with `f`.
    pub fn map<U, F>(self, name: &str, f: F) -> Stream<U>
    where
        U: Data,
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.transform(name, move |_| Map::new(f.clone()))
    }

    /// Transforms each record with `f`; an error fails the task, as a record
    /// the job cannot go on with (one a format cannot encode) should.
    pub fn try_map<U, F>(self, name: &str, f: F) -> Stream<U>
    where
        U: Data,
        F: Fn(T) -> Result<U> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.transform(name, move |_| TryMap::new(f.clone()))
    }

    /// Keeps the records for which `f` is true.
    pub fn filter<F>(self, name: &str, f: F) -> Stream<T>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.transform(name, move |_| Filter::new(f.clone()))
    }

    /// Replaces each record with the records `f` appends to its output.
    pub fn flat_map<U, F>(self, name: &str, f: F) -> Stream<U>
    where
        U: Data,
        F: Fn(T, &mut Vec<U>) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.transform(name, move |_| FlatMap::new(f.clone()))
    }

    /// Gives the stream event time: watermarks made from the records' event times
    /// by `strategy`, which replace any from upstream (see [`WatermarkStrategy`]).
    pub fn assign_watermarks(self, name: &str, strategy: WatermarkStrategy<T>) -> Stream<T> {
        self.transform(name, move |_| WatermarkAssigner::new(strategy.clone()))
    }

    /// Partitions the stream by the key `key` returns, for keyed operators.
    /// For a key that is a field of the record, such as a `String`,
    /// [`Stream::key_by_ref`] avoids building it for every record.
    pub fn key_by<K, F>(self, key: F) -> KeyedStream<T, K>
    where
        K: Data + StableHash + Eq + std::hash::Hash,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        KeyedStream::new(self, Arc::new(move |r: &T| Cow::Owned(key(r))))
    }

    /// Partitions the stream by a key the record holds, such as
    /// `|w: &Word| &w.text`: the exchange hashes it and keyed state finds it
    /// in place, so a key is copied only when it is new to a subtask's state.
    pub fn key_by_ref<K, F>(self, key: F) -> KeyedStream<T, K>
    where
        K: Data + StableHash + Eq + std::hash::Hash,
        F: Fn(&T) -> &K + Send + Sync + 'static,
    {
        KeyedStream::new(self, Arc::new(move |r: &T| Cow::Borrowed(key(r))))
    }

    /// Ends the stream in a sink; `make` builds one instance per subtask.
    pub fn sink<O, F>(self, name: &str, make: F) -> Stream<()>
    where
        O: Operator<In = T, Out = ()>,
        F: Fn(&OperatorContext) -> O + Send + Sync + 'static,
    {
        self.transform(name, make)
    }
}

impl<M: Data, S: Data> Stream<Tagged<M, S>> {
    /// The main and the side records of an operator with a side output, as two
    /// streams (operators `{name}-main` and `{name}-side`, chained to it).
    pub fn split(self, name: &str) -> (Stream<M>, Stream<S>) {
        let main = self.clone().flat_map(&format!("{name}-main"), |t, out| {
            if let Tagged::Main(m) = t {
                out.push(m);
            }
        });
        let side = self.flat_map(&format!("{name}-side"), |t, out| {
            if let Tagged::Side(s) = t {
                out.push(s);
            }
        });
        (main, side)
    }
}
