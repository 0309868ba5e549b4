//! The partitions a Kafka source subtask reads, each with its key group and
//! where it stands, as the checkpoint holds them: under each key group the
//! states of its partitions, so a restore at any parallelism finds every
//! partition's offset with the key groups it takes over.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kafka::{kafka_error, REQUEST_TIMEOUT};
use crate::keys::KeyGroup;

/// Where one partition stands, as checkpointed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionState {
    pub topic: String,
    pub partition: i32,
    /// The offset of the next record to read.
    pub next: i64,
    /// Where a bounded read stops (exclusive).
    pub end: Option<i64>,
}

impl PartitionState {
    /// Whether a bounded read of it is over.
    pub fn ended(&self) -> bool {
        self.end.is_some_and(|end| self.next >= end)
    }

    /// `topic/partition`, as metrics and messages name it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.topic, self.partition)
    }
}

/// A subtask's partitions; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Partitions {
    list: Vec<(KeyGroup, PartitionState)>,
    /// The index of the last partition a record came from.
    last: usize,
}

impl Partitions {
    /// Decodes the partition states of restored key groups.
    pub fn decode(keyed: Vec<(KeyGroup, Vec<u8>)>) -> Result<Vec<(KeyGroup, PartitionState)>> {
        let mut states = Vec::new();
        for (group, bytes) in keyed {
            let decoded: Vec<PartitionState> = bincode::deserialize(&bytes)
                .map_err(|e| Error::Internal(format!("key group {}: {e}", group.0)))?;
            states.extend(decoded.into_iter().map(|s| (group, s)));
        }
        Ok(states)
    }

    /// Adds a partition; it gets the next index.
    pub fn push(&mut self, group: KeyGroup, state: PartitionState) {
        self.list.push((group, state));
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether `topic/partition` is among them.
    pub fn contains(&self, topic: &str, partition: i32) -> bool {
        self.list
            .iter()
            .any(|(_, s)| s.partition == partition && s.topic == topic)
    }

    /// The partitions in order of their index.
    pub fn iter(&self) -> impl Iterator<Item = &PartitionState> {
        self.list.iter().map(|(_, s)| s)
    }

    /// The index of `topic/partition`, trying the last one found first
    /// (records come in runs per partition).
    #[inline]
    pub fn find(&mut self, topic: &str, partition: i32) -> Option<usize> {
        let is_it = |s: &PartitionState| s.partition == partition && s.topic == topic;
        if !self.list.get(self.last).is_some_and(|(_, s)| is_it(s)) {
            self.last = self.list.iter().position(|(_, s)| is_it(s))?;
        }
        Some(self.last)
    }

    /// The state of the partition at `index`.
    #[inline]
    pub fn state(&mut self, index: usize) -> Option<&mut PartitionState> {
        self.list.get_mut(index).map(|(_, s)| s)
    }

    /// Whether every partition's bounded read is over (never, unbounded).
    pub fn all_ended(&self) -> bool {
        self.list.iter().all(|(_, s)| s.ended())
    }

    /// How far each partition is behind its end, by name, as far as the
    /// client knows from its fetches (no request to the brokers).
    pub fn lags(&self, consumer: &BaseConsumer) -> Vec<(String, i64)> {
        self.list
            .iter()
            .filter_map(|(_, p)| {
                let end = cached_end(consumer, &p.topic, p.partition)?;
                Some((p.name(), (end - p.next).max(0)))
            })
            .collect()
    }

    /// The error for a position the brokers no longer hold, naming the
    /// partitions whose next offset lies below what the broker keeps.
    pub fn out_of_range(&self, consumer: &BaseConsumer) -> Error {
        let mut lost = Vec::new();
        for (_, p) in &self.list {
            if let Ok((low, _)) = consumer.fetch_watermarks(&p.topic, p.partition, REQUEST_TIMEOUT)
            {
                if p.next < low {
                    lost.push(format!(
                        "{} resumes at offset {} but the broker keeps offsets from {low}",
                        p.name(),
                        p.next
                    ));
                }
            }
        }
        let which = if lost.is_empty() {
            "a partition's next offset is out of range".to_string()
        } else {
            lost.join("; ")
        };
        kafka_error(
            "records the job has not read are gone (retention deleted them?)",
            which,
        )
    }

    /// Each partition at its next offset, to assign to a consumer or commit.
    pub fn offsets(&self) -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for (_, s) in &self.list {
            list.add_partition_offset(&s.topic, s.partition, Offset::Offset(s.next))
                .map_err(|e| kafka_error("listing partition offsets", e))?;
        }
        Ok(list)
    }

