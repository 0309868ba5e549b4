//! [`ConnectedStreams`]: two keyed streams read by one two-input operator.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use crate::api::keyed::KeyedStream;
use crate::api::stream::Stream;
use crate::data::{Data, Either, EventTime};
use crate::keys::StableHash;
use crate::operators::window::millis;
use crate::operators::{CoProcess, IntervalJoin, KeyedCoProcess, Shape, Window, WindowJoin};

/// Two streams keyed by the same key type, for two-input operators: every
/// record of a key reaches the same subtask whichever side it comes from, and
/// both sides share the key's state and timers.
pub struct ConnectedStreams<L, R, K: Clone> {
    left: KeyedStream<L, K>,
    right: KeyedStream<R, K>,
}

impl<L, R, K> ConnectedStreams<L, R, K>
where
    L: Data,
    R: Data,
    K: Data + StableHash + Eq + Hash,
{
    pub(crate) fn new(left: KeyedStream<L, K>, right: KeyedStream<R, K>) -> Self {
        ConnectedStreams { left, right }
    }

    /// Both sides as one keyed stream of [`Either`] records: each side is
    /// tagged by an operator chained to its producer (`{name}-left`,
    /// `{name}-right`), then the two are unioned and keyed.
    fn tagged(self, name: &str) -> KeyedStream<Either<L, R>, K> {
        let (left, left_key) = self.left.into_parts();
        let (right, right_key) = self.right.into_parts();
        let left = left.map(&format!("{name}-left"), Either::Left);
        let right = right.map(&format!("{name}-right"), Either::Right);
        KeyedStream::new(
            left.union(right),
            Arc::new(move |e: &Either<L, R>| match e {
                Either::Left(l) => left_key(l),
                Either::Right(r) => right_key(r),
            }),
        )
    }

    /// Applies a two-input keyed function.
    pub fn process<P>(self, name: &str, function: P) -> Stream<P::Out>
    where
        P: KeyedCoProcess<Key = K, Left = L, Right = R>,
    {
        self.tagged(name)
            .process(name, CoProcess::new(Arc::new(function)))
    }

    /// The interval join: `join(key, a, b)` for each `a` of the first stream and
    /// `b` of the second with `a.ts - before <= b.ts <= a.ts + after`, on the
    /// event times the two functions give. State is cleaned up as the watermark
    /// passes; records at or behind it are dropped.
    pub fn interval_join<O, F>(
        self,
        name: &str,
        before: Duration,
        after: Duration,
        left_time: impl Fn(&L) -> EventTime + Send + Sync + 'static,
        right_time: impl Fn(&R) -> EventTime + Send + Sync + 'static,
        join: F,
    ) -> Stream<O>
    where
        O: Data,
        F: Fn(&K, &L, &R) -> O + Send + Sync + 'static,
    {
        let function = IntervalJoin::new(
            -millis(before),
            millis(after),
            Arc::new(left_time),
            Arc::new(right_time),
            join,
        );
        self.process(name, function)
    }

    /// The window join: `join(key, window, a, b)` for each `a` of the first
    /// stream and `b` of the second of one key in the same event-time tumbling
    /// window of `size` (sliding every `slide` if given), when the window fires.
    pub fn window_join<O, F>(
        self,
        name: &str,
        size: Duration,
        slide: Option<Duration>,
        left_time: impl Fn(&L) -> EventTime + Send + Sync + 'static,
        right_time: impl Fn(&R) -> EventTime + Send + Sync + 'static,
        join: F,
    ) -> Stream<O>
    where
        O: Data,
        F: Fn(&K, Window, &L, &R) -> O + Send + Sync + 'static,
    {
        let size_ms = millis(size);
        let shape = match slide {
            Some(slide) => Shape::Sliding {
                size: size_ms,
                slide: millis(slide),
                offset: 0,
            },
            None => Shape::Tumbling {
                size: size_ms,
                offset: 0,
            },
        };
        let check = shape.validate();
        let function = WindowJoin::new(shape, Arc::new(left_time), Arc::new(right_time), join);
        let stream = self.tagged(name);
        if let Err(e) = check {
            stream.note_error(format!("window join {name}: {e}"));
        }
        stream.process(name, CoProcess::new(Arc::new(function)))
    }
}
