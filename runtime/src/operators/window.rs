//! Keyed tumbling and sliding windows on processing time, with count and sum aggregates.
//!
//! Windows are aligned to the Unix epoch: a tumbling window of size `s` covers
//! `[k*s, (k+1)*s)`; a sliding window of size `s` and slide `d` starts at every
//! multiple of `d`, so a record falls into `s/d` windows. A window fires (emits one
//! result per key) when the processing time passes its end, and at end of input.
//! Every record of a batch is assigned the time at which the batch arrived.
//! Window state stays on the heap with either backend (windows are short-lived)
//! and is always snapshotted as canonical key-group blobs.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::data::{Barrier, Batch, Data};
use crate::error::{Error, Result};

use crate::keys::StableHash;
use crate::operator::{Operator, OperatorContext};
use crate::operators::keyed_process::KeyFn;
use crate::state::{decode_keyed, encode_keyed, KeyedMap, OperatorSnapshot, RestoredState};

/// The shape of the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Back-to-back windows of one size.
    Tumbling(Duration),
    /// Overlapping windows of `size`, one starting every `slide`.
    Sliding {
        /// Length of each window.
        size: Duration,
        /// Distance between window starts; must divide `size`.
        slide: Duration,
    },
}

impl WindowSpec {
    fn size_and_slide_ms(self) -> (u64, u64) {
        match self {
            WindowSpec::Tumbling(size) => (size.as_millis() as u64, size.as_millis() as u64),
            WindowSpec::Sliding { size, slide } => {
                (size.as_millis() as u64, slide.as_millis() as u64)
            }
        }
    }

    /// Checks that the sizes are usable.
    pub fn validate(self) -> Result<()> {
        let (size, slide) = self.size_and_slide_ms();
        if size == 0 || slide == 0 || size % slide != 0 {
            return Err(Error::InvalidJob(format!(
                "window size {size} ms and slide {slide} ms: both must be at least 1 ms and the slide must divide the size"
            )));
        }
        Ok(())
    }
}

/// What a window emits per key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowResult<K, V> {
    /// The key.
    pub key: K,
    /// Window start, ms since the Unix epoch.
    pub start_ms: u64,
    /// Window end (exclusive), ms since the Unix epoch.
    pub end_ms: u64,
    /// The aggregate.
    pub value: V,
}

/// An aggregate over the records of a window.
pub trait Aggregate<T>: Send + Sync + 'static {
    /// The running value, which is also the result.
    type Acc: Data + Default;
    /// Folds `record` into `acc`.
    fn add(&self, acc: &mut Self::Acc, record: &T);
}

/// Counts records.
pub struct Count;

impl<T> Aggregate<T> for Count {
    type Acc = u64;
    fn add(&self, acc: &mut u64, _: &T) {
        *acc += 1;
    }
}

/// Sums a value taken from each record.
pub struct Sum<F>(pub F);

impl<T, F: Fn(&T) -> i64 + Send + Sync + 'static> Aggregate<T> for Sum<F> {
    type Acc = i64;
    fn add(&self, acc: &mut i64, record: &T) {
        *acc += (self.0)(record);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The window operator: one accumulator per (window start, key).
pub struct WindowOperator<T, K, A: Aggregate<T>> {
    key: KeyFn<T, K>,
    aggregate: std::sync::Arc<A>,
    size_ms: u64,
    slide_ms: u64,
    /// Open windows by start, each with its accumulators by key.
    windows: BTreeMap<u64, KeyedMap<K, A::Acc>>,
    uid: String,
    max_parallelism: u32,
    _records: PhantomData<fn(T)>,
}

impl<T, K, A: Aggregate<T>> WindowOperator<T, K, A> {
    /// Windows of shape `spec` over records keyed by `key`, aggregated with `aggregate`.
    pub fn new(spec: WindowSpec, key: KeyFn<T, K>, aggregate: std::sync::Arc<A>) -> Self {
        let (size_ms, slide_ms) = spec.size_and_slide_ms();
        WindowOperator {
            key,
            aggregate,
            size_ms,
            slide_ms,
            windows: BTreeMap::new(),
            uid: String::new(),
            max_parallelism: 1,
            _records: PhantomData,
        }
    }

    fn fire_until(&mut self, now_ms: u64, output: &mut Batch<WindowResult<K, A::Acc>>)
    where
        K: Data,
    {
        while let Some(entry) = self.windows.first_entry() {
            let start = *entry.key();
            if start + self.size_ms > now_ms {
                break;
            }
            for (key, value) in entry.remove() {
                output.push(WindowResult {
                    key,
                    start_ms: start,
                    end_ms: start + self.size_ms,
                    value,
                });
            }
        }
    }
}

impl<T, K, A> Operator for WindowOperator<T, K, A>
where
    T: Data,
    K: Data + StableHash + Eq + Hash,
    A: Aggregate<T>,
{
    type In = T;
    type Out = WindowResult<K, A::Acc>;

    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.uid = ctx.uid.0.clone();
        self.max_parallelism = ctx.max_parallelism;
        if let Some(restored) = restored {
            let windows = &mut self.windows;
            decode_keyed(
                &self.uid,
                &restored.keyed,
                |key: K, accs: Vec<(u64, A::Acc)>| {
                    for (start, acc) in accs {
                        windows.entry(start).or_default().insert(key.clone(), acc);
                    }
                },
            )?;
        }
        Ok(())
    }

    fn process(&mut self, input: &mut Batch<T>, _output: &mut Batch<Self::Out>) -> Result<()> {
        let now = now_ms();
        let last_start = now - now % self.slide_ms;
        let mut start = (last_start + self.slide_ms).saturating_sub(self.size_ms);
        start -= start % self.slide_ms;
        while start <= last_start {
            let window = self.windows.entry(start).or_default();
            for record in input.iter() {
                let acc = window.entry((self.key)(record)).or_default();
                self.aggregate.add(acc, record);
            }
            start += self.slide_ms;
        }
        input.clear();
        Ok(())
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let start = *self.windows.keys().next()?;
        let due_in = (start + self.size_ms).saturating_sub(now_ms());
        Some(Instant::now() + Duration::from_millis(due_in))
    }

    fn on_time(&mut self, _now: Instant, output: &mut Batch<Self::Out>) -> Result<()> {
        self.fire_until(now_ms(), output);
        Ok(())
    }

    fn end_of_input(&mut self, output: &mut Batch<Self::Out>) -> Result<()> {
        self.fire_until(u64::MAX / 2, output);
        Ok(())
    }

    fn snapshot(&mut self, _barrier: &Barrier) -> Result<OperatorSnapshot> {
        let mut by_key: KeyedMap<&K, Vec<(u64, &A::Acc)>> = KeyedMap::default();
        for (start, window) in &self.windows {
            for (key, acc) in window {
                by_key.entry(key).or_default().push((*start, acc));
            }
        }
        Ok(OperatorSnapshot {
            keyed: encode_keyed(
                &self.uid,
                by_key.iter().map(|(k, v)| (*k, v)),
                self.max_parallelism,
            )?,
            ..Default::default()
        })
    }
}
