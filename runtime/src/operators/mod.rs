//! Built-in operators, sources and sinks, one per file.

mod collect_sink;
mod discard_sink;
mod file_sink;
mod filter;
mod flat_map;
mod join;
mod keyed_process;
mod latency_sink;
mod map;
mod reduce;
mod sequence_source;
mod stdout_sink;
mod text_source;
mod try_map;
mod watermark_assigner;
pub(crate) mod window;

pub use collect_sink::CollectSink;
pub use discard_sink::DiscardSink;
pub use file_sink::{FileSink, LineFormat};
pub use filter::Filter;
pub use flat_map::FlatMap;
pub use join::{
    CoProcess, IntervalBuffers, IntervalJoin, KeyedCoProcess, WindowJoin, WindowJoinPanes,
};
pub use keyed_process::{
    KeyFn, KeyedProcess, KeyedProcessOperator, KeyedValue, MapState, ValueState,
};
pub use latency_sink::{now_nanos, LatencySink};
pub use map::Map;
pub use reduce::{KeyedReduce, KeyedSum};
pub use sequence_source::SequenceSource;
pub use stdout_sink::StdoutSink;
pub use text_source::TextFileSource;
pub use try_map::TryMap;
pub use watermark_assigner::{TimestampFn, WatermarkAssigner, WatermarkStrategy};
pub use window::{
    Aggregate, Aggregated, AllRecords, Count, Panes, Shape, Sum, Window, WindowFunction,
    WindowProcess, WindowResult, WindowTime, Windows,
};
