//! [`JobBuilder`] and [`Stream`]: the typed API for sources, transformations and sinks.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use crate::api::graph::{EdgeNode, Exchange, Input, JobGraph, Node, NodeKind};
use crate::api::keyed::KeyedStream;
use crate::api::nodes::{Edge, OperatorFactory, SourceFactory};
use crate::data::Data;
use crate::error::Result;
use crate::keys::{StableHash, DEFAULT_MAX_PARALLELISM};
use crate::operator::{Operator, OperatorContext, Source};
use crate::operators::{Filter, FlatMap, Map};

/// The graph under construction, shared by the streams built from it.
pub(crate) struct Draft {
    pub nodes: Vec<Node>,
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
            draft: Rc::new(RefCell::new(Draft { nodes: Vec::new() })),
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
        let node = push_node(&self.draft, name, kind, None);
        Stream::from_node(self.draft.clone(), node)
    }

    /// Finishes the job, checking what the types could not (unique uids, parallelism).
    pub fn build(self) -> Result<JobGraph> {
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

fn push_node(
    draft: &Rc<RefCell<Draft>>,
    name: &str,
    kind: NodeKind,
    input: Option<Input>,
) -> usize {
    let mut draft = draft.borrow_mut();
    draft.nodes.push(Node {
        name: name.to_string(),
        uid: None,
        parallelism: None,
        kind,
        input,
    });
    draft.nodes.len() - 1
}

/// A stream of records of type `T`: the output of one operator.
///
/// Each method consumes the stream, so every operator has at most one consumer.
pub struct Stream<T> {
    draft: Rc<RefCell<Draft>>,
    node: usize,
    exchange: Exchange,
    _records: PhantomData<fn() -> T>,
}

impl<T: Data> Stream<T> {
    pub(crate) fn from_node(draft: Rc<RefCell<Draft>>, node: usize) -> Self {
        Stream {
            draft,
            node,
            exchange: Exchange::Forward,
            _records: PhantomData,
        }
    }

    /// Sets the uid of the operator that produced this stream (its state is stored under it).
    pub fn uid(self, uid: &str) -> Self {
        self.draft.borrow_mut().nodes[self.node].uid = Some(uid.to_string());
        self
    }

    /// Sets the parallelism of the operator that produced this stream.
    pub fn parallelism(self, parallelism: u32) -> Self {
        self.draft.borrow_mut().nodes[self.node].parallelism = Some(parallelism);
        self
    }

    /// Spreads the records evenly over the next operator's subtasks.
    pub fn rebalance(mut self) -> Self {
        self.exchange = Exchange::Rebalance;
        self
    }

    /// Sends every record to every subtask of the next operator.
    pub fn broadcast(mut self) -> Self {
        self.exchange = Exchange::Broadcast;
        self
    }

    pub(crate) fn connect(
        self,
        name: &str,
        kind: NodeKind,
        edge: Arc<dyn EdgeNode>,
        exchange: Exchange,
    ) -> usize {
        let input = Input {
            from: self.node,
            exchange,
            edge,
        };
        push_node(&self.draft, name, kind, Some(input))
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
        let exchange = self.exchange;
        let edge = Arc::new(Edge::<T> {
            exchange,
            key: None,
        });
        let draft = self.draft();
        let node = self.connect(name, kind, edge, exchange);
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

    /// Partitions the stream by the key `key` returns, for keyed operators.
    pub fn key_by<K, F>(self, key: F) -> KeyedStream<T, K>
    where
        K: Data + StableHash + Eq + std::hash::Hash,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        KeyedStream::new(self, Arc::new(key))
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
