//! One stream feeding several consumers: every batch, barrier and end of input
//! goes to each of them.

use std::time::Instant;

use crate::data::{Barrier, Batch, Data, Watermark};
use crate::error::Result;
use crate::exec::chain::{Downstream, SnapshotPart};
use crate::ids::CheckpointId;

/// Sends what reaches it to every one of its outputs (each the exchange to one
/// consumer). A batch is copied for all outputs but the last, which takes the
/// original; the copy buffer is kept, so fanning out allocates only while it grows.
pub struct Fanout<T> {
    outputs: Vec<Box<dyn Downstream<T>>>,
    copy: Batch<T>,
}

impl<T> Fanout<T> {
    /// A fan-out to `outputs` (at least two; one needs no fan-out).
    pub fn new(outputs: Vec<Box<dyn Downstream<T>>>) -> Self {
        Fanout {
            outputs,
            copy: Vec::new(),
        }
    }
}

impl<T: Data> Downstream<T> for Fanout<T> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        let Some((last, others)) = self.outputs.split_last_mut() else {
            batch.clear();
            return Ok(());
        };
        for output in others {
            self.copy.clear();
            self.copy.extend_from_slice(batch);
            output.push(&mut self.copy)?;
        }
        last.push(batch)
    }

    fn barrier(&mut self, barrier: Barrier, parts: &mut Vec<SnapshotPart>) -> Result<()> {
        self.outputs
            .iter_mut()
            .try_for_each(|o| o.barrier(barrier, parts))
    }

    fn snapshot(&mut self, barrier: Barrier, parts: &mut Vec<SnapshotPart>) -> Result<()> {
        self.outputs
            .iter_mut()
            .try_for_each(|o| o.snapshot(barrier, parts))
    }

    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.outputs
            .iter_mut()
            .try_for_each(|o| o.checkpoint_complete(id))
    }

    fn next_wakeup(&self) -> Option<Instant> {
        self.outputs.iter().filter_map(|o| o.next_wakeup()).min()
    }

    fn on_time(&mut self, now: Instant) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.on_time(now))
    }

    fn end_of_input(&mut self) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.end_of_input())
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.outputs
            .iter_mut()
            .try_for_each(|o| o.watermark(watermark))
    }

    fn idle(&mut self) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.idle())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records what reaches it.
    struct Tap(Arc<Mutex<Vec<String>>>);

    impl Downstream<u32> for Tap {
        fn push(&mut self, batch: &mut Batch<u32>) -> Result<()> {
            let mut seen = self.0.lock().unwrap();
            seen.extend(batch.drain(..).map(|r| r.to_string()));
            Ok(())
        }
        fn barrier(&mut self, b: Barrier, _: &mut Vec<SnapshotPart>) -> Result<()> {
            self.0.lock().unwrap().push(format!("barrier {}", b.id));
            Ok(())
        }
        fn snapshot(&mut self, _: Barrier, _: &mut Vec<SnapshotPart>) -> Result<()> {
            Ok(())
        }
        fn checkpoint_complete(&mut self, _: CheckpointId) -> Result<()> {
            Ok(())
        }
        fn next_wakeup(&self) -> Option<Instant> {
            None
        }
        fn on_time(&mut self, _: Instant) -> Result<()> {
            Ok(())
        }
        fn end_of_input(&mut self) -> Result<()> {
            self.0.lock().unwrap().push("end".into());
            Ok(())
        }
        fn watermark(&mut self, w: Watermark) -> Result<()> {
            self.0.lock().unwrap().push(format!("watermark {}", w.0));
            Ok(())
        }
        fn idle(&mut self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_output_sees_every_record_barrier_and_end_in_order() {
        let taps: Vec<Arc<Mutex<Vec<String>>>> = (0..3).map(|_| Arc::default()).collect();
        let mut fanout = Fanout::new(
            taps.iter()
                .map(|t| Box::new(Tap(t.clone())) as Box<dyn Downstream<u32>>)
                .collect(),
        );
        let mut batch = vec![1, 2];
        fanout.push(&mut batch).unwrap();
        assert!(batch.is_empty(), "the batch is taken");
        fanout
            .barrier(Barrier::checkpoint(CheckpointId(4), None), &mut Vec::new())
            .unwrap();
        fanout.push(&mut vec![3]).unwrap();
        fanout.watermark(Watermark(7)).unwrap();
        fanout.end_of_input().unwrap();
        for tap in &taps {
            assert_eq!(
                *tap.lock().unwrap(),
                ["1", "2", "barrier 4", "3", "watermark 7", "end"],
                "each consumer, in order"
            );
        }
    }
}
