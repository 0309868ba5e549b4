//! A SQL job over Avro: a `kafka` table of format `avro` (plain binary
//! datums of a registered writer schema, with a field the table leaves out)
//! windowed on its event time into a `kafka` table of format `avro` (its
//! schema derived from its columns), exactly once through injected failures.
//! The oracle counts every window from the events produced and sees every
//! committed output record: each window once, with its exact count and sum.
//! An unbounded `GROUP BY` into an `upsert-kafka` table with Avro keys and
//! values: every user's committed results step up, never repeat or go back,
//! and end at the user's exact count and sum.

use std::collections::BTreeMap;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;

use crate::kafka::create_topic;
use crate::kafka_broker::KafkaBroker;
use crate::kafka_sink::{read_messages, OUT_PARTITIONS};
use crate::sql_kafka::run_script;
use crate::support::{assert_ok, restarts, stderr};

/// The producers' schema: an `agent` field the table does not read, before
/// the event time.
const CLICK: &str = r#"{"type": "record", "name": "Click", "namespace": "shop", "fields": [
  {"name": "user", "type": "string"},
  {"name": "agent", "type": ["null", "string"]},
  {"name": "bytes", "type": "long"},
  {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}
]}"#;

/// What the sink's columns give, as Flink derives it: nullable columns a
/// union with `null` first.
const PER_MINUTE: &str = r#"{"type": "record", "name": "PerMinute", "fields": [
  {"name": "user", "type": ["null", "string"]},
  {"name": "window_start", "type": ["null", {"type": "long", "logicalType": "local-timestamp-millis"}]},
  {"name": "clicks", "type": ["null", "long"]},
  {"name": "total", "type": ["null", "long"]}
]}"#;

const EVENTS: u64 = 60_000;
/// 2026-01-01 00:00:00 UTC, ms.
const START: i64 = 1_767_225_600_000;

/// Event `i`: user `u{i % 7}`, `i` bytes, at `START + i * 100` ms.
fn event(i: u64) -> (String, u64, i64) {
    (format!("u{}", i % 7), i, START + i as i64 * 100)
}

/// Writes the events to `topic` as Avro, round-robin over its partitions.
fn produce_avro(broker: &KafkaBroker, topic: &str) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let schema = Schema::parse_str(CLICK).unwrap();
    let writer = GenericDatumWriter::builder(&schema).build().unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..EVENTS {
        let (user, bytes, at) = event(i);
        let agent = match i % 2 {
            0 => Value::Union(0, Box::new(Value::Null)),
            _ => Value::Union(1, Box::new(Value::String("curl/8".into()))),
        };
        let value = writer
            .write_value_to_vec(Value::Record(vec![
                ("user".into(), Value::String(user)),
                ("agent".into(), agent),
                ("bytes".into(), Value::Long(bytes as i64)),
                ("at".into(), Value::TimestampMillis(at)),
            ]))
            .unwrap();
        let partition = (i % OUT_PARTITIONS as u64) as i32;
        let mut record = BaseRecord::<(), _>::to(topic)
            .payload(&value)
            .partition(partition);
        while let Err((e, back)) = producer.send(record) {
            assert!(
                e.to_string().contains("Queue full"),
                "producing failed: {e}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
            record = back;
        }
    }
    producer.flush(std::time::Duration::from_secs(30)).unwrap();
}

/// Each (user, window start) with its count and sum, from the events.
fn expected() -> Vec<(String, i64, i64, i64)> {
    let mut windows: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for i in 0..EVENTS {
        let (user, bytes, at) = event(i);
        let window = windows
            .entry((user, at - at.rem_euclid(60_000)))
            .or_default();
        window.0 += 1;
        window.1 += bytes as i64;
    }
    windows
        .into_iter()
        .map(|((user, start), (clicks, total))| (user, start, clicks, total))
        .collect()
}

