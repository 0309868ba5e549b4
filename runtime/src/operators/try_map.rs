//! `try_map`: one record in, one record out, or an error that fails the task.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::data::{Batch, Data};
use crate::error::Result;
use crate::operator::Operator;

/// Applies a fallible function to every record; the first error fails the
/// task (a [`crate::Error::BadRecord`] fails the job without a restart).
pub struct TryMap<T, U, F> {
    f: Arc<F>,
    _types: PhantomData<fn(T) -> U>,
}

impl<T, U, F> TryMap<T, U, F> {
    /// A map applying `f`.
    pub fn new(f: Arc<F>) -> Self {
        TryMap {
            f,
            _types: PhantomData,
        }
    }
}

impl<T: Data, U: Data, F: Fn(T) -> Result<U> + Send + Sync + 'static> Operator for TryMap<T, U, F> {
    type In = T;
    type Out = U;

    fn process(&mut self, input: &mut Batch<T>, output: &mut Batch<U>) -> Result<()> {
        output.reserve(input.len());
        for record in input.drain(..) {
            output.push((self.f)(record)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn halve(n: u64) -> Result<u64> {
        match n % 2 {
            0 => Ok(n / 2),
            _ => Err(Error::BadRecord {
                operator: "halve".into(),
                reason: format!("{n} is odd"),
            }),
        }
    }

    #[test]
    fn records_map_in_order_until_one_fails() {
        let mut op = TryMap::new(Arc::new(halve));
        let (mut input, mut output) = (vec![2, 8, 4], Vec::new());
        op.process(&mut input, &mut output).unwrap();
        assert_eq!((input, output), (vec![], vec![1, 4, 2]));
        let (mut input, mut output) = (vec![6, 3, 10], Vec::new());
        let error = op.process(&mut input, &mut output).unwrap_err();
        assert_eq!(error.to_string(), "bad record in halve: 3 is odd");
    }
}
