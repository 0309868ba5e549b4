//! Inner joins of updating results, as a user runs them with `weir sql -f`:
//! a stream joined with an unbounded `GROUP BY`'s changelog prints a
//! changelog whose rows, replayed as a multiset (each `-D` takes back a row
//! shown), end at every click (and every Nexmark bid, once) with its user's
//! final total; two updating
//! results joined and grouped again into an `upsert-kafka` table compact,
//! through injected failures, to the rows the printed changelog ends with.

use std::collections::BTreeMap;
use std::fs;

use crate::kafka::create_topic;
use crate::kafka_broker::KafkaBroker;
use crate::kafka_sink::OUT_PARTITIONS;
use crate::sql_kafka::{compacted, run_script};
use crate::sql_updating::replay;
use crate::support::{assert_ok, restarts_from_checkpoints, run_in};

/// Six clicks by three users, as in `sql_updating`.
const CLICKS: &str = r#"{"user_id": "ann", "bytes": 100, "ts": "2026-01-01 00:00:01"}
{"user_id": "bob", "bytes": 250, "ts": "2026-01-01 00:00:04"}
{"user_id": "ann", "bytes": 50, "ts": "2026-01-01 00:00:07"}
{"user_id": "ann", "bytes": 300, "ts": "2026-01-01 00:00:12"}
{"user_id": "cy", "bytes": 10, "ts": "2026-01-01 00:00:13"}
{"user_id": "bob", "bytes": 20, "ts": "2026-01-01 00:00:25"}
"#;

/// Replays change lines as a multiset of rows: the rows left with how many
/// copies, or the first line that takes back a row not shown.
fn replay_multiset(printed: &str) -> Result<BTreeMap<String, u32>, String> {
    let mut rows: BTreeMap<String, u32> = BTreeMap::new();
    for line in printed.lines() {
        let (kind, row) = line.split_at(2);
        match kind {
            "+I" | "+U" => *rows.entry(row.to_string()).or_default() += 1,
            "-U" | "-D" => match rows.get_mut(row) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    rows.remove(row);
                }
                None => return Err(format!("{line} takes back a row not shown")),
            },
            _ => return Err(format!("unknown change: {line}")),
        }
    }
    Ok(rows)
}

#[test]
fn a_stream_joined_with_an_updating_result_ends_at_each_row_with_the_final_result() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    let script = "CREATE TABLE clicks (user_id STRING, bytes BIGINT, ts TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = 'clicks.jsonl', 'format' = 'json');
CREATE TABLE shares (user_id STRING, bytes BIGINT, total BIGINT) WITH ('connector' = 'print');
INSERT INTO shares SELECT c.user_id, c.bytes, t.total FROM clicks c
JOIN (SELECT user_id, SUM(bytes) AS total FROM clicks GROUP BY user_id) t ON c.user_id = t.user_id;";
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let expected: BTreeMap<String, u32> = [
        "[ann, 100, 450]",
        "[ann, 300, 450]",
        "[ann, 50, 450]",
        "[bob, 20, 270]",
        "[bob, 250, 270]",
        "[cy, 10, 10]",
    ]
    .into_iter()
    .map(|row| (row.to_string(), 1))
    .collect();
    for batch in ["1", "2", "1000"] {
        let out = run_in(
            dir.path(),
            &["sql", "-f", "job.sql", "--batch-size", batch, "-p", "2"],
        );
        assert_ok(&out);
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        let rows = replay_multiset(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(rows, expected, "--batch-size {batch}:\n{printed}");
    }
}

