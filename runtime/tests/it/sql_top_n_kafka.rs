//! A top-N into an `upsert-kafka` table (`PRIMARY KEY` the partition and
//! `rn`), as a user runs it with `weir sql -f`: each auction's three highest
//! bids. Read from one split, the bids come in one order in every run, and
//! through injected failures every rank's committed rows, as a
//! `read_committed` reader sees them, are exactly the failure-free run's, in
//! order. Stopped with a savepoint and restored at another parallelism (the
//! bids of an auction then come from several splits, in an order that
//! varies), each rank's price never falls (a rank's price only rises as bids
//! come: a row written again after a restore would fall back) and ends at the
//! failure-free price.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::kafka::create_topic;
use crate::kafka_broker::KafkaBroker;
use crate::kafka_sink::{read_messages, OUT_PARTITIONS};
use crate::sql_early_fire::BIDS;
use crate::support::{assert_ok, restarts, run_args, stderr, stop_with_savepoint};

/// `weir sql` arguments of the top three bids of every tenth auction over
/// [`BIDS`], into `topic`.
fn top_bids(dir: &Path, broker: &KafkaBroker, topic: &str) -> Vec<String> {
    let script = format!(
        "CREATE TABLE top_bids (auction BIGINT, rn BIGINT, price BIGINT, bidder BIGINT,
           PRIMARY KEY (auction, rn) NOT ENFORCED)
         WITH ('connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}',
           'key.format' = 'json', 'value.format' = 'json');
         INSERT INTO top_bids SELECT auction, rn, price, bidder FROM (
           SELECT auction, price, bidder,
             ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn
           FROM bid WHERE MOD(auction, 10) = 0)
         WHERE rn <= 3;",
        broker.bootstrap()
    );
    let file = dir.join(format!("{topic}.sql"));
    fs::write(&file, script).unwrap();
    let mut args = vec![
        "sql".to_string(),
        "-f".into(),
        file.to_string_lossy().into(),
    ];
    args.extend(BIDS.map(str::to_string));
    args
}

/// Per rank (its key), its `(price, bidder)` rows as committed, in the order
/// its partition holds them.
fn rows_by_rank(broker: &KafkaBroker, topic: &str) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut by_rank: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for record in read_messages(broker, topic, "read_committed") {
        let key = String::from_utf8(record.key).unwrap();
        assert!(!record.tombstone, "a top-N of appended bids deleted {key}");
        let value: serde_json::Value = serde_json::from_str(&record.value).unwrap();
        let row = (
            value["price"].as_u64().unwrap(),
            value["bidder"].as_u64().unwrap(),
        );
        by_rank.entry(key).or_default().push(row);
    }
    by_rank
}

/// Every bid of every tenth auction, as `(price, bidder)`s by auction, from
/// a run that prints them.
fn bids_by_auction(dir: &Path) -> BTreeMap<u64, Vec<(u64, u64)>> {
    let script = "CREATE TABLE all_bids (auction BIGINT, price BIGINT, bidder BIGINT) WITH ('connector' = 'print');
         INSERT INTO all_bids SELECT auction, price, bidder FROM bid WHERE MOD(auction, 10) = 0;";
    let file = dir.join("all-bids.sql");
    fs::write(&file, script).unwrap();
    let args = [
        "sql".to_string(),
        "-f".into(),
        file.to_string_lossy().into(),
    ];
    let printed = run_args(dir, &args, &BIDS);
    assert_ok(&printed);
    let mut bids: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&printed.stdout).lines() {
        let values = line.strip_prefix("+I[").and_then(|l| l.strip_suffix(']'));
        let values: Vec<u64> = values
            .unwrap_or_else(|| panic!("not an insert: {line}"))
            .split(", ")
            .map(|v| v.parse().unwrap())
            .collect();
        bids.entry(values[0])
            .or_default()
            .push((values[1], values[2]));
    }
    bids
}

