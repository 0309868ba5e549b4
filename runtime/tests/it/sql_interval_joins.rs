//! SQL interval joins as a user runs them with `weir sql -f`: both bounds on
//! the two tables' event times (`s.ts BETWEEN o.ts AND o.ts + INTERVAL ...`)
//! make an interval join, which forgets a row once the watermark passes the
//! last time it could pair; its pairs are a regular join's, and the same
//! through injected failures and a rescale from a savepoint as without.

use std::fs;
use std::path::Path;

use crate::support::{
    assert_ok, committed_lines, restarts, run_args, run_in, sorted_lines, stderr,
    stop_with_savepoint,
};

const ORDERS: &str = r#"{"id": 1, "ts": "2026-01-01 10:00:00"}
{"id": 2, "ts": "2026-01-01 10:30:00"}
{"id": 3, "ts": "2026-01-01 11:00:00"}
"#;

const SHIPMENTS: &str = r#"{"order_id": 1, "ts": "2026-01-01 10:20:00"}
{"order_id": 2, "ts": "2026-01-01 10:29:59"}
{"order_id": 1, "ts": "2026-01-01 11:00:00"}
{"order_id": 2, "ts": "2026-01-01 11:30:00"}
{"order_id": 3, "ts": "2026-01-01 12:00:01"}
"#;

#[test]
fn an_interval_join_pairs_rows_whose_times_are_within_its_bounds() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("orders.jsonl"), ORDERS).unwrap();
    fs::write(dir.path().join("shipments.jsonl"), SHIPMENTS).unwrap();
    let script = "CREATE TABLE orders (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
  WITH ('connector' = 'filesystem', 'path' = 'orders.jsonl', 'format' = 'json');
CREATE TABLE shipments (order_id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
  WITH ('connector' = 'filesystem', 'path' = 'shipments.jsonl', 'format' = 'json');
CREATE TABLE shipped (id BIGINT, ordered TIMESTAMP(3), shipped TIMESTAMP(3))
  WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');
INSERT INTO shipped SELECT o.id, o.ts, s.ts FROM orders o JOIN shipments s
  ON o.id = s.order_id AND s.ts BETWEEN o.ts AND o.ts + INTERVAL '1' HOUR;";
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let explained = run_in(dir.path(), &["sql", "--explain", "-f", "job.sql"]);
    assert_ok(&explained);
    let plan = String::from_utf8_lossy(&explained.stdout);
    assert!(
        plan.contains("an interval join: left rows until the watermark reaches o.ts + 3600000 ms, right rows until the watermark reaches s.ts"),
        "{plan}"
    );
    assert_ok(&run_in(dir.path(), &["sql", "-f", "job.sql", "-p", "2"]));
    // Both bounds are inclusive; a shipment a second early or late pairs with nothing.
    assert_eq!(
        committed_lines(&dir.path().join("out")),
        sorted_lines(&[
            r#"{"id":1,"ordered":"2026-01-01T10:00:00","shipped":"2026-01-01T10:20:00"}"#,
            r#"{"id":1,"ordered":"2026-01-01T10:00:00","shipped":"2026-01-01T11:00:00"}"#,
            r#"{"id":2,"ordered":"2026-01-01T10:30:00","shipped":"2026-01-01T11:30:00"}"#,
        ])
    );
}

/// Bids within a second after their auction opened, over the first 200,000
/// events, into `out`; `regular` writes the bounds over the times as numbers,
/// which makes a regular join that keeps every row. `weir sql` arguments, at
/// `rate` events per second per table.
fn early_bids(dir: &Path, out: &str, regular: bool, rate: &str) -> Vec<String> {
    let bounds = if regular {
        "CAST(b.date_time AS BIGINT) BETWEEN CAST(a.date_time AS BIGINT) AND CAST(a.date_time AS BIGINT) + 1000"
    } else {
        "b.date_time BETWEEN a.date_time AND a.date_time + INTERVAL '1' SECOND"
    };
    let script = format!(
        "CREATE TABLE early (auction BIGINT, bidder BIGINT, price BIGINT, opened TIMESTAMP(3), bid TIMESTAMP(3))
           WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
         INSERT INTO early SELECT a.id, b.bidder, b.price, a.date_time, b.date_time
         FROM auction AS a JOIN bid AS b ON a.id = b.auction AND {bounds};"
    );
    let path = dir.join(format!("{out}.sql"));
    fs::write(&path, script).unwrap();
    let mut args: Vec<String> = [
        "sql",
        "-f",
        &path.to_string_lossy(),
        "--max-parallelism",
        "8",
    ]
    .map(str::to_string)
    .to_vec();
    for table in ["bid", "auction"] {
        for option in [
            "events.num=200000".to_string(),
            "events.per-second=10000".to_string(),
            format!("rate-limit={rate}"),
        ] {
            args.extend(["--option".to_string(), format!("{table}.{option}")]);
        }
    }
    args
}

#[test]
fn interval_joins_pair_as_regular_joins_through_failures_and_a_rescale() {
    let dir = tempfile::tempdir().unwrap();
    let regular = early_bids(dir.path(), "regular", true, "10000000");
    let explained = run_args(dir.path(), &regular, &["--explain"]);
    assert!(String::from_utf8_lossy(&explained.stdout).contains("for ever"));
    assert_ok(&run_args(dir.path(), &regular, &["-p", "2"]));
    let expected = committed_lines(&dir.path().join("regular"));
    assert!(expected.len() > 1000, "{} rows", expected.len());

    let clean = early_bids(dir.path(), "clean", false, "10000000");
    assert_ok(&run_args(dir.path(), &clean, &[]));
    assert_eq!(committed_lines(&dir.path().join("clean")), expected);

    let failing = early_bids(dir.path(), "failing", false, "100000");
    let out = run_args(
        dir.path(),
        &failing,
        &[
            "-p",
            "2",
            "--checkpoint-interval",
            "150ms",
            "--inject-failures",
            "3",
        ],
    );
    assert_ok(&out);
    assert!(restarts(&out) >= 1, "{}", stderr(&out));
    assert_eq!(committed_lines(&dir.path().join("failing")), expected);

    let before = early_bids(dir.path(), "rescaled", false, "50000");
    let savepoint = stop_with_savepoint(dir.path(), &before, &[]);
    let first = committed_lines(&dir.path().join("rescaled"));
    assert!(
        first.len() < expected.len(),
        "the savepoint came after {} of {} rows",
        first.len(),
        expected.len()
    );
    let after = early_bids(dir.path(), "rescaled", false, "10000000");
    assert_ok(&run_args(
        dir.path(),
        &after,
        &["-p", "3", "--restore", &savepoint],
    ));
    assert_eq!(committed_lines(&dir.path().join("rescaled")), expected);
}
