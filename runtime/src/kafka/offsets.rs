//! Where a Kafka source starts reading a partition that no checkpoint holds,
//! and where a bounded one stops: resolved against the brokers when the job
//! first reads the partition, and checkpointed from then on, so a restore
//! resumes and stops at the same records.

use std::str::FromStr;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::kafka::{kafka_error, REQUEST_TIMEOUT};

/// Where a source starts reading a partition its checkpoint does not hold.
/// Partitions found after the job started are read from the earliest offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest record the broker keeps (the default).
    Earliest,
    /// After the last record written before the job first reads the partition.
    Latest,
    /// The first record stamped at or after this time (ms since the Unix
    /// epoch); after the last record if none is.
    Timestamp(i64),
    /// The consumer group's committed offset; where the group has none, as
    /// [`NoCommit`] says.
    Committed(NoCommit),
}

/// What a source starting from the group's offsets does with a partition the
/// group has committed nothing for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCommit {
    /// Fail, naming the partition.
    Fail,
    /// Start from the earliest offset.
    Earliest,
    /// Start from the latest offset.
    Latest,
}

/// Where a source stops (exclusive), making the job bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    /// Never: the source runs until cancelled (the default).
    Never,
    /// At the end offsets the partitions have when the job first reads them.
    Latest,
    /// Before the first record stamped at or after this time (ms since the
    /// Unix epoch), or at the end offset when the job first reads the
    /// partition if no record is stamped that late yet.
    Timestamp(i64),
}

impl FromStr for StartFrom {
    type Err = String;

    /// `earliest`, `latest`, `group` (fail where the group committed
    /// nothing), `group-or-earliest`, `group-or-latest`, or a time.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "earliest" => StartFrom::Earliest,
            "latest" => StartFrom::Latest,
            "group" => StartFrom::Committed(NoCommit::Fail),
            "group-or-earliest" => StartFrom::Committed(NoCommit::Earliest),
            "group-or-latest" => StartFrom::Committed(NoCommit::Latest),
            other => StartFrom::Timestamp(parse_time(other).map_err(|e| {
                format!(
                    "{other:?} is not a start: earliest, latest, group, group-or-earliest, \
                     group-or-latest, or a time ({e})"
                )
            })?),
        })
    }
}

impl FromStr for StopAt {
    type Err = String;

    /// `never`, `latest`, or a time.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "never" => StopAt::Never,
            "latest" => StopAt::Latest,
            other => StopAt::Timestamp(parse_time(other).map_err(|e| {
                format!("{other:?} is not a stop point: never, latest, or a time ({e})")
            })?),
        })
    }
}

/// A time as RFC 3339 (`2026-12-01T10:00:00Z`) or ms since the Unix epoch.
fn parse_time(s: &str) -> std::result::Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let time = humantime::parse_rfc3339_weak(s).map_err(|e| e.to_string())?;
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| "before 1970".to_string())
}

/// The offsets each of `partitions` starts at.
pub(crate) fn start_offsets(
    consumer: &BaseConsumer,
    partitions: &[(String, i32)],
    start: StartFrom,
) -> Result<Vec<i64>> {
    // librdkafka refuses queries for no partitions.
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    match start {
        StartFrom::Earliest => ends(consumer, partitions, false),
        StartFrom::Latest => ends(consumer, partitions, true),
        StartFrom::Timestamp(ms) => at_time(consumer, partitions, ms),
        StartFrom::Committed(missing) => committed(consumer, partitions, missing),
    }
}

/// Where each of `partitions` stops (`None`: never).
pub(crate) fn stop_offsets(
    consumer: &BaseConsumer,
    partitions: &[(String, i32)],
    stop: StopAt,
) -> Result<Vec<Option<i64>>> {
    let offsets = match stop {
        StopAt::Never => return Ok(vec![None; partitions.len()]),
        _ if partitions.is_empty() => return Ok(Vec::new()),
        StopAt::Latest => ends(consumer, partitions, true)?,
        StopAt::Timestamp(ms) => at_time(consumer, partitions, ms)?,
    };
    Ok(offsets.into_iter().map(Some).collect())
}

