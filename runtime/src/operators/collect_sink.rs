//! A sink that collects records into a shared vector, for tests of jobs
//! (at least once: a replay after a failure collects records again).

use std::sync::{Arc, Mutex};

use crate::data::{Batch, Data};
use crate::error::Result;
use crate::operator::Operator;

/// Appends every record to a shared vector.
pub struct CollectSink<T> {
    into: Arc<Mutex<Vec<T>>>,
}

impl<T> CollectSink<T> {
    /// A sink appending to `into`.
    pub fn new(into: Arc<Mutex<Vec<T>>>) -> Self {
        CollectSink { into }
    }
}

impl<T: Data> Operator for CollectSink<T> {
    type In = T;
    type Out = ();

    fn process(&mut self, input: &mut Batch<T>, _output: &mut Batch<()>) -> Result<()> {
        self.into
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(input);
        Ok(())
    }
}
