//! A sink that drops every record (for benchmarks).

use crate::data::{Batch, Data};
use crate::error::Result;
use crate::operator::Operator;

/// Drops every record.
pub struct DiscardSink<T>(std::marker::PhantomData<fn(T)>);

impl<T> DiscardSink<T> {
    /// A new discarding sink.
    pub fn new() -> Self {
        DiscardSink(std::marker::PhantomData)
    }
}

impl<T> Default for DiscardSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Data> Operator for DiscardSink<T> {
    type In = T;
    type Out = ();

    fn process(&mut self, input: &mut Batch<T>, _output: &mut Batch<()>) -> Result<()> {
        input.clear();
        Ok(())
    }
}
