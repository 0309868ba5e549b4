//! Simulated work: an operator that passes its records on after waiting a
//! fixed time per record, as a call to an external service would keep the task
//! waiting. It gives a job a load that its parallelism decides, without
//! needing the cores (for trying the autoscaler on a small machine).

use std::marker::PhantomData;
use std::time::Duration;

use crate::data::{Batch, Data};
use crate::error::Result;
use crate::operator::Operator;

/// Waits `per_record` for each record of a batch, then passes the batch on.
pub struct SimulatedWork<T> {
    per_record: Duration,
    _records: PhantomData<fn(T)>,
}

impl<T> SimulatedWork<T> {
    /// An operator waiting `per_record` per record.
    pub fn new(per_record: Duration) -> Self {
        SimulatedWork {
            per_record,
            _records: PhantomData,
        }
    }
}

impl<T: Data> Operator for SimulatedWork<T> {
    type In = T;
    type Out = T;

    fn process(&mut self, input: &mut Batch<T>, output: &mut Batch<T>) -> Result<()> {
        let records = u32::try_from(input.len()).unwrap_or(u32::MAX);
        std::thread::sleep(self.per_record.saturating_mul(records));
        output.append(input);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_batch_waits_its_records_time_and_passes_unchanged() {
        let mut work = SimulatedWork::new(Duration::from_millis(2));
        let (mut input, mut output) = (vec![1u64, 2, 3, 4, 5], Vec::new());
        let started = Instant::now();
        work.process(&mut input, &mut output).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(10));
        assert!(input.is_empty());
        assert_eq!(output, vec![1, 2, 3, 4, 5]);
    }
}
