//! A task's output exchange: routes records to downstream channels in batches.
//!
//! Records are appended to one buffer per downstream channel. A buffer is sent
//! when it holds `batch_size` records, or when `buffer_timeout` has passed since
//! the first record that is still buffered (0 sends after every pushed batch).
//! Sending blocks while the channel is full: that is how backpressure reaches
//! the sources, and the time spent blocked is counted. A buffer that is sent is
//! replaced by one its consumer returned ([`crate::exec::pool`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;

use crate::data::{Barrier, Batch, Data, Message, Watermark};
use crate::error::{Error, Result};
use crate::exec::chain::{Downstream, SnapshotPart};
use crate::exec::channel::ChannelSender;
use crate::ids::CheckpointId;
use crate::keys::KeyGroup;
use crate::metrics::{add, TaskMetrics};

/// How records are spread over the downstream channels.
pub enum Route<T> {
    /// One channel: subtask `i` feeds subtask `i`.
    Forward,
    /// Whole batches go to the channels in turn.
    Rebalance,
    /// Every record goes to every channel.
    Broadcast,
    /// Each record goes to the subtask owning its key's key group.
    KeyGroups(KeyRouter<T>),
    /// Each record holds many rows (an Arrow batch) and is split so that
    /// every row goes to the subtask owning its key group.
    Split(SplitRouter<T>),
}

/// Splits a record holding many rows by the key groups of its rows.
pub trait RowSplitter<T>: Send + Sync {
    /// Appends to `parts`, for each channel that gets rows of `record`, the
    /// record of those rows: a row of key group `g` goes to channel `owners[g]`.
    fn split(&self, record: T, owners: &[u32], parts: &mut Vec<(usize, T)>) -> Result<()>;
}

/// Routes the rows of records to the subtasks owning their key groups.
pub struct SplitRouter<T> {
    splitter: Arc<dyn RowSplitter<T>>,
    /// Owner subtask of each key group, precomputed.
    owners: Vec<u32>,
}

impl<T> SplitRouter<T> {
    /// A router for `channels` downstream subtasks, splitting with `splitter`.
    pub fn new(splitter: Arc<dyn RowSplitter<T>>, max_parallelism: u32, channels: u32) -> Self {
        SplitRouter {
            splitter,
            owners: (0..max_parallelism)
                .map(|g| KeyGroup(g).owner(max_parallelism, channels))
                .collect(),
        }
    }
}

/// How much of a buffer a record fills: 1 by default; the rows it holds for
/// records that are batches of rows.
pub type Weigh<T> = fn(&T) -> usize;

/// The stable hash of a record's key.
pub type KeyHash<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// Maps a record to the channel of the subtask owning its key group.
pub struct KeyRouter<T> {
    hash: KeyHash<T>,
    max_parallelism: u64,
    /// Owner subtask of each key group, precomputed.
    owners: Vec<u32>,
}

impl<T> KeyRouter<T> {
    /// A router for `channels` downstream subtasks, placing records by `hash`.
    pub fn new(hash: KeyHash<T>, max_parallelism: u32, channels: u32) -> Self {
        KeyRouter {
            hash,
            max_parallelism: u64::from(max_parallelism),
            owners: (0..max_parallelism)
                .map(|g| KeyGroup(g).owner(max_parallelism, channels))
                .collect(),
        }
    }

    #[inline]
    fn channel(&self, record: &T) -> usize {
        let group = (self.hash)(record) % self.max_parallelism;
        self.owners[group as usize] as usize
    }
}

/// Batching, routing writer to a task's downstream channels.
pub struct Output<T> {
    senders: Vec<Box<dyn ChannelSender<T>>>,
    buffers: Vec<Batch<T>>,
    /// How much of each buffer is filled: records, or their [`Weigh`].
    filled: Vec<usize>,
    weigh: Option<Weigh<T>>,
    route: Route<T>,
    batch_size: usize,
    buffer_timeout: Duration,
    /// When the oldest record still buffered arrived.
    oldest: Option<Instant>,
    next_channel: usize,
    /// Full buffers waiting to be sent (kept to reuse its allocation).
    ready: Vec<(usize, Batch<T>)>,
    metrics: Arc<TaskMetrics>,
}

impl<T: Data> Output<T> {
    /// An output writing to `senders`, one per downstream subtask.
    pub fn new(
        senders: Vec<Box<dyn ChannelSender<T>>>,
        route: Route<T>,
        batch_size: usize,
        buffer_timeout: Duration,
        metrics: Arc<TaskMetrics>,
    ) -> Self {
        let buffers = senders.iter().map(|_| Vec::new()).collect();
        Output {
            filled: vec![0; senders.len()],
            weigh: None,
            senders,
            buffers,
            route,
            batch_size: batch_size.max(1),
            buffer_timeout,
            oldest: None,
            next_channel: 0,
            ready: Vec::new(),
            metrics,
        }
    }

    /// Fills buffers by `weigh` instead of by record count.
    pub fn weighed(mut self, weigh: Option<Weigh<T>>) -> Self {
        self.weigh = weigh;
        self
    }