/// Each partition's earliest offset, or its latest with `latest`.
fn ends(consumer: &BaseConsumer, partitions: &[(String, i32)], latest: bool) -> Result<Vec<i64>> {
    partitions
        .iter()
        .map(|(topic, partition)| {
            let (low, high) = consumer
                .fetch_watermarks(topic, *partition, REQUEST_TIMEOUT)
                .map_err(|e| kafka_error(&format!("the offsets of {topic}/{partition}"), e))?;
            Ok(if latest { high } else { low })
        })
        .collect()
}

/// Each partition's first offset stamped at or after `ms`, or its latest.
fn at_time(consumer: &BaseConsumer, partitions: &[(String, i32)], ms: i64) -> Result<Vec<i64>> {
    let mut query = TopicPartitionList::new();
    for (topic, partition) in partitions {
        query
            .add_partition_offset(topic, *partition, Offset::Offset(ms))
            .map_err(|e| kafka_error("asking for offsets by time", e))?;
    }
    let found = consumer
        .offsets_for_times(query, REQUEST_TIMEOUT)
        .map_err(|e| kafka_error(&format!("the offsets at time {ms}"), e))?;
    let latest = ends(consumer, partitions, true)?;
    partitions
        .iter()
        .zip(latest)
        .map(|((topic, partition), latest)| {
            let element = found.find_partition(topic, *partition);
            match element.map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => Ok(offset),
                Some(Offset::End) | None => Ok(latest),
                Some(other) => Err(kafka_error(
                    &format!("the offset of {topic}/{partition} at time {ms}"),
                    format!("the broker answered {other:?}"),
                )),
            }
        })
        .collect()
}

/// Each partition's offset the consumer group committed.
fn committed(
    consumer: &BaseConsumer,
    partitions: &[(String, i32)],
    missing: NoCommit,
) -> Result<Vec<i64>> {
    let mut query = TopicPartitionList::new();
    for (topic, partition) in partitions {
        query.add_partition(topic, *partition);
    }
    let found = consumer
        .committed_offsets(query, REQUEST_TIMEOUT)
        .map_err(|e| kafka_error("the consumer group's committed offsets", e))?;
    let (earliest, latest) = (
        ends(consumer, partitions, false)?,
        ends(consumer, partitions, true)?,
    );
    let mut offsets = Vec::with_capacity(partitions.len());
    for (i, (topic, partition)) in partitions.iter().enumerate() {
        let element = found.find_partition(topic, *partition);
        let offset = match (element.map(|e| e.offset()), missing) {
            (Some(Offset::Offset(offset)), _) => offset,
            (_, NoCommit::Earliest) => earliest[i],
            (_, NoCommit::Latest) => latest[i],
            (_, NoCommit::Fail) => {
                return Err(Error::Usage(format!(
                    "the consumer group has no committed offset for {topic}/{partition}: \
                     start from group-or-earliest or group-or-latest instead"
                )))
            }
        };
        offsets.push(offset);
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_and_stops_parse_from_their_names_and_times() {
        assert_eq!("latest".parse(), Ok(StartFrom::Latest));
        assert_eq!(
            "group-or-earliest".parse(),
            Ok(StartFrom::Committed(NoCommit::Earliest))
        );
        assert_eq!(
            "2026-12-01T00:00:00Z".parse(),
            Ok(StartFrom::Timestamp(1_796_083_200_000))
        );
        assert_eq!(
            "1764547200000".parse(),
            Ok(StopAt::Timestamp(1_764_547_200_000))
        );
        assert_eq!("never".parse(), Ok(StopAt::Never));
        let error = "yesterday".parse::<StartFrom>().unwrap_err();
        assert!(error.contains("earliest, latest, group"), "{error}");
        assert!("soon".parse::<StopAt>().is_err());
    }
}
