//! The job's load as its coordinator measures it (`GetLoad`, `weir status`):
//! a chain that cannot keep up is busy and its source's backlog grows; once
//! the input slows down at a record count, the same chain idles; a Kafka
//! source's consumer lag is its backlog; and the output stays exactly once.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{free_port, wait, worker};
use crate::support::{check_keyed_sum, committed_lines, weir};

const RECORDS: u64 = 22_000;
const KEYS: u64 = 20;

/// keyed-sum at parallelism 1: 2,000 records/s for the first 20,000 records,
/// then 200/s, each sum waiting 1 ms per record (1,000 records/s at most).
fn coordinator(dir: &std::path::Path, port: u16) -> Child {
    weir()
        .current_dir(dir)
        .args(["coordinator", "keyed-sum", "-p", "1"])
        .args([
            "--checkpoint-interval",
            "1s",
            "--heartbeat-interval",
            "200ms",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--http", &format!("127.0.0.1:{}", port + 1)])
        .arg("--")
        .args([
            "--records",
            &RECORDS.to_string(),
            "--keys",
            &KEYS.to_string(),
        ])
        .args([
            "--rate",
            "2000",
            "--rate-change-at",
            "20000",
            "--then-rate",
            "200",
        ])
        .args(["--work-per-record-us", "1000", "--output", "out"])
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

/// The chain whose name contains `part`.
fn chain<'a>(load: &'a Value, part: &str) -> &'a Value {
    load["chains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().contains(part))
        .unwrap_or_else(|| panic!("no chain {part} in {load}"))
}

#[test]
fn a_chain_that_cannot_keep_up_is_busy_with_a_growing_backlog_and_idles_once_the_input_slows() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut coord = coordinator(dir.path(), port);
    let mut workers = [worker(dir.path(), port)];
    // Once the buffers between them are full, the source is held back.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = None;
    while Instant::now() < deadline {
        if let Some(load) = load(port) {
            let backlog = &chain(&load, "records")["backlog"];
            if backlog.as_i64().is_some_and(|b| b > 2_000) {
                seen = Some(load);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let overloaded = seen.expect("no backlog at twice the rate the sum can take");
    let sum = chain(&overloaded, "sum");
    assert_eq!(sum["name"], "sum -> work -> sink");
    assert!(sum["busy"].as_f64().unwrap() > 0.8, "{overloaded}");
    let source = chain(&overloaded, "records");
    assert_eq!(source["source"], true);
    assert!(
        source["backpressured"].as_f64().unwrap() > 0.5,
        "{overloaded}"
    );
    assert!(
        source["backlog_per_second"].as_f64().unwrap() > 200.0,
        "{overloaded}"
    );

    // After record 20,000 the input comes at a fifth of what the sum can take.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the load never dropped");
        if let Some(load) = load(port) {
            if chain(&load, "sum")["busy"].as_f64().unwrap() < 0.5 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let text = weir()
        .args(["status", "--coordinator", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains("load over the last") && text.contains("% busy"),
        "{text}"
    );

    assert!(wait(&mut coord, Duration::from_secs(90)).success());
    for w in &mut workers {
        assert!(wait(w, Duration::from_secs(10)).success());
    }
    check_keyed_sum(&committed_lines(&dir.path().join("out")), RECORDS, KEYS)
        .unwrap_or_else(|e| panic!("{e}"));
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
    let load_topic = crate::support::run_in(
        dir.path(),
        &[
            "kafka-load",
            "--kafka-brokers",
            &bootstrap,
            "--topic",
            "numbers",
            "--records",
            &records.to_string(),
            "--keys",
            &KEYS.to_string(),
        ],
    );
    crate::support::assert_ok(&load_topic);
    let port = free_port();
    let mut coord = weir()
        .current_dir(dir.path())
        .args(["coordinator", "keyed-sum", "-p", "1"])
        .args([
            "--checkpoint-interval",
            "1s",
            "--heartbeat-interval",
            "200ms",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--http", &format!("127.0.0.1:{}", port + 1)])
        .args([
            "--",
            "--kafka-brokers",
            &bootstrap,
            "--input-topic",
            "numbers",
        ])
        .args([
            "--input-bounded",
            "--work-per-record-us",
            "20",
            "--output",
            "out",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut workers = [worker(dir.path(), port)];
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut seen, mut last) = (None, None);
    while Instant::now() < deadline && seen.is_none() {
        last = load(port).or(last);
        seen = last.clone().filter(|l| {
            let source = chain(l, "records");
            source["backlog"].as_i64().is_some_and(|b| b > 0)
                && source["backlog_per_second"]
                    .as_f64()
                    .is_some_and(|g| g < 0.0)
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    let reading = seen.unwrap_or_else(|| panic!("no shrinking lag while the job read: {last:?}"));
    let lag = chain(&reading, "records")["backlog"].as_i64().unwrap();
    assert!(lag < records as i64, "{reading}");
    assert!(
        chain(&reading, "sum")["busy"].as_f64().unwrap() > 0.8,
        "{reading}"
    );
    assert!(wait(&mut coord, Duration::from_secs(90)).success());
    for w in &mut workers {
        assert!(wait(w, Duration::from_secs(10)).success());
    }
    check_keyed_sum(&committed_lines(&dir.path().join("out")), records, KEYS)
        .unwrap_or_else(|e| panic!("{e}"));
}
