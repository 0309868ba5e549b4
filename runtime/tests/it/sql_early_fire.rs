//! Windows that fire early, as a user runs them with `weir sql -f`: a count
//! trigger (`table.exec.emit.early-fire.count`) fires a group right after
//! every N-th of its rows and the window's end finishes it, as a changelog
//! (golden lines); a delay (`table.exec.emit.early-fire.delay`) fires the
//! groups changed since, and the changelog ends at the windows' on-time
//! results; into an `upsert-kafka` table through injected failures, and
//! through a savepoint and a rescale from 1 to 3, every key's committed
//! results step through exactly the multiples of N and end at the on-time
//! results; the README's example ends where its on-time version does.

use std::collections::BTreeMap;
use std::fs;

use crate::kafka::create_topic;
use crate::kafka_broker::KafkaBroker;
use crate::kafka_sink::{read_messages, OUT_PARTITIONS};
use crate::sql_kafka::run_script;
use crate::sql_updating::replay;
use crate::support::{
    assert_ok, manifest_dir, restarts, run_args, run_in, stderr, stop_with_savepoint,
};

const EARLY_EVERY_TWO: &str = "SET 'table.exec.emit.early-fire.enabled' = 'true';
SET 'table.exec.emit.early-fire.count' = '2';";

/// Clicks of three users: ann's five in the first window, bob's one, cy's two
/// in the second.
const CLICKS: &str = r#"{"user_id": "ann", "bytes": 1, "ts": "2026-01-01 00:00:01"}
{"user_id": "ann", "bytes": 2, "ts": "2026-01-01 00:00:02"}
{"user_id": "ann", "bytes": 4, "ts": "2026-01-01 00:00:03"}
{"user_id": "bob", "bytes": 100, "ts": "2026-01-01 00:00:03"}
{"user_id": "ann", "bytes": 8, "ts": "2026-01-01 00:00:04"}
{"user_id": "ann", "bytes": 16, "ts": "2026-01-01 00:00:05"}
{"user_id": "cy", "bytes": 5, "ts": "2026-01-01 00:00:15"}
{"user_id": "cy", "bytes": 6, "ts": "2026-01-01 00:00:16"}
"#;

const PER_WINDOW: &str = "CREATE TABLE clicks (user_id STRING, bytes BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = 'clicks.jsonl', 'format' = 'json');
CREATE TABLE per_window (user_id STRING, window_start TIMESTAMP(3), clicks BIGINT, total BIGINT)
WITH ('connector' = 'print');
INSERT INTO per_window
SELECT user_id, window_start, COUNT(*), SUM(bytes)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY user_id, window_start, window_end;";

/// The printed change lines of each user, in the order printed.
fn lines_by_user(printed: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in printed.lines() {
        let user = line[3..].split(',').next().unwrap_or_default().to_string();
        by_user.entry(user).or_default().push(line.to_string());
    }
    by_user
}

#[test]
fn a_count_trigger_fires_a_group_at_every_nth_row_and_the_window_end_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    fs::write(
        dir.path().join("job.sql"),
        format!("{EARLY_EVERY_TWO}\n{PER_WINDOW}"),
    )
    .unwrap();
    let expected: BTreeMap<String, Vec<String>> = [
        (
            "ann",
            vec![
                "+I[ann, 2026-01-01T00:00:00, 2, 3]",
                "-U[ann, 2026-01-01T00:00:00, 2, 3]",
                "+U[ann, 2026-01-01T00:00:00, 4, 15]",
                // The window's end: a fifth click changed the result.
                "-U[ann, 2026-01-01T00:00:00, 4, 15]",
                "+U[ann, 2026-01-01T00:00:00, 5, 31]",
            ],
        ),
        ("bob", vec!["+I[bob, 2026-01-01T00:00:00, 1, 100]"]),
        // Fired at its second click; the window's end changes nothing.
        ("cy", vec!["+I[cy, 2026-01-01T00:00:10, 2, 11]"]),
    ]
    .into_iter()
    .map(|(user, lines)| {
        (
            user.to_string(),
            lines.into_iter().map(String::from).collect(),
        )
    })
    .collect();
    for (parallelism, batch) in [("1", "1"), ("1", "1000"), ("2", "1"), ("2", "1000")] {
        let out = run_in(
            dir.path(),
            &[
                "sql",
                "-f",
                "job.sql",
                "-p",
                parallelism,
                "--batch-size",
                batch,
            ],
        );
        assert_ok(&out);
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            lines_by_user(&printed),
            expected,
            "-p {parallelism} --batch-size {batch}:\n{printed}"
        );
    }
}

