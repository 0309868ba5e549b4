//! SQL jobs writing Kafka: an unbounded `GROUP BY` into an `upsert-kafka`
//! table, exactly once through injected failures: every key's results, as a
//! `read_committed` reader sees them, step up without repeating or going back,
//! and end at the failure-free totals; a `GROUP BY` over an updating result
//! deletes keys as tombstones, and the topic, compacted, holds exactly the
//! rows the same query's printed changelog ends with.

use std::collections::BTreeMap;
use std::fs;

use crate::kafka::create_topic;
use crate::kafka_broker::KafkaBroker;
use crate::kafka_sink::{read_messages, OUT_PARTITIONS};
use crate::sql_updating::replay;
use crate::support::{assert_ok, restarts, run_in, stderr};

/// Writes `script` to `{name}.sql` in `dir` and runs it at parallelism 2 with `options`.
pub(crate) fn run_script(
    dir: &std::path::Path,
    name: &str,
    script: &str,
    options: &[&str],
) -> std::process::Output {
    let file = dir.join(format!("{name}.sql"));
    fs::write(&file, script).unwrap();
    let file = file.to_string_lossy().into_owned();
    let mut args = vec!["sql", "-f", &file, "-p", "2"];
    args.extend_from_slice(options);
    run_in(dir, &args)
}

/// Per auction: its bid counts as written, in the order a partition holds them.
fn counts_by_auction(broker: &KafkaBroker, topic: &str) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut by_key: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for record in read_messages(broker, topic, "read_committed") {
        let value: serde_json::Value = serde_json::from_str(&record.value).unwrap();
        let key = String::from_utf8(record.key).unwrap();
        let (bids, total) = (
            value["bids"].as_u64().unwrap(),
            value["total"].as_u64().unwrap(),
        );
        by_key.entry(key).or_default().push((bids, total));
    }
    by_key
}

#[test]
fn an_updating_aggregate_into_an_upsert_table_is_exactly_once_through_failures() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut finals = Vec::new();
    for (topic, failures) in [("totals-clean", "0"), ("totals-failing", "3")] {
        create_topic(&broker, topic, OUT_PARTITIONS);
        let script = format!(
            "CREATE TABLE totals (auction BIGINT, bids BIGINT, total BIGINT, PRIMARY KEY (auction) NOT ENFORCED) \
             WITH ('connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}', \
             'key.format' = 'json', 'value.format' = 'json');\n\
             INSERT INTO totals SELECT auction, COUNT(*), SUM(price) FROM bid WHERE MOD(auction, 10) = 0 GROUP BY auction;",
            broker.bootstrap()
        );
        let out = run_script(
            dir.path(),
            topic,
            &script,
            &[
                "--checkpoint-interval",
                "200ms",
                "--inject-failures",
                failures,
                "--option",
                "bid.events.num=300000",
                "--option",
                "bid.rate-limit=150000",
            ],
        );
        assert_ok(&out);
        if failures != "0" {
            assert!(restarts(&out) >= 1, "{}", stderr(&out));
        }
        let written = counts_by_auction(&broker, topic);
        for (auction, results) in &written {
            for pair in results.windows(2) {
                assert!(
                    pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1,
                    "{topic}: auction {auction}'s results repeat or go back: {results:?}"
                );
            }
        }
        let last: BTreeMap<String, (u64, u64)> = written
            .into_iter()
            .map(|(k, v)| (k, *v.last().unwrap()))
            .collect();
        assert!(last.len() > 10, "{topic}: {} auctions", last.len());
        finals.push(last);
    }
    assert_eq!(finals[0], finals[1]);
}

/// The rows a compacted `topic` keeps (each key's last value, none after a
/// tombstone), as `key, value` lines' values; and how many tombstones it
/// holds. Panics at a tombstone of a key that holds no row.
pub(crate) fn compacted(broker: &KafkaBroker, topic: &str) -> (Vec<String>, usize) {
    let mut rows: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    let mut tombstones = 0;
    for record in read_messages(broker, topic, "read_committed") {
        if record.tombstone {
            tombstones += 1;
            let key = String::from_utf8_lossy(&record.key).into_owned();
            assert!(
                rows.remove(&record.key).is_some(),
                "{topic}: a tombstone of {key}, which holds no row"
            );
        } else {
            rows.insert(record.key, record.value);
        }
    }
    let mut values: Vec<String> = rows.into_values().collect();
    values.sort();
    (values, tombstones)
}

