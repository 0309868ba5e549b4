//! A source of the integers in a range, split across subtasks.

use std::ops::Range;

use crate::data::{Barrier, Batch};
use crate::error::{Error, Result};

use crate::operator::{OperatorContext, Source, SourceStatus};
use crate::state::{OperatorSnapshot, RestoredState};

/// Emits the integers of a range; subtask `i` of `p` emits those with `n % p == i`.
pub struct SequenceSource {
    range: Range<u64>,
    next: u64,
    step: u64,
}

impl SequenceSource {
    /// A source over `range`.
    pub fn new(range: Range<u64>) -> Self {
        SequenceSource {
            next: range.start,
            range,
            step: 1,
        }
    }
}

impl Source for SequenceSource {
    type Out = u64;

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.step = u64::from(ctx.subtask.parallelism);
        self.next = self.range.start + u64::from(ctx.subtask.index);
        if let Some(position) = restored.and_then(|r| r.position) {
            self.next = serde_json::from_value(position).map_err(|e| Error::State {
                uid: ctx.uid.0.clone(),
                reason: format!("bad position: {e}"),
            })?;
        }
        Ok(())
    }

    fn poll(&mut self, output: &mut Batch<u64>, max: usize) -> Result<SourceStatus> {
        for _ in 0..max {
            if self.next >= self.range.end {
                return Ok(SourceStatus::Finished);
            }
            output.push(self.next);
            self.next += self.step;
        }
        Ok(SourceStatus::Ready)
    }

    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        Ok(OperatorSnapshot {
            position: Some(self.next.into()),
            ..Default::default()
        })
    }
}