    /// How much of a buffer `records` fill.
    fn weight(&self, records: &[T]) -> usize {
        match self.weigh {
            None => records.len(),
            Some(weigh) => records.iter().map(weigh).sum(),
        }
    }

    /// Adds `weight` to the buffer of `channel`; whether it is full now.
    fn fill(&mut self, channel: usize, weight: usize) -> bool {
        self.filled[channel] += weight;
        self.filled[channel] >= self.batch_size
    }

    fn send(&mut self, channel: usize, message: Message<T>) -> Result<()> {
        match self.senders[channel].try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(message)) => {
                let start = Instant::now();
                let sent = self.senders[channel].send(message);
                add(
                    &self.metrics.backpressured_ns,
                    start.elapsed().as_nanos() as u64,
                );
                sent
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::ChannelClosed),
        }
    }

    fn send_buffer(&mut self, channel: usize) -> Result<()> {
        let fresh = self.senders[channel].empty_batch(self.batch_size);
        let batch = std::mem::replace(&mut self.buffers[channel], fresh);
        self.filled[channel] = 0;
        self.send(channel, Message::Batch(batch))
    }

    fn flush_all(&mut self) -> Result<()> {
        for channel in 0..self.buffers.len() {
            if !self.buffers[channel].is_empty() {
                self.send_buffer(channel)?;
            }
        }
        self.oldest = None;
        Ok(())
    }

    fn append(&mut self, channel: usize, batch: &mut Batch<T>) -> Result<()> {
        let weight = self.weight(batch);
        let buffer = &mut self.buffers[channel];
        if buffer.is_empty() {
            std::mem::swap(buffer, batch);
        } else {
            buffer.append(batch);
        }
        if self.fill(channel, weight) {
            self.send_buffer(channel)?;
        }
        Ok(())
    }

    /// Sends the full buffers routing set aside. Routing a whole batch comes
    /// first: sending may block, and a blocked send must not leave records
    /// half-routed.
    fn send_ready(&mut self) -> Result<()> {
        let mut ready = std::mem::take(&mut self.ready);
        for (channel, full) in ready.drain(..) {
            self.send(channel, Message::Batch(full))?;
        }
        self.ready = ready;
        Ok(())
    }

    fn broadcast(&mut self, message: impl Fn() -> Message<T>) -> Result<()> {
        for channel in 0..self.senders.len() {
            self.send(channel, message())?;
        }
        Ok(())
    }
}

