//! The job's load as its coordinator measures it (`GetLoad`, `weir status`):
//! a chain that cannot keep up is busy and its source's backlog grows; once
//! the input slows down at a record count, the same chain idles; a Kafka
//! source's consumer lag is its backlog; and the output stays exactly once.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{free_port, wait, worker};
use crate::support::{check_keyed_sum, committed_lines, weir};

/// Records of the overload test: 20,000 at twice what the sum can take, then
/// 4,000 at a fifth of it, 20 s in which the sum drains the records queued
/// between the tasks (about 7,000, 8 s) and then idles.
const RECORDS: u64 = 24_000;
const KEYS: u64 = 20;

/// `weir coordinator keyed-sum -p 1 -- JOB_ARGS --output out` in `dir`, with
/// checkpoints every second and heartbeats every 200 ms.
fn coordinator(dir: &std::path::Path, port: u16, job_args: &[&str]) -> Child {
    weir()
        .current_dir(dir)
        .args(["coordinator", "keyed-sum", "-p", "1"])
        .args(["--checkpoint-interval", "1s"])
        .args(["--heartbeat-interval", "200ms"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--http", &format!("127.0.0.1:{}", port + 1)])
        .arg("--")
        .args(job_args)
        .args(["--output", "out"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `weir status --json --load-window 3s`, once the load covers 2 s.
fn load(port: u16) -> Option<Value> {
    let out = weir()
        .args(["status", "--json", "--load-window", "3s"])
        .args(["--coordinator", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).ok()?;
    let load = status.get("load")?.clone();
    (load["covered_ms"].as_u64()? >= 2_000).then_some(load)
}

/// The first load within a minute that `wanted` accepts; the last one seen
/// is in the failure, named as `what`.
fn load_until(port: u16, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        last = load(port).or(last);
        if let Some(load) = last.as_ref().filter(|l| wanted(l)) {
            return load.clone();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}; the last load: {last:?}")
}

/// The chain whose name contains `part`.
fn chain<'a>(load: &'a Value, part: &str) -> &'a Value {
    load["chains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().contains(part))
        .unwrap_or_else(|| panic!("no chain {part} in {load}"))
}

/// Field `field` of chain `part`, a number.
fn number(load: &Value, part: &str, field: &str) -> f64 {
    chain(load, part)[field]
        .as_f64()
        .unwrap_or_else(|| panic!("no {field} of {part} in {load}"))
}

/// Waits for the job and its workers to end well; every key's sums step
/// up by exactly its values, each once.
fn finish_and_check(
    mut coord: Child,
    mut workers: Vec<Child>,
    dir: &std::path::Path,
    records: u64,
) {
    assert!(wait(&mut coord, Duration::from_secs(90)).success());
    for w in &mut workers {
        assert!(wait(w, Duration::from_secs(10)).success());
    }
    check_keyed_sum(&committed_lines(&dir.join("out")), records, KEYS)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// keyed-sum at parallelism 1: 2,000 records/s for the first 20,000 records,
/// then 200/s (see [`RECORDS`]), each sum waiting 1 ms per record (1,000 records/s at most).
#[test]
fn a_chain_that_cannot_keep_up_is_busy_with_a_growing_backlog_and_idles_once_the_input_slows() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let records = RECORDS.to_string();
    let keys = KEYS.to_string();
    let coord = coordinator(
        dir.path(),
        port,
        &[
            "--records",
            &records,
            "--keys",
            &keys,
            "--rate",
            "2000",
            "--rate-change-at",
            "20000",
            "--then-rate",
            "200",
            "--work-per-record-us",
            "1000",
        ],
    );
    let workers = vec![worker(dir.path(), port)];
    // Once the buffers between them are full, the source is held back.
    let overloaded = load_until(port, "no backlog at twice the rate the sum can take", |l| {
        chain(l, "records")["backlog"]
            .as_i64()
            .is_some_and(|b| b > 2_000)
    });
    assert_eq!(chain(&overloaded, "sum")["name"], "sum -> work -> sink");
    assert!(number(&overloaded, "sum", "busy") > 0.8, "{overloaded}");
    assert_eq!(chain(&overloaded, "records")["source"], true);
    assert!(
        number(&overloaded, "records", "backpressured") > 0.5,
        "{overloaded}"
    );
    assert!(
        number(&overloaded, "records", "backlog_per_second") > 200.0,
        "{overloaded}"
    );

    // After record 20,000 the input comes at a fifth of what the sum can take.
    load_until(port, "the load never dropped", |l| {
        number(l, "sum", "busy") < 0.5
    });
    let text = weir()
        .args(["status", "--coordinator", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains("load over the last") && text.contains("% busy"),
        "{text}"
    );
    finish_and_check(coord, workers, dir.path(), RECORDS);
}

/// keyed-sum reading 300,000 records loaded into a topic beforehand (more
/// than the channels between the tasks hold), each sum waiting 20 µs per
/// record: the source's backlog is its consumer lag, shrinking as the job
/// reads.
#[test]
fn a_kafka_sources_lag_is_its_backlog_and_shrinks_as_the_job_reads() {
    let broker = crate::kafka_broker::KafkaBroker::start();
    crate::kafka::create_topic(&broker, "numbers", 2);
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    let records = 300_000u64;
    let (count, keys) = (records.to_string(), KEYS.to_string());
    let load_topic = crate::support::run_in(
        dir.path(),
        &[
            "kafka-load",
            "--kafka-brokers",
            &bootstrap,
            "--topic",
            "numbers",
            "--records",
            &count,
            "--keys",
            &keys,
        ],
    );
    crate::support::assert_ok(&load_topic);
    let port = free_port();
    let coord = coordinator(
        dir.path(),
        port,
        &[
            "--kafka-brokers",
            &bootstrap,
            "--input-topic",
            "numbers",
            "--input-bounded",
            "--work-per-record-us",
            "20",
        ],
    );
    let workers = vec![worker(dir.path(), port)];
    let reading = load_until(port, "no shrinking lag while the job read", |l| {
        chain(l, "records")["backlog"]
            .as_i64()
            .is_some_and(|b| b > 0)
            && number(l, "records", "backlog_per_second") < 0.0
    });
    let lag = chain(&reading, "records")["backlog"].as_i64().unwrap();
    assert!(lag < records as i64, "{reading}");
    assert!(number(&reading, "sum", "busy") > 0.8, "{reading}");
    finish_and_check(coord, workers, dir.path(), records);
}
