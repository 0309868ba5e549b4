//! Recycled batch buffers: the task that consumed a batch hands its emptied
//! `Vec` back to the channel it came by, and the producer fills it again, so a
//! steady flow of batches allocates none (and touches no fresh pages).

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::data::{Batch, Message};
use crate::exec::channel::ChannelSender;

/// Emptied batches of one channel, waiting for its producer. Bounded: what a
/// full pool is handed is freed, as is a batch grown far past the batch size.
pub struct BatchPool<T> {
    free: Sender<Batch<T>>,
    taken: Receiver<Batch<T>>,
}

impl<T> Clone for BatchPool<T> {
    fn clone(&self) -> Self {
        BatchPool {
            free: self.free.clone(),
            taken: self.taken.clone(),
        }
    }
}

impl<T> BatchPool<T> {
    /// A pool of at most `capacity` batches (a channel's capacity, plus the
    /// producer's and the consumer's batch in hand).
    pub fn new(capacity: usize) -> Self {
        let (free, taken) = bounded(capacity.max(1));
        BatchPool { free, taken }
    }

    /// An empty batch with room for `capacity` records: a recycled one if any.
    #[inline]
    pub fn take(&self, capacity: usize) -> Batch<T> {
        self.taken
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(capacity))
    }

    /// Hands `batch` back, emptied, unless it grew past four batches of
    /// `batch_size` records (it is freed then, as when the pool is full).
    #[inline]
    pub fn give(&self, mut batch: Batch<T>, batch_size: usize) {
        if batch.capacity() == 0 || batch.capacity() > 4 * batch_size.max(1) {
            return;
        }
        batch.clear();
        // A full pool (or one whose producer is gone) frees the batch.
        let _ = self.free.try_send(batch);
    }
}

/// The sending end of an in-process channel, with the pool its consumer
/// returns emptied batches to.
pub struct LocalSender<T> {
    /// The channel.
    pub tx: Sender<Message<T>>,
    /// Where its batches come back.
    pub pool: BatchPool<T>,
}

impl<T: Send> ChannelSender<T> for LocalSender<T> {
    fn try_send(&mut self, message: Message<T>) -> Result<(), TrySendError<Message<T>>> {
        self.tx.try_send(message)
    }

    fn send(&mut self, message: Message<T>) -> crate::error::Result<()> {
        ChannelSender::send(&mut self.tx, message)
    }

    fn empty_batch(&mut self, capacity: usize) -> Batch<T> {
        self.pool.take(capacity)
    }
}

/// The receiving end of an in-process channel and the pool of its batches.
pub struct LocalReceiver<T> {
    /// The channel.
    pub rx: Receiver<Message<T>>,
    /// Where the consumer returns emptied batches.
    pub pool: BatchPool<T>,
}

/// An in-process channel of `capacity` messages whose batches are recycled.
pub fn local_channel<T>(capacity: usize) -> (LocalSender<T>, LocalReceiver<T>) {
    let (tx, rx) = bounded(capacity);
    let pool = BatchPool::new(capacity + 2);
    (
        LocalSender {
            tx,
            pool: pool.clone(),
        },
        LocalReceiver { rx, pool },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_batch_is_handed_out_again_emptied() {
        let (mut tx, rx) = local_channel::<u64>(4);
        let mut batch = tx.empty_batch(8);
        batch.extend([1, 2, 3]);
        let address = batch.as_ptr();
        ChannelSender::send(&mut tx, Message::Batch(batch)).expect("send");
        let Ok(Message::Batch(received)) = rx.rx.recv() else {
            panic!("a batch was sent");
        };
        assert_eq!(received, [1, 2, 3]);
        rx.pool.give(received, 8);
        let again = tx.empty_batch(8);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), address, "the same allocation");
    }

    #[test]
    fn an_oversized_batch_or_a_full_pool_frees_what_it_is_given() {
        let pool = BatchPool::<u64>::new(1);
        pool.give(Vec::with_capacity(100), 8);
        assert_eq!(pool.take(8).capacity(), 8, "too big to keep: a fresh one");
        pool.give(Vec::with_capacity(16), 8);
        pool.give(Vec::with_capacity(24), 8);
        assert_eq!(pool.take(8).capacity(), 16, "the first one kept");
        assert_eq!(pool.take(8).capacity(), 8, "the second one freed");
    }
}