#[test]
fn each_bid_ends_joined_with_its_bidders_final_total_once() {
    let dir = tempfile::tempdir().unwrap();
    // Bids come 1,000 a second, so a bidder's later bids change the total
    // its earlier bids were joined with: their pairs are deleted and joined
    // anew.
    let out = run_script(
        dir.path(),
        "bids",
        "CREATE TABLE shares (bidder BIGINT, price BIGINT, total BIGINT) WITH ('connector' = 'print');\n\
         INSERT INTO shares SELECT b.bidder, b.price, t.total FROM bid b \
         JOIN (SELECT bidder, SUM(price) AS total FROM bid GROUP BY bidder) t ON b.bidder = t.bidder;",
        &["--option", "bid.events.num=3000", "--option", "bid.rate-limit=1000"],
    );
    assert_ok(&out);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows = replay_multiset(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
    let mut by_bidder: BTreeMap<u64, (u64, Vec<u64>)> = BTreeMap::new();
    for (row, copies) in &rows {
        let columns: Vec<u64> = row
            .trim_matches(|c| c == '[' || c == ']')
            .split(", ")
            .map(|c| c.parse().unwrap())
            .collect();
        let [bidder, price, total] = columns[..] else {
            panic!("{row}")
        };
        let (shown, prices) = by_bidder.entry(bidder).or_insert((total, Vec::new()));
        assert_eq!(*shown, total, "bidder {bidder} is joined with two totals");
        prices.extend(std::iter::repeat_n(price, *copies as usize));
    }
    let bids: usize = by_bidder.values().map(|(_, prices)| prices.len()).sum();
    // Bids are 46 of every 50 Nexmark events; the totals below see each once.
    assert_eq!(bids, 2760, "every bid once");
    for (bidder, (total, prices)) in &by_bidder {
        assert_eq!(*total, prices.iter().sum::<u64>(), "bidder {bidder}");
    }
    let deleted = printed.lines().filter(|l| l.starts_with("-D[")).count();
    assert!(deleted > 100, "{deleted} pairs deleted");
}

#[test]
fn two_updating_results_joined_and_grouped_are_exactly_once_through_failures() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    // Per number of bids n: how many bidders made n bids and the most any
    // of them spent; both sides of the join change with every bid.
    let query = "SELECT t.n, COUNT(*), MAX(u.spent) FROM \
        (SELECT bidder, COUNT(*) AS n FROM bid WHERE MOD(bidder, 5) = 0 GROUP BY bidder) t \
        JOIN (SELECT bidder, SUM(price) AS spent FROM bid GROUP BY bidder) u ON t.bidder = u.bidder \
        GROUP BY t.n;";
    let events = [
        "--option",
        "bid.events.num=60000",
        "--option",
        "bid.rate-limit=30000",
    ];
    let printed = run_script(
        dir.path(),
        "printed",
        &format!("CREATE TABLE by_bids (n BIGINT, bidders BIGINT, top BIGINT) WITH ('connector' = 'print');\nINSERT INTO by_bids {query}"),
        &events,
    );
    assert_ok(&printed);
    let mut ends_with: Vec<String> = replay(&String::from_utf8_lossy(&printed.stdout), 1)
        .unwrap()
        .into_values()
        .map(|row| {
            let columns: Vec<&str> = row.split(", ").collect();
            let [n, bidders, top] = columns[..] else {
                panic!("{row}")
            };
            format!(r#"{{"n":{n},"bidders":{bidders},"top":{top}}}"#)
        })
        .collect();
    ends_with.sort();
    assert!(ends_with.len() > 5, "{ends_with:?}");
    // The failing run is repeated (each checked) until one of its restarts
    // resumed from a checkpoint, which needs a failure after one completed.
    let runs = [("joined-clean", "0")]
        .into_iter()
        .chain((0..5).map(|_| ("joined-failing", "3")));
    let mut restored = false;
    for (attempt, (name, failures)) in runs.enumerate() {
        let topic = format!("{name}-{attempt}");
        create_topic(&broker, &topic, OUT_PARTITIONS);
        let script = format!(
            "CREATE TABLE by_bids (n BIGINT, bidders BIGINT, top BIGINT, PRIMARY KEY (n) NOT ENFORCED) \
             WITH ('connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}', \
             'key.format' = 'json', 'value.format' = 'json');\nINSERT INTO by_bids {query}",
            broker.bootstrap()
        );
        // Failures come up to twice the interval after each (re)start, at
        // moments the seed draws.
        let seed = attempt.to_string();
        let mut options = vec![
            "--checkpoint-interval",
            "300ms",
            "--inject-failures",
            failures,
            "--seed",
            &seed,
        ];
        options.extend_from_slice(&events);
        let out = run_script(dir.path(), &topic, &script, &options);
        assert_ok(&out);
        let (rows, _) = compacted(&broker, &topic);
        assert_eq!(rows, ends_with, "{topic}");
        if failures != "0" && restarts_from_checkpoints(&out) >= 1 {
            restored = true;
            break;
        }
    }
    assert!(restored, "no run restored from a checkpoint");
}
