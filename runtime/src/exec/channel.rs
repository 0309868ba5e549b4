//! The sending end of a channel between two tasks, in-process or across the data plane.

use crossbeam_channel::{Sender, TrySendError};

use crate::data::{Batch, Message};
use crate::error::{Error, Result};

/// Called after the receiving task took a message out of a remote channel: the
/// sender earns a credit back (granted in batches, see
/// [`crate::net::remote::register_inbound`]).
pub type CreditReturn = Box<dyn FnMut() + Send>;

/// Where a task's output exchange sends one downstream subtask's messages.
pub trait ChannelSender<T>: Send {
    /// Sends without waiting; `Full` means the receiver has no room (backpressure).
    fn try_send(
        &mut self,
        message: Message<T>,
    ) -> std::result::Result<(), TrySendError<Message<T>>>;
    /// Sends, waiting while the receiver has no room.
    fn send(&mut self, message: Message<T>) -> Result<()>;
    /// An empty batch to fill for this channel: one its consumer returned,
    /// where it can ([`crate::exec::pool`]).
    fn empty_batch(&mut self, capacity: usize) -> Batch<T> {
        Vec::with_capacity(capacity)
    }
}

impl<T: Send> ChannelSender<T> for Sender<Message<T>> {
    fn try_send(
        &mut self,
        message: Message<T>,
    ) -> std::result::Result<(), TrySendError<Message<T>>> {
        Sender::try_send(self, message)
    }

    fn send(&mut self, message: Message<T>) -> Result<()> {
        Sender::send(self, message).map_err(|_| Error::ChannelClosed)
    }
}
