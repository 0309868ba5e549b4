//! The generic factories behind the graph's type-erased nodes and edges.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::api::graph::{downcast, BuildCtx, EdgeNode, Exchange, OperatorNode, SourceNode};
use crate::data::{Data, Message};
use crate::error::Result;
use crate::exec::chain::{Discard, Downstream, Link};
use crate::exec::channel::{ChannelSender, CreditReturn};
use crate::exec::config::ExecConfig;
use crate::exec::exchange::{KeyHash, KeyRouter, Output, Route, RowSplitter, SplitRouter, Weigh};
use crate::exec::fanout::Fanout;
use crate::exec::pool::{local_channel, LocalReceiver, LocalSender};
use crate::exec::task::{InputTask, SourceTask, TaskBody};
use crate::metrics::TaskMetrics;
use crate::net::{register_inbound, ChannelKey, Connection, DataPlane, RemoteSender};
use crate::operator::{Operator, OperatorContext, Source};

fn discard<T: Data>() -> Box<dyn Any + Send> {
    Box::new(Box::new(Discard) as Box<dyn Downstream<T>>)
}

/// Makes one source instance per subtask.
pub(crate) struct SourceFactory<S, F> {
    pub make: F,
    pub _source: PhantomData<fn() -> S>,
}

impl<S, F> SourceNode for SourceFactory<S, F>
where
    S: Source,
    F: Fn(&OperatorContext) -> S + Send + Sync,
{
    fn build(
        &self,
        ctx: BuildCtx<'_>,
        downstream: Box<dyn Any + Send>,
    ) -> Result<Box<dyn TaskBody>> {
        let head: Box<dyn Downstream<S::Out>> = downcast(downstream, &ctx.op.name)?;
        let mut source = (self.make)(&ctx.op);
        source.open(&ctx.op, ctx.restored)?;
        Ok(Box::new(SourceTask::new(
            source,
            &ctx.op,
            head,
            ctx.metrics,
            ctx.config.batch_size,
        )))
    }

    fn discard(&self) -> Box<dyn Any + Send> {
        discard::<S::Out>()
    }
}

/// Makes one operator instance per subtask.
pub(crate) struct OperatorFactory<O, F> {
    pub make: F,
    pub _operator: PhantomData<fn() -> O>,
}

impl<O, F> OperatorNode for OperatorFactory<O, F>
where
    O: Operator,
    F: Fn(&OperatorContext) -> O + Send + Sync,
{
    fn build(
        &self,
        ctx: BuildCtx<'_>,
        downstream: Box<dyn Any + Send>,
    ) -> Result<Box<dyn Any + Send>> {
        let next: Box<dyn Downstream<O::Out>> = downcast(downstream, &ctx.op.name)?;
        let mut op = (self.make)(&ctx.op);
        op.open(&ctx.op, ctx.restored)?;
        let link: Box<dyn Downstream<O::In>> = Box::new(Link::new(op, &ctx.op, next, ctx.metrics));
        Ok(Box::new(link))
    }

    fn discard(&self) -> Box<dyn Any + Send> {
        discard::<O::Out>()
    }
}

/// An edge carrying records of type `T`.
pub(crate) struct Edge<T> {
    pub exchange: Exchange,
    /// The key hash, for [`Exchange::KeyGroups`].
    pub key: Option<KeyHash<T>>,
    /// For [`Exchange::KeyGroups`] of records that hold many rows: how they split.
    pub split: Option<Arc<dyn RowSplitter<T>>>,
    /// How much of a buffer a record fills, if not 1.
    pub weigh: Option<Weigh<T>>,
}

impl<T> Edge<T> {
    /// An edge of `exchange`, hashing keys with `key` if keyed.
    pub fn new(exchange: Exchange, key: Option<KeyHash<T>>) -> Self {
        Edge {
            exchange,
            key,
            split: None,
            weigh: None,
        }
    }
}

