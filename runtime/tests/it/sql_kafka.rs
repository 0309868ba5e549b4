//! SQL jobs writing Kafka: an unbounded `GROUP BY` into an `upsert-kafka`
//! table, exactly once through injected failures: every key's results, as a
//! `read_committed` reader sees them, step up without repeating or going back,
//! and end at the failure-free totals.

use std::collections::BTreeMap;
use std::fs;

use crate::kafka::create_topic;
use crate::kafka_broker::KafkaBroker;
use crate::kafka_sink::{read_messages, OUT_PARTITIONS};
use crate::support::{assert_ok, restarts, run_in, stderr};

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
        let file = dir.path().join(format!("{topic}.sql"));
        fs::write(&file, script).unwrap();
        let out = run_in(
            dir.path(),
            &[
                "sql",
                "-f",
                &file.to_string_lossy(),
                "-p",
                "2",
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
