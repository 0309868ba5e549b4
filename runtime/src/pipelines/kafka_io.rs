//! The built-in pipelines' Kafka options: brokers, client properties (a value
//! `env:NAME` is read from the environment, so a StreamJob can take secrets
//! from a Secret), an input topic to read instead of generating, an output
//! topic to write with a chosen guarantee, and their record formats.

use std::time::Duration;

use crate::data::Data;
use crate::error::{Error, Result};
use crate::kafka::{
    BadRecords, Guarantee, KafkaConfig, KafkaMessage, KafkaSource, StartFrom, StopAt,
};
use crate::pipelines::kafka_formats::KafkaFormatArgs;

/// Kafka options every pipeline that can read or write Kafka takes.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, `host:port,...`.
    #[arg(long, env = "WEIR_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// A Kafka client property `key=value` (repeatable); `key=env:NAME` takes
    /// the value from environment variable NAME.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,
    /// Read the input from this topic instead of generating it.
    #[arg(long, requires = "kafka_brokers")]
    pub input_topic: Option<String>,
    /// Where to start reading partitions no checkpoint holds: earliest,
    /// latest, group (the consumer group's committed offsets),
    /// group-or-earliest, group-or-latest, or a time (RFC 3339 or ms since
    /// the Unix epoch: the first record stamped at or after it).
    #[arg(long, default_value = "earliest", requires = "input_topic")]
    pub input_start: StartFrom,
    /// Where to stop reading: never, latest (the end offsets when the job
    /// first reads the topic), or a time (before the first record stamped at
    /// or after it).
    #[arg(long, default_value = "never", requires = "input_topic")]
    pub input_stop: StopAt,
    /// Stop at the end offsets the input topic has when the job first reads
    /// it (`--input-stop latest`).
    #[arg(long, requires = "input_topic", conflicts_with = "input_stop")]
    pub input_bounded: bool,
    /// Write input records that cannot be decoded to this topic (with
    /// headers saying where they came from and why) instead of failing.
    #[arg(long, requires = "input_topic")]
    pub dead_letter_topic: Option<String>,
    /// Write the output to this topic.
    #[arg(long, requires = "kafka_brokers", conflicts_with_all = ["output", "discard"])]
    pub output_topic: Option<String>,
    /// The output topic's guarantee: exactly-once, at-least-once or none.
    #[arg(long, default_value = "exactly-once", value_parser = guarantee)]
    pub kafka_guarantee: Guarantee,
    /// How long brokers keep an output transaction open before aborting it.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub kafka_transaction_timeout: Duration,
    /// The record formats of the input and output topics.
    #[command(flatten)]
    pub formats: KafkaFormatArgs,
}

fn guarantee(s: &str) -> std::result::Result<Guarantee, String> {
    match s {
        "exactly-once" => Ok(Guarantee::ExactlyOnce),
        "at-least-once" => Ok(Guarantee::AtLeastOnce),
        "none" => Ok(Guarantee::None),
        _ => Err(format!(
            "{s:?} is not a guarantee: exactly-once, at-least-once or none"
        )),
    }
}

impl KafkaArgs {
    /// The client configuration: brokers and properties, `env:` values resolved.
    pub fn config(&self) -> Result<KafkaConfig> {
        let brokers = self
            .kafka_brokers
            .as_deref()
            .ok_or_else(|| Error::Usage("Kafka input or output needs --kafka-brokers".into()))?;
        client_config(brokers, &self.kafka_properties)
    }
}

/// The brokers and client properties of a command that talks to Kafka
/// directly (`weir kafka-load`, `weir kafka-latency`).
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaClientArgs {
    /// Kafka bootstrap servers, `host:port,...`.
    #[arg(long, env = "WEIR_KAFKA_BROKERS")]
    pub kafka_brokers: String,
    /// A Kafka client property `key=value` (repeatable); `key=env:NAME` takes
    /// the value from environment variable NAME.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,
}

impl KafkaClientArgs {
    /// The client configuration, `env:` values resolved.
    pub fn config(&self) -> Result<KafkaConfig> {
        client_config(&self.kafka_brokers, &self.kafka_properties)
    }
}

/// Brokers and `key=value` properties as a client configuration; a value
/// `env:NAME` is read from environment variable NAME.
pub fn client_config(brokers: &str, properties: &[String]) -> Result<KafkaConfig> {
    let mut config = KafkaConfig::new(brokers);
    for property in properties {
        let (key, value) = property.split_once('=').ok_or_else(|| {
            Error::Usage(format!("--kafka-property {property:?} is not key=value"))
        })?;
        let value = match value.strip_prefix("env:") {
            Some(name) => std::env::var(name).map_err(|_| {
                Error::Usage(format!(
                    "--kafka-property {key}: environment variable {name} is not set"
                ))
            })?,
            None => value.to_string(),
        };
        config = config.property(key, &value);
    }
    Ok(config)
}

/// What a pipeline reads when it reads Kafka.
#[derive(Debug, Clone)]
pub struct KafkaInput {
    /// The client configuration.
    pub config: KafkaConfig,
    /// The topic.
    pub topic: String,
    /// Where partitions no checkpoint holds start.
    pub start: StartFrom,
    /// Where reading stops.
    pub stop: StopAt,
    /// What happens to records that cannot be decoded.
    pub bad_records: BadRecords,
}