/// Every committed record of `topic`, decoded, sorted.
fn committed_windows(broker: &KafkaBroker, topic: &str) -> Vec<(String, i64, i64, i64)> {
    let schema = Schema::parse_str(PER_MINUTE).unwrap();
    let reader = GenericDatumReader::builder(&schema).build().unwrap();
    let mut rows: Vec<_> = read_messages(broker, topic, "read_committed")
        .into_iter()
        .map(|record| {
            let mut bytes = record.payload.as_slice();
            let Value::Record(fields) = reader.read_value(&mut bytes).unwrap() else {
                panic!("not a record");
            };
            assert!(bytes.is_empty(), "bytes left after a record");
            let field = |i: usize| match &fields[i].1 {
                Value::Union(_, inner) => (**inner).clone(),
                other => other.clone(),
            };
            let (
                Value::String(user),
                Value::LocalTimestampMillis(start),
                Value::Long(clicks),
                Value::Long(total),
            ) = (field(0), field(1), field(2), field(3))
            else {
                panic!("unexpected fields {fields:?}");
            };
            (user, start, clicks, total)
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn an_avro_topic_is_windowed_into_an_avro_topic_exactly_once_through_failures() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "avro-clicks", OUT_PARTITIONS);
    produce_avro(&broker, "avro-clicks");
    let dir = tempfile::tempdir().unwrap();
    let want = expected();
    // 60,000 events, 100 ms apart: 100 minutes by 7 users.
    assert_eq!(want.len(), 700);
    for (out, failures) in [("clean", "0"), ("failing", "2")] {
        let topic = format!("avro-per-minute-{out}");
        create_topic(&broker, &topic, OUT_PARTITIONS);
        let script = format!(
            "CREATE TABLE clicks (`user` STRING, bytes BIGINT, at TIMESTAMP(3), WATERMARK FOR at AS at - INTERVAL '1' SECOND)
             WITH ('connector' = 'kafka', 'topic' = 'avro-clicks', 'properties.bootstrap.servers' = '{bootstrap}',
               'format' = 'avro', 'avro.schema' = '{schema}', 'scan.bounded.mode' = 'latest-offset');
             CREATE TABLE per_minute (`user` STRING, window_start TIMESTAMP(3), clicks BIGINT, total BIGINT)
             WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}', 'format' = 'avro');
             INSERT INTO per_minute SELECT `user`, window_start, COUNT(*), SUM(bytes)
             FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(at), INTERVAL '1' MINUTE))
             GROUP BY `user`, window_start, window_end;",
            bootstrap = broker.bootstrap(),
            schema = CLICK.replace('\n', " "),
        );
        let run = run_script(
            dir.path(),
            out,
            &script,
            &[
                "--checkpoint-interval",
                "100ms",
                "--inject-failures",
                failures,
            ],
        );
        assert_ok(&run);
        if failures != "0" {
            assert!(restarts(&run) >= 1, "{}", stderr(&run));
        }
        assert_eq!(committed_windows(&broker, &topic), want, "{}", stderr(&run));
    }
}

/// The upsert table's key and value schemas, as its columns give them (the
/// key NOT NULL, as Flink takes a PRIMARY KEY's columns).
const TOTAL_KEY: &str =
    r#"{"type": "record", "name": "k", "fields": [{"name": "user", "type": "string"}]}"#;
const TOTAL: &str = r#"{"type": "record", "name": "v", "fields": [
  {"name": "user", "type": ["null", "string"]},
  {"name": "clicks", "type": ["null", "long"]},
  {"name": "total", "type": ["null", "long"]}
]}"#;

/// Decodes one Avro datum of `schema`, all its bytes, unwrapping unions.
fn datum_fields(schema: &Schema, bytes: &[u8]) -> Vec<Value> {
    let reader = GenericDatumReader::builder(schema).build().unwrap();
    let mut bytes = bytes;
    let Value::Record(fields) = reader.read_value(&mut bytes).unwrap() else {
        panic!("not a record");
    };
    assert!(bytes.is_empty(), "bytes left after a datum");
    fields
        .into_iter()
        .map(|(_, value)| match value {
            Value::Union(_, inner) => *inner,
            other => other,
        })
        .collect()
}