    /// The states under each key group, encoded for a snapshot, in a
    /// canonical order.
    pub fn snapshot(&self) -> Result<Vec<(KeyGroup, Vec<u8>)>> {
        let mut sorted: Vec<&(KeyGroup, PartitionState)> = self.list.iter().collect();
        sorted.sort_by(|(g, a), (h, b)| {
            (g.0, &a.topic, a.partition).cmp(&(h.0, &b.topic, b.partition))
        });
        let mut keyed: Vec<(KeyGroup, Vec<PartitionState>)> = Vec::new();
        for (group, state) in sorted {
            match keyed.last_mut() {
                Some((g, states)) if g == group => states.push(state.clone()),
                _ => keyed.push((*group, vec![state.clone()])),
            }
        }
        keyed
            .into_iter()
            .map(|(group, states)| {
                bincode::serialize(&states)
                    .map(|bytes| (group, bytes))
                    .map_err(|e| Error::Internal(format!("encoding offsets: {e}")))
            })
            .collect()
    }
}

/// The end offset of `topic/partition` as the client last heard it in a
/// fetch reply, without asking the brokers: librdkafka's cached watermarks,
/// which the rdkafka crate does not wrap. `None` before the first fetch.
#[allow(unsafe_code)]
fn cached_end(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    use rdkafka::bindings::{rd_kafka_get_watermark_offsets, rd_kafka_resp_err_t};
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client handle lives as long as `consumer`, which outlives
    // the call; `topic` is NUL-terminated and outlives it; `low` and `high`
    // are valid for writes. The call only reads the client's cached state.
    let error = unsafe {
        rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(topic: &str, partition: i32, next: i64) -> PartitionState {
        PartitionState {
            topic: topic.into(),
            partition,
            next,
            end: None,
        }
    }

    #[test]
    fn a_snapshot_decodes_to_the_same_partitions_under_their_key_groups() {
        let mut p = Partitions::default();
        p.push(KeyGroup(9), state("b", 0, 5));
        p.push(KeyGroup(3), state("a", 1, 7));
        p.push(KeyGroup(9), state("a", 2, 0));
        let keyed = p.snapshot().unwrap();
        assert_eq!(keyed.iter().map(|(g, _)| g.0).collect::<Vec<_>>(), [3, 9]);
        let decoded = Partitions::decode(keyed).unwrap();
        assert_eq!(
            decoded,
            [
                (KeyGroup(3), state("a", 1, 7)),
                (KeyGroup(9), state("a", 2, 0)),
                (KeyGroup(9), state("b", 0, 5)),
            ]
        );
    }

    #[test]
    fn records_find_their_partition_and_a_bounded_read_ends_at_its_end() {
        let mut p = Partitions::default();
        p.push(KeyGroup(0), state("a", 0, 0));
        p.push(KeyGroup(1), state("a", 1, 3));
        assert_eq!(p.find("a", 1), Some(1));
        assert_eq!(p.find("a", 0), Some(0));
        assert_eq!(p.find("b", 0), None);
        assert!(!p.all_ended(), "unbounded partitions never end");
        p.state(0).unwrap().end = Some(0);
        p.state(1).unwrap().end = Some(4);
        assert!(!p.all_ended());
        p.state(1).unwrap().next = 4;
        assert!(p.all_ended());
    }
}