/// `(auction, rn)` of a rank's JSON key.
fn rank_of(key: &str) -> (u64, u64) {
    let key: serde_json::Value = serde_json::from_str(key).unwrap();
    (
        key["auction"].as_u64().unwrap(),
        key["rn"].as_u64().unwrap(),
    )
}

#[test]
fn a_top_n_into_an_upsert_table_is_exactly_once_through_failures_and_a_rescale() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    for topic in ["top-clean", "top-failing", "top-rescaled"] {
        create_topic(&broker, topic, OUT_PARTITIONS);
    }
    // One split: each auction's bids arrive in one order, so the ranks
    // change the same way in every run.
    let one_split = ["-p", "1", "--max-parallelism", "1"];
    let clean = top_bids(dir.path(), &broker, "top-clean");
    assert_ok(&run_args(dir.path(), &clean, &one_split));
    let expected = rows_by_rank(&broker, "top-clean");
    assert!(expected.len() > 1000, "{} ranks", expected.len());
    let changes: usize = expected.values().map(Vec::len).sum();
    assert!(changes > 2 * expected.len(), "{changes} rows");

    let failing = top_bids(dir.path(), &broker, "top-failing");
    let out = run_args(
        dir.path(),
        &failing,
        &[
            &one_split[..],
            &["--checkpoint-interval", "200ms", "--inject-failures", "3"],
        ]
        .concat(),
    );
    assert_ok(&out);
    assert!(restarts(&out) >= 1, "{}", stderr(&out));
    let failing = rows_by_rank(&broker, "top-failing");
    for (rank, rows) in &expected {
        assert_eq!(failing.get(rank), Some(rows), "{rank}");
    }
    assert_eq!(failing.len(), expected.len());

    let rescaled = top_bids(dir.path(), &broker, "top-rescaled");
    let savepoint = stop_with_savepoint(
        dir.path(),
        &rescaled,
        &["--max-parallelism", "8", "--name", "rescaled"],
    );
    let before = rows_by_rank(&broker, "top-rescaled");
    let written: usize = before.values().map(Vec::len).sum();
    assert!(
        written > 0 && written < changes,
        "the savepoint came after {written} of {changes} rows"
    );
    assert_ok(&run_args(
        dir.path(),
        &rescaled,
        &[
            "-p",
            "3",
            "--max-parallelism",
            "8",
            "--restore",
            &savepoint,
            "--name",
            "rescaled",
        ],
    ));
    let after = rows_by_rank(&broker, "top-rescaled");
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    let bids = bids_by_auction(dir.path());
    let mut finals: BTreeMap<u64, Vec<(u64, u64, u64)>> = BTreeMap::new();
    for (rank, rows) in &after {
        let (auction, rn) = rank_of(rank);
        let of_auction = &bids[&auction];
        for row in rows {
            assert!(
                of_auction.contains(row),
                "{rank}: {row:?} is no bid of auction {auction}"
            );
        }
        assert!(
            rows.windows(2).all(|w| w[0].0 <= w[1].0),
            "{rank}: its price fell (a row written twice?): {rows:?}"
        );
        let last = |rows: &[(u64, u64)]| rows.last().map(|r| r.0);
        assert_eq!(last(rows), last(&expected[rank]), "{rank}: {rows:?}");
        let (price, bidder) = rows[rows.len() - 1];
        finals.entry(auction).or_default().push((rn, price, bidder));
    }
    for (auction, mut ranks) in finals {
        ranks.sort();
        let mut highest: Vec<u64> = bids[&auction].iter().map(|b| b.0).collect();
        highest.sort_unstable_by(|a, b| b.cmp(a));
        highest.truncate(3);
        let prices: Vec<u64> = ranks.iter().map(|r| r.1).collect();
        assert_eq!(prices, highest, "auction {auction} ends as {ranks:?}");
        let mut rows: Vec<(u64, u64)> = ranks.iter().map(|r| (r.1, r.2)).collect();
        rows.sort_unstable();
        rows.dedup();
        assert_eq!(
            rows.len(),
            ranks.len(),
            "auction {auction}: a bid in two ranks: {ranks:?}"
        );
    }
}
