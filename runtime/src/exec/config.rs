//! Tuning of the data path (batch size, queue depth, buffer timeout) and the state backend.

use std::time::Duration;

use crate::state::StateConfig;

/// How tasks move batches.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Records per batch sent between tasks (and polled from sources).
    pub batch_size: usize,
    /// Batches a channel between two subtasks holds before its sender blocks.
    /// Memory in flight is bounded by channels × capacity × batch size.
    pub channel_capacity: usize,
    /// How long a partly filled output batch may wait before it is sent (0: never waits).
    pub buffer_timeout: Duration,
    /// Where keyed state lives.
    pub state: StateConfig,
    /// Time between checkpoints, as the runner's configuration sets it (the
    /// runner fills it in; operators check their settings against it).
    pub checkpoint_interval: Option<Duration>,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            batch_size: 1024,
            channel_capacity: 8,
            buffer_timeout: Duration::from_millis(100),
            state: StateConfig::default(),
            checkpoint_interval: None,
        }
    }
}
