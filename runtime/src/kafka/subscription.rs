//! Which topics a Kafka source reads: a list, or every topic whose name
//! matches a pattern, and the partitions the brokers list for them now.

use rdkafka::consumer::{BaseConsumer, Consumer};
use regex::Regex;

use crate::error::{Error, Result};
use crate::kafka::{kafka_error, REQUEST_TIMEOUT};

/// The topics of a source.
#[derive(Debug, Clone)]
pub enum Subscription {
    /// These topics; each must exist.
    Topics(Vec<String>),
    /// Every topic whose whole name matches (Kafka's internal topics,
    /// starting with `__`, excepted); none need exist yet.
    Pattern(Regex),
}

impl Subscription {
    /// Every topic whose whole name matches `pattern` (a regular expression).
    pub fn pattern(pattern: &str) -> Result<Self> {
        Regex::new(&format!("^(?:{pattern})$"))
            .map(Subscription::Pattern)
            .map_err(|e| Error::Usage(format!("topic pattern {pattern:?}: {e}")))
    }

    /// For messages: the topics, or the pattern.
    pub fn describe(&self) -> String {
        match self {
            Subscription::Topics(topics) => topics.join(","),
            Subscription::Pattern(pattern) => format!("topics matching {}", pattern.as_str()),
        }
    }

    /// The partitions of the subscribed topics the brokers list, sorted.
    pub(crate) fn partitions(&self, consumer: &BaseConsumer) -> Result<Vec<(String, i32)>> {
        let mut found = Vec::new();
        match self {
            Subscription::Topics(topics) => {
                for topic in topics {
                    for partition in partitions_of(consumer, topic)? {
                        found.push((topic.clone(), partition));
                    }
                }
            }
            Subscription::Pattern(pattern) => {
                let metadata = consumer
                    .fetch_metadata(None, REQUEST_TIMEOUT)
                    .map_err(|e| kafka_error("listing topics", e))?;
                for topic in metadata.topics() {
                    let name = topic.name();
                    if name.starts_with("__") || !pattern.is_match(name) || topic.error().is_some()
                    {
                        continue;
                    }
                    for partition in topic.partitions() {
                        found.push((name.to_string(), partition.id()));
                    }
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

/// The partitions of `topic` the brokers know; an error if it has none.
fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| kafka_error(&format!("listing the partitions of topic {topic}"), e))?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty());
    match found {
        Some(t) => Ok(t.partitions().iter().map(|p| p.id()).collect()),
        None => Err(kafka_error(
            &format!("topic {topic}"),
            "it does not exist or has no partitions",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_matches_whole_names_and_a_bad_one_is_named() {
        let Subscription::Pattern(p) = Subscription::pattern("orders-.*").unwrap() else {
            panic!("a pattern");
        };
        assert!(p.is_match("orders-eu"));
        assert!(!p.is_match("old-orders-eu"));
        let error = Subscription::pattern("orders-(").unwrap_err().to_string();
        assert!(error.contains("orders-("), "{error}");
    }
}
