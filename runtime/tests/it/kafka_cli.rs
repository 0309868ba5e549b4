//! Kafka from the command line, against a real broker: `weir kafka-load` fills
//! a topic and `weir run keyed-sum` sums it into another exactly once (each sum
//! stamped with its input's timestamp); a record that is not `key,value` fails
//! the job naming where it is; `weir bench` measures the job over topics; and
//! `weir kafka-latency` reports the latency of what arrives on a topic.

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::kafka::{create_topic, produce, KEYS, PARTITIONS, RECORDS};

/// Records `weir kafka-load` writes for the command-line run.
const LOADED: u64 = 200_000;
use crate::kafka_broker::KafkaBroker;
use crate::kafka_sink::{
    broker_with_numbers, open_transactions, read_records, read_topic, OUT_PARTITIONS,
};
use crate::support::{assert_ok, check_keyed_sum, restarts, run_in, stderr, weir};

#[test]
fn weir_sums_a_loaded_topic_into_another_exactly_once_from_the_command_line() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "numbers", PARTITIONS);
    create_topic(&broker, "sums", OUT_PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    // Enough that the injected failure (within 2 checkpoint intervals of the
    // start) comes while the job still reads: the source reads 20,000 in 0.1 s.
    let records = LOADED.to_string();
    let keys = KEYS.to_string();
    let load = run_in(
        dir.path(),
        &[
            "kafka-load",
            "--kafka-brokers",
            &bootstrap,
            "--topic",
            "numbers",
            "--records",
            &records,
            "--keys",
            &keys,
            "--rate",
            "200000",
        ],
    );
    assert_ok(&load);
    let loaded = now_ms();
    let out = run_in(
        dir.path(),
        &[
            "run",
            "keyed-sum",
            "--parallelism",
            "2",
            "--checkpoint-interval",
            "100ms",
            "--inject-failures",
            "1",
            "--",
            "--kafka-brokers",
            &bootstrap,
            "--input-topic",
            "numbers",
            "--input-bounded",
            "--output-topic",
            "sums",
        ],
    );
    assert_ok(&out);
    assert_eq!(restarts(&out), 1, "{}", stderr(&out));
    check_keyed_sum(&read_topic(&broker, "sums", "read_committed"), LOADED, KEYS).unwrap();
    // Each sum carries the timestamp of the input record that updated it last,
    // all written before the job started, not the time the sum was written.
    let stamps: Vec<i64> = read_records(&broker, "sums", "read_committed")
        .into_iter()
        .map(|(_, stamp)| stamp)
        .collect();
    assert_eq!(stamps.len(), LOADED as usize);
    assert!(
        stamps.iter().all(|&t| t > 0 && t <= loaded),
        "stamps after {loaded}"
    );
    assert_eq!(open_transactions(&broker, "weir-keyed-sum-sink-"), []);
}

#[test]
fn a_record_that_is_not_key_value_fails_the_job_naming_where_it_is() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "numbers", 1);
    create_topic(&broker, "sums", OUT_PARTITIONS);
    produce(&broker, "numbers", 10);
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    producer
        .send(rdkafka::producer::BaseRecord::<(), _>::to("numbers").payload("seven,8"))
        .unwrap();
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    let out = run_in(
        dir.path(),
        &[
            "run",
            "keyed-sum",
            "--",
            "--kafka-brokers",
            &bootstrap,
            "--input-topic",
            "numbers",
            "--input-bounded",
            "--output-topic",
            "sums",
        ],
    );
    assert!(!out.status.success(), "a bad record must fail the job");
    let error = stderr(&out);
    assert!(error.contains("numbers/0 at offset 10"), "{error}");
}

#[test]
fn weir_bench_measures_keyed_sum_from_a_topic_to_a_topic() {
    let broker = broker_with_numbers();
    let dir = tempfile::tempdir().unwrap();
    let (bootstrap, records) = (broker.bootstrap(), RECORDS.to_string());
    let out = run_in(
        dir.path(),
        &[
            "bench",
            "keyed-sum",
            "--kafka-brokers",
            &bootstrap,
            "--input-topic",
            "numbers",
            "--output-topic",
            "sums",
            "--records",
            &records,
            "--keys",
            "50",
            "--checkpoint-interval",
            "1s",
        ],
    );
    assert_ok(&out);
    let result = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        result.contains("input=kafka output=kafka guarantee=exactly-once")
            && result.contains(&format!("records={RECORDS}"))
            && result.contains("rps_per_core="),
        "{result}"
    );
    check_keyed_sum(
        &read_topic(&broker, "sums", "read_committed"),
        RECORDS,
        KEYS,
    )
    .unwrap();
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn weir_kafka_latency_reads_a_topic_from_its_end_and_reports_percentiles() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "sums", OUT_PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    let latency = weir()
        .current_dir(dir.path())
        .args([
            "kafka-latency",
            "--kafka-brokers",
            &bootstrap,
            "--topic",
            "sums",
            "--duration",
            "6s",
            "--warmup",
            "0s",
            "--isolation",
            "read_uncommitted",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // 100 records stamped a second in the past: each is read about 1 s late.
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    for i in 0..100 {
        let record = rdkafka::producer::BaseRecord::<(), _>::to("sums")
            .payload("1,1")
            .partition(i % OUT_PARTITIONS)
            .timestamp(now_ms() - 1000);
        producer.send(record).unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
    let out = latency.wait_with_output().unwrap();
    assert_ok(&out);
    let result = String::from_utf8_lossy(&out.stdout).to_string();
    let p50: f64 = result
        .split_whitespace()
        .find_map(|w| w.strip_prefix("p50_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no p50 in {result}"));
    assert!(result.contains("samples=100 "), "{result}");
    assert!((1000.0..2500.0).contains(&p50), "{result}");
}
