//! The built-in pipelines' record formats on Kafka: `--input-format`,
//! `--output-format` (text, json or avro) and the Avro writer schemas.
//!
//! Formats apply to record values, and to the keys of keyed-sum's output
//! (`--output-key-format`: the sum's key, by default its decimal digits; the
//! sink partitions by the encoded key). The pipelines read no input keys.
//! The schema files are read where the job is built: by `weir run`, and by every
//! worker of a cluster, whose pods must have them (a ConfigMap volume).

use std::path::{Path, PathBuf};

use crate::api::Stream;
use crate::data::Data;
use crate::error::{Error, Result};
use crate::formats::{Format, FormatName, Record};
use crate::kafka::KafkaMessage;
use crate::pipelines::{sink_lines, Target};

/// The record formats of a pipeline's input and output topics.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaFormatArgs {
    /// How the input topic's values are encoded: text (the pipeline's lines),
    /// json, or avro (a plain binary datum written with --input-schema).
    #[arg(long, value_enum, default_value_t = FormatName::Text, requires = "input_topic")]
    pub input_format: FormatName,
    /// The Avro writer schema (`.avsc`) of the input topic's values.
    #[arg(long, value_name = "FILE", requires = "input_topic")]
    pub input_schema: Option<PathBuf>,
    /// How the output topic's values are encoded: text, json, or avro (with
    /// --output-schema).
    #[arg(long, value_enum, default_value_t = FormatName::Text, requires = "output_topic")]
    pub output_format: FormatName,
    /// The Avro schema (`.avsc`) the output topic's values are written with.
    #[arg(long, value_name = "FILE", requires = "output_topic")]
    pub output_schema: Option<PathBuf>,
    /// How the output topic's keys are encoded (keyed-sum: the sum's key):
    /// text (its digits), json, or avro (with --output-key-schema).
    #[arg(long, value_enum, default_value_t = FormatName::Text, requires = "output_topic")]
    pub output_key_format: FormatName,
    /// The Avro schema (`.avsc`) the output topic's keys are written with.
    #[arg(long, value_name = "FILE", requires = "output_topic")]
    pub output_key_schema: Option<PathBuf>,
}

impl KafkaFormatArgs {
    /// The input topic's format for records `T`, its schema checked.
    pub fn input<T: Record>(&self) -> Result<Format> {
        Format::new::<T>(
            self.input_format,
            self.input_schema.as_deref(),
            "--input-format",
            "--input-schema",
        )
    }

    /// The output topic's format for records `T`, its schema checked.
    pub fn output<T: Record>(&self) -> Result<Format> {
        Format::new::<T>(
            self.output_format,
            self.output_schema.as_deref(),
            "--output-format",
            "--output-schema",
        )
    }

    /// The output topic's key format for keys `T`, its schema checked.
    pub fn output_key<T: Record>(&self) -> Result<Format> {
        Format::new::<T>(
            self.output_key_format,
            self.output_key_schema.as_deref(),
            "--output-key-format",
            "--output-key-schema",
        )
    }

    /// Fails unless every format is text: `pipeline` reads and writes lines only.
    pub fn refuse(&self, pipeline: &str) -> Result<()> {
        if given(self.input_format, self.input_schema.as_deref())
            || given(self.output_format, self.output_schema.as_deref())
        {
            return Err(Error::Usage(format!(
                "pipeline {pipeline} writes text lines; --input-format and --output-format \
                 are for keyed-sum and state-machine"
            )));
        }
        self.refuse_output_key(pipeline)
    }

    /// Fails if an output key format is given: `pipeline` writes no keys.
    pub fn refuse_output_key(&self, pipeline: &str) -> Result<()> {
        if given(self.output_key_format, self.output_key_schema.as_deref()) {
            return Err(Error::Usage(format!(
                "pipeline {pipeline} writes records without keys; --output-key-format \
                 is for keyed-sum"
            )));
        }
        Ok(())
    }
}

/// Whether a format other than the default (text, no schema) is given.
fn given(name: FormatName, schema: Option<&Path>) -> bool {
    name != FormatName::Text || schema.is_some()
}

/// Decodes `message`'s value as a `T` in `format`; the source adds where a
/// bad record is to the reason.
pub fn decode_value<T: Record>(
    format: &Format,
    operator: &str,
    message: &KafkaMessage<'_>,
) -> Result<T> {
    format.decode(operator, message.value)
}