impl<T: Data> Downstream<T> for Output<T> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        match &self.route {
            Route::Forward => self.append(0, batch)?,
            Route::Rebalance => {
                let channel = self.next_channel;
                self.append(channel, batch)?;
                if self.buffers[channel].is_empty() {
                    self.next_channel = (channel + 1) % self.senders.len();
                }
            }
            Route::Broadcast => {
                let weight = self.weight(batch);
                for channel in 1..self.buffers.len() {
                    self.buffers[channel].extend_from_slice(batch);
                    if self.fill(channel, weight) {
                        self.send_buffer(channel)?;
                    }
                }
                self.append(0, batch)?;
            }
            Route::KeyGroups(router) => {
                for record in batch.drain(..) {
                    let channel = router.channel(&record);
                    let buffer = &mut self.buffers[channel];
                    buffer.push(record);
                    if buffer.len() >= self.batch_size {
                        let fresh = self.senders[channel].empty_batch(self.batch_size);
                        let full = std::mem::replace(buffer, fresh);
                        self.ready.push((channel, full));
                    }
                }
                self.send_ready()?;
            }
            Route::Split(router) => {
                let mut parts = Vec::new();
                for record in batch.drain(..) {
                    router.splitter.split(record, &router.owners, &mut parts)?;
                }
                for (channel, part) in parts {
                    let weight = self.weight(std::slice::from_ref(&part));
                    self.buffers[channel].push(part);
                    if self.fill(channel, weight) {
                        let fresh = self.senders[channel].empty_batch(self.batch_size);
                        let full = std::mem::replace(&mut self.buffers[channel], fresh);
                        self.filled[channel] = 0;
                        self.ready.push((channel, full));
                    }
                }
                self.send_ready()?;
            }
        }
        if self.buffer_timeout.is_zero() {
            self.flush_all()
        } else {
            if self.oldest.is_none() && self.buffers.iter().any(|b| !b.is_empty()) {
                self.oldest = Some(Instant::now());
            }
            Ok(())
        }
    }

    fn barrier(&mut self, barrier: Barrier, _: &mut Vec<SnapshotPart>) -> Result<()> {
        self.flush_all()?;
        self.broadcast(|| Message::Barrier(barrier))
    }

    fn snapshot(&mut self, _: Barrier, _: &mut Vec<SnapshotPart>) -> Result<()> {
        Ok(())
    }

    fn checkpoint_complete(&mut self, _: CheckpointId) -> Result<()> {
        Ok(())
    }

    fn next_wakeup(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.buffer_timeout)
    }

    fn on_time(&mut self, now: Instant) -> Result<()> {
        match self.next_wakeup() {
            Some(due) if due <= now => self.flush_all(),
            _ => Ok(()),
        }
    }

    fn end_of_input(&mut self) -> Result<()> {
        self.flush_all()?;
        self.broadcast(|| Message::EndOfInput)
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        // Never ahead of the records before it.
        self.flush_all()?;
        self.broadcast(|| Message::Watermark(watermark))
    }

    fn idle(&mut self) -> Result<()> {
        self.flush_all()?;
        self.broadcast(|| Message::Idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::StableHash;
    use crossbeam_channel::{bounded, Sender};

    fn boxed(tx: Sender<Message<u64>>) -> Box<dyn ChannelSender<u64>> {
        Box::new(tx)
    }

    fn output(
        route: Route<u64>,
        n: usize,
        batch: usize,
    ) -> (Output<u64>, Vec<crossbeam_channel::Receiver<Message<u64>>>) {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..n).map(|_| bounded(64)).unzip();
        let tx = tx.into_iter().map(boxed).collect();
        let out = Output::new(tx, route, batch, Duration::from_secs(60), Arc::default());
        (out, rx)
    }

    fn drain(rx: &crossbeam_channel::Receiver<Message<u64>>) -> Vec<u64> {
        rx.try_iter()
            .flat_map(|m| match m {
                Message::Batch(b) => b,
                _ => vec![],
            })
            .collect()
    }

    #[test]
    fn key_groups_route_every_key_to_its_owner() {
        let router = KeyRouter::new(Arc::new(|r: &u64| r.stable_hash()), 128, 3);
        let (mut out, rx) = output(Route::KeyGroups(router), 3, 7);
        let mut batch: Vec<u64> = (0..1000).collect();
        out.push(&mut batch).unwrap();
        out.end_of_input().unwrap();
        let mut all = Vec::new();
        for (i, rx) in rx.iter().enumerate() {
            for r in drain(rx) {
                assert_eq!(KeyGroup::of(&r, 128).owner(128, 3), i as u32);
                all.push(r);
            }
        }
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    /// Splits a record of many numbers by the key group of each number.
    struct Numbers;

    impl RowSplitter<Vec<u64>> for Numbers {
        fn split(
            &self,
            record: Vec<u64>,
            owners: &[u32],
            parts: &mut Vec<(usize, Vec<u64>)>,
        ) -> Result<()> {
            let mut by_channel: Vec<Vec<u64>> = vec![Vec::new(); 3];
            for n in record {
                let group = KeyGroup::of(&n, owners.len() as u32).0 as usize;
                by_channel[owners[group] as usize].push(n);
            }
            parts.extend(
                by_channel
                    .into_iter()
                    .enumerate()
                    .filter(|(_, p)| !p.is_empty()),
            );
            Ok(())
        }
    }

    #[test]
    fn split_records_send_each_row_to_its_owner_and_fill_buffers_by_rows() {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..3).map(|_| bounded(64)).unzip();
        let senders: Vec<Box<dyn ChannelSender<Vec<u64>>>> = tx
            .into_iter()
            .map(|t: Sender<Message<Vec<u64>>>| Box::new(t) as Box<dyn ChannelSender<Vec<u64>>>)
            .collect();
        let route = Route::Split(SplitRouter::new(Arc::new(Numbers), 128, 3));
        let mut out = Output::new(senders, route, 100, Duration::from_secs(60), Arc::default())
            .weighed(Some(|r: &Vec<u64>| r.len()));
        out.push(&mut vec![(0..1000).collect()]).unwrap();
        let mut all = Vec::new();
        for (i, rx) in rx.iter().enumerate() {
            // Each channel got about 333 rows in one record: a full buffer, sent at once.
            let sent: Vec<Vec<u64>> = rx
                .try_iter()
                .flat_map(|m| match m {
                    Message::Batch(b) => b,
                    _ => vec![],
                })
                .collect();
            assert_eq!(sent.len(), 1, "channel {i}");
            for n in sent.into_iter().flatten() {
                assert_eq!(KeyGroup::of(&n, 128).owner(128, 3), i as u32);
                all.push(n);
            }
        }
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn partial_batches_wait_for_the_buffer_timeout() {
        let (tx, rx) = bounded(4);
        let mut out = Output::new(
            vec![boxed(tx)],
            Route::Forward,
            100,
            Duration::from_millis(5),
            Arc::default(),
        );
        out.push(&mut vec![1, 2, 3]).unwrap();
        assert!(rx.try_recv().is_err(), "a partial batch must wait");
        let due = out.next_wakeup().unwrap();
        out.on_time(due).unwrap();
        assert_eq!(drain(&rx), vec![1, 2, 3]);
    }

    #[test]
    fn barrier_flushes_buffered_records_before_it() {
        let (mut out, rx) = output(Route::Broadcast, 2, 100);
        out.push(&mut vec![1, 2]).unwrap();
        out.barrier(Barrier::checkpoint(CheckpointId(1), None), &mut Vec::new())
            .unwrap();
        for rx in &rx {
            assert!(matches!(rx.try_recv(), Ok(Message::Batch(b)) if b == vec![1, 2]));
            assert!(matches!(rx.try_recv(), Ok(Message::Barrier(_))));
        }
    }
}
