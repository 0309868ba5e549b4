//! Running a job across processes: a coordinator and its workers, talking over the
//! gRPC contract of `weir-proto`, with data flowing directly between workers.
//!
//! - [`coordinator`]: accepts worker sessions, places tasks on slots, and drives the
//!   same [`JobRunner`](crate::exec::runner::JobRunner) as `weir run` through a
//!   remote [`Deployer`](crate::exec::runner::Deployer).
//! - [`worker`]: registers, runs the tasks placed on it, reports their events.
//! - [`convert`]: between engine types and wire messages.

pub mod convert;
pub mod coordinator;
pub mod worker;