/// Encodes `record` in `format` into a value of its own (for a
/// [`crate::api::Stream::try_map`] before a Kafka sink).
pub fn encode_value<T: Record>(format: &Format, record: &T) -> Result<Vec<u8>> {
    let mut value = Vec::with_capacity(32);
    format.encode("encode", record, &mut value)?;
    Ok(value)
}

/// Ends `stream` in `target` as records `R`: text lines as ever, or, in
/// another format (a Kafka target), each record encoded as a value of its own
/// by an `encode` step first, where a record the format cannot carry fails
/// the job.
pub fn sink_records<T, R>(stream: Stream<T>, target: &Target, format: Format)
where
    T: Data,
    R: Record + for<'a> From<&'a T>,
{
    if format.is_text() {
        sink_lines(stream, target, |r: &T, out| R::from(r).write_text(out));
        return;
    }
    let values = stream.try_map("encode", move |r: T| encode_value(&format, &R::from(&r)));
    sink_lines(values, target, |value: &Vec<u8>, out| {
        out.extend_from_slice(value)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipelines::kafka_io::KafkaArgs;
    use crate::pipelines::kafka_records::KeyValue;
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

    const IN: [&str; 4] = ["--kafka-brokers", "b:1", "--input-topic", "numbers"];

    #[test]
    fn formats_need_their_topic_and_default_to_text() {
        let args = parse(&IN).unwrap().kafka.formats;
        assert_eq!(
            (args.input_format, args.output_format),
            (FormatName::Text, FormatName::Text)
        );
        assert!(args.refuse("grep").is_ok());
        assert!(parse(&["--kafka-brokers", "b:1", "--input-format", "json"]).is_err());
        assert!(parse(&["--kafka-brokers", "b:1", "--output-schema", "o.avsc"]).is_err());
        assert!(parse(&[&IN[..], &["--input-format", "xml"]].concat()).is_err());
        let json = parse(&[&IN[..], &["--input-format", "json"]].concat()).unwrap();
        let error = json.kafka.formats.refuse("grep").unwrap_err().to_string();
        assert!(
            error.starts_with("pipeline grep writes text lines"),
            "{error}"
        );
        let keyed = parse(&[
            "--kafka-brokers",
            "b:1",
            "--output-topic",
            "t",
            "--output-key-format",
            "json",
        ])
        .unwrap();
        for refused in [
            keyed.kafka.formats.refuse("grep"),
            keyed.kafka.formats.refuse_output_key("state-machine"),
        ] {
            let error = refused.unwrap_err().to_string();
            assert!(error.contains("writes records without keys"), "{error}");
        }
        assert!(parse(&[&IN[..], &["--output-key-format", "json"]].concat()).is_err());
    }

    #[test]
    fn avro_without_a_schema_or_a_schema_without_avro_is_refused() {
        let avro = parse(&[&IN[..], &["--input-format", "avro"]].concat()).unwrap();
        let error = avro
            .kafka
            .formats
            .input::<KeyValue>()
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "--input-format avro needs the writer schema: --input-schema FILE.avsc"
        );
        let stray = parse(&[&IN[..], &["--input-schema", "in.avsc"]].concat()).unwrap();
        let error = stray
            .kafka
            .formats
            .input::<KeyValue>()
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "--input-schema in.avsc is for --input-format avro, not text"
        );
        let missing = parse(
            &[
                &IN[..],
                &[
                    "--input-format",
                    "avro",
                    "--input-schema",
                    "/nowhere/in.avsc",
                ],
            ]
            .concat(),
        )
        .unwrap();
        let error = missing
            .kafka
            .formats
            .input::<KeyValue>()
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("Avro schema /nowhere/in.avsc: "),
            "{error}"
        );
    }

    #[test]
    fn a_bad_record_is_named_by_its_place() {
        let message = KafkaMessage {
            topic: "numbers",
            partition: 3,
            offset: 41,
            timestamp: None,
            key: None,
            value: Some(br#"{"key": 1, "value": }"#),
        };
        let error = decode_value::<KeyValue>(&Format::Json, "records", &message)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "bad record in records: JSON at byte 20: expected value"
        );
    }
}
