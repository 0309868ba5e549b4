//! weir's engine: a dataflow runtime with Flink's fault-tolerance model.
//!
//! Jobs are built with a typed API ([`api::JobBuilder`], [`api::Stream`]), run as
//! chains of operators on threads that exchange batches over bounded channels, and
//! take aligned, barrier-based checkpoints (Chandy–Lamport) to a
//! [`checkpoint::store::CheckpointStore`]; after a failure the job resumes from the
//! latest completed checkpoint with exactly-once results.
//!
//! # Layout
//!
//! - [`api`]: `JobBuilder`, `Stream`, `KeyedStream`: what users write jobs with.
//! - [`operator`]: the `Operator` and `Source` traits and the hooks' guarantees.
//! - [`operators`]: built-in operators, sources and sinks, one per file.
//! - [`exec`]: chains, exchanges, barrier alignment, the task runner, the job runner.
//! - [`checkpoint`]: storage layout, `_metadata`, the coordinator's decisions, restore.
//! - [`net`]: the data plane between worker processes (TCP, credit-based flow control).
//! - [`state`]: snapshots and keyed state encoded by key group.
//! - [`keys`]: the stable key hash and key-group ranges.
//! - [`cluster`]: the coordinator and worker processes.
//! - [`pipelines`]: the jobs shipped in the `weir` binary.
//! - [`formats`]: records as bytes on Kafka: text lines, JSON, Avro.
//! - [`sql`]: SQL jobs over the data dictionary, planned with DataFusion.
//! - [`cli`]: the `weir` command line.
//! - [`clock`]: UTC calendar dates for identities and listings.
//! - [`histogram`]: latency percentiles for `weir bench`.
//! - [`durable`]: atomic, never-replacing and synced local file writes.

pub mod api;
pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod data;
pub mod durable;
pub mod error;
pub mod exec;
pub mod formats;
pub mod histogram;
pub mod ids;
pub mod kafka;
pub mod keys;
pub mod metrics;
pub mod net;
pub mod operator;
pub mod operators;
pub mod pipelines;
pub mod rng;
pub mod sql;
pub mod state;

pub use error::{Error, Result};
