//! Record formats on Kafka from the command line, against a real broker:
//! `weir kafka-load --format avro|json` fills a topic that `weir run keyed-sum
//! --input-format ...` sums exactly once (into JSON records, through a
//! failure; with Avro keys that partition the output), `state-machine` reads Avro events and raises every alert once,
//! and a record that is not JSON fails the job naming what and where.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::ClientConfig;
use weir_runtime::formats::{Format, FormatName};
use weir_runtime::kafka::key_partition;
use weir_runtime::pipelines::generator::Generator;
use weir_runtime::pipelines::kafka_records::KeyRecord;
use weir_runtime::pipelines::state_machine::{transition, Events};

use crate::kafka::{create_topic, KEYS, RECORDS};
use crate::kafka_broker::KafkaBroker;
use crate::kafka_sink::{open_transactions, read_messages, read_topic, OUT_PARTITIONS};
use crate::support::{assert_ok, check_keyed_sum, manifest_dir, restarts, run_in, stderr};

/// Records loaded for the run with a failure: enough that the failure
/// (within 2 checkpoint intervals of the start) comes while the job reads.
const LOADED: u64 = 200_000;

/// A schema shipped in `examples/schemas/`.
fn schema(name: &str) -> String {
    let path: PathBuf = manifest_dir().join(format!("../examples/schemas/{name}.avsc"));
    path.to_string_lossy().into_owned()
}

/// `weir kafka-load` of `records` keyed-sum records into `topic` in `format`
/// (with `extra` arguments).
fn load(broker: &KafkaBroker, topic: &str, records: u64, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (bootstrap, records, keys) = (broker.bootstrap(), records.to_string(), KEYS.to_string());
    let args = [
        &[
            "kafka-load",
            "--kafka-brokers",
            &bootstrap,
            "--topic",
            topic,
            "--records",
            &records,
            "--keys",
            &keys,
        ][..],
        extra,
    ]
    .concat();
    assert_ok(&run_in(dir.path(), &args));
}

/// `weir run PIPELINE` reading topic `numbers` to its end and writing topic
/// `out`, with `run` options before the pipeline's and `extra` after them.
fn run(broker: &KafkaBroker, pipeline: &str, run: &[&str], extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    let args = [
        &["run", pipeline][..],
        run,
        &[
            "--",
            "--kafka-brokers",
            &bootstrap,
            "--input-topic",
            "numbers",
            "--input-bounded",
            "--output-topic",
            "out",
        ],
        extra,
    ]
    .concat();
    run_in(dir.path(), &args)
}

/// The fields of each JSON record, as text joined by commas.
fn json_fields(records: &[String], fields: &[&str]) -> Vec<String> {
    records
        .iter()
        .map(|record| {
            let value: serde_json::Value = serde_json::from_str(record)
                .unwrap_or_else(|e| panic!("{record:?} is not JSON: {e}"));
            let text = |field: &&str| match &value[*field] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                other => panic!("{field} of {record:?} is {other}"),
            };
            fields.iter().map(text).collect::<Vec<_>>().join(",")
        })
        .collect()
}

#[test]
fn keyed_sum_reads_avro_and_writes_json_exactly_once_through_a_failure() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "numbers", 6);
    create_topic(&broker, "out", OUT_PARTITIONS);
    let input = schema("keyed-sum-input");
    load(
        &broker,
        "numbers",
        LOADED,
        &["--rate", "200000", "--format", "avro", "--schema", &input],
    );
    let out = run(
        &broker,
        "keyed-sum",
        &[
            "--parallelism",
            "2",
            "--checkpoint-interval",
            "100ms",
            "--inject-failures",
            "1",
        ],
        &[
            "--input-format",
            "avro",
            "--input-schema",
            &input,
            "--output-format",
            "json",
        ],
    );
    assert_ok(&out);
    assert_eq!(restarts(&out), 1, "{}", stderr(&out));
    let sums = json_fields(
        &read_topic(&broker, "out", "read_committed"),
        &["key", "sum"],
    );
    check_keyed_sum(&sums, LOADED, KEYS).unwrap();
    assert_eq!(open_transactions(&broker, "weir-keyed-sum-sink-"), []);
}

