//! Execution: chains, exchanges, alignment, the task runner, uploads, deployment and the job runner.

pub mod align;
pub mod chain;
pub mod channel;
pub mod config;
pub mod coordinate;
pub mod deploy;
pub mod exchange;
pub mod fanout;
pub mod inject;
pub mod local;
pub mod pool;
pub mod recover;
pub mod requests;
pub mod runner;
pub mod state_fit;
pub mod task;
pub mod upload;
pub mod watermarks;
