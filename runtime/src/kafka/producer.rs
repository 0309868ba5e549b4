//! The sink's producer for one topic: a record batch per partition, sent to the
//! partition's leader in one produce request per leader, up to
//! [`MAX_IN_FLIGHT`] requests in flight per broker; [`Producer::flush`] returns
//! once every record sent is acknowledged by all in-sync replicas. As the
//! writer of a transaction it stamps each batch with the producer id, epoch
//! and sequence numbers. A failed write fails the producer: the job restarts
//! from its checkpoint, which never loses or (in a transaction) repeats records.

use bytes::Bytes;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use crate::error::{Error, Result};
use crate::kafka::cluster::{Cluster, Step};
use crate::kafka::record_batch::{RecordBatch, Writer};
use crate::kafka::wire::Connection;

/// The produce version spoken (Kafka 2.4 and later).
const PRODUCE_VERSION: i16 = 9;
/// Produce requests in flight per broker before a send waits for a reply.
pub(crate) const MAX_IN_FLIGHT: usize = 5;
/// How long a broker may take to replicate a produce request.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

/// Writes records to the partitions of one topic; see the module docs.
pub(crate) struct Producer {
    cluster: Cluster,
    topic: String,
    name: TopicName,
    leaders: Vec<i32>,
    batches: Vec<RecordBatch>,
    sequences: Vec<i32>,
    writer: Writer,
    transactional_id: Option<TransactionalId>,
    /// Brokers with replies unread.
    waiting: Vec<i32>,
}

impl Producer {
    /// A producer for `topic`, its leaders looked up through `cluster`.
    pub fn new(mut cluster: Cluster, topic: &str) -> Result<Self> {
        let leaders = cluster.leaders(topic)?;
        Ok(Producer {
            cluster,
            topic: topic.to_string(),
            name: TopicName(StrBytes::from_string(topic.to_string())),
            batches: leaders.iter().map(|_| RecordBatch::new()).collect(),
            sequences: vec![0; leaders.len()],
            leaders,
            writer: Writer::NONE,
            transactional_id: None,
            waiting: Vec::new(),
        })
    }

    /// The cluster, for transaction control.
    pub fn cluster(&mut self) -> &mut Cluster {
        &mut self.cluster
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Partitions of the topic.
    pub fn partitions(&self) -> i32 {
        self.leaders.len() as i32
    }

    /// Writes the following records as `writer` (in transaction
    /// `transactional_id`), sequences starting at 0. Nothing may be unsent.
    pub fn start(&mut self, writer: Writer, transactional_id: Option<&str>) -> Result<()> {
        if self.batches.iter().any(|b| !b.is_empty()) || !self.waiting.is_empty() {
            return Err(Error::Internal(
                "a Kafka producer changed writer with records unsent".into(),
            ));
        }
        self.writer = writer;
        self.transactional_id =
            transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.to_string())));
        self.sequences.fill(0);
        Ok(())
    }

    /// Buffers a record for `partition`, with `headers` (name, value).
    pub fn push(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &[(&str, &[u8])],
    ) {
        if let Some(batch) = self.batches.get_mut(partition as usize) {
            batch.push(key, value, timestamp, headers);
        }
    }

    /// Sends every batch of at least `min_bytes` (0: every non-empty one).
    pub fn send(&mut self, min_bytes: usize) -> Result<()> {
        let mut brokers: Vec<i32> = Vec::new();
        for (p, batch) in self.batches.iter().enumerate() {
            if !batch.is_empty() && batch.size() >= min_bytes && !brokers.contains(&self.leaders[p])
            {
                brokers.push(self.leaders[p]);
            }
        }
        for broker in brokers {
            let mut partition_data = Vec::new();
            for p in 0..self.batches.len() {
                let batch = &mut self.batches[p];
                if self.leaders[p] != broker || batch.is_empty() || batch.size() < min_bytes {
                    continue;
                }
                let records = batch.len();
                let bytes: Bytes = batch.seal(self.writer, self.sequences[p]);
                self.sequences[p] = self.sequences[p].wrapping_add(records);
                partition_data.push(
                    PartitionProduceData::default()
                        .with_index(p as i32)
                        .with_records(Some(bytes)),
                );
            }
            let request = ProduceRequest::default()
                .with_transactional_id(self.transactional_id.clone())
                .with_acks(-1)
                .with_timeout_ms(PRODUCE_TIMEOUT_MS)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(self.name.clone())
                    .with_partition_data(partition_data)]);
            // Room for the request; and a connection whose SASL session is
            // ending has its replies read, so that it is renewed before the
            // broker closes it.
            loop {
                let connection = self.connection(broker)?;
                let pending = connection.in_flight();
                if pending < MAX_IN_FLIGHT && (pending == 0 || !connection.session_ending()) {
                    break;
                }
                let reply = connection.receive::<ProduceRequest>(PRODUCE_VERSION);
                self.check(reply)?;
            }
            let connection = self.connection(broker)?;
            connection.send(&request, PRODUCE_VERSION)?;
            if !self.waiting.contains(&broker) {
                self.waiting.push(broker);
            }
        }
        Ok(())
    }

    /// Sends everything buffered and waits until every record is acknowledged.
    pub fn flush(&mut self) -> Result<()> {
        self.send(0)?;
        self.acknowledge()
    }

    /// Waits until every record sent is acknowledged, leaving the buffered
    /// ones unsent, so that other requests may go to the brokers.
    pub fn acknowledge(&mut self) -> Result<()> {
        for broker in std::mem::take(&mut self.waiting) {
            loop {
                let connection = self.connection(broker)?;
                if connection.in_flight() == 0 {
                    break;
                }
                let reply = connection.receive::<ProduceRequest>(PRODUCE_VERSION);
                self.check(reply)?;
            }
        }
        Ok(())
    }

    fn connection(&mut self, broker: i32) -> Result<&mut Connection> {
        match self.cluster.connection(broker)? {
            Step::Done(connection) => Ok(connection),
            Step::Again(why) => Err(Error::Kafka(format!(
                "writing to topic {}: broker {broker}: {why}",
                self.topic
            ))),
        }
    }

    /// Fails on a produce reply that reports an error for any partition.
    fn check(&self, reply: Result<kafka_protocol::messages::ProduceResponse>) -> Result<()> {
        let reply = reply?;
        for topic in &reply.responses {
            for p in &topic.partition_responses {
                if let Some(error) = p.error_code.err() {
                    let detail = p
                        .error_message
                        .as_ref()
                        .map(|m| format!(" ({})", m.as_str()))
                        .unwrap_or_default();
                    return Err(Error::Kafka(format!(
                        "writing to {}/{}: {error:?}{detail}",
                        self.topic, p.index
                    )));
                }
            }
        }
        Ok(())
    }
}