/// The windows' results of bids on every 50th auction (2 s tumbling windows
/// over 4 s of event time, at 10,000 bids a second), printed; `early` the
/// `SET` statements before.
fn print_auction_windows(dir: &std::path::Path, name: &str, early: &str) -> String {
    let script = format!(
        "{early}\nCREATE TABLE per_window (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, total BIGINT) WITH ('connector' = 'print');\n\
         INSERT INTO per_window SELECT auction, window_start, COUNT(*), SUM(price) \
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND)) \
         WHERE MOD(auction, 50) = 0 GROUP BY auction, window_start, window_end;"
    );
    let out = run_script(
        dir,
        name,
        &script,
        &[
            "--option",
            "bid.events.num=40000",
            "--option",
            "bid.events.per-second=10000",
            "--option",
            "bid.rate-limit=10000",
        ],
    );
    assert_ok(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_delay_fires_the_changed_groups_and_the_changelog_ends_at_the_on_time_results() {
    let dir = tempfile::tempdir().unwrap();
    let on_time = print_auction_windows(dir.path(), "on-time", "");
    assert!(on_time.lines().all(|l| l.starts_with("+I[")), "{on_time}");
    let expected = replay(&on_time, 2).unwrap();
    assert!(expected.len() > 20, "{} windows", expected.len());
    let early = print_auction_windows(
        dir.path(),
        "early",
        "SET 'table.exec.emit.early-fire.enabled' = 'true';\nSET 'table.exec.emit.early-fire.delay' = '100 ms';",
    );
    // Every -U takes back what its key shows, and what is left is the
    // windows' results.
    let left = replay(&early, 2).unwrap_or_else(|e| panic!("{e}\n{early}"));
    assert_eq!(left, expected);
    let updates = early.lines().filter(|l| l.starts_with("+U[")).count();
    assert!(updates > 10, "{updates} updates:\n{early}");
}

/// Per key (auction and window), its `(bids, total)` results as written, in
/// the order its partition holds them.
fn results_by_key(broker: &KafkaBroker, topic: &str) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut by_key: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for record in read_messages(broker, topic, "read_committed") {
        let value: serde_json::Value = serde_json::from_str(&record.value).unwrap();
        let key = String::from_utf8(record.key).unwrap();
        let result = (
            value["bids"].as_u64().unwrap(),
            value["total"].as_u64().unwrap(),
        );
        by_key.entry(key).or_default().push(result);
    }
    by_key
}

/// Bids per window of every tenth auction into `upsert-kafka` topic
/// `topic`, fired every `EVERY`-th bid if `early`.
fn windows_script(broker: &KafkaBroker, topic: &str, early: bool) -> String {
    let set = match early {
        true => format!("SET 'table.exec.emit.early-fire.enabled' = 'true';\nSET 'table.exec.emit.early-fire.count' = '{EVERY}';\n"),
        false => String::new(),
    };
    format!(
        "{set}CREATE TABLE windows (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, total BIGINT, \
         PRIMARY KEY (auction, window_start) NOT ENFORCED) \
         WITH ('connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}', \
         'key.format' = 'json', 'value.format' = 'json');\n\
         INSERT INTO windows SELECT auction, window_start, COUNT(*), SUM(price) \
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '5' SECOND)) \
         WHERE MOD(auction, 10) = 0 GROUP BY auction, window_start, window_end;",
        broker.bootstrap()
    )
}

/// Every early window fires once per `EVERY`-th bid and, if the last firing
/// was not the window's last bid, once at its end, with the on-time result
/// last: how many firings came before the ends.
fn fired_as_counted(
    on_time: &BTreeMap<String, Vec<(u64, u64)>>,
    early: &BTreeMap<String, Vec<(u64, u64)>>,
) -> usize {
    assert_eq!(
        early.keys().collect::<Vec<_>>(),
        on_time.keys().collect::<Vec<_>>()
    );
    let mut fired_early = 0;
    for (key, results) in early {
        let (bids, total) = on_time[key][0];
        let mut steps: Vec<u64> = (1..=bids / EVERY).map(|k| k * EVERY).collect();
        if bids % EVERY != 0 {
            steps.push(bids);
        }
        let counts: Vec<u64> = results.iter().map(|r| r.0).collect();
        assert_eq!(counts, steps, "{key}: {results:?}");
        assert_eq!(results.last(), Some(&(bids, total)), "{key}");
        fired_early += results.len() - 1;
    }
    fired_early
}

/// Every N-th bid of a window, as `table.exec.emit.early-fire.count`.
const EVERY: u64 = 7;

/// `weir sql` options of the bids: 300,000 at 10,000 a second of event time,
/// read at 150,000 a second.
pub const BIDS: [&str; 6] = [
    "--option",
    "bid.events.num=300000",
    "--option",
    "bid.events.per-second=10000",
    "--option",
    "bid.rate-limit=150000",
];

#[test]
fn early_firing_into_an_upsert_table_is_exactly_once_through_failures() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    for (topic, early, failures) in [
        ("windows-on-time", false, "0"),
        ("windows-early", true, "0"),
        ("windows-early-failing", true, "3"),
    ] {
        create_topic(&broker, topic, OUT_PARTITIONS);
        let script = windows_script(&broker, topic, early);
        let mut options = vec![
            "--checkpoint-interval",
            "200ms",
            "--inject-failures",
            failures,
        ];
        options.extend(BIDS);
        let out = run_script(dir.path(), topic, &script, &options);
        assert_ok(&out);
        if failures != "0" {
            assert!(restarts(&out) >= 1, "{}", stderr(&out));
        }
        written.push(results_by_key(&broker, topic));
    }
    let on_time = &written[0];
    assert!(
        on_time.values().all(|results| results.len() == 1),
        "an on-time window is written once"
    );
    assert!(on_time.len() > 100, "{} windows", on_time.len());
    for early in &written[1..] {
        assert!(
            fired_as_counted(on_time, early) > 100,
            "too few early firings"
        );
    }
}