#[test]
fn an_updating_aggregate_into_an_avro_upsert_table_steps_up_exactly_once_through_failures() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "avro-upsert-clicks", OUT_PARTITIONS);
    produce_avro(&broker, "avro-upsert-clicks");
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for i in 0..EVENTS {
        let (user, bytes, _) = event(i);
        let total = want.entry(user).or_default();
        total.0 += 1;
        total.1 += bytes as i64;
    }
    let (key_schema, value_schema) = (
        Schema::parse_str(TOTAL_KEY).unwrap(),
        Schema::parse_str(TOTAL).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    for (out, failures) in [("upsert-clean", "0"), ("upsert-failing", "2")] {
        let topic = format!("avro-totals-{out}");
        create_topic(&broker, &topic, OUT_PARTITIONS);
        let script = format!(
            "CREATE TABLE clicks (`user` STRING, bytes BIGINT, at TIMESTAMP(3))
             WITH ('connector' = 'kafka', 'topic' = 'avro-upsert-clicks', 'properties.bootstrap.servers' = '{bootstrap}',
               'format' = 'avro', 'avro.schema' = '{schema}', 'scan.bounded.mode' = 'latest-offset');
             CREATE TABLE totals (`user` STRING, clicks BIGINT, total BIGINT, PRIMARY KEY (`user`) NOT ENFORCED)
             WITH ('connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
               'key.format' = 'avro', 'value.format' = 'avro');
             INSERT INTO totals SELECT `user`, COUNT(*), SUM(bytes) FROM clicks GROUP BY `user`;",
            bootstrap = broker.bootstrap(),
            schema = CLICK.replace('\n', " "),
        );
        let options = [
            "--checkpoint-interval",
            "100ms",
            "--inject-failures",
            failures,
        ];
        let run = run_script(dir.path(), out, &script, &options);
        assert_ok(&run);
        if failures != "0" {
            assert!(restarts(&run) >= 1, "{}", stderr(&run));
        }
        let mut by_user: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        for record in read_messages(&broker, &topic, "read_committed") {
            assert!(
                !record.tombstone,
                "{topic}: a tombstone from an insert-only input"
            );
            let [Value::String(key)] = &datum_fields(&key_schema, &record.key)[..] else {
                panic!("{topic}: key {:?}", record.key);
            };
            let [Value::String(user), Value::Long(clicks), Value::Long(total)] =
                &datum_fields(&value_schema, &record.payload)[..]
            else {
                panic!("{topic}: value {:?}", record.payload);
            };
            assert_eq!(key, user, "{topic}: a record under another user's key");
            by_user
                .entry(user.clone())
                .or_default()
                .push((*clicks, *total));
        }
        for (user, results) in &by_user {
            for pair in results.windows(2) {
                assert!(
                    pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1,
                    "{topic}: {user}'s results repeat or go back: {results:?}"
                );
            }
        }
        let last: BTreeMap<String, (i64, i64)> = by_user
            .into_iter()
            .map(|(user, results)| (user, *results.last().unwrap()))
            .collect();
        assert_eq!(last, want, "{topic}: {}", stderr(&run));
    }
}

#[test]
fn a_record_that_is_not_of_the_schema_fails_the_job_and_names_it() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "avro-bad", 1);
    {
        use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
        let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .create()
            .unwrap();
        producer
            .send(BaseRecord::<(), _>::to("avro-bad").payload("{\"user\": \"json\"}"))
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(std::time::Duration::from_secs(30)).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "CREATE TABLE clicks (`user` STRING, bytes BIGINT, at TIMESTAMP(3))
         WITH ('connector' = 'kafka', 'topic' = 'avro-bad', 'properties.bootstrap.servers' = '{}',
           'format' = 'avro', 'avro.schema' = '{}', 'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE out (`user` STRING) WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT `user` FROM clicks;",
        broker.bootstrap(),
        CLICK.replace('\n', " "),
    );
    let run = run_script(dir.path(), "bad", &script, &[]);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(
        err.contains(
            "table `clicks`: record 1 of a batch of 1 does not fit the table's Avro schema"
        ),
        "{err}"
    );
}
