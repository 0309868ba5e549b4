//! `flat_map`: each record becomes zero or more records.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::data::{Batch, Data};
use crate::error::Result;
use crate::operator::Operator;

/// Replaces each record with what a function appends to the output.
pub struct FlatMap<T, U, F> {
    f: Arc<F>,
    _types: PhantomData<fn(T) -> U>,
}

impl<T, U, F> FlatMap<T, U, F> {
    /// A flat map applying `f`.
    pub fn new(f: Arc<F>) -> Self {
        FlatMap {
            f,
            _types: PhantomData,
        }
    }
}

impl<T: Data, U: Data, F: Fn(T, &mut Vec<U>) + Send + Sync + 'static> Operator
    for FlatMap<T, U, F>
{
    type In = T;
    type Out = U;

    fn process(&mut self, input: &mut Batch<T>, output: &mut Batch<U>) -> Result<()> {
        for record in input.drain(..) {
            (self.f)(record, output);
        }
        Ok(())
    }
}