#[test]
fn a_group_by_over_an_updating_result_deletes_keys_with_tombstones_exactly_once() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    // How many bidders made n bids, per n, and the lowest and highest of
    // them: as a bidder's count moves on, its old n loses it (MIN and MAX
    // forget it), and an n left with none is deleted.
    let query = "SELECT n, COUNT(*), MIN(bidder), MAX(bidder) FROM (SELECT bidder, COUNT(*) AS n FROM bid WHERE MOD(bidder, 5) = 0 GROUP BY bidder) GROUP BY n;";
    let events = [
        "--option",
        "bid.events.num=100000",
        "--option",
        "bid.rate-limit=100000",
    ];
    let printed = run_script(
        dir.path(),
        "printed",
        &format!("CREATE TABLE by_bids (n BIGINT, bidders BIGINT, lowest BIGINT, highest BIGINT) WITH ('connector' = 'print');\nINSERT INTO by_bids {query}"),
        &events,
    );
    assert_ok(&printed);
    let ends_with: Vec<String> = replay(&String::from_utf8_lossy(&printed.stdout), 1)
        .unwrap()
        .into_values()
        .map(|row| {
            let columns: Vec<&str> = row.split(", ").collect();
            let [n, bidders, lowest, highest] = columns[..] else {
                panic!("{row}")
            };
            format!(r#"{{"n":{n},"bidders":{bidders},"lowest":{lowest},"highest":{highest}}}"#)
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(ends_with.len() > 5, "{ends_with:?}");
    for (topic, failures) in [("by-bids-clean", "0"), ("by-bids-failing", "3")] {
        create_topic(&broker, topic, OUT_PARTITIONS);
        let script = format!(
            "CREATE TABLE by_bids (n BIGINT, bidders BIGINT, lowest BIGINT, highest BIGINT, PRIMARY KEY (n) NOT ENFORCED) \
             WITH ('connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}', \
             'key.format' = 'json', 'value.format' = 'json');\nINSERT INTO by_bids {query}",
            broker.bootstrap()
        );
        let mut options = vec![
            "--checkpoint-interval",
            "200ms",
            "--inject-failures",
            failures,
        ];
        options.extend_from_slice(&events);
        let out = run_script(dir.path(), topic, &script, &options);
        assert_ok(&out);
        if failures != "0" {
            assert!(restarts(&out) >= 1, "{}", stderr(&out));
        }
        let (rows, tombstones) = compacted(&broker, topic);
        assert_eq!(rows, ends_with, "{topic}");
        assert!(tombstones > 10, "{topic}: {tombstones} tombstones");
    }
}

/// Writes `events` JSON events to `topic`, round-robin over its partitions:
/// event `i` a `click` or (every third) a `view` by user `u{i % 7}`, `i`
/// bytes, at second `i / 10` (in order within each partition).
fn produce_events(broker: &KafkaBroker, topic: &str, events: u64) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    // Idempotent, so that a retried request cannot land after a later one
    // and put a partition's events out of order (late, for the windows).
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..events {
        let kind = if i % 3 == 0 { "view" } else { "click" };
        let value = format!(
            r#"{{"kind": "{kind}", "user": "u{}", "bytes": {i}, "at": "2026-01-01 {:02}:{:02}:{:02}"}}"#,
            i % 7,
            i / 36_000,
            (i / 600) % 60,
            (i / 10) % 60
        );
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

#[test]
fn a_kafka_table_of_one_kind_of_message_is_windowed_on_its_event_time_exactly_once() {
    let broker = KafkaBroker::start();
    create_topic(&broker, "events", OUT_PARTITIONS);
    produce_events(&broker, "events", 240_000);
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    let mut logs = Vec::new();
    for (out, failures) in [("clean", "0"), ("failing", "2")] {
        let script = format!(
            "CREATE TABLE clicks (kind STRING, `user` STRING, bytes BIGINT, at TIMESTAMP(3), `part` INT METADATA FROM 'partition',
               WATERMARK FOR at AS at - INTERVAL '1' SECOND)
             WITH ('connector' = 'kafka', 'topic' = 'events', 'properties.bootstrap.servers' = '{}', 'format' = 'json',
               'scan.bounded.mode' = 'latest-offset', 'discriminator.field' = 'kind', 'discriminator.value' = 'click');
             CREATE TABLE per_minute (`user` STRING, window_start TIMESTAMP(3), clicks BIGINT, total BIGINT, partitions BIGINT)
             WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
             INSERT INTO per_minute SELECT `user`, window_start, COUNT(*), SUM(bytes), COUNT(DISTINCT `part`)
             FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(at), INTERVAL '1' MINUTE))
             GROUP BY `user`, window_start, window_end;",
            broker.bootstrap()
        );
        let out_run = run_script(
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
        assert_ok(&out_run);
        if failures != "0" {
            assert!(restarts(&out_run) >= 1, "{}", stderr(&out_run));
        }
        outputs.push(crate::support::committed_lines(&dir.path().join(out)));
        logs.push(stderr(&out_run));
    }
    // 240,000 events over 400 minutes, two thirds of them clicks, by 7 users.
    let clicks: u64 = outputs[0]
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["clicks"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(clicks, 160_000, "{}", logs[0]);
    assert_eq!(outputs[0].len(), 2800, "{:?}", &outputs[0][..3]);
    assert_eq!(outputs[0], outputs[1]);
}

/// Each `(auction, rn)` key's last row (bidder, price), as a `read_committed`
/// reader of `topic` sees them.
fn final_ranks(broker: &KafkaBroker, topic: &str) -> BTreeMap<String, (u64, u64)> {
    let mut last = BTreeMap::new();
    for record in read_messages(broker, topic, "read_committed") {
        let value: serde_json::Value = serde_json::from_str(&record.value).unwrap();
        let key = String::from_utf8(record.key).unwrap();
        let row = (
            value["bidder"].as_u64().unwrap(),
            value["price"].as_u64().unwrap(),
        );
        last.insert(key, row);
    }
    last
}

#[test]
fn a_top_n_into_an_upsert_table_ends_as_without_failures_or_a_rescale() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let script = |topic: &str| {
        format!(
            "CREATE TABLE top3 (auction BIGINT, rn BIGINT, bidder BIGINT, price BIGINT, PRIMARY KEY (auction, rn) NOT ENFORCED) \
             WITH ('connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}', \
             'key.format' = 'json', 'value.format' = 'json');\n\
             INSERT INTO top3 SELECT auction, rn, bidder, price FROM (\
               SELECT auction, bidder, price, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, bidder, date_time) AS rn \
               FROM bid WHERE MOD(auction, 10) = 0) WHERE rn <= 3;",
            broker.bootstrap()
        )
    };
    let bounded = [
        "--option",
        "bid.events.num=300000",
        "--option",
        "bid.rate-limit=150000",
    ];
    let mut finals = Vec::new();
    for (topic, failures) in [("top-clean", "0"), ("top-failing", "3")] {
        create_topic(&broker, topic, OUT_PARTITIONS);
        let mut options = vec![
            "--checkpoint-interval",
            "200ms",
            "--inject-failures",
            failures,
        ];
        options.extend_from_slice(&bounded);
        let out = run_script(dir.path(), topic, &script(topic), &options);
        assert_ok(&out);
        if failures != "0" {
            assert!(restarts(&out) >= 1, "{}", stderr(&out));
        }
        finals.push(final_ranks(&broker, topic));
    }
    let topic = "top-rescaled";
    create_topic(&broker, topic, OUT_PARTITIONS);
    let mut options = vec![
        "--checkpoint-interval",
        "200ms",
        "--stop-with-savepoint-after",
        "1s",
    ];
    options.extend_from_slice(&bounded);
    let stopped = run_script(dir.path(), topic, &script(topic), &options);
    assert_ok(&stopped);
    let savepoint = crate::support::savepoint_of(&stopped);
    // The same script, restored at parallelism 3 (it stopped at 2).
    let file = dir.path().join(format!("{topic}.sql"));
    let file = file.to_string_lossy();
    let mut args = vec!["sql", "-f", &file, "-p", "3", "--restore", &savepoint];
    args.extend_from_slice(&bounded);
    assert_ok(&run_in(dir.path(), &args));
    finals.push(final_ranks(&broker, topic));
    assert!(finals[0].len() > 30, "{} ranks", finals[0].len());
    assert!(
        finals[0] == finals[1],
        "through failures: {} of {} ranks end as without",
        finals[0]
            .iter()
            .filter(|(k, v)| finals[1].get(*k) == Some(v))
            .count(),
        finals[0].len()
    );
    assert!(
        finals[0] == finals[2],
        "through a rescale: {} of {} ranks end as without",
        finals[0]
            .iter()
            .filter(|(k, v)| finals[2].get(*k) == Some(v))
            .count(),
        finals[0].len()
    );
}
