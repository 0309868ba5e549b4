//! The `kafka` connector as a SQL source: the engine's Kafka source (exactly
//! once, partitions as splits, `read_committed`) reading a table's topic, and
//! its JSON or Avro values decoded into rows a batch at a time.
//!
//! Per record the source only looks at what it needs before decoding: the
//! event-time field, for watermarks per partition (Flink's), and the
//! discriminator field of a table that holds one kind of message of a JSON
//! topic of several. A tombstone (a record without a value) is no row, as in
//! Flink's JSON and Avro formats.

use std::fmt;
use std::time::Duration;

use datafusion_common::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use weir_catalog::{ColumnOrigin, Table};

use crate::data::{Batch, EventTime};
use crate::error::{Error, Result};
use crate::kafka::{KafkaConfig, KafkaMessage, KafkaSource, NoCommit, StartFrom, StopAt};
use crate::operator::Operator;
use crate::operators::WatermarkStrategy;
use crate::sql::avro_rows::{AvroRows, AvroRowsSpec};
use crate::sql::avro_time::AvroEventTime;
use crate::sql::json_rows::{JsonRows, JsonRowsSpec};
use crate::sql::record_columns::RecordMetadata;
use crate::sql::rows::Rows;

/// A Kafka record of a table, its value still JSON or Avro.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KafkaRecord {
    /// Where it came from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, ms since the epoch.
    pub timestamp: i64,
    /// Its value.
    pub value: Box<[u8]>,
    /// Its event time, ms ([`EventTime::MIN`] if the table has none).
    pub event_time: EventTime,
}

/// Where a table's event time comes from.
#[derive(Debug, Clone)]
enum EventTimeSource {
    /// No watermark: no event time.
    None,
    /// The record's timestamp (`METADATA FROM 'timestamp'`).
    Timestamp,
    /// A field of the JSON value.
    Field(String),
    /// A field of the Avro value.
    AvroField(AvroEventTime),
}

/// How a table's record values become rows.
#[derive(Debug, Clone)]
pub enum ValueFormat {
    /// JSON objects.
    Json(JsonRowsSpec),
    /// Avro datums.
    Avro(AvroRowsSpec),
}

/// A `kafka` table, read: everything its source needs.
#[derive(Debug, Clone)]
pub struct KafkaTable {
    /// The brokers.
    pub config: KafkaConfig,
    /// The topic.
    pub topic: String,
    /// Where partitions without a checkpoint start.
    pub start: StartFrom,
    /// Where the source stops.
    pub stop: StopAt,
    /// How late an event may come, ms, if the table has a watermark.
    pub max_delay_ms: Option<u64>,
    time: EventTimeSource,
    discriminator: Option<(String, String)>,
    /// The rows its values decode into.
    pub rows: ValueFormat,
}

impl KafkaTable {
    /// Checks `table`'s options for reading.
    pub fn new(table: &Table) -> Result<Self> {
        let bad = |why: String| Error::Sql(format!("table `{}`: {why}", table.name));
        let rows = match table.format().unwrap_or("json") {
            "json" => ValueFormat::Json(JsonRowsSpec::new(table, "kafka")?),
            "avro" => ValueFormat::Avro(AvroRowsSpec::new(table, "kafka")?),
            other => {
                return Err(bad(format!(
                    "format '{other}' is not read by SQL jobs; 'json' and 'avro' are"
                )))
            }
        };
        let config = kafka_config(table);
        let start = match table.option("scan.startup.mode") {
            None | Some("earliest-offset") => StartFrom::Earliest,
            Some("latest-offset") => StartFrom::Latest,
            Some("group-offsets") => StartFrom::Committed(NoCommit::Fail),
            Some(_) => {
                let millis = table
                    .option("scan.startup.timestamp-millis")
                    .and_then(|m| m.parse::<i64>().ok())
                    .ok_or_else(|| bad("'scan.startup.timestamp-millis' is not a number".into()))?;
                StartFrom::Timestamp(millis)
            }
        };
        let stop = match table.option("scan.bounded.mode") {
            Some("latest-offset") => StopAt::Latest,
            _ => StopAt::Never,
        };
        let (time, max_delay_ms) = match &table.watermark {
            None => (EventTimeSource::None, None),
            Some(watermark) => {
                let column = table
                    .column(&watermark.column)
                    .ok_or_else(|| bad(format!("no column `{}`", watermark.column)))?;
                let time = match (&column.origin, &rows) {
                    (ColumnOrigin::Value, ValueFormat::Json(_)) => {
                        EventTimeSource::Field(column.name.clone())
                    }
                    (ColumnOrigin::Value, ValueFormat::Avro(avro)) => EventTimeSource::AvroField(
                        AvroEventTime::new(avro.schema(), &column.name).map_err(|e| {
                            bad(format!("the watermark column `{}`: {e}", column.name))
                        })?,
                    ),
                    (ColumnOrigin::Metadata(key), _) if key == "timestamp" => {
                        EventTimeSource::Timestamp
                    }
                    _ => {
                        return Err(bad(format!(
                            "the watermark column `{}` must be a field of the value or METADATA FROM 'timestamp'",
                            column.name
                        )))
                    }
                };
                (time, Some(watermark.delay_ms))
            }
        };
        let discriminator = table
            .option("discriminator.field")
            .zip(table.option("discriminator.value"))
            .map(|(f, v)| (f.to_string(), v.to_string()));
        if discriminator.is_some() && matches!(rows, ValueFormat::Avro(_)) {
            return Err(bad(
                "'discriminator.field' needs format 'json': an Avro value is read with one writer schema, so a topic of several Avro record types is not split by a field"
                    .into(),
            ));
        }
        Ok(KafkaTable {
            config,
            topic: table.option("topic").unwrap_or_default().to_string(),
            start,
            stop,
            max_delay_ms,
            time,
            discriminator,
            rows,
        })
    }