#[test]
fn early_firing_into_an_upsert_table_is_exactly_once_through_a_rescale() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let args = |topic: &str, early: bool| -> Vec<String> {
        create_topic(&broker, topic, OUT_PARTITIONS);
        let file = dir.path().join(format!("{topic}.sql"));
        fs::write(&file, windows_script(&broker, topic, early)).unwrap();
        let mut args = vec![
            "sql".to_string(),
            "-f".into(),
            file.to_string_lossy().into(),
        ];
        args.extend(BIDS.map(str::to_string));
        args.extend(["--max-parallelism".to_string(), "8".into()]);
        args
    };
    let on_time = args("rescale-on-time", false);
    assert_ok(&run_args(dir.path(), &on_time, &["-p", "2"]));
    let on_time = results_by_key(&broker, "rescale-on-time");
    // Stopped with a savepoint at parallelism 1, restored at 3: the windows
    // open at the savepoint go on counting where they were.
    let early = args("rescale-early", true);
    let savepoint = stop_with_savepoint(dir.path(), &early, &["--name", "rescaled"]);
    let before: usize = results_by_key(&broker, "rescale-early")
        .values()
        .map(Vec::len)
        .sum();
    assert!(before > 0, "the savepoint came before any firing");
    assert_ok(&run_args(
        dir.path(),
        &early,
        &["-p", "3", "--restore", &savepoint, "--name", "rescaled"],
    ));
    let rescaled = results_by_key(&broker, "rescale-early");
    let after: usize = rescaled.values().map(Vec::len).sum();
    assert!(
        after > before,
        "{before} results before the savepoint, {after} in all"
    );
    assert!(
        fired_as_counted(&on_time, &rescaled) > 100,
        "too few early firings"
    );
}

#[test]
fn the_early_firing_example_ends_at_the_results_of_the_on_time_one() {
    let dir = tempfile::tempdir().unwrap();
    let examples = manifest_dir().join("../examples/sql");
    let printed = |example: &str| {
        let path = examples.join(example).to_string_lossy().into_owned();
        let out = run_in(
            dir.path(),
            &["sql", "-f", &path, "--option", "bid.events.num=50000"],
        );
        assert_ok(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let on_time = printed("bid-counts.sql");
    let early = printed("bid-counts-early.sql");
    let expected = replay(&on_time, 2).unwrap();
    assert!(expected.len() > 100, "{} windows", expected.len());
    assert_eq!(replay(&early, 2).unwrap(), expected);
    assert!(early.lines().any(|l| l.starts_with("+U[")), "{early}");
}