#[test]
fn keyed_sum_keys_each_sum_by_its_key_in_the_key_format() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "numbers", 3);
    create_topic(&broker, "out", OUT_PARTITIONS);
    load(&broker, "numbers", RECORDS, &[]);
    let key_schema = schema("keyed-sum-key");
    let out = run(
        &broker,
        "keyed-sum",
        &["--parallelism", "2"],
        &[
            "--output-key-format",
            "avro",
            "--output-key-schema",
            &key_schema,
        ],
    );
    assert_ok(&out);
    let keys = Format::new::<KeyRecord>(
        FormatName::Avro,
        Some(Path::new(&key_schema)),
        "--output-key-format",
        "--output-key-schema",
    )
    .unwrap();
    let records = read_messages(&broker, "out", "read_committed");
    for record in &records {
        let key: KeyRecord = keys.decode("test", Some(&record.key)).unwrap();
        let (sum_key, _) = record.value.split_once(',').unwrap();
        assert_eq!(key.key.to_string(), sum_key, "{:?}", record.key);
        assert_eq!(
            record.partition,
            key_partition(&record.key, OUT_PARTITIONS),
            "partitioned by the encoded key"
        );
    }
    let sums: Vec<String> = records.into_iter().map(|r| r.value).collect();
    check_keyed_sum(&sums, RECORDS, KEYS).unwrap();
    let state_machine = run(
        &broker,
        "state-machine",
        &[],
        &["--output-key-format", "json"],
    );
    assert!(!state_machine.status.success());
    assert!(
        stderr(&state_machine).contains("state-machine writes records without keys"),
        "{}",
        stderr(&state_machine)
    );
}

#[test]
fn keyed_sum_reads_json_records_into_text_sums() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "numbers", 3);
    create_topic(&broker, "out", OUT_PARTITIONS);
    load(&broker, "numbers", RECORDS, &["--format", "json"]);
    let out = run(&broker, "keyed-sum", &[], &["--input-format", "json"]);
    assert_ok(&out);
    check_keyed_sum(&read_topic(&broker, "out", "read_committed"), RECORDS, KEYS).unwrap();
}

#[test]
fn state_machine_reads_avro_events_and_raises_each_alert_once_as_json() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "numbers", 3);
    create_topic(&broker, "out", OUT_PARTITIONS);
    let events = schema("state-machine-event");
    load(
        &broker,
        "numbers",
        5_000,
        &[
            "--workload",
            "state-machine",
            "--error-rate",
            "0.05",
            "--seed",
            "9",
            "--format",
            "avro",
            "--schema",
            &events,
        ],
    );
    let out = run(
        &broker,
        "state-machine",
        &["--parallelism", "2"],
        &[
            "--input-format",
            "avro",
            "--input-schema",
            &events,
            "--output-format",
            "json",
        ],
    );
    assert_ok(&out);
    let mut alerts = json_fields(
        &read_topic(&broker, "out", "read_committed"),
        &["address", "state", "event"],
    );
    alerts.sort();
    let expected = expected_alerts(5_000, 0.05, 9);
    assert!(expected.len() > 50, "{} alerts", expected.len());
    assert_eq!(alerts, expected);
}

/// The alerts (`address,state,event`, sorted) of the first `records` events
/// `weir kafka-load --workload state-machine` writes: every event the
/// machine does not allow in its address's state.
fn expected_alerts(records: u64, error_rate: f64, seed: u64) -> Vec<String> {
    const STATES: [&str; 6] = ["Initial", "W", "X", "Y", "Z", "Terminal"];
    let mut generator = Events::new(seed, error_rate);
    generator.open(0, 1, None).unwrap();
    let mut events = Vec::new();
    let mut position = 0;
    while (events.len() as u64) < records {
        generator.generate(position, 1024, &mut events);
        position += 1024;
    }
    events.truncate(records as usize);
    let mut states = std::collections::HashMap::new();
    let mut alerts = Vec::new();
    for event in events {
        let state = states.remove(&event.address).unwrap_or(0u8);
        match transition(state, event.event) {
            Some(5) => {}
            Some(next) => {
                states.insert(event.address, next);
            }
            None => alerts.push(format!(
                "{},{},{}",
                event.address,
                STATES[usize::from(state)],
                char::from(b'a' + event.event)
            )),
        }
    }
    alerts.sort();
    alerts
}

#[test]
fn a_record_that_is_not_json_fails_the_job_saying_what_and_where() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "numbers", 1);
    create_topic(&broker, "out", OUT_PARTITIONS);
    load(&broker, "numbers", 10, &["--format", "json"]);
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    producer
        .send(
            rdkafka::producer::BaseRecord::<(), _>::to("numbers")
                .payload(r#"{"key": 7, "value": }"#),
        )
        .unwrap();
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
    let out = run(&broker, "keyed-sum", &[], &["--input-format", "json"]);
    assert!(!out.status.success(), "a bad record must fail the job");
    let error = stderr(&out);
    assert!(
        error.contains("numbers/0 at offset 10: JSON at byte 20: expected value"),
        "{error}"
    );
}
