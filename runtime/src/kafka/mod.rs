//! Apache Kafka in and out: where a topic's partitions live in a job (each a
//! split placed in a key group, so its offset moves with the key group when a
//! job is restored at another parallelism), the client settings, the source
//! (librdkafka) and the exactly-once sink (its own protocol client, which can
//! commit a transaction another process pre-committed, and reads the same
//! `security.protocol`, `sasl.*` and `ssl.*` properties as librdkafka).

mod cluster;
mod dead_letter;
mod event_time;
mod fetch;
mod message;
mod offsets;
mod partitioner;
mod partitions;
mod producer;
mod record_batch;
mod recovery;
mod sasl;
mod scram;
mod security;
mod sink;
mod source;
mod subscription;
mod tls;
mod transactions;
mod txn;
mod wire;

pub use dead_letter::{BadRecords, ERROR_HEADER, OFFSET_HEADER, PARTITION_HEADER, TOPIC_HEADER};
pub use message::{Decode, KafkaMessage};
pub use offsets::{NoCommit, StartFrom, StopAt};
pub use partitioner::{key_partition, Partitioning};
pub use sink::{Guarantee, KafkaSink, Serializer, Stamp};
pub use source::KafkaSource;
pub use subscription::Subscription;
pub use transactions::{CRASH_BEFORE_COMMIT, SLOTS};
pub use txn::Transaction;

use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::ClientConfig;

use crate::error::Error;
use crate::keys::{KeyGroup, StableHash};

/// How long a metadata or offset request to the brokers may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the brokers are and how to talk to them.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port,...` of one or more brokers.
    pub bootstrap_servers: String,
    /// Further client properties (`security.protocol`, `sasl.*`, ...), as librdkafka
    /// names them. The sink's own client honours the security ones it supports
    /// and refuses the others.
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    /// Brokers at `bootstrap_servers`, with no further properties.
    pub fn new(bootstrap_servers: &str) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.to_string(),
            properties: Vec::new(),
        }
    }

    /// Adds a client property.
    pub fn property(mut self, key: &str, value: &str) -> Self {
        self.properties.push((key.to_string(), value.to_string()));
        self
    }

    /// A consumer that reads `read_committed`, commits only when told, and
    /// fails on an offset the broker no longer has; in consumer group
    /// `group` unless the properties name one.
    pub(crate) fn consumer(&self, group: &str) -> Result<BaseConsumer, Error> {
        let mut client = self.client();
        if client.get("group.id").is_none() {
            client.set("group.id", group);
        }
        // librdkafka pauses a partition's fetches for this long once its local
        // queue is full (1 s by default), which starves a fast reader between
        // pauses: resume after 10 ms unless the user chose otherwise.
        if client.get("fetch.queue.backoff.ms").is_none() {
            client.set("fetch.queue.backoff.ms", "10");
        }
        client
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            // An offset the broker no longer has (retention deleted it) is an
            // error, never a silent jump to the earliest or latest record.
            .set("auto.offset.reset", "error");
        client
            .create()
            .map_err(|e| kafka_error("creating a consumer", e))
    }

    /// The librdkafka configuration: the brokers, then the properties.
    pub(crate) fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// The key group of a topic's partition: partitions `0, 1, 2, ...` of a topic
/// are spread evenly over the key groups (golden-ratio steps from a start the
/// topic's name gives), so that any parallelism gets its share of them. It is
/// part of the checkpoint format: a restore finds a partition's offset there.
pub fn partition_key_group(topic: &str, partition: i32, max_parallelism: u32) -> KeyGroup {
    const STEP: f64 = 0.618_033_988_749_894_9;
    let start = (topic.stable_hash() >> 11) as f64 / (1u64 << 53) as f64;
    let at = (start + f64::from(partition) * STEP).fract();
    KeyGroup(((at * f64::from(max_parallelism)) as u32).min(max_parallelism - 1))
}

/// A client error, naming what was being done.
pub(crate) fn kafka_error(what: &str, error: impl std::fmt::Display) -> Error {
    Error::Kafka(format!("{what}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_over_the_subtasks_of_any_parallelism() {
        for parallelism in [1u32, 2, 3, 4] {
            let mut per_subtask = vec![0; parallelism as usize];
            for partition in 0..12 {
                let group = partition_key_group("orders", partition, 128);
                per_subtask[group.owner(128, parallelism) as usize] += 1;
            }
            let (least, most) = (
                per_subtask.iter().min().copied().unwrap_or(0),
                per_subtask.iter().max().copied().unwrap_or(0),
            );
            assert!(most - least <= 2, "p{parallelism}: {per_subtask:?}");
        }
        assert_eq!(
            partition_key_group("orders", 5, 128),
            partition_key_group("orders", 5, 128)
        );
    }
}
