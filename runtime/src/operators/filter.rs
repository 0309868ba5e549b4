//! `filter`: keeps the records a predicate accepts, in place.

use std::sync::Arc;

use crate::data::{Batch, Data};
use crate::error::Result;
use crate::operator::Operator;

/// Keeps the records for which the predicate is true.
pub struct Filter<T, F> {
    f: Arc<F>,
    _types: std::marker::PhantomData<fn(T)>,
}

impl<T, F> Filter<T, F> {
    /// A filter with predicate `f`.
    pub fn new(f: Arc<F>) -> Self {
        Filter {
            f,
            _types: std::marker::PhantomData,
        }
    }
}

impl<T: Data, F: Fn(&T) -> bool + Send + Sync + 'static> Operator for Filter<T, F> {
    type In = T;
    type Out = T;

    fn process(&mut self, input: &mut Batch<T>, output: &mut Batch<T>) -> Result<()> {
        input.retain(|r| (self.f)(r));
        if output.is_empty() {
            // Hand the kept records on without copying them.
            std::mem::swap(input, output);
        } else {
            output.append(input);
        }
        Ok(())
    }
}
