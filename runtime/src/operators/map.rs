//! `map`: one record in, one record out.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::data::{Batch, Data};
use crate::error::Result;
use crate::operator::Operator;

/// Applies a function to every record.
pub struct Map<T, U, F> {
    f: Arc<F>,
    _types: PhantomData<fn(T) -> U>,
}

impl<T, U, F> Map<T, U, F> {
    /// A map applying `f`.
    pub fn new(f: Arc<F>) -> Self {
        Map {
            f,
            _types: PhantomData,
        }
    }
}

impl<T: Data, U: Data, F: Fn(T) -> U + Send + Sync + 'static> Operator for Map<T, U, F> {
    type In = T;
    type Out = U;

    fn process(&mut self, input: &mut Batch<T>, output: &mut Batch<U>) -> Result<()> {
        output.extend(input.drain(..).map(|r| (self.f)(r)));
        Ok(())
    }
}