impl<T: Data> EdgeNode for Edge<T> {
    fn channel(&self, capacity: usize) -> (Box<dyn Any + Send>, Box<dyn Any + Send>) {
        let (tx, rx) = local_channel::<T>(capacity);
        (Box::new(tx), Box::new(rx))
    }

    fn output(
        &self,
        senders: Vec<Box<dyn Any + Send>>,
        max_parallelism: u32,
        config: &ExecConfig,
        metrics: Arc<TaskMetrics>,
    ) -> Result<Box<dyn Any + Send>> {
        // In-process channels come as local senders, remote ones already boxed.
        let senders: Vec<Box<dyn ChannelSender<T>>> = senders
            .into_iter()
            .map(|s| match s.downcast::<LocalSender<T>>() {
                Ok(tx) => Ok(Box::new(*tx) as Box<dyn ChannelSender<T>>),
                Err(other) => downcast::<Box<dyn ChannelSender<T>>>(other, "an output channel"),
            })
            .collect::<Result<_>>()?;
        let channels = senders.len() as u32;
        let route = match (self.exchange, &self.key, &self.split) {
            (Exchange::KeyGroups, Some(hash), _) => {
                Route::KeyGroups(KeyRouter::new(hash.clone(), max_parallelism, channels))
            }
            (Exchange::KeyGroups, None, Some(split)) => {
                Route::Split(SplitRouter::new(split.clone(), max_parallelism, channels))
            }
            _ if channels == 1 => Route::Forward,
            (Exchange::Broadcast, _, _) => Route::Broadcast,
            _ => Route::Rebalance,
        };
        let output: Box<dyn Downstream<T>> = Box::new(
            Output::new(
                senders,
                route,
                config.batch_size,
                config.buffer_timeout,
                metrics,
            )
            .weighed(self.weigh),
        );
        Ok(Box::new(output))
    }

    fn remote_sender(&self, conn: Arc<Connection>, key: ChannelKey) -> Box<dyn Any + Send> {
        Box::new(Box::new(RemoteSender::<T>::new(conn, key)) as Box<dyn ChannelSender<T>>)
    }

    fn remote_receiver(
        &self,
        plane: &DataPlane,
        conn: &Arc<Connection>,
        key: ChannelKey,
        capacity: usize,
    ) -> Result<Box<dyn Any + Send>> {
        Ok(Box::new(register_inbound::<T>(plane, conn, key, capacity)?))
    }

    fn fanout(&self, outputs: Vec<Box<dyn Any + Send>>) -> Result<Box<dyn Any + Send>> {
        let outputs = outputs
            .into_iter()
            .map(|o| downcast::<Box<dyn Downstream<T>>>(o, "a fanned-out output"))
            .collect::<Result<Vec<_>>>()?;
        let fanout: Box<dyn Downstream<T>> = Box::new(Fanout::new(outputs));
        Ok(Box::new(fanout))
    }

    fn input_task(
        &self,
        receivers: Vec<Box<dyn Any + Send>>,
        head: Box<dyn Any + Send>,
        batch_size: usize,
    ) -> Result<Box<dyn TaskBody>> {
        // In-process inputs come as receivers, remote ones with their credit return.
        let mut inputs = Vec::with_capacity(receivers.len());
        let mut credits = Vec::with_capacity(receivers.len());
        let mut pools = Vec::with_capacity(receivers.len());
        for r in receivers {
            match r.downcast::<LocalReceiver<T>>() {
                Ok(local) => {
                    let LocalReceiver { rx, pool } = *local;
                    inputs.push(rx);
                    credits.push(None);
                    pools.push(Some(pool));
                }
                Err(other) => {
                    let (rx, credit) = downcast::<(Receiver<Message<T>>, CreditReturn)>(
                        other,
                        "an input channel",
                    )?;
                    inputs.push(rx);
                    credits.push(Some(credit));
                    pools.push(None);
                }
            }
        }
        let head: Box<dyn Downstream<T>> = downcast(head, "a task's first operator")?;
        Ok(Box::new(
            InputTask::new(inputs, head)
                .with_credits(credits)
                .with_pools(pools, batch_size),
        ))
    }
}
