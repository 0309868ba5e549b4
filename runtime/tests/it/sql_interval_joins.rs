//! SQL interval joins as a user runs them with `weir sql -f`: both bounds on
//! the two tables' event times (`s.ts BETWEEN o.ts AND o.ts + INTERVAL ...`)
//! make an interval join, which forgets a row once the watermark passes the
//! last time it could pair; its pairs are a regular join's, and the same
//! through injected failures and a rescale from a savepoint as without.

use std::fs;
use std::path::Path;

use crate::sql_nexmark_runs::{nexmark_script, same_rows_through_failures_and_a_rescale};
use crate::support::{assert_ok, committed_lines, run_args, run_in, sorted_lines};

/// Three orders, for [`SHIPMENTS`].
pub const ORDERS: &str = r#"{"id": 1, "ts": "2026-01-01 10:00:00"}
{"id": 2, "ts": "2026-01-01 10:30:00"}
{"id": 3, "ts": "2026-01-01 11:00:00"}
"#;

/// Shipments of [`ORDERS`]: within an hour of their order or not.
pub const SHIPMENTS: &str = r#"{"order_id": 1, "ts": "2026-01-01 10:20:00"}
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
/// `rate_limit` events per second per table.
pub fn early_bids(dir: &Path, out: &str, regular: bool, rate_limit: Option<u32>) -> Vec<String> {
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
    nexmark_script(dir, out, &script, &["bid", "auction"], rate_limit)
}

#[test]
fn interval_joins_pair_as_regular_joins_through_failures_and_a_rescale() {
    let dir = tempfile::tempdir().unwrap();
    let expected = same_rows_through_failures_and_a_rescale(dir.path(), 1000, |out, rate| {
        early_bids(dir.path(), out, false, rate)
    });
    // Forgetting rows once they can no longer pair loses no pair.
    let regular = early_bids(dir.path(), "regular", true, None);
    let explained = run_args(dir.path(), &regular, &["--explain"]);
    assert!(String::from_utf8_lossy(&explained.stdout).contains("for ever"));
    assert_ok(&run_args(dir.path(), &regular, &["-p", "2"]));
    assert_eq!(committed_lines(&dir.path().join("regular")), expected);
}

/// Each auction's bids from its opening to its expiry (Nexmark q4's join), for
/// the auctions of category 10, over the first 200,000 events, into `out`:
/// the auction's own `expires` bounds the join, so an auction goes once the
/// watermark passes it. `regular` writes the bounds over the times as numbers.
pub fn bids_before_expiry(
    dir: &Path,
    out: &str,
    regular: bool,
    rate_limit: Option<u32>,
) -> Vec<String> {
    let bounds = if regular {
        "CAST(b.date_time AS BIGINT) BETWEEN CAST(a.date_time AS BIGINT) AND CAST(a.expires AS BIGINT)"
    } else {
        "b.date_time BETWEEN a.date_time AND a.expires"
    };
    let script = format!(
        "CREATE TABLE won (auction BIGINT, bidder BIGINT, price BIGINT, bid TIMESTAMP(3))
           WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
         INSERT INTO won SELECT a.id, b.bidder, b.price, b.date_time
         FROM auction AS a, bid AS b WHERE a.id = b.auction AND a.category = 10 AND {bounds};"
    );
    nexmark_script(dir, out, &script, &["bid", "auction"], rate_limit)
}

#[test]
fn a_join_bounded_by_each_auctions_expiry_forgets_it_then_and_pairs_as_a_regular_join() {
    let dir = tempfile::tempdir().unwrap();
    let bounded = bids_before_expiry(dir.path(), "plan", false, None);
    let explained = run_args(dir.path(), &bounded, &["--explain"]);
    assert_ok(&explained);
    let plan = String::from_utf8_lossy(&explained.stdout);
    assert!(
        plan.contains("an interval join: left rows until the watermark reaches a.expires, right rows until the watermark reaches b.date_time"),
        "{plan}"
    );
    let expected = same_rows_through_failures_and_a_rescale(dir.path(), 1000, |out, rate| {
        bids_before_expiry(dir.path(), out, false, rate)
    });
    let regular = bids_before_expiry(dir.path(), "regular", true, None);
    let explained = run_args(dir.path(), &regular, &["--explain"]);
    assert!(String::from_utf8_lossy(&explained.stdout).contains("for ever"));
    assert_ok(&run_args(dir.path(), &regular, &["-p", "2"]));
    assert_eq!(committed_lines(&dir.path().join("regular")), expected);
}
