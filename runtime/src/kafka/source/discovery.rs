//! Which partitions a Kafka source subtask reads: those the brokers list for
//! its topics whose key group it owns, where the checkpoint left them or from
//! where the source starts; and, now and then, those found since.

use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::KafkaSource;
use crate::data::Data;
use crate::error::Result;
use crate::kafka::offsets::{self, StartFrom};
use crate::kafka::partitions::PartitionState;
use crate::kafka::{kafka_error, partition_key_group};
use crate::keys::KeyGroup;

impl<T: Data> KafkaSource<T> {
    /// Adds the partitions the brokers list that this subtask owns and does
    /// not read yet: those in `restored` where they stood, the others from
    /// `start` (and to `stop`). Returns how many were added.
    pub(super) fn adopt(
        &mut self,
        consumer: &BaseConsumer,
        restored: &mut Vec<(KeyGroup, PartitionState)>,
        start: StartFrom,
    ) -> Result<usize> {
        let ctx = self.ctx()?.clone();
        let mut fresh = Vec::new();
        let before = self.partitions.len();
        for (topic, partition) in self.subscription.partitions(consumer)? {
            let group = partition_key_group(&topic, partition, ctx.max_parallelism);
            if !ctx.key_groups.contains(group) || self.partitions.contains(&topic, partition) {
                continue;
            }
            let known = restored
                .iter()
                .position(|(_, s)| s.topic == topic && s.partition == partition);
            match known {
                Some(i) => {
                    let (group, state) = restored.swap_remove(i);
                    self.partitions.push(group, state);
                }
                None => fresh.push((group, (topic, partition))),
            }
        }
        let names: Vec<(String, i32)> = fresh.iter().map(|(_, n)| n.clone()).collect();
        let starts = offsets::start_offsets(consumer, &names, start)?;
        let stops = offsets::stop_offsets(consumer, &names, self.stop)?;
        for (((group, (topic, partition)), next), end) in fresh.into_iter().zip(starts).zip(stops) {
            self.partitions.push(
                group,
                PartitionState {
                    topic,
                    partition,
                    next,
                    end,
                },
            );
        }
        let added = self.partitions.len() - before;
        if let Some(clocks) = &mut self.clocks {
            for _ in 0..added {
                clocks.add();
            }
        }
        Ok(added)
    }

    /// Looks for new partitions when it is time, and reads them from their start.
    pub(super) fn discover(&mut self, now: Instant) -> Result<()> {
        let Some(every) = self.discovery else {
            return Ok(());
        };
        if now < self.next_discovery {
            return Ok(());
        }
        self.next_discovery = now + every;
        let Some(consumer) = self.consumer.take() else {
            return Ok(());
        };
        let source = self.ctx()?.uid.0.clone();
        let assigned = match self.adopt(&consumer, &mut Vec::new(), StartFrom::Earliest) {
            Ok(0) => Ok(()),
            Ok(n) => {
                tracing::info!(%source, partitions = n, "found new partitions; reading them from their earliest offsets");
                // Reassigning every partition at its next offset drops what
                // the client fetched ahead and reads on from there.
                self.partitions.offsets().and_then(|offsets| {
                    consumer
                        .assign(&offsets)
                        .map_err(|e| kafka_error("assigning partitions", e))
                })
            }
            // The partitions read so far go on; the next look may succeed.
            Err(error) => {
                tracing::warn!(%source, %error, retry_in = ?every, "looking for new partitions failed");
                Ok(())
            }
        };
        self.consumer = Some(consumer);
        assigned
    }
}