    /// The engine's source of this table's records.
    pub fn source(&self) -> KafkaSource<Option<KafkaRecord>> {
        let (time, discriminator) = (self.time.clone(), self.discriminator.clone());
        let source = KafkaSource::new(self.config.clone(), &[&self.topic], move |message| {
            record(message, &time, discriminator.as_ref())
        })
        .start_from(self.start)
        .stop_at(self.stop);
        match self.max_delay_ms {
            None => source,
            // Flink SQL's watermark is the newest event time less the delay;
            // the strategy's trails it by one millisecond more.
            Some(delay) => source.watermarks(WatermarkStrategy::bounded_out_of_orderness(
                Duration::from_millis(delay.saturating_sub(1)),
                |r: &Option<KafkaRecord>| r.as_ref().map_or(EventTime::MIN, |r| r.event_time),
            )),
        }
    }

    /// The operator decoding records into rows.
    pub fn to_rows(&self) -> KafkaRecordsToRows {
        KafkaRecordsToRows {
            topic: self.topic.clone(),
            rows: match &self.rows {
                ValueFormat::Json(spec) => ValueRows::Json(Box::new(JsonRows::new(spec.clone()))),
                ValueFormat::Avro(spec) => ValueRows::Avro(Box::new(AvroRows::new(spec.clone()))),
            },
            metadata: Vec::new(),
        }
    }
}

/// The client configuration of a `kafka` or `upsert-kafka` table: its
/// brokers and its `properties.*`.
pub fn kafka_config(table: &Table) -> KafkaConfig {
    let bootstrap = table
        .option("properties.bootstrap.servers")
        .unwrap_or_default();
    let mut config = KafkaConfig::new(bootstrap);
    for (key, value) in &table.options {
        if let Some(property) = key.strip_prefix("properties.") {
            if property != "bootstrap.servers" {
                config = config.property(property, value);
            }
        }
    }
    config
}

/// The record of `message` if it belongs to the table (it has a value, and
/// the discriminator's); its event time read from the value or the timestamp.
fn record(
    message: &KafkaMessage<'_>,
    time: &EventTimeSource,
    discriminator: Option<&(String, String)>,
) -> Result<Option<KafkaRecord>> {
    let Some(value) = message.value else {
        return Ok(None);
    };
    let time_field = match time {
        EventTimeSource::Field(name) => Some(name.as_str()),
        _ => None,
    };
    let disc_field = discriminator.map(|(f, _)| f.as_str());
    let mut event_time = match time {
        EventTimeSource::Timestamp => message.timestamp.unwrap_or(EventTime::MIN),
        EventTimeSource::AvroField(field) => field
            .read(value)
            .map_err(|e| bad_record(format!("the Avro value's event time: {e}")))?,
        _ => EventTime::MIN,
    };
    if time_field.is_some() || disc_field.is_some() {
        let names = [time_field.unwrap_or(""), disc_field.unwrap_or("")];
        let found = pick_fields(value, &names)
            .map_err(|e| bad_record(format!("the value is not a JSON object: {e}")))?;
        if let Some((_, wanted)) = discriminator {
            let matches = match &found[1] {
                Some(serde_json::Value::String(s)) => s == wanted.as_str(),
                // A number or a boolean, compared as its JSON text.
                Some(other) => other.to_string().as_str() == wanted.as_str(),
                None => false,
            };
            if !matches {
                return Ok(None);
            }
        }
        if time_field.is_some() {
            event_time = match &found[0] {
                Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(EventTime::MIN),
                Some(serde_json::Value::String(s)) => string_to_timestamp_nanos(s.as_str())
                    .map(|ns| ns.div_euclid(1_000_000))
                    .map_err(|e| bad_record(format!("{:?} is not a timestamp: {e}", names[0])))?,
                _ => EventTime::MIN,
            };
        }
    }
    Ok(Some(KafkaRecord {
        partition: message.partition,
        offset: message.offset,
        timestamp: message.timestamp.unwrap_or(0),
        value: value.into(),
        event_time,
    }))
}

