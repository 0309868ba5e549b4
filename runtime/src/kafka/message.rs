//! A Kafka record as the source hands it to the job's decoder.

use std::sync::Arc;

use crate::error::Result;

/// A record as the broker handed it, borrowed for decoding.
#[derive(Debug, Clone, Copy)]
pub struct KafkaMessage<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp, ms since the Unix epoch, if it has one.
    pub timestamp: Option<i64>,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value (`None`: a tombstone).
    pub value: Option<&'a [u8]>,
}

/// Turns a broker's record into the job's record; a record it cannot decode
/// is an [`Error::BadRecord`] saying why (the source adds where it is).
pub type Decode<T> = Arc<dyn Fn(&KafkaMessage<'_>) -> Result<T> + Send + Sync>;
