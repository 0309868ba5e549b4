//! The source shared by the generating pipelines: a deterministic record generator
//! behind a rate limit and a record bound, split across subtasks.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::data::{Batch, Data};
use crate::error::{Error, Result};
use crate::ids::CheckpointId;
use crate::operator::{OperatorContext, Source, SourceStatus};
use crate::state::{OperatorSnapshot, RestoredState};

/// Produces a subtask's records in order; the same state always produces the same records.
pub trait Generator: Send + 'static {
    /// Record type.
    type Out: Data;
    /// Called once with the subtask; `state` is what [`Generator::snapshot`] returned, on restore.
    fn open(&mut self, ctx: &OperatorContext, state: Option<&[u8]>) -> Result<()>;
    /// Appends the subtask's records number `position .. position + count`.
    fn generate(&mut self, position: u64, count: usize, out: &mut Batch<Self::Out>);
    /// State beyond the position needed to continue identically (none by default).
    fn snapshot(&self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// How many records subtask `index` of `parallelism` emits when the job emits `total`.
    fn share(&self, total: u64, index: u32, parallelism: u32) -> u64 {
        let (i, p) = (u64::from(index), u64::from(parallelism));
        total / p + u64::from(i < total % p)
    }
}

/// Where a generating subtask is.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Position {
    emitted: u64,
}

/// A source driving a [`Generator`], optionally bounded and rate-limited.
pub struct GeneratorSource<G> {
    generator: G,
    total: Option<u64>,
    rate: Option<f64>,
    limit: u64,
    position: Position,
    started: Option<(Instant, u64)>,
}

impl<G: Generator> GeneratorSource<G> {
    /// A source of `total` records (unbounded if `None`) at `rate` records per second
    /// over all subtasks (unlimited if `None`).
    pub fn new(generator: G, total: Option<u64>, rate: Option<f64>) -> Self {
        GeneratorSource {
            generator,
            total,
            rate,
            limit: u64::MAX,
            position: Position::default(),
            started: None,
        }
    }
}

impl<G: Generator> Source for GeneratorSource<G> {
    type Out = G::Out;

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        let bad = |e: String| Error::State {
            uid: ctx.uid.0.clone(),
            reason: e,
        };
        let (mut position, mut state) = (None, None);
        if let Some(r) = restored {
            position = r.position;
            state = r.operator_state;
        }
        if let Some(p) = position {
            self.position =
                serde_json::from_value(p).map_err(|e| bad(format!("bad position: {e}")))?;
        }
        self.generator.open(ctx, state.as_deref())?;
        if let Some(total) = self.total {
            self.limit = self
                .generator
                .share(total, ctx.subtask.index, ctx.subtask.parallelism);
        }
        self.rate = self.rate.map(|r| r / f64::from(ctx.subtask.parallelism));
        Ok(())
    }

    fn poll(&mut self, output: &mut Batch<G::Out>, max: usize) -> Result<SourceStatus> {
        let left = self.limit - self.position.emitted;
        if left == 0 {
            return Ok(SourceStatus::Finished);
        }
        let mut count = left.min(max as u64);
        if let Some(rate) = self.rate {
            let now = Instant::now();
            let (t0, base) = *self.started.get_or_insert((now, self.position.emitted));
            let allowed = base + (now.duration_since(t0).as_secs_f64() * rate) as u64;
            if allowed <= self.position.emitted {
                let wait = (self.position.emitted + 1 - base) as f64 / rate;
                return Ok(SourceStatus::Idle(t0 + Duration::from_secs_f64(wait)));
            }
            count = count.min(allowed - self.position.emitted);
        }
        self.generator
            .generate(self.position.emitted, count as usize, output);
        self.position.emitted += count;
        Ok(SourceStatus::Ready)
    }

    fn snapshot(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot> {
        Ok(OperatorSnapshot {
            position: Some(
                serde_json::to_value(self.position).map_err(|e| Error::Internal(e.to_string()))?,
            ),
            operator_state: self.generator.snapshot()?,
            keyed: Vec::new(),
        })
    }
}

/// Records are numbered globally and dealt to subtasks in blocks of this many.
pub const BLOCK: u64 = 1024;

/// The global index of subtask `index`'s record number `k` when blocks are dealt round-robin.
#[inline]
pub fn block_index(k: u64, index: u32, parallelism: u32) -> u64 {
    ((k / BLOCK) * u64::from(parallelism) + u64::from(index)) * BLOCK + k % BLOCK
}

/// How many global indices below `total` subtask `index` of `parallelism` owns.
pub fn block_share(total: u64, index: u32, parallelism: u32) -> u64 {
    let (i, p) = (u64::from(index), u64::from(parallelism));
    let full = total / BLOCK;
    let full_mine = if full > i { (full - i - 1) / p + 1 } else { 0 };
    let rest = if full % p == i { total % BLOCK } else { 0 };
    full_mine * BLOCK + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_deal_every_index_below_the_total_exactly_once() {
        for total in [0, 1, 1023, 1024, 5000, 20_480, 33_333] {
            for p in 1..=4 {
                let mut seen = Vec::new();
                for i in 0..p {
                    let share = block_share(total, i, p);
                    seen.extend((0..share).map(|k| block_index(k, i, p)));
                }
                seen.sort();
                assert_eq!(seen, (0..total).collect::<Vec<_>>(), "total {total} p {p}");
            }
        }
    }
}