/// A record the table's source refuses, for the source's dead letters or failure.
fn bad_record(reason: String) -> Error {
    Error::BadRecord {
        operator: "the SQL Kafka source".into(),
        reason,
    }
}

/// The values of the top-level fields `names` of the JSON object `value`,
/// the others skipped unparsed.
fn pick_fields(
    value: &[u8],
    names: &[&str; 2],
) -> serde_json::Result<[Option<serde_json::Value>; 2]> {
    let mut deserializer = serde_json::Deserializer::from_slice(value);
    let picked = Pick { names }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(picked)
}

/// Picks fields by name from a JSON object.
struct Pick<'a> {
    names: &'a [&'a str; 2],
}

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = [Option<serde_json::Value>; 2];

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = [Option<serde_json::Value>; 2];

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut found = [None, None];
        while let Some(index) = map.next_key_seed(KeyIndex { names: self.names })? {
            match index {
                Some(i) => found[i] = Some(map.next_value::<serde_json::Value>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// Which of the names a key is, read without copying it.
struct KeyIndex<'a> {
    names: &'a [&'a str; 2],
}

impl<'de> DeserializeSeed<'de> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> std::result::Result<Self::Value, E> {
        Ok(self
            .names
            .iter()
            .position(|n| !n.is_empty() && n.eq_ignore_ascii_case(key)))
    }
}

/// Decodes a batch of a table's Kafka records into rows.
pub struct KafkaRecordsToRows {
    topic: String,
    rows: ValueRows,
    metadata: Vec<RecordMetadata>,
}

/// A decoder of one of the value formats.
enum ValueRows {
    Json(Box<JsonRows>),
    Avro(Box<AvroRows>),
}

impl Operator for KafkaRecordsToRows {
    type In = Option<KafkaRecord>;
    type Out = Rows;

    fn process(
        &mut self,
        input: &mut Batch<Option<KafkaRecord>>,
        output: &mut Batch<Rows>,
    ) -> Result<()> {
        let records: Vec<KafkaRecord> = input.drain(..).flatten().collect();
        if records.is_empty() {
            return Ok(());
        }
        self.metadata.clear();
        self.metadata.extend(records.iter().map(|r| RecordMetadata {
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
        }));
        let values: Vec<&[u8]> = records.iter().map(|r| &*r.value).collect();
        let metadata = Some((self.topic.as_str(), self.metadata.as_slice()));
        output.push(match &mut self.rows {
            ValueRows::Json(rows) => rows.decode_with(&values, metadata)?,
            ValueRows::Avro(rows) => rows.decode_with(&values, metadata)?,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(value: &[u8]) -> KafkaMessage<'_> {
        KafkaMessage {
            topic: "t",
            partition: 1,
            offset: 7,
            timestamp: Some(1000),
            key: None,
            value: Some(value),
        }
    }

    #[test]
    fn a_record_carries_its_event_time_and_only_its_kinds_pass() {
        let time = EventTimeSource::Field("at".into());
        let kind = ("kind".to_string(), "login".to_string());
        let login =
            br#"{"kind": "login", "user": {"id": 1, "tags": ["a"]}, "at": "2026-01-01 00:00:01"}"#;
        let login = record(&message(login), &time, Some(&kind))
            .unwrap()
            .unwrap();
        assert_eq!(login.event_time, 1_767_225_601_000);
        let purchase = br#"{"kind": "purchase", "at": 5}"#;
        assert!(record_is_none(purchase, &time, &kind));
        let numeric = record(&message(br#"{"at": 5}"#), &time, None)
            .unwrap()
            .unwrap();
        assert_eq!(numeric.event_time, 5);
        let stamped = record(&message(b"{}"), &EventTimeSource::Timestamp, None)
            .unwrap()
            .unwrap();
        assert_eq!(stamped.event_time, 1000);
        let broken = record(&message(b"not json"), &time, None).unwrap_err();
        assert!(broken.to_string().contains("not a JSON object"), "{broken}");
    }

    fn record_is_none(value: &[u8], time: &EventTimeSource, kind: &(String, String)) -> bool {
        record(&message(value), time, Some(kind)).unwrap().is_none()
    }
}
