//! The typed API users build jobs with: [`JobBuilder`], [`Stream`], [`KeyedStream`].

mod graph;
mod keyed;
mod nodes;
mod stream;

pub(crate) use graph::{downcast_task, BuildCtx, EdgeNode, NodeKind};
pub use graph::{Exchange, JobGraph};
pub use keyed::{KeyedStream, WindowedStream};
pub use stream::{JobBuilder, Stream};
