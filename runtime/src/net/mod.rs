//! The data plane between worker processes: one TCP connection per pair of workers,
//! multiplexing the logical channels of an attempt with credit-based flow control.
//!
//! A logical channel connects one upstream subtask to one downstream subtask. Its
//! receiver grants the sender one credit per batch it can buffer (the same depth as
//! an in-process channel) and one more each time its task has taken a message out,
//! so a slow consumer holds back exactly its own senders and never the connection:
//! other channels on the same connection keep flowing. Frames carry the attempt
//! id; frames of an attempt that is not (or no longer) registered are dropped,
//! which fences off workers that come back from a stall.

mod batch;
mod frame;
mod plane;
mod remote;

pub use batch::{decode_batch, decode_batch_into};
pub use frame::{Frame, FrameKind};
pub use plane::{ChannelKey, Connection, DataPlane};
pub use remote::{register_inbound, RemoteSender};