impl KafkaInput {
    /// A source of the topic, its records made by `decode`.
    pub fn source<T: Data>(
        &self,
        decode: impl Fn(&KafkaMessage<'_>) -> Result<T> + Send + Sync + 'static,
    ) -> KafkaSource<T> {
        KafkaSource::new(self.config.clone(), &[&self.topic], decode)
            .start_from(self.start)
            .stop_at(self.stop)
            .bad_records(self.bad_records.clone())
    }
}

/// Where a pipeline writes when it writes Kafka.
#[derive(Debug, Clone)]
pub struct KafkaOutput {
    /// The client configuration.
    pub config: KafkaConfig,
    /// The topic.
    pub topic: String,
    /// Its guarantee.
    pub guarantee: Guarantee,
    /// The transaction timeout (exactly-once).
    pub transaction_timeout: Duration,
}

impl KafkaArgs {
    /// The input topic, if one is given.
    pub fn input(&self) -> Result<Option<KafkaInput>> {
        let Some(topic) = &self.input_topic else {
            return Ok(None);
        };
        Ok(Some(KafkaInput {
            config: self.config()?,
            topic: topic.clone(),
            start: self.input_start,
            stop: if self.input_bounded {
                StopAt::Latest
            } else {
                self.input_stop
            },
            bad_records: match &self.dead_letter_topic {
                Some(topic) => BadRecords::DeadLetter(topic.clone()),
                None => BadRecords::Fail,
            },
        }))
    }

    /// The output topic, if one is given.
    pub fn output(&self) -> Result<Option<KafkaOutput>> {
        let Some(topic) = &self.output_topic else {
            return Ok(None);
        };
        Ok(Some(KafkaOutput {
            config: self.config()?,
            topic: topic.clone(),
            guarantee: self.kafka_guarantee,
            transaction_timeout: self.kafka_transaction_timeout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[arg(long)]
        output: Option<String>,
        #[arg(long)]
        discard: bool,
    }

    fn parse(args: &[&str]) -> std::result::Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("p").chain(args.iter().copied()))
    }

    #[test]
    fn properties_take_values_from_the_environment() {
        std::env::set_var("WEIR_TEST_SASL_PASSWORD", "s3cret");
        let args = parse(&[
            "--kafka-brokers",
            "b:9092",
            "--kafka-property",
            "sasl.password=env:WEIR_TEST_SASL_PASSWORD",
            "--kafka-property",
            "client.id=x=y",
        ])
        .unwrap();
        let config = args.kafka.config().unwrap();
        assert_eq!(
            config.properties,
            [
                ("sasl.password".to_string(), "s3cret".to_string()),
                ("client.id".to_string(), "x=y".to_string())
            ]
        );
        let missing = parse(&[
            "--kafka-brokers",
            "b:9092",
            "--kafka-property",
            "sasl.password=env:WEIR_TEST_NOT_SET_ANYWHERE",
        ])
        .unwrap();
        let error = missing.kafka.config().unwrap_err().to_string();
        assert!(error.contains("WEIR_TEST_NOT_SET_ANYWHERE"), "{error}");
    }

    #[test]
    fn input_start_stop_and_dead_letters_are_parsed() {
        let args = parse(&[
            "--kafka-brokers",
            "b:1",
            "--input-topic",
            "in",
            "--input-start",
            "group-or-latest",
            "--input-stop",
            "2026-12-01T00:00:00Z",
            "--dead-letter-topic",
            "bad",
        ])
        .unwrap();
        let input = args.kafka.input().unwrap().unwrap();
        assert_eq!(
            input.start,
            StartFrom::Committed(crate::kafka::NoCommit::Latest)
        );
        assert_eq!(input.stop, StopAt::Timestamp(1_796_083_200_000));
        assert_eq!(input.bad_records, BadRecords::DeadLetter("bad".into()));
        let bounded = parse(&[
            "--kafka-brokers",
            "b:1",
            "--input-topic",
            "in",
            "--input-bounded",
        ])
        .unwrap();
        assert_eq!(bounded.kafka.input().unwrap().unwrap().stop, StopAt::Latest);
        assert!(parse(&["--kafka-brokers", "b:1", "--input-start", "latest"]).is_err());
        let error = parse(&[
            "--kafka-brokers",
            "b:1",
            "--input-topic",
            "in",
            "--input-start",
            "soon",
        ])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(error.contains("earliest, latest, group"), "{error}");
    }

    #[test]
    fn topics_need_brokers_and_guarantees_are_named() {
        assert!(parse(&["--output-topic", "t"]).is_err());
        assert!(parse(&["--kafka-brokers", "b:1", "--kafka-guarantee", "twice"]).is_err());
        let args = parse(&[
            "--kafka-brokers",
            "b:1",
            "--output-topic",
            "t",
            "--kafka-guarantee",
            "at-least-once",
        ])
        .unwrap();
        let output = args.kafka.output().unwrap().unwrap();
        assert_eq!(output.guarantee, Guarantee::AtLeastOnce);
        assert!(parse(&["--kafka-brokers", "b:1", "--output-topic", "t", "--discard"]).is_err());
    }
}
