//! The typed API users build jobs with: [`JobBuilder`], [`Stream`], [`KeyedStream`].

mod connected;
mod graph;
mod keyed;
mod nodes;
mod stream;

pub use connected::ConnectedStreams;
pub(crate) use graph::{downcast_task, BuildCtx, EdgeNode, NodeKind};
pub use graph::{Exchange, JobGraph};
pub use keyed::{KeyedStream, WindowedStream};
pub use stream::{JobBuilder, Stream};
