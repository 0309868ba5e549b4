//! A sink measuring end-to-end latency: records carry the wall-clock time their
//! source emitted them, and the sink counts `now - stamp` into a histogram that it
//! writes to a file when its input ends (for `weir bench`).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::data::{Batch, Data};
use crate::error::{Error, Result};
use crate::histogram::Histogram;
use crate::operator::{Operator, OperatorContext};

/// Nanoseconds since the Unix epoch: the stamp sources put on records. Wall-clock
/// time, so that a stamp taken in one process can be compared in another on the
/// same machine.
#[inline]
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Counts each record's latency; writes `{path}.{subtask}` at the end of its input.
pub struct LatencySink<T> {
    path: PathBuf,
    stamp: fn(&T) -> u64,
    warmup: Duration,
    started: Option<Instant>,
    histogram: Histogram,
    subtask: u32,
}

impl<T> LatencySink<T> {
    /// A sink reading each record's stamp with `stamp`, ignoring records that
    /// arrive in the first `warmup` after the first one.
    pub fn new(path: impl Into<PathBuf>, stamp: fn(&T) -> u64, warmup: Duration) -> Self {
        LatencySink {
            path: path.into(),
            stamp,
            warmup,
            started: None,
            histogram: Histogram::default(),
            subtask: 0,
        }
    }

    /// Where this subtask writes its histogram.
    pub fn file(path: &std::path::Path, subtask: u32) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{subtask}"));
        PathBuf::from(name)
    }
}

impl<T: Data> Operator for LatencySink<T> {
    type In = T;
    type Out = ();

    fn open(
        &mut self,
        ctx: &OperatorContext,
        _restored: Option<crate::state::RestoredState>,
    ) -> Result<()> {
        self.subtask = ctx.subtask.index;
        Ok(())
    }

    fn process(&mut self, input: &mut Batch<T>, _output: &mut Batch<()>) -> Result<()> {
        let started = *self.started.get_or_insert_with(Instant::now);
        if started.elapsed() >= self.warmup {
            // One clock read per batch: the records of a batch arrive together.
            let now = now_nanos();
            for record in input.iter() {
                self.histogram
                    .record(now.saturating_sub((self.stamp)(record)));
            }
        }
        input.clear();
        Ok(())
    }

    fn end_of_input(&mut self, _output: &mut Batch<()>) -> Result<()> {
        let file = Self::file(&self.path, self.subtask);
        std::fs::write(&file, self.histogram.to_text())
            .map_err(|e| Error::io("writing the latency histogram to", &file, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OperatorUid, Subtask};
    use crate::keys::KeyGroupRange;

    #[test]
    fn latencies_are_counted_after_the_warmup_and_written_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latency");
        let mut sink = LatencySink::new(&path, |r: &u64| *r, Duration::ZERO);
        let ctx = OperatorContext {
            job: "job".into(),
            uid: OperatorUid("sink".into()),
            name: "sink".into(),
            subtask: Subtask {
                index: 3,
                parallelism: 4,
            },
            max_parallelism: 128,
            key_groups: KeyGroupRange { start: 0, end: 128 },
            attempt: 1,
            state: Default::default(),
            checkpoint_interval: None,
            metrics: Default::default(),
        };
        sink.open(&ctx, None).unwrap();
        let stamp = now_nanos() - 2_000_000;
        sink.process(&mut vec![stamp, stamp], &mut Vec::new())
            .unwrap();
        sink.end_of_input(&mut Vec::new()).unwrap();
        let text = std::fs::read_to_string(LatencySink::<u64>::file(&path, 3)).unwrap();
        let h = Histogram::from_text(&text).unwrap();
        assert_eq!(h.count(), 2);
        assert!(h.quantile(0.5) >= 1_900_000, "{}", h.quantile(0.5));
    }
}
